# trending-refresh against a local server that answers as the YouTube Data
# API v3 does: the chart (two pages) fills trending_videos and the serving
# cache; a second refresh updates counts and ranks without new rows; a 429
# with Retry-After and a malformed answer are retried; keyword discovery
# goes through search.list then videos.list?id=.  Nothing leaves 127.0.0.1.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems);
use Crest::FakeHTTP;
use Crest::Trending qw(yt_video yt_list refresh scraper_env);

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $yt = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
my @p1 = map { yt_video("vid$_", views => 1000 * $_) } 1 .. 3;
$p1[1]{contentDetails}{duration} = 'PT1H2M3S';
my @p2 = (yt_video('vid4', views => 4000), yt_video('vid5', views => 5));
sub chart {
    my ($a, $b) = @_;
    $yt->set_routes([
        { path => '/youtube/v3/videos', query => 'pageToken=P2',
          responses => [{ json => yt_list($b) }] },
        { path => '/youtube/v3/videos', query => 'chart=mostPopular',
          responses => [{ json => yt_list($a, next => 'P2') }] },
    ]);
}
chart(\@p1, \@p2);
$yt->start;

start_worker($t, 'c-trend', scraper_env(youtube => $yt->url,
             more => { CREST_TRENDING_YOUTUBE_PAGES => 2 }));

my $j = refresh($t, { platform => 'youtube', region => 'us' });
is($j->{state}, 'completed', 'refresh completed') or diag explain $j;
is_deeply([@{ $j->{ret} }{qw(items inserted updated cacheKey ttl)}],
          [5, 5, 0, 'crest:trending:youtube:US:all', 1800], 'result: 5 new rows, the cache key')
    or diag explain $j->{ret};
is($j->{ret}{quota}{used}, 2, 'two videos.list calls charged');

my @req = $yt->requests('/youtube/v3/videos');
is(scalar @req, 2, 'two requests (two pages)');
like($req[0]{query}, qr/(?:^|&)chart=mostPopular(?:&|$)/, 'chart=mostPopular');
like($req[0]{query}, qr/regionCode=US/, 'regionCode upper-cased');
like($req[0]{query}, qr/maxResults=50/, 'maxResults 50');
like($req[0]{query}, qr/part=snippet,statistics,contentDetails/, 'parts');
like($req[0]{query}, qr/key=test-key/, 'API key');
like($req[1]{query}, qr/pageToken=P2/, 'second page by pageToken');

my @rows = $t->psql("SELECT platform_id, rank, view_count, like_count, comment_count, duration_s,
    title, creator_name, creator_url, url, thumbnail_url, hashtags, published_at AT TIME ZONE 'UTC',
    category FROM trending_videos ORDER BY rank");
is(scalar @rows, 5, 'five rows');
is($rows[1], 'vid2|2|2000|10|1|3723|Video vid2 #Music #live|Channel vid2|https://www.youtube.com/channel/UCvid2|'
   . 'https://www.youtube.com/watch?v=vid2|https://i.ytimg.com/vi/vid2/hqdefault.jpg|{music,live,crest}|2026-11-20 10:00:00|',
   'a row normalised: counts, duration from PT1H2M3S, creator, URLs, hashtags');
like($rows[3], qr/^vid4\|4\|4000\|/, 'page two ranks after page one');

my $cache = $t->redis_cli('GET', 'crest:trending:youtube:US:all');
my $c = decode_json($cache);
is($c->{count}, 5, 'cache: five items');
is_deeply([map { $_->{platformId} } @{ $c->{items} }], [qw(vid1 vid2 vid3 vid4 vid5)], 'in rank order');
is($c->{items}[0]{durationSeconds}, 253, 'PT4M13S = 253 s');
is($c->{items}[0]{viewCount}, 1000, 'counts as numbers');
my $ttl = $t->redis_cli('TTL', 'crest:trending:youtube:US:all');
ok($ttl > 1790 && $ttl <= 1800, "cache TTL 30 min ($ttl)");

# second refresh: new counts, vid3 gone, vid6 new, ranks move
@p1 = (yt_video('vid3', views => 9999), yt_video('vid1', views => 1500), yt_video('vid6', views => 1));
chart(\@p1, [yt_video('vid2', views => 2500)]);
$j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'completed', 'second refresh completed');
is_deeply([@{ $j->{ret} }{qw(items inserted updated)}], [4, 1, 3], 'one new, three updated');
my ($n) = $t->psql('SELECT count(*) FROM trending_videos');
is($n, 6, 'no duplicate rows');
my ($v) = $t->psql("SELECT view_count || '|' || rank FROM trending_videos WHERE platform_id = 'vid3'");
is($v, '9999|1', 'counts and rank updated in place');
($n) = $t->psql("SELECT count(*) FROM trending_videos WHERE fetched_at < now() - interval '1 second'");
cmp_ok($n, '<=', 2, 'fetched_at moved for rows seen again');

