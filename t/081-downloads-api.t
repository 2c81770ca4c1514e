# The downloads endpoints at the edge, without downloading anything: URL
# checks (scheme, shapes, private addresses, the allow-list), the request's
# row and job written together, the per-user cap under parallel POSTs
# (exactly N accepted, the quota unit of each refused one given back),
# listing and one download, another user's ids answering 404 like missing
# ones, DELETE, and signed links to stored files: a 302 to a link nginx
# serves with ranges, forged and expired links 403.  The formats endpoint
# with a real worker and its Redis cache: t/082.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Jobs qw(session bearer);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => '',
    config      => "include $conf;",
);
my $media = $t->dir . '/media';
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
    crest_downloads_link_ttl 60s;
    crest_downloads_concurrent 3;
    crest_downloads_allow 10.9.8.0/24;
");
$t->start;

my $alice = session($t, 'alice@example.com');
my $bob = session($t, 'bob@example.com');
# pro: 200 downloads a month, so that the cap, not the quota, is what refuses
$t->psql("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$alice->{id}', 'pro', 'active')");
$t->psql("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$bob->{id}', 'pro', 'active')");

sub post {
    my ($who, $body) = @_;
    return $t->http(POST => '/api/downloads', json => $body, headers => bearer($who));
}

sub usage {
    my $id = shift;
    my ($n) = $t->psql("SELECT coalesce(sum(count), 0) FROM user_usage WHERE user_id = '$id' AND usage_type = 'download'");
    return $n;
}

# A refund lands when the refused request's pool is cleaned up, after its
# answer was sent: the usage once it reaches $want, or where it stays.
sub usage_settled {
    my ($id, $want) = @_;
    my $end = time + 5;
    my $n = usage($id);
    while ($n != $want && time < $end) {
        sleep 0.05;
        $n = usage($id);
    }
    return $n;
}

