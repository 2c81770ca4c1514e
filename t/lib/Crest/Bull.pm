package Crest::Bull;

# Helpers for the BullMQ interop tests (t/05*-bullmq-*.t): running the Node
# scripts of t/node/ (BullMQ 6.7.0 is the judge), starting crest-worker and
# reading its JSON log.

use strict;
use warnings;

use Exporter 'import';
use FindBin;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Cwd qw(abs_path);
use File::Basename qw(dirname);

our @EXPORT_OK = qw(node node_json worker_env start_worker wait_until
                    worker_log log_lines problems crest_queue REPO);

our $REPO = abs_path(dirname(__FILE__) . '/../../..');
sub REPO { $REPO }

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

# node('scenario.js', @args) — runs t/node/<script> (90 s at most); returns
# its stdout, dies with its stderr if it fails.
sub node {
    my ($script, @args) = @_;
    my $err = "/tmp/crest-node.$$.err";
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>', $err;
        exec 'timeout', '-k', '5', '90', 'node', "$REPO/t/node/$script", @args;
        exit 127;
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $rc = $?;
    my $errtext = do { local @ARGV = ($err); local $/; <> } // '';
    unlink $err;
    die "node $script @args failed ($rc): $errtext\n" if $rc != 0;
    return $out;
}

# The last line of a Node script's output, decoded.
sub node_json {
    my $out = node(@_);
    my @lines = grep { /\S/ } split /\n/, $out;
    return $JSON->decode($lines[-1]);
}

# The environment crest-worker and crest-queue need for this test's Redis
# (PostgreSQL only when the test started one).
sub worker_env {
    my ($t, %more) = @_;
    return {
        REDIS_URL                => $t->redis_url,
        DATABASE_URL             => $t->{no_pg} ? 'postgresql://crest@127.0.0.1:1/crest'
                                               : $t->database_url,
        CREST_LOG_LEVEL          => 'info',
        CREST_OUTBOX_INTERVAL_MS => 0,
        %more,
    };
}

# start_worker($t, $name, %env) — crest-worker as spawned process $name
# ($CREST_TEST_WORKER_BIN runs another build of it, e.g. with sanitizers).
sub start_worker {
    my ($t, $name, %env) = @_;
    my $bin = $ENV{CREST_TEST_WORKER_BIN} || "$REPO/build/bin/crest-worker";
    return $t->spawn($name, [$bin],
                     env => worker_env($t, CREST_WORKER_NAME => $name, %env));
}

# wait_until(sub { ... }, $seconds) — true once the sub returns true.
sub wait_until {
    my ($cond, $secs) = @_;
    my $deadline = time + ($secs // 10);
    while (time < $deadline) {
        my $v = eval { $cond->() };
        return $v if $v;
        sleep 0.1;
    }
    return;
}

sub worker_log {
    my ($t, $name) = @_;
    my $file = $t->dir . "/logs/$name.log";
    open my $fh, '<', $file or return '';
    local $/;
    return <$fh> // '';
}

# The worker's log lines as hashes (other lines are skipped).
sub log_lines {
    my ($t, $name) = @_;
    my @out;
    for my $line (split /\n/, worker_log($t, $name)) {
        my $v = eval { $JSON->decode($line) };
        push @out, $v if ref $v eq 'HASH';
    }
    return @out;
}

# The messages of the worker's warn and error lines, but PostgreSQL being
# away when the test started none.
sub problems {
    my ($t, $name) = @_;
    return map { $_->{msg} }
           grep { $_->{level} =~ /^(?:warn|error)$/
                  && !($t->{no_pg} && $_->{msg} =~ /^postgres /) }
           log_lines($t, $name);
}

# crest_queue($t, @args) — build/bin/crest-queue against the test's Redis;
# returns (exit status, stdout).
sub crest_queue {
    my ($t, @args) = @_;
    my $env = worker_env($t);
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDERR, '>&', \*STDOUT;
        exec "$REPO/build/bin/crest-queue", @args;
        exit 127;
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    $out =~ s/\s+\z//;
    return ($? >> 8, $out);
}

1;
