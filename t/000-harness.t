# Tests of the test harness itself (t/lib/Crest/Test.pm), scripts/lib-stack.sh
# and scripts/migrate.sh.  Needs no Crest module: plain nginx.
use strict;
use warnings;
use Crest::Test;
use FindBin;
use File::Temp ();
use File::Copy qw(copy);
use Time::HiRes qw(time);

my $t = Crest::Test->new(
    no_module   => 1,
    http_config => 'map $http_x_probe $probe { default "none"; "yes" "seen"; }',
    config      => <<'EOF',
location = / { return 200 "ok"; }
location = /json {
    default_type application/json;
    return 200 '{"status":"ok","checks":{"pg":true,"redis":false},"list":[1,"two",null]}';
}
location = /probe { return 200 "$probe $TEST_NGINX_SERVER_PORT"; }
location = /slow { return 204; }
EOF
);
$t->start;

# ---- nginx + http() ---------------------------------------------------
my $r = $t->http(GET => '/');
is $r->{status}, 200, 'GET / status';
is $r->{content}, 'ok', 'GET / body';
ok $r->{elapsed} > 0 && $r->{elapsed} < 5, 'elapsed measured';
is $r->{json}, undef, 'non-JSON body gives json undef';
like $r->{headers}{server}, qr/nginx/, 'headers have lower-case keys';

$r = $t->http(GET => '/json');
is $r->{json}{status}, 'ok', 'JSON decoded';
is Crest::Test::json_subset({ status => 'ok', checks => { pg => JSON::PP::true } }, $r->{json}),
    undef, 'json_subset: subset matches';
like Crest::Test::json_subset({ checks => { redis => JSON::PP::true } }, $r->{json}),
    qr/\$\.checks\.redis: expected true/, 'json_subset: boolean mismatch reported';
like Crest::Test::json_subset({ list => [1, 'two'] }, $r->{json}),
    qr/expected 2 elements, got 3/, 'json_subset: array length checked';
is Crest::Test::json_subset({ list => [1, 'two', undef] }, $r->{json}), undef,
    'json_subset: arrays elementwise, null';
like Crest::Test::json_subset({ missing => 1 }, $r->{json}), qr/missing/, 'json_subset: missing key';

$r = $t->http(GET => '/probe', headers => { 'X-Probe' => 'yes' });
is $r->{content}, 'seen ' . $t->port, 'headers sent, http_config and $TEST_NGINX_ vars applied';

like $t->raw("GET / HTTP/1.0\r\nHost: x\r\n\r\n"), qr{\AHTTP/1\.1 200 OK\r\n.*\r\n\r\nok\z}s, 'raw()';

my @w = $t->nginx_pids;
is scalar(@w), 1, 'one worker by default';

# ---- PostgreSQL, Redis, migrations ------------------------------------
is $t->psql('SELECT 1'), '1', 'psql SELECT 1';
is $t->redis_cli('PING'), 'PONG', 'redis PING';
is $t->psql('SELECT version, name FROM schema_migrations ORDER BY version LIMIT 1'),
    '0001|0001_foundation.sql', 'migration 0001 recorded';
is join(',', $t->psql('SELECT id FROM plans ORDER BY price_cents')), 'free,pro,enterprise',
    'plans seeded';
is $t->psql(q{SELECT monthly_limit FROM plan_limits WHERE plan_id = 'free' AND usage_type = 'clip'}),
    '3', 'plan limits seeded';

my $log = $t->dir . '/logs/migrate.log';
truncate $log, 0;
is $t->migrate, 0, 'migrate.sh re-run succeeds';
my $migrations = () = glob("$FindBin::Bin/../sql/[0-9][0-9][0-9][0-9]_*.sql");
like Crest::Test::_slurp($log), qr/0 applied, $migrations already applied/, 're-run is a no-op';

# A new migration in another directory (CREST_SQL_DIR) is applied once.
my $sql = File::Temp::tempdir(CLEANUP => 1);
copy($_, $sql) or die $! for glob "$FindBin::Bin/../sql/*.sql";
open my $fh, '>', "$sql/0999_harness_test.sql" or die;
print {$fh} "CREATE TABLE harness_probe (x int);\n";
close $fh;
truncate $log, 0;
is $t->migrate(sql_dir => $sql), 0, 'new migration applied';
like Crest::Test::_slurp($log), qr/applied 0999_harness_test\.sql/, 'applied line printed';
is $t->psql(q{SELECT to_regclass('harness_probe') IS NOT NULL}), 't', 'new table exists';

# Editing an applied migration is detected and nothing is applied.
open $fh, '>>', "$sql/0001_foundation.sql" or die;
print {$fh} "-- edited\n";
close $fh;
truncate $log, 0;
isnt $t->migrate(sql_dir => $sql, no_die => 1), 0, 'changed checksum fails migrate.sh';
like Crest::Test::_slurp($log), qr/0001_foundation\.sql was applied with sha256 \w+ but the file now has/,
    'checksum mismatch explained';

# ---- schema behaviour -------------------------------------------------
ok !eval { $t->psql(q{INSERT INTO users (email) VALUES ('Mixed@Example.com')}); 1 },
    'upper-case email rejected';
