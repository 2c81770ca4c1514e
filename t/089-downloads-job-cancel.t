# A download whose job is cancelled through the jobs API (not DELETE
# /api/downloads/{id}) is cancelled too (sql/0009): it no longer shows
# pending, and it no longer counts against crest_downloads_concurrent.  No
# worker runs here: the job stays queued until it is cancelled.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::Jobs qw(session bearer);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    http_config => "crest_jobs_queues ping download formats;\n"
                 . "crest_downloads_concurrent 1;\n"
                 . "crest_downloads_allow 10.9.8.0/24;",
    config      => "include $conf;",
);
$t->start;

my $alice = session($t, 'alice@example.com');
$t->psql("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$alice->{id}', 'pro', 'active')");

sub post { $t->http(POST => '/api/downloads', json => { url => $_[0] }, headers => bearer($alice)) }

my $r = post('http://10.9.8.7/one.mp4');
is($r->{status}, 202, 'a first download: 202');
my $id = $r->{json}{data}{download}{id};
my $job = $r->{json}{data}{job}{id};
ok($id && $job, 'with its id and its job id');

$r = post('http://10.9.8.7/two.mp4');
is($r->{status}, 429, 'a second one past the cap of 1: 429');

$r = $t->http(POST => "/api/jobs/$job/cancel", headers => bearer($alice));
is($r->{status}, 200, 'its job cancelled through the jobs API');

$r = $t->http(GET => "/api/downloads/$id", headers => bearer($alice));
is($r->{json}{data}{download}{status}, 'cancelled', 'the download follows: cancelled');

$r = post('http://10.9.8.7/three.mp4');
is($r->{status}, 202, 'its place under the cap is free again');

# a completed download is not touched by a later change of its job's row
my $done = $r->{json}{data}{download}{id};
my $done_job = $r->{json}{data}{job}{id};
$t->psql("UPDATE media_downloads SET status = 'completed', progress = 100 WHERE id = '$done'");
$t->psql("UPDATE jobs SET status = 'cancelled' WHERE id = '$done_job'");
$r = $t->http(GET => "/api/downloads/$done", headers => bearer($alice));
is($r->{json}{data}{download}{status}, 'completed', 'a completed download stays completed');

$t->stop;
done_testing();
