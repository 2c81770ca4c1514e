#!/usr/bin/env perl
# Runs every C unit test in build/unit/ (built by `make unit`) as a subtest,
# turning its TAP lines into Test::More results.  A test binary also fails
# if it prints no plan, runs a different number of tests than planned, or
# exits non-zero (which is how sanitizer reports and crashes show up).
use strict;
use warnings;

use File::Spec;
use FindBin;
use POSIX ();
use Test::More;

my $dir = $ENV{CREST_UNIT_DIR}
    // File::Spec->catdir($FindBin::Bin, File::Spec->updir, 'build', 'unit');

die "t/00-unit.t: no $dir: run make unit\n" unless -d $dir;

opendir(my $dh, $dir) or die "t/00-unit.t: $dir: $!\n";
# only test_*: build/unit also holds helpers for other tests (jwt_tool)
my @bins = sort grep { /^test_/ && -f "$dir/$_" && -x _ } readdir $dh;
closedir $dh;

die "t/00-unit.t: no test binaries in $dir: run make unit\n" unless @bins;

for my $name (@bins) {
    subtest $name => sub { run_binary(File::Spec->catfile($dir, $name)) };
}

done_testing();


sub run_binary {
    my ($bin) = @_;
    my ($plan, $seen) = (undef, 0);

    my $pid = open(my $fh, '-|');
    die "t/00-unit.t: fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        # the child: stderr joins stdout so sanitizer reports show up in order
        open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
        { exec {$bin} $bin; }
        print "exec $bin: $!\n";
        POSIX::_exit(127);
    }

    while (my $line = <$fh>) {
        chomp $line;

        if ($line =~ /^(not )?ok\b\s*(\d*)\s*(?:-\s*)?(.*)$/) {
            my ($not, $num, $desc) = ($1, $2, $3);

            $seen++;

            if ($num ne '' && $num != $seen) {
                fail("test number $num out of sequence (expected $seen)");
            }

            if ($desc =~ /\s#\s*SKIP\b/i) {
                pass($desc);

            } elsif ($desc =~ /\s#\s*TODO\b/i) {
                our $TODO;
                local $TODO = 'TODO in the C test';
                ok(!$not, $desc);

            } else {
                ok(!$not, $desc);
            }

        } elsif ($line =~ /^1\.\.(\d+)/) {
            fail('more than one plan') if defined $plan;
            $plan = $1;

        } elsif ($line =~ /^Bail out!\s*(.*)/) {
            BAIL_OUT("$bin: $1");

        } elsif ($line =~ /^#\s?(.*)$/) {
            diag($1);

        } elsif ($line ne '') {
            diag($line);
        }
    }

    close $fh;
    my $status = $?;

    ok(defined $plan, 'printed a plan');
    is($seen, $plan, 'ran as many tests as planned') if defined $plan;

    if ($status & 127) {
        fail("killed by signal " . ($status & 127));
    } else {
        is($status >> 8, 0, 'exited 0');
    }
}
