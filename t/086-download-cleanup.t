# Download storage upkeep on local storage: `crest-queue
# schedule-downloads-cleanup download` upserts a BullMQ job scheduler whose
# downloads-cleanup jobs expire completed downloads older than
# CREST_DOWNLOAD_RETENTION (files removed, rows marked: storage_key and
# thumbnail_key NULL, expired_at set, status still completed) and leave
# everything else alone; download-delete removes the files of a row the
# edge deleted but never a file a row still names.  Ages come from the
# rows' completed_at, set in the past by the test: no clock is waited on.
use strict;
use warnings;
use FindBin;
use Test::More;
use JSON::PP;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Bull qw(start_worker wait_until problems crest_queue node_json);

my $t = Crest::Test->new(no_nginx => 1);
$t->start;

my $media = $t->dir . '/media';
my $user = 'aaaaaaaa-0000-4000-8000-000000000001';
$t->psql("INSERT INTO users (id, email, password_hash) VALUES ('$user', 'cl\@example.com', 'x')");

my %env = (
    CREST_QUEUES             => 'download',
    CREST_STORAGE_DIR        => $media,
    CREST_DOWNLOAD_RETENTION => '36h',
);
$env{CREST_TEST_WORKER_BIN} = $ENV{CREST_TEST_WORKER_BIN} if $ENV{CREST_TEST_WORKER_BIN};

sub put_file {
    my ($key, $bytes) = @_;
    my $path = "$media/$key";
    (my $dir = $path) =~ s{/[^/]+\z}{};
    system('mkdir', '-p', $dir) == 0 or die;
    open my $fh, '>:raw', $path or die "$path: $!";
    print $fh 'x' x $bytes;
    close $fh;
}

