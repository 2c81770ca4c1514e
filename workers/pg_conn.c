#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "pg_conn.h"
#include "signals.h"


void
crest_pg_conn_init(crest_pg_conn_t *c, const crest_config_t *cfg)
{
    c->cfg = cfg;
    c->conn = NULL;
    c->drain = 0;
    crest_url_redact(cfg->database_url, strlen(cfg->database_url), c->target,
                     sizeof(c->target));
    snprintf(c->appname, sizeof(c->appname), "crest:worker:%s", cfg->name);
    crest_conn_state_init(&c->st, "postgres", c->target,
                          cfg->probe_interval_ms,
                          (uint64_t) crest_wall_ms() * 31
                          ^ (uint64_t) getpid());
}


/* libpq messages end in a newline and may span lines: keep one line. */
static void
crest_pg_error(char *err, size_t errlen, const char *what, const char *msg)
{
    size_t  len;
    char   *p;

    snprintf(err, errlen, "%s%s%s", what, what[0] ? ": " : "",
             msg && msg[0] ? msg : "unknown error");

    for (p = err; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            *p = ' ';
        }
    }

    len = strlen(err);
    while (len && isspace((unsigned char) err[len - 1])) {
        err[--len] = '\0';
    }
}


/*
 * Waits for events on the connection's socket until deadline.  Returns 1
 * when ready, 0 on timeout, -1 when a stop was requested or poll failed.
 */
static int
crest_pg_wait(PGconn *conn, short events, int64_t deadline, int stoppable)
{
    struct pollfd  pfd[2];
    int64_t        left;
    int            n;

    for ( ;; ) {
        if (stoppable && crest_stop_requested()) {
            return -1;
        }

        left = deadline - crest_mono_ms();

        if (left <= 0) {
            return 0;
        }

        pfd[0].fd = PQsocket(conn);
        pfd[0].events = events;
        pfd[0].revents = 0;
        /* the wake pipe stays readable after a stop: ignore it when
         * draining, or this loop would spin */
        pfd[1].fd = stoppable ? crest_wake_fd() : -1;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;

        if (pfd[0].fd < 0) {
            return -1;
        }

        n = poll(pfd, 2, (int) (left > 1000 ? 1000 : left));

        if (n < 0 && errno != EINTR) {
            return -1;
        }

        if (n > 0 && pfd[0].revents) {
            return 1;
        }
    }
}


/* libpq would print notices raw to stderr, between our JSON lines. */
static void
crest_pg_notice(void *arg, const char *message)
{
    char  line[512];

    (void) arg;
    crest_pg_error(line, sizeof(line), "", message);
    crest_log(CREST_LOG_INFO, "postgres notice", CREST_LS("notice", line));
}


