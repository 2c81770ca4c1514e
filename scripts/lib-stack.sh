# shellcheck shell=bash
# Functions to run a private PostgreSQL cluster and a private Redis under a
# given directory.  Sourced by scripts/run.sh and by the Perl test harness
# (t/lib/Crest/Test.pm, through `bash -c 'source lib-stack.sh; fn args'`), so
# that both start servers the same way.
#
# Every function returns non-zero and prints a reason on stderr on failure.
# Servers listen on 127.0.0.1 only and are stopped by pid, never by name.

STACK_PG_BIN=${STACK_PG_BIN:-/usr/lib/postgresql/15/bin}
STACK_PG_USER=${STACK_PG_USER:-postgres}

_stack_err() { echo "lib-stack: $*" >&2; }

# stack_pid_alive PID — the process exists and is not a zombie (an exited
# daemon stays a zombie until reaped, and kill -0 still succeeds on it).
stack_pid_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# Run a command as the postgres OS user.  initdb/postgres refuse to run as
# root.  cd / first so that the child never starts in a directory it cannot
# enter (which makes initdb and psql print warnings).
_stack_as_pg() {
    if [[ $(id -un) == "$STACK_PG_USER" ]]; then
        (cd / && "$@")
    else
        (cd / && runuser -u "$STACK_PG_USER" -- "$@")
    fi
}

# True if the postgres user can reach (search) directory $1, i.e. every
# component of its path is traversable by that user.
_stack_pg_can_reach() {
    _stack_as_pg test -x "$1" 2>/dev/null
}

# Resolve DATADIR to the real cluster directory.  When the cluster had to be
# placed elsewhere (see stack_pg_init) DATADIR is a symlink, and the postgres
# user may not be able to follow it: we resolve it here, as the caller.
_stack_pg_real() {
    readlink -f -- "$1"
}

# Make DATADIR an empty directory owned by postgres, in a place that user can
# reach.  Prints the real directory.
#
# Why the symlink: a checkout under e.g. /root (mode 700) cannot host a
# cluster, because postgres must traverse every parent of its data directory.
# In that case the real cluster lives in a fresh mktemp directory under /tmp
# and DATADIR becomes a symlink to it, so callers keep using one stable path.
_stack_pg_prepare_dir() {
    local datadir=$1 parent real
    if [[ -e $datadir || -L $datadir ]]; then
        _stack_err "$datadir already exists"
        return 1
    fi
    parent=$(dirname -- "$datadir")
    mkdir -p -- "$parent" || return 1
    if _stack_pg_can_reach "$parent"; then
        real=$datadir
        mkdir -m 700 -- "$real" || return 1
    else
        local base
        base=$(mktemp -d /tmp/crest-pg.XXXXXX) || return 1
        chmod 755 "$base"
        real=$base/data
        mkdir -m 700 -- "$real" || return 1
        ln -s -- "$real" "$datadir" || return 1
    fi
    chown "$STACK_PG_USER": "$real" || return 1
    printf '%s\n' "$real"
}

