# crest-queue (the C client) produces, Node BullMQ 6.7.0 consumes: each add
# variant stores exactly what Queue.add stores for the same options (the
# job hash's opts, byte for byte, and its other fields), and Node's Worker
# processes every job.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(node node_json crest_queue wait_until);

my $t = Crest::Test->new(no_nginx => 1, no_pg => 1);
$t->start;

my $JSON = JSON::PP->new->canonical;

# [name, data, options for Node, the same for crest-queue]: the order of the
# options is the one crest_bullmq_opts_t writes (see shared/crest_bullmq.h).
my @variants = (
    ['standard', '{"v":1}', '{}'],
    ['delayed', '{"v":2}', '{"delay":300}'],
    ['prioritized', '{"v":3}', '{"priority":3}'],
    ['lifo', '{"v":4}', '{"lifo":true}'],
    ['custom-id', '{"v":5}', '{"jobId":"ID"}'],
    ['fixed', '{"v":6}', '{"attempts":3,"backoff":{"type":"fixed","delay":100}}'],
    ['exponential', '{"v":7}',
     '{"attempts":2,"backoff":{"type":"exponential","delay":50,"jitter":0.5}}'],
    ['backoff-number', '{"v":8}', '{"attempts":2,"backoff":250}'],
    ['remove-bool', '{"v":9}', '{"removeOnComplete":true,"removeOnFail":false}'],
    ['remove-count', '{"v":10}', '{"removeOnComplete":50,"removeOnFail":10}'],
    ['remove-age', '{"v":11}',
     '{"removeOnComplete":{"age":3600,"count":50},"removeOnFail":{"age":60}}'],
    ['keep-logs', '{"v":12,"log":"x"}', '{"keepLogs":5}'],
    ['stack-limit', '{"fail":"nope"}',
     '{"attempts":2,"backoff":{"type":"fixed","delay":50},"stackTraceLimit":1}'],
    ['timestamp', '{"v":14}', '{"timestamp":1700000000000}'],
    ['everything', '{"v":15,"progress":7}',
     '{"attempts":3,"delay":200,"priority":2,"lifo":true,"jobId":"ID",'
     . '"backoff":{"type":"exponential","delay":10},"removeOnComplete":{"age":10},'
     . '"removeOnFail":3,"keepLogs":2,"stackTraceLimit":4,"timestamp":1700000000001}'],
);

my (@spec, %c_id);
for my $v (@variants) {
    my ($name, $data, $opts) = @$v;
    (my $nopts = $opts) =~ s/"ID"/"n-$name"/;
    (my $copts = $opts) =~ s/"ID"/"c-$name"/;
    push @spec, [$name, decode_json($data), decode_json($nopts)];

    my ($rc, $out) = crest_queue($t, 'add', 'cq', $name, $data, '--opts', $copts);
    is($rc, 0, "crest-queue add $name") or diag $out;
    $c_id{$name} = $out;
}

# JSON::PP would sort the keys: build Node's options from the text instead
my $spec = '[' . join(',', map {
    my ($name, $data, $opts) = @$_;
    (my $o = $opts) =~ s/"ID"/"n-$name"/;
    qq{["$name",$data,$o]};
} @variants) . ']';

my $n = node_json('producer.js', $t->redis_port, 'nq', 'add', $spec);
my $c = node_json('producer.js', $t->redis_port, 'cq', 'hashes',
                  map { $c_id{$_->[0]} } @variants);

for my $i (0 .. $#variants) {
    my $name = $variants[$i][0];
    my ($nh, $ch) = ($n->[$i]{hash}, $c->[$i]{hash});

    (my $want = $nh->{opts}) =~ s/"n-$name"/"c-$name"/g;
    is($ch->{opts}, $want, "$name: stored opts byte-identical ($ch->{opts})");

    for my $f (qw(name data delay priority)) {
        is($ch->{$f}, $nh->{$f}, "$name: $f");
    }
    is($ch->{timestamp}, $nh->{timestamp}, "$name: timestamp")
        if $name eq 'timestamp' || $name eq 'everything';
    is($c->[$i]{id}, "c-$name", "$name: custom id") if $nh->{opts} =~ /jobId/;
    like($c->[$i]{id}, qr/^\d+$/, "$name: a numbered id") unless $nh->{opts} =~ /jobId/;
}

# Node's Worker processes every job crest-queue added
my $pid = $t->spawn('node-worker', ['node', "$FindBin::Bin/node/ping-worker.js",
                                    $t->redis_port, 'cq', 2]);
my $done = node_json('producer.js', $t->redis_port, 'cq', 'wait',
                     map { $c_id{$_->[0]} } @variants);

for my $v (@variants) {
    my $name = $v->[0];
    my $r = $done->{ $c_id{$name} };
    if ($name eq 'stack-limit') {
        is($r->{state}, 'failed', "$name: failed after its attempts");
        is($r->{attemptsMade}, 2, "$name: 2 attempts");
    } elsif ($name eq 'remove-bool') {
        is($r->{state}, 'gone', "$name: removed on completion");
    } else {
        is($r->{state}, 'completed', "$name: completed by Node's Worker");
        is_deeply($r->{returnvalue}, decode_json($v->[1]), "$name: return value");
    }
}

$t->spawn_stop('node-worker');

# bad options are refused like Node refuses them
my ($rc, $out) = crest_queue($t, 'add', 'cq', 'bad', '{}', '--opts', '{"jobId":"123"}');
isnt($rc, 0, 'an integer custom id is refused');
like($out, qr/Custom Id cannot be integers/, "with Node's message");
($rc, $out) = crest_queue($t, 'add', 'cq', 'bad', '{}', '--opts', '{"priority":1.5}');
like($out, qr/Priority should not be float/, 'a float priority is refused');
($rc, $out) = crest_queue($t, 'add', 'cq', 'bad', 'not json');
isnt($rc, 0, 'data must be JSON');

# adding an existing custom id again is a no-op that returns the id
($rc, $out) = crest_queue($t, 'add', 'cq', 'again', '{"v":0}', '--opts', '{"jobId":"c-custom-id"}');
is($out, 'c-custom-id', 'a duplicate custom id returns the existing id');

$t->stop;
done_testing();