# a row in a given state, completed $age ago, with files of these sizes
my $n = 0;
sub download {
    my (%o) = @_;
    my $id = sprintf('dddddddd-0000-4000-8000-%012d', ++$n);
    my ($key, $thumb) = ("downloads/$user/$id/media.mp4", "downloads/$user/$id/thumb.jpg");
    my $files = $o{files} // 1;
    if ($files) {
        put_file($key, 1000 + $n);
        put_file($thumb, 100 + $n);
    }
    my $k = ($o{status} // 'completed') eq 'completed' ? "'$key'" : 'NULL';
    my $tk = ($o{status} // 'completed') eq 'completed' ? "'$thumb'" : 'NULL';
    $t->psql("INSERT INTO media_downloads (id, user_id, original_url, status, storage_key,
        thumbnail_key, completed_at) VALUES ('$id', '$user', 'x', '" . ($o{status} // 'completed')
        . "', $k, $tk, now() - interval '$o{age}')");
    return { id => $id, key => $key, thumb => $thumb, bytes => 1100 + 2 * $n };
}

sub row {
    my ($line) = $t->psql("SELECT status, coalesce(storage_key, ''), coalesce(thumbnail_key, ''),
        expired_at IS NOT NULL FROM media_downloads WHERE id = '$_[0]'");
    my %r;
    @r{qw(status key thumb expired)} = split /\|/, $line // '', -1;
    return \%r;
}

sub job {
    my ($rc, $out) = crest_queue($t, 'get', 'download', $_[0]);
    return $rc == 0 && $out =~ /^\{/ ? decode_json($out) : {};
}

sub state { (crest_queue($t, 'state', 'download', $_[0]))[1] // '' }

my $old     = download(age => '2 days');
my $recent  = download(age => '1 hour');
my $edge    = download(age => '35 hours');                # inside the retention
my $gone    = download(age => '3 days', files => 0);      # files already missing
my $failed  = download(age => '3 days', status => 'failed');

# ---------------------------------------------------------------- scheduler
{
    local $ENV{CREST_DOWNLOAD_CLEANUP_EVERY_MS} = 1000;
    my ($rc, $out) = crest_queue($t, 'schedule-downloads-cleanup', 'download');
    is($rc, 0, 'schedule-downloads-cleanup ran') or diag($out);
    is($out, 'downloads-cleanup', 'it names the scheduler');
    ($rc, $out) = crest_queue($t, 'schedule-downloads-cleanup', 'download');
    is($rc, 0, 'upserting again works');
    is_deeply([split /\n/, $t->redis_cli('ZRANGE', 'bull:download:repeat', 0, -1)], ['downloads-cleanup'],
              'one scheduler on the download queue');
    local $ENV{CREST_DOWNLOAD_CLEANUP_EVERY_MS} = 10;
    ($rc, $out) = crest_queue($t, 'schedule-downloads-cleanup', 'download');
    isnt($rc, 0, 'a period under 1 s is refused');
}
my $s = node_json('scheduler.js', $t->redis_port, 'download', 'report', 'downloads-cleanup');
is($s->{scheduler}{every}, 1000, 'BullMQ sees it: every 1000 ms');
is($s->{scheduler}{name}, 'downloads-cleanup', 'BullMQ sees it: the job name');

start_worker($t, 'w1', %env);
ok(wait_until(sub { row($old->{id})->{expired} eq 't' }, 30), 'the old download expired')
    or diag(explain(row($old->{id})));
ok(wait_until(sub { row($gone->{id})->{expired} eq 't' }, 30), 'the one whose files were gone too');

my $r = row($old->{id});
is($r->{status}, 'completed', 'status stays completed');
is($r->{key}, '', 'storage_key NULL');
is($r->{thumb}, '', 'thumbnail_key NULL');
ok(!-e "$media/$old->{key}", 'media file removed');
ok(!-e "$media/$old->{thumb}", 'thumbnail removed');
for ([$recent, 'recent'], [$edge, 'just inside the retention']) {
    my ($d, $what) = @$_;
    is(row($d->{id})->{expired}, 'f', "$what: not expired");
    is(row($d->{id})->{key}, $d->{key}, "$what: storage_key kept");
    ok(-e "$media/$d->{key}" && -e "$media/$d->{thumb}", "$what: files kept");
}
is(row($failed->{id})->{status}, 'failed', 'a failed download is left alone');
ok(-e "$media/$failed->{key}", 'and so are files no completed row names');

# it keeps running: a download that becomes old is expired by a later run
my $later = download(age => '40 hours');
ok(wait_until(sub { row($later->{id})->{expired} eq 't' }, 30), 'a later run expired the next one');
ok(!-e "$media/$later->{key}", 'its file removed');
my @runs = grep { /^repeat:downloads-cleanup:/ } split /\n/,
           $t->redis_cli('ZRANGE', 'bull:download:completed', 0, -1);
cmp_ok(scalar @runs, '>=', 2, scalar(@runs) . ' scheduled runs completed');
is(job($runs[0])->{returnvalue}{retentionSeconds}, 129600, 'retention 36h = 129600 s');

# ---------------------------------------------------------------- retentionSeconds
crest_queue($t, 'add', 'download', 'downloads-cleanup', '{"retentionSeconds":0}', '--opts', '{"jobId":"now"}');
ok(wait_until(sub { state('now') eq 'completed' }, 30), 'cleanup with retentionSeconds 0: done');
is(row($recent->{id})->{expired}, 't', 'retentionSeconds 0 expires every completed download');
ok(!-e "$media/$recent->{key}", 'its file removed');
crest_queue($t, 'add', 'download', 'downloads-cleanup', '{"retentionSeconds":"soon"}',
            '--opts', '{"jobId":"bad-ret","attempts":3}');
ok(wait_until(sub { state('bad-ret') eq 'failed' }, 30), 'a bad retentionSeconds fails');
is(job('bad-ret')->{attemptsMade}, 1, 'at once');
# past PostgreSQL's interval range: refused as data, not retried as an outage
crest_queue($t, 'add', 'download', 'downloads-cleanup', '{"retentionSeconds":1000000000000000}',
            '--opts', '{"jobId":"huge-ret","attempts":3,"backoff":{"type":"fixed","delay":100}}');
ok(wait_until(sub { state('huge-ret') eq 'failed' }, 30), 'a retentionSeconds too large fails');
is(job('huge-ret')->{attemptsMade}, 1, 'at once');
like(job('huge-ret')->{failedReason}, qr/^retentionSeconds must be/, 'and says why');

# ---------------------------------------------------------------- download-delete
my $del = download(age => '1 hour');
my $live = download(age => '1 hour');
$t->psql("DELETE FROM media_downloads WHERE id = '$del->{id}'");
crest_queue($t, 'add', 'download', 'download-delete',
            encode_json({ storageKeys => [$del->{key}, $del->{thumb}, $live->{key}] }),
            '--opts', '{"jobId":"del"}');
ok(wait_until(sub { state('del') eq 'completed' }, 30), 'download-delete completed')
    or diag(explain(job('del')));
is_deeply(job('del')->{returnvalue}, { removed => 2, bytes => $del->{bytes}, kept => 1 },
          'two removed (with their sizes), one kept');
ok(!-e "$media/$del->{key}" && !-e "$media/$del->{thumb}", "the deleted row's files are gone");
ok(-e "$media/$live->{key}", 'a file a row names is kept');
for (['{}', 'no storageKeys'], ['{"storageKeys":[]}', 'empty'], ['{"storageKeys":["/etc/passwd"]}', 'absolute'],
     ['{"storageKeys":["downloads/../x"]}', 'dot-dot'], ['{"storageKeys":["other/x.mp4"]}', 'outside downloads/']) {
    my ($data, $what) = @$_;
    (my $jid = "bad-$what") =~ s/\W+/-/g;
    crest_queue($t, 'add', 'download', 'download-delete', $data, '--opts', qq({"jobId":"$jid","attempts":3}));
    ok(wait_until(sub { state($jid) eq 'failed' }, 30), "download-delete, $what: failed");
    is(job($jid)->{attemptsMade}, 1, "download-delete, $what: at once");
}

is_deeply([grep { $_ ne 'download-delete: key still in use, kept' } problems($t, 'w1')], [],
          'no warnings or errors but the kept key');
is($t->spawn_stop('w1'), 0, 'stops cleanly');

# ---------------------------------------------------------------- bad setting
start_worker($t, 'bad', %env, CREST_DOWNLOAD_RETENTION => 'a week');
crest_queue($t, 'add', 'download', 'downloads-cleanup', '{}', '--opts', '{"jobId":"bad-env","attempts":3}');
ok(wait_until(sub { state('bad-env') eq 'failed' }, 30), 'an invalid CREST_DOWNLOAD_RETENTION fails the job');
like(job('bad-env')->{failedReason}, qr/^CREST_DOWNLOAD_RETENTION/, 'and says which setting');
is($t->spawn_stop('bad'), 0, 'stops cleanly');

$t->stop;
done_testing();
