# The S3 backend on the wire, against a scripted server (Crest::FakeHTTP)
# that records every request: each one is SigV4-signed by libcurl, and the
# signature is checked here the way S3 checks it (canonical request rebuilt
# from what arrived, HMAC chain with the secret; s3rver does not check
# signatures, this does), with x-amz-content-sha256 the hash of the body
# actually sent; 5xx answers are retried and a 4xx is not; a multipart
# upload whose part is refused, or whose CompleteMultipartUpload answers
# 200 with an <Error>, is aborted and fails the download with S3's code.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use MIME::Base64 ();
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems crest_queue);
use Crest::FakeHTTP;
use Crest::MediaServer;
use Crest::S3;

for (qw(/usr/bin/yt-dlp /usr/bin/ffmpeg /usr/bin/ffprobe)) {
    plan skip_all => "$_ is not installed (scripts/deps.sh)" unless -x $_;
}

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $www = $t->dir . '/www';
mkdir $www;
system('ffmpeg', '-nostdin', '-v', 'error', '-y',
       '-f', 'lavfi', '-i', 'testsrc=duration=3:size=320x240:rate=25',
       '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '300k', '-pix_fmt', 'yuv420p',
       "$www/clip.mp4") == 0
    or die "ffmpeg failed\n";
my $clip_size = -s "$www/clip.mp4";
my $srv = Crest::MediaServer->new(root => $www)->start;

my $secret = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
my $region = 'eu-central-1';
my $s3 = Crest::FakeHTTP->new(dir => $t->dir . '/fake-s3');
$s3->start;

my $user = 'aaaaaaaa-0000-4000-8000-000000000001';
$t->psql("INSERT INTO users (id, email, password_hash) VALUES ('$user', 'w\@example.com', 'x')");

my $part = 40_000;
my %env = (
    CREST_QUEUES                 => 'download',
    CREST_DOWNLOAD_ALLOW         => '127.0.0.1/32',
    CREST_STORAGE                => 's3',
    CREST_S3_ENDPOINT            => $s3->url,
    CREST_S3_BUCKET              => 'bkt',
    CREST_S3_REGION              => $region,
    CREST_S3_ACCESS_KEY_ID       => 'AKIDEXAMPLE',
    CREST_S3_SECRET_ACCESS_KEY_FILE => $t->dir . '/s3-secret',
    CREST_S3_MULTIPART_THRESHOLD => 50_000,
    CREST_S3_PART_SIZE           => $part,
    CREST_S3_RETRIES             => 2,
    CREST_STORAGE_SCRATCH        => $t->dir . '/scratch',
);
$env{CREST_TEST_WORKER_BIN} = $ENV{CREST_TEST_WORKER_BIN} if $ENV{CREST_TEST_WORKER_BIN};
{ open my $fh, '>', $env{CREST_S3_SECRET_ACCESS_KEY_FILE} or die; print $fh "$secret\n"; close $fh }

