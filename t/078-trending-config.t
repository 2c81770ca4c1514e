# crest_trending's configuration: without crest_trending_cache the list
# reads Redis or PostgreSQL on every request and enqueues no refresh; the
# regions and categories lists come from their directives; bad directives
# stop nginx from starting.  No worker: nothing here needs one.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Jobs qw(session bearer);

my $t = Crest::Test->new(
    http_config => 'crest_jobs_queues ping trending-refresh;
                    crest_trending_ttl youtube 10m;
                    crest_trending_region se Sweden;
                    crest_trending_region NO "Norway";
                    crest_trending_category tiktok dance "Dance";
                    crest_trending_category youtube 20 "Games";',
    config      => '
        location = /api/auth/register { crest_account register; }
        location = /trending { crest_auth on; crest_trending list; }
        location = /regions { crest_auth on; crest_trending regions; }
        location = /categories { crest_auth on; crest_trending categories; }
        location = /public { crest_trending regions; }',
);
$t->start;
my $alice = session($t, 'alice@example.com');
sub get { $t->http(GET => $_[0], headers => bearer($alice)) }
sub ids { [map { $_->{platformId} } @{ $_[0]{json}{data}{videos} }] }

# --- no zone: every request reads the backends; stale data, no refresh
$t->psql(q{INSERT INTO trending_videos (platform, platform_id, region, rank, title, view_count, url, fetched_at)
           VALUES ('youtube', 'a', 'SE', 1, 'a', 1, 'u', now() - interval '11 minutes'),
                  ('youtube', 'b', 'SE', 2, 'b', 2, 'u', now() - interval '11 minutes')});
my $r = get('/trending?platform=youtube&region=se');
is($r->{status}, 200, 'no zone: 200');
is_deeply(ids($r), [qw(a b)], '  rows from PostgreSQL');
is($r->{json}{data}{cached}, JSON::PP::false, '  not cached');
my ($y, $mo, $d) = $r->{json}{data}{cacheExpiry} =~ /^(\d+)-(\d+)-(\d+)T/;
ok($y, '  a cacheExpiry');
$r = get('/trending?platform=youtube&region=SE');
is($r->{json}{data}{cached}, JSON::PP::false, '  again from PostgreSQL: nothing kept');
my ($n) = $t->psql("SELECT count(*) FROM jobs");
is($n, 0, '  stale (crest_trending_ttl youtube 10m), but no refresh without a zone');

$t->psql("DELETE FROM trending_videos");
$r = get('/trending?platform=youtube&region=SE');
is_deeply(ids($r), [], 'rows gone: the next answer shows it (nothing cached)');

$t->redis_cli('SET', 'crest:trending:youtube:SE:all', encode_json({
    platform => 'youtube', region => 'SE', category => '', fetchedAt => '2026-01-01T00:00:00Z',
    ttl => 60, count => 1, items => [{ platform => 'youtube', platformId => 'r1', rank => 1 }] }));
$r = get('/trending?platform=youtube&region=SE');
is_deeply(ids($r), ['r1'], 'Redis is read');
is($r->{json}{data}{cacheExpiry}, '2026-01-01T00:01:00.000Z', '  cacheExpiry = fetchedAt + ttl');
is($r->{json}{data}{cached}, JSON::PP::true, '  cached');

$t->redis_cli('SET', 'crest:trending:youtube:SE:all', '{"items": "not a list"}');
$r = get('/trending?platform=youtube&region=SE');
is($r->{status}, 200, 'a malformed cache entry: 200');
is_deeply(ids($r), [], '  read from PostgreSQL instead');

$r = $t->http(HEAD => '/trending?platform=youtube&region=SE', headers => bearer($alice));
is($r->{status}, 200, 'HEAD: 200');
is($r->{content}, '', '  no body');

# --- the configured lists
$r = get('/regions');
is_deeply($r->{json}{data}{regions}, [{ code => 'SE', name => 'Sweden' }, { code => 'NO', name => 'Norway' }],
          'regions: the configured ones, upper-cased, in order');
$r = get('/categories');
is_deeply($r->{json}{data}{categories},
          [{ platform => 'tiktok', id => 'dance', name => 'Dance' }, { platform => 'youtube', id => '20', name => 'Games' }],
          'categories: the configured ones');
is_deeply(get('/categories?platform=x')->{json}{data}{categories}, [], '?platform=x: none');
is($t->http(GET => '/public')->{status}, 200, 'without crest_auth: public');
is($t->http(GET => '/regions')->{status}, 401, 'with crest_auth: 401 without a token');
$t->stop;

# --- bad directives
for my $c (['crest_trending_cache valid=10s;', qr/needs zone=/],
           ['crest_trending_cache zone=z:1k;', qr/invalid parameter/],
           ['crest_trending_cache zone=z:1m valid=x;', qr/invalid parameter/],
           ['crest_trending_ttl myspace 1m;', qr/unknown platform/],
           ['crest_trending_region USA "U S A";', qr/two-letter/],
           ['crest_trending_category youtube music "Music";', qr/invalid category/])
{
    my $b = Crest::Test->new(no_pg => 1, no_redis => 1, http_config => $c->[0],
                             check_on_stop => 0);
    my $ok = eval { $b->start; 1 };
    ok(!$ok, "refused: $c->[0]");
    like($b->error_log . ($@ // ''), $c->[1], '  saying why');
    $b->stop;
}
my $b = Crest::Test->new(no_pg => 1, no_redis => 1, check_on_stop => 0,
                         config => 'location /x { crest_trending everything; }');
ok(!eval { $b->start; 1 }, 'refused: crest_trending everything');
$b->stop;

done_testing;
