#!/usr/bin/perl
# Workers: Crest's C worker against BullMQ 6.7.0's Node worker on the same
# Redis, the same no-op jobs (the ping processor, which returns its data),
# at concurrency 1 and 50, in interleaved rounds; jobs per second as a ratio
# measured in one run, and Redis CPU time per job for both.
#
# The rate is taken from the first completion to the last, so process
# start-up is not counted for either side.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Crest::Test ();
use JSON::PP;
use Time::HiRes qw(time sleep);

my $root    = "$FindBin::Bin/..";
my $rounds  = $ENV{BENCH_SMOKE} ? 1 : ($ENV{BENCH_ROUNDS} || 3);
my $jobs    = $ENV{BENCH_SMOKE} ? 300 : ($ENV{BENCH_JOBS} || 10000);
my $out     = $ENV{BENCH_WORKERS_OUT} || "$root/build/bench/workers.json";
my @concurrency = (1, 50);

die "bench: build/bin/crest-worker is missing (make workers)\n"
    unless -x "$root/build/bin/crest-worker";

my $t = Crest::Test->new(no_nginx => 1, check_on_stop => 0);
$t->start;
my $port = $t->redis_port;

sub redis_cpu {
    my $info = $t->redis_cli('INFO', 'cpu');
    my ($sys) = $info =~ /used_cpu_sys:([\d.]+)/;
    my ($user) = $info =~ /used_cpu_user:([\d.]+)/;
    return $sys + $user;
}

sub completed {
    my ($queue) = @_;
    return 0 + $t->redis_cli('ZCARD', "bull:$queue:completed");
}

# One measurement: fill the queue, start the worker, time the completions.
sub run {
    my ($impl, $conc, $queue) = @_;

    my $ids = `node $root/t/node/producer.js $port $queue bulk $jobs`;
    die "bench: could not add jobs to $queue\n" if $? != 0;

    my $cpu0 = redis_cpu();
    if ($impl eq 'node') {
        $t->spawn("w-$queue", [ 'node', "$root/t/node/ping-worker.js", $port, $queue, $conc ]);
    } else {
        $t->spawn("w-$queue", [ "$root/build/bin/crest-worker" ], env => {
            REDIS_URL         => $t->redis_url,
            DATABASE_URL      => $t->database_url,
            CREST_QUEUES      => "$queue=ping",
            CREST_CONCURRENCY => $conc,
            CREST_LOG_LEVEL   => 'warn',
        });
    }

    my ($t0, $t1);
    my $deadline = time + 120;
    while (time < $deadline) {
        my $n = completed($queue);
        $t0 //= time if $n > 0;
        if ($n >= $jobs) { $t1 = time; last }
        sleep 0.005;
    }
    my $cpu1 = redis_cpu();
    $t->spawn_stop("w-$queue");

    die "bench: $impl worker did not finish $queue\n" unless $t1;
    return {
        jobs_per_s   => ($jobs - 1) / ($t1 - $t0),
        redis_us_job => ($cpu1 - $cpu0) * 1e6 / $jobs,
    };
}

my (%runs, $memory);
for my $round (1 .. $rounds) {
    for my $conc (@concurrency) {
        # alternate who goes first, so warm-up and drift hit both alike
        my @order = $round % 2 ? qw(c node) : qw(node c);
        for my $impl (@order) {
            my $r = run($impl, $conc, "bench-$impl-c$conc-r$round");
            push @{ $runs{"$impl/$conc"} }, $r;
            printf STDERR "round %d  %-4s concurrency %-2d %9.0f jobs/s  redis %.1f us/job\n",
                          $round, $impl, $conc, $r->{jobs_per_s}, $r->{redis_us_job};
        }
    }
}

# memory: crest-worker's RSS early in a long run and at its end
my $mem_jobs = $ENV{BENCH_SMOKE} ? 2000 : ($ENV{BENCH_MEM_JOBS} || 100000);
{
    my $queue = 'bench-memory';
    system("node $root/t/node/producer.js $port $queue bulk $mem_jobs >/dev/null") == 0
        or die "bench: could not add jobs to $queue\n";
    $t->spawn('w-mem', [ "$root/build/bin/crest-worker" ], env => {
        REDIS_URL => $t->redis_url, DATABASE_URL => $t->database_url,
        CREST_QUEUES => "$queue=ping", CREST_CONCURRENCY => 50, CREST_LOG_LEVEL => 'warn',
    });
    my $pid = $t->spawned_pid('w-mem');
    my ($early, $late);
    my $deadline = time + 300;
    while (time < $deadline) {
        my $n = completed($queue);
        $early //= rss_kb($pid) if $n >= $mem_jobs / 100;
        if ($n >= $mem_jobs) { $late = rss_kb($pid); last }
        sleep 0.01;
    }
    $t->spawn_stop('w-mem');
    die "bench: the memory run did not finish\n" unless defined $late;
    $memory = { jobs => $mem_jobs, rss_early_kb => $early, rss_end_kb => $late,
                growth_kb => $late - $early };
    printf "crest-worker over %d jobs: RSS %d -> %d kB (%+d)\n",
           $mem_jobs, $early, $late, $late - $early;
}

$t->stop;

sub rss_kb {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (my $line = <$fh>) { return $1 if $line =~ /^VmRSS:\s+(\d+) kB/ }
    return 0;
}

sub median {
    my @v = sort { $a <=> $b } @_;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

my @rows;
for my $conc (@concurrency) {
    for my $impl (qw(node c)) {
        my @r = @{ $runs{"$impl/$conc"} };
        my @ratio;
        if ($impl eq 'c') {
            for my $i (0 .. $#r) {
                push @ratio, $r[$i]{jobs_per_s} / $runs{"node/$conc"}[$i]{jobs_per_s};
            }
        }
        push @rows, {
            worker       => $impl eq 'c' ? 'crest-worker (C)' : 'BullMQ Worker (Node)',
            concurrency  => $conc,
            jobs_per_s   => median(map { $_->{jobs_per_s} } @r),
            min          => (sort { $a <=> $b } map { $_->{jobs_per_s} } @r)[0],
            max          => (sort { $b <=> $a } map { $_->{jobs_per_s} } @r)[0],
            redis_us_job => median(map { $_->{redis_us_job} } @r),
            ratio        => @ratio ? median(@ratio) : undef,
        };
    }
}

printf "%-22s %5s %10s %10s %10s %14s %7s\n",
       'worker', 'conc', 'jobs/s', 'min', 'max', 'redis us/job', 'ratio';
for my $r (@rows) {
    printf "%-22s %5d %10.0f %10.0f %10.0f %14.1f %7s\n",
           $r->{worker}, $r->{concurrency}, $r->{jobs_per_s}, $r->{min}, $r->{max},
           $r->{redis_us_job}, defined $r->{ratio} ? sprintf('%.2f', $r->{ratio}) : '-';
}

(my $dir = $out) =~ s{/[^/]+$}{};
system('mkdir', '-p', $dir);
open(my $fh, '>', $out) or die "$out: $!";
print $fh JSON::PP->new->pretty->canonical->encode({
    rounds => $rounds, jobs => $jobs, results => \@rows, memory => $memory,
});
close $fh;
print "results: $out\n";