# ------------------------------------------------------------ URL safety
my %refused = (
    'http://127.0.0.1/x.mp4'                 => qr/loopback/,
    'http://169.254.169.254/latest/meta-data' => qr/link-local/,
    'file:///etc/passwd'                     => qr/only http and https/i,
    'http://[::1]:8080/a'                    => qr/loopback/,
    'http://10.0.0.1/a'                      => qr/private/,
    'http://127.1/a'                         => qr/URL refused/,
    'http://user@example.com/a'              => qr/user/,
    'gopher://example.com/'                  => qr/only http and https/i,
);
for my $url (sort keys %refused) {
    my $r = post($alice, { url => $url });
    is($r->{status}, 400, "POST $url: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', "POST $url: VALIDATION_ERROR");
    is($r->{json}{error}{details}{field}, 'url', "POST $url: names url");
    like($r->{json}{error}{message}, $refused{$url}, "POST $url: says why");
    $r = $t->http(GET => '/api/downloads/formats?url=' . uri_escape($url), headers => bearer($alice));
    is($r->{status}, 400, "formats $url: 400");
    is($r->{json}{error}{details}{field}, 'url', "formats $url: names url");
}
is($t->psql("SELECT count(*) FROM media_downloads"), 0, 'no row for a refused URL');
is($t->psql("SELECT count(*) FROM jobs"), 0, 'no job for a refused URL');
is(usage_settled($alice->{id}, 0), 0, 'every refused request gave its quota unit back');

for my $bad ([{}, 'url'], [{ url => 5 }, 'url'], [{ url => 'https://example.com/v', format => '-o /tmp/x' }, 'format'],
             [{ url => 'https://example.com/v', format => 'x' x 201 }, 'format'],
             [{ url => 'https://example.com/v', audioOnly => 'yes' }, 'audioOnly'],
             [{ url => 'https://example.com/v', extra => 1 }, 'extra']) {
    my $r = post($alice, $bad->[0]);
    is($r->{status}, 400, "invalid body names $bad->[1]: 400");
    is($r->{json}{error}{details}{field}, $bad->[1], "invalid body: field $bad->[1]");
}
my $r = $t->http(GET => '/api/downloads/formats', headers => bearer($alice));
is($r->{json}{error}{details}{field}, 'url', 'formats without url: names url');

# the allow-list admits a private range (tests, private deployments)
$r = post($alice, { url => 'http://10.9.8.7/a.mp4' });
is($r->{status}, 202, 'an allow-listed private address is accepted') or diag($r->{content});
my $allowed = $r->{json}{data}{download}{id};

$r = $t->http(GET => '/api/downloads', headers => {});
is($r->{status}, 401, 'unauthenticated: 401');

# ------------------------------------------------------------ the request
$r = post($alice, { url => 'https://example.com/video', audioOnly => JSON::PP::true });
is($r->{status}, 202, 'POST: 202');
my $d = $r->{json}{data}{download};
my $j = $r->{json}{data}{job};
like($d->{id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a v4 uuid');
is($d->{status}, 'pending', 'pending');
is($d->{audioOnly}, JSON::PP::true, 'audioOnly');
ok(!defined $d->{format}, 'audio only without a format: the worker picks');
is($j->{queue}, 'download', 'on the download queue');
is($j->{status}, 'queued', 'queued');
my ($row) = $t->psql("SELECT user_id, job_id, original_url, audio_only FROM media_downloads WHERE id = '$d->{id}'");
is($row, "$alice->{id}|$j->{id}|https://example.com/video|t", 'the row, with its job');
my ($jrow) = $t->psql("SELECT user_id, queue, name, data->>'downloadId', data->>'userId', data->>'url' FROM jobs WHERE id = '$j->{id}'");
is($jrow, "$alice->{id}|download|download|$d->{id}|$alice->{id}|https://example.com/video", 'the job row carries downloadId');
my $bull = { @{ [$t->redis_cli('HGETALL', "bull:download:$j->{id}")] } };
is(decode_json($bull->{data} // '{}')->{downloadId}, $d->{id}, 'the BullMQ job carries downloadId');
is(usage($alice->{id}), 2, 'two accepted: two quota units');

# the default format: the best mp4
$r = post($bob, { url => 'https://example.com/other' });
is($r->{json}{data}{download}{format}, 'bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/b', 'default format: best mp4');
my $bobs = $r->{json}{data}{download}{id};

# ------------------------------------------------------------ the cap
# alice has 2 unfinished; 6 parallel POSTs: exactly 1 more is accepted
my @pids;
my $out = $t->dir . '/par';
mkdir $out;
for my $i (1 .. 6) {
    my $pid = fork // die;
    if (!$pid) {
        my $res = post($alice, { url => "https://example.com/p$i" });
        open my $fh, '>', "$out/$i" or POSIX::_exit(1);
        print $fh "$res->{status} " . ($res->{json}{error}{code} // '') . "\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid($_, 0) for @pids;
my @st = map { open my $fh, '<', "$out/$_"; my $l = <$fh> // ''; chomp $l; $l } 1 .. 6;
is(scalar(grep { /^202/ } @st), 1, 'the cap: exactly one of six accepted') or diag("@st");
is(scalar(grep { /^429 RATE_LIMITED/ } @st), 5, 'the others: 429 RATE_LIMITED') or diag("@st");
is($t->psql("SELECT count(*) FROM media_downloads WHERE user_id = '$alice->{id}'"), 3, 'three rows');
is($t->psql("SELECT count(*) FROM jobs WHERE user_id = '$alice->{id}' AND queue = 'download'"), 3,
   'three jobs: none without its row');
is(usage_settled($alice->{id}, 3), 3, 'refused requests gave their quota units back');
$r = post($alice, { url => 'https://example.com/more' });
is($r->{json}{error}{details}{limit}, 3, 'the limit is in the details');
# a finished one frees a slot
$t->psql("UPDATE media_downloads SET status = 'failed' WHERE id = '$allowed'");
$r = post($alice, { url => 'https://example.com/freed' });
is($r->{status}, 202, 'a finished download frees a slot');
my $freed = $r->{json}{data}{download}{id};

# ------------------------------------------------------------ listing
$r = $t->http(GET => '/api/downloads?limit=2', headers => bearer($alice));
is($r->{status}, 200, 'list: 200');
is(scalar @{ $r->{json}{data}{downloads} }, 2, 'a page of 2');
is($r->{json}{data}{pagination}{total}, 4, 'alice has 4');
is($r->{json}{data}{pagination}{totalPages}, 2, '2 pages');
ok($r->{json}{data}{pagination}{hasMore}, 'page 1 of 2 has more');
is($r->{json}{data}{downloads}[0]{id}, $freed, 'newest first');
$r = $t->http(GET => '/api/downloads?status=failed', headers => bearer($alice));
is_deeply([map { $_->{id} } @{ $r->{json}{data}{downloads} }], [$allowed], 'status filter');
$r = $t->http(GET => '/api/downloads?status=weird', headers => bearer($alice));
is($r->{json}{error}{details}{field}, 'status', 'an unknown status: 400 naming status');
$r = $t->http(GET => '/api/downloads?page=9', headers => bearer($alice));
is_deeply($r->{json}{data}{downloads}, [], 'past the last page: empty');
is($r->{json}{data}{pagination}{total}, 4, 'past the last page: the total still');
$r = $t->http(GET => '/api/downloads', headers => bearer($bob));
is_deeply([map { $_->{id} } @{ $r->{json}{data}{downloads} }], [$bobs], 'bob sees only his');

# one
$t->psql("UPDATE media_downloads SET status = 'failed', error = 'URL refused: media.example resolves to a loopback address' WHERE id = '$allowed'");
$r = $t->http(GET => "/api/downloads/$allowed", headers => bearer($alice));
is($r->{status}, 200, 'one: 200');
is($r->{json}{data}{download}{status}, 'failed', 'one: status');
is_deeply($r->{json}{data}{download}{error},
          { code => 'VALIDATION_ERROR', message => 'URL refused: media.example resolves to a loopback address' },
          'a URL the worker refused: VALIDATION_ERROR in the row');
is($r->{json}{data}{download}{progress}, 0, 'progress 0');

# ------------------------------------------------------------ another user's
for my $req (['GET', "/api/downloads/$allowed"], ['DELETE', "/api/downloads/$allowed"],
             ['GET', "/api/downloads/$allowed/file"], ['GET', "/api/downloads/$allowed/thumbnail"]) {
    my $other = $t->http($req->[0] => $req->[1], headers => bearer($bob));
    my $none = $t->http($req->[0] => ($req->[1] =~ s/[0-9a-f-]{36}/00000000-0000-4000-8000-000000000000/r),
                        headers => bearer($bob));
    is($other->{status}, 404, "bob $req->[0] $req->[1]: 404");
    is_deeply($other->{json}{error}, $none->{json}{error}, "bob $req->[0] $req->[1]: exactly like a missing one");
}
ok($t->psql("SELECT count(*) FROM media_downloads WHERE id = '$allowed'") == 1, "bob's DELETE removed nothing");
$r = $t->http(GET => '/api/downloads/not-a-uuid', headers => bearer($alice));
is($r->{status}, 404, 'a malformed id: 404');

# ------------------------------------------------------------ signed links
# a completed download with stored files, as the worker leaves it
my $done = 'dddddddd-0000-4000-8000-000000000001';
my $key = "downloads/$alice->{id}/$done/media.mp4";
my $thumb = "downloads/$alice->{id}/$done/thumb.jpg";
system('mkdir', '-p', "$media/downloads/$alice->{id}/$done") == 0 or die;
system('chmod', '-R', 'a+rX', "$media") == 0 or die;
my $bytes = join '', map { chr(($_ * 7) % 256) } 0 .. 9999;
open my $mf, '>:raw', "$media/$key" or die; print $mf $bytes; close $mf;
open $mf, '>:raw', "$media/$thumb" or die; print $mf "\xff\xd8\xff\xe0jpeg"; close $mf;
chmod 0644, "$media/$key", "$media/$thumb";
$t->psql("INSERT INTO media_downloads (id, user_id, original_url, status, progress, storage_key, thumbnail_key,
          file_size, width, height, vcodec, acodec, duration, completed_at)
          VALUES ('$done', '$alice->{id}', 'https://example.com/done', 'completed', 100, '$key', '$thumb',
          10000, 320, 240, 'h264', 'aac', 3.0, now())");

$r = $t->http(GET => "/api/downloads/$done/file", headers => bearer($alice));
is($r->{status}, 302, '/file: 302');
my $loc = $r->{headers}{location} // '';
like($loc, qr{/api/media/\Q$key\E\?expires=\d+&sig=[0-9a-f]{64}$}, 'to a signed link under /api/media/');
is($r->{json}{data}{url}, ($loc =~ s{^https?://[^/]+}{}r), 'the link is in the body too');
ok($r->{json}{data}{expiresAt} > time + 50 && $r->{json}{data}{expiresAt} <= time + 61, 'valid for the configured 60 s');

my $f = $t->http(GET => $loc);
is($f->{status}, 200, 'the link: 200, without a token');
is($f->{content}, $bytes, 'the file, whole');
$f = $t->http(GET => $loc, headers => { Range => 'bytes=0-99' });
is($f->{status}, 206, 'Range: 206');
is($f->{headers}{'content-range'}, 'bytes 0-99/10000', 'Content-Range');
is($f->{content}, substr($bytes, 0, 100), 'the first 100 bytes');
$f = $t->http(GET => $loc, headers => { Range => 'bytes=9990-' });
is($f->{content}, substr($bytes, 9990), 'the last bytes');

$r = $t->http(GET => "/api/downloads/$done/thumbnail", headers => bearer($alice));
my $tloc = $r->{headers}{location} // '';
like($tloc, qr{/api/media/\Q$thumb\E\?}, '/thumbnail: a link to the JPEG');
is($t->http(GET => $tloc)->{content}, "\xff\xd8\xff\xe0jpeg", 'the thumbnail');
$r = $t->http(GET => "/api/downloads/$done/file?thumbnail=1", headers => bearer($alice));
like($r->{headers}{location} // '', qr{/api/media/\Q$thumb\E\?}, '/file?thumbnail=1: the same');

my ($exp, $sig) = $loc =~ /expires=(\d+)&sig=([0-9a-f]+)/;
my $path = "/api/media/$key";
my %forged = (
    'no signature'          => $path,
    'a forged signature'    => "$path?expires=$exp&sig=" . ('0' x 64),
    'a later expiry'        => "$path?expires=" . ($exp + 3600) . "&sig=$sig",
    'another file'          => "/api/media/$thumb?expires=$exp&sig=$sig",
    'a short signature'     => "$path?expires=$exp&sig=" . substr($sig, 0, 32),
);
for my $k (sort keys %forged) {
    my $x = $t->http(GET => $forged{$k});
    is($x->{status}, 403, "$k: 403");
    is($x->{json}{error}{code}, 'FORBIDDEN', "$k: in the envelope");
}
# `satisfy any` with an allow that matches would skip an access-phase check;
# the link check runs in preaccess, so forged links stay refused
$t->nginx_reload(config => "satisfy any;\nallow 127.0.0.1;\ninclude $conf;");
{
    my $x = $t->http(GET => $forged{'a forged signature'});
    is($x->{status}, 403, 'satisfy any + allow: a forged signature is still 403');
    $x = $t->http(GET => $path);
    is($x->{status}, 403, 'satisfy any + allow: no signature is still 403');
    $x = $t->http(GET => $loc =~ s{^https?://[^/]+}{}r);
    is($x->{status}, 200, 'satisfy any + allow: the signed link is served');
}
$t->nginx_reload(config => "include $conf;");

# an expired link, signed as the module signs (HMAC-SHA256 of path\nexpires)
{
    my $secret = do { open my $fh, '<', $secret_file; local $/; <$fh> };
    $secret =~ s/\n+\z//;
    my $old = time - 10;
    my $good = hmac_hex($secret, "$path\n" . ($exp));
    is($good, $sig, 'the test signs as the module does');
    my $x = $t->http(GET => "$path?expires=$old&sig=" . hmac_hex($secret, "$path\n$old"));
    is($x->{status}, 403, 'an expired link, correctly signed: 403');
}

# not completed: no link
$r = $t->http(GET => "/api/downloads/$freed/file", headers => bearer($alice));
is($r->{status}, 409, 'a download not completed: 409');
is($r->{json}{error}{code}, 'CONFLICT', 'CONFLICT');

# expired: the retention sweep removed its files (sql/0007), the row stays
# completed; no link, and not the 409 of a download still to finish
my $expired = 'dddddddd-0000-4000-8000-000000000002';
$t->psql("INSERT INTO media_downloads (id, user_id, original_url, status, progress, file_size,
          completed_at, expired_at)
          VALUES ('$expired', '$alice->{id}', 'https://example.com/gone', 'completed', 100, 10000,
          now() - interval '30 days', now())");
$r = $t->http(GET => "/api/downloads/$expired", headers => bearer($alice));
like($r->{json}{data}{download}{expiredAt} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     'an expired download says when its files went (expiredAt)');
$r = $t->http(GET => "/api/downloads/$done", headers => bearer($alice));
ok(exists $r->{json}{data}{download}{expiredAt} && !defined $r->{json}{data}{download}{expiredAt},
   'one still stored: expiredAt null');
for my $what ('file', 'thumbnail') {
    $r = $t->http(GET => "/api/downloads/$expired/$what", headers => bearer($alice));
    is($r->{status}, 404, "an expired download's $what: 404");
    is($r->{json}{error}{code}, 'NOT_FOUND', "an expired download's $what: NOT_FOUND");
    like($r->{json}{error}{message}, qr/expired/, "an expired download's $what: says so");
}
$t->psql("DELETE FROM media_downloads WHERE id = '$expired'");

# ------------------------------------------------------------ DELETE
$r = $t->http(DELETE => "/api/downloads/$done", headers => bearer($alice));
is($r->{status}, 200, 'DELETE a completed one: 200');
is($r->{json}{data}{deleted}, JSON::PP::true, 'deleted');
my $djob = $r->{json}{data}{deleteJobId};
ok($djob, 'with a job that removes its files');
is($t->psql("SELECT count(*) FROM media_downloads WHERE id = '$done'"), 0, 'the row is gone');
my $dj = { @{ [$t->redis_cli('HGETALL', "bull:download:$djob")] } };
is($dj->{name}, 'download-delete', 'a download-delete job');
is_deeply(decode_json($dj->{data} // '{}')->{storageKeys}, [$key, $thumb], 'for its storage keys');
is($t->http(GET => "/api/downloads/$done", headers => bearer($alice))->{status}, 404, 'then 404');
is($t->http(DELETE => "/api/downloads/$done", headers => bearer($alice))->{status}, 404, 'DELETE again: 404');

# an unfinished one: the row goes and its job is marked cancelled
$r = $t->http(DELETE => "/api/downloads/$freed", headers => bearer($alice));
is($r->{status}, 200, 'DELETE a pending one: 200');
ok(!defined $r->{json}{data}{deleteJobId}, 'no files: no delete job');
my ($fj) = $t->psql("SELECT j.status FROM jobs j WHERE j.data->>'downloadId' = '$freed'");
is($fj, 'cancelled', 'its job row: cancelled');
is($t->psql("SELECT count(*) FROM media_downloads WHERE id = '$freed'"), 0, 'its row: gone');

$t->stop;
done_testing();


sub uri_escape {
    my $s = shift;
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub hmac_hex {
    my ($key, $msg) = @_;
    # HMAC-SHA256 with core Perl's Digest::SHA
    require Digest::SHA;
    return Digest::SHA::hmac_sha256_hex($msg, $key);
}
