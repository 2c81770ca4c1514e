# GET /api/jobs/{id}/events: Server-Sent Events fed by BullMQ's events
# streams through one XREAD per nginx worker.  The first event is the job's
# state; then active, progress, completed or failed (and retries-exhausted)
# as crest-worker reports them; the stream ends with the job.  Jobs already
# over answer their state and their end at once.  Keepalive comments, many
# streams on one job, clients that leave, and a reload with streams open
# (they end cleanly; no alert, no socket left) are covered too.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until);
use Crest::Jobs qw(session bearer row sse_open sse_next sse_until sse_close);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_jobs_queues ping other;
                    crest_jobs_events_keepalive 1s;',
    config      => "include $conf;",
);
$t->start;

my $alice = session($t, 'alice@example.com');

sub ping {
    my $r = $t->http(POST => '/api/jobs/ping', json => $_[0], headers => bearer($alice));
    die "ping: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    return $r->{json}{data}{job}{id};
}

sub names { join ' ', map { $_->{event} } @_ }

# --- a job followed from before it starts: every event
my $id = ping({ data => { x => 1 }, progress => { pct => 50 }, delayMs => 700 });
my $s = sse_open($t, "/api/jobs/$id/events", $alice);
is($s->{status}, 200, 'the stream answers 200');
like($s->{headers}{'content-type'}, qr{^text/event-stream}, 'text/event-stream');
is($s->{headers}{'cache-control'}, 'no-cache', 'Cache-Control: no-cache');
is($s->{headers}{'x-accel-buffering'}, 'no', 'X-Accel-Buffering: no');
ok(!exists $s->{headers}{'content-length'}, 'no length: a stream');

my ($first) = sse_until($s, 'state', 5);
is($first->{event}, 'state', 'first the state');
is($first->{data}{id}, $id, 'of the job');
is($first->{data}{status}, 'queued', 'queued: no worker yet');

start_worker($t, 'worker', CREST_QUEUES => 'ping');
my @ev = sse_until($s, 'completed', 10);
is(names(@ev), 'active progress completed', 'active, progress, completed');
is_deeply($ev[1]{data}, { jobId => $id, progress => { pct => 50 } }, 'the progress the processor reported');
is_deeply($ev[2]{data}{result}, { data => { x => 1 }, progress => { pct => 50 }, delayMs => 700 },
          'completed with the result');
is($ev[2]{data}{status}, 'completed', 'status completed');
ok(!defined sse_next($s, 3) && $s->{ended}, 'then the stream ends');
sse_close($s);

# --- a failing job: failed, retries-exhausted, the end
$t->spawn_stop('worker');
$id = ping({ fail => 'it broke', delayMs => 300 });
$s = sse_open($t, "/api/jobs/$id/events", $alice);
sse_until($s, 'state', 5);
start_worker($t, 'worker', CREST_QUEUES => 'ping');
@ev = sse_until($s, 'failed', 10);
is(names(@ev), 'active failed', 'active, failed');
is($ev[-1]{data}{error}, 'it broke', 'with the error');
my $next = sse_next($s, 3);
is($next && $next->{event}, 'retries-exhausted', 'retries-exhausted');
is($next && $next->{data}{attemptsMade}, 1, 'after 1 attempt');
ok(!defined sse_next($s, 3) && $s->{ended}, 'then the end');

# --- a job that finished before anyone asked
$id = ping({ data => { early => 1 } });
ok(wait_until(sub { row($t, $id)->{status} eq 'completed' }, 10), 'a job finished');
$s = sse_open($t, "/api/jobs/$id/events", $alice);
@ev = sse_until($s, 'completed', 5);
is(names(@ev), 'state completed', 'its state, then completed');
is($ev[0]{data}{status}, 'completed', 'the state says completed');
is_deeply($ev[1]{data}{result}, { data => { early => 1 } }, 'with the result');
ok(!defined sse_next($s, 3) && $s->{ended}, 'and the stream ends');

