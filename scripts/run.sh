#!/usr/bin/env bash
# Run Crest locally: PostgreSQL, Redis, nginx with the Crest module, and the
# worker daemon, everything under <repo>/var.  Called by `make run` (after
# `make deps all`) and `make stop`.
#
#   scripts/run.sh start | stop | status
#
# Environment (all optional):
#   CREST_PORT        nginx HTTP port                      (default 8080)
#   CREST_PG_PORT     port of the local PostgreSQL         (default 55432)
#   CREST_REDIS_PORT  port of the local Redis              (default 56379)
#   CREST_JWT_SECRET  JWT signing secret (else generated once into var/secrets)
#   DATABASE_URL      use this PostgreSQL instead of starting one
#   REDIS_URL         use this Redis (redis://host:port[/db]) instead of starting one
#   NGINX             nginx binary                         (default /usr/sbin/nginx)
#   CREST_NGINX_TEMPLATE  nginx.conf template     (default conf/nginx.conf.in)
#   CREST_WORKER_BIN  worker binary               (default build/bin/crest-worker)
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-stack.sh
source "$TOP/scripts/lib-stack.sh"

VAR=$TOP/var
SECRETS=$VAR/secrets
RUN=$VAR/run
LOG=$VAR/log
PGDATA_DIR=$VAR/pg
REDIS_DIR=$VAR/redis
NGX_DIR=$VAR/nginx
NGX_CONF=$NGX_DIR/nginx.conf
NGX_PID=$NGX_DIR/nginx.pid          # the template's `pid` directive must say this
NGX_TEMPLATE=${CREST_NGINX_TEMPLATE:-$TOP/conf/nginx.conf.in}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=$TOP/build/modules/ngx_http_crest_module.so
WORKER_BIN=${CREST_WORKER_BIN:-$TOP/build/bin/crest-worker}
WORKER_COMM=$(basename "$WORKER_BIN" | cut -c1-15)   # as /proc/PID/comm shows it
WORKER_PID=$RUN/worker.pid
WORKER_LOG=$LOG/worker.log
STACK_ENV=$RUN/stack.env            # what `start` chose, for status/stop

CREST_PORT=${CREST_PORT:-8080}
PG_PORT=${CREST_PG_PORT:-55432}
REDIS_PORT=${CREST_REDIS_PORT:-56379}

