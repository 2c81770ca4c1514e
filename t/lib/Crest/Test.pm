package Crest::Test;

# A Test::Nginx-style harness for Crest, in core Perl only (Debian has no
# Test::Nginx and CPAN is out of reach).
#
# Each test file gets a private working directory, PostgreSQL (cloned from a
# cached empty cluster, then migrated), Redis and nginx, all on free ports on
# 127.0.0.1, stopped and removed at the end even when the test dies.
#
# Two ways to write tests:
#   declarative:  use Crest::Test; run_blocks(); __DATA__ with Test::Nginx
#                 style blocks (=== TEST 1: name / --- config / --- request ...)
#   imperative:   my $t = Crest::Test->new(config => '...'); $t->start;
#                 my $r = $t->http(GET => '/api/health/live'); ...; $t->stop;
#
# The servers are started with the functions of scripts/lib-stack.sh, the
# same code scripts/run.sh uses, and migrated with scripts/migrate.sh.

use strict;
use warnings;

use Test::More ();
use HTTP::Tiny;
use IO::Socket::IP;
use JSON::PP ();
use File::Temp ();
use File::Path qw(make_path remove_tree);
use File::Basename qw(dirname basename);
use Cwd qw(abs_path);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use Scalar::Util qw(weaken refaddr);

our $VERSION = '0.1';

our @EXPORT = qw(run_blocks blocks set_options);

my $REPO      = abs_path(dirname(__FILE__) . '/../../..');
my $LIB_STACK = "$REPO/scripts/lib-stack.sh";
my $MIGRATE   = "$REPO/scripts/migrate.sh";
my $TEMPLATE  = "$REPO/build/test-pg-template";

# Test clusters only listen on 127.0.0.1 and live for one test file.
our $PG_PASSWORD = 'crest-test-pw';

# Bump when the way the template cluster is made changes, to rebuild caches.
my $TEMPLATE_STAMP = "crest-test-template v1 pg15 pw=$PG_PASSWORD\n";

# Lines in nginx's error log that always mean a bug.
my @BAD_LOG_PATTERNS = (
    qr/\[alert\]/, qr/\[crit\]/, qr/\[emerg\]/,
    qr/open socket #\d+ left in connection/,
    qr/AddressSanitizer/, qr/LeakSanitizer/,
);

my $JSON = JSON::PP->new->utf8->allow_nonref->canonical;

my %LIVE;             # refaddr => weak ref of every instance, for END
my %FILE_OPTIONS;     # set_options(), used by run_blocks()
my $CURRENT;          # the instance run_blocks() uses
my @BLOCKS;           # parsed __DATA__
my $BLOCKS_LOADED;

sub import {
    my ($class, @args) = @_;
    my $caller = caller;
    # Test files get Test::More too (plan, ok, is, ...), like with Test::Nginx;
    # any arguments (tests => N, 'no_plan') go to Test::More.
    eval "package $caller; Test::More->import(\@args); 1" or die $@;
    no strict 'refs';
    *{"${caller}::$_"} = \&{"Crest::Test::$_"} for @EXPORT;
}

# An interrupted test (Ctrl-C, prove's timeout) must still stop its servers:
# exit() runs END blocks, a default signal death does not.
my @HANDLED_SIGNALS = qw(INT TERM HUP);
for my $sig (@HANDLED_SIGNALS) {
    $SIG{$sig} = sub { exit(128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1)) }
        if !defined $SIG{$sig} || $SIG{$sig} eq '' || $SIG{$sig} eq 'DEFAULT';
}
# Output piped into `head` or a closed terminal must not kill the test
# before it stops its servers: writes fail instead (children get the
# default back in _fork).
$SIG{PIPE} = 'IGNORE' if !defined $SIG{PIPE} || $SIG{PIPE} eq '' || $SIG{PIPE} eq 'DEFAULT';

END {
    local $?;    # keep the test's exit status
    for my $t (values %LIVE) {
        $t->_cleanup if $t;
    }
}

# ======================================================================
# Construction
# ======================================================================

# Crest::Test->new(%opts) creates the working directory and picks ports;
# start() starts the servers.  Options:
#   workers (1), log_level ('info'), main_config, events_config,
#   http_config, config               pieces of nginx.conf
#   no_pg, no_redis, no_nginx         do not start that server
#   no_module                         plain nginx: no load_module, no crest_*
#   no_migrate, sql_dir               skip migrations / use another sql/ dir
#   module, nginx                     paths (else $TEST_NGINX_LOAD_MODULES,
#                                     $TEST_NGINX_BINARY, the defaults)
#   check_on_stop (1)                 stop() runs check_error_log
#   allow_alerts ([])                 regexes every error log check tolerates
#   startup_timeout (15 s, 60 s under ASan)
sub new {
    my ($class, %opts) = @_;
    my $self = bless {
        workers       => 1,
        log_level     => 'info',
        main_config   => '',
        events_config => '',
        http_config   => '',
        config        => '',
        check_on_stop => 1,
        allow_alerts  => [],
        %opts,
        owner_pid     => $$,
        spawned       => {},
        err_mark      => 0,
        asan_reported => {},
    }, $class;

    $self->{asan} = $ENV{CREST_TEST_ASAN} ? 1 : 0;
    $self->{startup_timeout} //= $self->{asan} ? 60 : 15;
    $self->{nginx} //= $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    $self->{keep} = $ENV{CREST_TEST_KEEP} ? 1 : 0;

    unless ($self->{no_module}) {
        my @mods = $self->{module} ? ($self->{module})
                 : $ENV{TEST_NGINX_LOAD_MODULES} ? split(' ', $ENV{TEST_NGINX_LOAD_MODULES})
                 : ("$REPO/build/modules/ngx_http_crest_module.so");
        for (@mods) {
            die "Crest::Test: nginx module $_ not found (run `make modules`)\n" unless -f $_;
        }
        $self->{modules} = [map { abs_path($_) } @mods];
    }

    my $script = basename($0);
    $script =~ s/\.t$//;
    $script =~ s/[^A-Za-z0-9_-]+/_/g;
    $self->{dir} = File::Temp::tempdir("crest-test-$script-XXXXXX", DIR => _tmp_base());
    # nginx workers run as nobody and postgres as postgres: both must be able
    # to traverse the tree; the workers write logs (ASan) and temp files.
    chmod 0755, $self->{dir};
    for my $sub (qw(logs tmp html conf secrets redis)) {
        make_path("$self->{dir}/$sub");
    }
    chmod 0777, "$self->{dir}/logs", "$self->{dir}/tmp";
    chmod 0755, "$self->{dir}/html";

    # Unix socket paths are limited to 107 bytes.
    $self->{pg_sockdir} = "$self->{dir}/pgsock";
    if (length($self->{pg_sockdir}) > 80) {
        $self->{pg_sockdir} = File::Temp::tempdir('crest-sock-XXXXXX', DIR => '/tmp');
        $self->{own_sockdir} = 1;
    }

    # Distinct free ports for nginx, PostgreSQL and Redis.
    my %seen;
    for my $k (qw(port pg_port redis_port)) {
        my $p;
        do { $p = _stack_capture('stack_free_port') } while $seen{$p}++;
        $self->{$k} = $p;
    }

    my $secret = $ENV{CREST_TEST_JWT_SECRET} // join '', map { sprintf '%02x', int rand 256 } 1 .. 32;
    $self->{jwt_secret} = $secret;
    _write_file("$self->{dir}/secrets/jwt_secret", "$secret\n");
    chmod 0644, "$self->{dir}/secrets/jwt_secret";

    $LIVE{refaddr $self} = $self;
    weaken $LIVE{refaddr $self};
    return $self;
}