# a job whose row lags behind BullMQ (the worker writes rows afterwards)
$id = ping({ data => { lag => 1 } });
ok(wait_until(sub { row($t, $id)->{status} eq 'completed' }, 10), 'another job finished');
$t->psql("UPDATE jobs SET status = 'active', result = NULL WHERE id = '$id'");
$s = sse_open($t, "/api/jobs/$id/events", $alice);
@ev = sse_until($s, 'completed', 5);
is(names(@ev), 'state completed', 'a row still active, BullMQ done: completed at once');
is_deeply($ev[1]{data}{result}, { data => { lag => 1 } }, "BullMQ's result");

# --- keepalives, and many streams on one job, across both nginx workers
$t->spawn_stop('worker');
$id = ping({ delayMs => 200 });
my @streams = map { sse_open($t, "/api/jobs/$id/events", $alice) } 1 .. 6;
sse_until($_, 'state', 5) for @streams;
my $comment;
for (1 .. 3) {
    my $e = sse_next($streams[0], 3) // last;
    if (exists $e->{comment}) { $comment = $e->{comment}; last }
}
is($comment, 'keepalive', 'an idle stream gets keepalive comments');
start_worker($t, 'worker', CREST_QUEUES => 'ping');
my $done = 0;
for my $st (@streams) {
    my @e = sse_until($st, 'completed', 10);
    $done++ if @e && $e[-1]{event} eq 'completed';
    sse_close($st);
}
is($done, 6, 'all six streams saw it complete');

# --- clients that leave: mid-stream, before the state, right away
$t->spawn_stop('worker');
$id = ping({});
for my $i (1 .. 20) {
    my $st = sse_open($t, "/api/jobs/$id/events", $alice);
    sse_until($st, 'state', 5) if $i % 2;
    sse_close($st);
}
for (1 .. 10) {
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp');
    print {$sock} "GET /api/jobs/$id/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $alice->{token}\r\n\r\n";
    close $sock;
}
sleep 0.5;
$s = sse_open($t, "/api/jobs/$id/events", $alice);
@ev = sse_until($s, 'state', 5);
is($ev[-1]{data}{status}, 'queued', 'streams still work after clients left');
start_worker($t, 'worker', CREST_QUEUES => 'ping');
@ev = sse_until($s, 'completed', 10);
is($ev[-1]{event}, 'completed', 'and see the job complete');
sse_close($s);
$t->check_error_log(name => 'no alert after clients left');

# --- a reload with streams open: they end cleanly, the old workers exit
$t->spawn_stop('worker');
$id = ping({});
@streams = map { sse_open($t, "/api/jobs/$id/events", $alice) } 1 .. 4;
sse_until($_, 'state', 5) for @streams;
my @old = $t->nginx_pids;
$t->nginx_reload;
my $ended = 0;
for my $st (@streams) {
    my $deadline = time + 5;
    1 while time < $deadline && defined sse_next($st, $deadline - time);
    $ended++ if $st->{ended};
}
is($ended, 4, 'every stream ended with the chunked terminator');
ok(wait_until(sub { !grep { kill 0, $_ } @old }, 10), 'the old workers exited');
$s = sse_open($t, "/api/jobs/$id/events", $alice);
@ev = sse_until($s, 'state', 5);
is($ev[-1]{data}{status}, 'queued', 'a client reconnecting gets the state');
start_worker($t, 'worker', CREST_QUEUES => 'ping');
@ev = sse_until($s, 'completed', 10);
is($ev[-1]{event}, 'completed', 'and the rest from the new workers');
$t->check_error_log(name => 'no alert, no socket left after the reload');

# --- a stream open while nginx stops
$id = ping({ delayMs => 5000 });
$s = sse_open($t, "/api/jobs/$id/events", $alice);
sse_until($s, 'state', 5);
$t->spawn_stop('worker');
$t->stop;
1 while defined sse_next($s, 1);
ok($s->{ended}, 'nginx stopping ends open streams cleanly');
done_testing();
