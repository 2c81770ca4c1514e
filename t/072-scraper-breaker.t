# Resilience per platform: Reddit answering 500s opens its circuit breaker
# (shared through Redis) after 5 failed calls, later jobs fail fast without
# calling it, while TikTok and X (Apify) and YouTube still refresh; after the
# open period one probe call closes it again.  Also: Reddit's User-Agent
# and X-Ratelimit-* headers, Apify's request shape and its error answers.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker problems);
use Crest::FakeHTTP;
use Crest::Trending qw(yt_video yt_list reddit_listing tiktok_item x_item refresh scraper_env);

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $reddit = Crest::FakeHTTP->new(dir => $t->dir . '/fake-reddit');
my $apify  = Crest::FakeHTTP->new(dir => $t->dir . '/fake-apify');
my $yt     = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
$reddit->set_routes([{ path => '/r/videos/hot.json', responses => [
    { status => 500, body => '<html>internal error</html>', headers => { 'Content-Type' => 'text/html' } }] }]);
$apify->set_routes([
    { path => '/v2/acts/clockworks~tiktok-scraper/run-sync-get-dataset-items',
      responses => [{ status => 201, json => [tiktok_item('7001'), tiktok_item('7002', views => 7)] }] },
    { path => '/v2/acts/me~x-trends/run-sync-get-dataset-items',
      responses => [{ status => 201, json => [x_item('1800000000000000001')] }] }]);
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [{ json => yt_list([yt_video('y1')]) }] }]);
$_->start for $reddit, $apify, $yt;

start_worker($t, 'c-brk', scraper_env(youtube => $yt->url, apify => $apify->url,
    reddit => $reddit->url, more => {
        CREST_TRENDING_BREAKER_OPEN_MS => 2000, CREST_TRENDING_RETRIES => 2,
        CREST_TRENDING_APIFY_X_ACTOR => 'me~x-trends',
        CREST_TRENDING_APIFY_TIKTOK_INPUT => '{"region":"{region}","resultsPerPage":"{maxItems}","keep":"yes"}',
        CREST_TRENDING_REDDIT_USER_AGENT => 'linux:crest-test:1.0 (by /u/crest-test)' }));

my $j = refresh($t, { platform => 'reddit', category => 'videos' });
is($j->{state}, 'failed', 'reddit: the first job fails after its retries');
like($j->{failedReason}, qr{reddit /r/videos/hot.json: HTTP 500}, 'with the last error');
is(scalar $reddit->requests, 3, 'three calls (two retries)');

$j = refresh($t, { platform => 'reddit' });
is($j->{state}, 'failed', 'the second job fails');
is(scalar $reddit->requests, 5, 'the fifth failed call opened the breaker');
like($j->{failedReason}, qr/circuit open/, 'and says so');
is($t->redis_cli('HGET', 'crest:trending:breaker:reddit', 'failures'), 5, 'state in Redis');

$j = refresh($t, { platform => 'reddit' });
like($j->{failedReason}, qr/reddit: circuit open for \d+ ms more/, 'open: fails fast');
is(scalar $reddit->requests, 5, 'without calling Reddit');

# the other platforms go on
$j = refresh($t, { platform => 'tiktok', region => 'de' });
is($j->{state}, 'completed', 'tiktok refreshes meanwhile') or diag explain $j;
is($j->{ret}{items}, 2, 'two TikTok videos');
my ($req) = $apify->requests;
is($req->{method}, 'POST', 'Apify: POST');
is($req->{headers}{authorization}, 'Bearer apify-token', 'Bearer token');
like($req->{query}, qr/format=json/, 'format=json');
is_deeply(decode_json($req->{body}), { region => 'DE', resultsPerPage => 50, keep => 'yes' },
          'the configured actor input, filled in');
my $c = decode_json($t->redis_cli('GET', 'crest:trending:tiktok:DE:all'));
is_deeply([@{ $c->{items}[0] }{qw(platformId viewCount durationSeconds creatorName creatorUrl url publishedAt)}],
          ['7001', 5000, 15, 'User 7001', 'https://www.tiktok.com/@u7001',
           'https://www.tiktok.com/@u7001/video/7001', '2026-11-21T12:00:00Z'], 'a TikTok record');
