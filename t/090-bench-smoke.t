# make bench's harness works: one short round of every scenario, every
# request answered, results written as JSON.  No timing is asserted here.
use strict;
use warnings;
use FindBin;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;

my $dir = tempdir(CLEANUP => 1);
my $out = "$dir/results.json";
my $log = `BENCH_SMOKE=1 BENCH_OUT=$out $FindBin::Bin/../bench/run.sh 2>&1`;
is($?, 0, 'bench ran') or diag($log);

my $res = eval { decode_json(do { local (@ARGV, $/) = $out; <> }) } || {};
my @rows = @{ $res->{scenarios} || [] };
cmp_ok(scalar @rows, '>=', 3, 'every scenario reported');
for my $r (@rows) {
    cmp_ok($r->{rps}, '>', 0, "$r->{scenario}: requests were served");
    is($r->{errors}, 0, "$r->{scenario}: no request failed");
    ok(!$r->{baseline} || defined $r->{ratio}, "$r->{scenario}: has its ratio");
}

done_testing;
