#include <stdio.h>

#include "conn_state.h"
#include "log.h"

#define CREST_BACKOFF_BASE_MS  100
#define CREST_BACKOFF_CAP_MS   5000


void
crest_conn_state_init(crest_conn_state_t *s, const char *what,
    const char *target, unsigned probe_interval_ms, uint64_t seed)
{
    s->what = what;
    s->target = target;
    s->up = 0;
    s->ever_up = 0;
    s->outage_logged = 0;
    s->failures = 0;
    s->down_since_ms = 0;
    s->next_attempt_ms = 0;
    s->next_probe_ms = 0;
    s->probe_interval_ms = probe_interval_ms;
    crest_backoff_init(&s->backoff, CREST_BACKOFF_BASE_MS,
                       CREST_BACKOFF_CAP_MS, seed);
}


int
crest_conn_state_due(const crest_conn_state_t *s, int64_t now)
{
    return now >= crest_conn_state_next(s);
}


int64_t
crest_conn_state_next(const crest_conn_state_t *s)
{
    return s->up ? s->next_probe_ms : s->next_attempt_ms;
}


void
crest_conn_state_connected(crest_conn_state_t *s, int64_t now)
{
    char  msg[64];

    if (s->outage_logged) {
        snprintf(msg, sizeof(msg), "%s %s", s->what,
                 s->ever_up ? "reconnected" : "connected");
        crest_log(CREST_LOG_INFO, msg,
                  CREST_LURL("target", s->target),
                  CREST_LI("attempts", s->failures + 1),
                  CREST_LI("down_ms", now - s->down_since_ms));

    } else {
        snprintf(msg, sizeof(msg), "%s connected", s->what);
        crest_log(CREST_LOG_INFO, msg, CREST_LURL("target", s->target));
    }

    s->up = 1;
    s->ever_up = 1;
    s->outage_logged = 0;
    s->failures = 0;
    s->next_probe_ms = now + s->probe_interval_ms;
    crest_backoff_reset(&s->backoff);
}


void
crest_conn_state_probed(crest_conn_state_t *s, int64_t now)
{
    s->next_probe_ms = now + s->probe_interval_ms;
}


void
crest_conn_state_failed(crest_conn_state_t *s, int64_t now,
    const char *error, int quiet)
{
    char      msg[64];
    unsigned  delay;

    delay = crest_backoff_next(&s->backoff);
    s->next_attempt_ms = now + delay;

    if (s->failures++ == 0 && !s->outage_logged) {
        s->down_since_ms = now;
    }

    if (quiet) {
        return;
    }

    if (!s->outage_logged) {
        snprintf(msg, sizeof(msg), "%s unavailable, retrying", s->what);
        crest_log(CREST_LOG_WARN, msg,
                  CREST_LURL("target", s->target),
                  CREST_LS("error", error),
                  CREST_LI("retry_ms", delay));
        s->outage_logged = 1;
        return;
    }

    snprintf(msg, sizeof(msg), "%s connect attempt failed", s->what);
    crest_log(CREST_LOG_DEBUG, msg,
              CREST_LS("error", error),
              CREST_LI("attempt", s->failures),
              CREST_LI("retry_ms", delay));
}


void
crest_conn_state_lost(crest_conn_state_t *s, int64_t now, const char *error,
    int quiet)
{
    char      msg[64];
    unsigned  delay;

    s->up = 0;
    s->failures = 0;
    s->down_since_ms = now;
    delay = crest_backoff_next(&s->backoff);
    s->next_attempt_ms = now + delay;

    if (quiet) {
        return;
    }

    snprintf(msg, sizeof(msg), "%s connection lost", s->what);
    crest_log(CREST_LOG_WARN, msg,
              CREST_LURL("target", s->target),
              CREST_LS("error", error),
              CREST_LI("retry_ms", delay));
    s->outage_logged = 1;
}