# 429 with Retry-After, then malformed JSON, then the answer
$yt->clear_requests;
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [
    { status => 429, headers => { 'Retry-After' => '1' },
      json => { error => { code => 429, message => 'slow down' } } },
    { status => 200, body => '{"kind":"youtube#videoListResponse","items":[' },
    { json => yt_list([yt_video('vid7')]) } ] }]);
$j = refresh($t, { platform => 'youtube', region => 'GB', category => '10' });
is($j->{state}, 'completed', 'completed after a 429 and a malformed answer') or diag explain $j;
@req = $yt->requests;
is(scalar @req, 3, 'three calls');
cmp_ok($req[1]{at} - $req[0]{at}, '>=', 0.95, 'Retry-After: 1 honoured');
like($req[0]{query}, qr/videoCategoryId=10/, 'videoCategoryId');
is($j->{ret}{cacheKey}, 'crest:trending:youtube:GB:10', 'cache per category');

# 503 then 500 then the answer: retried with backoff; the breaker resets
$yt->clear_requests;
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [
    { status => 503, body => 'unavailable', headers => { 'Content-Type' => 'text/plain' } },
    { status => 500, json => { error => { code => 500, message => 'backend error' } } },
    { json => yt_list([yt_video('vid8')]) } ] }]);
$j = refresh($t, { platform => 'youtube', region => 'FR' });
is($j->{state}, 'completed', 'completed after two 5xx') or diag explain $j;
is(scalar $yt->requests, 3, 'two retries');
is($t->redis_cli('EXISTS', 'crest:trending:breaker:youtube'), 0, 'the success reset the breaker');

# all retries fail: the job fails with the last error (BullMQ may retry it)
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [{ status => 502, body => '' }] }]);
$j = refresh($t, { platform => 'youtube', region => 'FR' });
is($j->{state}, 'failed', 'three 502s fail the job');
like($j->{failedReason}, qr{youtube videos.list page 1: HTTP 502}, 'with the last error');
$t->redis_cli('DEL', 'crest:trending:breaker:youtube');

# keyword discovery: search.list, then videos.list?id=
$yt->clear_requests;
$yt->set_routes([
    { path => '/youtube/v3/search', responses => [{ json => {
        kind => 'youtube#searchListResponse',
        items => [ map { { kind => 'youtube#searchResult', id => { kind => 'youtube#video', videoId => $_ },
                           snippet => { title => $_ } } } qw(s1 s2) ] } }] },
    { path => '/youtube/v3/videos', query => 'id=s1,s2',
      responses => [{ json => yt_list([yt_video('s1'), yt_video('s2')]) }] }]);
$j = refresh($t, { platform => 'youtube', region => 'US', query => 'lofi beats' });
is($j->{state}, 'completed', 'keyword discovery completed') or diag explain $j;
is($j->{ret}{items}, 2, 'two videos');
@req = $yt->requests;
is_deeply([map { $_->{path} } @req], ['/youtube/v3/search', '/youtube/v3/videos'], 'search then videos');
like($req[0]{query}, qr/q=lofi%20beats/, 'query escaped');
is($j->{ret}{cacheKey}, 'crest:trending:youtube:US:q:lofi_beats', 'its own cache key');

$j = refresh($t, { platform => 'myspace' });
is($j->{state}, 'failed', 'an unknown platform fails');
like($j->{failedReason}, qr/platform/, 'and says why');

$yt->stop;
$t->spawn_stop('c-trend');
is_deeply([grep { !/trending: refresh failed/ } problems($t, 'c-trend')], [], 'no other warnings');
$t->stop;
done_testing();
