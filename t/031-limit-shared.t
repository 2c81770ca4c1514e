# A shared budget: three nginx instances on different ports sharing one
# Redis let through exactly the zone's limit with the redis policy, and
# about it (within a stated tolerance) with the sync policy.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $zones = q{
    crest_limit_zone zone=shared key=$binary_remote_addr rate=30r/m policy=redis;
    crest_limit_zone zone=synced key=$binary_remote_addr rate=30r/m policy=sync sync=10ms;
};
my $locations = q{
    location = /redis { crest_limit zone=shared; crest_health live; }
    location = /sync  { crest_limit zone=synced; crest_health live; }
};

# the first instance owns Redis (and PostgreSQL); the others point at it
my $first = Crest::Test->new(workers => 1, http_config => $zones, config => $locations);
$first->start;

my @nodes = ($first);
for (1 .. 2) {
    my $t = Crest::Test->new(
        workers     => 1,
        no_pg       => 1,
        no_redis    => 1,
        http_config => "crest_redis_server " . $first->redis_addr . ";\n$zones",
        config      => $locations,
    );
    $t->start;
    push @nodes, $t;
}

# round robin over the three instances
sub spray {
    my ($path, $n, $pause) = @_;
    my ($ok, $limited) = (0, 0);
    for my $i (0 .. $n - 1) {
        my $st = $nodes[$i % 3]->http(GET => $path)->{status};
        $ok++ if $st == 200;
        $limited++ if $st == 429;
        sleep $pause if $pause;
    }
    return ($ok, $limited);
}

my ($ok, $limited) = spray('/redis', 90);
is($ok, 30, 'redis policy: exactly the zone\'s 30 pass across three instances');
is($limited, 60, 'the other 60 are refused');

# sync: decisions are local; each instance learns what the others admitted
# at most one sync interval (10 ms) plus a round trip late.  Requests 20 ms
# apart leave each instance at most one request behind the others, so the
# stated tolerance is the limit plus one per instance.
($ok, $limited) = spray('/sync', 90, 0.02);
cmp_ok($ok, '>=', 30, "sync policy: at least the limit passes ($ok)");
cmp_ok($ok, '<=', 33, 'and at most the limit plus one per instance');
is($ok + $limited, 90, 'everything else is refused');

my ($alone) = spray("/sync", 1);
is($alone, 0, 'the shared budget stays spent on every instance');

$_->stop for reverse @nodes;
done_testing;
