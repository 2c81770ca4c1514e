# Endpoints that enqueue on a fixed queue (crest_trends, crest_downloads,
# the trending cache's refreshes) make nginx warn at start and at reload when
# that queue is not in crest_jobs_queues, naming the directive and where it
# is, instead of leaving it to a 500 on the first request.  It stays a
# warning: such a configuration still serves every other endpoint.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    http_config => "crest_jobs_queues ping;\n"
                 . "crest_trending_cache zone=trending:1m;",
    config      => "include $conf;",
);
$t->start;

sub startup_text {
    my ($out_offset, $log_offset) = @_;
    my $out = '';
    if (open my $fh, '<', $t->dir . '/logs/nginx.out') {
        local $/;
        $out = <$fh> // '';
        $out = substr($out, $out_offset // 0);
    }
    return $out . $t->error_log($log_offset);
}

my $text = startup_text();
like($text, qr/\[warn\].*crest_trends in \S*crest-api\.conf:\d+ enqueues on "trend-scrape", which is not in crest_jobs_queues/,
     'crest_trends: warned, with the file and line');
like($text, qr/\[warn\].*crest_downloads in \S*crest-api\.conf:\d+ enqueues on "download"/,
     'crest_downloads: warned for "download"');
like($text, qr/\[warn\].*crest_downloads in \S*crest-api\.conf:\d+ enqueues on "formats"/,
     'crest_downloads: warned for "formats"');
like($text, qr/\[warn\].*crest_trending_cache in \S*nginx\.conf:\d+ enqueues on "trending-refresh"/,
     'the trending cache: warned for its refresh queue');
unlike($text, qr/enqueues on "ping"/, 'no warning for a listed queue');

is($t->http(GET => '/api/health')->{status}, 200, 'still serves: a warning, not a refusal');

# a reload warns too: one queue still missing is named, the others not
# (and this shows the reload's warnings are where the check below looks)
my $out_offset = -s $t->dir . '/logs/nginx.out' // 0;
my $log_offset = $t->error_log_offset;
$t->nginx_reload(http_config => "crest_jobs_queues ping trending-refresh trend-scrape download;\n"
                              . "crest_trending_cache zone=trending:1m;");
$text = startup_text($out_offset, $log_offset);
like($text, qr/\[warn\].*crest_downloads in \S*crest-api\.conf:\d+ enqueues on "formats", which is not in crest_jobs_queues/,
     'a reload with "formats" still missing: warned');
unlike($text, qr/enqueues on "(?:download|trend-scrape|trending-refresh)"/, 'and only for it');

# every queue listed: a reload warns of none of them
$out_offset = -s $t->dir . '/logs/nginx.out' // 0;
$log_offset = $t->error_log_offset;
$t->nginx_reload(http_config => "crest_jobs_queues ping trending-refresh trend-scrape download formats;\n"
                              . "crest_trending_cache zone=trending:1m;");
$text = startup_text($out_offset, $log_offset);
unlike($text, qr/which is not in crest_jobs_queues/, 'all queues listed: no warning after the reload');
is($t->http(GET => '/api/health')->{status}, 200, 'serves after the reload');

$t->stop;
done_testing();
