/*
 * A PostgreSQL connection that keeps itself healthy, like redis_conn.h:
 * connects when a retry is due, runs SELECT 1 when a probe is due, and drops
 * and retries with backoff when the server goes away.
 *
 * libpq's blocking calls have no command timeout and cannot be woken by a
 * signal, so connect and queries use the asynchronous API and poll() the
 * socket together with the signal pipe, within a deadline.
 */
#ifndef CREST_PG_CONN_H
#define CREST_PG_CONN_H

#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "conn_state.h"

typedef struct {
    const crest_config_t  *cfg;
    PGconn                *conn;        /* NULL while down */
    crest_conn_state_t     st;
    char                   target[1024]; /* redacted DATABASE_URL */
    char                   appname[160];  /* the server keeps 63 bytes */
    int                    drain;   /* 1: keep working after SIGTERM, within
                                       the deadlines (to flush job rows) */
} crest_pg_conn_t;

void crest_pg_conn_init(crest_pg_conn_t *c, const crest_config_t *cfg);
/* Connects or probes if that is due; returns 1 if the connection is up. */
int crest_pg_conn_tick(crest_pg_conn_t *c, int64_t now);
int64_t crest_pg_conn_next(const crest_pg_conn_t *c);
/*
 * Runs sql within the command timeout.  Returns the result (PQclear it), or
 * NULL if down, timed out or the connection broke (it is then dropped for a
 * reconnect).  A result with an error status is returned, not a failure.
 */
PGresult *crest_pg_conn_exec(crest_pg_conn_t *c, const char *sql);
/* One statement with $1..$n text parameters (NULL = SQL NULL). */
PGresult *crest_pg_conn_exec_params(crest_pg_conn_t *c, const char *sql,
    int nparams, const char *const *values);
void crest_pg_conn_close(crest_pg_conn_t *c);

#endif /* CREST_PG_CONN_H */
