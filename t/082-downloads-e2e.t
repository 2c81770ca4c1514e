# Downloads end to end through the edge: real yt-dlp and ffmpeg in
# crest-worker, media made with ffmpeg and served by Crest::MediaServer on
# 127.0.0.1 (the only allow-listed address).  POST /api/downloads, progress
# over SSE (GET /api/jobs/{id}/events), the stored file served back by
# nginx through a signed link with a working range request, the thumbnail;
# formats listed by a job the request waits for, then from the Redis cache
# (no second job); DELETE mid-download kills yt-dlp and leaves no partial
# file; a worker SIGKILLed mid-download is recovered and the row and file
# agree; a redirect to a refused address fails as VALIDATION_ERROR (the
# worker's preflight sees it; the edge tells it).
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until crest_queue);
use Crest::Jobs qw(session bearer sse_open sse_until sse_close);
use Crest::MediaServer;
use Crest::FakeHTTP;

for (qw(/usr/bin/yt-dlp /usr/bin/ffmpeg /usr/bin/ffprobe)) {
    plan skip_all => "$_ is not installed (scripts/deps.sh)" unless -x $_;
}

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(workers => 2, config => "include $conf;");
my $www = $t->dir . '/www';
my $media = $t->dir . '/media';
mkdir $www;
mkdir $media;
chmod 0755, $media;
my $secret_file = $t->dir . '/secrets/link_secret';
open my $sf, '>', $secret_file or die $!;
print $sf join('', map { sprintf '%02x', int rand 256 } 1 .. 32), "\n";
close $sf;
chmod 0644, $secret_file;

