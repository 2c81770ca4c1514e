# Enqueueing from the edge (POST /api/jobs/ping through ngx_crest_job_enqueue)
# with a real crest-worker serving the ping queue: the row goes pending ->
# queued -> completed (or failed), the BullMQ job carries the row's id and
# the options Node would store; with Redis down the answer is 202 pending
# and the outbox reconciler enqueues the row later; with PostgreSQL down the
# answer is 503 and nothing is enqueued.  In the end every row has its job
# and every job its row.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node_json start_worker wait_until problems);
use Crest::Jobs qw(session bearer row);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_jobs_queues ping judge;
                    crest_pg_query_timeout 1s;
                    crest_redis_command_timeout 500ms;',
    config      => "include $conf;",
);
$t->start;

my $alice = session($t, 'alice@example.com');
my $uuid = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

sub ping {
    my ($body, $who) = @_;
    return $t->http(POST => '/api/jobs/ping', json => $body,
                    headers => bearer($who // $alice));
}

sub settled { my $r = row($t, shift); $r && $r->{status} =~ /^(completed|failed)$/ }

# --- Redis unreachable: the row is written, the job waits for the outbox
$t->redis_stop;
my $r = ping({ data => { while => 'redis down' } });
is($r->{status}, 202, 'Redis down: still 202 Accepted');
is($r->{json}{data}{job}{status}, 'pending', 'status pending');
my $down = $r->{json}{data}{job}{id};
like($down, $uuid, 'with the row id');
sleep 1;
is(row($t, $down)->{status}, 'pending', 'the row stays pending');

$t->redis_start;
start_worker($t, 'worker', CREST_QUEUES => 'ping', CREST_OUTBOX_INTERVAL_MS => 300);
ok(wait_until(sub { settled($down) }, 20), 'Redis back: the reconciler enqueued it');
$r = row($t, $down);
is($r->{status}, 'completed', 'and the worker completed it');
is($r->{enqueued}, 't', 'enqueued_at set');
is_deeply(decode_json($r->{result}), { data => { while => 'redis down' } }, 'its result');

# --- the ordinary path
$r = $t->http(POST => '/api/jobs/ping', json => {});
is($r->{status}, 401, 'no credentials: 401');

$r = ping({ data => { hello => 'edge' }, log => 'from the edge' });
is($r->{status}, 202, 'ping: 202');
my $job = $r->{json}{data}{job};
like($job->{id}, $uuid, 'the job id is a uuid');
is_deeply([ @$job{qw(queue name status)} ], [ 'ping', 'ping', 'queued' ], 'queue, name, queued');
is(scalar $t->psql("SELECT user_id FROM jobs WHERE id = '$job->{id}'"), $alice->{id},
   "the row is the caller's");
ok(wait_until(sub { settled($job->{id}) }, 15), 'the job finished');

$r = $t->http(GET => "/api/jobs/$job->{id}", headers => bearer($alice));
is($r->{status}, 200, 'GET the job');
my $got = $r->{json}{data}{job};
is($got->{status}, 'completed', 'completed');
is_deeply($got->{result}, { data => { hello => 'edge' }, log => 'from the edge' },
          'the result is the data the ping echoed') or diag explain $got;
is_deeply($got->{data}, $got->{result}, 'the data as stored');
is_deeply([ $t->redis_cli('LRANGE', "bull:ping:$job->{id}:logs", 0, -1) ], ['from the edge'],
          "the processor saw it: the job's log");
is($got->{attempts}, 1, 'one attempt');
is($got->{maxAttempts}, 1, 'a ping is tried once unless asked');
ok($got->{enqueuedAt} && $got->{startedAt} && $got->{finishedAt}, 'timestamps');

# --- Node's BullMQ as the judge: the job the edge added is Node's job
my $data = { hello => 'judge' };
$r = ping({ data => $data, attempts => 3 });
my $edge_id = $r->{json}{data}{job}{id};
ok(wait_until(sub { settled($edge_id) }, 15), 'a second ping finished');
my $edge = node_json('producer.js', $t->redis_port, 'ping', 'hashes', $edge_id)->[0]{hash};
my $node = node_json('producer.js', $t->redis_port, 'judge', 'add', encode_json([[
    'ping', { data => $data }, { attempts => 3, jobId => $edge_id,
                                 backoff => { type => 'exponential', delay => 1000 } } ]]))->[0]{hash};
is($edge->{name}, 'ping', 'Node reads its name');
is_deeply(decode_json($edge->{data}), { data => $data }, 'its data');
is($edge->{opts}, $node->{opts}, "its stored opts are the ones Queue.add stores")
    or diag "edge: $edge->{opts}\nnode: $node->{opts}";
my $seen = node_json('producer.js', $t->redis_port, 'ping', 'jobs', $edge_id)->{$edge_id};
is($seen->{state}, 'completed', 'getJob: completed');
is_deeply($seen->{returnvalue}, { data => $data }, 'getJob: the return value');
$t->redis_cli('DEL', "bull:judge:$edge_id");

# --- failures
$r = ping({ fail => 'boom' });
my $failing = $r->{json}{data}{job}{id};
ok(wait_until(sub { settled($failing) }, 15), 'a failing ping finished');
$r = $t->http(GET => "/api/jobs/$failing", headers => bearer($alice));
is($r->{json}{data}{job}{status}, 'failed', 'failed');
is($r->{json}{data}{job}{error}, 'boom', 'with its error');
is($r->{json}{data}{job}{result}, undef, 'no result');

$r = ping({ fail => 'once', failTimes => 1, attempts => 2 });
my $retried = $r->{json}{data}{job}{id};
ok(wait_until(sub { settled($retried) }, 20), 'a ping failing once finished');
is(row($t, $retried)->{status}, 'completed', 'completed on its second attempt');
is(row($t, $retried)->{attempts}, 2, 'attempts 2');

# --- what a ping takes
for my $bad ([ { delayMs => -1 }, 'delayMs' ], [ { delayMs => 30001 }, 'delayMs' ],
             [ { delayMs => '5' }, 'delayMs' ], [ { fail => '' }, 'fail' ],
             [ { fail => 5 }, 'fail' ], [ { attempts => 0 }, 'attempts' ],
             [ { attempts => 11 }, 'attempts' ], [ { failTimes => 1.5 }, 'failTimes' ],
             [ { queue => 'other' }, 'queue' ]) {
    $r = ping($bad->[0]);
    is($r->{status}, 400, "bad $bad->[1]: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', 'VALIDATION_ERROR');
    is($r->{json}{error}{details}{field}, $bad->[1], 'naming the field');
}
$r = $t->http(POST => '/api/jobs/ping', body => '[1]', headers => {
    %{ bearer($alice) }, 'Content-Type' => 'application/json' });
is($r->{status}, 400, 'a body that is not an object: 400');

# --- Redis hangs: the add times out, the row stays pending, and when the
# add went through after all the reconciler's second add is a no-op
my $redis_pid = $t->redis_pid;
kill 'STOP', $redis_pid;
my $t0 = time;
$r = ping({ data => { while => 'redis hung' } });
kill 'CONT', $redis_pid;
is($r->{status}, 202, 'Redis hung: 202');
is($r->{json}{data}{job}{status}, 'pending', 'pending');
cmp_ok(time - $t0, '<', 5, 'after the command deadline, not later');
my $hung = $r->{json}{data}{job}{id};
ok(wait_until(sub { settled($hung) }, 20), 'the job completed');
$seen = node_json('producer.js', $t->redis_port, 'ping', 'jobs', $hung)->{$hung};
is($seen->{attemptsStarted}, 1, 'once');

# --- PostgreSQL down: 503, no row, nothing in Redis
my $rows_before = $t->psql('SELECT count(*) FROM jobs');
my $before = () = grep { m{^bull:ping:[0-9a-f-]{36}$} } $t->redis_cli('KEYS', 'bull:ping:*');
$t->pg_stop;
$r = ping({ data => { while => 'pg down' } });
$t->pg_start;
is($r->{status}, 503, 'PostgreSQL down: 503');
is($r->{json}{error}{code}, 'SERVICE_UNAVAILABLE', 'SERVICE_UNAVAILABLE');
like($r->{json}{error}{message}, qr/not created/, 'the job was not created');
sleep 3;
is(scalar $t->psql('SELECT count(*) FROM jobs'), $rows_before, 'no row');
my $after = () = grep { m{^bull:ping:[0-9a-f-]{36}$} } $t->redis_cli('KEYS', 'bull:ping:*');
is($after, $before, 'no job');

# PostgreSQL hangs: the INSERT may commit after its deadline; the answer
# says so, and such a row gets its job from the reconciler (checked below)
$t->pg_pause;
$r = ping({ data => { while => 'pg hung' } });
$t->pg_resume;
is($r->{status}, 503, 'PostgreSQL hung: 503');
like($r->{json}{error}{message}, qr/may still have been created/, 'the job may exist');

# --- a burst, with a worker as fast as the edge: rows still get
# enqueued_at, whichever of the edge and the worker writes the row first
my @burst = map { ping({ data => { n => $_ } })->{json}{data}{job}{id} } 1 .. 20;
is(scalar(grep { defined && /$uuid/ } @burst), 20, '20 pings accepted');
ok(wait_until(sub { $t->psql("SELECT count(*) FROM jobs WHERE status = 'completed'
    AND id IN ('" . join("','", @burst) . "')") == 20 }, 30), 'all completed');
is(scalar $t->psql("SELECT count(*) FROM jobs WHERE enqueued_at IS NULL
    AND id IN ('" . join("','", @burst) . "')"), 0, 'every row has enqueued_at');

# --- every row has its job, and every job its row
ok(wait_until(sub { !$t->psql("SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued', 'active')") }, 20),
   'nothing left in flight');
my @rows = sort $t->psql('SELECT id FROM jobs');
my @jobs = sort map { m{^bull:ping:([0-9a-f-]{36})$} ? $1 : () } $t->redis_cli('KEYS', 'bull:ping:*');
is_deeply(\@jobs, \@rows, 'the jobs in Redis are the rows in PostgreSQL');
cmp_ok(scalar @rows, '>=', 6, 'all of them');

# (PostgreSQL was stopped on purpose above)
is_deeply([ grep { !/^postgres |^not ready$/ } problems($t, 'worker') ], [],
          'the worker logged no problem but PostgreSQL going away');
$t->spawn_stop('worker');
$t->stop;
done_testing();
