# POST /api/downloads under the sample configuration (conf/crest-limits.conf,
# crest-limits-apply.conf, crest-api.conf): the `download` zone lets a user
# request 10 downloads a minute, the 11th is 429 and takes no quota unit;
# listing, one download and formats are not in that zone, and only the POST
# costs a unit of the monthly download quota (free plan: 5).  Formats
# lookups have a zone of their own: 20 a minute per user.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Jobs qw(session bearer);

my $confdir = "$FindBin::Bin/../conf";
my $t = Crest::Test->new(
    http_config => "include $confdir/crest-limits.conf;
                    crest_jobs_queues ping download formats;
                    crest_downloads_concurrent 50;",
    config      => "include $confdir/crest-limits-apply.conf;
                    include $confdir/crest-api.conf;",
);
$t->start;

sub usage {
    my $id = shift;
    my ($n) = $t->psql("SELECT coalesce(sum(count), 0) FROM user_usage WHERE user_id = '$id' AND usage_type = 'download'");
    return $n;
}

# enterprise: no monthly limit, so the rate limit is what refuses
my $ent = session($t, 'ent@example.com');
$t->psql("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$ent->{id}', 'enterprise', 'active')");
my @st = map {
    $t->http(POST => '/api/downloads', json => { url => "https://example.com/v$_" }, headers => bearer($ent))
} 1 .. 11;
is(scalar(grep { $_->{status} == 202 } @st), 10, '10 downloads a minute');
is($st[-1]{status}, 429, 'the 11th: 429');
is($st[-1]{json}{error}{code}, 'RATE_LIMITED', 'RATE_LIMITED');
is($t->psql("SELECT count(*) FROM media_downloads WHERE user_id = '$ent->{id}'"), 10, '10 rows');
is(usage($ent->{id}), 10, 'the refused one took no quota unit');

# reads are not in the download zone
@st = map { $t->http(GET => '/api/downloads', headers => bearer($ent))->{status} } 1 .. 12;
is(scalar(grep { $_ == 200 } @st), 12, 'listing is not limited by the download zone');
is(usage($ent->{id}), 10, 'and costs no quota');

# formats: 20 lookups a minute per user (each uncached one runs yt-dlp);
# a refused URL still counts, as any request the zone sees
@st = map {
    $t->http(GET => '/api/downloads/formats?url=file:///etc/passwd', headers => bearer($ent))
} 1 .. 21;
is(scalar(grep { $_->{status} == 400 } @st), 20, 'formats: 20 lookups a minute');
is($st[-1]{status}, 429, 'formats: the 21st is 429');
is($st[-1]{json}{error}{code}, 'RATE_LIMITED', 'formats: RATE_LIMITED');
is($t->http(GET => '/api/downloads', headers => bearer($ent))->{status}, 200,
   'listing is not in the formats zone');

# free plan: 5 a month; the 6th POST is refused by the quota
my $free = session($t, 'free@example.com');
@st = map {
    $t->http(POST => '/api/downloads', json => { url => "https://example.com/f$_" }, headers => bearer($free))
} 1 .. 6;
is(scalar(grep { $_->{status} == 202 } @st), 5, 'free plan: 5 downloads');
is($st[-1]{status}, 403, 'the 6th: 403');
is($st[-1]{json}{error}{code}, 'USAGE_EXCEEDED', 'USAGE_EXCEEDED');
is($st[0]{headers}{'x-quota-limit'}, 5, 'X-Quota-Limit on the POST');
is($t->http(GET => '/api/downloads', headers => bearer($free))->{status}, 200,
   'listing still works with the quota used up');
ok(!exists $t->http(GET => '/api/downloads', headers => bearer($free))->{headers}{'x-quota-limit'},
   'listing is not a quota location');

$t->stop;
done_testing();
