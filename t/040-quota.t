# Monthly usage quotas: exactly N of many concurrent requests take the last
# N units (cold and warm counters), refunds for failed requests, month
# rollover through the test clock, Redis flushed or down, unlimited plans,
# and the usage and plan endpoints.
use strict;
use warnings;
use FindBin;
use Test::More;
use IO::Socket::IP;
use IO::Select;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::JWT qw(hs256);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    http_config => 'crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;
                    crest_quota_test_clock on;
                    crest_quota_cache 1s;',
    config      => "include $conf;
        location = /q  { crest_auth on; crest_quota scrape; crest_health live;
                         add_header X-Remaining \$crest_quota_remaining always; }
        location = /q3 { crest_auth on; crest_quota download cost=3; crest_health live; }
        location = /qe { crest_auth on; crest_quota ai_generation; crest_echo; }
        location = /qa { crest_auth on; crest_quota clip; crest_quota_on_error allow;
                         crest_health live; }
        location = /qo { crest_auth optional; crest_quota upload; crest_health live; }
        location = /qr { crest_auth on; crest_quota upload; error_page 404 = /qr2; }
        location = /qr2 { crest_auth on; crest_quota upload; crest_health live; }
        location = /api/qn { crest_auth on; crest_quota clip; error_page 404 \@crest_error; }",
);
$t->start;

(my $secret = do { local (@ARGV, $/) = $t->jwt_secret_file; <> }) =~ s/[\r\n]+\z//;
my $JSON = JSON::PP->new->utf8;

sub new_user {
    my ($email, %o) = @_;
    my $role = $o{role} // 'user';
    my $id = $t->psql("INSERT INTO users (email, role) VALUES ('$email', '$role') RETURNING id");
    $t->psql("INSERT INTO subscriptions (user_id, plan_id) VALUES ('$id', '$o{plan}')")
        if $o{plan};
    return $id;
}

# The JWT's plan claim is deliberately 'free': the quota must use PostgreSQL's.
sub auth {
    my ($id, $role) = @_;
    my $tok = hs256($secret, { sub => $id, role => $role // 'user', plan => 'free',
                               iat => time, exp => time + 3600 });
    return { Authorization => "Bearer $tok" };
}

sub month_start {
    my ($y, $m) = @_;
    return sprintf '%04d-%02d-01T00:00:00.000Z', $y, $m;
}
my @now = gmtime;
my ($Y, $M) = ($now[5] + 1900, $now[4] + 1);
my $PERIOD = sprintf '%04d-%02d', $Y, $M;
my $START = month_start($Y, $M);
my $RESET = $M == 12 ? month_start($Y + 1, 1) : month_start($Y, $M + 1);

