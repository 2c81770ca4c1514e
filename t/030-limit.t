# Rate limits: exactly N pass and the N+1st is a 429 with the envelope and
# Retry-After, for the local and redis policies; headers count down; dry
# run; several zones; per-user keys; Redis down and back.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::JWT qw(hs256);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    main_config => 'thread_pool crest_hash threads=1;',
    http_config => q{
        crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;
        crest_limit_zone zone=loc key=$binary_remote_addr rate=5r/m;
        crest_limit_zone zone=red key=$binary_remote_addr rate=5r/m policy=redis;
        crest_limit_zone zone=dry key=$binary_remote_addr rate=2r/m;
        crest_limit_zone zone=wide key=$binary_remote_addr rate=100r/m;
        crest_limit_zone zone=user key=$crest_user_id rate=3r/m policy=redis;
        crest_limit_zone zone=allow key=$binary_remote_addr rate=2r/m policy=redis on_redis_error=allow;
        crest_limit_zone zone=deny key=$binary_remote_addr rate=2r/m policy=redis on_redis_error=deny;
        crest_limit_zone zone=burst key=$binary_remote_addr rate=60r/m;
    },
    config => qq{
        include $conf;
        location = /local  { crest_limit zone=loc;  crest_health live; }
        location = /redis  { crest_limit zone=red;  crest_health live; }
        location = /draft  { crest_limit zone=wide; crest_limit_headers draft; crest_health live; }
        location = /dry    { crest_limit zone=dry dry_run;
                             add_header X-Limit \$crest_limit_status always;
                             crest_health live; }
        location = /two    { crest_limit zone=wide; crest_limit zone=user; crest_auth on;
                             crest_health live; }
        location = /allow  { crest_limit zone=allow; crest_health live; }
        location = /deny   { crest_limit zone=deny;  crest_health live; }
        location = /burst  { crest_limit zone=burst burst=3; crest_health live; }
        location = /cost   { crest_limit zone=wide cost=40; crest_health live; }
    },
);
$t->start;

(my $secret = do { local (@ARGV, $/) = $t->jwt_secret_file; <> }) =~ s/[\r\n]+\z//;
sub token {
    my ($uid) = @_;
    return hs256($secret, { sub => $uid, role => 'user', plan => 'free', exp => time + 600 });
}

