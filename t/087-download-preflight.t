# The redirect-safe preflight of the download worker: before yt-dlp runs,
# the URL is fetched (HEAD) without following redirects, each hop's host
# resolved and checked, and curl pinned to the checked addresses.  A
# redirect to a refused address (127.0.0.2 while only 127.0.0.1/32 is
# allowed, the metadata address, a file: URL) fails the job at once with
# "URL refused: redirect N: ..." and no connection is ever made there; a
# chain of allowed redirects is followed and yt-dlp starts from its end;
# too many redirects are refused.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems crest_queue);
use Crest::MediaServer;

for (qw(/usr/bin/yt-dlp /usr/bin/ffmpeg /usr/bin/ffprobe)) {
    plan skip_all => "$_ is not installed (scripts/deps.sh)" unless -x $_;
}

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my ($www, $trapdir, $media) = map { $t->dir . "/$_" } qw(www trap media);
mkdir $_ for $www, $trapdir;
system('ffmpeg', '-nostdin', '-v', 'error', '-y',
       '-f', 'lavfi', '-i', 'testsrc=duration=2:size=160x120:rate=25',
       '-f', 'lavfi', '-i', 'sine=frequency=440:duration=2',
       '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
       '-c:a', 'aac', '-shortest', "$www/clip.mp4") == 0 or die "ffmpeg failed\n";
system('cp', "$www/clip.mp4", "$trapdir/clip.mp4") == 0 or die;
my $clip_size = -s "$www/clip.mp4";

# the address the redirects must not reach: a server of its own on 127.0.0.2
my $trap = Crest::MediaServer->new(root => $trapdir, addr => '127.0.0.2')->start;
my $trap_url = $trap->url('/clip.mp4');

my $srv = Crest::MediaServer->new(root => $www, redirects => {
    '/to-trap'     => $trap_url,
    '/via'         => '/to-trap',                       # refused at hop 2
    '/to-metadata' => 'http://169.254.169.254/latest/meta-data/',
    '/to-file'     => 'file:///etc/passwd',
    '/hop1'        => '/hop2',                          # relative
    '/hop2'        => '/clip.mp4',
    '/loop'        => '/loop',
    '/to-long'     => '/clip.mp4?' . ('a' x 4200),           # over 4096 bytes
})->start;

my $user = 'aaaaaaaa-0000-4000-8000-000000000001';
$t->psql("INSERT INTO users (id, email, password_hash) VALUES ('$user', 'pf\@example.com', 'x')");

my %env = (
    CREST_QUEUES         => 'download,formats',
    CREST_CONCURRENCY    => 2,
    CREST_STORAGE_DIR    => $media,
    CREST_DOWNLOAD_ALLOW => '127.0.0.1/32',
);
$env{CREST_TEST_WORKER_BIN} = $ENV{CREST_TEST_WORKER_BIN} if $ENV{CREST_TEST_WORKER_BIN};

my $n = 0;
sub new_download {
    my ($url) = @_;
    my $id = sprintf('dddddddd-0000-4000-8000-%012d', ++$n);
    $t->psql("INSERT INTO media_downloads (id, user_id, original_url) VALUES ('$id', '$user', 'x')");
    my ($rc, $out) = crest_queue($t, 'add', 'download', 'dl',
        encode_json({ downloadId => $id, userId => $user, url => $url }),
        '--opts', qq({"jobId":"dl-$n","attempts":3,"backoff":{"type":"fixed","delay":200}}));
    is($rc, 0, "job dl-$n added") or diag($out);
    return ($id, "dl-$n");
}

