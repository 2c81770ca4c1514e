# crest-queue schedule-trending upserts one BullMQ job scheduler per
# platform x region of CREST_TRENDING_SCHEDULE; crest-worker then refreshes
# each on its own every CREST_TRENDING_EVERY_MS.  Node's Queue sees the
# schedulers; upserting again changes nothing.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until node_json crest_queue problems);
use Crest::FakeHTTP;
use Crest::Trending qw(yt_video yt_list tiktok_item scraper_env);

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $yt = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
my $apify = Crest::FakeHTTP->new(dir => $t->dir . '/fake-apify');
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [{ json => yt_list([yt_video('s1')]) }] }]);
$apify->set_routes([{ path => '/v2/acts/clockworks~tiktok-scraper/run-sync-get-dataset-items',
                      responses => [{ status => 201, json => [tiktok_item('t1')] }] }]);
$_->start for $yt, $apify;

local $ENV{CREST_TRENDING_SCHEDULE} = 'youtube:US, tiktok:GB';
local $ENV{CREST_TRENDING_EVERY_MS} = 1000;
my ($rc, $out) = crest_queue($t, 'schedule-trending', 'trending-refresh');
is($rc, 0, 'schedule-trending ran') or diag $out;
is($out, "trending:youtube:US:all\ntrending:tiktok:GB:all", 'two schedulers');

{
    local $ENV{CREST_TRENDING_SCHEDULE} = 'youtube:US:nope:x';
    my ($rc2, $o2) = crest_queue($t, 'schedule-trending', 'trending-refresh');
    isnt($rc2, 0, 'a bad entry is refused');
    like($o2, qr/platform:region\[:category\]/, 'with the expected form');
}

my $s = node_json('scheduler.js', $t->redis_port, 'trending-refresh', 'report', 'trending:youtube:US:all');
is($s->{scheduler}{every}, 1000, 'Node sees the scheduler, every 1000 ms');
is($s->{scheduler}{name}, 'refresh', 'job name');
is_deeply($s->{scheduler}{template}{data}, { platform => 'youtube', region => 'US' }, 'template data');

start_worker($t, 'c-sched', scraper_env(youtube => $yt->url, apify => $apify->url));

ok(wait_until(sub { scalar($yt->requests) >= 3 && scalar($apify->requests) >= 3 }, 20),
   'each platform refreshed repeatedly');
my @n = $t->psql("SELECT platform || ':' || region FROM trending_videos ORDER BY 1");
is_deeply(\@n, ['tiktok:GB', 'youtube:US'], 'rows of both');
ok($t->redis_cli('EXISTS', 'crest:trending:youtube:US:all') && $t->redis_cli('EXISTS', 'crest:trending:tiktok:GB:all'),
   'both caches written');

($rc, $out) = crest_queue($t, 'schedule-trending', 'trending-refresh');
is($rc, 0, 'upserting again works');
my @ids = split /\n/, $t->redis_cli('ZRANGE', 'bull:trending-refresh:repeat', 0, -1);
is_deeply([sort @ids], ['trending:tiktok:GB:all', 'trending:youtube:US:all'], 'still two schedulers');

$s = node_json('scheduler.js', $t->redis_port, 'trending-refresh', 'report', 'trending:youtube:US:all');
cmp_ok(scalar @{ $s->{completed} }, '>=', 2, 'completed iterations: ' . scalar @{ $s->{completed} });
ok(!grep({ $_->{failedReason} } @{ $s->{completed} }), 'none failed');

$t->spawn_stop('c-sched');
is_deeply([problems($t, 'c-sched')], [], 'no warnings or errors');
$_->stop for $yt, $apify;
$t->stop;
done_testing();