sub exactly_n {
    my ($path, $n, $name) = @_;
    my @remaining;
    for my $i (1 .. $n) {
        my $r = $t->http(GET => $path);
        is($r->{status}, 200, "$name: request $i passes");
        push @remaining, $r->{headers}{'ratelimit-remaining'};
        is($r->{headers}{'ratelimit-limit'}, $n, "$name: RateLimit-Limit $n") if $i == 1;
    }
    is_deeply(\@remaining, [ reverse 0 .. $n - 1 ], "$name: RateLimit-Remaining counts down");
    my $r = $t->http(GET => $path);
    is($r->{status}, 429, "$name: request " . ($n + 1) . " is 429");
    is($r->{json}{error}{code}, 'RATE_LIMITED', "$name: RATE_LIMITED");
    like($r->{headers}{'retry-after'} // '', qr/^\d+$/, "$name: Retry-After");
    cmp_ok($r->{headers}{'retry-after'}, '>=', 1, "$name: at least a second");
    is($r->{headers}{'ratelimit-remaining'}, 0, "$name: nothing remains");
    like($r->{headers}{'ratelimit-reset'} // '', qr/^\d+$/, "$name: RateLimit-Reset");
    is($r->{json}{error}{details}{limit}, $n, "$name: details name the limit");
}

exactly_n('/local', 5, 'local');
exactly_n('/redis', 5, 'redis');

# Redis forgets its scripts (a restart, SCRIPT FLUSH): EVALSHA's NOSCRIPT
# is answered by sending the script whole, unseen by the request
$t->redis_cli('SCRIPT', 'FLUSH');
is($t->redis_cli('SCRIPT', 'EXISTS', '0' x 40), "0", 'scripts flushed');
my $again = $t->http(GET => '/redis');
is($again->{status}, 429, 'after SCRIPT FLUSH the limit still holds');
is($again->{json}{error}{code}, 'RATE_LIMITED', 'and answers RATE_LIMITED');

# --- burst and cost
my @st = map { $t->http(GET => '/burst')->{status} } 1 .. 4;
is_deeply(\@st, [200, 200, 200, 429], 'burst=3: three at once, then one a second');
sleep 1.05;
is($t->http(GET => '/burst')->{status}, 200, 'a second later one more passes');

is($t->http(GET => '/cost')->{status}, 200, 'cost 40 of 100');
is($t->http(GET => '/cost')->{status}, 200, 'cost 80 of 100');
is($t->http(GET => '/cost')->{status}, 429, 'cost 120 of 100 is refused');

# --- draft headers (the wide zone has room left after the cost test? use a fresh key space)
my $r = $t->http(GET => '/draft');
like($r->{headers}{'ratelimit-policy'} // '', qr/^"wide";q=100;w=60$/, 'RateLimit-Policy (draft)');
like($r->{headers}{ratelimit} // '', qr/^"wide";r=\d+;t=\d+$/, 'RateLimit (draft)');

# --- dry run: nothing refused, the would-be refusals reported
my @dry = map { $t->http(GET => '/dry') } 1 .. 4;
is(scalar(grep { $_->{status} == 200 } @dry), 4, 'dry run refuses nothing');
is_deeply([ map { $_->{headers}{'x-limit'} } @dry ],
          [ 'PASSED', 'PASSED', 'REJECTED_DRY_RUN', 'REJECTED_DRY_RUN' ],
          '$crest_limit_status tells what would have happened');
like($t->error_log, qr/limiting requests, dry run, by zone "dry"/, 'and the log says so');

# --- several zones, per-user keys
my ($u1, $u2) = ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222');
my @u1 = map { $t->http(GET => '/two', headers => { Authorization => 'Bearer ' . token($u1) })->{status} } 1 .. 4;
is_deeply(\@u1, [200, 200, 200, 429], 'the per-user zone (3/min) governs user 1');
is($t->http(GET => '/two', headers => { Authorization => 'Bearer ' . token($u2) })->{status},
   200, 'user 2 has a budget of their own');
$r = $t->http(GET => '/two', headers => { Authorization => 'Bearer ' . token($u2) });
is($r->{headers}{'ratelimit-limit'}, 3, 'headers report the tightest zone');
is($r->{headers}{'ratelimit-remaining'}, 1, 'and its remaining count');

# --- Redis stops: each zone follows its failure mode, then Redis returns
$t->redis_stop;
my $mark = $t->mark_error_log;
my @loc = map { $t->http(GET => '/allow')->{status} } 1 .. 4;
is_deeply(\@loc, [200, 200, 200, 200], 'on_redis_error=allow lets everything through');
my $deny = $t->http(GET => '/deny');
is($deny->{status}, 503, 'on_redis_error=deny refuses');
is($deny->{json}{error}{code}, 'SERVICE_UNAVAILABLE', 'with SERVICE_UNAVAILABLE');
# the redis zone falls back to a local budget: with two workers, up to 5 each
my @fb = map { $t->http(GET => '/redis')->{status} } 1 .. 12;
cmp_ok(scalar(grep { $_ == 429 } @fb), '>=', 2, 'on_redis_error=local (default) still limits');
cmp_ok(scalar(grep { $_ == 200 } @fb), '<=', 10, 'within the local budget of each worker');
my $log = $t->error_log($mark);
my $n = () = $log =~ /redis unavailable for zone "red"/g;
cmp_ok($n, '<=', 2, 'the fallback is logged once per worker, not per request');
cmp_ok($n, '>=', 1, 'and it is logged');

$t->redis_start;
my $end = time + 3;
my $back;
do { $back = $t->http(GET => '/deny'); sleep 0.1 } while $back->{status} == 503 && time < $end;
is($back->{status}, 200, 'limits resume on Redis when it returns');
# each worker logs its own recovery when it next uses the zone it had seen
# fail; requests land on either worker, so keep asking for a while
$end = time + 3;
until ($t->error_log =~ /uses redis again/ || time > $end) {
    $t->http(GET => $_) for qw(/deny /redis /allow);
    sleep 0.05;
}
like($t->error_log, qr/uses redis again/, 'and say so');

$t->stop;
done_testing;