sub key { "crest:usage:{$_[0]}:$_[1]:" . ($_[2] // $PERIOD) }

sub pg_count {
    my ($id, $type, $start) = @_;
    $start //= $START;
    my $n = $t->psql("SELECT count FROM user_usage WHERE user_id = '$id' "
                     . "AND usage_type = '$type' AND period_start = '$start'");
    return $n eq '' ? 0 : $n;
}

# Waits for an asynchronous refund to land.
sub eventually {
    my ($cond, $secs) = @_;
    my $end = time + ($secs // 5);
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

# $n requests at once, each on its own connection, all written before any
# answer is read.  Returns [{status, json}].
sub burst {
    my ($n, $path, $headers) = @_;
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            . join('', map { "$_: $headers->{$_}\r\n" } sort keys %$headers) . "\r\n";
    my @socks = map {
        IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp')
            or die "connect: $!"
    } 1 .. $n;
    syswrite($_, $req) for @socks;
    my %buf = map { fileno($_) => '' } @socks;
    my $sel = IO::Select->new(@socks);
    my $end = time + 30;
    while ($sel->count && time < $end) {
        for my $s ($sel->can_read(1)) {
            my $r = sysread($s, my $chunk, 65536);
            if ($r) { $buf{ fileno $s } .= $chunk; next }
            $sel->remove($s);
        }
    }
    my @out;
    for my $s (@socks) {
        my $raw = $buf{ fileno $s };
        my ($head, $body) = split /\r\n\r\n/, $raw, 2;
        my ($status) = ($head // '') =~ m{^HTTP/1\.1 (\d+)};
        push @out, { status => $status // 0, json => eval { $JSON->decode($body // '') } };
        close $s;
    }
    return \@out;
}

my $alice = new_user('alice@example.com');
my $r = $t->http(GET => '/q', headers => auth($alice));
is($r->{status}, 200, 'a unit of the free scrape quota');
is($r->{headers}{'x-quota-limit'}, 10, 'X-Quota-Limit');
is($r->{headers}{'x-quota-remaining'}, 9, 'X-Quota-Remaining');
is($r->{headers}{'x-quota-reset'}, $RESET, 'X-Quota-Reset: the next month');
is($r->{headers}{'x-remaining'}, 9, '$crest_quota_remaining');
is(pg_count($alice, 'scrape'), 1, 'recorded in PostgreSQL before the answer');
is($t->redis_cli('GET', key($alice, 'scrape')), 1, 'counted in Redis');
my $ttl = $t->redis_cli('TTL', key($alice, 'scrape'));
my $month_end = timegm(0, 0, 0, 1, $M == 12 ? 0 : $M, $M == 12 ? $Y + 1 : $Y);
ok($ttl > $month_end - time && $ttl <= $month_end - time + 86400 + 5,
   "the counter expires a day after the month ($ttl s)");

$r = $t->http(GET => '/q');
is($r->{status}, 401, 'no identity: 401');
is($r->{json}{error}{code}, 'UNAUTHORIZED', 'UNAUTHORIZED');
$r = $t->http(GET => '/qo');
is($r->{status}, 401, 'crest_auth optional, anonymous: 401 at the quota');
like($r->{headers}{'www-authenticate'}, qr/^Bearer/, 'with WWW-Authenticate');

# --- 50 at once, 10 units left, the counter cold (a new user: seeded from PG)
my $bob = new_user('bob@example.com');
my $res = burst(50, '/q', auth($bob));
my @ok = grep { $_->{status} == 200 } @$res;
my @no = grep { $_->{status} == 403 } @$res;
is(scalar @ok, 10, 'cold counter: exactly 10 of 50 concurrent requests pass');
is(scalar @no, 40, 'and 40 are refused');
is(scalar(grep { ($_->{json}{error}{code} // '') eq 'USAGE_EXCEEDED' } @no), 40,
   'all USAGE_EXCEEDED');
is(scalar(grep {
       my $u = $_->{json}{meta}{usage} || {};
       ($u->{current} // -1) == 10 && ($u->{limit} // -1) == 10
       && ($u->{remaining} // -1) == 0 && ($u->{resetsAt} // '') eq $RESET
   } @no), 40, 'meta.usage {current 10, limit 10, remaining 0, resetsAt}');
is(pg_count($bob, 'scrape'), 10, 'PostgreSQL has 10');
is($t->redis_cli('GET', key($bob, 'scrape')), 10, 'Redis has 10');

# --- the same, warm: a pro user with 490 of 500 used
my $carol = new_user('carol@example.com', plan => 'pro');
$t->psql("INSERT INTO user_usage (user_id, usage_type, period_start, period_end, count) "
         . "VALUES ('$carol', 'scrape', '$START', '$RESET', 489)");
$r = $t->http(GET => '/q', headers => auth($carol));
is($r->{status}, 200, 'pro: the plan from PostgreSQL, not the token');
is($r->{headers}{'x-quota-remaining'}, 10, 'seeded from PostgreSQL: 490 of 500 used');
$res = burst(50, '/q', auth($carol));
is(scalar(grep { $_->{status} == 200 } @$res), 10, 'warm counter: exactly 10 of 50 pass');
is(scalar(grep { $_->{status} == 403 } @$res), 40, 'and 40 are refused');
my ($one) = grep { $_->{status} == 403 } @$res;
is_deeply([ @{ $one->{json}{meta}{usage} }{qw(current limit remaining)} ], [ 500, 500, 0 ],
          'meta.usage says 500 of 500');
is(pg_count($carol, 'scrape'), 500, 'PostgreSQL has 500');

# --- cost
$r = $t->http(GET => '/q3', headers => auth($alice));
is($r->{status}, 200, 'cost=3: 3 of 5 downloads');
is($r->{headers}{'x-quota-remaining'}, 2, '2 left');
$r = $t->http(GET => '/q3', headers => auth($alice));
is($r->{status}, 403, 'the next 3 do not fit in 2');
is_deeply([ @{ $r->{json}{meta}{usage} }{qw(current limit remaining cost)} ], [ 3, 5, 2, 3 ],
          'meta.usage: current 3, remaining 2, cost 3');
is(pg_count($alice, 'download'), 3, 'a refusal costs nothing');

# --- refunds: the endpoint fails after the unit was taken
$r = $t->http(POST => '/qe', headers => { %{ auth($alice) }, 'Content-Type' => 'application/json' },
              body => '{"broken":');
is($r->{status}, 400, 'the endpoint answers 400');
ok(eventually(sub { pg_count($alice, 'ai_generation') == 0
                    && $t->redis_cli('GET', key($alice, 'ai_generation')) eq '0' }),
   'the unit went back to PostgreSQL and Redis');
$r = $t->http(POST => '/qe', headers => auth($alice), json => { ok => 1 });
is($r->{status}, 200, 'a request that works');
is(pg_count($alice, 'ai_generation'), 1, 'keeps its unit');
$r = $t->http(PUT => '/qe', headers => { %{ auth($alice) }, 'Content-Type' => 'text/plain' },
              body => 'x');
is($r->{status}, 415, 'a 415 through the envelope');
ok(eventually(sub { $t->redis_cli('GET', key($alice, 'ai_generation')) eq '1' }),
   'gives its unit back too');
is(pg_count($alice, 'ai_generation'), 1, 'PostgreSQL agrees');

$r = $t->http(GET => '/api/qn', headers => auth($alice));
is($r->{status}, 404, "nginx's own 404, through error_page to \@crest_error");
is($r->{json}{error}{code}, 'NOT_FOUND', 'in the envelope');
ok(eventually(sub { $t->redis_cli('GET', key($alice, 'clip')) eq '0' }),
   'the unit came back across the internal redirect');
is(pg_count($alice, 'clip'), 0, 'in PostgreSQL too');
$r = $t->http(GET => '/qr', headers => auth($alice));
is($r->{status}, 200, 'error_page = /qr2: redirected to another quota location');
is(pg_count($alice, 'upload'), 1, 'charged once, not twice');
is($t->redis_cli('GET', key($alice, 'upload')), 1, 'once in Redis');

# --- month rollover with the test clock
my $dec31 = timegm(59, 59, 23, 31, 11, 2030);
my $jan1 = $dec31 + 1;
my $dave = new_user('dave@example.com');
for (1 .. 10) {
    $t->http(GET => '/q', headers => { %{ auth($dave) }, 'X-Crest-Test-Now' => $dec31 });
}
$r = $t->http(GET => '/q', headers => { %{ auth($dave) }, 'X-Crest-Test-Now' => $dec31 });
is($r->{status}, 403, '23:59:59 on Dec 31: December is used up');
is($r->{json}{meta}{usage}{resetsAt}, '2031-01-01T00:00:00.000Z', 'resets at midnight UTC');
$r = $t->http(GET => '/q', headers => { %{ auth($dave) }, 'X-Crest-Test-Now' => $jan1 });
is($r->{status}, 200, 'one second later: a fresh budget');
is($r->{headers}{'x-quota-remaining'}, 9, '9 of 10 left in January');
is(pg_count($dave, 'scrape', '2030-12-01T00:00:00Z'), 10, 'December stays 10');
is(pg_count($dave, 'scrape', '2031-01-01T00:00:00Z'), 1, 'January has 1');
is($t->psql("SELECT period_end FROM user_usage WHERE user_id = '$dave' "
            . "AND period_start = '2031-01-01T00:00:00Z'"), '2031-02-01 00:00:00+00',
   'period_end is the next month');
ok($t->redis_cli('TTL', key($dave, 'scrape', '2030-12')) > 0,
   'a past month\'s counter still expires in the future');
$r = $t->http(GET => '/api/billing/usage',
              headers => { %{ auth($dave) }, 'X-Crest-Test-Now' => $jan1 });
is_deeply($r->{json}{data}{period}, { start => '2031-01-01T00:00:00.000Z',
                                      end => '2031-02-01T00:00:00.000Z' }, 'usage: the period');
my $feb29 = timegm(0, 0, 12, 29, 1, 2032);
$r = $t->http(GET => '/api/billing/usage',
              headers => { %{ auth($dave) }, 'X-Crest-Test-Now' => $feb29 });
is_deeply($r->{json}{data}{period}, { start => '2032-02-01T00:00:00.000Z',
                                      end => '2032-03-01T00:00:00.000Z' }, 'a leap February');

# --- GET /api/billing/usage
$r = $t->http(GET => '/api/billing/usage', headers => auth($alice));
is($r->{status}, 200, 'usage: 200');
my $d = $r->{json}{data};
is($d->{plan}, 'free', 'plan');
is_deeply($d->{period}, { start => $START, end => $RESET }, 'this month');
my %u = map { $_->{type} => $_ } @{ $d->{usage} };
is_deeply([ map { $_->{type} } @{ $d->{usage} } ],
          [qw(scrape download ai_generation upload clip)], 'every usage type');
is_deeply($u{scrape}, { type => 'scrape', current => 1, limit => 10, remaining => 9,
                        unlimited => JSON::PP::false }, 'scrape');
is_deeply([ @{ $u{download} }{qw(current limit remaining)} ], [ 3, 5, 2 ], 'download');
is_deeply([ @{ $u{clip} }{qw(current limit remaining)} ], [ 0, 3, 3 ], 'clip given back');
is($t->http(GET => '/api/billing/usage')->{status}, 401, 'usage needs a caller');

# --- Redis flushed: PostgreSQL answers, and counting goes on from it
$t->redis_cli('FLUSHALL');
$t->redis_cli('SCRIPT', 'FLUSH');
for my $who ([ alice => $alice ], [ bob => $bob ], [ carol => $carol ]) {
    my ($name, $id) = @$who;
    $r = $t->http(GET => '/api/billing/usage', headers => auth($id));
    my %pg = map { split /\|/ } $t->psql("SELECT usage_type, count FROM user_usage "
                                         . "WHERE user_id = '$id' AND period_start = '$START'");
    my %got = map { $_->{type} => $_->{current} } @{ $r->{json}{data}{usage} || [] };
    is_deeply(\%got, { scrape => 0, download => 0, ai_generation => 0, upload => 0, clip => 0, %pg },
              "after FLUSHALL the usage of $name is PostgreSQL's");
}
$r = $t->http(GET => '/q', headers => auth($bob));
is($r->{status}, 403, 'bob is still at 10 of 10: no reset');
$r = $t->http(GET => '/q', headers => auth($alice));
is($r->{status}, 200, 'alice goes on');
is($r->{headers}{'x-quota-remaining'}, 8, 'from 1 to 2, not from 0');
is($t->redis_cli('GET', key($alice, 'scrape')), 2, 'the counter rebuilt from PostgreSQL');

# --- unlimited
my $erin = new_user('erin@example.com', plan => 'enterprise');
my @st = map { $t->http(GET => '/q', headers => auth($erin))->{status} } 1 .. 15;
is(scalar(grep { $_ == 200 } @st), 15, 'enterprise: no limit');
$r = $t->http(GET => '/q', headers => auth($erin));
ok(!exists $r->{headers}{'x-quota-limit'}, 'no X-Quota-Limit when unlimited');
is($r->{headers}{'x-remaining'}, 'unlimited', '$crest_quota_remaining is "unlimited"');
is(pg_count($erin, 'scrape'), 16, 'but usage is still counted');
$r = $t->http(GET => '/api/billing/usage', headers => auth($erin));
%u = map { $_->{type} => $_ } @{ $r->{json}{data}{usage} };
is_deeply($u{scrape}, { type => 'scrape', current => 16, limit => undef, remaining => undef,
                        unlimited => JSON::PP::true }, 'usage: limit and remaining null');

# --- admins set plans
my $root = new_user('root@example.com', role => 'admin');
$r = $t->http(PUT => "/api/admin/users/$bob/plan", headers => auth($bob), json => { plan => 'pro' });
is($r->{status}, 403, 'a user cannot set plans');
is($r->{json}{error}{code}, 'FORBIDDEN', 'FORBIDDEN');
$r = $t->http(PUT => "/api/admin/users/$bob/plan", headers => auth($root, 'admin'),
              json => { plan => 'pro' });
is($r->{status}, 200, 'an admin sets bob on pro');
is_deeply($r->{json}{data}, { userId => $bob, plan => 'pro', status => 'active' }, 'the answer');
is($t->psql("SELECT plan_id FROM subscriptions WHERE user_id = '$bob' "
            . "AND status IN ('active', 'trialing', 'past_due')"), 'pro', 'stored');
sleep 1.1;    # the other worker's cache (crest_quota_cache 1s)
$r = $t->http(GET => '/q', headers => auth($bob));
is($r->{status}, 200, 'the new limit applies: bob goes on');
is($r->{headers}{'x-quota-limit'}, 500, 'X-Quota-Limit 500');
$r = $t->http(PUT => "/api/admin/users/$bob/plan", headers => auth($root, 'admin'),
              json => { plan => 'free' });
is($r->{status}, 200, 'and back to free');
is($t->psql("SELECT count(*) FROM subscriptions WHERE user_id = '$bob'"), 1,
   'the one live subscription was updated, not duplicated');
$r = $t->http(PUT => "/api/admin/users/$bob/plan", headers => auth($root, 'admin'),
              json => { plan => 'platinum' });
is($r->{status}, 400, 'an unknown plan: 400');
ok(exists $r->{json}{error}{details}{fields}{plan}, 'names the field');
$r = $t->http(PUT => '/api/admin/users/00000000-0000-4000-8000-000000000000/plan',
              headers => auth($root, 'admin'), json => { plan => 'pro' });
is($r->{status}, 404, 'an unknown user: 404');
$r = $t->http(PUT => '/api/admin/users/nope/plan', headers => auth($root, 'admin'),
              json => { plan => 'pro' });
is($r->{status}, 404, 'not a user id: 404');
$r = $t->http(PUT => "/api/admin/users/$bob/plan/x", headers => auth($root, 'admin'),
              json => { plan => 'pro' });
is($r->{status}, 404, 'another path under /api/admin/users/: 404');
$r = $t->http(PUT => "/api/admin/users/$bob/plans", headers => auth($bob),
              json => { plan => 'pro' });
is($r->{status}, 403, 'and only admins get that far');
$r = $t->http(PUT => "/api/admin/users/$bob/plan", headers => auth($root, 'admin'),
              json => { plan => 7 });
is($r->{status}, 400, 'a plan that is not a string: 400');
$r = $t->http(GET => "/api/admin/users/$bob/plan", headers => auth($root, 'admin'));
is($r->{status}, 405, 'GET: 405');

# --- a token of an account deleted since
my $gone = new_user('gone@example.com');
$t->psql("DELETE FROM users WHERE id = '$gone'");
$r = $t->http(GET => '/q', headers => auth($gone));
is($r->{status}, 401, 'a deleted account: 401');

# --- Redis down: deny by default (503), allow where configured; logged once
my $mark = $t->mark_error_log;
$t->redis_stop;
my @codes = map { $t->http(GET => '/q', headers => auth($alice))->{status} } 1 .. 12;
is(scalar(grep { $_ == 503 } @codes), 12, 'crest_quota_on_error deny: 503 while Redis is down')
    or diag("@codes");
$r = $t->http(GET => '/q', headers => auth($alice));
is($r->{json}{error}{code}, 'SERVICE_UNAVAILABLE', 'SERVICE_UNAVAILABLE');
$r = $t->http(GET => '/qa', headers => auth($alice));
is($r->{status}, 200, 'crest_quota_on_error allow: the request goes on');
my %lines;
$lines{$_}++ for $t->error_log($mark) =~ /^\S+ \S+ \[error\] (\d+)#\d+: crest quota: redis/mg;
ok(%lines && !grep({ $_ != 1 } values %lines), 'one log line per worker, not one per request')
    or diag(explain \%lines);
$t->redis_start;
ok(eventually(sub { $t->http(GET => '/q', headers => auth($alice))->{status} == 200 }, 10),
   'Redis back: quotas work again');
ok($t->wait_for_error_log('crest quota: redis answers again', 5), 'and that is logged');
is($t->redis_cli('GET', key($alice, 'scrape')), pg_count($alice, 'scrape'),
   'the new Redis was seeded from PostgreSQL');

# --- PostgreSQL down: a unit Redis granted cannot be recorded, so it goes back
my $before = $t->redis_cli('GET', key($alice, 'scrape'));
$t->pg_stop;
@codes = map { $t->http(GET => '/q', headers => auth($alice))->{status} } 1 .. 5;
is(scalar(grep { $_ == 503 } @codes), 5, 'PostgreSQL down: 503') or diag("@codes");
ok(eventually(sub { $t->redis_cli('GET', key($alice, 'scrape')) eq $before }),
   'the Redis counter is where it was');
$r = $t->http(GET => '/qa', headers => auth($alice));
is($r->{status}, 200, 'crest_quota_on_error allow: the request goes on');
$t->pg_start;

$t->stop;
done_testing();
