# GET /api/trending, /regions and /categories through the real stack:
# nginx (crest-api.conf), PostgreSQL, Redis and a crest-worker serving
# trending-refresh against a local server answering as YouTube does.
# An empty chart answers an empty page and enqueues a refresh, which fills
# PostgreSQL and Redis; the next answer is that data, kept in shared memory
# (proven by deleting it from Redis and PostgreSQL); pages, ETag/304,
# validation, 401; stale data is served and a burst enqueues one refresh;
# Redis down answers from PostgreSQL; both down, the warm cache answers.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until);
use Crest::Jobs qw(session bearer);
use Crest::FakeHTTP;
use Crest::Trending qw(yt_video yt_list scraper_env);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_jobs_queues ping trending-refresh;
                    crest_trending_cache zone=trending:1m valid=60s refresh=60s;
                    crest_pg_query_timeout 1s;
                    crest_redis_command_timeout 500ms;',
    config      => "include $conf;",
);
$t->start;

my $yt = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
$yt->set_routes([{ path => '/youtube/v3/videos', query => 'chart=mostPopular',
    responses => [{ json => yt_list([map { yt_video("vid$_", views => 100 * (6 - $_)) } 1 .. 5]) }] }]);
$yt->start;
start_worker($t, 'trend', scraper_env(youtube => $yt->url));

my $alice = session($t, 'alice@example.com');

sub get {
    my ($q, %h) = @_;
    return $t->http(GET => "/api/trending$q", headers => { %{ bearer($alice) }, %h });
}
sub ids { [map { $_->{platformId} } @{ $_[0]{json}{data}{videos} }] }
sub jobs {
    my ($where) = @_;
    my ($n) = $t->psql("SELECT count(*) FROM jobs WHERE queue = 'trending-refresh' AND $where");
    return $n;
}

# --- authentication
for my $p ('', '/regions', '/categories') {
    my $r = $t->http(GET => "/api/trending$p");
    is($r->{status}, 401, "no token: 401 on /api/trending$p");
    is($r->{json}{error}{code}, 'UNAUTHORIZED', '  in the envelope');
}

