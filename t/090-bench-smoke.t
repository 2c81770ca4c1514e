# make bench's harness works: one short round of every scenario, every
# request answered, every job processed, results written as JSON.  No
# timing is asserted here.
use strict;
use warnings;
use FindBin;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;

my $dir = tempdir(CLEANUP => 1);
my $out = "$dir/results.json";
my $wout = "$dir/workers.json";
my $log = `BENCH_SMOKE=1 BENCH_OUT=$out BENCH_WORKERS_OUT=$wout $FindBin::Bin/../bench/run.sh 2>&1`;
is($?, 0, 'bench ran') or diag($log);

my $res = eval { decode_json(do { local (@ARGV, $/) = $out; <> }) } || {};
my @rows = @{ $res->{scenarios} || [] };
cmp_ok(scalar @rows, '>=', 3, 'every scenario reported');
for my $r (@rows) {
    cmp_ok($r->{rps}, '>', 0, "$r->{scenario}: requests were served");
    is($r->{errors}, 0, "$r->{scenario}: no request failed");
    ok(!$r->{baseline} || defined $r->{ratio}, "$r->{scenario}: has its ratio");
}

my @mem = @{ $res->{memory}{nginx_workers} || [] };
cmp_ok(scalar @mem, '>=', 1, 'nginx worker memory reported');
ok(!grep({ !$_->{rss_before_kb} || !$_->{rss_after_kb} } @mem), 'before and after, for each worker');
ok((grep { $_->{scenario} =~ /^peer:/ && $_->{rps} > 0 } @rows), 'the Express peer was measured');

my $w = eval { decode_json(do { local (@ARGV, $/) = $wout; <> }) } || {};
my @wrows = @{ $w->{results} || [] };
is(scalar @wrows, 4, 'both workers at both concurrencies reported');
for my $r (@wrows) {
    cmp_ok($r->{jobs_per_s}, '>', 0, "$r->{worker} at $r->{concurrency}: jobs were processed");
    cmp_ok($r->{redis_us_job}, '>', 0, "$r->{worker} at $r->{concurrency}: Redis CPU per job measured");
}
ok(defined $wrows[1]{ratio} && defined $wrows[3]{ratio}, 'the C worker has its ratios');
ok($w->{memory}{rss_early_kb} && $w->{memory}{rss_end_kb}, 'crest-worker memory reported');

done_testing;
