# YouTube's daily quota, counted in Redis per API key and Pacific day
# (injectable clock: CREST_TRENDING_NOW): once spent the adapter stops
# calling and the job says why; a 403 quotaExceeded from YouTube spends the
# day's quota too; both come back at midnight America/Los_Angeles.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker problems);
use Crest::FakeHTTP;
use Crest::Trending qw(yt_video yt_list yt_quota_error refresh scraper_env);

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $yt = Crest::FakeHTTP->new(dir => $t->dir . '/fake-youtube');
my $ok = { json => yt_list([yt_video('q1'), yt_video('q2')]) };
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [$ok] }]);
$yt->start;

# 2026-11-22 07:30 UTC = 2026-11-21 23:30 in Los Angeles (PST, UTC-8)
my $late  = 1795332600;     # 2026-11-22T07:30:00Z
my $after = 1795334405;     # 2026-11-22T08:00:05Z, 00:00:05 Pacific
my $key_id = 'crest:trending:quota:youtube:*';

sub worker {
    my ($name, $now, %more) = @_;
    start_worker($t, $name, scraper_env(youtube => $yt->url, more => {
        CREST_TRENDING_NOW => $now, CREST_TRENDING_YOUTUBE_QUOTA_DAILY => 3,
        CREST_TRENDING_YOUTUBE_COST_SEARCH => 2, %more }));
}

worker('w1', $late);
for my $i (1 .. 3) {
    my $j = refresh($t, { platform => 'youtube', region => 'US' });
    is($j->{state}, 'completed', "refresh $i within the quota");
    is($j->{ret}{quota}{used}, $i, "$i of 3 units used") if $i == 3;
    is($j->{ret}{quota}{day}, '2026-11-21', 'the Pacific day') if $i == 1;
}
my $j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'failed', 'the fourth refresh fails');
like($j->{failedReason}, qr/youtube quota spent: 3 of 3 units used on 2026-11-21 \(Pacific\); resets at 2026-11-22T08:00:00Z/,
     'and says why and when it resets');
is($j->{attemptsMade}, 1, 'no retry (it is final)');
is(scalar $yt->requests, 3, 'no call made once the quota is spent');

my @keys = split /\n/, $t->redis_cli('KEYS', $key_id);
is(scalar @keys, 1, 'one quota key');
like($keys[0], qr/^crest:trending:quota:youtube:[0-9a-f]{16}:2026-11-21:units$/,
     'per key (hashed, never the key itself) and Pacific day');
unlike($keys[0], qr/test-key/, 'the API key is not in Redis');
my $ttl = $t->redis_cli('TTL', $keys[0]);
ok($ttl > 0 && $ttl <= 172800, 'the counter expires');

# search.list costs 2 here, more than is left
$j = refresh($t, { platform => 'youtube', region => 'US', query => 'x' });
is($j->{state}, 'failed', 'search refused too');
$t->spawn_stop('w1');

# the next Pacific day
worker('w2', $after);
$j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'completed', 'resumes after midnight Pacific') or diag explain $j;
is($j->{ret}{quota}{day}, '2026-11-22', 'counted on the new day');
is($j->{ret}{quota}{used}, 1, 'from zero');
is(scalar $yt->requests, 4, 'and calls YouTube again');

# YouTube itself says the quota is exceeded (another client used the key)
$yt->set_routes([{ path => '/youtube/v3/videos',
                   responses => [{ status => 403, json => yt_quota_error() }] }]);
$j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'failed', '403 quotaExceeded fails the job');
like($j->{failedReason}, qr/youtube quota spent: 3 of 3 units used on 2026-11-22/, 'as quota spent');
$yt->set_routes([{ path => '/youtube/v3/videos', responses => [$ok] }]);
$j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'failed', 'and no further call that day');
is(scalar $yt->requests, 5, 'YouTube not called');
is($t->redis_cli('EXISTS', 'crest:trending:breaker:youtube'), 0,
   'quota is not an outage: the breaker is untouched');
$t->spawn_stop('w2');

# a separate bucket for search.list (the newer wording: 100 calls a day)
worker('w3', $after + 86400, CREST_TRENDING_YOUTUBE_SEARCH_DAILY => 1,
       CREST_TRENDING_YOUTUBE_COST_SEARCH => 1);
$yt->set_routes([
    { path => '/youtube/v3/search', responses => [{ json => { items => [{ id => { videoId => 'q1' } }] } }] },
    { path => '/youtube/v3/videos', responses => [$ok] }]);
$j = refresh($t, { platform => 'youtube', region => 'US', query => 'a' });
is($j->{state}, 'completed', 'search with its own bucket');
$j = refresh($t, { platform => 'youtube', region => 'US', query => 'b' });
like($j->{failedReason}, qr/1 of 1 search used/, 'the search bucket is spent');
$j = refresh($t, { platform => 'youtube', region => 'US' });
is($j->{state}, 'completed', 'while videos.list still has units');
$t->spawn_stop('w3');

$yt->stop;
$t->stop;
done_testing();