# --- validation: each bad value names its field
for my $c (['?platform=myspace', 'platform'], ['?platform=', 'platform'],
           ['?region=USA', 'region'], ['?region=1A', 'region'], ['?region=', 'region'],
           ['?platform=youtube&category=music', 'category'],
           ['?platform=reddit&category=a-b', 'category'],
           ['?platform=all&category=10', 'category'], ['?category=10', 'category'],
           ['?page=0', 'page'], ['?page=x', 'page'], ['?page=10001', 'page'],
           ['?limit=0', 'limit'], ['?limit=51', 'limit'], ['?limit=-1', 'limit'])
{
    my $r = get($c->[0]);
    is($r->{status}, 400, "$c->[0]: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', '  VALIDATION_ERROR');
    is($r->{json}{error}{details}{field}, $c->[1], "  names $c->[1]");
}
is(get('?limit=50&page=10000&region=CA')->{status}, 200, 'limit 50 and page 10000 are allowed');
my $r = $t->http(POST => '/api/trending', json => {}, headers => bearer($alice));
is($r->{status}, 405, 'POST: 405');

# --- regions and categories
$r = $t->http(GET => '/api/trending/regions', headers => bearer($alice));
is($r->{status}, 200, 'regions: 200');
is_deeply($r->{json}{data}{regions}[0], { code => 'US', name => 'United States' }, 'regions: US first');
$r = $t->http(GET => '/api/trending/categories?platform=youtube', headers => bearer($alice));
is($r->{status}, 200, 'categories: 200');
my @cats = @{ $r->{json}{data}{categories} };
ok((grep { $_->{id} eq '10' && $_->{name} eq 'Music' } @cats), 'categories: YouTube 10 is Music');
is_deeply([grep { $_->{platform} ne 'youtube' } @cats], [], '?platform=youtube: YouTube only');
$r = $t->http(GET => '/api/trending/categories', headers => bearer($alice));
ok((grep { $_->{platform} eq 'reddit' && $_->{id} eq 'videos' } @{ $r->{json}{data}{categories} }),
   'all categories: Reddit subreddits too');
is($t->http(GET => '/api/trending/categories?platform=bad', headers => bearer($alice))->{status},
   400, 'categories: a bad platform is 400');

# --- nothing anywhere: an empty page, and one refresh enqueued
$r = get('?platform=youtube&region=us');
is($r->{status}, 200, 'empty chart: 200');
my $d = $r->{json}{data};
is_deeply($d->{videos}, [], '  no videos');
is_deeply($d->{pagination}, { page => 1, limit => 10, total => 0, totalPages => 0, hasMore => JSON::PP::false }, '  pagination');
is($d->{cacheExpiry}, undef, '  cacheExpiry null');
is($r->{json}{meta}{region}, 'US', '  meta.region upper-cased');
is($r->{json}{meta}{platform}, 'youtube', '  meta.platform');
ok(!exists $r->{headers}{etag}, '  no ETag for an empty page');
is(jobs("data->>'region' = 'US'"), 1, '  a refresh job row');
my ($row) = $t->psql("SELECT coalesce(user_id::text, 'system') || '|' || name || '|' || data::text
                      FROM jobs WHERE queue = 'trending-refresh' AND data->>'region' = 'US'");
is($row, 'system|refresh|{"region": "US", "platform": "youtube"}', '  a system job with the chart in its data');
get('?platform=youtube&region=US');
is(jobs("data->>'region' = 'US'"), 1, '  asking again within refresh=: no second job');

ok(wait_until(sub { ($t->psql("SELECT status FROM jobs WHERE queue = 'trending-refresh' AND data->>'region' = 'US'"))[0] eq 'completed' }, 30),
   'the worker completed the refresh');
my ($n) = $t->psql("SELECT count(*) FROM trending_videos WHERE region = 'US'");
is($n, 5, 'PostgreSQL filled');
ok($t->redis_cli('EXISTS', 'crest:trending:youtube:US:all'), 'Redis filled');

# --- the refreshed data is served
$r = get('?platform=youtube&region=US');
is($r->{status}, 200, 'after the refresh: 200');
$d = $r->{json}{data};
is_deeply(ids($r), [qw(vid1 vid2 vid3 vid4 vid5)], '  the five videos in rank order');
is($d->{cached}, JSON::PP::true, '  cached (from Redis)');
is($d->{videos}[0]{viewCount}, 500, '  counts as numbers');
is($d->{videos}[0]{url}, 'https://www.youtube.com/watch?v=vid1', '  the worker\'s record');
my $cache = decode_json($t->redis_cli('GET', 'crest:trending:youtube:US:all'));
is_deeply($d->{videos}, $cache->{items}, '  exactly the items of the serving cache');
like($d->{cacheExpiry}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, '  cacheExpiry ISO-8601');
my ($y, $mo, $dd, $h, $mi, $s) = $cache->{fetchedAt} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)Z$/;
{
    local $ENV{TZ} = 'UTC'; POSIX::tzset();
    my $fetched = POSIX::mktime($s, $mi, $h, $dd, $mo - 1, $y - 1900);
    my ($ey, $emo, $edd, $eh, $emi, $es) = $d->{cacheExpiry} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)/;
    my $exp = POSIX::mktime($es, $emi, $eh, $edd, $emo - 1, $ey - 1900);
    is($exp - $fetched, 1800, '  cacheExpiry = fetchedAt + the worker\'s TTL');
}
my $etag = $r->{headers}{etag};
like($etag, qr/^"[0-9a-f]{16}-1-10"$/, '  a strong ETag');

# --- shared memory: Redis and PostgreSQL emptied, the same answer
$t->redis_cli('DEL', 'crest:trending:youtube:US:all');
$t->psql("DELETE FROM trending_videos WHERE region = 'US'");
my $r2 = get('?platform=youtube&region=US');
is($r2->{status}, 200, 'Redis key and rows gone: 200');
is_deeply($r2->{json}{data}{videos}, $d->{videos}, '  the same videos, from shared memory');
is($r2->{headers}{etag}, $etag, '  the same ETag');
is($r2->{json}{data}{cached}, JSON::PP::true, '  cached');
is(get('?region=US&platform=youtube&utm=x')->{headers}{etag}, $etag,
   'an unknown argument is ignored (same chart, same ETag)');

