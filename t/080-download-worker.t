# The download worker end to end: a small mp4 made with ffmpeg is served by
# Crest::MediaServer on 127.0.0.1 (allow-listed), `download` jobs carry
# media_downloads rows through yt-dlp, ffprobe and ffmpeg into local
# storage; cancel and a worker killed mid-download leave no yt-dlp behind
# and no partial file; unsafe URLs fail at once; `formats` lists formats.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems crest_queue log_lines REPO);
use Crest::MediaServer;

for (qw(/usr/bin/yt-dlp /usr/bin/ffmpeg /usr/bin/ffprobe)) {
    plan skip_all => "$_ is not installed (scripts/deps.sh)" unless -x $_;
}

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $www = $t->dir . '/www';
my $media = $t->dir . '/media';
mkdir $www;

# 3 s of 320x240 test pattern + 440 Hz sine; and a 10 s one for slow tests
sub ffmpeg {
    my ($out, $secs, $size, $rate) = @_;
    system('ffmpeg', '-nostdin', '-v', 'error', '-y',
           '-f', 'lavfi', '-i', "testsrc=duration=$secs:size=$size:rate=25",
           '-f', 'lavfi', '-i', "sine=frequency=440:duration=$secs",
           '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', $rate,
           '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', $out) == 0
        or die "ffmpeg failed\n";
}
ffmpeg("$www/clip.mp4", 3, '320x240', '300k');
ffmpeg("$www/long.mp4", 10, '320x240', '1000k');
my $clip_size = -s "$www/clip.mp4";
my $long_size = -s "$www/long.mp4";
diag("clip $clip_size bytes, long $long_size bytes");

# slow: the long clip takes ~8 s
my $srv = Crest::MediaServer->new(root => $www, rate => int($long_size / 8))->start;

my $user = 'aaaaaaaa-0000-4000-8000-000000000001';
$t->psql("INSERT INTO users (id, email, password_hash) VALUES ('$user', 'dl\@example.com', 'x')");

my %env = (
    CREST_QUEUES                => 'download,formats',
    CREST_CONCURRENCY           => 2,
    CREST_STORAGE_DIR           => $media,
    CREST_DOWNLOAD_ALLOW        => '127.0.0.1/32',
    CREST_DOWNLOAD_PROGRESS_MS  => 200,
    CREST_LOCK_DURATION_MS      => 2000,
    CREST_STALLED_INTERVAL_MS   => 1000,
    CREST_SHUTDOWN_GRACE_MS     => 2000,
);
$env{CREST_TEST_WORKER_BIN} = $ENV{CREST_TEST_WORKER_BIN} if $ENV{CREST_TEST_WORKER_BIN};

my $n = 0;
sub new_download {
    my ($url, %o) = @_;
    my $id = sprintf('dddddddd-0000-4000-8000-%012d', ++$n);
    (my $q = $url) =~ s/'/''/g;
    $t->psql("INSERT INTO media_downloads (id, user_id, original_url) VALUES ('$id', '$user', '$q')");
    my $data = encode_json({ downloadId => $id, userId => $user, url => $url,
                             audioOnly => JSON::PP::false, %o });
    my ($rc, $out) = crest_queue($t, 'add', 'download', 'dl', $data, '--opts',
        qq({"jobId":"dl-$n","attempts":3,"backoff":{"type":"fixed","delay":500}}));
    is($rc, 0, "job dl-$n added") or diag($out);
    return ($id, "dl-$n");
}

sub row {
    my $id = shift;
    my ($line) = $t->psql("SELECT status, progress, coalesce(error, ''), coalesce(storage_key, ''),
        coalesce(file_size, -1), coalesce(duration, -1), coalesce(width, -1), coalesce(height, -1),
        coalesce(vcodec, ''), coalesce(acodec, ''), coalesce(thumbnail_key, ''),
        coalesce(bytes, -1), coalesce(job_id, ''), completed_at IS NOT NULL
        FROM media_downloads WHERE id = '$id'");
    my @f = split /\|/, $line // '', -1;
    my %r;
    @r{qw(status progress error key size duration width height vcodec acodec thumb bytes job completed)} = @f;
    return \%r;
}

sub job {
    my ($queue, $jid) = @_;
    my ($rc, $out) = crest_queue($t, 'get', $queue, $jid);
    return $rc == 0 && $out =~ /^\{/ ? decode_json($out) : {};
}

sub state { (crest_queue($t, 'state', @_))[1] }

# every process whose process group is $pgid
sub group_members {
    my $pgid = shift;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $s = <$fh> // next;
        $s =~ s/^.*\)\s+//s;                  # past "pid (comm)"
        my @f = split ' ', $s;                # state ppid pgrp ...
        push @pids, ($stat =~ m{/proc/(\d+)/})[0] if $f[2] == $pgid && $f[0] ne 'Z';
    }
    return @pids;
}

