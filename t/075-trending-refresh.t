# The issue's must-shows for the trending endpoint, with a short shared
# cache validity (valid=1s) so that each step's new data is read again:
#  - a refresh against the local YouTube server fills PostgreSQL and the
#    cache, and the endpoint serves it; a second refresh updates counts
#    without duplicating rows, and the endpoint serves the new counts;
#  - Redis flushed: the endpoint answers from PostgreSQL (same videos, not
#    cached), and the next refresh repopulates Redis.
# Waiting out valid= is a precondition here, never something asserted.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until);
use Crest::Jobs qw(session bearer);
use Crest::FakeHTTP;
use Crest::Trending qw(yt_video yt_list refresh scraper_env);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    http_config => 'crest_jobs_queues ping trending-refresh;
                    crest_trending_cache zone=trending:1m valid=1s refresh=60s;',
    config      => "include $conf;",
);
$t->start;

my $yt = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
sub chart {
    my (@v) = @_;
    $yt->set_routes([{ path => '/youtube/v3/videos', query => 'chart=mostPopular',
        responses => [{ json => yt_list([map { yt_video($_->[0], views => $_->[1]) } @v]) }] }]);
}
chart([a => 300], [b => 200], [c => 100]);
$yt->start;
start_worker($t, 'trend', scraper_env(youtube => $yt->url));

my $alice = session($t, 'alice@example.com');
my $q = '/api/trending?platform=youtube&region=GB&limit=50';
sub page { $t->http(GET => $q, headers => bearer($alice)) }
sub views { join ' ', map { "$_->{platformId}=$_->{viewCount}" } @{ $_[0]{json}{data}{videos} } }
sub past_valid { sleep 1.2 }

# --- first refresh: PostgreSQL and Redis filled, the endpoint serves it
my $j = refresh($t, { platform => 'youtube', region => 'GB' });
is($j->{state}, 'completed', 'first refresh completed') or diag explain $j;
my ($n) = $t->psql("SELECT count(*) FROM trending_videos WHERE region = 'GB'");
is($n, 3, 'three rows');
ok($t->redis_cli('EXISTS', 'crest:trending:youtube:GB:all'), 'the serving cache written');

my $r = page();
is($r->{status}, 200, 'the endpoint: 200');
is(views($r), 'a=300 b=200 c=100', 'serves the refreshed chart');
is($r->{json}{data}{cached}, JSON::PP::true, 'from the cache');
my $etag1 = $r->{headers}{etag};

# --- second refresh: counts updated in place, no duplicate rows
chart([b => 900], [a => 350], [d => 10]);
$j = refresh($t, { platform => 'youtube', region => 'GB' });
is($j->{state}, 'completed', 'second refresh completed');
is_deeply([@{ $j->{ret} }{qw(inserted updated)}], [1, 2], 'one new row, two updated');
($n) = $t->psql("SELECT count(*) FROM trending_videos WHERE region = 'GB'");
is($n, 4, 'four rows: none duplicated (c stays, d is new)');
my ($v) = $t->psql("SELECT view_count FROM trending_videos WHERE platform_id = 'b'");
is($v, 900, 'b counted again in place');

past_valid();
$r = page();
is(views($r), 'b=900 a=350 d=10', 'the endpoint serves the new counts and ranks');
isnt($r->{headers}{etag}, $etag1, 'a new ETag for new content');
my $served = $r->{json}{data}{videos};

# --- Redis flushed: PostgreSQL answers the same chart
$t->redis_cli('FLUSHALL');
past_valid();
$r = page();
is($r->{status}, 200, 'Redis flushed: 200');
is(views($r), 'b=900 a=350 d=10', 'the last refresh\'s rows from PostgreSQL (c, not seen by it, left out)');
is_deeply($r->{json}{data}{videos}, $served, 'the same records as the cache held');
is($r->{json}{data}{cached}, JSON::PP::false, 'not cached');
my ($jobs) = $t->psql("SELECT count(*) FROM jobs WHERE queue = 'trending-refresh'");
is($jobs, 0, 'the rows are fresh: no refresh enqueued');

# --- the next refresh repopulates Redis
chart([b => 950], [a => 360], [d => 20]);
$j = refresh($t, { platform => 'youtube', region => 'GB' });
is($j->{state}, 'completed', 'the next refresh completed');
my $c = decode_json($t->redis_cli('GET', 'crest:trending:youtube:GB:all'));
is(scalar @{ $c->{items} }, 3, 'Redis repopulated');
past_valid();
$r = page();
is(views($r), 'b=950 a=360 d=20', 'the endpoint serves it');
is($r->{json}{data}{cached}, JSON::PP::true, 'from the cache again');
($n) = $t->psql("SELECT count(*) FROM trending_videos WHERE region = 'GB'");
is($n, 4, 'still four rows');

# --- data past its TTL: served, and its refresh goes through the worker
$t->redis_cli('FLUSHALL');
$t->psql("UPDATE trending_videos SET fetched_at = fetched_at - interval '1 hour' WHERE region = 'GB'");
chart([e => 5]);
past_valid();
$r = page();
is(views($r), 'b=950 a=360 d=20', 'stale rows are served');
ok(wait_until(sub { ($t->psql("SELECT status FROM jobs WHERE queue = 'trending-refresh'"))[0] eq 'completed' }, 30),
   'the refresh it enqueued completed');
past_valid();
$r = page();
is(views($r), 'e=5', 'the endpoint serves what that refresh brought');

$t->spawn_stop('trend');
$yt->stop;
$t->stop;
done_testing;