sub row {
    my ($line) = $t->psql("SELECT status, coalesce(error, ''), coalesce(file_size, -1),
        coalesce(storage_key, '') FROM media_downloads WHERE id = '$_[0]'");
    my %r;
    @r{qw(status error size key)} = split /\|/, $line // '', -1;
    return \%r;
}

sub job {
    my ($q, $jid) = @_;
    my ($rc, $out) = crest_queue($t, 'get', $q, $jid);
    return $rc == 0 && $out =~ /^\{/ ? decode_json($out) : {};
}

sub state { (crest_queue($t, 'state', @_))[1] // '' }

# ---------------------------------------------------------------- refused
start_worker($t, 'strict', %env);

my %refused = (
    'to-trap'     => qr/^URL refused: redirect 1: 127\.0\.0\.2 resolves to a loopback address/,
    'via'         => qr/^URL refused: redirect 2: 127\.0\.0\.2 resolves to a loopback address/,
    'to-metadata' => qr/^URL refused: redirect 1: 169\.254\.169\.254 resolves to a link-local address/,
    'to-file'     => qr/^URL refused: redirect 1: .*only http and https/,
    'loop'        => qr/^URL refused: more than 5 redirects/,
    'to-long'     => qr/^URL refused: redirect 1: longer than 4096 bytes/,
);
my %ids;
$ids{$_} = [new_download($srv->url("/$_"))] for sort keys %refused;
for my $k (sort keys %refused) {
    my ($id, $jid) = @{ $ids{$k} };
    ok(wait_until(sub { state('download', $jid) eq 'failed' }, 30), "$k: job failed");
    my $j = job('download', $jid);
    is($j->{attemptsMade}, 1, "$k: at once, not retried (of 3 attempts)");
    like($j->{failedReason}, $refused{$k}, "$k: failedReason") or diag($j->{failedReason});
    is(row($id)->{status}, 'failed', "$k: row failed");
    like(row($id)->{error}, $refused{$k}, "$k: row error");
}

crest_queue($t, 'add', 'formats', 'f', encode_json({ url => $srv->url('/to-trap') }),
            '--opts', '{"jobId":"f1","attempts":3}');
ok(wait_until(sub { state('formats', 'f1') eq 'failed' }, 30), 'formats: a refused redirect fails');
like(job('formats', 'f1')->{failedReason}, $refused{'to-trap'}, 'formats: failedReason');
is(job('formats', 'f1')->{attemptsMade}, 1, 'formats: at once');

is_deeply([$trap->requests], [], 'no request ever reached 127.0.0.2');
my @seen = $srv->requests;
ok(!grep({ /^GET / } @seen), 'yt-dlp never ran: only HEAD requests') or diag(explain(\@seen));
is(scalar(grep { m{^HEAD /loop } } @seen), 6, 'the loop: the first request and 5 redirects, then stop');

# ---------------------------------------------------------------- followed
unlink $srv->{log};
my ($ok_id, $ok_jid) = new_download($srv->url('/hop1'));
ok(wait_until(sub { row($ok_id)->{status} =~ /^(?:completed|failed)\z/ }, 60), 'allowed chain: finished');
is(row($ok_id)->{status}, 'completed', 'allowed chain: completed') or diag(row($ok_id)->{error});
is(row($ok_id)->{size}, $clip_size, 'the clip at the end of the chain');
@seen = $srv->requests;
is_deeply([grep { /^HEAD / } @seen], ['HEAD /hop1 ', 'HEAD /hop2 ', 'HEAD /clip.mp4 '],
          'the preflight went hop by hop') or diag(explain(\@seen));
ok(!grep({ m{^GET /hop} } @seen), 'yt-dlp started from the end of the chain')
    or diag(explain(\@seen));
ok(scalar(grep { m{^GET /clip\.mp4} } @seen), 'and fetched the clip');

# a server that refuses HEAD: one byte of a GET instead, redirects and all
my $gsrv = Crest::MediaServer->new(root => $www, no_head => 1, log => $t->dir . '/no-head.log',
                                   redirects => { '/go' => '/clip.mp4', '/bad' => $trap_url })->start;
my ($g_id) = new_download($gsrv->url('/go'));
ok(wait_until(sub { row($g_id)->{status} =~ /^(?:completed|failed)\z/ }, 60), 'no HEAD: finished');
is(row($g_id)->{status}, 'completed', 'no HEAD: completed') or diag(row($g_id)->{error});
my @g = $gsrv->requests;
is_deeply([@g[0 .. 3]], ['HEAD /go ', 'GET /go bytes=0-0', 'HEAD /clip.mp4 ', 'GET /clip.mp4 bytes=0-0'],
          'no HEAD: each hop asked again with a one-byte GET') or diag(explain(\@g));
my ($gb_id, $gb_jid) = new_download($gsrv->url('/bad'));
ok(wait_until(sub { state('download', $gb_jid) eq 'failed' }, 30), 'no HEAD, redirect to 127.0.0.2: failed');
like(job('download', $gb_jid)->{failedReason}, $refused{'to-trap'}, 'no HEAD: the same refusal');
$gsrv->stop;
is_deeply([$trap->requests], [], 'still no request reached 127.0.0.2');

is_deeply([problems($t, 'strict')], [], 'no warnings or errors');
is($t->spawn_stop('strict'), 0, 'stops cleanly');

# ---------------------------------------------------------------- allow-list
# 127.0.0.2 allowed (a private deployment): the same redirect is followed
start_worker($t, 'open', %env, CREST_DOWNLOAD_ALLOW => '127.0.0.1/32, 127.0.0.2/32');
my ($a_id, $a_jid) = new_download($srv->url('/to-trap'));
ok(wait_until(sub { row($a_id)->{status} =~ /^(?:completed|failed)\z/ }, 60), 'allow-listed target: finished');
is(row($a_id)->{status}, 'completed', 'allow-listed target: completed') or diag(row($a_id)->{error});
is(row($a_id)->{size}, $clip_size, 'allow-listed target: the clip');
my @trapseen = $trap->requests;
is($trapseen[0], 'HEAD /clip.mp4 ', 'the preflight reached it') or diag(explain(\@trapseen));
ok(scalar(grep { m{^GET /clip\.mp4} } @trapseen), 'yt-dlp fetched from it');
is($t->spawn_stop('open'), 0, 'stops cleanly');

$srv->stop;
$trap->stop;
$t->stop;
done_testing();