# the yt-dlp child of a worker: (pid, pgid)
sub ytdlp_of {
    my $parent = shift;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $s = <$fh> // next;
        my ($pid, $comm, $rest) = $s =~ /^(\d+) \((.*)\) (.*)$/s or next;
        my @f = split ' ', $rest;
        next unless $f[1] == $parent;
        open my $cl, '<', "/proc/$pid/cmdline" or next;
        my $cmd = do { local $/; <$cl> } // '';
        return ($pid, $f[2]) if $cmd =~ /yt-dlp/;
    }
    return;
}

sub files_for {
    my $id = shift;
    return (glob("$media/downloads/*/$id/*"), glob("$media/.scratch/dl-$id/*"));
}

# ---------------------------------------------------------------- URL safety
# A worker without the allow-list: loopback is refused like any private address.
start_worker($t, 'strict', %env, CREST_DOWNLOAD_ALLOW => '');
my %unsafe = (
    loopback  => [$srv->url('/clip.mp4'), qr/loopback/],
    metadata  => ['http://169.254.169.254/latest/meta-data/', qr/link-local/],
    file      => ['file:///etc/passwd', qr/only http and https/],
    userinfo  => ['http://example.com@127.0.0.1/', qr/user name/],
);
my %ids;
$ids{$_} = [new_download($unsafe{$_}[0])] for sort keys %unsafe;
ok(wait_until(sub { !grep { row($ids{$_}[0])->{status} ne 'failed' } keys %unsafe }, 20),
   'unsafe URLs: rows failed');
for my $k (sort keys %unsafe) {
    my ($id, $jid) = @{ $ids{$k} };
    like(row($id)->{error}, $unsafe{$k}[1], "$k: row error says why");
    ok(wait_until(sub { state('download', $jid) eq 'failed' }, 10), "$k: job failed");
    is(job('download', $jid)->{attemptsMade}, 1, "$k: at once, not retried (of 3 attempts)");
    like(job('download', $jid)->{failedReason}, $unsafe{$k}[1], "$k: failedReason");
}
# the row says whose download it is: a job naming another user is refused
{
    my $id = 'dddddddd-0000-4000-8000-999999999999';
    $t->psql("INSERT INTO media_downloads (id, user_id, original_url) VALUES ('$id', '$user', 'x')");
    crest_queue($t, 'add', 'download', 'dl', encode_json({ downloadId => $id,
        userId => 'bbbbbbbb-0000-4000-8000-000000000002', url => $srv->url('/clip.mp4') }),
        '--opts', '{"jobId":"dl-other","attempts":3}');
    ok(wait_until(sub { state('download', 'dl-other') eq 'failed' }, 20), 'another user: job failed');
    is(job('download', 'dl-other')->{failedReason}, 'userId does not match the media_downloads row',
       'another user: why');
    is(job('download', 'dl-other')->{attemptsMade}, 1, 'another user: at once');
}
ok(!grep({ /GET \/clip/ } $srv->requests), 'the media server was never contacted');
is($t->spawn_stop('strict'), 0, 'strict worker stops cleanly');

# ---------------------------------------------------------------- download
start_worker($t, 'w1', %env);

my ($ok_id, $ok_jid) = new_download($srv->url('/clip.mp4'));
ok(wait_until(sub { row($ok_id)->{status} eq 'completed' }, 60), 'download completed')
    or diag(explain(row($ok_id)), explain(job('download', $ok_jid)));
my $r = row($ok_id);
is($r->{progress}, 100, 'progress 100');
is($r->{size}, $clip_size, 'file_size is the size of the source');
ok(abs($r->{duration} - 3) < 0.2, "duration about 3 s ($r->{duration})");
is("$r->{width}x$r->{height}", '320x240', 'resolution');
is($r->{vcodec}, 'h264', 'vcodec');
is($r->{acodec}, 'aac', 'acodec');
is($r->{job}, $ok_jid, 'job_id');
is($r->{completed}, 't', 'completed_at');
is($r->{key}, "downloads/$user/$ok_id/media.mp4", 'storage key');
is(-s "$media/$r->{key}", $clip_size, 'the stored file is the source, whole');
system('cmp', '-s', "$media/$r->{key}", "$www/clip.mp4");
is($?, 0, 'byte for byte');
is($r->{thumb}, "downloads/$user/$ok_id/thumb.jpg", 'thumbnail key');
my $magic = do { open my $fh, '<:raw', "$media/$r->{thumb}"; local $/ = \3; <$fh> } // '';
is(unpack('H*', $magic), 'ffd8ff', 'the thumbnail is a JPEG');
ok(!-e "$media/.scratch/dl-$ok_id", 'scratch directory removed');
my $j = job('download', $ok_jid);
is($j->{returnvalue}{storageKey}, $r->{key}, 'return value: storageKey');
is($j->{returnvalue}{fileSize}, $clip_size, 'return value: fileSize');

