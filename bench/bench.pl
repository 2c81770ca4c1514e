#!/usr/bin/perl
# Crest's benchmarks: every scenario against its baseline, measured in the
# same interleaved rounds on the same machine, reported as ratios (absolute
# figures on a shared machine drift; ratios hold).
#
#   bench/run.sh                      all scenarios, 3 rounds of 5 s each
#   BENCH_ROUNDS=5 BENCH_SECONDS=10 bench/run.sh
#   BENCH_SMOKE=1 bench/run.sh        one short round: checks the harness only
#
# Edge scenarios use wrk (64 connections, loopback) against Crest's nginx with
# two workers, started with its own PostgreSQL and Redis by the test harness.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Crest::Test ();
use Crest::JWT qw(hs256);
use File::Temp ();
use IO::Socket::IP;
use JSON::PP;

my $rounds  = $ENV{BENCH_SMOKE} ? 1 : ($ENV{BENCH_ROUNDS} || 3);
my $seconds = $ENV{BENCH_SMOKE} ? 1 : ($ENV{BENCH_SECONDS} || 5);
my $conns   = $ENV{BENCH_CONNECTIONS} || 64;
my $out     = $ENV{BENCH_OUT} || "$FindBin::Bin/../build/bench/results.json";

my $conf = "$FindBin::Bin/../conf/crest-api.conf";

# The ceiling answers with a body as large as a health answer, so the
# comparison is about work done, not bytes moved.
my $body = '{"success":true,"data":{"status":"ok","checks":{"postgres":'
         . '{"status":"up","latencyMs":0.300},"redis":{"status":"up",'
         . '"latencyMs":0.150}}},"meta":{"timestamp":"2026-01-01T00:00:00.000Z",'
         . '"requestId":"00000000000000000000000000000000"}}';

my $ceiling = 'ceiling: nginx return 200';

my @scenarios = (
    { name => $ceiling,                      path => '/bench/ceiling' },
    { name => 'GET /api/health/live',        path => '/api/health/live', baseline => $ceiling },
    { name => 'GET /api/health (pg+redis)',  path => '/api/health',      baseline => $ceiling },
    # the cost of authentication alone: a JWT-protected static answer
    { name => 'JWT auth + static answer',    path => '/bench/jwt',       baseline => $ceiling,
      token => 'good' },
    { name => 'JWT auth refused (401)',      path => '/bench/jwt',       baseline => $ceiling,
      token => 'bad', status => 401 },
    # the cost of a rate limit: the same location, limited, per policy
    (map { { name => "JWT + limit policy=$_", path => "/bench/limit-$_",
             baseline => 'JWT auth + static answer', token => 'good' } } qw(local sync redis)),
    # the write path: a job row in PostgreSQL and its BullMQ job in Redis
    { name => 'POST /api/jobs/ping (row + job)', path => '/api/jobs/ping',
      baseline => 'JWT auth + static answer', token => 'user', status => 202,
      method => 'POST', body => '{"data":{"n":1}}' },
    # a cached page of GET /api/trending behind JWT and the sync limit,
    # against plain nginx returning the same body
    { name => 'trending: nginx return 200, same body', path => '/bench/trending-static' },
    { name => 'GET /api/trending (JWT+sync, cached)',
      path => '/bench/trending?platform=youtube&region=US&limit=5',
      baseline => 'trending: nginx return 200, same body', token => 'good' },
    # the seeds' own stack doing the same: JWT, a Redis rate limit, and the
    # body from a Redis cache; its ratio is peer / Crest
    { name => 'peer: Express 5 (2 workers)', path => '/bench/cached', peer => 1,
      baseline => 'JWT + limit policy=redis', token => 'good' },
);

my $edge_config = qq{
        include $conf;
        location = /bench/ceiling {
            default_type application/json;
            return 200 '$body';
        }
        location = /bench/jwt {
            crest_auth on;
            crest_health live;
        }
        location = /bench/limit-local { crest_auth on; crest_limit zone=bl; crest_health live; }
        location = /bench/limit-sync  { crest_auth on; crest_limit zone=bs; crest_health live; }
        location = /bench/limit-redis { crest_auth on; crest_limit zone=br; crest_health live; }
        location = /bench/trending {
            crest_auth on; crest_limit zone=bs; crest_trending list;
        }
};

my $t = Crest::Test->new(
    workers       => 2,
    check_on_stop => 0,
    log_level     => 'warn',
    main_config   => 'thread_pool crest_hash threads=2;',
    # limits high enough never to refuse: what is measured is their cost
    http_config   => 'access_log off;
                      crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;
                      crest_limit_zone zone=bl key=$crest_user_id rate=1000000r/s;
                      crest_limit_zone zone=bs key=$crest_user_id rate=1000000r/s policy=sync;
                      crest_limit_zone zone=br key=$crest_user_id rate=1000000r/s policy=redis;
                      crest_jobs_queues ping trending-refresh;
                      crest_trending_cache zone=trending:10m valid=60s refresh=60s;',
    config        => $edge_config,
);
$t->start;

