# nginx -s reload under load drops no request and leaves no open socket.
use strict;
use warnings;
use FindBin;
use IO::Socket::IP;
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
# A slow answer is not a dropped one: under make test-asan, LeakSanitizer
# scanning each exiting worker slows everything, so the deadline is generous.
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_health_timeout 10s;',
    config      => "include $conf;",
);
$t->start;

my $port = $t->port;
my $clients = 4;
my $stop = $t->dir . '/stop-clients';

# Each client sends one request per connection, so that every request is
# counted; keepalive connections closed between requests by an old worker
# are a client retry matter, not a dropped request.
sub client {
    my ($out) = @_;
    my ($ok, $bad, $why) = (0, 0, '');
    # until the parent is done reloading, however slow the build (ASan) is
    while (!-e $stop) {
        my $start = time;
        my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                    Timeout => 5);
        if (!$s) { $bad++; $why = "connect: $!"; next }
        print $s "GET /api/health HTTP/1.0\r\nHost: localhost\r\n\r\n";
        local $/;
        my $resp = <$s> // '';
        close $s;
        if ($resp =~ m{^HTTP/1\.\d 200 } && $resp =~ /"success":true/) { $ok++ }
        else {
            $bad++;
            $why = sprintf('after %.3fs: %s', time - $start,
                           substr($resp, 0, 300) =~ s/\s+/ /gr);
        }
    }
    print $out "$ok $bad $why\n";
    close $out;
    POSIX::_exit(0);
}

my @readers;
for (1 .. $clients) {
    pipe(my $r, my $w) or die $!;
    my $pid = fork // die $!;
    if ($pid == 0) { close $r; client($w) }
    close $w;
    push @readers, [$pid, $r];
}

sleep 0.5;
for (1 .. 3) {
    $t->nginx_reload;
    sleep 0.5;
}
open(my $fh, '>', $stop) or die "$stop: $!";
close $fh;

my ($ok, $bad) = (0, 0);
for (@readers) {
    my ($pid, $r) = @$_;
    my $line = <$r> // '0 1';
    waitpid $pid, 0;
    chomp $line;
    my ($o, $b, $why) = split ' ', $line, 3;
    $ok += $o;
    $bad += $b;
    diag("a client's last failure: $why") if $b;
}

cmp_ok($ok, '>=', $clients, "requests were served during the reloads ($ok)");
is($bad, 0, 'no request failed or was dropped');

$t->stop;    # checks the error log: no alert, crit, emerg or open socket
done_testing;