$t->set_config(http_config => "
    crest_jobs_queues ping download formats;
    crest_downloads_dir $media;
    crest_downloads_link_secret_file $secret_file;
    crest_downloads_allow 127.0.0.1/32;
    crest_downloads_formats_timeout 40s;
    crest_downloads_concurrent 5;
");
$t->start;

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
my $clip = do { open my $fh, '<:raw', "$www/clip.mp4"; local $/; <$fh> };

# the slow path takes ~8 s for the long clip, ~1 s for the short one
my $srv = Crest::MediaServer->new(root => $www, rate => int($long_size / 8))->start;

# a page that redirects to an address the allow-list does not admit
my $fake = Crest::FakeHTTP->new(dir => $t->dir . '/fake');
$fake->set_routes([{ path => '/away', responses => [{ status => 302,
    headers => { Location => 'http://127.0.0.2:' . $srv->port . '/clip.mp4' }, body => '' }] }]);
$fake->start;

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
start_worker($t, 'w1', %env);

my $alice = session($t, 'alice@example.com');
my $bob = session($t, 'bob@example.com');
$t->psql("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$alice->{id}', 'pro', 'active')");

sub api {
    my ($method, $path, %o) = @_;
    my $who = delete $o{as} // $alice;
    return $t->http($method => $path, headers => bearer($who), timeout => 60, %o);
}

sub dl { api(GET => "/api/downloads/$_[0]")->{json}{data}{download} // {} }

sub uri_escape {
    my $s = shift;
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# every process whose process group is $pgid
sub group_members {
    my $pgid = shift;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $s = <$fh> // next;
        $s =~ s/^.*\)\s+//s;
        my @f = split ' ', $s;
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
        return ($pid, $f[2]) if $cmd =~ /yt-dlp/ && $cmd =~ /load-info-json/;
    }
    return;
}

sub files_for {
    my $id = shift;
    return (glob("$media/downloads/*/$id/*"), glob("$media/.scratch/dl-$id/*"));
}

# ---------------------------------------------------------------- formats
my $furl = '/api/downloads/formats?url=' . uri_escape($srv->url('/clip.mp4'));
my $r = api(GET => $furl);
is($r->{status}, 200, 'formats: 200 once the job is done') or diag($r->{content});
my $fm = $r->{json}{data}{formats} // {};
is($fm->{url}, $srv->url('/clip.mp4'), 'formats: for the URL');
my @mp4 = grep { ($_->{ext} // '') eq 'mp4' } @{ $fm->{formats} || [] };
ok(@mp4 >= 1, 'formats: the mp4') or diag(explain($fm));
ok(defined $mp4[0]{formatId}, 'formats: formatId');
ok(exists $mp4[0]{$_}, "formats: $_") for qw(vcodec acodec width height fps bitrate size);
is($r->{json}{meta}{cached}, JSON::PP::false, 'formats: listed now, not cached');
is($t->psql("SELECT count(*) FROM jobs WHERE queue = 'formats'"), 1, 'formats: one job');
my $r2 = api(GET => $furl);
is($r2->{status}, 200, 'formats again: 200');
is($r2->{json}{meta}{cached}, JSON::PP::true, 'formats again: from the cache');
is_deeply($r2->{json}{data}, $r->{json}{data}, 'formats again: the same answer');
is($t->psql("SELECT count(*) FROM jobs WHERE queue = 'formats'"), 1, 'formats again: no new job');
my @ck = $t->redis_cli('KEYS', 'crest:downloads:formats:*');
is(scalar @ck, 1, 'one cache key');
like($ck[0] // '', qr/^crest:downloads:formats:[0-9a-f]{64}$/, 'named by sha256(url)');
my $ttl = $t->redis_cli('TTL', $ck[0] // 'x');
ok($ttl > 0 && $ttl <= 300, "cached for at most 5 minutes ($ttl s)");

$r = api(GET => '/api/downloads/formats?url=' . uri_escape($srv->url('/missing.mp4')));
is($r->{status}, 502, 'formats of a missing video: 502');
is($r->{json}{error}{code}, 'EXTERNAL_SERVICE_ERROR', 'EXTERNAL_SERVICE_ERROR');
ok($r->{json}{error}{details}{jobId}, 'with the job id');

# ---------------------------------------------------------------- download
$r = api(POST => '/api/downloads', json => { url => $srv->url('/slow/clip.mp4') });
is($r->{status}, 202, 'POST: 202') or diag($r->{content});
my $id = $r->{json}{data}{download}{id};
my $jid = $r->{json}{data}{job}{id};
my $s = sse_open($t, "/api/jobs/$jid/events", $alice);
is($s->{status}, 200, 'SSE: 200');
my @ev = sse_until($s, 'completed', 60);
sse_close($s);
my @progress = grep { $_->{event} eq 'progress' } @ev;
my @bytes = grep { ($_->{data}{progress}{status} // '') eq 'downloading' && ($_->{data}{progress}{bytes} // 0) > 0 } @progress;
ok(@bytes >= 1, scalar(@bytes) . ' progress events with bytes over SSE')
    or diag(explain([map { $_->{event} } @ev]));
is($ev[-1]{event}, 'completed', 'SSE: completed');

my $d = dl($id);
is($d->{status}, 'completed', 'the download: completed');
is($d->{progress}, 100, 'progress 100');
is($d->{file}{size}, $clip_size, 'file size');
is("$d->{file}{width}x$d->{file}{height}", '320x240', 'resolution');
is($d->{file}{vcodec}, 'h264', 'vcodec');
ok(abs($d->{file}{duration} - 3) < 0.2, 'duration about 3 s');
is($d->{file}{thumbnail}, JSON::PP::true, 'a thumbnail');
ok($d->{completedAt}, 'completedAt');

$r = api(GET => "/api/downloads/$id/file");
is($r->{status}, 302, '/file: 302');
my $loc = $r->{headers}{location} // '';
my $f = $t->http(GET => $loc, headers => { Range => 'bytes=0-99' });
is($f->{status}, 206, 'the stored file: 206 to a range') or diag($f->{content});
is($f->{content}, substr($clip, 0, 100), 'the right bytes');
is($f->{headers}{'content-range'}, "bytes 0-99/$clip_size", 'Content-Range');
$f = $t->http(GET => $loc);
is(length $f->{content}, $clip_size, 'the whole file');
ok($f->{content} eq $clip, 'byte for byte the source');
$r = api(GET => "/api/downloads/$id/thumbnail");
$f = $t->http(GET => $r->{headers}{location} // '/');
is($f->{status}, 200, 'the thumbnail: 200');
is(unpack('H6', $f->{content}), 'ffd8ff', 'a JPEG');

# user B cannot see, fetch or delete it
for my $req (['GET', "/api/downloads/$id"], ['GET', "/api/downloads/$id/file"], ['DELETE', "/api/downloads/$id"]) {
    is(api($req->[0] => $req->[1], as => $bob)->{status}, 404, "bob: $req->[0] $req->[1] 404");
}
is(dl($id)->{status}, 'completed', "alice's download is still there");

# ---------------------------------------------------------------- cancel
$r = api(POST => '/api/downloads', json => { url => $srv->url('/slow/long.mp4') });
my $c_id = $r->{json}{data}{download}{id};
ok(wait_until(sub { (dl($c_id)->{bytes} // 0) > 0 }, 30), 'cancel: download under way');
my ($ypid, $pgid) = ytdlp_of($t->spawned_pid('w1'));
ok($ypid, "yt-dlp is running ($ypid)");
$r = api(DELETE => "/api/downloads/$c_id");
is($r->{status}, 200, 'DELETE mid-download: 200');
ok(wait_until(sub { !group_members($pgid // -1) }, 10), 'no yt-dlp (nor child of it) left');
ok(wait_until(sub { !files_for($c_id) }, 10), 'no partial file left');
ok(!-e "$media/.scratch/dl-$c_id", 'no scratch directory left');
is(api(GET => "/api/downloads/$c_id")->{status}, 404, 'the download is gone');
my ($cj) = $t->psql("SELECT status FROM jobs WHERE data->>'downloadId' = '$c_id'");
is($cj, 'cancelled', 'its job: cancelled');

# ---------------------------------------------------------------- SIGKILL
$r = api(POST => '/api/downloads', json => { url => $srv->url('/slow/long.mp4') });
my $k_id = $r->{json}{data}{download}{id};
ok(wait_until(sub { (dl($k_id)->{bytes} // 0) > 0 }, 30), 'kill: download under way');
($ypid, $pgid) = ytdlp_of($t->spawned_pid('w1'));
ok($ypid, "yt-dlp running ($ypid)");
$t->spawn_stop('w1', signal => 'KILL');
ok(wait_until(sub { !group_members($pgid // -1) }, 5), 'yt-dlp died with the worker');
start_worker($t, 'w2', %env);
ok(wait_until(sub { (dl($k_id)->{status} // '') eq 'completed' }, 90), 'recovered and completed')
    or diag(explain(dl($k_id)));
$d = dl($k_id);
is($d->{file}{size}, $long_size, 'row: the whole size');
my ($k_key) = $t->psql("SELECT storage_key FROM media_downloads WHERE id = '$k_id'");
is(-s "$media/$k_key", $long_size, 'file: the whole size, where the row says');
$r = api(GET => "/api/downloads/$k_id/file");
$f = $t->http(GET => $r->{headers}{location} // '/', headers => { Range => "bytes=" . ($long_size - 10) . '-' });
is($f->{status}, 206, 'served: the last 10 bytes');
is(length $f->{content}, 10, '10 bytes');
ok(!-e "$media/.scratch/dl-$k_id", 'no scratch left');

# ---------------------------------------------------------------- redirect
# the worker alone sees redirects: its preflight refuses one to an address
# the allow-list does not admit, and the edge tells it as a VALIDATION_ERROR
my $away = $fake->url . '/away';
$r = api(GET => '/api/downloads/formats?url=' . uri_escape($away));
is($r->{status}, 400, 'formats of a URL redirecting to 127.0.0.2: 400') or diag($r->{content});
is($r->{json}{error}{code}, 'VALIDATION_ERROR', 'VALIDATION_ERROR');
is($r->{json}{error}{details}{field}, 'url', 'naming url');
like($r->{json}{error}{message}, qr/^URL refused: redirect/, 'the worker says why');
$r = api(POST => '/api/downloads', json => { url => $away });
my $x = $r->{json}{data}{download}{id} // 'none';
ok(wait_until(sub { (dl($x)->{status} // '') eq 'failed' }, 30), 'redirected download: failed');
is(dl($x)->{error}{code}, 'VALIDATION_ERROR', 'its error: VALIDATION_ERROR');
like(dl($x)->{error}{message}, qr/URL refused: redirect/, 'its message: the redirect refused');

is($t->spawn_stop('w2'), 0, 'the worker stops cleanly');
$fake->stop;
$srv->stop;
$t->stop;
done_testing();
