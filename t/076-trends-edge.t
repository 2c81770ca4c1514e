# A user's own trend scrapes at the edge: POST /api/trends/scrape validates
# each field (VALIDATION_ERROR naming it), takes one scrape quota unit (given
# back on an error answer) and writes the scrape row, its job row and the
# BullMQ job together; GET /api/trends pages and filters the caller's
# scrapes; GET and DELETE /api/trends/{id} answer 404 for other users' ids
# like for malformed ones.  No worker runs here: the jobs stay queued.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep time);
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Jobs qw(session bearer row);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_jobs_queues ping trend-scrape;',
    config      => "include $conf;",
);
$t->start;

my $alice = session($t, 'alice@example.com');
my $bob = session($t, 'bob@example.com');

sub scrape { $t->http(POST => '/api/trends/scrape', json => $_[0], headers => bearer($_[1] // $alice)) }
sub get { $t->http(GET => $_[0], headers => bearer($_[1] // $alice)) }
sub del { $t->http(DELETE => $_[0], headers => bearer($_[1] // $alice)) }

sub used {
    my ($who) = @_;
    my $r = get('/api/billing/usage', $who);
    my ($u) = grep { $_->{type} eq 'scrape' } @{ $r->{json}{data}{usage} };
    return $u->{current};
}

# A refund lands when the refused request's pool is cleaned up, after its
# answer was sent: the usage once it reaches $want, or where it stays.
sub used_settled {
    my ($who, $want) = @_;
    my $end = time + 5;
    my $n = used($who);
    while ($n != $want && time < $end) {
        sleep 0.05;
        $n = used($who);
    }
    return $n;
}

sub count_rows {
    my ($table, $who) = @_;
    my ($n) = $t->psql("SELECT count(*) FROM $table WHERE user_id = '$who->{id}'");
    return $n;
}

# --- authentication
my $r = $t->http(POST => '/api/trends/scrape', json => { platform => 'youtube', keywords => ['a'] });
is($r->{status}, 401, 'scrape without a caller: 401');
is($t->http(GET => '/api/trends')->{status}, 401, 'list without a caller: 401');

# --- validation, one field at a time; none of them costs a unit
my $ok = { platform => 'youtube', keywords => ['lofi'] };
my @bad = (
    [ platform => {}, 'missing' ],
    [ platform => { platform => 'myspace' }, 'unknown' ],
    [ platform => { platform => 7 }, 'a number' ],
    [ keywords => { keywords => [] }, 'none' ],
    [ keywords => { keywords => 'lofi' }, 'a string' ],
    [ keywords => { keywords => [ map { "k$_" } 1 .. 11 ] }, 'eleven' ],
    [ keywords => { keywords => [''] }, 'an empty one' ],
    [ keywords => { keywords => ['   '] }, 'only spaces' ],
    [ keywords => { keywords => ['x' x 101] }, '101 characters' ],
    [ keywords => { keywords => ['ok', 3] }, 'a number among them' ],
    [ keywords => { keywords => ["a\x{1}b"] }, 'a control character' ],
    [ limit => { limit => 0 }, 'limit 0' ],
    [ limit => { limit => 101 }, 'limit 101' ],
    [ limit => { limit => '5' }, 'limit as a string' ],
    [ limit => { limit => 2.5 }, 'limit not whole' ],
    [ filters => { filters => [] }, 'filters not an object' ],
    [ filters => { filters => { colour => 'red' } }, 'an unknown filter' ],
    [ 'filters.dateRange' => { filters => { dateRange => '2d' } }, 'dateRange 2d' ],
    [ 'filters.minViews' => { filters => { minViews => -1 } }, 'minViews -1' ],
    [ 'filters.minViews' => { filters => { minViews => '10' } }, 'minViews as a string' ],
    [ 'filters.language' => { filters => { language => 'english' } }, 'language english' ],
    [ 'filters.language' => { filters => { language => 'e' } }, 'language e' ],
    [ sort => { sort => 'views' }, 'an unknown field' ],
);
for my $case (@bad) {
    my ($field, $change, $what) = @$case;
    my %body = (%$ok, %$change);
    delete $body{platform} if $what eq 'missing';
    $r = scrape(\%body);
    is($r->{status}, 400, "$what: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', "$what: VALIDATION_ERROR");
    is($r->{json}{error}{details}{field}, $field, "$what: names $field");
}
$r = $t->http(POST => '/api/trends/scrape', body => '{"platform":', headers => {
    %{ bearer($alice) }, 'Content-Type' => 'application/json' });
is($r->{status}, 400, 'malformed JSON: 400');
$r = $t->http(POST => '/api/trends/scrape', json => ['youtube'], headers => bearer($alice));
is($r->{status}, 400, 'an array body: 400');
is(used_settled($alice, 0), 0, 'no unit taken by a refused request');
is(count_rows('trend_scrapes', $alice), 0, 'no scrape row');
is(count_rows('jobs', $alice), 0, 'no job row');

# 100 characters of a multi-byte script are within the limit
$r = scrape({ platform => 'reddit', keywords => ["\x{e9}" x 100] });
is($r->{status}, 202, '100 characters of two bytes each: accepted') or diag $r->{content};

# --- a scrape: 202, the rows and the BullMQ job exist together
$r = scrape({ platform => 'twitter', keywords => ['lofi beats', 'study'], limit => 25,
              filters => { dateRange => '7d', minViews => 1000, language => 'en' } });
is($r->{status}, 202, 'scrape: 202') or diag $r->{content};
my $d = $r->{json}{data};
my $sid = $d->{scrape}{id};
my $jid = $d->{job}{id};
like($sid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a v4 uuid');
is_deeply($d->{scrape}, { id => $sid, jobId => $jid, platform => 'x', keywords => ['lofi beats', 'study'],
                          limit => 25, filters => { dateRange => '7d', minViews => 1000, language => 'en' },
                          status => 'pending', error => undef, resultCount => 0 },
          'the scrape answered: twitter is x');
is_deeply([ @{ $d->{job} }{qw(queue name status)} ], [ 'trend-scrape', 'scrape', 'queued' ], 'its job, queued');
is(used($alice), 2, 'two units taken');

my ($line) = $t->psql("SELECT user_id, job_id, platform, array_to_string(keywords, ','), result_limit,
    filters->>'dateRange', filters->>'minViews', status, results::text, result_count
    FROM trend_scrapes WHERE id = '$sid'");
is($line, "$alice->{id}|$jid|x|lofi beats,study|25|7d|1000|pending|[]|0", 'the scrape row');
is(row($t, $jid)->{status}, 'queued', 'the job row, queued');
my ($jdata) = $t->psql("SELECT data::text FROM jobs WHERE id = '$jid'");
my $data = decode_json($jdata);
is_deeply($data, { scrapeId => $sid, platform => 'x', keywords => ['lofi beats', 'study'], limit => 25,
                   filters => { dateRange => '7d', minViews => 1000, language => 'en' } },
          "the job's data");
my $bull = decode_json($t->redis_cli('HGET', "bull:trend-scrape:$jid", 'data') || 'null');
is_deeply($bull, $data, 'the BullMQ job carries the same data');
is($t->redis_cli('HGET', "bull:trend-scrape:$jid", 'name'), 'scrape', 'BullMQ job name');

# defaults: limit 10, no filters
$r = scrape({ platform => 'youtube', keywords => ['a'], filters => undef, limit => undef });
is($r->{status}, 202, 'null limit and filters: 202');
is($r->{json}{data}{scrape}{limit}, 10, 'limit 10 by default');
is_deeply($r->{json}{data}{scrape}{filters}, {}, 'no filters');

# --- PostgreSQL refuses: the unit is given back and nothing is left behind
$t->psql("ALTER TABLE trend_scrapes ADD CONSTRAINT t076_no_tiktok CHECK (platform <> 'tiktok')");
my $before = used($alice);
my $jobs_before = count_rows('jobs', $alice);
$r = scrape({ platform => 'tiktok', keywords => ['dance'] });
is($r->{status}, 500, 'the statement fails: 500');
is($r->{json}{error}{code}, 'INTERNAL_SERVER_ERROR', 'in the envelope');
is(used_settled($alice, $before), $before, 'the unit is given back');
is(count_rows('jobs', $alice), $jobs_before, 'no job row without its scrape');
$t->psql("ALTER TABLE trend_scrapes DROP CONSTRAINT t076_no_tiktok");

# the GET of the scrape location costs nothing either
$r = get('/api/trends/scrape');
is($r->{status}, 405, 'GET /api/trends/scrape: 405');
is(used_settled($alice, $before), $before, 'and no unit');

# --- quota spent: 403, no rows
for (1 .. 10) {
    $r = scrape({ platform => 'reddit', keywords => ["b$_"] }, $bob);
    last if $r->{status} != 202;
}
is($r->{status}, 202, 'bob: ten scrapes');
$r = scrape({ platform => 'reddit', keywords => ['one more'] }, $bob);
is($r->{status}, 403, 'the eleventh: 403');
is($r->{json}{error}{code}, 'USAGE_EXCEEDED', 'USAGE_EXCEEDED');
is(count_rows('trend_scrapes', $bob), 10, 'bob has ten scrapes');

# --- one scrape, and other people's
$r = get("/api/trends/$sid");
is($r->{status}, 200, 'GET one: 200');
is_deeply($r->{json}{data}{scrape}{results}, [], 'no results yet');
is($r->{json}{data}{scrape}{status}, 'pending', 'pending');
is($r->{json}{data}{scrape}{jobId}, $jid, 'its job');
like($r->{json}{data}{scrape}{createdAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'createdAt');
is($r->{json}{data}{scrape}{completedAt}, undef, 'not completed');

for my $path ("/api/trends/$sid", '/api/trends/not-a-uuid', '/api/trends/00000000-0000-4000-8000-000000000000') {
    for my $m ('GET', 'DELETE') {
        $r = $t->http($m => $path, headers => bearer($bob));
        is($r->{status}, 404, "bob $m $path: 404");
        is($r->{json}{error}{code}, 'NOT_FOUND', 'NOT_FOUND');
        is($r->{json}{error}{message}, 'no such scrape', 'the same message');
    }
}
is(get("/api/trends/$sid")->{status}, 200, "alice's scrape is still there");
$r = $t->http(PUT => "/api/trends/$sid", headers => bearer($alice));
is($r->{status}, 405, 'PUT: 405');
$r = get('/api/trends/a/b');
is($r->{status}, 404, 'a deeper path: 404');

# --- the list: newest first, pages, filters
my @mine = ($sid);
for my $i (1 .. 4) {
    $r = scrape({ platform => $i % 2 ? 'youtube' : 'reddit', keywords => ["k$i"] });
    unshift @mine, $r->{json}{data}{scrape}{id};
}
$t->psql("UPDATE trend_scrapes SET status = 'completed' WHERE id = '$mine[0]'");
$r = get('/api/trends?limit=2');
is($r->{status}, 200, 'list: 200');
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{scrapes} } ], [ @mine[0, 1] ], 'newest first');
is_deeply($r->{json}{data}{pagination}, { page => 1, limit => 2, total => 7, totalPages => 4,
                                          hasMore => JSON::PP::true }, 'pagination');
ok(!exists $r->{json}{data}{scrapes}[0]{results}, 'no results in a list');
is_deeply($r->{json}{data}{scrapes}[1]{keywords}, ['k3'], 'keywords in a list');
$r = get('/api/trends?limit=2&page=3');
is(scalar @{ $r->{json}{data}{scrapes} }, 2, 'page 3: two');
$r = get('/api/trends?limit=2&page=5');
is_deeply($r->{json}{data}{scrapes}, [], 'past the last page: none');
is($r->{json}{data}{pagination}{total}, 7, 'but the total');
$r = get('/api/trends');
is($r->{json}{data}{pagination}{limit}, 20, 'limit 20 by default');
is($r->{json}{data}{pagination}{total}, 7, "alice's seven, not bob's");
$r = get('/api/trends?status=completed');
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{scrapes} } ], [ $mine[0] ], 'status=completed');
$r = get('/api/trends?platform=reddit&status=pending');
is(scalar(grep { $_->{platform} ne 'reddit' || $_->{status} ne 'pending' }
          @{ $r->{json}{data}{scrapes} }), 0, 'platform=reddit&status=pending: only those');
is($r->{json}{data}{pagination}{total}, 2, 'two of them');
$r = get('/api/trends?platform=twitter');
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{scrapes} } ], [ $sid ], 'platform=twitter is x');
for my $q ('limit=0', 'limit=101', 'limit=x', 'page=0', 'page=100001', 'status=done', 'platform=vine') {
    $r = get("/api/trends?$q");
    is($r->{status}, 400, "$q: 400");
    my ($field) = $q =~ /^(\w+)/;
    is($r->{json}{error}{details}{field}, $field, "names $field");
}

# a job cancelled through /api/jobs shows its scrape cancelled
my $other = $mine[1];
my ($ojob) = $t->psql("SELECT job_id FROM trend_scrapes WHERE id = '$other'");
$r = $t->http(POST => "/api/jobs/$ojob/cancel", headers => bearer($alice));
is($r->{status}, 200, 'its job cancelled through /api/jobs');
is(get("/api/trends/$other")->{json}{data}{scrape}{status}, 'cancelled', 'the scrape reads cancelled');
$r = get('/api/trends?status=cancelled');
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{scrapes} } ], [ $other ], 'and lists as cancelled');

# --- delete
$r = del("/api/trends/$sid");
is($r->{status}, 200, 'DELETE: 200');
is_deeply($r->{json}{data}, { id => $sid, deleted => JSON::PP::true, jobCancelled => JSON::PP::true },
          'deleted, its queued job cancelled');
is(get("/api/trends/$sid")->{status}, 404, 'then GET: 404');
is(del("/api/trends/$sid")->{status}, 404, 'DELETE again: 404');
my $jr = row($t, $jid);
is($jr->{status}, 'cancelled', 'the job row: cancelled, not left queued');
is(get("/api/jobs/$jid")->{status}, 200, 'the job row stays for the record');

# a finished scrape: its job is left as it is
$t->psql("UPDATE jobs SET status = 'completed' WHERE id = (SELECT job_id FROM trend_scrapes WHERE id = '$mine[0]')");
$r = del("/api/trends/$mine[0]");
is_deeply($r->{json}{data}{jobCancelled}, JSON::PP::false, 'a completed job is not cancelled');
is(get('/api/trends')->{json}{data}{pagination}{total}, 5, 'five left');

$t->stop;
done_testing();