say() { printf '%s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# pidfile_alive FILE COMM — print the pid in FILE if that process exists and
# its command name is COMM (guards against a stale file naming a recycled pid).
pidfile_alive() {
    local file=$1 comm=$2 pid
    [[ -r $file ]] || return 1
    read -r pid <"$file" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stack_pid_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    printf '%s\n' "$pid"
}

# previous NAME DEFAULT — the value NAME had when the running stack was
# started (var/run/stack.env), else DEFAULT.
previous() {
    local v=
    # shellcheck disable=SC1090  # written by cmd_start with printf %q
    [[ -r $STACK_ENV ]] && v=$(source "$STACK_ENV" && printf '%s' "${!1:-}")
    printf '%s\n' "${v:-$2}"
}

# random_hex N — N random bytes, hex encoded.
random_hex() {
    local n=$1
    if command -v openssl >/dev/null; then
        openssl rand -hex "$n"
    else
        head -c "$n" /dev/urandom | od -An -tx1 -v | tr -d ' \n'; echo
    fi
}

# Quote a value for a libpq keyword/value conninfo string.
conninfo_quote() {
    local v=$1
    if [[ $v =~ ^[A-Za-z0-9._/:-]+$ ]]; then
        printf '%s' "$v"
    else
        v=${v//\\/\\\\}; v=${v//\'/\\\'}
        printf "'%s'" "$v"
    fi
}

# Escape a value for use inside a quoted nginx.conf string (nginx unescapes
# \\, \" and \' in both quote styles), then for a sed replacement.
nginx_sed_escape() {
    local v=$1
    [[ $v != *$'\n'* ]] || die "newline in a configuration value"
    v=${v//\\/\\\\}; v=${v//\"/\\\"}; v=${v//\'/\\\'}
    printf '%s' "$v" | sed -e 's/[\\&|]/\\&/g'
}

ensure_secrets() {
    mkdir -p "$SECRETS"
    chmod 700 "$SECRETS"
    if [[ -n ${CREST_JWT_SECRET:-} ]]; then
        if [[ ! -f $SECRETS/jwt_secret || $(<"$SECRETS/jwt_secret") != "$CREST_JWT_SECRET" ]]; then
            (umask 077; printf '%s\n' "$CREST_JWT_SECRET" >"$SECRETS/jwt_secret")
        fi
    elif [[ ! -s $SECRETS/jwt_secret ]]; then
        (umask 077; random_hex 64 >"$SECRETS/jwt_secret")
    fi
    if [[ ! -s $SECRETS/downloads_link_secret ]]; then
        (umask 077; random_hex 64 >"$SECRETS/downloads_link_secret")
    fi
    if [[ ! -s $SECRETS/pg_password ]]; then
        if [[ -e $PGDATA_DIR || -L $PGDATA_DIR ]]; then
            die "$PGDATA_DIR exists but $SECRETS/pg_password is missing; remove $PGDATA_DIR to re-create the cluster"
        fi
        (umask 077; random_hex 24 >"$SECRETS/pg_password")
    fi
}

# Components started by this invocation, stopped again if a later step fails,
# so a failed `start` does not leave half a stack behind.
STARTED=()
rollback() {
    local i
    ((${#STARTED[@]})) || return 0
    say "run.sh: start failed, stopping what was started" >&2
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        "stop_${STARTED[i]}" || true
    done
}

# ----------------------------------------------------------------- postgres
start_pg() {
    local pid sockdir
    if pid=$(stack_pg_pid "$PGDATA_DIR" 2>/dev/null); then
        # Keep talking to it on the port it really has (line 4 of
        # postmaster.pid), whatever CREST_PG_PORT says now.
        PG_PORT=$(sed -n 4p "$(readlink -f "$PGDATA_DIR")/postmaster.pid")
        say "postgres: already running (pid $pid, port $PG_PORT)"
        return 0
    fi
    if [[ -L $PGDATA_DIR && ! -e $PGDATA_DIR ]]; then
        die "$PGDATA_DIR points to $(readlink "$PGDATA_DIR"), which is gone (was /tmp cleaned?); remove $PGDATA_DIR and start again"
    fi
    if [[ ! -e $PGDATA_DIR ]]; then
        say "postgres: creating cluster in $PGDATA_DIR"
        stack_pg_init "$PGDATA_DIR" "$PG_PORT" "$SECRETS/pg_password" || die "initdb failed"
    fi
    # The socket directory must be reachable by postgres and short (unix
    # socket paths are limited to 107 bytes); fall back to /tmp otherwise.
    sockdir=$RUN/pg
    mkdir -p "$sockdir"
    if ! _stack_pg_can_reach "$RUN" || ((${#sockdir} > 90)); then
        sockdir=$(mktemp -d /tmp/crest-pgsock.XXXXXX)
    fi
    stack_pg_start "$PGDATA_DIR" "$PG_PORT" "$sockdir" "$LOG/pg.log" || die "postgres did not start"
    STARTED+=(pg)
    printf '%s\n' "$sockdir" >"$RUN/pg.sockdir"
    say "postgres: started on 127.0.0.1:$PG_PORT (socket dir $sockdir)"
}

stop_pg() {
    local pid sockdir
    if pid=$(stack_pg_pid "$PGDATA_DIR" 2>/dev/null); then
        stack_pg_stop "$PGDATA_DIR" && say "postgres: stopped (pid $pid)"
    fi
    if [[ -r $RUN/pg.sockdir ]]; then
        sockdir=$(<"$RUN/pg.sockdir")
        [[ $sockdir == /tmp/crest-pgsock.* ]] && rm -rf -- "$sockdir"
        rm -f "$RUN/pg.sockdir"
    fi
}

# -------------------------------------------------------------------- redis
start_redis() {
    local pid
    if pid=$(stack_redis_pid "$REDIS_DIR"); then
        REDIS_PORT=$(previous REDIS_PORT "$REDIS_PORT")
        say "redis: already running (pid $pid, port $REDIS_PORT)"
        return 0
    fi
    stack_redis_start "$REDIS_DIR" "$REDIS_PORT" || die "redis did not start"
    STARTED+=(redis)
    say "redis: started on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
    local pid
    if pid=$(stack_redis_pid "$REDIS_DIR"); then
        stack_redis_stop "$REDIS_DIR" && say "redis: stopped (pid $pid)"
    fi
}

# -------------------------------------------------------------------- nginx
render_nginx_conf() {
    local conninfo=$1 redis_addr=$2 tmp leftover
    [[ -r $NGX_TEMPLATE ]] || die "nginx template $NGX_TEMPLATE not found"
    if grep -q '@CREST_MODULE@' "$NGX_TEMPLATE" && [[ ! -r $MODULE ]]; then
        die "module $MODULE not built (run make all)"
    fi
    mkdir -p "$NGX_DIR/logs" "$NGX_DIR/tmp"
    tmp=$NGX_CONF.tmp
    sed -e "s|@CREST_PORT@|$(nginx_sed_escape "$CREST_PORT")|g" \
        -e "s|@CREST_MODULE@|$(nginx_sed_escape "$MODULE")|g" \
        -e "s|@CREST_PG_CONNINFO@|$(nginx_sed_escape "$conninfo")|g" \
        -e "s|@CREST_REDIS_ADDR@|$(nginx_sed_escape "$redis_addr")|g" \
        -e "s|@CREST_PREFIX@|$(nginx_sed_escape "$NGX_DIR")|g" \
        -e "s|@CREST_CONF_DIR@|$(nginx_sed_escape "$TOP/conf")|g" \
        -e "s|@CREST_JWT_SECRET_FILE@|$(nginx_sed_escape "$SECRETS/jwt_secret")|g" \
        -e "s|@CREST_DOWNLOADS_SECRET_FILE@|$(nginx_sed_escape "$SECRETS/downloads_link_secret")|g" \
        -e "s|@CREST_MEDIA_DIR@|$(nginx_sed_escape "$VAR/media")|g" \
        "$NGX_TEMPLATE" >"$tmp"
    if leftover=$(grep -o '@CREST_[A-Z0-9_]*@' "$tmp" | sort -u | tr '\n' ' ') && [[ -n $leftover ]]; then
        rm -f "$tmp"
        die "unknown placeholders in $NGX_TEMPLATE: $leftover"
    fi
    # The file holds the database password.
    chmod 600 "$tmp"
    mv -f "$tmp" "$NGX_CONF"
}

start_nginx() {
    local conninfo=$1 redis_addr=$2 pid i
    if pid=$(pidfile_alive "$NGX_PID" nginx); then
        CREST_PORT=$(previous CREST_PORT "$CREST_PORT")
        say "nginx: already running (pid $pid, port $CREST_PORT)"
        return 0
    fi
    render_nginx_conf "$conninfo" "$redis_addr"
    # -e: never touch the distro's /var/log/nginx, even before the config
    # is read.
    local ngx=("$NGINX" -p "$NGX_DIR/" -c "$NGX_CONF" -e "$NGX_DIR/logs/error.log")
    "${ngx[@]}" -t -q || die "nginx configuration test failed ($NGX_CONF)"
    "${ngx[@]}" || die "nginx did not start; see $NGX_DIR/logs/error.log"
    for ((i = 0; i < 100; i++)); do
        pid=$(pidfile_alive "$NGX_PID" nginx) && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || die "nginx did not write $NGX_PID (does the template's pid directive point there?)"
    STARTED+=(nginx)
    say "nginx: started (pid $pid)"
}

stop_nginx() {
    local pid
    pid=$(pidfile_alive "$NGX_PID" nginx) || return 0
    # Graceful: let in-flight requests finish.  Fall back to the signal if the
    # config can no longer be parsed (e.g. a rebuilt module).
    "$NGINX" -p "$NGX_DIR/" -c "$NGX_CONF" -e "$NGX_DIR/logs/error.log" -s quit 2>/dev/null ||
        kill -QUIT "$pid"
    if ! stack_wait_gone "$pid" 30; then
        say "nginx: still running after 30 s, sending SIGTERM" >&2
        kill -TERM "$pid" 2>/dev/null || true
        stack_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    fi
    say "nginx: stopped (pid $pid)"
}

# ------------------------------------------------------------------- worker
start_worker() {
    local pid
    if pid=$(pidfile_alive "$WORKER_PID" "$WORKER_COMM"); then
        say "worker: already running (pid $pid)"
        return 0
    fi
    if [[ ! -x $WORKER_BIN ]]; then
        say "worker: WARNING: $WORKER_BIN not built, not starting it" >&2
        return 0
    fi
    # setsid: a Ctrl-C in the terminal that ran `make run` must not reach it.
    # No job control in this shell, so setsid does not fork and $! is the pid.
    # trending-refresh: the schedules below and the edge's stale-data refreshes
    REDIS_URL=$REDIS_URL DATABASE_URL=$DATABASE_URL CREST_WORKER_LOG=$WORKER_LOG \
        CREST_QUEUES=${CREST_QUEUES:-ping,trending-refresh,trend-scrape,download,formats} \
        setsid "$WORKER_BIN" </dev/null >>"$WORKER_LOG" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$WORKER_PID"
    sleep 0.3
    if ! stack_pid_alive "$pid"; then
        rm -f "$WORKER_PID"
        tail -n 20 "$WORKER_LOG" >&2
        die "worker exited at once; see $WORKER_LOG"
    fi
    STARTED+=(worker)
    say "worker: started (pid $pid)"
    schedule_trending
    schedule_downloads_cleanup
}

# The trending schedulers (CREST_TRENDING_SCHEDULE); running it again keeps
# each scheduler's next run, so every start may do it.
schedule_trending() {
    local bin=$TOP/build/bin/crest-queue
    [[ -x $bin ]] || { say "trending: WARNING: $bin not built, no schedules" >&2; return 0; }
    if REDIS_URL=$REDIS_URL "$bin" schedule-trending trending-refresh >>"$WORKER_LOG" 2>&1; then
        say "trending: schedules set (${CREST_TRENDING_SCHEDULE:-youtube:US,tiktok:US})"
    else
        say "trending: WARNING: schedule-trending failed; see $WORKER_LOG" >&2
    fi
}

# The retention sweep of downloaded files (CREST_DOWNLOAD_RETENTION,
# CREST_DOWNLOAD_CLEANUP_EVERY_MS); idempotent like the trending schedules.
schedule_downloads_cleanup() {
    local bin=$TOP/build/bin/crest-queue
    [[ -x $bin ]] || return 0
    if REDIS_URL=$REDIS_URL "$bin" schedule-downloads-cleanup download >>"$WORKER_LOG" 2>&1; then
        say "downloads: cleanup scheduled (retention ${CREST_DOWNLOAD_RETENTION:-7d})"
    else
        say "downloads: WARNING: schedule-downloads-cleanup failed; see $WORKER_LOG" >&2
    fi
}

stop_worker() {
    local pid
    pid=$(pidfile_alive "$WORKER_PID" "$WORKER_COMM") || { rm -f "$WORKER_PID"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    if ! stack_wait_gone "$pid" 15; then
        say "worker: did not exit within 15 s of SIGTERM, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        stack_wait_gone "$pid" 5 || true
    fi
    rm -f "$WORKER_PID"
    say "worker: stopped (pid $pid)"
}

# ---------------------------------------------------------------- commands
cmd_start() {
    mkdir -p "$VAR" "$RUN" "$LOG"
    ensure_secrets
    trap rollback EXIT

    local conninfo redis_addr hostport
    if [[ -n ${DATABASE_URL:-} ]]; then
        say "postgres: using DATABASE_URL (external)"
        # libpq accepts a URI wherever it accepts a conninfo string.
        conninfo=$DATABASE_URL
    else
        start_pg
        local pw
        pw=$(<"$SECRETS/pg_password")
        DATABASE_URL="postgresql://crest:$pw@127.0.0.1:$PG_PORT/crest"
        conninfo="hostaddr=127.0.0.1 port=$PG_PORT dbname=crest user=crest password=$(conninfo_quote "$pw")"
    fi
    if [[ -n ${REDIS_URL:-} ]]; then
        say "redis: using REDIS_URL (external)"
        hostport=${REDIS_URL#*://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
        [[ $hostport == *:* ]] || hostport=$hostport:6379
        redis_addr=$hostport
    else
        start_redis
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
        redis_addr="127.0.0.1:$REDIS_PORT"
    fi
    DATABASE_URL=$DATABASE_URL "$TOP/scripts/migrate.sh" || die "migrations failed"

    start_nginx "$conninfo" "$redis_addr"
    start_worker
    printf 'CREST_PORT=%q\nPG_PORT=%q\nREDIS_PORT=%q\n' "$CREST_PORT" "$PG_PORT" "$REDIS_PORT" >"$STACK_ENV"

    trap - EXIT
    say ""
    say "Crest is up: http://127.0.0.1:$CREST_PORT"
    say "logs: $NGX_DIR/logs/  $LOG/  $REDIS_DIR/redis.log"
    say "stop with: make stop   (or scripts/run.sh stop)"
}

cmd_stop() {
    # Each by its pid file, whatever the environment says now: stop what the
    # pid files show running, nothing else.
    stop_nginx
    stop_worker
    stop_redis
    stop_pg
}

cmd_status() {
    local pid rc=0
    # shellcheck disable=SC1090  # written by cmd_start with printf %q
    [[ -r $STACK_ENV ]] && source "$STACK_ENV"
    if pid=$(pidfile_alive "$NGX_PID" nginx); then
        say "nginx:    running (pid $pid) http://127.0.0.1:$CREST_PORT"
    else
        say "nginx:    stopped"; rc=3
    fi
    if pid=$(pidfile_alive "$WORKER_PID" "$WORKER_COMM"); then
        say "worker:   running (pid $pid) log $WORKER_LOG"
    else
        say "worker:   stopped"; rc=3
    fi
    if pid=$(stack_redis_pid "$REDIS_DIR"); then
        say "redis:    running (pid $pid) 127.0.0.1:$REDIS_PORT"
    elif [[ -n ${REDIS_URL:-} ]]; then
        say "redis:    external (REDIS_URL)"
    else
        say "redis:    stopped"; rc=3
    fi
    if pid=$(stack_pg_pid "$PGDATA_DIR" 2>/dev/null); then
        say "postgres: running (pid $pid) 127.0.0.1:$PG_PORT data $PGDATA_DIR"
    elif [[ -n ${DATABASE_URL:-} ]]; then
        say "postgres: external (DATABASE_URL)"
    else
        say "postgres: stopped"; rc=3
    fi
    return $rc
}

case ${1:-} in
start)  cmd_start ;;
stop)   cmd_stop ;;
status) cmd_status ;;
*)      echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