like $@, qr/users_email_check/, 'psql errors are reported';
my $uid = $t->psql(q{INSERT INTO users (email) VALUES ('a@example.com') RETURNING id});
like $uid, qr/^[0-9a-f-]{36}$/, 'uuid primary key';
$t->psql(qq{INSERT INTO subscriptions (user_id, plan_id) VALUES ('$uid', 'pro')});
ok !eval { $t->psql(qq{INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$uid', 'free', 'trialing')}); 1 },
    'only one live subscription per user';
$t->psql(qq{INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('$uid', 'free', 'canceled')});
is $t->psql(qq{SELECT count(*) FROM subscriptions WHERE user_id = '$uid'}), '2', 'ended ones kept';
is $t->psql(qq{UPDATE users SET name = 'A' WHERE id = '$uid' RETURNING updated_at > created_at}),
    't', 'updated_at touched by trigger';

# ---- restarting and pausing the backends ------------------------------
$t->redis_cli('SET', 'k', 'v');
$t->redis_stop;
ok !defined $t->redis_pid, 'redis stopped';
ok !eval { $t->redis_cli('PING'); 1 }, 'redis unreachable when stopped';
$t->redis_start;
is $t->redis_cli('PING'), 'PONG', 'redis restarted on the same port';

$t->pg_stop;
ok !defined $t->pg_pid, 'postgres stopped';
$t->pg_start;
is $t->psql(q{SELECT email FROM users}), 'a@example.com', 'postgres restarted with the same data';

$t->pg_pause;
my $t0 = time;
ok !eval { $t->psql('SELECT 1', timeout => 2); 1 }, 'paused postgres does not answer';
ok time - $t0 >= 1.5, 'psql waited for its timeout';
$t->pg_resume;
is $t->psql('SELECT 1'), '1', 'resumed postgres answers';

# ---- reload, error log --------------------------------------------------
my @old = $t->nginx_pids;
$t->nginx_reload(workers => 2);
my @new = $t->nginx_pids;
is scalar(@new), 2, 'reload to 2 workers';
ok !(grep { my $n = $_; grep { $_ == $n } @old } @new), 'all workers are new';
is $t->http(GET => '/')->{content}, 'ok', 'serves after reload';
ok eval { $t->nginx_reload(config => 'bogus_directive;'); 1 } ? 0 : 1, 'bad config reload dies';
like $@, qr/unknown directive "bogus_directive"/, '... with the error log';
is $t->http(GET => '/')->{content}, 'ok', 'old workers still serve';
$t->set_config(config => 'location = / { return 200 "ok"; }');
$t->nginx_reload;

ok $t->wait_for_error_log(qr/reconfiguring/, 5), 'wait_for_error_log';
# The bogus reload logged an [emerg]; a fake [alert] line is caught too.
ok scalar($t->bad_log_lines), 'bad_log_lines sees the [emerg]';
open $fh, '>>', $t->error_log_file or die;
print {$fh} "2024/01/01 00:00:00 [alert] 1#1: fake alert for the harness test\n";
close $fh;
ok((grep { /fake alert/ } $t->bad_log_lines), 'alert lines detected');
$t->mark_error_log;
is scalar($t->bad_log_lines), 0, 'mark_error_log: earlier lines ignored';

# ---- ASan report filter (synthetic reports) ----------------------------
my $nginx_leak = <<'EOF';
==1==ERROR: LeakSanitizer: detected memory leaks

Indirect leak of 245760 byte(s) in 1 object(s) allocated from:
    #0 0x7f in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x55 in ngx_alloc (/usr/sbin/nginx+0x4ccfe)
    #2 0x55 in ngx_spawn_process (/usr/sbin/nginx+0x50212)
    #3 0x7f in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58

SUMMARY: AddressSanitizer: 245760 byte(s) leaked in 1 allocation(s).
EOF
(my $module_leak = $nginx_leak) =~ s{(    #2 )}{    #2 0x7f in crest_thing /work/main/ngx_modules/x.c:12\n$1};
ok !Crest::Test::asan_report_relevant($nginx_leak), "nginx's own exit-time leaks are ignored";
ok Crest::Test::asan_report_relevant($module_leak), 'leaks through module code are reported';
ok Crest::Test::asan_report_relevant("==1==ERROR: AddressSanitizer: heap-use-after-free\n"),
    'memory errors are reported';

# ---- spawn --------------------------------------------------------------
my $pid = $t->spawn(sleeper => ['sleep', '30']);
ok kill(0, $pid), 'spawned process runs';
my $st = $t->spawn_stop('sleeper');
is $st & 127, 15, 'spawn_stop terminated it with SIGTERM';

# ---- stop: one more test (error log check) -----------------------------
my $master = $t->nginx_master_pid;
$t->stop;
ok !kill(0, $master), 'nginx master gone';
ok !defined $t->pg_pid && !defined $t->redis_pid, 'backends gone';

# ---- cleanup of an instance that goes out of scope ----------------------
my $dir;
{
    my $t2 = Crest::Test->new(no_module => 1, no_pg => 1, no_redis => 1,
                              config => 'location / { return 204; }');
    $t2->start;
    is $t2->http(GET => '/x')->{status}, 204, 'second instance, no backends';
    $dir = $t2->dir;
    ok -d $dir, 'working dir exists';
}
ok !-e $dir || $ENV{CREST_TEST_KEEP}, 'working dir removed when the instance goes away';

done_testing;