static int
crest_pg_conn_open(crest_pg_conn_t *c, char *err, size_t errlen)
{
    const char                *keys[4], *values[4];
    char                       timeout[16];
    PGconn                    *conn;
    PostgresPollingStatusType  st;
    int64_t                    deadline;
    int                        rc;

    /*
     * libpq only enforces connect_timeout in its blocking calls, and in
     * whole seconds; it is passed on for the record, while the deadline
     * below is what holds.  The URL comes last so that it can override.
     */
    snprintf(timeout, sizeof(timeout), "%u",
             (c->cfg->connect_timeout_ms + 999) / 1000);

    keys[0] = "connect_timeout";
    values[0] = timeout;
    keys[1] = "application_name";
    values[1] = c->appname;
    keys[2] = "dbname";
    values[2] = c->cfg->database_url;
    keys[3] = NULL;
    values[3] = NULL;

    deadline = crest_mono_ms() + c->cfg->connect_timeout_ms;

    conn = PQconnectStartParams(keys, values, 1);

    if (conn == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    if (PQstatus(conn) == CONNECTION_BAD) {
        crest_pg_error(err, errlen, "", PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }

    PQsetNoticeProcessor(conn, crest_pg_notice, NULL);

    st = PGRES_POLLING_WRITING;

    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            crest_pg_error(err, errlen, "", PQerrorMessage(conn));
            PQfinish(conn);
            return -1;
        }

        rc = crest_pg_wait(conn, st == PGRES_POLLING_READING ? POLLIN
                                                             : POLLOUT,
                           deadline, !c->drain);

        if (rc <= 0) {
            snprintf(err, errlen, rc == 0 ? "connect timed out after %u ms"
                                          : "connect interrupted",
                     c->cfg->connect_timeout_ms);
            PQfinish(conn);
            return -1;
        }

        st = PQconnectPoll(conn);
    }

    /* queries go through PQsendQuery + poll, never a blocking PQexec */
    if (PQsetnonblocking(conn, 1) != 0) {
        crest_pg_error(err, errlen, "PQsetnonblocking", PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }

    c->conn = conn;

    return 0;
}


static void
crest_pg_conn_drop(crest_pg_conn_t *c, const char *why)
{
    /* a cancel request would block on its own connect; closing is enough,
     * the server drops the query when it next talks to the socket */
    PQfinish(c->conn);
    c->conn = NULL;

    crest_conn_state_lost(&c->st, crest_mono_ms(), why,
                          crest_stop_requested());
}


static PGresult *
crest_pg_conn_run(crest_pg_conn_t *c, const char *sql, int nparams,
    const char *const *values)
{
    PGconn    *conn;
    PGresult  *res, *keep;
    int64_t    deadline;
    char       err[512];
    int        rc;

    conn = c->conn;

    if (conn == NULL) {
        return NULL;
    }

    deadline = crest_mono_ms() + c->cfg->command_timeout_ms;
    keep = NULL;

    if (nparams < 0 ? !PQsendQuery(conn, sql)
                    : !PQsendQueryParams(conn, sql, nparams, NULL, values,
                                         NULL, NULL, 0))
    {
        crest_pg_error(err, sizeof(err), "PQsendQuery", PQerrorMessage(conn));
        goto failed;
    }

    while ((rc = PQflush(conn)) == 1) {
        rc = crest_pg_wait(conn, POLLOUT | POLLIN, deadline, !c->drain);

        if (rc <= 0 || !PQconsumeInput(conn)) {
            goto io_failed;
        }
    }

    if (rc == -1) {
        crest_pg_error(err, sizeof(err), "PQflush", PQerrorMessage(conn));
        goto failed;
    }

    /* collect every result; keep the first error or else the last one */
    for ( ;; ) {
        while (PQisBusy(conn)) {
            rc = crest_pg_wait(conn, POLLIN, deadline, !c->drain);

            if (rc <= 0 || !PQconsumeInput(conn)) {
                goto io_failed;
            }
        }

        res = PQgetResult(conn);

        if (res == NULL) {
            break;
        }

        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
            PQclear(res);

        } else {
            PQclear(keep);
            keep = res;
        }
    }

    if (PQstatus(conn) == CONNECTION_BAD) {
        crest_pg_error(err, sizeof(err), "", PQerrorMessage(conn));
        goto failed;
    }

    return keep;

io_failed:

    if (rc == 0) {
        snprintf(err, sizeof(err), "query timed out after %u ms",
                 c->cfg->command_timeout_ms);

    } else if (rc < 0) {
        snprintf(err, sizeof(err), "query interrupted");

    } else {
        crest_pg_error(err, sizeof(err), "", PQerrorMessage(conn));
    }

failed:

    PQclear(keep);
    crest_pg_conn_drop(c, err);

    return NULL;
}


PGresult *
crest_pg_conn_exec(crest_pg_conn_t *c, const char *sql)
{
    return crest_pg_conn_run(c, sql, -1, NULL);
}


PGresult *
crest_pg_conn_exec_params(crest_pg_conn_t *c, const char *sql, int nparams,
    const char *const *values)
{
    return crest_pg_conn_run(c, sql, nparams, values);
}


static void
crest_pg_conn_probe(crest_pg_conn_t *c, int64_t now)
{
    PGresult  *res;
    char       err[512];

    res = crest_pg_conn_exec(c, "SELECT 1");

    if (res == NULL) {
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1
        || strcmp(PQgetvalue(res, 0, 0), "1") != 0)
    {
        /* e.g. the database is shutting down or in recovery trouble */
        crest_pg_error(err, sizeof(err), "SELECT 1",
                       PQresultErrorMessage(res));
        PQclear(res);
        crest_pg_conn_drop(c, err);
        return;
    }

    PQclear(res);
    crest_conn_state_probed(&c->st, now);
}


int
crest_pg_conn_tick(crest_pg_conn_t *c, int64_t now)
{
    char  err[512];

    if (!crest_conn_state_due(&c->st, now)) {
        return c->conn != NULL;
    }

    if (c->conn) {
        crest_pg_conn_probe(c, now);
        return c->conn != NULL;
    }

    err[0] = '\0';

    if (crest_pg_conn_open(c, err, sizeof(err)) != 0) {
        crest_conn_state_failed(&c->st, crest_mono_ms(), err,
                                crest_stop_requested());
        return 0;
    }

    crest_conn_state_connected(&c->st, crest_mono_ms());

    return 1;
}


int64_t
crest_pg_conn_next(const crest_pg_conn_t *c)
{
    return crest_conn_state_next(&c->st);
}


void
crest_pg_conn_close(crest_pg_conn_t *c)
{
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }

    c->st.up = 0;
}