# progress events, on the slow path so that there are several
my ($p_id, $p_jid) = new_download($srv->url('/slow/clip.mp4'));
ok(wait_until(sub { row($p_id)->{status} eq 'completed' }, 60), 'slow download completed');
my @events = $t->redis_cli('XRANGE', 'bull:download:events', '-', '+');
my @progress;
for (my $i = 0; $i < @events; $i++) {
    next unless $events[$i] eq 'jobId' && ($events[$i + 1] // '') eq $p_jid;
    my @window = @events[$i - 4 .. $i + 4];
    push @progress, $window[$_ + 1] for grep { $window[$_] eq 'data' } 0 .. $#window - 1;
}
my @down = grep { /"status":"downloading"/ && /"bytes":[1-9]/ } @progress;
cmp_ok(scalar @down, '>=', 2, scalar(@down) . ' progress events with bytes')
    or diag(explain(\@progress));
ok((grep { /"status":"processing","percent":100/ } @progress), 'a processing event at 100%');

# ---------------------------------------------------------------- cancel
my ($c_id, $c_jid) = new_download($srv->url('/slow/long.mp4'));
ok(wait_until(sub { row($c_id)->{bytes} > 0 }, 30), 'cancel: download under way');
my $wpid = $t->spawned_pid('w1');
my ($ypid, $pgid) = ytdlp_of($wpid);
ok($ypid && $pgid == $ypid, "yt-dlp ($ypid) leads its own process group");
sub sockets_of {
    my $pid = shift;
    return grep { /^socket:/ } map { readlink($_) // '' } glob("/proc/$pid/fd/*");
}
my %worker_sockets = map { $_ => 1 } sockets_of($wpid);
ok(%worker_sockets >= 2, scalar(keys %worker_sockets) . ' worker sockets');
is_deeply([grep { $worker_sockets{$_} } sockets_of($ypid)], [],
          "yt-dlp inherited none of the worker's sockets (Redis, PostgreSQL)");
my ($env) = do { open my $fh, '<', "/proc/$ypid/environ"; local $/; (<$fh> // '') };
unlike($env, qr/DATABASE_URL|REDIS_URL/, 'nor its environment');
$t->psql("UPDATE media_downloads SET status = 'cancelled' WHERE id = '$c_id'");
ok(wait_until(sub { state('download', $c_jid) eq 'failed' }, 10), 'cancel: job failed');
is(job('download', $c_jid)->{failedReason}, 'cancelled', 'failedReason cancelled');
is(job('download', $c_jid)->{attemptsMade}, 1, 'not retried');
ok(wait_until(sub { !group_members($pgid) }, 5), 'no process left in the group');
is_deeply([files_for($c_id)], [], 'no partial file left');
is(row($c_id)->{status}, 'cancelled', 'the row stays cancelled');

# ---------------------------------------------------------------- SIGKILL
my ($k_id, $k_jid) = new_download($srv->url('/slow/long.mp4'));
ok(wait_until(sub { row($k_id)->{bytes} > 0 }, 30), 'kill: download under way');
($ypid, $pgid) = ytdlp_of($t->spawned_pid('w1'));
ok($ypid, "yt-dlp running ($ypid)");
$t->spawn_stop('w1', signal => 'KILL');
ok(wait_until(sub { !group_members($pgid) }, 5), 'yt-dlp died with the worker');
my @partial = files_for($k_id);
ok(@partial > 0, 'a partial file was left behind: ' . join(' ', map { s{.*/}{}r } @partial));
start_worker($t, 'w2', %env);
ok(wait_until(sub { row($k_id)->{status} eq 'completed' }, 60),
   'recovered as a stalled job and completed') or diag(explain(row($k_id)));
$r = row($k_id);
is($r->{size}, $long_size, 'row: the whole size');
is(-s "$media/$r->{key}", $long_size, 'file: the whole size');
ok(abs($r->{duration} - 10) < 0.2, 'duration about 10 s');
ok(!-e "$media/.scratch/dl-$k_id", 'no scratch left');
is(state('download', $k_jid), 'completed', 'job completed');

# ---------------------------------------------------------------- permanent
my ($nf_id, $nf_jid) = new_download($srv->url('/missing.mp4'));
ok(wait_until(sub { state('download', $nf_jid) eq 'failed' }, 30), '404: job failed');
is(job('download', $nf_jid)->{attemptsMade}, 1, '404: at once');
like(row($nf_id)->{error}, qr/404/, '404: row error');
is(row($nf_id)->{status}, 'failed', '404: row failed');

# ---------------------------------------------------------------- embedded media
# a page whose media URL points somewhere unsafe: yt-dlp -J finds it, the
# worker refuses it before anything is downloaded
my $port = $srv->port;
for (['bad.html', "http://127.0.0.2:$port/clip.mp4"], ['good.html', "http://127.0.0.1:$port/clip.mp4"]) {
    open my $fh, '>', "$www/$_->[0]" or die $!;
    print $fh qq(<html><head><title>x</title></head><body><video src="$_->[1]"></video></body></html>);
    close $fh;
}
my ($e_id, $e_jid) = new_download($srv->url('/bad.html'));
ok(wait_until(sub { state('download', $e_jid) eq 'failed' }, 30), 'embedded unsafe media: failed');
is(job('download', $e_jid)->{attemptsMade}, 1, 'embedded unsafe media: at once');
like(row($e_id)->{error}, qr/media URL refused: 127\.0\.0\.2 resolves to a loopback address/,
     'embedded unsafe media: row error');
my ($g_id, $g_jid) = new_download($srv->url('/good.html'));
ok(wait_until(sub { row($g_id)->{status} eq 'completed' }, 60), 'embedded allowed media: completed')
    or diag(explain(row($g_id)));
is(row($g_id)->{size}, $clip_size, 'embedded allowed media: the clip');

# ---------------------------------------------------------------- transient
# a 503 is worth retrying: all 3 attempts are used, then the row fails
my ($u_id, $u_jid) = new_download($srv->url('/status/503/clip.mp4'));
ok(wait_until(sub { state('download', $u_jid) eq 'failed' }, 60), '503: job failed in the end');
is(job('download', $u_jid)->{attemptsMade}, 3, '503: after 3 attempts');
is(row($u_id)->{status}, 'failed', '503: row failed');
like(row($u_id)->{error}, qr/503/, '503: row error');

# ---------------------------------------------------------------- audio only
my ($a_id, $a_jid) = new_download($srv->url('/clip.mp4'), audioOnly => JSON::PP::true);
ok(wait_until(sub { row($a_id)->{status} =~ /^(?:completed|failed)\z/ }, 60), 'audio: done');
$r = row($a_id);
is($r->{status}, 'completed', 'audio: completed') or diag($r->{error});
is($r->{vcodec}, '', 'audio: no video stream');
is($r->{acodec}, 'aac', 'audio: aac');
is($r->{thumb}, '', 'audio: no thumbnail');
ok(-s "$media/$r->{key}", "audio: stored as $r->{key}");

# ---------------------------------------------------------------- formats
my ($rc, $out) = crest_queue($t, 'add', 'formats', 'f',
                             encode_json({ url => $srv->url('/clip.mp4') }), '--opts', '{"jobId":"f1"}');
ok(wait_until(sub { state('formats', 'f1') eq 'completed' }, 30), 'formats: completed')
    or diag(explain(job('formats', 'f1')));
my $f = job('formats', 'f1')->{returnvalue} // {};
ok(ref $f->{formats} eq 'ARRAY' && @{ $f->{formats} }, 'formats: a list');
ok((grep { ($_->{ext} // '') eq 'mp4' && defined $_->{format_id} } @{ $f->{formats} || [] }),
   'formats: the mp4 with its format_id') or diag(explain($f));
crest_queue($t, 'add', 'formats', 'f', encode_json({ url => 'http://169.254.169.254/' }),
            '--opts', '{"jobId":"f2","attempts":3}');
ok(wait_until(sub { state('formats', 'f2') eq 'failed' }, 30), 'formats: unsafe URL refused');
is(job('formats', 'f2')->{attemptsMade}, 1, 'at once');

is_deeply([grep { !/^stalled job moved back to wait$/ } problems($t, 'w2')], [],
          'no warnings or errors (but the stalled job)');
is($t->spawn_stop('w2'), 0, 'stops cleanly');

# ---------------------------------------------------------------- size limit
start_worker($t, 'small', %env, CREST_DOWNLOAD_MAX_BYTES => 50_000);
my ($b_id, $b_jid) = new_download($srv->url('/clip.mp4'));
ok(wait_until(sub { state('download', $b_jid) eq 'failed' }, 30), 'too large: job failed');
is(job('download', $b_jid)->{attemptsMade}, 1, 'too large: at once');
like(row($b_id)->{error}, qr/larger than 50000 bytes/, 'too large: row error');
is_deeply([files_for($b_id)], [], 'too large: no file kept');
is($t->spawn_stop('small'), 0, 'stops cleanly');
$srv->stop;
$t->stop;
done_testing();