sub job {
    my ($rc, $out) = crest_queue($t, 'get', 'download', $_[0]);
    return $rc == 0 && $out =~ /^\{/ ? decode_json($out) : {};
}
sub state { (crest_queue($t, 'state', 'download', $_[0]))[1] // '' }

sub all_signed {
    my ($what, @reqs) = @_;
    my @bad = grep { $_ } map { Crest::S3::sigv4_problem($_, $secret, $region) } @reqs;
    ok(@reqs && !@bad, "$what: " . scalar(@reqs) . ' requests, each correctly signed') or diag(join "\n", @bad);
}

my $xml = sub { { status => $_[0], headers => { 'Content-Type' => 'application/xml' }, body => $_[1] } };
my $err = sub { $xml->($_[0], "<?xml version=\"1.0\"?><Error><Code>$_[1]</Code><Message>$_[2]</Message></Error>") };

start_worker($t, 'w1', %env);

# ---------------------------------------------------------------- retries
# download-delete: HEAD (stat) and DELETE, with 503s in the way
my $k1 = "downloads/$user/x/media.mp4";
$s3->set_routes([
    { path => "/bkt/$k1", method => 'HEAD',
      responses => [{ status => 503 }, { status => 200 }] },
    { path => "/bkt/$k1", method => 'DELETE',
      responses => [{ status => 500 }, { status => 503 }, { status => 204 }] },
]);
crest_queue($t, 'add', 'download', 'download-delete', encode_json({ storageKeys => [$k1] }),
            '--opts', '{"jobId":"del-1"}');
ok(wait_until(sub { state('del-1') eq 'completed' }, 30), 'delete through two 5xx: completed')
    or diag(explain(job('del-1')));
is(scalar(grep { $_->{method} eq 'HEAD' } $s3->requests), 2, 'HEAD: retried once');
is(scalar(grep { $_->{method} eq 'DELETE' } $s3->requests), 3, 'DELETE: retried twice');
all_signed('retries', $s3->requests);

# retries used up: the attempt fails, for the job's own retry
$s3->stop;
$s3 = Crest::FakeHTTP->new(dir => $t->dir . '/fake-s3-2', routes => [
    { path => "/bkt/$k1", method => 'HEAD', responses => [{ status => 404 }] },
    { path => "/bkt/$k1", method => 'DELETE', responses => [{ status => 503 }] },
]);
$s3->start;
$t->spawn_stop('w1');
start_worker($t, 'w2', %env, CREST_S3_ENDPOINT => $s3->url);
crest_queue($t, 'add', 'download', 'download-delete', encode_json({ storageKeys => [$k1] }),
            '--opts', '{"jobId":"del-2","attempts":2}');
ok(wait_until(sub { state('del-2') eq 'failed' }, 30), 'DELETE always 503: failed');
is(job('del-2')->{attemptsMade}, 2, 'after both attempts');
is(scalar(grep { $_->{method} eq 'DELETE' } $s3->requests), 6, '3 tries (1 + CREST_S3_RETRIES) per attempt');

# a 4xx is not retried
$s3->set_routes([
    { path => "/bkt/$k1", method => 'HEAD', responses => [{ status => 200 }] },
    { path => "/bkt/$k1", method => 'DELETE', responses => [$err->(403, 'AccessDenied', 'Access Denied')] },
]);
my $before = () = $s3->requests;
crest_queue($t, 'add', 'download', 'download-delete', encode_json({ storageKeys => [$k1] }),
            '--opts', '{"jobId":"del-3"}');
ok(wait_until(sub { state('del-3') eq 'failed' }, 30), 'DELETE 403: failed');
my @after = ($s3->requests)[$before .. scalar($s3->requests) - 1];
is(scalar(grep { $_->{method} eq 'DELETE' } @after), 1, '403: not retried');

# a key allowed to delete but not to read: HEAD answers 403, yet the object
# goes (the size is only for the report)
$s3->set_routes([
    { path => "/bkt/$k1", method => 'HEAD', responses => [{ status => 403 }] },
    { path => "/bkt/$k1", method => 'DELETE', responses => [{ status => 204 }] },
]);
$before = () = $s3->requests;
crest_queue($t, 'add', 'download', 'download-delete', encode_json({ storageKeys => [$k1] }),
            '--opts', '{"jobId":"del-4","attempts":2}');
ok(wait_until(sub { state('del-4') =~ /^(?:completed|failed)\z/ }, 30), 'HEAD 403: finished');
is(state('del-4'), 'completed', 'HEAD 403: completed') or diag(explain(job('del-4')));
is_deeply(job('del-4')->{returnvalue}, { removed => 1, bytes => 0, kept => 0 },
          'the object removed, its size unknown');
@after = ($s3->requests)[$before .. scalar($s3->requests) - 1];
is(scalar(grep { $_->{method} eq 'DELETE' } @after), 1, 'one DELETE');

# ---------------------------------------------------------------- uploads
my $n = 0;
sub new_download {
    my $id = sprintf('dddddddd-0000-4000-8000-%012d', ++$n);
    $t->psql("INSERT INTO media_downloads (id, user_id, original_url) VALUES ('$id', '$user', 'x')");
    crest_queue($t, 'add', 'download', 'dl',
        encode_json({ downloadId => $id, userId => $user, url => $srv->url('/clip.mp4') }),
        '--opts', qq({"jobId":"dl-$n"}));
    return ($id, "dl-$n");
}
sub row_of {
    my ($line) = $t->psql("SELECT status, coalesce(error, ''), coalesce(storage_key, '')
                           FROM media_downloads WHERE id = '$_[0]'");
    my %r;
    @r{qw(status error key)} = split /\|/, $line // '', -1;
    return \%r;
}
my $nparts = int(($clip_size + $part - 1) / $part);
cmp_ok($nparts, '>=', 2, "the clip ($clip_size bytes) takes $nparts parts");

# 1. a good multipart upload, and the thumbnail in one PUT
my $key = "/bkt/downloads/$user/dddddddd-0000-4000-8000-000000000001/media.mp4";
my $thumb = "/bkt/downloads/$user/dddddddd-0000-4000-8000-000000000001/thumb.jpg";
$s3->set_routes([
    { path => $key, method => 'POST', query => 'uploads=',
      responses => [$xml->(200, '<?xml version="1.0"?><InitiateMultipartUploadResult><Bucket>bkt</Bucket>'
          . '<Key>k</Key><UploadId>up/1+a=b&amp;c</UploadId></InitiateMultipartUploadResult>')] },
    { path => $key, method => 'PUT', query => 'partNumber=',
      responses => [{ status => 200, headers => { ETag => '"etag-part"' } }] },
    { path => $key, method => 'POST', query => 'uploadId=',
      responses => [$xml->(200, '<CompleteMultipartUploadResult><ETag>"x-2"</ETag></CompleteMultipartUploadResult>')] },
    { path => $thumb, method => 'PUT', responses => [{ status => 200, headers => { ETag => '"t"' } }] },
]);
$before = () = $s3->requests;
my ($id1, $jid1) = new_download();
ok(wait_until(sub { row_of($id1)->{status} =~ /^(?:completed|failed)\z/ }, 60), 'multipart: finished');
is(row_of($id1)->{status}, 'completed', 'multipart: completed') or diag(row_of($id1)->{error});
my @up = ($s3->requests)[$before .. scalar($s3->requests) - 1];
my @parts = grep { $_->{method} eq 'PUT' && $_->{path} eq $key } @up;
is(scalar @parts, $nparts, "$nparts parts") or diag(join "\n", map { "$_->{method} $_->{path} $_->{query}" } @up);
ok(join('', map { MIME::Base64::decode_base64($_->{body_base64} // '') } @parts) eq do { open my $fh, '<:raw', "$www/clip.mp4"; local $/; <$fh> },
   'the parts, in order, are the file');
like($parts[0]{query}, qr/^partNumber=1&uploadId=up%2F1%2Ba%3Db%26c\z/,
     'the UploadId, entity-decoded and percent-encoded, in canonical order');
my ($complete) = grep { $_->{method} eq 'POST' && $_->{query} =~ /^uploadId=/ } @up;
is(scalar(() = $complete->{body} =~ m{<Part><PartNumber>\d+</PartNumber><ETag>&quot;etag-part&quot;</ETag></Part>}g),
   $nparts, 'CompleteMultipartUpload lists every part with its ETag');
is(scalar(grep { $_->{method} eq 'PUT' && $_->{path} eq $thumb && $_->{query} eq '' } @up), 1,
   'the thumbnail: one PUT');
all_signed('multipart upload', @up);
like(Crest::S3::sigv4_problem($parts[0], 'not-the-secret', $region), qr/signature mismatch/,
     'the check fails with another secret');
{
    my %tampered = (%{ $parts[0] }, body_base64 => MIME::Base64::encode_base64('other bytes', ''));
    like(Crest::S3::sigv4_problem(\%tampered, $secret, $region), qr/not the hash of the body/,
         'and with another body');
}
ok(!grep({ $_->{method} eq 'DELETE' } @up), 'nothing aborted');

# 2. a refused part: no retry, the upload is aborted, the row says why
$key =~ s/dddddddd-0000-4000-8000-000000000001/dddddddd-0000-4000-8000-000000000002/;
$s3->set_routes([
    { path => $key, method => 'POST', query => 'uploads=',
      responses => [$xml->(200, '<InitiateMultipartUploadResult><UploadId>U2</UploadId></InitiateMultipartUploadResult>')] },
    { path => $key, method => 'PUT', query => 'partNumber=2',
      responses => [$err->(400, 'InvalidPart', 'One or more of the specified parts could not be found')] },
    { path => $key, method => 'PUT', query => 'partNumber=',
      responses => [{ status => 200, headers => { ETag => '"e"' } }] },
    { path => $key, method => 'DELETE', query => 'uploadId=U2', responses => [{ status => 204 }] },
]);
$before = () = $s3->requests;
my ($id2, $jid2) = new_download();
ok(wait_until(sub { row_of($id2)->{status} eq 'failed' || state($jid2) eq 'failed' }, 60), 'refused part: failed');
@up = ($s3->requests)[$before .. scalar($s3->requests) - 1];
like(row_of($id2)->{error}, qr/UploadPart 2 .*HTTP 400 InvalidPart/, 'the row error names S3\'s code');
is(scalar(grep { $_->{query} =~ /^partNumber=2&/ } @up), 1, 'the 400 was not retried');
ok(!grep({ $_->{query} =~ /^partNumber=3&/ } @up), 'no part after the refused one');
is(scalar(grep { $_->{method} eq 'DELETE' && $_->{query} eq 'uploadId=U2' } @up), 1, 'the upload was aborted');
all_signed('aborted upload', @up);
unlike(row_of($id2)->{error}, qr/\Q$secret\E|Signature=/, 'no secret or signature in the error');

# 3. CompleteMultipartUpload answering 200 with an <Error> body
$key =~ s/dddddddd-0000-4000-8000-000000000002/dddddddd-0000-4000-8000-000000000003/;
$s3->set_routes([
    { path => $key, method => 'POST', query => 'uploads=',
      responses => [$xml->(200, '<InitiateMultipartUploadResult><UploadId>U3</UploadId></InitiateMultipartUploadResult>')] },
    { path => $key, method => 'PUT', query => 'partNumber=',
      responses => [{ status => 200, headers => { ETag => '"e"' } }] },
    { path => $key, method => 'POST', query => 'uploadId=U3',
      responses => [$xml->(200, '<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>')] },
    { path => $key, method => 'DELETE', query => 'uploadId=U3', responses => [{ status => 204 }] },
]);
$before = () = $s3->requests;
my ($id3, $jid3) = new_download();
ok(wait_until(sub { row_of($id3)->{status} eq 'failed' || state($jid3) eq 'failed' }, 60), '200 with <Error>: failed');
@up = ($s3->requests)[$before .. scalar($s3->requests) - 1];
like(row_of($id3)->{error}, qr/CompleteMultipartUpload .*InternalError/, 'the row error says so');
is(scalar(grep { $_->{method} eq 'DELETE' && $_->{query} eq 'uploadId=U3' } @up), 1, 'aborted');
is(row_of($id3)->{key}, '', 'no storage_key recorded');

# 4. the media stored, its thumbnail refused: the media object is removed,
#    since no row will ever name it (the cleanup and deletes go by rows)
$key =~ s/dddddddd-0000-4000-8000-000000000003/dddddddd-0000-4000-8000-000000000004/;
$thumb =~ s/dddddddd-0000-4000-8000-000000000001/dddddddd-0000-4000-8000-000000000004/;
$s3->set_routes([
    { path => $key, method => 'POST', query => 'uploads=',
      responses => [$xml->(200, '<InitiateMultipartUploadResult><UploadId>U4</UploadId></InitiateMultipartUploadResult>')] },
    { path => $key, method => 'PUT', query => 'partNumber=',
      responses => [{ status => 200, headers => { ETag => '"e"' } }] },
    { path => $key, method => 'POST', query => 'uploadId=U4',
      responses => [$xml->(200, '<CompleteMultipartUploadResult><ETag>"x-2"</ETag></CompleteMultipartUploadResult>')] },
    { path => $thumb, method => 'PUT', responses => [$err->(403, 'AccessDenied', 'Access Denied')] },
    { path => $key, method => 'DELETE', responses => [{ status => 204 }] },
]);
$before = () = $s3->requests;
my ($id4, $jid4) = new_download();
ok(wait_until(sub { state($jid4) eq 'failed' }, 60), 'thumbnail refused: failed');
@up = ($s3->requests)[$before .. scalar($s3->requests) - 1];
like(row_of($id4)->{error}, qr/thumb\.jpg: HTTP 403 AccessDenied/, 'the row error says why');
is(row_of($id4)->{key}, '', 'no storage_key recorded');
is(scalar(grep { $_->{method} eq 'POST' && $_->{query} eq 'uploadId=U4' } @up), 1, 'the media was stored');
is(scalar(grep { $_->{method} eq 'DELETE' && $_->{path} eq $key && $_->{query} eq '' } @up), 1,
   'and then removed: no object is left that no row names')
    or diag(join "\n", map { "$_->{method} $_->{path} $_->{query}" } @up);
all_signed('orphan removal', @up);

my $log = do { local @ARGV = ($t->dir . '/logs/w2.log'); local $/; <> } // '';
unlike($log, qr/\Q$secret\E/, 'the secret is nowhere in the log');
is($t->spawn_stop('w2'), 0, 'stops cleanly');

$s3->stop;
$srv->stop;
$t->stop;
done_testing();
