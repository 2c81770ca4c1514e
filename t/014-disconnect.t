# A client that goes away while its query is in flight leaves no error, no
# crash and (under make test-asan) no leak or use after free.
use strict;
use warnings;
use FindBin;
use IO::Socket::IP;
use Test::More;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 1,
    http_config => 'crest_health_timeout 10s;',
    config      => "include $conf;",
);
$t->start;

sub send_raw {
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                Timeout => 5) or die "connect: $!";
    print $s "GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    return $s;
}

my @before = $t->nginx_pids;

# queries wait on a frozen server while their clients leave
$t->pg_pause;
my @s = map { send_raw() } 1 .. 5;
sleep 0.3;
close $_ for @s;
sleep 0.3;
$t->pg_resume;    # the answers now arrive for requests that are gone
sleep 0.5;

my $r = $t->http(GET => '/api/health');
is($r->{status}, 200, 'the worker is healthy after the clients left');

# clients that leave at once, racing the replies
for (1 .. 200) {
    my $s = send_raw();
    close $s;
}
sleep 0.5;

$r = $t->http(GET => '/api/health');
is($r->{status}, 200, 'still healthy after 200 early departures');
is_deeply([ $t->nginx_pids ], \@before, 'the worker did not crash and restart');
unlike($t->error_log, qr/\[error\].*crest|exited on signal/,
       'no crest error and no crash in the log');

$t->stop;
done_testing;
