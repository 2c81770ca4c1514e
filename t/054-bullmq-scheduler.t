# Job schedulers added from Node keep producing jobs that crest-worker
# processes: with "every" (the Lua computes the next time) the next delayed
# job crest-worker schedules is stored like the one Node's Worker schedules;
# with a cron "pattern" crest-worker computes the next time itself, also in
# a time zone, and agrees with cron-parser.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node_json start_worker wait_until problems);

my $t = Crest::Test->new(no_nginx => 1, no_pg => 1);
$t->start;
my $port = $t->redis_port;

start_worker($t, 'c-sched', CREST_QUEUES => 'every=ping,cron=ping,crontz=ping',
             CREST_CONCURRENCY => 2);
$t->spawn('node-sched', ['node', "$FindBin::Bin/node/ping-worker.js", $port,
                         'nevery', 1, 'node-sched']);
ok(wait_until(sub {
    @{ node_json('scenario.js', $port, 'every', 'workers') }
    && @{ node_json('scenario.js', $port, 'nevery', 'workers') };
}, 20), 'workers up');

node_json('scheduler.js', $port, $_, 'upsert', 'e1', '{"every":400}') for qw(every nevery);
node_json('scheduler.js', $port, 'cron', 'upsert', 'c1', '{"pattern":"* * * * * *"}');
node_json('scheduler.js', $port, 'crontz', 'upsert', 'z1',
          '{"pattern":"0 30 12 * * *","tz":"America/New_York","immediately":true}');

sleep 3.2;

my $c = node_json('scheduler.js', $port, 'every', 'report', 'e1');
my $n = node_json('scheduler.js', $port, 'nevery', 'report', 'e1');

cmp_ok(scalar @{ $c->{completed} }, '>=', 5, 'every 400 ms: C completed '
       . scalar @{ $c->{completed} } . ' iterations in 3 s');
ok(!grep({ $_->{processedBy} ne 'c-sched' } @{ $c->{completed} }), 'all by the C worker');
is_deeply($c->{completed}[0]{returnvalue}, { s => 'e1' }, 'the template data came through');
cmp_ok($c->{scheduler}{iterationCount}, '>=', 6, 'iterationCount grows');
is(scalar @{ $c->{delayed} }, 1, 'one next job waits');
cmp_ok($c->{scheduler}{next}, '>', $c->{now} - 1000, 'due next');

my ($cd, $nd) = ($c->{delayed}[0], $n->{delayed}[0]);
is($cd->{rjk}, 'e1', 'the next job belongs to the scheduler');
is_deeply([sort keys %{ $cd->{storedOpts} }], [sort keys %{ $nd->{storedOpts} }],
          "the next job's stored opts have the keys Node's Worker gives it")
    or diag explain [$cd->{storedOpts}, $nd->{storedOpts}];
is_deeply([sort keys %{ $cd->{storedOpts}{repeat} }],
          [sort keys %{ $nd->{storedOpts}{repeat} }], 'and so has its repeat');
is($cd->{storedOpts}{repeat}{every}, 400, 'every');

my $cron = node_json('scheduler.js', $port, 'cron', 'report', 'c1');
cmp_ok(scalar @{ $cron->{completed} }, '>=', 2, 'cron every second: '
       . scalar @{ $cron->{completed} } . ' iterations');
ok(!grep({ $_->{id} !~ /^repeat:c1:\d+000$/ } @{ $cron->{completed} }),
   'each on a whole second');

my $tz = node_json('scheduler.js', $port, 'crontz', 'report', 'z1', 'America/New_York',
                   '0 30 12 * * *');
is(scalar @{ $tz->{completed} }, 1, 'the immediate iteration ran');
is(scalar @{ $tz->{delayed} }, 1, 'and C scheduled the next');
is($tz->{delayed}[0]{id}, "repeat:z1:$tz->{cronNext}",
   'at the time cron-parser gives for 12:30 in New York');
is($tz->{scheduler}{next}, $tz->{cronNext}, 'the scheduler agrees');

is_deeply([problems($t, 'c-sched')], [], 'no warnings or errors');
$t->stop;
done_testing();