(my $secret = do { local (@ARGV, $/) = $t->jwt_secret_file; <> }) =~ s/[\r\n]+\z//;
my %tokens = (
    good => hs256($secret, { sub => '5b1f3c9e-8a47-4f7e-9d2c-0e6a1b2c3d4e', role => 'user',
                             plan => 'free', iat => time, exp => time + 86400 }),
    bad  => hs256('not the secret, but long enough for HS256 keys', { sub => 'x', exp => time + 86400 }),
);

# a real account for the write path (job rows belong to a user)
{
    my $r = $t->http(POST => '/api/auth/register',
                     json => { email => 'bench@example.com', password => 'bench-password' });
    die "bench: cannot register: $r->{status}\n" unless $r->{status} == 201;
    $tokens{user} = $r->{json}{data}{accessToken};
}

# a trending chart as the worker caches it (fresh for a day: no refresh),
# one answer of the endpoint, and plain nginx returning those same bytes
{
    my $now = do { my @g = gmtime; sprintf '%04d-%02d-%02dT%02d:%02d:%02dZ', $g[5] + 1900, $g[4] + 1, @g[3, 2, 1, 0] };
    my @items = map { {
        platform => 'youtube', platformId => "video$_", region => 'US', category => '', rank => $_,
        title => "Trending video number $_", description => "A description of video $_ for the bench",
        thumbnailUrl => "https://i.ytimg.com/vi/video$_/hqdefault.jpg", viewCount => 1000000 - $_,
        likeCount => 5000 + $_, commentCount => 300 + $_, creatorName => "Channel $_",
        creatorUrl => "https://www.youtube.com/channel/UC$_", durationSeconds => 200 + $_,
        url => "https://www.youtube.com/watch?v=video$_", publishedAt => $now, hashtags => ['music', 'live'],
    } } 1 .. 50;
    $t->redis_cli('SET', 'crest:trending:youtube:US:all', encode_json({
        platform => 'youtube', region => 'US', category => '', fetchedAt => $now, ttl => 86400,
        count => scalar @items, items => \@items }));
    my $r = $t->http(GET => '/bench/trending?platform=youtube&region=US&limit=5',
                     headers => { Authorization => "Bearer $tokens{good}" });
    die "bench: trending answered $r->{status}\n" unless $r->{status} == 200 && $r->{json}{data}{cached};
    # nginx takes a parameter of at most 4k: hence five videos a page
    die "bench: the trending body cannot go in a return directive\n"
        if $r->{content} =~ /['\\\$]/ || length $r->{content} > 4000;
    $t->nginx_reload(config => $edge_config . qq{
        location = /bench/trending-static {
            default_type application/json;
            return 200 '$r->{content}';
        }
    });
}

# the peer, on its own port, with the same secret and the same body cached
$t->redis_cli('SET', 'peer:cache:body', $body);
my $peer_port = free_port();
$t->spawn('peer', [ 'node', "$FindBin::Bin/peer/server.js", $peer_port, $t->redis_port,
                    $t->jwt_secret_file, 2 ]);
wait_port($peer_port);

my %runs;
for my $round (1 .. $rounds) {
    # a different order each round, so warm-up and drift hit all alike
    my @order = map { $scenarios[($_ + $round) % @scenarios] } 0 .. $#scenarios;
    for my $s (@order) {
        my $url = $s->{peer} ? "http://127.0.0.1:$peer_port$s->{path}" : $t->url($s->{path});
        my $r = wrk($url, $s->{token} ? $tokens{$s->{token}} : undef, $s->{status},
                    $s->{method}, $s->{body});
        push @{ $runs{$s->{name}} }, $r;
        printf STDERR "round %d  %-32s %10.0f req/s\n", $round, $s->{name}, $r->{rps};
    }
}

my @rows;
for my $s (@scenarios) {
    my @r = @{ $runs{$s->{name}} };
    my @ratios;
    if ($s->{baseline}) {
        # ratio per round against the baseline of the same round
        for my $i (0 .. $#r) {
            my $b = $runs{$s->{baseline}}[$i]{rps};
            push @ratios, $b ? $r[$i]{rps} / $b : 0;
        }
    }
    push @rows, {
        scenario => $s->{name},
        baseline => $s->{baseline},
        rps      => median(map { $_->{rps} } @r),
        rps_min  => (sort { $a <=> $b } map { $_->{rps} } @r)[0],
        rps_max  => (sort { $b <=> $a } map { $_->{rps} } @r)[0],
        p50_ms   => median(map { $_->{p50} } @r),
        p99_ms   => median(map { $_->{p99} } @r),
        errors   => sum(map { $_->{errors} } @r),
        ratio    => @ratios ? median(@ratios) : undef,
    };
}

# memory: each nginx worker's RSS before and after a million requests on
# the authenticated, rate-limited path (a smoke run sends far fewer)
my $mem_target = $ENV{BENCH_SMOKE} ? 20000 : ($ENV{BENCH_MEM_REQUESTS} || 1000000);
my @workers = $t->nginx_pids;
my %rss0 = map { $_ => rss_kb($_) } @workers;
my $sent = 0;
while ($sent < $mem_target) {
    my $r = wrk($t->url('/bench/limit-sync'), $tokens{good}, undef);
    $sent += $r->{requests};
}
my @memory = map {
    { pid => $_, rss_before_kb => $rss0{$_}, rss_after_kb => rss_kb($_),
      growth_kb => rss_kb($_) - $rss0{$_} }
} @workers;

$t->spawn_stop('peer');
$t->nginx_stop;
my @bad = $t->bad_log_lines;
$t->stop;
die "bench: nginx logged problems:\n@bad\n" if @bad;

printf "%-34s %10s %10s %10s %8s %8s %7s %7s\n",
       'scenario', 'req/s', 'min', 'max', 'p50 ms', 'p99 ms', 'errors', 'ratio';
for my $r (@rows) {
    printf "%-34s %10.0f %10.0f %10.0f %8.2f %8.2f %7d %7s\n",
           $r->{scenario}, $r->{rps}, $r->{rps_min}, $r->{rps_max},
           $r->{p50_ms}, $r->{p99_ms}, $r->{errors},
           defined $r->{ratio} ? sprintf('%.2f', $r->{ratio}) : '-';
}

printf "nginx workers after %d requests (JWT + sync limit): %s\n", $sent,
       join(', ', map { sprintf('RSS %d -> %d kB (%+d)', $_->{rss_before_kb},
                                $_->{rss_after_kb}, $_->{growth_kb}) } @memory);

my $dir = $out =~ s{/[^/]+$}{}r;
system('mkdir', '-p', $dir);
open(my $fh, '>', $out) or die "$out: $!";
print $fh JSON::PP->new->pretty->canonical->encode({
    rounds => $rounds, seconds => $seconds, connections => $conns,
    scenarios => \@rows,
    memory => { requests => $sent, nginx_workers => \@memory },
});
close $fh;
print "results: $out\n";

# Any request that failed makes the figures meaningless: say so loudly.
exit((grep { $_->{errors} } @rows) ? 1 : 0);


sub wrk {
    my ($url, $token, $status, $method, $body) = @_;
    my $auth = $token ? "-H 'Authorization: Bearer $token'" : '';
    my $script = '';
    if ($method) {
        # wrk sends a body only from a script
        my ($fh, $lua) = File::Temp::tempfile('crest-bench-XXXXXX', SUFFIX => '.lua',
                                              TMPDIR => 1, UNLINK => 1);
        print $fh "wrk.method = \"$method\"\n",
                  "wrk.body = '$body'\n",
                  "wrk.headers[\"Content-Type\"] = \"application/json\"\n";
        close $fh;
        $script = "-s $lua";
    }
    my $cmd = "wrk -t2 -c$conns -d${seconds}s --latency $auth $script '$url' 2>&1";
    my $text = `$cmd`;
    die "wrk failed: $text" if $? != 0;

    my ($rps) = $text =~ /Requests\/sec:\s+([\d.]+)/;
    my %lat;
    while ($text =~ /^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$/mg) {
        $lat{$1} = $2 * ($3 eq 'us' ? 0.001 : $3 eq 's' ? 1000 : 1);
    }
    my $errors = 0;
    # a scenario that expects another status counts only transport errors
    # (a 202 is a 2xx, so its non-2xx count is still an error)
    $errors += $1 while (!$status || $status < 300)
                        && $text =~ /Non-2xx or 3xx responses:\s+(\d+)/g;
    if ($text =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        $errors += $1 + $2 + $3 + $4;
    }
    my ($requests) = $text =~ /(\d+) requests in/;
    die "cannot read wrk's output:\n$text" unless defined $rps && defined $lat{99};
    return { rps => $rps, p50 => $lat{50}, p99 => $lat{99}, errors => $errors,
             requests => $requests // 0 };
}

sub rss_kb {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (my $line = <$fh>) { return $1 if $line =~ /^VmRSS:\s+(\d+) kB/ }
    return 0;
}

sub free_port {
    my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub wait_port {
    my ($port) = @_;
    for (1 .. 200) {
        return if IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $port);
        select(undef, undef, undef, 0.05);
    }
    die "bench: the peer did not start on port $port\n";
}

sub median {
    my @v = sort { $a <=> $b } @_;
    return 0 unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub sum {
    my $s = 0;
    $s += $_ for @_;
    return $s;
}