# ---- accessors --------------------------------------------------------
sub dir            { $_[0]{dir} }
sub port           { $_[0]{port} }
sub pg_port        { $_[0]{pg_port} }
sub redis_port     { $_[0]{redis_port} }
sub html_dir       { "$_[0]{dir}/html" }
sub pg_password    { $PG_PASSWORD }
sub jwt_secret     { $_[0]{jwt_secret} }
sub jwt_secret_file { "$_[0]{dir}/secrets/jwt_secret" }
sub nginx_master_pid { $_[0]{nginx_pid} }
sub pg_conninfo {
    my $self = shift;
    "hostaddr=127.0.0.1 port=$self->{pg_port} dbname=crest user=crest password=$PG_PASSWORD";
}
sub database_url { "postgresql://crest:$PG_PASSWORD\@127.0.0.1:$_[0]{pg_port}/crest" }
sub redis_url    { "redis://127.0.0.1:$_[0]{redis_port}/0" }
sub redis_addr   { "127.0.0.1:$_[0]{redis_port}" }
sub url {
    my ($self, $path) = @_;
    $path //= '/';
    $path = "/$path" unless $path =~ m{^/};
    return "http://127.0.0.1:$self->{port}$path";
}

# ======================================================================
# Lifecycle
# ======================================================================

# Start PostgreSQL (+ migrations), Redis and nginx, as the options say.
sub start {
    my $self = shift;
    $self->start_backends;
    $self->nginx_start unless $self->{no_nginx};
    return $self;
}

sub start_backends {
    my $self = shift;
    unless ($self->{no_pg} || $self->{pg_created}) {
        _ensure_pg_template();
        $self->_stack('stack_pg_clone', $TEMPLATE, "$self->{dir}/pg");
        $self->{pg_created} = 1;
        $self->pg_start;
        $self->migrate unless $self->{no_migrate};
    }
    unless ($self->{no_redis} || $self->{redis_running}) {
        $self->redis_start;
    }
    return $self;
}

# Stop nginx gracefully (then check its error log: one ok(), unless
# check_on_stop => 0 or ->stop(check => 0)), spawned processes, Redis and
# PostgreSQL.  The working directory stays until the end of the test file.
sub stop {
    my ($self, %o) = @_;
    my $check = exists $o{check} ? $o{check} : $self->{check_on_stop};
    my $had_nginx = $self->{nginx_started};
    $self->nginx_stop if $self->{nginx_pid};
    if ($check && $had_nginx) {
        $self->check_error_log(name => 'nginx error log clean after shutdown');
        $self->{log_checked} = 1;    # no second report at cleanup
    }
    $self->spawn_stop($_) for keys %{ $self->{spawned} };
    $self->redis_stop if $self->{redis_running};
    $self->pg_stop if $self->{pg_running};
    return $self;
}

# Run scripts/migrate.sh against this test's database.
sub migrate {
    my ($self, %o) = @_;
    local $ENV{DATABASE_URL} = $self->database_url;
    local $ENV{CREST_SQL_DIR} = $o{sql_dir} // $self->{sql_dir} // $ENV{CREST_SQL_DIR};
    delete $ENV{CREST_SQL_DIR} unless defined $ENV{CREST_SQL_DIR};
    my $log = "$self->{dir}/logs/migrate.log";
    my $rc = _run_to_file($log, $MIGRATE);
    if ($rc != 0) {
        die "Crest::Test: migrations failed:\n" . _tail($log, 30) unless $o{no_die};
    }
    return $rc;
}

# ---- PostgreSQL -------------------------------------------------------
sub pg_start {
    my $self = shift;
    die "Crest::Test: no_pg set\n" if $self->{no_pg};
    $self->_stack('stack_pg_start', "$self->{dir}/pg", $self->{pg_port},
                  $self->{pg_sockdir}, "$self->{dir}/logs/pg.log");
    $self->{pg_running} = 1;
    return $self;
}

sub pg_stop {
    my $self = shift;
    return $self unless $self->{pg_running};
    $self->pg_resume if $self->{pg_paused};
    $self->_stack('stack_pg_stop', "$self->{dir}/pg");
    $self->{pg_running} = 0;
    return $self;
}

sub pg_pid {
    my $self = shift;
    my $pid = eval { _stack_capture('stack_pg_pid', "$self->{dir}/pg") };
    return $pid;
}

# Freeze the whole server (postmaster first so it forks nothing new, then
# every child): connections stay open but nothing answers, like a hung DB.
sub pg_pause {
    my $self = shift;
    my $pm = $self->pg_pid or die "Crest::Test: postgres is not running\n";
    kill 'STOP', $pm;
    my @kids = _children_of($pm);
    kill 'STOP', @kids if @kids;
    $self->{pg_paused} = [$pm, @kids];
    return $self;
}

sub pg_resume {
    my $self = shift;
    my $paused = delete $self->{pg_paused} or return $self;
    my ($pm, @kids) = @$paused;
    kill 'CONT', @kids, _children_of($pm);
    kill 'CONT', $pm;
    return $self;
}

