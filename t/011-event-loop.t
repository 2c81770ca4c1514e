# The event loop never blocks: with one worker and PostgreSQL frozen
# (SIGSTOP), a request that needs it waits for its deadline while other
# requests on the same worker are answered at once.
use strict;
use warnings;
use FindBin;
use IO::Socket::IP;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 1,
    http_config => 'crest_health_timeout 1500ms;',
    config      => "include $conf;",
);
$t->start;

is($t->http(GET => '/api/health')->{status}, 200, 'healthy before the freeze');

# Sends a request on a socket of its own and returns the socket unread.
sub send_raw {
    my ($path) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $t->port, Timeout => 5)
        or die "connect: $!";
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    return $s;
}

sub read_raw {
    my ($s) = @_;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($body) = $resp =~ m{\r\n\r\n(.*)\z}s;
    return ($status // 0, $body // '');
}

$t->pg_pause;

my @slow = map { send_raw('/api/health') } 1 .. 3;
sleep 0.2;

my @live;
for (1 .. 10) {
    my $r = $t->http(GET => '/api/health/live');
    push @live, $r;
}
is(scalar(grep { $_->{status} == 200 } @live), 10, 'live answers while postgres is frozen');
my ($worst) = sort { $b <=> $a } map { $_->{elapsed} } @live;
cmp_ok($worst, '<', 0.1, 'and well under 100 ms (event loop not blocked)');

my $r = $t->http(GET => '/api/health');
is($r->{status}, 503, 'a new health check also ends in 503');
is($r->{json}{error}{details}{checks}{postgres}{error}, 'timed out', 'postgres timed out');
is($r->{json}{error}{details}{checks}{redis}{status}, 'up', 'redis answered meanwhile');

for my $s (@slow) {
    my ($status, $body) = read_raw($s);
    is($status, 503, 'the waiting request got its timeout');
    my $j = eval { JSON::PP::decode_json($body) } || {};
    is($j->{error}{code}, 'SERVICE_UNAVAILABLE', 'in the envelope');
}

$t->pg_resume;

my $end = time + 3;
do { $r = $t->http(GET => '/api/health'); sleep 0.05 }
    while $r->{status} != 200 && time < $end;
is($r->{status}, 200, 'everything recovers once postgres resumes');

$t->stop;
done_testing;