# --- pages
my @seen;
for my $p (1 .. 3) {
    $r = get("?platform=youtube&region=US&limit=2&page=$p");
    push @seen, @{ ids($r) };
    is_deeply($r->{json}{data}{pagination},
              { page => $p, limit => 2, total => 5, totalPages => 3, hasMore => ($p < 3 ? JSON::PP::true : JSON::PP::false) },
              "page $p of 3: pagination");
    like($r->{headers}{etag}, qr/-$p-2"$/, "  its own ETag");
}
is_deeply(\@seen, [qw(vid1 vid2 vid3 vid4 vid5)], 'pages 1-3 hold every video once, in order');
$r = get('?platform=youtube&region=US&limit=2&page=4');
is_deeply([ids($r), $r->{json}{data}{pagination}{hasMore}], [[], JSON::PP::false], 'page 4: empty, no more');
$r = get('?platform=youtube&region=US&limit=5');
is($r->{json}{data}{pagination}{hasMore}, JSON::PP::false, 'limit 5 of 5: hasMore false');

# --- ETag and If-None-Match
$r = get('?platform=youtube&region=US', 'If-None-Match' => $etag);
is($r->{status}, 304, 'If-None-Match with the ETag: 304');
is($r->{content}, '', '  no body');
is($r->{headers}{etag}, $etag, '  the ETag again');
is(get('?platform=youtube&region=US', 'If-None-Match' => "\"x\", W/$etag")->{status}, 304,
   '  a list with the weak form matches too');
is(get('?platform=youtube&region=US', 'If-None-Match' => '"0000000000000000-1-10"')->{status}, 200,
   'another ETag: 200');
is(get('?platform=youtube&region=US&limit=2', 'If-None-Match' => $etag)->{status}, 200,
   'another page: 200');

# --- stale data: served, and a burst enqueues one refresh
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [{ status => 400, json => { error => { code => 400, message => 'no' } } }] }]);
$t->psql(q{INSERT INTO trending_videos (platform, platform_id, region, rank, title, view_count, url, fetched_at)
           SELECT 'youtube', 'old' || i, 'FR', i, 'old ' || i, 10 - i, 'https://y/' || i, now() - interval '2 hours'
           FROM generate_series(1, 3) i});
my @kids;
for my $i (1 .. 8) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $res = HTTP::Tiny->new(timeout => 10)->get($t->url('/api/trending?platform=youtube&region=FR'),
                                                      { headers => bearer($alice) });
        my $v = eval { decode_json($res->{content}) };
        POSIX::_exit($res->{status} == 200 && $v && @{ $v->{data}{videos} } == 3 ? 0 : 1);
    }
    push @kids, $pid;
}
my $ok = 0;
for (@kids) { waitpid($_, 0); $ok++ if $? == 0 }
is($ok, 8, 'stale data: eight parallel requests all got the three videos');
is(jobs("data->>'region' = 'FR'"), 1, '  exactly one refresh enqueued');
$r = get('?platform=youtube&region=FR');
is_deeply(ids($r), [qw(old1 old2 old3)], '  the stale rows in rank order');
is($r->{json}{data}{cached}, JSON::PP::true, '  from shared memory now');
ok($r->{json}{data}{cacheExpiry} lt POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime), '  cacheExpiry in the past');
is(jobs("data->>'region' = 'FR'"), 1, '  still one refresh');
cmp_ok($t->redis_cli('PTTL', 'crest:trending:refresh:youtube:FR:all'), '>', 0,
       '  its lock for other nginx hosts, for refresh=');

# another host's lock: stale data served, no second job
$t->redis_cli('SET', 'crest:trending:refresh:youtube:NL:all', 1, 'PX', 60000);
$t->psql(q{INSERT INTO trending_videos (platform, platform_id, region, rank, title, view_count, url, fetched_at)
           VALUES ('youtube', 'nl1', 'NL', 1, 'nl1', 3, 'u', now() - interval '2 hours')});