# psql($sql, timeout => s, db => name) — run SQL (any number of
# statements) as crest over TCP; returns the unaligned, tuples-only output
# (a list of lines in list context); dies with psql's error output on
# failure or after the timeout (default 30 s; also the connect timeout).
sub psql {
    my ($self, $sql, %o) = @_;
    die "Crest::Test: no_pg set\n" if $self->{no_pg};
    my $file = "$self->{dir}/tmp/psql.$$.sql";
    my $err  = "$self->{dir}/tmp/psql.$$.err";
    _write_file($file, $sql);
    local $ENV{PGPASSWORD} = $PG_PASSWORD;
    my $timeout = $o{timeout} // 30;
    local $ENV{PGCONNECT_TIMEOUT} = $timeout < 2 ? 2 : int $timeout;
    # timeout(1): a query against a paused or wedged server must not hang
    # the test.
    my @cmd = ('timeout', '-k', '2', $timeout, 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
               '-h', '127.0.0.1', '-p', $self->{pg_port}, '-U', 'crest',
               '-d', $o{db} // 'crest', '-f', $file);
    my $out = _capture(\@cmd, $err);
    my $rc = $?;
    my $errtext = _slurp($err) // '';
    unlink $file, $err;
    die "Crest::Test: psql failed ($rc): $errtext" if $rc != 0;
    chomp $out;
    return wantarray ? split(/\n/, $out) : $out;
}

# ---- Redis ------------------------------------------------------------
sub redis_start {
    my $self = shift;
    die "Crest::Test: no_redis set\n" if $self->{no_redis};
    $self->_stack('stack_redis_start', "$self->{dir}/redis", $self->{redis_port});
    $self->{redis_running} = 1;
    return $self;
}

sub redis_stop {
    my $self = shift;
    return $self unless $self->{redis_running};
    $self->_stack('stack_redis_stop', "$self->{dir}/redis");
    $self->{redis_running} = 0;
    return $self;
}

sub redis_pid {
    my $self = shift;
    return eval { _stack_capture('stack_redis_pid', "$self->{dir}/redis") };
}

# redis_cli(@args) — e.g. redis_cli(qw(LLEN queue)); returns the raw
# output (list of lines in list context); dies on failure or after 30 s.
sub redis_cli {
    my ($self, @args) = @_;
    my $err = "$self->{dir}/tmp/redis-cli.$$.err";
    my $out = _capture(['timeout', '-k', '2', '30',
                        'redis-cli', '-h', '127.0.0.1', '-p', $self->{redis_port}, @args], $err);
    my $rc = $?;
    my $errtext = _slurp($err) // '';
    unlink $err;
    die "Crest::Test: redis-cli @args failed ($rc): $errtext\n" if $rc != 0;
    chomp $out;
    return wantarray ? split(/\n/, $out) : $out;
}

# ======================================================================
# nginx
# ======================================================================

# Replace parts of the nginx configuration (keys as in new()); takes effect
# at the next nginx_start or nginx_reload.
sub set_config {
    my ($self, %cfg) = @_;
    for my $k (qw(main_config events_config http_config config workers log_level)) {
        $self->{$k} = $cfg{$k} if exists $cfg{$k};
    }
    return $self;
}

sub vars {
    my $self = shift;
    return {
        TEST_NGINX_SERVER_PORT     => $self->{port},
        TEST_NGINX_PG_PORT         => $self->{pg_port},
        TEST_NGINX_REDIS_PORT      => $self->{redis_port},
        TEST_NGINX_REDIS_ADDR      => $self->redis_addr,
        TEST_NGINX_PG_CONNINFO     => $self->pg_conninfo,
        TEST_NGINX_PG_PASSWORD     => $PG_PASSWORD,
        TEST_NGINX_DATABASE_URL    => $self->database_url,
        TEST_NGINX_REDIS_URL       => $self->redis_url,
        TEST_NGINX_HTML_DIR        => $self->html_dir,
        TEST_NGINX_TEST_DIR        => $self->{dir},
        TEST_NGINX_SERVER_ROOT     => $self->{dir},
        TEST_NGINX_JWT_SECRET_FILE => $self->jwt_secret_file,
        TEST_NGINX_REPO_DIR        => $REPO,
    };
}

# Replace $TEST_NGINX_* variables; unknown ones are looked up in %ENV
# (as Test::Nginx does) and otherwise left alone.
sub subst {
    my ($self, $text) = @_;
    return $text unless defined $text;
    my $v = $self->vars;
    $text =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        exists $v->{$1} ? $v->{$1} : exists $ENV{$1} ? $ENV{$1} : "\$$1"
    }ge;
    return $text;
}

sub nginx_conf_text {
    my $self = shift;
    my $d = $self->{dir};
    my $http_config = $self->subst($self->{http_config});
    my @c;
    push @c, "# generated by Crest::Test for $0",
             'daemon off;',
             'master_process on;',
             "worker_processes $self->{workers};",
             "pid $d/logs/nginx.pid;",
             "error_log $d/logs/error.log $self->{log_level};";
    # As root, nginx would run its workers as nobody anyway; say so, and
    # keep the group explicit (Debian's nobody has no "nobody" group).
    push @c, 'user nobody nogroup;' if $> == 0;
    push @c, 'env ASAN_OPTIONS;', 'env LD_PRELOAD;' if $self->{asan};
    push @c, map { "load_module $_;" } @{ $self->{modules} || [] };
    my $main_config = $self->subst($self->{main_config});
    # as conf/nginx.conf.in: the pool password hashing runs on
    push @c, 'thread_pool crest_hash threads=2;'
        unless $self->{no_module} || $main_config =~ /\bthread_pool\s+crest_hash\b/;
    push @c, $main_config, '',
             'events {',
             '    worker_connections 1024;',
             $self->subst($self->{events_config}),
             '}', '',
             'http {',
             '    default_type application/octet-stream;',
             "    access_log $d/logs/access.log;",
             (map { "    ${_}_temp_path $d/tmp/$_;" } qw(client_body proxy fastcgi uwsgi scgi));
    unless ($self->{no_module}) {
        push @c, '    crest_pg_conninfo "' . $self->pg_conninfo . '";'
            unless $self->{no_pg} || $http_config =~ /\bcrest_pg_conninfo\b/;
        push @c, '    crest_redis_server ' . $self->redis_addr . ';'
            unless $self->{no_redis} || $http_config =~ /\bcrest_redis_server\b/;
        # and a signing key, unless the test brings its own keys
        push @c, '    crest_auth_jwt_secret_file ' . $self->jwt_secret_file . ';'
            unless $http_config =~ /\bcrest_auth_(jwt_secret_file|jwt_key|jwks)\b/;
    }
    push @c, $http_config, '',
             '    server {',
             "        listen 127.0.0.1:$self->{port};",
             '        server_name localhost;',
             $self->subst($self->{config}),
             '    }',
             '}', '';
    return join "\n", @c;
}

sub _write_nginx_conf {
    my $self = shift;
    my $text = $self->nginx_conf_text;
    _write_file("$self->{dir}/conf/nginx.conf", $text);
    return $text;
}

sub _asan_env {
    my $self = shift;
    return () unless $self->{asan};
    chomp(my $lib = `gcc -print-file-name=libasan.so`);
    die "Crest::Test: libasan.so not found (gcc -print-file-name)\n" unless $lib =~ m{/} && -e $lib;
    return (
        LD_PRELOAD   => $lib,
        ASAN_OPTIONS => "detect_leaks=1:fast_unwind_on_malloc=0:log_path=$self->{dir}/logs/asan:abort_on_error=0:detect_odr_violation=0",
    );
}

