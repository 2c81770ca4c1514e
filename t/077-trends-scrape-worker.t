# A user's own trend scrapes end to end: POST /api/trends/scrape through
# nginx, a real crest-worker serving trend-scrape, and local servers that
# answer as YouTube's Data API, Apify's run-sync-get-dataset-items and
# Reddit's search do (errors included).  Results land in the scrape's row
# and are served by GET /api/trends/{id}; a YouTube quotaExceeded 403 and
# an Apify 401 fail the scrape at once with a clear error; 5xx answers are
# retried; malformed JSON fails the scrape on the job's last attempt; a
# scrape deleted while it runs is left alone.  Nothing leaves 127.0.0.1.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems);
use Crest::FakeHTTP;
use Crest::Jobs qw(session bearer row);
use Crest::Trending qw(yt_video yt_list yt_quota_error reddit_listing tiktok_item x_item
                       scraper_env);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_jobs_queues ping trend-scrape; crest_jobs_attempts 2;',
    config      => "include $conf;",
);
$t->start;

my $yt = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
my $apify = Crest::FakeHTTP->new(dir => $t->dir . '/fake-apify');
my $reddit = Crest::FakeHTTP->new(dir => $t->dir . '/fake-reddit');
$_->start for $yt, $apify, $reddit;

my $alice = session($t, 'alice@example.com');
# more scrapes than the free plan's ten
$t->psql("INSERT INTO subscriptions (user_id, plan_id) VALUES ('$alice->{id}', 'pro')");

sub scrape {
    my ($body) = @_;
    my $r = $t->http(POST => '/api/trends/scrape', json => $body, headers => bearer($alice));
    die "scrape: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    return ($r->{json}{data}{scrape}{id}, $r->{json}{data}{job}{id});
}

sub get_scrape { $t->http(GET => "/api/trends/$_[0]", headers => bearer($alice))->{json}{data}{scrape} }

# Waits for the scrape and its job row to settle; the scrape.
sub settled {
    my ($sid, $jid) = @_;
    my $s;
    wait_until(sub {
        $s = get_scrape($sid);
        my $j = row($t, $jid);
        $s && $s->{status} =~ /^(?:completed|failed|cancelled)$/
           && $j->{status} =~ /^(?:completed|failed)$/;
    }, 30);
    return $s;
}

sub search_result {
    return { kind => 'youtube#searchListResponse', ($_[1] ? (nextPageToken => $_[1]) : ()),
             items => [ map { { kind => 'youtube#searchResult',
                                id => { kind => 'youtube#video', videoId => $_ },
                                snippet => { title => $_ } } } @{ $_[0] } ] };
}

# --- a job cancelled before the worker saw it (BullMQ could not remove it):
# the worker marks the scrape cancelled and calls nobody
my ($csid, $cjid) = scrape({ platform => 'youtube', keywords => ['never'] });
$t->psql("UPDATE jobs SET status = 'cancelled' WHERE id = '$cjid'");

# 2026-11-22T12:00:00Z: dateRange 7d starts 2026-11-15T12:00:00Z
my $NOW = 1795348800;
start_worker($t, 'c-scrape', scraper_env(
    youtube => $yt->url, apify => $apify->url, reddit => $reddit->url,
    more => { CREST_QUEUES => 'trend-scrape', CREST_TRENDING_NOW => $NOW,
              CREST_TRENDING_BREAKER_FAILURES => 10,
              CREST_TRENDING_APIFY_X_SCRAPE_INPUT =>
                  '{"searchTerms":"{keywords}","maxItems":"{limit}","start":"{since}",'
                  . '"tweetLanguage":"{language}","query":"{query}","onlyVideos":true}' }));

my $cret = '';
ok(wait_until(sub {
    $cret = (Crest::Bull::crest_queue($t, 'get', 'trend-scrape', $cjid))[1] // '';
    $cret =~ /"finishedOn"/;
}, 15), 'the cancelled job ran');
like($cret, qr/the scrape was deleted or cancelled/, 'and skipped its scrape');
my ($cst) = $t->psql("SELECT status || '|' || (completed_at IS NOT NULL) FROM trend_scrapes WHERE id = '$csid'");
is($cst, 'cancelled|true', 'the scrape row is cancelled');
is(row($t, $cjid)->{status}, 'cancelled', 'the job row stays cancelled');
is(scalar $yt->requests, 0, 'no call made');

