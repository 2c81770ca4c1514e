# GET /api/health follows PostgreSQL and Redis as they stop and come back,
# with no reload, while nginx keeps serving.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(workers => 1, config => "include $conf;");
$t->start;

# Polls GET /api/health until $want answers or the deadline passes.
sub health_until {
    my ($want, $deadline) = @_;
    my $end = time + $deadline;
    my $r;
    while (1) {
        $r = $t->http(GET => '/api/health');
        return $r if $r->{status} == $want || time > $end;
        sleep 0.05;
    }
}

my $r = $t->http(GET => '/api/health');
is($r->{status}, 200, 'health is 200 with both up');
is($r->{headers}{'content-type'}, 'application/json; charset=utf-8', 'json');
ok($r->{json}{success}, 'success is true');
is($r->{json}{data}{checks}{$_}{status}, 'up', "$_ is up") for qw(postgres redis);
like($r->{json}{data}{checks}{$_}{latencyMs}, qr/^\d+(\.\d+)?$/, "$_ latency is a number")
    for qw(postgres redis);
like($r->{json}{meta}{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'meta.timestamp');
like($r->{json}{meta}{requestId}, qr/^[0-9a-f]{32}$/, 'meta.requestId');

$r = $t->http(GET => '/api/health/live');
is($r->{status}, 200, 'live is 200');
is($r->{json}{data}{status}, 'ok', 'live says ok');

for my $dep (
    [ redis    => sub { $t->redis_stop }, sub { $t->redis_start } ],
    [ postgres => sub { $t->pg_stop },    sub { $t->pg_start } ],
) {
    my ($name, $stop, $start) = @$dep;
    my $other = $name eq 'redis' ? 'postgres' : 'redis';

    $stop->();
    $r = health_until(503, 1);
    is($r->{status}, 503, "$name stopped: 503 within a second");
    is($r->{json}{error}{code}, 'SERVICE_UNAVAILABLE', 'code SERVICE_UNAVAILABLE');
    is($r->{json}{error}{message}, "$name is unavailable", "the message names $name");
    is($r->{json}{error}{details}{checks}{$name}{status}, 'down', "$name is down");
    is($r->{json}{error}{details}{checks}{$other}{status}, 'up', "$other is still up");

    $r = $t->http(GET => '/api/health/live');
    is($r->{status}, 200, "nginx keeps serving while $name is down");

    # more requests while it is down: answered at once, never queued
    my $n503 = grep { $t->http(GET => '/api/health')->{status} == 503 } 1 .. 20;
    is($n503, 20, "every check while $name is down answers 503");

    $start->();
    $r = health_until(200, 2);
    is($r->{status}, 200, "$name back: 200 within two seconds, no reload");
}

$t->stop;
done_testing;