# Start nginx in the foreground (daemon off) as our child, so that we know
# the master's pid; wait until it listens and all workers are up.
sub nginx_start {
    my $self = shift;
    die "Crest::Test: nginx already running\n" if $self->{nginx_pid};
    $self->{conf_text} = $self->_write_nginx_conf;
    my $d = $self->{dir};
    my @cmd = ($self->{nginx}, '-p', "$d/", '-c', "$d/conf/nginx.conf", '-e', "$d/logs/error.log");
    my %env = $self->_asan_env;
    my $log_offset = -s "$d/logs/error.log" // 0;

    my $pid = _fork();
    if ($pid == 0) {
        # The child must never run the parent's END blocks or destructors.
        eval {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', "$d/logs/nginx.out";
            open STDERR, '>&', \*STDOUT;
            $ENV{$_} = $env{$_} for keys %env;
            exec { $cmd[0] } @cmd;
        };
        POSIX::_exit(127);
    }
    $self->{nginx_pid} = $pid;
    $self->{nginx_started} = 1;
    $self->{log_checked} = 0;

    my $deadline = time + $self->{startup_timeout};
    my $listening;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $status = $?;
            delete $self->{nginx_pid};
            die "Crest::Test: nginx exited at startup (status $status)\n"
              . _tail("$d/logs/nginx.out", 20) . _tail("$d/logs/error.log", 30, $log_offset);
        }
        if (!$listening) {
            $listening = _is_listening($self->{port});
        }
        if ($listening && $self->nginx_pids == $self->_worker_count) {
            return $self;
        }
        sleep 0.02;
    }
    my $tail = _tail("$d/logs/error.log", 30, $log_offset);
    $self->nginx_stop;
    die "Crest::Test: nginx did not come up within $self->{startup_timeout}s\n$tail";
}