# --- YouTube: search.list then videos.list?id=, filters applied
my $old = yt_video('y4', views => 99999);
$old->{snippet}{publishedAt} = '2026-10-01T00:00:00Z';
$yt->set_routes([
    { path => '/youtube/v3/search', responses => [{ json => search_result([qw(y1 y2 y3 y4 y5)]) }] },
    { path => '/youtube/v3/videos', query => 'id=y1,y2,y3,y4,y5', responses => [{ json => yt_list([
        yt_video('y1', views => 5000), yt_video('y2', views => 50), yt_video('y3', views => 9000),
        $old, yt_video('y5', views => 700) ]) }] },
]);
my ($sid, $jid) = scrape({ platform => 'youtube', keywords => ['lofi', 'study beats'], limit => 2,
                           filters => { dateRange => '7d', minViews => 100, language => 'en' } });
my $s = settled($sid, $jid);
is($s->{status}, 'completed', 'youtube: completed') or diag explain $s;
is($s->{resultCount}, 2, 'two results: the limit');
is_deeply([ map { $_->{platformId} } @{ $s->{results} } ], [qw(y1 y3)],
          'y2 under minViews and y4 older than 7 days are dropped; the limit keeps the first two');
is_deeply([ map { $_->{rank} } @{ $s->{results} } ], [1, 2], 'ranked 1 to n');
is($s->{results}[1]{viewCount}, 9000, 'a normalised record: counts');
is($s->{results}[0]{url}, 'https://www.youtube.com/watch?v=y1', 'a normalised record: url');
is($s->{results}[0]{durationSeconds}, 253, 'a normalised record: duration');
is($s->{error}, undef, 'no error');
like($s->{completedAt}, qr/^\d{4}-\d\d-\d\dT/, 'completedAt');
my $jr = row($t, $jid);
is($jr->{status}, 'completed', 'the job row completed');
is_deeply(decode_json($jr->{result}), { scrapeId => $sid, platform => 'youtube', resultCount => 2 },
          "the job's result");
my @req = $yt->requests;
is_deeply([ map { $_->{path} } @req ], ['/youtube/v3/search', '/youtube/v3/videos'], 'search then videos');
like($req[0]{query}, qr/(?:^|&)q=lofi%7Cstudy%20beats(?:&|$)/, 'q: the keywords joined by |');
like($req[0]{query}, qr/order=viewCount/, 'order=viewCount');
like($req[0]{query}, qr/type=video/, 'type=video');
like($req[0]{query}, qr/publishedAfter=2026-11-15T12:00:00Z/, 'publishedAfter: 7 days before now');
like($req[0]{query}, qr/relevanceLanguage=en/, 'relevanceLanguage');
like($req[0]{query}, qr/maxResults=50/, 'a whole page with minViews');
like($req[0]{query}, qr/key=test-key/, 'the API key');
like($req[1]{query}, qr/part=snippet,statistics,contentDetails/, 'videos.list parts');

# more than one page of search: pageToken, ranks go on
$yt->clear_requests;
$yt->set_routes([
    { path => '/youtube/v3/search', query => 'pageToken=P2', responses => [{ json => search_result([qw(p4 p5)]) }] },
    { path => '/youtube/v3/search', responses => [{ json => search_result([qw(p1 p2 p3)], 'P2') }] },
    { path => '/youtube/v3/videos', query => 'id=p1,p2,p3',
      responses => [{ json => yt_list([ map { yt_video($_) } qw(p1 p2 p3) ]) }] },
    { path => '/youtube/v3/videos', query => 'id=p4,p5',
      responses => [{ json => yt_list([ map { yt_video($_) } qw(p4 p5) ]) }] },
]);
my ($psid, $pjid) = scrape({ platform => 'youtube', keywords => ['pages'], limit => 60 });
$s = settled($psid, $pjid);
is($s->{status}, 'completed', 'two pages: completed') or diag explain $s;
is_deeply([ map { "$_->{platformId}:$_->{rank}" } @{ $s->{results} } ], [qw(p1:1 p2:2 p3:3 p4:4 p5:5)],
          'both pages, ranked in order');
@req = $yt->requests('/youtube/v3/search');
is(scalar @req, 2, 'two search.list calls');
like($req[0]{query}, qr/maxResults=50/, 'a full page first');
unlike($req[0]{query}, qr/publishedAfter|relevanceLanguage/, 'no filters asked for');
like($req[1]{query}, qr/pageToken=P2/, 'then the next page');

# the list shows it completed, without results
my $l = $t->http(GET => '/api/trends?status=completed', headers => bearer($alice))->{json}{data};
is_deeply([ map { $_->{id} } @{ $l->{scrapes} } ], [ $psid, $sid ], 'listed as completed');
is($l->{scrapes}[1]{resultCount}, 2, 'with its count');

