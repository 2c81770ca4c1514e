# Node BullMQ 6.7.0 produces, crest-worker consumes: every kind of job Node
# can add is processed, and what Node then sees (getJob, getJobLogs,
# getJobCounts, the QueueEvents of each job) is what it sees when its own
# Worker runs the same processor on another queue.  Also: getWorkers() lists
# the C worker, pause() stops it, resume() starts it again, SIGTERM stops it.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node_json start_worker wait_until log_lines problems);

my $t = Crest::Test->new(no_nginx => 1, no_pg => 1);
$t->start;

start_worker($t, 'c-ping', CREST_QUEUES => 'ping', CREST_CONCURRENCY => 2);

my $workers = wait_until(sub {
    my $w = node_json('scenario.js', $t->redis_port, 'ping', 'workers');
    @$w ? $w : undef;
}, 15);
ok($workers, 'getWorkers() sees the C worker');
is($workers->[0]{rawname}, 'bull:cGluZw==:w:c-ping',
   'on a connection named bull:<base64(queue)>:w:<worker name>');

my $c = node_json('scenario.js', $t->redis_port, 'ping', 'run');
my $n = node_json('scenario.js', $t->redis_port, 'nodeping', 'run', 'node');

ok($c->{done}, 'the C worker finished every job');
ok($n->{done}, 'the Node worker finished every job');
is_deeply($c->{counts}, $n->{counts}, 'getJobCounts() match')
    or diag explain $c->{counts};

for my $name (sort keys %{ $n->{jobs} }) {
    is_deeply($c->{jobs}{$name}, $n->{jobs}{$name},
              "$name: job, logs and events as with Node's Worker")
        or diag explain { c => $c->{jobs}{$name}, node => $n->{jobs}{$name} };
}

# not only equal, but right
my $j = $c->{jobs};
is_deeply($j->{standard}{returnvalue}, { n => 1, progress => 42, log => 'hello' },
          'returnvalue is the data');
is($j->{standard}{progress}, 42, 'progress');
is_deeply($j->{standard}{logs}, { logs => ['hello'], count => 1 }, 'logs');
is($j->{'fixed-retry'}{attemptsMade}, 2, 'a retry after a fixed backoff');
is($j->{'expo-fail'}{state}, 'failed', 'attempts exhausted: failed');
is($j->{'expo-fail'}{failedReason}, 'always', 'failedReason');
is($j->{'expo-fail'}{stacktraceLength}, 3, 'one stack trace per attempt');
ok((grep { $_->{event} eq 'retries-exhausted' } @{ $j->{'expo-fail'}{events} }),
   'retries-exhausted event');
is($j->{'stack-limit'}{stacktraceLength}, 1, 'stackTraceLimit');
ok($j->{'remove-complete'}{removed}, 'removeOnComplete: true removes the job');
is_deeply($j->{'keep-logs'}{logs}{logs}, ['only-last'], 'keepLogs');
is($c->{counts}{completed}, 10, '10 completed');
is($c->{counts}{failed}, 3, '3 failed');

my $p = node_json('scenario.js', $t->redis_port, 'ping', 'pause');
ok($p->{paused}, 'queue paused');
is($p->{stateWhilePaused}, 'waiting', 'the C worker takes nothing from a paused queue');
is($p->{stateAfterResume}, 'completed', 'and processes it after resume()');

my $st = $t->spawn_stop('c-ping');
is($st, 0, 'SIGTERM: exit status 0');
my @log = log_lines($t, 'c-ping');
ok((grep { $_->{msg} eq 'stopped' } @log), 'logged "stopped"');
is_deeply([problems($t, 'c-ping')], [], 'no warnings or errors logged');

$t->stop;
done_testing();