is_deeply($c->{items}[0]{hashtags}, ['fyp', 'dance'], 'hashtags');
my $ttl = $t->redis_cli('TTL', 'crest:trending:tiktok:DE:all');
ok($ttl > 890 && $ttl <= 900, "TikTok cache TTL 15 min ($ttl)");

$j = refresh($t, { platform => 'x', region => 'US' });
is($j->{state}, 'completed', 'x refreshes meanwhile') or diag explain $j;
my ($x) = $t->psql("SELECT platform_id, view_count, creator_url, published_at AT TIME ZONE 'UTC', hashtags
                    FROM trending_videos WHERE platform = 'x'");
is($x, '1800000000000000001|900|https://x.com/a|2026-11-21 12:00:00|{news}', 'an X record');

$j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'completed', 'youtube refreshes meanwhile');

# half-open after the open period: one probe; Reddit is back
sleep 2.1;
$reddit->set_routes([{ path => '/r/videos/hot.json', responses => [
    { json => reddit_listing({ id => 'r1', score => 77 }, { id => 'r2' }),
      headers => { 'X-Ratelimit-Used' => 99, 'X-Ratelimit-Remaining' => '0.0', 'X-Ratelimit-Reset' => 1 } }] }]);
$j = refresh($t, { platform => 'reddit' });
is($j->{state}, 'completed', 'half-open: the probe succeeds') or diag explain $j;
is($t->redis_cli('EXISTS', 'crest:trending:breaker:reddit'), 0, 'the breaker is closed');
my @r = $reddit->requests;
is($r[-1]{headers}{'user-agent'}, 'linux:crest-test:1.0 (by /u/crest-test)', 'Reddit User-Agent');
like($r[-1]{query}, qr/raw_json=1/, 'raw_json=1');
my ($row) = $t->psql("SELECT like_count, comment_count, duration_s, url FROM trending_videos WHERE platform_id = 'r1'");
is($row, '77|3|42|https://www.reddit.com/r/videos/comments/r1/post/', 'a Reddit record');

# X-Ratelimit-Remaining 0, Reset 1: the next call waits for the reset
my $t0 = time;
$j = refresh($t, { platform => 'reddit' });
is($j->{state}, 'completed', 'the next refresh completes');
@r = $reddit->requests;
cmp_ok($r[-1]{at} - $r[-2]{at}, '>=', 0.9, 'after waiting for X-Ratelimit-Reset');

# a half-open probe that fails reopens at once
$t->redis_cli('DEL', 'crest:trending:ratelimit:reddit');
$reddit->set_routes([{ path => '/r/videos/hot.json', responses => [{ status => 503 }] }]);
$t->redis_cli('HSET', 'crest:trending:breaker:reddit', 'failures', 5, 'open_until', int(time * 1000) - 1);
my $n = scalar $reddit->requests;
$j = refresh($t, { platform => 'reddit' });
is($j->{state}, 'failed', 'a failed probe');
is(scalar $reddit->requests, $n + 1, 'one probe call only');
like($j->{failedReason}, qr/circuit open/, 'reopens the breaker');

# Apify errors: a 4xx is not retried and does not count as an outage
$apify->clear_requests;
$apify->set_routes([{ path => '/v2/acts/clockworks~tiktok-scraper/run-sync-get-dataset-items',
    responses => [{ status => 401, json => { error => { type => 'token-not-valid', message => 'Authentication token is not valid.' } } }] }]);
$j = refresh($t, { platform => 'tiktok' });
like($j->{failedReason}, qr/HTTP 401: Authentication token is not valid/, 'apify 401 reported');
is(scalar $apify->requests, 1, 'not retried');

$_->stop for $reddit, $apify, $yt;
$t->spawn_stop('c-brk');
$t->stop;
done_testing();