$r = get('?platform=youtube&region=NL');
is_deeply(ids($r), ['nl1'], 'stale, locked by another host: served');
is(jobs("data->>'region' = 'NL'"), 0, '  and no job enqueued here');

# --- platform=all merges by view count (PostgreSQL and Redis)
$t->psql(q{INSERT INTO trending_videos (platform, platform_id, region, category, rank, title, view_count, url)
           VALUES ('youtube', 'y1', 'JP', '', 1, 'y1', 50, 'u'), ('youtube', 'y2', 'JP', '', 2, 'y2', NULL, 'u'),
                  ('tiktok', 't1', 'JP', '', 1, 't1', 70, 'u'), ('x', 'x1', 'JP', '', 1, 'x1', 60, 'u'),
                  ('reddit', 'r1', 'JP', 'videos', 1, 'r1', 65, 'u'), ('reddit', 'r2', 'JP', 'funny', 1, 'r2', 99, 'u')});
$r = get('?platform=all&region=JP');
is_deeply(ids($r), [qw(t1 r1 x1 y1 y2)], 'all (PostgreSQL): merged by views, unknown views last, r/funny not in it');
is($r->{json}{data}{cached}, JSON::PP::false, '  not cached: from PostgreSQL');
is($r->{json}{meta}{platform}, 'all', '  meta.platform all');
is(get('?region=JP')->{headers}{etag}, $r->{headers}{etag}, '  platform defaults to all');
$r = get('?platform=reddit&region=JP&category=funny');
is_deeply(ids($r), ['r2'], 'a subreddit as the category');

my $now = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
for my $p (['youtube', 'all', [['ky1', 5], ['ky2', 500]]], ['tiktok', 'all', [['kt1', 50]]],
           ['x', 'all', [['kx1', 40]]], ['reddit', 'videos', [['kr1', 45]]]) {
    my ($plat, $cat, $items) = @$p;
    my $i = 0;
    my $doc = { platform => $plat, region => 'KR', category => $cat eq 'all' ? '' : $cat,
                fetchedAt => $now, ttl => 900, count => scalar @$items,
                items => [map { { platform => $plat, platformId => $_->[0], rank => ++$i, viewCount => $_->[1] } } @$items] };
    $t->redis_cli('SET', "crest:trending:$plat:KR:$cat", encode_json($doc), 'EX', 900);
}
$r = get('?platform=all&region=KR');
is_deeply(ids($r), [qw(ky2 kt1 kr1 kx1 ky1)], 'all (Redis): the four charts merged by views');
is($r->{json}{data}{cached}, JSON::PP::true, '  cached');
is(jobs("data->>'region' = 'KR'"), 0, '  fresh: no refresh');

# --- Redis down: PostgreSQL answers
$t->psql(q{INSERT INTO trending_videos (platform, platform_id, region, rank, title, view_count, url)
           VALUES ('youtube', 'it1', 'IT', 1, 'it1', 5, 'u'), ('youtube', 'it2', 'IT', 2, 'it2', 9, 'u')});
$t->redis_stop;
$r = get('?platform=youtube&region=IT');
is($r->{status}, 200, 'Redis down: 200');
is_deeply(ids($r), [qw(it1 it2)], '  the rows from PostgreSQL');
is($r->{json}{data}{cached}, JSON::PP::false, '  not cached');
is(jobs("data->>'region' = 'IT'"), 0, '  fresh rows: no refresh');

# --- PostgreSQL down too: the warm cache still answers; a cold chart is 503
$t->pg_stop;
$r = get('?platform=youtube&region=US');
is($r->{status}, 200, 'PostgreSQL and Redis down: 200 from shared memory');
is_deeply($r->{json}{data}{videos}, $d->{videos}, '  the same videos');
$r = get('?platform=youtube&region=FR');
is($r->{status}, 200, '  stale data too (its refresh cannot be enqueued: the read still answers)');
$r = get('?platform=youtube&region=BR');
is($r->{status}, 503, 'a chart never read: 503');
is($r->{json}{error}{code}, 'SERVICE_UNAVAILABLE', '  SERVICE_UNAVAILABLE');
$t->pg_start;
$t->redis_start;

$t->spawn_stop('trend');
$yt->stop;
$t->stop;
done_testing;
