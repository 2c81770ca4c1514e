# Two configurations of the downloads module the other tests do not use:
#
# - a `resolver`: host names of download URLs are resolved at the edge by
#   nginx's own asynchronous resolver (here a small DNS server on
#   127.0.0.1 speaking the real wire format) and every address is checked:
#   a name with any private, link-local or loopback address, or no address,
#   is a 400 VALIDATION_ERROR naming url; a public or allow-listed one
#   goes on;
# - S3 storage: GET /api/downloads/{id}/file redirects to a SigV4 presigned
#   GET of endpoint/bucket/key, checked here by an independent signer; with
#   s3rver installed, a download crest-worker stored there is fetched back
#   through that link (s3rver does not verify signatures: the signer
#   above does).
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use POSIX ();
use Digest::SHA qw(sha256_hex hmac_sha256 hmac_sha256_hex);
use Time::HiRes qw(sleep time);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Jobs qw(session bearer);
use Crest::Bull qw(start_worker wait_until);
use Crest::MediaServer;
use Crest::S3;
use HTTP::Tiny;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
# /x/downloads: the same endpoints with a long formats wait, to see a
# client that leaves end the polling
my $t = Crest::Test->new(config => "include $conf;
    location /x/downloads { crest_auth on; crest_downloads; crest_downloads_formats_timeout 60s; }");

# ---------------------------------------------------------------- DNS
my %A = (
    'media.test'  => ['127.0.0.1'],
    'public.test' => ['8.8.8.8'],
    'evil.test'   => ['10.0.0.5'],
    'multi.test'  => ['8.8.8.8', '169.254.169.254'],
    'loop.test'   => ['127.0.0.2'],
);
my $dns = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp')
    or die "dns socket: $!";
my $dns_port = $dns->sockport;
my $dns_log = $t->dir . '/dns.log';
my $dns_pid = fork // die;
if (!$dns_pid) {
    # one answer per query: A records from %A, NXDOMAIN for other names,
    # no records for other types
    while (1) {
        my $from = $dns->recv(my $q, 512) // next;
        next if length $q < 17;
        my ($id, $flags, $qd) = unpack('n n n', $q);
        my ($pos, @labels) = (12);
        while (my $n = ord substr($q, $pos, 1)) {
            push @labels, substr($q, $pos + 1, $n);
            $pos += $n + 1;
        }
        my $name = lc join '.', @labels;
        my ($qtype) = unpack('n', substr($q, $pos + 1, 2));
        my $question = substr($q, 12, $pos + 5 - 12);
        if (open my $lf, '>>', $dns_log) { print $lf "$name $qtype\n"; close $lf }
        my @addrs = $qtype == 1 ? @{ $A{$name} || [] } : ();
        my $rcode = exists $A{$name} ? 0 : 3;
        my $answer = join '', map {
            pack('n n n N n', 0xc00c, 1, 1, 60, 4) . pack('C4', split /\./)
        } @addrs;
        my $resp = pack('n n n n n n', $id, 0x8180 | $rcode, 1, scalar @addrs, 0, 0)
                 . $question . $answer;
        $dns->send($resp, 0, $from);
    }
}
close $dns;

# ---------------------------------------------------------------- S3
# s3rver when it is installed (make s3rver): then a real download is also
# fetched back through the link; else an endpoint nothing listens on
my ($s3, $endpoint, $key_id, $secret);
if (Crest::S3::available()) {
    $s3 = Crest::S3->new(dir => $t->dir . '/s3', bucket => 'crest-media')->start;
    ($endpoint, $key_id, $secret) = ($s3->endpoint, 'S3RVER', 'S3RVER');
} else {
    ($endpoint, $key_id, $secret) = ('http://127.0.0.1:9000',
        'AKIDCRESTTEST0001', 'crest/test+secret/0123456789abcdefABCDEF');
}
(my $s3host = $endpoint) =~ s{^http://}{};
my $key_id_file = $t->dir . '/secrets/s3_key_id';
my $secret_file = $t->dir . '/secrets/s3_secret';
for ([$key_id_file, $key_id], [$secret_file, $secret]) {
    open my $fh, '>', $_->[0] or die $!;
    print $fh "$_->[1]\n";
    close $fh;
    chmod 0644, $_->[0];
}

$t->set_config(http_config => "
    crest_jobs_queues ping download formats;
    crest_downloads_allow 127.0.0.1/32;
    crest_downloads_link_ttl 120s;
    crest_downloads_storage s3 endpoint=$endpoint/ bucket=crest-media
                            region=eu-test-1 key_id_file=$key_id_file secret_file=$secret_file;
    resolver 127.0.0.1:$dns_port ipv6=off valid=1s;
    resolver_timeout 5s;
    crest_downloads_formats_timeout 1s;
");
$t->start;

my $alice = session($t, 'alice@example.com');
$t->psql("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$alice->{id}', 'pro', 'active')");

sub post { $t->http(POST => '/api/downloads', json => { url => $_[0] }, headers => bearer($alice)) }

sub formats {
    (my $u = $_[0]) =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $t->http(GET => "/api/downloads/formats?url=$u", headers => bearer($alice), timeout => 5);
}

sub dns_queries {
    open my $fh, '<', $dns_log or return ();
    return map { chomp; $_ } <$fh>;
}

my %refused = (
    'http://evil.test/v.mp4'       => qr/evil\.test resolves to a private address/,
    'http://multi.test/v.mp4'      => qr/multi\.test resolves to a link-local address/,
    'http://loop.test:8080/v.mp4'  => qr/loop\.test resolves to a loopback address/,
    'https://nx.test/v.mp4'        => qr/nx\.test has no address/,
);
for my $url (sort keys %refused) {
    my $r = post($url);
    is($r->{status}, 400, "POST $url: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', "POST $url: VALIDATION_ERROR");
    is($r->{json}{error}{details}{field}, 'url', "POST $url: names url");
    like($r->{json}{error}{message}, $refused{$url}, "POST $url: says why");
    $r = formats($url);
    is($r->{status}, 400, "formats $url: 400 before any job");
    like($r->{json}{error}{message}, $refused{$url}, "formats $url: says why");
}
is($t->psql("SELECT count(*) FROM jobs"), 0, 'no job for a refused name');
is($t->psql("SELECT count(*) FROM media_downloads"), 0, 'no row for a refused name');
my %asked = map { (split / /)[0] => 1 } dns_queries();
ok($asked{$_}, "$_ was asked of the resolver") for qw(evil.test multi.test loop.test nx.test);

for my $url ('http://public.test/v.mp4', 'http://media.test:8080/v.mp4') {
    my $r = post($url);
    is($r->{status}, 202, "POST $url: accepted (public, or allow-listed)") or diag($r->{content});
}
ok((grep { /^public\.test 1$/ } dns_queries()), 'an A query for public.test');

# a name in the resolver's cache is answered at once, from inside the
# resolve call: asked twice in a row, the same answer
for (1 .. 2) {
    my $r = formats('http://evil.test/again');
    is($r->{status}, 400, "a cached name, asked again ($_): 400");
}

# no worker serves formats here: the request waits for its job, then 504
# with the job's id so the client can follow it
my $r = formats('http://public.test/v.mp4');
is($r->{status}, 504, 'formats with no worker: 504 after crest_downloads_formats_timeout');
is($r->{json}{error}{code}, 'SERVICE_UNAVAILABLE', 'SERVICE_UNAVAILABLE');
my $fj = $r->{json}{error}{details}{jobId} // '';
is($t->psql("SELECT queue FROM jobs WHERE id::text = '$fj'"), 'formats', 'details.jobId: the formats job');

# a client that leaves while its formats job is awaited: the polling of
# the job's hash (HMGET) stops with the request
sub hmgets {
    my ($line) = grep { /^cmdstat_hmget:/ } $t->redis_cli('INFO', 'commandstats');
    return ($line // '') =~ /calls=(\d+)/ ? $1 : 0;
}
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!";
    print $s "GET /x/downloads/formats?url=http%3A%2F%2Fpublic.test%2Fw HTTP/1.1\r\n"
           . "Host: localhost\r\nAuthorization: Bearer $alice->{token}\r\n\r\n";
    my $h0 = hmgets();
    sleep 1.5;
    my $h1 = hmgets();
    cmp_ok($h1, '>', $h0, 'while the client waits, the job is polled (' . ($h1 - $h0) . ' HMGETs)');
    close $s;
    sleep 1;
    my $h2 = hmgets();
    sleep 1.5;
    is(hmgets(), $h2, 'once it has left, no more polling');
}

# ---------------------------------------------------------------- S3 links
my $id = 'dddddddd-0000-4000-8000-000000000001';
my $key = "downloads/$alice->{id}/$id/media.mp4";
$t->psql("INSERT INTO media_downloads (id, user_id, original_url, status, progress, storage_key,
          thumbnail_key, file_size, completed_at) VALUES ('$id', '$alice->{id}', 'https://x.test/v',
          'completed', 100, '$key', 'downloads/$alice->{id}/$id/thumb.jpg', 10, now())");

my $before = time;
$r = $t->http(GET => "/api/downloads/$id/file", headers => bearer($alice));
is($r->{status}, 302, 'S3 storage: 302');
my $loc = $r->{headers}{location} // '';
like($loc, qr{^\Q$endpoint\E/crest-media/\Q$key\E\?X-Amz-Algorithm=AWS4-HMAC-SHA256&},
     'to endpoint/bucket/key (path-style), presigned');
my ($path, $query) = $loc =~ m{^\Q$endpoint\E(/[^?]*)\?(.*)$};
my %q = map { my ($k, $v) = split /=/, $_, 2; ($k => $v) } split /&/, $query // '';
is($q{'X-Amz-Expires'}, 120, 'X-Amz-Expires: crest_downloads_link_ttl');
is($q{'X-Amz-SignedHeaders'}, 'host', 'only host is signed');
my ($date) = ($q{'X-Amz-Date'} // '') =~ /^(\d{8})T\d{6}Z$/;
ok($date, 'X-Amz-Date');
is($q{'X-Amz-Credential'}, "$key_id%2F$date%2Feu-test-1%2Fs3%2Faws4_request", 'the credential scope');
is($r->{json}{data}{url}, $loc, 'the URL in the body too');
ok(abs($r->{json}{data}{expiresAt} - ($before + 120)) <= 2, 'expiresAt');

is($q{'X-Amz-Signature'}, sigv4($path, $query, $s3host), 'the signature is right');

$r = $t->http(GET => "/api/downloads/$id/thumbnail", headers => bearer($alice));
like($r->{headers}{location} // '', qr{^\Q$endpoint\E/crest-media/downloads/[^?]+/thumb\.jpg\?X-Amz-},
     'the thumbnail too');
unlike($t->error_log, qr/\Q$secret\E/, 'the secret is in no log line');

# a real download stored in s3rver by crest-worker, served back through
# the presigned link, a range included
SKIP: {
    skip 's3rver is not installed (make s3rver)', 6 unless $s3;
    skip 'yt-dlp or ffmpeg is not installed', 6 unless -x '/usr/bin/yt-dlp' && -x '/usr/bin/ffmpeg';
    my $www = $t->dir . '/www';
    mkdir $www;
    system('ffmpeg', '-nostdin', '-v', 'error', '-y',
           '-f', 'lavfi', '-i', 'testsrc=duration=2:size=320x240:rate=25',
           '-f', 'lavfi', '-i', 'sine=frequency=440:duration=2',
           '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '300k',
           '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', "$www/clip.mp4") == 0 or die "ffmpeg\n";
    my $clip = do { open my $fh, '<:raw', "$www/clip.mp4" or die $!; local $/; <$fh> };
    my $srv = Crest::MediaServer->new(root => $www)->start;
    start_worker($t, 'w', $s3->env, CREST_QUEUES => 'download', CREST_DOWNLOAD_ALLOW => '127.0.0.1/32');
    my $r = post($srv->url('/clip.mp4'));
    my $did = $r->{json}{data}{download}{id} // 'none';
    ok(wait_until(sub { $t->psql("SELECT status FROM media_downloads WHERE id = '$did'") eq 'completed' }, 60),
       'stored in s3rver by the worker');
    my ($skey) = $t->psql("SELECT storage_key FROM media_downloads WHERE id = '$did'");
    ok((grep { $_ eq $skey } $s3->objects), 'the object is in the bucket');
    $r = $t->http(GET => "/api/downloads/$did/file", headers => bearer($alice));
    is($r->{status}, 302, '/file: 302 to s3rver');
    my $res = HTTP::Tiny->new->get($r->{headers}{location} // '', { headers => { Range => 'bytes=0-99' } });
    is($res->{status}, 206, 'the presigned URL: 206 to a range');
    is($res->{content}, substr($clip, 0, 100), 'the first 100 bytes of the media');
    $res = HTTP::Tiny->new->get($r->{headers}{location} // '');
    ok(($res->{content} // '') eq $clip, 'and the whole file, byte for byte');
    $t->spawn_stop('w');
    $srv->stop;
}

# an endpoint written with its scheme's own port: clients leave that port
# out of the Host they send, so the link must be signed without it
{
    my $t2 = Crest::Test->new(config => "include $conf;");
    $t2->set_config(http_config => "
        crest_jobs_queues ping download formats;
        crest_downloads_storage s3 endpoint=https://s3.example.test:443 bucket=crest-media
                                region=eu-test-1 key_id_file=$key_id_file secret_file=$secret_file;
    ");
    $t2->start;
    my $bob = session($t2, 'bob@example.com');
    my $bkey = "downloads/$bob->{id}/$id/media.mp4";
    $t2->psql("INSERT INTO media_downloads (id, user_id, original_url, status, progress, storage_key,
               file_size, completed_at) VALUES ('$id', '$bob->{id}', 'https://x.test/v', 'completed',
               100, '$bkey', 10, now())");
    my $r = $t2->http(GET => "/api/downloads/$id/file", headers => bearer($bob));
    my $loc = $r->{headers}{location} // '';
    like($loc, qr{^https://s3\.example\.test/crest-media/\Q$bkey\E\?X-Amz-}, 'https endpoint with :443: the link leaves the port out');
    my ($path, $query) = $loc =~ m{^https://[^/]+(/[^?]*)\?(.*)$};
    my ($sig) = ($query // '') =~ /X-Amz-Signature=([0-9a-f]+)$/;
    is($sig, sigv4($path, $query, 's3.example.test'), 'signed for Host: s3.example.test, as clients send it');
    $t2->stop;
}

# a secret written inline by mistake (secret= for secret_file=) stops nginx
# without the secret in its message
{
    my $b = Crest::Test->new(no_pg => 1, no_redis => 1, check_on_stop => 0, http_config => "
        crest_downloads_storage s3 endpoint=$endpoint bucket=crest-media region=eu-test-1
                                key_id_file=$key_id_file secret=Inline0Secret0Value;");
    ok(!eval { $b->start; 1 }, 'an unknown crest_downloads_storage parameter: refused');
    my $said = $b->error_log . ($@ // '');
    like($said, qr/invalid crest_downloads_storage parameter "secret=\.\.\."/, '  naming it');
    unlike($said, qr/Inline0Secret0Value/, '  but not its value');
    $b->stop;
}

# a key id the signer cannot use (S3 key ids are letters and digits) stops
# nginx at start, not every /file request later, and the secret stays out
{
    my $bad_id = $t->dir . '/secrets/s3_bad_key_id';
    open my $fh, '>', $bad_id or die $!;
    print $fh "AKIA EXAMPLE/1\n";
    close $fh;
    my $b = Crest::Test->new(no_pg => 1, no_redis => 1, check_on_stop => 0, http_config => "
        crest_downloads_storage s3 endpoint=$endpoint bucket=crest-media region=eu-test-1
                                key_id_file=$bad_id secret_file=$secret_file;");
    ok(!eval { $b->start; 1 }, 'a key id that cannot sign: nginx does not start');
    my $said = $b->error_log . ($@ // '');
    like($said, qr/crest_downloads_storage s3: the keys or region cannot sign a link/, '  saying why');
    unlike($said, qr/\Q$secret\E/, '  without the secret');
    $b->stop;
}

$t->stop;
$s3->stop if $s3;
kill 'KILL', $dns_pid;
waitpid $dns_pid, 0;
done_testing();


# an independent SigV4 signer: the signature a presigned GET of path with
# query (its X-Amz-Signature aside) must carry for Host: host
sub sigv4 {
    my ($path, $query, $host) = @_;
    my %q = map { my ($k, $v) = split /=/, $_, 2; ($k => $v) } split /&/, $query // '';
    my ($date) = ($q{'X-Amz-Date'} // '') =~ /^(\d{8})T/;
    return '' unless $date;
    (my $unsigned = $query) =~ s/&X-Amz-Signature=[0-9a-f]+$//;
    my $canonical = join "\n", 'GET', $path, $unsigned, "host:$host", '', 'host', 'UNSIGNED-PAYLOAD';
    my $sts = join "\n", 'AWS4-HMAC-SHA256', $q{'X-Amz-Date'}, "$date/eu-test-1/s3/aws4_request", sha256_hex($canonical);
    my $k = hmac_sha256($date, "AWS4$secret");
    $k = hmac_sha256('eu-test-1', $k);
    $k = hmac_sha256('s3', $k);
    $k = hmac_sha256('aws4_request', $k);
    return hmac_sha256_hex($sts, $k);
}
