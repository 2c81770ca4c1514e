/*
 * The up/down bookkeeping Redis and PostgreSQL connections share: when to
 * retry (backoff), when to probe, and logging each state change once, not
 * each attempt.  An outage logs one warning when it starts and one info line
 * with its length when it ends; the attempts in between log at debug.
 */
#ifndef CREST_CONN_STATE_H
#define CREST_CONN_STATE_H

#include <stdint.h>

#include "backoff.h"

typedef struct {
    const char       *what;             /* "redis", "postgres" */
    const char       *target;           /* redacted, for logs */
    int               up;
    int               ever_up;
    int               outage_logged;
    unsigned          failures;         /* attempts in this outage */
    int64_t           down_since_ms;
    int64_t           next_attempt_ms;
    int64_t           next_probe_ms;
    unsigned          probe_interval_ms;
    crest_backoff_t   backoff;
} crest_conn_state_t;

void crest_conn_state_init(crest_conn_state_t *s, const char *what,
    const char *target, unsigned probe_interval_ms, uint64_t seed);
/* Whether a connect attempt (when down) or a probe (when up) is due. */
int crest_conn_state_due(const crest_conn_state_t *s, int64_t now);
/* When crest_conn_state_due() next turns true. */
int64_t crest_conn_state_next(const crest_conn_state_t *s);

void crest_conn_state_connected(crest_conn_state_t *s, int64_t now);
void crest_conn_state_probed(crest_conn_state_t *s, int64_t now);
/* A connect attempt failed; quiet is for failures caused by our shutdown. */
void crest_conn_state_failed(crest_conn_state_t *s, int64_t now,
    const char *error, int quiet);
/* An established connection broke. */
void crest_conn_state_lost(crest_conn_state_t *s, int64_t now,
    const char *error, int quiet);

#endif /* CREST_CONN_STATE_H */
