# S3 storage end to end against a real S3-compatible server (s3rver, see
# Crest::S3 for what it does and does not verify): `download` jobs with
# CREST_STORAGE=s3 store the media (multipart: the threshold is set below
# the clip's size) and the thumbnail (one PUT); the objects are there, whole,
# byte for byte, and a presigned GET fetches them; download-delete removes
# them; downloads-cleanup expires old completed downloads and marks their
# rows; a wrong key and a missing bucket fail the job, leaving nothing.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use HTTP::Tiny;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems crest_queue);
use Crest::MediaServer;
use Crest::S3;

for (qw(/usr/bin/yt-dlp /usr/bin/ffmpeg /usr/bin/ffprobe)) {
    plan skip_all => "$_ is not installed (scripts/deps.sh)" unless -x $_;
}
plan skip_all => 's3rver is not installed (make s3rver)' unless Crest::S3::available();

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $www = $t->dir . '/www';
mkdir $www;
system('ffmpeg', '-nostdin', '-v', 'error', '-y',
       '-f', 'lavfi', '-i', 'testsrc=duration=3:size=320x240:rate=25',
       '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3',
       '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '300k',
       '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', "$www/clip.mp4") == 0
    or die "ffmpeg failed\n";
my $clip_size = -s "$www/clip.mp4";
my $clip = do { open my $fh, '<:raw', "$www/clip.mp4" or die $!; local $/; <$fh> };
diag("clip $clip_size bytes");

my $srv = Crest::MediaServer->new(root => $www)->start;
my $s3 = Crest::S3->new(dir => $t->dir . '/s3', bucket => 'crest-media')->start;

my $user = 'aaaaaaaa-0000-4000-8000-000000000001';
$t->psql("INSERT INTO users (id, email, password_hash) VALUES ('$user', 's3\@example.com', 'x')");

# parts of 40000 bytes above 50000: the clip goes up in several parts
my $part = 40_000;
my %env = (
    CREST_QUEUES                 => 'download',
    CREST_CONCURRENCY            => 2,
    CREST_DOWNLOAD_ALLOW         => '127.0.0.1/32',
    CREST_DOWNLOAD_RETENTION     => '1d',
    $s3->env(CREST_S3_MULTIPART_THRESHOLD => 50_000, CREST_S3_PART_SIZE => $part),
);
$env{CREST_TEST_WORKER_BIN} = $ENV{CREST_TEST_WORKER_BIN} if $ENV{CREST_TEST_WORKER_BIN};

my $n = 0;
sub new_download {
    my $id = sprintf('dddddddd-0000-4000-8000-%012d', ++$n);
    $t->psql("INSERT INTO media_downloads (id, user_id, original_url) VALUES ('$id', '$user', 'x')");
    my ($rc, $out) = crest_queue($t, 'add', 'download', 'dl',
        encode_json({ downloadId => $id, userId => $user, url => $srv->url('/clip.mp4') }),
        '--opts', qq({"jobId":"dl-$n","attempts":2,"backoff":{"type":"fixed","delay":200}}));
    is($rc, 0, "job dl-$n added") or diag($out);
    return ($id, "dl-$n");
}

