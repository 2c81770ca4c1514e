# Node's Worker and crest-worker on one queue: 10,000 jobs, none lost, none
# processed twice (each job started once: attemptsStarted 1), both workers
# take part.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node_json start_worker crest_queue wait_until problems);

my $N = 10000;

my $t = Crest::Test->new(no_nginx => 1, no_pg => 1);
$t->start;

start_worker($t, 'c-mixed', CREST_QUEUES => 'mixed=ping', CREST_CONCURRENCY => 4);
$t->spawn('node-mixed', ['node', "$FindBin::Bin/node/ping-worker.js",
                         $t->redis_port, 'mixed', 4, 'node-mixed']);

my $workers = wait_until(sub {
    my $w = node_json('scenario.js', $t->redis_port, 'mixed', 'workers');
    @$w >= 2 ? $w : undef;
}, 20);
ok($workers, 'both workers are up');

my $started = time;
my $added = node_json('producer.js', $t->redis_port, 'mixed', 'bulk', $N);
is($added->{added}, $N, "$N jobs added");

my $counts;
ok(wait_until(sub {
    my ($rc, $out) = crest_queue($t, 'counts', 'mixed');
    $counts = decode_json($out);
    $counts->{completed} == $N;
}, 180), 'all completed') or diag explain $counts;
note(sprintf '%d jobs in %.1f s', $N, time - $started);

my $a = node_json('producer.js', $t->redis_port, 'mixed', 'audit', $N);
is($a->{completed}, $N, 'every job is in the completed set');
is_deeply($a->{missing}, [], 'no job lost');
is_deeply($a->{twice}, [], 'no job started twice (ats = atm = 1)');
is_deeply($a->{badReturn}, [], 'every return value is its data');
ok($a->{byWorker}{'c-mixed'}, "the C worker processed $a->{byWorker}{'c-mixed'}");
ok($a->{byWorker}{'node-mixed'}, "the Node worker processed $a->{byWorker}{'node-mixed'}");
is(($a->{byWorker}{'c-mixed'} // 0) + ($a->{byWorker}{'node-mixed'} // 0), $N,
   'nobody else');
is($counts->{failed} + $counts->{active} + $counts->{waiting}, 0,
   'nothing failed, active or waiting');

is($t->spawn_stop('c-mixed'), 0, 'C worker stops cleanly');
is_deeply([problems($t, 'c-mixed')], [], 'no warnings or errors from the C worker');
$t->spawn_stop('node-mixed');

$t->stop;
done_testing();
