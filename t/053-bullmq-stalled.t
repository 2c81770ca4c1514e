# Locks and stalled jobs with crest-worker:
#  - a job running longer than the lock duration keeps its lock (renewed
#    with extendLocks) and completes once, never seen as stalled;
#  - SIGKILL mid-job loses nothing: another worker's stalled-job check puts
#    the job back in wait and that worker completes it;
#  - a job stalled more often than allowed carries BullMQ's deferred failure
#    and fails at once, without retry;
#  - SIGTERM lets a job in flight finish within the grace period, and past
#    it leaves the job to stalled-job recovery.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node_json start_worker wait_until problems crest_queue);

my $t = Crest::Test->new(no_nginx => 1, no_pg => 1);
$t->start;
my $port = $t->redis_port;

sub add {
    my ($queue, @jobs) = @_;    # [name, data JSON, opts JSON]
    my $spec = '[' . join(',', map { qq{["$_->[0]",$_->[1],$_->[2]]} } @jobs) . ']';
    return map { $_->{id} } @{ node_json('producer.js', $port, $queue, 'add', $spec) };
}

sub jobs { node_json('producer.js', $port, shift, 'jobs', @_) }

# polled with crest-queue (cheap); the checks that follow ask Node
sub state_is {
    my ($queue, $id, $state, $secs) = @_;
    return wait_until(sub { (crest_queue($t, 'state', $queue, $id))[1] eq $state }, $secs);
}

# --- a long job keeps its lock -------------------------------------------
start_worker($t, 'keeper', CREST_QUEUES => 'long=ping',
             CREST_LOCK_DURATION_MS => 1000, CREST_STALLED_INTERVAL_MS => 300);
my ($long) = add('long', ['long', '{"delayMs":3500}', '{"attempts":3}']);
ok(state_is('long', $long, 'completed', 15), 'a 3.5 s job with a 1 s lock completes');
my $j = jobs('long', $long)->{$long};
is($j->{attemptsStarted}, 1, 'started once');
is($j->{stalledCounter}, 0, 'never stalled');
is($j->{processedBy}, 'keeper', 'by the worker that took it');
is_deeply([problems($t, 'keeper')], [], 'no lock renewal failed');
$t->spawn_stop('keeper');

# --- SIGKILL mid-job ------------------------------------------------------
# Every worker gets the same stalled interval: the check's "stalled-check"
# key lives as long as the interval of whoever ran the check last.
start_worker($t, 'victim', CREST_QUEUES => 'kill=ping',
             CREST_LOCK_DURATION_MS => 1000, CREST_STALLED_INTERVAL_MS => 300);
my ($killed) = add('kill', ['killed', '{"delayMs":3000,"n":1}', '{"attempts":2}']);
ok(state_is('kill', $killed, 'active', 10), 'the job is active');
$t->spawn_stop('victim', signal => 'KILL');
is(jobs('kill', $killed)->{$killed}{state}, 'active', 'SIGKILL leaves it active');

start_worker($t, 'rescuer', CREST_QUEUES => 'kill=ping',
             CREST_LOCK_DURATION_MS => 1000, CREST_STALLED_INTERVAL_MS => 300);
ok(state_is('kill', $killed, 'completed', 20), 'recovered and completed by another worker');
$j = jobs('kill', $killed)->{$killed};
is($j->{processedBy}, 'rescuer', 'by the rescuer');
is($j->{stalledCounter}, 1, 'counted as stalled once');
is($j->{attemptsStarted}, 2, 'started twice');
is($j->{attemptsMade}, 1, 'one attempt made');
is_deeply($j->{returnvalue}, { delayMs => 3000, n => 1 }, 'its return value');
$t->spawn_stop('rescuer');

# --- stalled too often: deferred failure ----------------------------------
start_worker($t, 'victim2', CREST_QUEUES => 'defa=ping',
             CREST_LOCK_DURATION_MS => 1000, CREST_STALLED_INTERVAL_MS => 300);
my ($defa) = add('defa', ['defa', '{"delayMs":3000}', '{"attempts":3}']);
ok(state_is('defa', $defa, 'active', 10), 'active');
$t->spawn_stop('victim2', signal => 'KILL');
start_worker($t, 'strict', CREST_QUEUES => 'defa=ping', CREST_MAX_STALLED_COUNT => 0,
             CREST_LOCK_DURATION_MS => 1000, CREST_STALLED_INTERVAL_MS => 300);
ok(state_is('defa', $defa, 'failed', 20), 'stalled past maxStalledCount: failed');
$j = jobs('defa', $defa)->{$defa};
is($j->{failedReason}, 'job stalled more than allowable limit', "BullMQ's reason");
is($j->{attemptsMade}, 1, 'no retry despite attempts 3');
$t->spawn_stop('strict');

# --- SIGTERM ---------------------------------------------------------------
start_worker($t, 'graceful', CREST_QUEUES => 'term=ping', CREST_SHUTDOWN_GRACE_MS => 5000);
my ($soon) = add('term', ['soon', '{"delayMs":1500}', '{}']);
ok(state_is('term', $soon, 'active', 10), 'active');
my $t0 = time;
is($t->spawn_stop('graceful'), 0, 'SIGTERM: exit status 0');
my $took = time - $t0;
is(jobs('term', $soon)->{$soon}{state}, 'completed', 'the job in flight completed first');
ok($took < 4, sprintf('and the worker exited then (%.1f s)', $took));

start_worker($t, 'hasty', CREST_QUEUES => 'term=ping', CREST_SHUTDOWN_GRACE_MS => 300,
             CREST_LOCK_DURATION_MS => 1000);
my ($slow) = add('term', ['slow', '{"delayMs":30000}', '{}']);
ok(state_is('term', $slow, 'active', 10), 'a slow job is active');
$t0 = time;
is($t->spawn_stop('hasty'), 0, 'SIGTERM past the grace period: exit status 0');
$took = time - $t0;
ok($took < 3, sprintf('exited soon after the grace period (%.1f s)', $took));
is(jobs('term', $slow)->{$slow}{state}, 'active', 'the job is left active');
ok(grep({ $_ eq 'job left for stalled-job recovery' } problems($t, 'hasty')),
   'and the worker says so');

$t->stop;
done_testing();