sub row {
    my $id = shift;
    my ($line) = $t->psql("SELECT status, coalesce(storage_key, ''), coalesce(thumbnail_key, ''),
        coalesce(file_size, -1), expired_at IS NOT NULL, coalesce(error, '')
        FROM media_downloads WHERE id = '$id'");
    my %r;
    @r{qw(status key thumb size expired error)} = split /\|/, $line // '', -1;
    return \%r;
}

sub job {
    my ($jid) = @_;
    my ($rc, $out) = crest_queue($t, 'get', 'download', $jid);
    return $rc == 0 && $out =~ /^\{/ ? decode_json($out) : {};
}

sub state { (crest_queue($t, 'state', 'download', $_[0]))[1] // '' }

sub s3log { do { local @ARGV = ($s3->{dir} . '/s3rver.log'); local $/; <> } // '' }

# ---------------------------------------------------------------- upload
start_worker($t, 'w1', %env);

my ($id1, $jid1) = new_download();
my ($id2, $jid2) = new_download();
for ([$id1, $jid1], [$id2, $jid2]) {
    my ($id, $jid) = @$_;
    ok(wait_until(sub { row($id)->{status} =~ /^(?:completed|failed)\z/ }, 60), "$jid finished");
    is(row($id)->{status}, 'completed', "$jid completed")
        or diag(explain(row($id)), explain(job($jid)));
}
my $r1 = row($id1);
is($r1->{key}, "downloads/$user/$id1/media.mp4", 'storage_key: the same layout as local storage');
is($r1->{thumb}, "downloads/$user/$id1/thumb.jpg", 'thumbnail_key');
is($r1->{size}, $clip_size, 'file_size');

my @objects = $s3->objects;
is_deeply(\@objects, [sort map { ("downloads/$user/$_/media.mp4", "downloads/$user/$_/thumb.jpg") } $id1, $id2],
          'the bucket holds media and thumbnail of both, nothing else')
    or diag(explain(\@objects));

my ($st, $body) = $s3->get($r1->{key});
is($st, 200, 'the media object is there');
is(length($body // ''), $clip_size, 'whole');
ok(defined $body && $body eq $clip, 'byte for byte the source');
($st, $body) = $s3->get($r1->{thumb});
is(unpack('H*', substr($body // '', 0, 3)), 'ffd8ff', 'the thumbnail object is a JPEG');

# multipart for the clip (above the threshold), one PUT for the thumbnail
my $log = s3log();
my $want_parts = int(($clip_size + $part - 1) / $part);
cmp_ok($want_parts, '>=', 2, "the clip needs $want_parts parts");
my %parts;
$parts{$1}++ while $log =~ /Stored part (\d+) of (\S+)/g;
is(scalar(() = $log =~ /\?uploads=? 200/g), 2, 'two multipart uploads created (one per clip)');
is(scalar(grep { $_ <= $want_parts } keys %parts), $want_parts, "parts 1..$want_parts stored")
    or diag(explain(\%parts));
ok(!grep({ $_ > $want_parts } keys %parts), 'no part beyond');
like($log, qr{/thumb\.jpg 200}, 'the thumbnail in one PUT');
unlike($log, qr{thumb\.jpg\?partNumber}, 'not in parts');
ok(!-d $t->dir . "/s3/scratch/.scratch/dl-$id1", 'the local scratch directory is removed');

# a presigned GET, as the edge hands them out
my $res = HTTP::Tiny->new(timeout => 30)->get($s3->presign($r1->{key}, 300));
is($res->{status}, 200, 'presigned GET: 200');
ok($res->{content} eq $clip, 'presigned GET: the bytes');
{
    # s3rver reads the query signature's credential (not the signature)
    local $s3->{key_id} = 'NOT-A-KEY';
    is(HTTP::Tiny->new(timeout => 30)->get($s3->presign($r1->{key}, 300))->{status}, 403,
       'presigned with an unknown key: 403');
}

# ---------------------------------------------------------------- download-delete
# the edge deleted row 2 and asks for its objects to go
my @keys2 = @{ row($id2) }{qw(key thumb)};
$t->psql("DELETE FROM media_downloads WHERE id = '$id2'");
crest_queue($t, 'add', 'download', 'download-delete',
            encode_json({ storageKeys => [@keys2, "downloads/$user/$id2/never-there.mp4"] }),
            '--opts', '{"jobId":"del-1","attempts":3}');
ok(wait_until(sub { state('del-1') eq 'completed' }, 30), 'download-delete completed')
    or diag(explain(job('del-1')));
my $rv = job('del-1')->{returnvalue};
is($rv->{removed}, 2, 'two objects removed (a missing key is no error)');
is($rv->{bytes}, $clip_size + length($body), 'their sizes (stat before remove)');
($st) = $s3->get($keys2[0]);
is($st, 404, 'media gone from the bucket');
($st) = $s3->get($keys2[1]);
is($st, 404, 'thumbnail gone from the bucket');

# keys a row still names are kept
crest_queue($t, 'add', 'download', 'download-delete', encode_json({ storageKeys => [$r1->{key}] }),
            '--opts', '{"jobId":"del-2"}');
ok(wait_until(sub { state('del-2') eq 'completed' }, 30), 'download-delete of a live key: done');
is(job('del-2')->{returnvalue}{kept}, 1, 'kept');
($st) = $s3->get($r1->{key});
is($st, 200, 'the live object is still there');

# what is not a download key is refused at once
crest_queue($t, 'add', 'download', 'download-delete', encode_json({ storageKeys => ['../etc/passwd'] }),
            '--opts', '{"jobId":"del-3","attempts":3}');
ok(wait_until(sub { state('del-3') eq 'failed' }, 30), 'a bad key: failed');
is(job('del-3')->{attemptsMade}, 1, 'at once');
like(job('del-3')->{failedReason}, qr/under downloads\//, 'failedReason');

# ---------------------------------------------------------------- cleanup
# id1 completed 2 days ago (retention 1 day); id3 just now
my ($id3, $jid3) = new_download();
ok(wait_until(sub { row($id3)->{status} eq 'completed' }, 60), 'a third download completed');
$t->psql("UPDATE media_downloads SET completed_at = now() - interval '2 days' WHERE id = '$id1'");
crest_queue($t, 'add', 'download', 'downloads-cleanup', '{}', '--opts', '{"jobId":"clean-1"}');
ok(wait_until(sub { state('clean-1') eq 'completed' }, 30), 'cleanup completed')
    or diag(explain(job('clean-1')));
$rv = job('clean-1')->{returnvalue};
is($rv->{expired}, 1, 'one download expired');
is($rv->{removed}, 2, 'its two objects removed');
is($rv->{retentionSeconds}, 86400, 'retention from CREST_DOWNLOAD_RETENTION');
my $e = row($id1);
is($e->{status}, 'completed', 'expired row: still completed');
is($e->{key}, '', 'expired row: storage_key NULL');
is($e->{thumb}, '', 'expired row: thumbnail_key NULL');
is($e->{expired}, 't', 'expired row: expired_at set');
is_deeply([$s3->objects], ["downloads/$user/$id3/media.mp4", "downloads/$user/$id3/thumb.jpg"],
          'only the recent download is left in the bucket');
is(row($id3)->{expired}, 'f', 'the recent row is untouched');

is_deeply([problems($t, 'w1')], ['download-delete: key still in use, kept'],
          'no warnings or errors but the kept key');
is($t->spawn_stop('w1'), 0, 'worker stops cleanly');

# ---------------------------------------------------------------- failures
# an unknown access key: the upload is refused, the job fails, the row says why
start_worker($t, 'badkey', %env, CREST_S3_ACCESS_KEY_ID => 'NOT-A-KEY',
             CREST_S3_SECRET_ACCESS_KEY => 'very-secret-value');
my ($id4, $jid4) = new_download();
ok(wait_until(sub { state($jid4) eq 'failed' }, 60), 'wrong key: job failed');
like(row($id4)->{error}, qr/InvalidAccessKeyId/, 'wrong key: the row says why');
unlike(row($id4)->{error} . (job($jid4)->{failedReason} // ''), qr/very-secret-value/,
       'the secret is in no error');
my $wlog = do { local @ARGV = ($t->dir . '/logs/badkey.log'); local $/; <> } // '';
unlike($wlog, qr/very-secret-value/, 'nor in the log');
ok(!grep({ m{/$id4/} } $s3->objects), 'nothing stored');
is($t->spawn_stop('badkey'), 0, 'stops cleanly');

# a bucket that does not exist
start_worker($t, 'nobucket', %env, CREST_S3_BUCKET => 'no-such-bucket');
my ($id5, $jid5) = new_download();
ok(wait_until(sub { state($jid5) eq 'failed' }, 60), 'missing bucket: job failed');
like(row($id5)->{error}, qr/NoSuchBucket/, 'missing bucket: the row says why');
is($t->spawn_stop('nobucket'), 0, 'stops cleanly');

$s3->stop;
$srv->stop;
$t->stop;
done_testing();