# --- Reddit: 500 and 503 retried, then the answer
my $listing = reddit_listing({ id => 'r1', score => 50 }, { id => 'r2' }, { id => 'r3' });
$_->{data}{created_utc} = $NOW - 3600 for @{ $listing->{data}{children} };
$reddit->set_routes([{ path => '/search.json', responses => [
    { status => 500, json => { message => 'Internal Server Error', error => 500 } },
    { status => 503, body => '<html>upstream</html>', headers => { 'Content-Type' => 'text/html' } },
    { json => $listing } ] }]);
($sid, $jid) = scrape({ platform => 'reddit', keywords => ['cats', 'dogs'], limit => 5,
                        filters => { dateRange => '1d' } });
$s = settled($sid, $jid);
is($s->{status}, 'completed', 'reddit: completed after a 500 and a 503') or diag explain $s;
is_deeply([ map { $_->{platformId} } @{ $s->{results} } ], [qw(r1 r2 r3)], 'three posts');
@req = $reddit->requests('/search.json');
is(scalar @req, 3, 'three calls: two retried');
like($req[0]{query}, qr/(?:^|&)q=cats%20OR%20dogs(?:&|$)/, 'q: the keywords joined by OR');
like($req[0]{query}, qr/sort=top/, 'sort=top');
like($req[0]{query}, qr/(?:^|&)t=day(?:&|$)/, 't=day for 1d');
like($req[0]{query}, qr/limit=5/, 'limit');
like($req[0]{headers}{'user-agent'} // '', qr/crest/, 'a User-Agent of its own');
is(row($t, $jid)->{attempts}, 1, 'one job attempt: the retries were within it');

# --- Reddit: malformed JSON on every call fails on the job's last attempt
$reddit->clear_requests;
$reddit->set_routes([{ path => '/search.json', responses => [
    { status => 200, body => '{"kind":"Listing","data":{"children":[' } ] }]);
($sid, $jid) = scrape({ platform => 'reddit', keywords => ['broken'] });
$s = settled($sid, $jid);
is($s->{status}, 'failed', 'malformed JSON: failed') or diag explain $s;
like($s->{error}, qr{^reddit /search\.json: HTTP 200: malformed JSON}, 'the error says so');
is_deeply($s->{results}, [], 'no results');
$jr = row($t, $jid);
is($jr->{status}, 'failed', 'the job row failed');
is($jr->{attempts}, 2, 'after both job attempts');
is(scalar $reddit->requests, 6, 'three calls per attempt');
$t->redis_cli('DEL', 'crest:trending:breaker:reddit');

# --- TikTok through Apify: the keywords in the actor's input
$apify->set_routes([{ path => '/v2/acts/clockworks~tiktok-scraper/run-sync-get-dataset-items',
                      responses => [{ status => 201, json => [ tiktok_item('t1', views => 10),
                                                               tiktok_item('t2') ] }] }]);
($sid, $jid) = scrape({ platform => 'tiktok', keywords => ['dance'], limit => 7 });
$s = settled($sid, $jid);
is($s->{status}, 'completed', 'tiktok: completed') or diag explain $s;
is_deeply([ map { $_->{platformId} } @{ $s->{results} } ], [qw(t1 t2)], 'two videos');
is($s->{results}[1]{viewCount}, 5000, 'normalised');
@req = $apify->requests;
is($req[0]{method}, 'POST', 'a POST');
is($req[0]{headers}{authorization}, 'Bearer apify-token', 'the token');
like($req[0]{query}, qr/maxItems=7/, 'maxItems = limit');
is_deeply(decode_json($req[0]{body}), { searchQueries => ['dance'], resultsPerPage => 7,
                                        searchSection => '/video' }, 'the default input');

# --- X through Apify: the configured input template
$apify->clear_requests;
$apify->set_routes([{ path => '/v2/acts/apidojo~tweet-scraper/run-sync-get-dataset-items',
                      responses => [{ status => 201, json => [ x_item(11), x_item(12) ] }] }]);
($sid, $jid) = scrape({ platform => 'twitter', keywords => ['news', 'world'], limit => 3,
                        filters => { dateRange => '30d', language => 'fr' } });
$s = settled($sid, $jid);
is($s->{status}, 'completed', 'x: completed') or diag explain $s;
is($s->{resultCount}, 2, 'two posts');
@req = $apify->requests;
is_deeply(decode_json($req[0]{body}), { searchTerms => ['news', 'world'], maxItems => 3,
                                        start => '2026-10-23', tweetLanguage => 'fr',
                                        query => 'news OR world', onlyVideos => JSON::PP::true },
          'the template filled in');

# without dateRange and language their members are left out
$apify->clear_requests;
($sid, $jid) = scrape({ platform => 'x', keywords => ['plain'] });
settled($sid, $jid);
@req = $apify->requests;
is_deeply(decode_json($req[0]{body}), { searchTerms => ['plain'], maxItems => 10,
                                        query => 'plain', onlyVideos => JSON::PP::true },
          'absent filters leave their members out');

# Apify refuses the token: failed at once, Apify's message kept
$apify->clear_requests;
$apify->set_routes([{ path => '/v2/acts/apidojo~tweet-scraper/run-sync-get-dataset-items',
                      responses => [{ status => 401, json => { error => {
                          type => 'user-or-token-not-found',
                          message => 'User was not found or authentication token is not valid' } } }] }]);
($sid, $jid) = scrape({ platform => 'x', keywords => ['denied'] });
$s = settled($sid, $jid);
is($s->{status}, 'failed', 'apify 401: failed');
like($s->{error}, qr/HTTP 401: User was not found or authentication token is not valid/, 'with the reason');
unlike($s->{error}, qr/apify-token/, 'and not the token');
$jr = row($t, $jid);
is($jr->{attempts}, 1, 'no job retry');
is(scalar $apify->requests, 1, 'no call retry');

# --- deleted while it runs: the row stays gone, the job is cancelled
$reddit->set_routes([{ path => '/search.json', responses => [{ json => $listing, delay_ms => 2000 }] }]);
($sid, $jid) = scrape({ platform => 'reddit', keywords => ['slow'] });
ok(wait_until(sub { (get_scrape($sid) // {})->{status} eq 'running' }, 10), 'running');
my $r = $t->http(DELETE => "/api/trends/$sid", headers => bearer($alice));
is_deeply($r->{json}{data}{jobCancelled}, JSON::PP::true, 'deleted while running: the job cancelled');
my ($ret) = ('');
ok(wait_until(sub {
    my ($line) = $t->psql("SELECT count(*) FROM trend_scrapes WHERE id = '$sid'");
    $ret = (Crest::Bull::crest_queue($t, 'get', 'trend-scrape', $jid))[1] // '';
    $line == 0 && $ret =~ /"finishedOn"/;
}, 15), 'the job finished');
like($ret, qr/deleted or cancelled while it ran/, 'and left the missing row alone');
is(row($t, $jid)->{status}, 'cancelled', 'the job row stays cancelled');
my ($n) = $t->psql("SELECT count(*) FROM trend_scrapes WHERE id = '$sid'");
is($n, 0, 'no row came back');

# --- YouTube refuses the key: failed at once, the key never shown
$yt->clear_requests;
$yt->set_routes([{ path => '/youtube/v3/search', responses => [{ status => 400, json => { error => {
    code => 400, message => 'API key not valid. Please pass a valid API key.',
    errors => [{ message => 'API key not valid. Please pass a valid API key.', domain => 'global',
                 reason => 'badRequest' }], status => 'INVALID_ARGUMENT' } } }] }]);
($sid, $jid) = scrape({ platform => 'youtube', keywords => ['key'] });
$s = settled($sid, $jid);
is($s->{status}, 'failed', 'a bad key: failed');
like($s->{error}, qr/^youtube search\.list: HTTP 400: API key not valid/, "with YouTube's message");
unlike($s->{error}, qr/test-key/, 'not the key');
is(row($t, $jid)->{attempts}, 1, 'no job retry');
is(scalar $yt->requests, 1, 'no call retry');

# --- YouTube's quota spent: a 403 quotaExceeded fails the scrape at once
$yt->clear_requests;
$yt->set_routes([{ path => '/youtube/v3/search', responses => [{ status => 403, json => yt_quota_error() }] }]);
($sid, $jid) = scrape({ platform => 'youtube', keywords => ['more'] });
$s = settled($sid, $jid);
is($s->{status}, 'failed', 'quotaExceeded: failed');
like($s->{error}, qr/^youtube quota spent: .* resets at \d{4}-\d\d-\d\dT/, 'a clear error');
$jr = row($t, $jid);
is($jr->{status}, 'failed', 'the job row failed');
is($jr->{attempts}, 1, 'without a retry');
is(scalar $yt->requests, 1, 'one call');

# the next one does not even call
($sid, $jid) = scrape({ platform => 'youtube', keywords => ['again'] });
$s = settled($sid, $jid);
is($s->{status}, 'failed', 'quota still spent: failed');
is(scalar $yt->requests, 1, 'without a call');

$_->stop for $yt, $apify, $reddit;
$t->spawn_stop('c-scrape');
is_deeply([ grep { !/trend-scrape: failed|trending: call failed/ } problems($t, 'c-scrape') ], [],
          'no other warnings');
$t->stop;
done_testing();
