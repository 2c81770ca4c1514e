# The caller's jobs: GET /api/jobs (pages, filters, validation), GET
# /api/jobs/{id} with live progress, POST /api/jobs/{id}/cancel for queued,
# pending and running jobs (409 for finished ones), and other users' ids,
# like malformed ones, are 404 everywhere.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until);
use Crest::Jobs qw(session bearer row sse_open sse_until);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_jobs_queues ping other;',
    config      => "include $conf;",
);
$t->start;

my $alice = session($t, 'alice@example.com');
my $bob = session($t, 'bob@example.com');

sub ping {
    my ($body, $who) = @_;
    my $r = $t->http(POST => '/api/jobs/ping', json => $body, headers => bearer($who // $alice));
    die "ping: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    return $r->{json}{data}{job}{id};
}

sub get { $t->http(GET => $_[0], headers => bearer($_[1] // $alice)) }
sub post { $t->http(POST => $_[0], headers => bearer($_[1] // $alice)) }

# no worker yet: the jobs stay queued
my @ids = map { ping({ data => { n => $_ } }) } 1 .. 5;
my $bobs = ping({ data => { bob => 1 } }, $bob);

# --- pages
my $r = get('/api/jobs?limit=2');
is($r->{status}, 200, 'list: 200');
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{jobs} } ], [ @ids[4, 3] ], 'newest first, 2 of them');
is_deeply($r->{json}{data}{pagination}, { page => 1, limit => 2, total => 5, totalPages => 3,
                                          hasMore => JSON::PP::true },
          'pagination');
{
    my $last = get('/api/jobs?limit=2&page=3');
    is_deeply($last->{json}{data}{pagination}, { page => 3, limit => 2, total => 5, totalPages => 3,
                                                 hasMore => JSON::PP::false },
              'pagination: the last page has no more');
}
is($r->{json}{data}{jobs}[0]{status}, 'queued', 'queued');
ok(!exists $r->{json}{data}{jobs}[0]{data}, 'no data in a list');
$r = get('/api/jobs?limit=2&page=3');
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{jobs} } ], [ $ids[0] ], 'the last page');
$r = get('/api/jobs?limit=2&page=4');
is_deeply($r->{json}{data}{jobs}, [], 'past the last page: none');
is($r->{json}{data}{pagination}{total}, 5, 'but the total');
$r = get('/api/jobs');
is($r->{json}{data}{pagination}{limit}, 20, 'limit 20 by default');
is(scalar @{ $r->{json}{data}{jobs} }, 5, "alice's five, not bob's");
$r = get('/api/jobs', $bob);
is_deeply([ map { $_->{id} } @{ $r->{json}{data}{jobs} } ], [ $bobs ], "bob sees his own");

# --- filters
$r = get('/api/jobs?status=queued&queue=ping');
is($r->{json}{data}{pagination}{total}, 5, 'status=queued&queue=ping: 5');
$r = get('/api/jobs?status=completed');
is($r->{json}{data}{pagination}{total}, 0, 'status=completed: none');
$r = get('/api/jobs?queue=other');
is($r->{json}{data}{pagination}{total}, 0, 'queue=other: none');

for my $q ('limit=0', 'limit=101', 'limit=abc', 'limit=-1', 'limit=', 'page=0',
           'page=x', 'page=100001', 'status=done', 'queue=nope', 'queue=bull:ping') {
    $r = get("/api/jobs?$q");
    is($r->{status}, 400, "$q: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', 'VALIDATION_ERROR');
    my ($field) = $q =~ /^(\w+)/;
    is($r->{json}{error}{details}{field}, $field, "names $field");
}
$r = get('/api/jobs?limit=100&page=1&status=queued&queue=ping&other=ignored');
is($r->{status}, 200, 'every filter at once, unknown arguments ignored');

# --- one job, and other people's
$r = get("/api/jobs/$ids[0]");
is($r->{status}, 200, 'GET a queued job');
is($r->{json}{data}{job}{status}, 'queued', 'queued');
is_deeply($r->{json}{data}{job}{data}, { data => { n => 1 } }, 'with its data');
is($r->{json}{data}{job}{progress}, undef, 'no progress yet');

for my $path ("/api/jobs/$bobs", "/api/jobs/$bobs/events") {
    $r = get($path);
    is($r->{status}, 404, "another user's job: GET $path 404");
    is($r->{json}{error}{code}, 'NOT_FOUND', 'NOT_FOUND');
}
$r = post("/api/jobs/$bobs/cancel");
is($r->{status}, 404, "another user's job: cancel 404");
is(row($t, $bobs)->{status}, 'queued', 'and it is left alone');
for my $bad ('nope', uc($ids[0]), "$ids[0]x", '00000000-0000-0000-0000-000000000000') {
    is(get("/api/jobs/$bad")->{status}, 404, "GET /api/jobs/$bad: 404");
    is(post("/api/jobs/$bad/cancel")->{status}, 404, "cancel $bad: 404");
}
is(get("/api/jobs/$ids[0]/other")->{status}, 404, 'an unknown action: 404');
is($t->http(DELETE => "/api/jobs/$ids[0]", headers => bearer($alice))->{status}, 405, 'DELETE: 405');
is(get('/api/jobs/ping')->{status}, 405, 'GET /api/jobs/ping: 405');
is(get("/api/jobs/$ids[0]/cancel")->{status}, 405, 'GET .../cancel: 405');
is($t->http(GET => "/api/jobs/$ids[0]")->{status}, 401, 'no credentials: 401');

# --- live progress while it runs
$t->redis_cli('HSET', "bull:ping:$ids[1]", 'progress', '{"pct": 40}');
$r = get("/api/jobs/$ids[1]");
is_deeply($r->{json}{data}{job}{progress}, { pct => 40 }, "progress from the job's hash");

# --- cancel a queued job: out of BullMQ, the row cancelled
$r = post("/api/jobs/$ids[2]/cancel");
is($r->{status}, 200, 'cancel a queued job: 200');
is($r->{json}{data}{job}{status}, 'cancelled', 'cancelled');
is($r->{json}{data}{removedFromQueue}, JSON::PP::true, 'removed from its queue');
is(row($t, $ids[2])->{status}, 'cancelled', 'the row says so');
is($t->redis_cli('EXISTS', "bull:ping:$ids[2]"), 0, 'the BullMQ job is gone');
ok(!grep({ $_ eq $ids[2] } $t->redis_cli('LRANGE', 'bull:ping:wait', 0, -1)), 'not waiting');
$r = post("/api/jobs/$ids[2]/cancel");
is($r->{status}, 200, 'cancelling again: 200');
is($r->{json}{data}{job}{status}, 'cancelled', 'still cancelled');

# --- a pending row (Redis was down) cancelled: the reconciler leaves it
my ($pending) = $t->psql("INSERT INTO jobs (user_id, queue, name, data, max_attempts, created_at)
    VALUES ('$alice->{id}', 'ping', 'ping', '{}', 1, now() - interval '1 minute') RETURNING id");
$r = post("/api/jobs/$pending/cancel");
is($r->{status}, 200, 'cancel a pending row: 200');
is($r->{json}{data}{job}{status}, 'cancelled', 'cancelled');

# --- a running job: BullMQ cannot remove it; the row is cancelled and
# keeps that status whatever the worker does, and its events end
start_worker($t, 'worker', CREST_QUEUES => 'ping', CREST_OUTBOX_INTERVAL_MS => 300);
my $running = ping({ delayMs => 2000 });
ok(wait_until(sub { row($t, $running)->{status} eq 'active' }, 10), 'a slow job runs');
my $sse = sse_open($t, "/api/jobs/$running/events", $alice);
my @ev = sse_until($sse, 'state', 5);
is($ev[-1]{data}{status}, 'active', 'its events say active');
$r = post("/api/jobs/$running/cancel");
is($r->{status}, 200, 'cancel a running job: 200');
is($r->{json}{data}{job}{status}, 'cancelled', 'cancelled');
is($r->{json}{data}{removedFromQueue}, JSON::PP::false, 'not removed: a worker holds it');
@ev = sse_until($sse, 'cancelled', 5);
is($ev[-1]{event}, 'cancelled', 'the stream says cancelled');
ok(wait_until(sub { $sse->{ended} || !defined Crest::Jobs::sse_next($sse, 1) }, 3), 'and ends');

ok(wait_until(sub { $t->redis_cli('HGET', "bull:ping:$running", 'finishedOn') }, 10),
   'the worker finished it in BullMQ');
ok(wait_until(sub { !$t->psql("SELECT count(*) FROM jobs WHERE status IN ('queued', 'active')") }, 15),
   'the other jobs finished');
is(row($t, $running)->{status}, 'cancelled', 'its row stays cancelled');
is(row($t, $running)->{result}, '', 'no result recorded');
is(row($t, $pending)->{status}, 'cancelled', 'the cancelled pending row was never enqueued');
is($t->redis_cli('EXISTS', "bull:ping:$pending"), 0, 'no job for it');
is(row($t, $ids[2])->{status}, 'cancelled', 'nor the cancelled queued one run');

# --- finished jobs cannot be cancelled
$r = post("/api/jobs/$ids[0]/cancel");
is($r->{status}, 409, 'cancel a completed job: 409');
is($r->{json}{error}{code}, 'CONFLICT', 'CONFLICT');
my $failed = ping({ fail => 'no' });
ok(wait_until(sub { row($t, $failed)->{status} eq 'failed' }, 10), 'a failed job');
$r = post("/api/jobs/$failed/cancel");
is($r->{status}, 409, 'cancel a failed job: 409');
is(row($t, $failed)->{status}, 'failed', 'still failed');

$r = get('/api/jobs?status=cancelled');
is($r->{json}{data}{pagination}{total}, 3, 'status=cancelled: the three');

$t->spawn_stop('worker');
$t->stop;
done_testing();