# stack_pg_init DATADIR PORT PASSWORD_FILE
# Create a cluster with superuser `crest` (password read from PASSWORD_FILE)
# and database `crest` owned by it.  Unix-socket connections are trusted,
# TCP connections from 127.0.0.1 need the password (SCRAM).  PORT becomes
# the cluster's default port; stack_pg_start can still override it.
stack_pg_init() {
    local datadir=${1:?datadir} port=${2:?port} pwfile=${3:?password file}
    local real password log
    if [[ ! -r $pwfile ]]; then
        _stack_err "cannot read password file $pwfile"
        return 1
    fi
    password=$(<"$pwfile")
    if [[ -z $password ]]; then
        _stack_err "empty password in $pwfile"
        return 1
    fi
    real=$(_stack_pg_prepare_dir "$datadir") || return 1
    log=$(mktemp /tmp/crest-initdb.XXXXXX) || return 1

    if ! _stack_as_pg "$STACK_PG_BIN/initdb" -D "$real" -U crest \
            --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 --no-instructions >"$log" 2>&1; then
        _stack_err "initdb failed:"; cat "$log" >&2; rm -f "$log"
        stack_pg_remove "$datadir"    # so that a retry does not find a half cluster
        return 1
    fi

    # Only what we need: trusted local socket for admin work, password over
    # loopback TCP.  No IPv6, no replication entries.
    cat >"$real/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
EOF
    cat >>"$real/postgresql.conf" <<EOF

# --- crest (scripts/lib-stack.sh) ---
listen_addresses = '127.0.0.1'
port = $port
password_encryption = 'scram-sha-256'
fsync = off                 # a disposable development/test cluster
synchronous_commit = off
full_page_writes = off
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    chown "$STACK_PG_USER": "$real/pg_hba.conf" "$real/postgresql.conf"

    # Set the password and create the database in single-user mode, which
    # reads SQL from stdin: no server, no port, no socket needed yet.  The
    # password never appears on a command line.
    local sqlpw=${password//\'/\'\'}
    if ! printf "ALTER ROLE crest PASSWORD '%s';\n\nCREATE DATABASE crest OWNER crest;\n\n" "$sqlpw" |
            _stack_as_pg "$STACK_PG_BIN/postgres" --single -D "$real" -j template1 \
            >"$log" 2>&1 || grep -q 'ERROR:' "$log"; then
        _stack_err "single-user setup failed:"; cat "$log" >&2; rm -f "$log"
        stack_pg_remove "$datadir"
        return 1
    fi
    rm -f "$log"
}

# stack_pg_clone SRC DATADIR
# Copy a stopped cluster (e.g. a cached, freshly initdb'd template) to
# DATADIR, placed like stack_pg_init does and owned by postgres.  Much faster
# than initdb.
stack_pg_clone() {
    local src=${1:?source} datadir=${2:?datadir} real
    src=$(_stack_pg_real "$src")
    if [[ ! -f $src/PG_VERSION ]]; then
        _stack_err "$src is not a cluster"
        return 1
    fi
    real=$(_stack_pg_prepare_dir "$datadir") || return 1
    cp -a -- "$src/." "$real/" || return 1
    rm -f -- "$real/postmaster.pid"
    chown -R "$STACK_PG_USER": "$real"
}

# stack_pg_remove DATADIR
# Delete a stopped cluster, including the real directory behind a symlink.
stack_pg_remove() {
    local datadir=${1:?datadir} real
    if stack_pg_pid "$datadir" >/dev/null; then
        _stack_err "cluster $datadir is running"
        return 1
    fi
    if [[ -L $datadir ]]; then
        real=$(_stack_pg_real "$datadir")
        rm -f -- "$datadir"
        if [[ $real == /tmp/crest-pg.*/data ]]; then
            rm -rf -- "$(dirname -- "$real")"
        fi
    else
        rm -rf -- "$datadir"
    fi
}

# stack_pg_pid DATADIR — prints the postmaster pid; fails if not running.
stack_pg_pid() {
    local real pid
    real=$(_stack_pg_real "${1:?datadir}") || return 1
    [[ -r $real/postmaster.pid ]] || return 1
    read -r pid <"$real/postmaster.pid" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stack_pid_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# stack_pg_start DATADIR PORT SOCKDIR LOGFILE
# Start the cluster on 127.0.0.1:PORT with its unix socket in SOCKDIR (created
# and handed to postgres), server output appended to LOGFILE.  Waits until
# the server accepts connections (bounded).
stack_pg_start() {
    local datadir=${1:?datadir} port=${2:?port} sockdir=${3:?sockdir} logfile=${4:?logfile}
    local real pid i
    real=$(_stack_pg_real "$datadir") || return 1
    if pid=$(stack_pg_pid "$real"); then
        _stack_err "cluster $datadir already running (pid $pid)"
        return 1
    fi
    mkdir -p -- "$sockdir" "$(dirname -- "$logfile")" || return 1
    chown "$STACK_PG_USER": "$sockdir" || return 1
    chmod 755 "$sockdir"
    if ! _stack_as_pg test -w "$sockdir"; then
        _stack_err "socket directory $sockdir is not reachable by $STACK_PG_USER"
        return 1
    fi
    # The kernel limits unix socket paths to 107 bytes.
    if (( ${#sockdir} + 16 > 107 )); then
        _stack_err "socket directory path too long for a unix socket: $sockdir"
        return 1
    fi

    # The server's stdout/stderr go to LOGFILE opened here, by the caller:
    # postgres may not be allowed to create files where LOGFILE lives, and a
    # caller capturing our output must not wait on a pipe the postmaster holds.
    if ! _stack_as_pg "$STACK_PG_BIN/pg_ctl" -D "$real" -w -t 60 \
            -o "-p $port -k '$sockdir' -c listen_addresses=127.0.0.1" \
            start </dev/null >>"$logfile" 2>&1; then
        _stack_err "pg_ctl start failed; last lines of $logfile:"
        tail -n 20 -- "$logfile" >&2
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        if "$STACK_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d crest -t 1; then
            return 0
        fi
        sleep 0.1
    done
    _stack_err "postgres on port $port not ready; last lines of $logfile:"
    tail -n 20 -- "$logfile" >&2
    return 1
}

# stack_pg_stop DATADIR — fast shutdown (rolls back open transactions), waits.
stack_pg_stop() {
    local datadir=${1:?datadir} real
    real=$(_stack_pg_real "$datadir") || return 1
    stack_pg_pid "$real" >/dev/null || return 0
    _stack_as_pg "$STACK_PG_BIN/pg_ctl" -D "$real" -m fast -w -t 60 stop >/dev/null
}

# stack_redis_pid DIR — prints the pid from DIR/redis.pid if it is alive and
# really a redis-server (a stale pid file may name a recycled pid).
stack_redis_pid() {
    local dir=${1:?dir} pid
    [[ -r $dir/redis.pid ]] || return 1
    read -r pid <"$dir/redis.pid" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stack_pid_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
    printf '%s\n' "$pid"
}

# stack_redis_start DIR PORT — a non-persistent Redis on 127.0.0.1:PORT.
stack_redis_start() {
    local dir=${1:?dir} port=${2:?port} pid i
    mkdir -p -- "$dir" || return 1
    if pid=$(stack_redis_pid "$dir"); then
        _stack_err "redis in $dir already running (pid $pid)"
        return 1
    fi
    rm -f -- "$dir/redis.pid"
    # Once daemonized redis writes to --logfile; errors before that (bad
    # arguments) go to stdout, appended to the same file.
    # shellcheck disable=SC2094
    if ! redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
            --logfile "$dir/redis.log" </dev/null >>"$dir/redis.log" 2>&1; then
        _stack_err "redis-server failed; last lines of $dir/redis.log:"
        tail -n 20 -- "$dir/redis.log" >&2
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
            return 0
        fi
        sleep 0.1
    done
    _stack_err "redis on port $port not answering PING; last lines of $dir/redis.log:"
    tail -n 20 -- "$dir/redis.log" >&2
    return 1
}

# stack_redis_stop DIR — SIGTERM by pid file, wait (then SIGKILL) until gone.
stack_redis_stop() {
    local dir=${1:?dir} pid
    pid=$(stack_redis_pid "$dir") || { rm -f -- "$dir/redis.pid"; return 0; }
    # A paused (SIGSTOPped) server would never handle SIGTERM.
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    stack_wait_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null; stack_wait_gone "$pid" 5; }
    rm -f -- "$dir/redis.pid"
}

# stack_wait_gone PID SECONDS — wait until PID no longer exists.
stack_wait_gone() {
    local pid=${1:?pid} secs=${2:-10} i
    for ((i = 0; i < secs * 20; i++)); do
        stack_pid_alive "$pid" || return 0
        sleep 0.05
    done
    return 1
}

# stack_free_port — print a TCP port that is currently free on 127.0.0.1.
# Picks at random below the kernel's ephemeral range (32768+), so that the
# port is not handed to some outgoing connection before our server binds it,
# and so that parallel test runs rarely even try the same port.
stack_free_port() {
    perl -MIO::Socket::IP -e '
        for (1 .. 200) {
            my $port = 10000 + int(rand(22000));
            my $s = IO::Socket::IP->new(LocalHost => "127.0.0.1", LocalPort => $port,
                                        Proto => "tcp", Listen => 1, ReuseAddr => 0)
                or next;
            close $s;
            print "$port\n";
            exit 0;
        }
        die "lib-stack: no free port found\n";
    '
}