# How many workers `worker_processes` means.
sub _worker_count {
    my $self = shift;
    return $self->{workers} if $self->{workers} =~ /^\d+$/;
    my $n = () = (_slurp('/proc/cpuinfo') // '') =~ /^processor\s*:/mg;    # 'auto'
    return $n || 1;
}

# Graceful stop (SIGQUIT: finish in-flight requests), escalating if needed.
sub nginx_stop {
    my $self = shift;
    my $pid = $self->{nginx_pid} or return $self;
    my $grace = $self->{asan} ? 60 : 15;
    kill 'QUIT', $pid;
    unless (_wait_child($pid, $grace)) {
        Test::More::diag("Crest::Test: nginx did not quit within ${grace}s, sending SIGTERM");
        kill 'TERM', $pid;
        unless (_wait_child($pid, 5)) {
            kill 'KILL', $pid;
            _wait_child($pid, 5);
        }
    }
    delete $self->{nginx_pid};
    return $self;
}

sub nginx_restart {
    my $self = shift;
    $self->nginx_stop;
    return $self->nginx_start;
}

# SIGHUP the master (after applying %cfg like set_config) and wait until a
# full set of new workers runs.  Dies with the error log if nginx rejected
# the new configuration.
sub nginx_reload {
    my ($self, %cfg) = @_;
    my $pid = $self->{nginx_pid} or die "Crest::Test: nginx is not running\n";
    $self->set_config(%cfg);
    $self->{conf_text} = $self->_write_nginx_conf;
    my %old = map { $_ => 1 } $self->nginx_pids;
    my $log_offset = -s "$self->{dir}/logs/error.log" // 0;
    kill 'HUP', $pid;
    my $deadline = time + $self->{startup_timeout};
    while (time < $deadline) {
        # Done when a full set of new workers runs and every old one has
        # seen the signal (it renames itself "... is shutting down").
        my @now = $self->nginx_pids;
        my @new = grep { !$old{$_} } @now;
        return $self if @new >= $self->_worker_count && @new == @now;
        my $log = _slurp_from("$self->{dir}/logs/error.log", $log_offset);
        die "Crest::Test: nginx rejected the new configuration:\n$log"
            if $log =~ /\[emerg\]/;
        sleep 0.02;
    }
    die "Crest::Test: nginx reload did not complete\n"
      . _tail("$self->{dir}/logs/error.log", 30, $log_offset);
}

# Pids of the master's live worker processes (not the ones shutting down
# after a reload, nor cache manager/loader).
sub nginx_pids {
    my $self = shift;
    my $pid = $self->{nginx_pid} or return;
    my @w;
    for my $kid (_children_of($pid)) {
        my $cmd = _slurp("/proc/$kid/cmdline") // next;
        $cmd =~ s/\0+$//;
        push @w, $kid if $cmd eq 'nginx: worker process';
    }
    @w = sort { $a <=> $b } @w;
    return @w;    # a count in scalar context
}

# ======================================================================
# Error log
# ======================================================================

sub error_log_file { "$_[0]{dir}/logs/error.log" }

# error_log([$offset]) — the log's content (from byte $offset).
sub error_log {
    my ($self, $offset) = @_;
    return _slurp_from($self->error_log_file, $offset // 0);
}

sub error_log_offset { -s $_[0]->error_log_file // 0 }

# Later check_error_log calls (and the one at stop) only look at what is
# logged from now on: for tests that provoke an alert on purpose.
sub mark_error_log {
    my $self = shift;
    $self->{out_mark} = -s "$self->{dir}/logs/nginx.out" // 0;
    $self->{err_mark} = $self->error_log_offset;
    return $self->{err_mark};
}

# wait_for_error_log($regex_or_substring, $timeout = 5, $offset = mark)
sub wait_for_error_log {
    my ($self, $pat, $timeout, $offset) = @_;
    $timeout //= 5;
    $offset //= $self->{err_mark};
    my $re = ref $pat ? $pat : qr/\Q$pat\E/;
    my $deadline = time + $timeout;
    do {
        return 1 if $self->error_log($offset) =~ $re;
        sleep 0.02;
    } while (time < $deadline);
    return 0;
}

# The lines (and ASan reports) that must fail a test; see @BAD_LOG_PATTERNS.
sub bad_log_lines {
    my ($self, %o) = @_;
    my @ignore = (@{ $self->{allow_alerts} }, @{ $o{ignore} || [] });
    my @lines = split /\n/, $self->error_log($o{from} // $self->{err_mark});
    # nginx's own stderr: only sanitizer reports matter there (everything
    # else nginx says is in error.log too, thanks to -e).
    push @lines, grep { /Sanitizer/ }
        split /\n/, _slurp_from("$self->{dir}/logs/nginx.out", $self->{out_mark} // 0);
    my @bad;
    LINE: for my $line (@lines) {
        next unless grep { $line =~ $_ } @BAD_LOG_PATTERNS;
        for (@ignore) { next LINE if $line =~ $_ }
        push @bad, $line;
    }
    return @bad;
}

# ASan/LSan reports not yet reported by an earlier check.
sub _new_asan_reports {
    my $self = shift;
    my @reports;
    for my $f (sort glob("$self->{dir}/logs/asan.*")) {
        next if $self->{asan_reported}{$f};
        my $text = _slurp($f) // next;
        next unless $text =~ /ERROR: (?:AddressSanitizer|LeakSanitizer)/;
        $self->{asan_reported}{$f} = 1;
        push @reports, "==> $f <==\n$text" if asan_report_relevant($text, $self->{nginx});
    }
    return @reports;
}

# Debian's nginx itself leaks a few arrays when a worker exits (it frees the
# cycle pool but not the connection and event arrays ngx_alloc'ed at worker
# start), and a PCRE2 compile context per regex compiled from the config.  A leak record counts only if some frame of its allocation stack
# lies outside nginx and libc, i.e. in the Crest module or a library it
# calls.  Memory errors always count, and CREST_TEST_ASAN_STRICT=1 counts
# every leak.
sub asan_report_relevant {
    my ($text, $nginx) = @_;
    $nginx //= '/usr/sbin/nginx';
    return 1 if $text =~ /ERROR: AddressSanitizer/ || $ENV{CREST_TEST_ASAN_STRICT};
    return 0 unless $text =~ /ERROR: LeakSanitizer/;
    for my $rec (split /\n(?=(?:Direct|Indirect) leak of )/, $text) {
        next unless $rec =~ /^(?:Direct|Indirect) leak of /;
        my @frames = $rec =~ /^\s*#\d+ +(.*)$/mg;
        shift @frames;    # the malloc interceptor
        return 1 unless @frames;    # no stack: cannot tell, report it
        # nginx's regex compilation leaks a PCRE2 compile context too
        next if grep { /ngx_regex_compile/ } @frames
                and !grep { /ngx_http_crest|ngx_crest|crest_/ } @frames;
        return 1 if grep { !m{\(\Q$nginx\E\+0x|/libc\.so|libc_start|libc-start} } @frames;
    }
    return 0;
}

# check_error_log(name => ..., from => offset, ignore => [qr//]) — one
# Test::More ok(): no alert/crit/emerg, leaked socket or sanitizer report.
sub check_error_log {
    my ($self, %o) = @_;
    my @bad = $self->bad_log_lines(%o);
    my @asan = $self->_new_asan_reports;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = Test::More->builder->ok(!@bad && !@asan, $o{name} // 'nginx error log has no alerts');
    unless ($ok) {
        Test::More::diag("bad error log lines:\n" . join("\n", @bad[0 .. ($#bad > 29 ? 29 : $#bad)]))
            if @bad;
        # Full reports stay in logs/asan.*; the head says what and where.
        Test::More::diag(_first_lines($_, 60)) for @asan;
    }
    return $ok;
}

# ======================================================================
# HTTP
# ======================================================================

# http(METHOD => '/path', headers => {...}, body => '...', json => $data,
#      timeout => seconds) — one request on a fresh connection.
# Returns { status, reason, headers (lower-case keys; repeated headers are
# array refs), content, json (decoded body or undef), elapsed (seconds) }.
# status 599 means no HTTP response (connection failed/timed out).
sub http {
    my ($self, $method, $path, %o) = @_;
    my %headers = %{ $o{headers} || {} };
    my $body = $o{body};
    if (exists $o{json}) {
        $body = $JSON->encode($o{json});
        $headers{'Content-Type'} //= 'application/json'
            unless grep { lc $_ eq 'content-type' } keys %headers;
    }
    my $ua = HTTP::Tiny->new(
        timeout      => $o{timeout} // 10,
        max_redirect => 0,
        keep_alive   => 0,
        agent        => 'crest-test/1 ',
    );
    my $url = $path =~ m{^https?://} ? $path : $self->url($path);
    my %req = (headers => \%headers);
    $req{content} = $body if defined $body;
    my $t0 = time;
    my $res = $ua->request(uc $method, $url, \%req);
    my $elapsed = time - $t0;
    my $content = $res->{content} // '';
    my $json;
    $json = eval { $JSON->decode($content) } if length $content;
    return {
        status  => $res->{status},
        reason  => $res->{reason},
        headers => $res->{headers} || {},
        content => $content,
        json    => $json,
        elapsed => $elapsed,
    };
}

# raw($bytes, timeout => s) — write raw bytes to the server, return all it
# sends back until it closes the connection (or the timeout): for malformed
# or pipelined requests.
sub raw {
    my ($self, $bytes, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $self->{port},
                                Proto => 'tcp', Timeout => $timeout)
        or die "Crest::Test: connect: $!\n";
    $s->autoflush(1);
    print {$s} $bytes;
    my $out = '';
    my $deadline = time + $timeout;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    while (time < $deadline) {
        my $n = select(my $rout = $rin, undef, undef, $deadline - time);
        last if $n <= 0;
        my $r = sysread($s, my $buf, 65536);
        last unless $r;
        $out .= $buf;
    }
    close $s;
    return $out;
}

# ======================================================================
# Other processes (e.g. build/bin/crest-worker)
# ======================================================================

# spawn($name, \@cmd, env => {...}) — run a program in the background with
# stdout/stderr in logs/$name.log; stopped by stop() or spawn_stop().
sub spawn {
    my ($self, $name, $cmd, %o) = @_;
    die "Crest::Test: $name already spawned\n" if $self->{spawned}{$name};
    my $log = "$self->{dir}/logs/$name.log";
    my $pid = _fork();
    if ($pid == 0) {
        eval {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', $log;
            open STDERR, '>&', \*STDOUT;
            $ENV{$_} = $o{env}{$_} for keys %{ $o{env} || {} };
            exec { $cmd->[0] } @$cmd;
        };
        POSIX::_exit(127);
    }
    $self->{spawned}{$name} = $pid;
    return $pid;
}

sub spawned_pid { $_[0]{spawned}{ $_[1] } }

# spawn_stop($name, signal => 'TERM', timeout => 15) — returns the wait
# status ($?), SIGKILLing after the timeout.
sub spawn_stop {
    my ($self, $name, %o) = @_;
    my $pid = delete $self->{spawned}{$name} or return;
    kill($o{signal} // 'TERM', $pid);
    return $? if _wait_child($pid, $o{timeout} // 15);
    kill 'KILL', $pid;
    _wait_child($pid, 5);
    return $?;
}

# ======================================================================
# Cleanup
# ======================================================================

# Silent, idempotent teardown: for END/DESTROY and dying tests.
sub _cleanup {
    my $self = shift;
    return if $self->{cleaned} || $$ != $self->{owner_pid};
    $self->{cleaned} = 1;
    eval { $self->nginx_stop };
    for my $name (keys %{ $self->{spawned} }) {
        eval { $self->spawn_stop($name, timeout => 5) };
    }
    eval { $self->pg_resume };
    eval { $self->redis_stop };
    eval { $self->pg_stop };
    # Not a test (the plan is fixed by now), but do not let alerts pass
    # silently in a test that never called stop().
    if (!$self->{log_checked} and my @bad = eval { $self->bad_log_lines }) {
        Test::More::diag("Crest::Test: alerts in $self->{dir}/logs/error.log:\n" . join("\n", @bad));
    }
    delete $LIVE{refaddr $self};
    if ($self->{keep}) {
        Test::More::diag("Crest::Test: kept $self->{dir}");
        return;
    }
    eval { $self->_stack('stack_pg_remove', "$self->{dir}/pg") } if $self->{pg_created};
    remove_tree($self->{pg_sockdir}) if $self->{own_sockdir};
    remove_tree($self->{dir});
}

sub DESTROY {
    my $self = shift;
    local ($@, $?);
    $self->_cleanup;
}

# ======================================================================
# Declarative blocks
# ======================================================================

# set_options(%opts) — new() options for the instance run_blocks() creates.
sub set_options { %FILE_OPTIONS = (%FILE_OPTIONS, @_) }

# The instance run_blocks() is using (for hooks).
sub current { $CURRENT }

sub blocks {
    _load_blocks() unless $BLOCKS_LOADED;
    return wantarray ? @BLOCKS : scalar @BLOCKS;
}

sub _load_blocks {
    $BLOCKS_LOADED = 1;
    my $text;
    no warnings 'once';
    if (defined fileno(*main::DATA)) {
        local $/;
        $text = readline(*main::DATA);
    } else {
        # No DATA handle (e.g. the script was not the main program): parse
        # the script itself.
        my $src = _slurp($0) // '';
        ($text) = $src =~ /^__(?:DATA|END)__\n(.*)\z/ms;
    }
    @BLOCKS = _parse_blocks($text // '');
}

# Test::Base syntax as Test::Nginx uses it:
#   === TEST 1: name
#   --- section [filters]      content on the following lines
#   --- section: value         one-line value
# Filters: chomp (drop the final newline), eval (the content is Perl code
# whose value is used).  Leading and trailing blank lines are dropped.
sub _parse_blocks {
    my $text = shift;
    my @blocks;
    my @parts = split /^===[ \t]+(.*?)[ \t]*\n/m, $text;
    shift @parts;    # preamble
    while (@parts) {
        my ($name, $body) = splice @parts, 0, 2;
        my %b = (name => $name);
        my @secs = split /^---[ \t]+(\w+)(?:[ \t]*:[ \t]*(.*?)|((?:[ \t]+\w+)*))[ \t]*\n/m, $body // '';
        shift @secs;
        while (@secs) {
            my ($sec, $inline, $filters, $content) = splice @secs, 0, 4;
            if (defined $inline) {
                $b{$sec} = $inline;
                next;
            }
            $content //= '';
            $content =~ s/\A(?:[ \t]*\n)+//;
            $content =~ s/(?:\n[ \t]*)+\z//;
            $content .= "\n" if length $content;
            for my $f (split ' ', $filters // '') {
                if ($f eq 'chomp') {
                    chomp $content;
                } elsif ($f eq 'eval') {
                    my $v = eval "package main; no strict; $content";
                    die "Crest::Test: eval of --- $sec in '$name' failed: $@" if $@;
                    $content = $v;
                } else {
                    die "Crest::Test: unknown filter '$f' in --- $sec of '$name'\n";
                }
            }
            $b{$sec} = $content;
        }
        push @blocks, \%b;
    }
    return @blocks;
}

# run_blocks(before_each => sub { my ($t, $block) = @_; ... })
# Runs every __DATA__ block as one subtest, then stops the servers, which
# adds one final test (error log clean at shutdown).  Plans blocks()+1 tests
# if the file has not planned yet.
sub run_blocks {
    my %o = @_;
    my @blocks = blocks();
    my @only = grep { exists $_->{ONLY} } @blocks;
    @blocks = @only if @only;
    my $tb = Test::More->builder;
    $tb->plan(tests => @blocks + 1) unless $tb->has_plan;

    my $t = $CURRENT = Crest::Test->new(%FILE_OPTIONS, no_nginx => 1);
    $t->start_backends;
    my %base = map { $_ => $t->{$_} } qw(workers log_level main_config events_config http_config config);
    my $mark = $t->error_log_offset;

    for my $block (@blocks) {
        Test::More::subtest($block->{name} => sub {
            Test::More::plan(skip_all => 'SKIP') if exists $block->{SKIP};
            eval { _run_block($t, $block, \%base, $mark, \%o); 1 } or do {
                Test::More::fail('block ran to the end');
                Test::More::diag($@);
            };
        });
        $mark = $t->error_log_offset;
    }
    # The final check covers what came after the last block: nginx's shutdown.
    $t->{err_mark} = $mark;
    $t->stop;
    return $t;
}

sub _run_block {
    my ($t, $block, $base, $mark, $o) = @_;

    my %cfg = %$base;
    for my $k (qw(workers log_level main_config events_config http_config config)) {
        $cfg{$k} = $block->{$k} if defined $block->{$k};
    }
    $t->set_config(%cfg);
    my $text = $t->nginx_conf_text;
    if ($t->{nginx_pid} && $text ne ($t->{conf_text} // '')) {
        if ($ENV{TEST_NGINX_USE_HUP}) {
            eval { $t->nginx_reload; 1 } or do {
                Test::More::fail('nginx reloaded');
                Test::More::diag($@);
                return;
            };
        } else {
            $t->nginx_stop;
        }
    }
    unless ($t->{nginx_pid}) {
        eval { $t->nginx_start; 1 } or do {
            Test::More::fail('nginx started');
            Test::More::diag($@);
            return;
        };
    }

    $t->psql($block->{init_sql}) if defined $block->{init_sql};
    $o->{before_each}->($t, $block) if $o->{before_each};

    if (defined $block->{request}) {
        my $req = $t->subst($block->{request});
        $req =~ s/\A\s+//;
        my ($line, $body) = split /\n/, $req, 2;
        my ($method, $uri) = split ' ', $line;
        # Like Test::Nginx: the body is the rest of --- request, or
        # --- request_body, without the section's final newline.
        $body = $t->subst($block->{request_body}) if defined $block->{request_body};
        if (defined $body && !ref $body) {
            $body =~ s/\n\z//;
            undef $body if $body eq '' && !defined $block->{request_body};
        }
        my %headers;
        for my $h (split /\n/, $t->subst($block->{more_headers} // '')) {
            next unless $h =~ /\S/;
            my ($k, $v) = $h =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or die "bad header line '$h'\n";
            $headers{$k} = exists $headers{$k} ? [ (ref $headers{$k} ? @{ $headers{$k} } : $headers{$k}), $v ] : $v;
        }
        my $res = $t->http($method, $uri, headers => \%headers, body => $body,
                           timeout => $block->{timeout});
        _check_response($t, $block, $res);
    }

    _check_logs($t, $block, $mark);
}

sub _check_response {
    my ($t, $block, $res) = @_;
    my $want_status = $block->{error_code} // 200;
    $want_status =~ s/\s+//g;
    Test::More::is($res->{status}, $want_status, 'status code')
        or Test::More::diag("response body: " . substr($res->{content}, 0, 2000));

    Test::More::is($res->{content}, $block->{response_body}, 'response body')
        if defined $block->{response_body};

    if (defined $block->{response_body_like}) {
        my $re = $block->{response_body_like};
        chomp $re;
        Test::More::like($res->{content}, qr/$re/s, 'response body like');
    }

    if (defined $block->{response_headers}) {
        for my $h (split /\n/, $t->subst($block->{response_headers})) {
            next unless $h =~ /\S/;
            if ($h =~ /^\s*!\s*(\S+)\s*$/) {
                Test::More::ok(!exists $res->{headers}{ lc $1 }, "header $1 absent");
                next;
            }
            my ($k, $v) = $h =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or die "bad header line '$h'\n";
            my $got = $res->{headers}{ lc $k };
            $got = join ', ', @$got if ref $got;
            if ($v =~ s/^re://) {
                Test::More::like($got, qr/$v/, "header $k");
            } else {
                Test::More::is($got, $v, "header $k");
            }
        }
    }

    if (defined $block->{response_json}) {
        my $want = ref $block->{response_json} ? $block->{response_json}
                 : JSON::PP->new->relaxed->allow_nonref->decode($block->{response_json});
        if (!defined $res->{json} && length $res->{content}) {
            Test::More::fail('response is JSON');
            Test::More::diag("body: " . substr($res->{content}, 0, 2000));
        } else {
            my $err = json_subset($want, $res->{json});
            Test::More::ok(!defined $err, 'response JSON') or Test::More::diag(
                "$err\ngot: " . substr($JSON->encode($res->{json}), 0, 2000));
        }
    }
}

sub _check_logs {
    my ($t, $block, $mark) = @_;
    my @want = grep { /\S/ } split /\n/, ($block->{error_log} // '');
    my @not  = grep { /\S/ } split /\n/, ($block->{no_error_log} // '');
    my $to_re = sub { my $l = shift; $l =~ s/^re:// ? qr/$l/ : qr/\Q$l\E/ };

    # Log-phase lines are written after the response is sent: give them a
    # moment to appear.
    if (@want) {
        my $deadline = time + 3;
        while (time < $deadline) {
            my $log = $t->error_log($mark);
            last unless grep { $log !~ $to_re->($_) } @want;
            sleep 0.02;
        }
    } elsif (@not) {
        sleep 0.05;
    }
    my $log = $t->error_log($mark);
    Test::More::like($log, $to_re->($_), "error log has: $_") for @want;
    Test::More::unlike($log, $to_re->($_), "error log lacks: $_") for @not;

    unless (exists $block->{allow_alerts}) {
        $t->check_error_log(from => $mark, name => 'no alerts in error log')
            or Test::More::diag("error log of this block:\n" . _last_lines($log, 40));
    }
}

# json_subset($want, $got) — undef if every key/value of $want is in $got
# (recursively; arrays must have the same length and match elementwise),
# else a message saying where they differ.
sub json_subset {
    my ($want, $got, $path) = @_;
    $path //= '$';
    if (ref $want eq 'HASH') {
        return "$path: expected an object" unless ref $got eq 'HASH';
        for my $k (sort keys %$want) {
            return "$path.$k: missing" unless exists $got->{$k};
            my $e = json_subset($want->{$k}, $got->{$k}, "$path.$k");
            return $e if defined $e;
        }
        return undef;
    }
    if (ref $want eq 'ARRAY') {
        return "$path: expected an array" unless ref $got eq 'ARRAY';
        return "$path: expected " . @$want . " elements, got " . @$got unless @$want == @$got;
        for my $i (0 .. $#$want) {
            my $e = json_subset($want->[$i], $got->[$i], "$path\[$i]");
            return $e if defined $e;
        }
        return undef;
    }
    if (!defined $want) {
        return defined $got ? "$path: expected null" : undef;
    }
    if (JSON::PP::is_bool($want)) {
        return "$path: expected " . ($want ? 'true' : 'false')
            unless JSON::PP::is_bool($got) && !!$got == !!$want;
        return undef;
    }
    return "$path: expected '$want', got " . (defined $got ? (ref $got ? 'a ' . lc(ref $got) : "'$got'") : 'null')
        unless defined $got && !ref $got && "$got" eq "$want";
    return undef;
}

# ======================================================================
# Helpers
# ======================================================================

# Run a lib-stack.sh function; its output goes to logs/stack.log and is
# part of the error if it fails.
sub _stack {
    my ($self, $fn, @args) = @_;
    my $log = "$self->{dir}/logs/stack.log";
    my $offset = -s $log // 0;
    my $rc = _run_to_file($log, 'bash', '-c', 'source "$1"; shift; "$@"', 'crest-stack', $LIB_STACK, $fn, @args);
    die "Crest::Test: $fn failed:\n" . _slurp_from($log, $offset) if $rc != 0;
    return 1;
}

# Run a lib-stack.sh function that prints a result (nothing that daemonizes:
# a daemon holding our pipe would block the read).
sub _stack_capture {
    my ($fn, @args) = @_;
    my $out = _capture(['bash', '-c', 'source "$1"; shift; "$@"', 'crest-stack', $LIB_STACK, $fn, @args]);
    die "Crest::Test: $fn failed\n" if $? != 0;
    chomp $out;
    return $out;
}

# fork() with our INT/TERM/HUP handlers (which exit and run END blocks)
# reset in the child before any signal can reach it: a child killed before
# its exec must die like the program it was about to become.
# _fork() returns the pid; _fork(pipe => 1) forks with a pipe from the
# child's stdout and returns ($pid, $fh).
sub _fork {
    my %o = @_;
    my $all = POSIX::SigSet->new;
    $all->fillset;
    my $old = POSIX::SigSet->new;
    POSIX::sigprocmask(POSIX::SIG_BLOCK(), $all, $old) or die "Crest::Test: sigprocmask: $!\n";
    my ($pid, $fh);
    if ($o{pipe}) {
        $pid = open($fh, '-|');
    } else {
        $pid = fork;
    }
    my $err = $!;
    if (defined $pid && $pid == 0) {
        $SIG{$_} = 'DEFAULT' for @HANDLED_SIGNALS, 'PIPE';
    }
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), $old);
    die "Crest::Test: fork: $err\n" unless defined $pid;
    return $o{pipe} ? ($pid, $fh) : $pid;
}

# Run a command with stdout+stderr appended to $file; returns the exit status.
sub _run_to_file {
    my ($file, @cmd) = @_;
    my $pid = _fork();
    if ($pid == 0) {
        eval {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', $file or die;
            open STDERR, '>&', \*STDOUT;
            exec { $cmd[0] } @cmd;
        };
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $?;
}

# Capture a command's stdout (stderr to $errfile or inherited); sets $?.
sub _capture {
    my ($cmd, $errfile) = @_;
    my ($pid, $fh) = _fork(pipe => 1);
    if ($pid == 0) {
        eval {
            open STDIN, '<', '/dev/null';
            open STDERR, '>', $errfile if defined $errfile;
            exec { $cmd->[0] } @$cmd;
        };
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

# Wait for our child $pid to exit; true if it did within $secs.
sub _wait_child {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return 1 if $r == $pid || $r == -1;
        return 0 if time > $deadline;
        sleep 0.02;
    }
}

# Direct children of $pid, from /proc (by pid, never by name).
sub _children_of {
    my $parent = shift;
    my @kids;
    opendir(my $dh, '/proc') or return;
    for my $p (readdir $dh) {
        next unless $p =~ /^\d+$/;
        my $stat = _slurp("/proc/$p/stat") // next;
        # comm may contain spaces and parentheses: parse after the last ')'.
        my ($state, $ppid) = $stat =~ /\)\s+(\S)\s+(\d+)/ or next;
        push @kids, $p if $ppid == $parent && $state ne 'Z';
    }
    closedir $dh;
    return @kids;
}

# Is something listening on 127.0.0.1:$port?  Read /proc/net/tcp rather
# than connecting, so that probing leaves no trace in nginx's logs.
sub _is_listening {
    my $port = shift;
    my $want = sprintf '0100007F:%04X', $port;
    my $tcp = _slurp('/proc/net/tcp') // return 0;
    for my $line (split /\n/, $tcp) {
        my (undef, $local, undef, $st) = split ' ', $line;
        return 1 if defined $st && $local eq $want && $st eq '0A';
    }
    return 0;
}

# A base directory that the postgres and nobody users can traverse: $TMPDIR
# if they can, else /tmp.
my $TMP_BASE;
sub _tmp_base {
    return $TMP_BASE if defined $TMP_BASE;
    for my $d (grep { defined && length } $ENV{TMPDIR}, '/tmp') {
        next unless -d $d;
        if ($> != 0) { return $TMP_BASE = $d }
        my $ok = 1;
        for my $u (qw(postgres nobody)) {
            $ok = 0 if system('runuser', '-u', $u, '--', 'test', '-x', $d) != 0;
        }
        return $TMP_BASE = abs_path($d) if $ok;
    }
    return $TMP_BASE = '/tmp';
}

# build/test-pg-template: an initdb'd, empty cluster (role crest, database
# crest), copied per test file because initdb takes a second and a copy a
# fraction of that.  Built into a temporary name and renamed into place, so
# that parallel test files never see a half-made template.
sub _ensure_pg_template {
    my $stamp = "$TEMPLATE/crest-template.stamp";
    return if (_slurp($stamp) // '') eq $TEMPLATE_STAMP;

    make_path(dirname($TEMPLATE));
    my $work = File::Temp::tempdir('crest-pg-template-XXXXXX', DIR => _tmp_base());
    chmod 0755, $work;
    _write_file("$work/pw", "$PG_PASSWORD\n");
    my $log = "$work/init.log";
    my $rc = _run_to_file($log, 'bash', '-c', 'source "$1"; shift; "$@"', 'crest-stack',
                          $LIB_STACK, 'stack_pg_init', "$work/data", 5432, "$work/pw");
    if ($rc != 0) {
        my $msg = _slurp($log) // '';
        remove_tree($work);
        die "Crest::Test: creating the PostgreSQL template failed:\n$msg";
    }
    my $real = abs_path("$work/data");
    my $tmp = "$TEMPLATE.tmp.$$";
    remove_tree($tmp);
    system('cp', '-a', '--', $real, $tmp) == 0 or die "Crest::Test: cp -a $real $tmp failed\n";
    _write_file("$tmp/crest-template.stamp", $TEMPLATE_STAMP);
    if (-e $TEMPLATE) {
        # A stale template (older stamp): move it aside first.
        my $old = "$TEMPLATE.old.$$";
        rename $TEMPLATE, $old and remove_tree($old);
    }
    unless (rename $tmp, $TEMPLATE) {
        # Another test file won the race; use its template.
        remove_tree($tmp);
        die "Crest::Test: cannot install $TEMPLATE: $!\n"
            unless (_slurp($stamp) // '') eq $TEMPLATE_STAMP;
    }
    system('bash', '-c', 'source "$1"; shift; "$@"', 'crest-stack', $LIB_STACK,
           'stack_pg_remove', "$work/data");
    remove_tree($work);
}

sub _write_file {
    my ($file, $content) = @_;
    open my $fh, '>', $file or die "Crest::Test: write $file: $!\n";
    print {$fh} $content;
    close $fh or die "Crest::Test: write $file: $!\n";
}

sub _slurp {
    my $file = shift;
    open my $fh, '<', $file or return undef;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

sub _slurp_from {
    my ($file, $offset) = @_;
    open my $fh, '<', $file or return '';
    seek $fh, $offset, 0 if $offset;
    local $/;
    return <$fh> // '';
}

sub _first_lines {
    my ($text, $n) = @_;
    my @l = split /\n/, $text // '';
    return $text if @l <= $n;
    return join("\n", @l[0 .. $n - 1], "[... " . (@l - $n) . " more lines]") . "\n";
}

sub _last_lines {
    my ($text, $n) = @_;
    my @l = split /\n/, $text // '';
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l) . "\n";
}

sub _tail {
    my ($file, $n, $offset) = @_;
    my $text = _slurp_from($file, $offset // 0);
    return "--- $file (last lines):\n" . _last_lines($text, $n);
}

1;
