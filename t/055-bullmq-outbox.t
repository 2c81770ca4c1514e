# The outbox reconciler and job rows: rows the edge left `pending` (Redis was
# unreachable) are enqueued with jobId = the row's id and marked `queued`;
# crest-worker then keeps each row's status, attempts, result or error and
# times up to date.  Enqueuing is idempotent: a job that made it to Redis
# before the edge could mark its row is not added twice.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node_json start_worker wait_until problems crest_queue);

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my %id = (
    ok      => '11111111-1111-4111-8111-111111111111',
    failing => '22222222-2222-4222-8222-222222222222',
    badq    => '33333333-3333-4333-8333-333333333333',
    queued  => '44444444-4444-4444-8444-444444444444',
    dup     => '55555555-5555-4555-8555-555555555555',
    fresh   => '66666666-6666-4666-8666-666666666666',
    retried => '77777777-7777-4777-8777-777777777777',
);

$t->psql(<<"SQL");
INSERT INTO jobs (id, queue, name, data, status, max_attempts, created_at) VALUES
 ('$id{ok}',      'ping',      'outbox', '{"hello": "outbox"}',  'pending', 2, now() - interval '5 seconds'),
 ('$id{failing}', 'ping',      'outbox', '{"fail": "nope"}',     'pending', 1, now() - interval '5 seconds'),
 ('$id{badq}',    'bad:queue', 'outbox', '{}',                   'pending', 1, now() - interval '5 seconds'),
 ('$id{queued}',  'ping',      'edge',   '{"edge": true}',       'queued',  1, now()),
 ('$id{dup}',     'ping',      'outbox', '{"second": true}',     'pending', 1, now() - interval '5 seconds'),
 ('$id{retried}', 'ping',      'outbox', '{"fail": "once", "failTimes": 1}', 'pending', 3, now() - interval '5 seconds');
SQL

# the edge enqueued these two itself (the second before it could mark its row)
for (['queued', '{"edge":true}'], ['dup', '{"first":true}']) {
    my ($rc, $out) = crest_queue($t, 'add', 'ping', 'edge', $_->[1],
                                 '--opts', qq({"jobId":"$id{$_->[0]}"}));
    is($out, $id{ $_->[0] }, "edge job $_->[0] added with its row's id");
}

start_worker($t, 'c-outbox', CREST_OUTBOX_INTERVAL_MS => 300, CREST_QUEUES => 'ping');

# a row created now waits 2 seconds before the reconciler touches it
$t->psql("INSERT INTO jobs (id, queue, name, data) VALUES ('$id{fresh}', 'ping', 'late', '{\"late\": 1}')");

sub row {
    my $k = shift;
    my ($line) = $t->psql("SELECT status, attempts, coalesce(result::text, ''),
        coalesce(error, ''), enqueued_at IS NOT NULL, started_at IS NOT NULL,
        finished_at IS NOT NULL FROM jobs WHERE id = '$id{$k}'");
    my @f = split /\|/, $line // '';
    return { status => $f[0], attempts => $f[1], result => $f[2], error => $f[3],
             enqueued => $f[4], started => $f[5], finished => $f[6] };
}

sub settled { my $s = row(shift)->{status}; $s eq 'completed' || $s eq 'failed' }

ok(wait_until(sub { settled('ok') && settled('failing') && settled('queued')
                    && settled('dup') && settled('retried') }, 30),
   'the rows reached a final status');
ok(wait_until(sub { row('fresh')->{status} eq 'completed' }, 20),
   'the fresh row too, once 2 seconds old');

my $r = row('ok');
is($r->{status}, 'completed', 'pending row: completed');
is_deeply(decode_json($r->{result}), { hello => 'outbox' }, 'result is the return value');
is($r->{attempts}, 1, 'attempts');
ok($r->{enqueued} eq 't' && $r->{started} eq 't' && $r->{finished} eq 't',
   'enqueued_at, started_at, finished_at');

$r = row('failing');
is($r->{status}, 'failed', 'a failing job: failed');
is($r->{error}, 'nope', 'error');
is($r->{result}, '', 'no result');

$r = row('retried');
is($r->{status}, 'completed', 'a job that failed once, then completed');
is($r->{attempts}, 2, 'attempts 2 (max_attempts became its attempts)');

is(row('badq')->{status}, 'failed', 'an invalid queue name fails the row');
is(row('badq')->{error}, 'invalid queue name', 'with a reason');

$r = row('queued');
is($r->{status}, 'completed', 'a row the edge enqueued: completed');
is_deeply(decode_json($r->{result}), { edge => JSON::PP::true }, 'its result');

$r = row('dup');
is($r->{status}, 'completed', 'a pending row whose job already existed: completed');
is_deeply(decode_json($r->{result}), { first => JSON::PP::true },
          'by the job the edge added, not a second one');
my $j = node_json('producer.js', $t->redis_port, 'ping', 'jobs', $id{dup})->{ $id{dup} };
is($j->{attemptsStarted}, 1, 'processed once');

is_deeply([problems($t, 'c-outbox')], [], 'no warnings or errors');
is($t->spawn_stop('c-outbox'), 0, 'stops cleanly');

$t->stop;
done_testing();
