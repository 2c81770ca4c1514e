#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bq.h"
#include "clock.h"
#include "jobrows.h"
#include "log.h"
#include "pg_conn.h"
#include "redis_conn.h"

/* updates kept while PostgreSQL is away; past that the oldest go */
#define CREST_ROWS_MAX      100000
#define CREST_OUTBOX_BATCH  "50"

typedef enum {
    CREST_ROW_ACTIVE = 0, CREST_ROW_COMPLETED, CREST_ROW_FAILED
} crest_row_kind_t;

typedef struct crest_row_s {
    struct crest_row_s  *next;
    crest_row_kind_t     kind;
    char                 id[37];
    char                 attempts[24];
    char                *text;          /* result JSON or error */
} crest_row_t;

struct crest_jobrows_s {
    const crest_config_t  *cfg;
    pthread_t              thread;
    pthread_mutex_t        mu;
    pthread_cond_t         cv;
    crest_row_t           *head, *tail;
    unsigned               n;
    unsigned long          dropped;
    int                    stop;
    int64_t                deadline;
};

static const char  *crest_row_sql[] = {
    [CREST_ROW_ACTIVE] =
        "UPDATE jobs SET status = 'active', started_at = now(), "
        "attempts = $2::integer "
        "WHERE id = $1::uuid AND status IN ('pending', 'queued', 'active')",
    [CREST_ROW_COMPLETED] =
        "UPDATE jobs SET status = 'completed', result = $2::jsonb, "
        "error = NULL, finished_at = now() "
        "WHERE id = $1::uuid AND status <> 'cancelled'",
    [CREST_ROW_FAILED] =
        "UPDATE jobs SET status = 'failed', error = $2, finished_at = now() "
        "WHERE id = $1::uuid AND status <> 'cancelled'",
};


int
crest_job_id_is_uuid(const char *s)
{
    size_t  i;

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')
                     || (s[i] >= 'A' && s[i] <= 'F')))
        {
            return 0;
        }
    }

    return s[36] == '\0';
}


static void
crest_rows_push(crest_jobrows_t *r, crest_row_kind_t kind, const char *id,
    int64_t attempts, const char *text)
{
    crest_row_t  *row, *old;

    if (r == NULL || !crest_job_id_is_uuid(id)) {
        return;
    }

    row = calloc(1, sizeof(*row));
    if (row == NULL) {
        return;
    }

    row->kind = kind;
    memcpy(row->id, id, 37);
    snprintf(row->attempts, sizeof(row->attempts), "%lld",
             (long long) attempts);

    if (text) {
        row->text = strdup(text);
        if (row->text == NULL) {
            free(row);
            return;
        }
    }

    pthread_mutex_lock(&r->mu);

    if (r->n == CREST_ROWS_MAX) {
        old = r->head;
        r->head = old->next;
        if (r->head == NULL) {
            r->tail = NULL;
        }
        r->n--;
        r->dropped++;
        free(old->text);
        free(old);
    }

    if (r->tail) {
        r->tail->next = row;
    } else {
        r->head = row;
    }

    r->tail = row;
    r->n++;

    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}


void
crest_jobrows_active(crest_jobrows_t *r, const char *id, int64_t attempts)
{
    crest_rows_push(r, CREST_ROW_ACTIVE, id, attempts, NULL);
}


void
crest_jobrows_completed(crest_jobrows_t *r, const char *id,
    const char *result_json)
{
    crest_rows_push(r, CREST_ROW_COMPLETED, id, 0, result_json);
}


void
crest_jobrows_failed(crest_jobrows_t *r, const char *id, const char *error)
{
    crest_rows_push(r, CREST_ROW_FAILED, id, 0, error);
}


/* 1 applied (or refused for good), 0 PostgreSQL unreachable. */
static int
crest_rows_apply(crest_pg_conn_t *pg, const crest_row_t *row)
{
    const char  *values[2];
    PGresult    *res;

    values[0] = row->id;
    values[1] = row->kind == CREST_ROW_ACTIVE ? row->attempts : row->text;

    res = crest_pg_conn_exec_params(pg, crest_row_sql[row->kind], 2, values);

    if (res == NULL) {
        return 0;
    }

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        crest_log(CREST_LOG_WARN, "job row not updated",
                  CREST_LS("job", row->id),
                  CREST_LS("error", PQresultErrorMessage(res)));
    }

    PQclear(res);

    return 1;
}


static int
crest_rows_ok(PGresult *res, ExecStatusType want, const char *what)
{
    if (res == NULL) {
        return 0;
    }

    if (PQresultStatus(res) != want) {
        crest_log(CREST_LOG_WARN, "outbox reconciler", CREST_LS("step", what),
                  CREST_LS("error", PQresultErrorMessage(res)));
        PQclear(res);
        return 0;
    }

    return 1;
}


static int
crest_rows_queue_name_ok(const char *q)
{
    const char  *p;

    if (*q == '\0' || strlen(q) >= CREST_CONFIG_QUEUE_LEN) {
        return 0;
    }

    for (p = q; *p; p++) {
        if (*p == ':' || (unsigned char) *p < 0x21) {
            return 0;
        }
    }

    return 1;
}


/*
 * One batch: pending rows older than 2 s, locked so that concurrent
 * reconcilers (other worker processes) skip them, added to their queues,
 * then marked queued, in one transaction.  A row whose add fails stays
 * pending (the transaction rolls back) and is tried again next time.
 */
static void
crest_rows_reconcile(crest_jobrows_t *r, crest_pg_conn_t *pg,
    crest_redis_conn_t *redis)
{
    const char           *values[2];
    crest_bullmq_opts_t   o;
    crest_bq_t            bq;
    crest_buf_t           ids;
    PGresult             *res, *res2;
    char                  id[128];
    int                   i, n, added, bad;

    if (!crest_redis_conn_tick(redis, crest_mono_ms())) {
        return;
    }

    res = crest_pg_conn_exec(pg, "BEGIN");
    if (!crest_rows_ok(res, PGRES_COMMAND_OK, "begin")) {
        return;
    }
    PQclear(res);

    values[0] = CREST_OUTBOX_BATCH;
    res = crest_pg_conn_exec_params(pg,
        "SELECT id::text, queue, name, data::text, max_attempts "
        "FROM jobs WHERE status = 'pending' "
        "AND created_at < now() - interval '2 seconds' "
        "ORDER BY created_at LIMIT $1::integer FOR UPDATE SKIP LOCKED",
        1, values);

    if (!crest_rows_ok(res, PGRES_TUPLES_OK, "select")) {
        PQclear(crest_pg_conn_exec(pg, "ROLLBACK"));
        return;
    }

    n = PQntuples(res);
    added = 0;
    bad = 0;

    crest_buf_init(&ids, &crest_malloc_allocator);
    crest_buf_appendc(&ids, '{');

    for (i = 0; i < n; i++) {
        const char  *rid = PQgetvalue(res, i, 0);
        const char  *queue = PQgetvalue(res, i, 1);
        const char  *data = PQgetvalue(res, i, 3);

        if (!crest_rows_queue_name_ok(queue)) {
            values[0] = rid;
            values[1] = "invalid queue name";
            res2 = crest_pg_conn_exec_params(pg, crest_row_sql[CREST_ROW_FAILED],
                                             2, values);
            PQclear(res2);
            bad++;
            continue;
        }

        crest_bullmq_opts_init(&o);
        o.job_id = rid;
        o.attempts = atoll(PQgetvalue(res, i, 4));
        o.backoff.type = CREST_BQ_BACKOFF_EXPONENTIAL;
        o.backoff.delay = 1000;

        crest_bq_init(&bq, redis, r->cfg->queue_prefix, queue);

        if (crest_bq_add(&bq, PQgetvalue(res, i, 2), data, strlen(data), &o,
                         id, sizeof(id)) != 0)
        {
            crest_log(CREST_LOG_WARN, "outbox: adding a job failed",
                      CREST_LS("job", rid), CREST_LS("queue", queue),
                      CREST_LS("error", bq.err));
            crest_bq_free(&bq);
            crest_buf_free(&ids);
            PQclear(res);
            PQclear(crest_pg_conn_exec(pg, "ROLLBACK"));
            return;
        }

        crest_bq_free(&bq);

        if (added++) {
            crest_buf_appendc(&ids, ',');
        }
        crest_buf_appends(&ids, rid);
    }

    crest_buf_appendc(&ids, '}');
    PQclear(res);

    if (added) {
        values[0] = ids.data;
        res = crest_pg_conn_exec_params(pg,
            "UPDATE jobs SET status = 'queued', enqueued_at = now() "
            "WHERE id = ANY($1::uuid[]) AND status = 'pending'", 1, values);

        if (!crest_rows_ok(res, PGRES_COMMAND_OK, "update")) {
            crest_buf_free(&ids);
            PQclear(crest_pg_conn_exec(pg, "ROLLBACK"));
            return;
        }
        PQclear(res);
    }

    crest_buf_free(&ids);

    res = crest_pg_conn_exec(pg, "COMMIT");
    if (crest_rows_ok(res, PGRES_COMMAND_OK, "commit")) {
        PQclear(res);

        if (added || bad) {
            crest_log(CREST_LOG_INFO, "outbox: enqueued pending jobs",
                      CREST_LI("jobs", added), CREST_LI("invalid", bad));
        }
    }
}


static void *
crest_rows_main(void *arg)
{
    crest_jobrows_t     *r = arg;
    crest_pg_conn_t      pg;
    crest_redis_conn_t   redis;
    crest_row_t         *row;
    struct timespec      ts;
    int64_t              now, next_outbox, wait, deadline;
    unsigned long        dropped;
    int                  stop, up;

    crest_pg_conn_init(&pg, r->cfg);
    crest_redis_conn_init(&redis, r->cfg);
    next_outbox = crest_mono_ms() + r->cfg->outbox_interval_ms;

    for ( ;; ) {
        pthread_mutex_lock(&r->mu);
        stop = r->stop;
        deadline = r->deadline;
        row = r->head;
        dropped = r->dropped;
        r->dropped = 0;
        pthread_mutex_unlock(&r->mu);

        if (dropped) {
            crest_log(CREST_LOG_WARN, "job row updates dropped: PostgreSQL "
                      "was away too long", CREST_LI("updates", dropped));
        }

        now = crest_mono_ms();

        if (stop && (row == NULL || now >= deadline)) {
            break;
        }

        /* after SIGTERM the connection keeps working until the deadline */
        pg.drain = stop;
        up = crest_pg_conn_tick(&pg, now);

        if (up && row) {
            if (crest_rows_apply(&pg, row)) {
                pthread_mutex_lock(&r->mu);
                r->head = row->next;
                if (r->head == NULL) {
                    r->tail = NULL;
                }
                r->n--;
                pthread_mutex_unlock(&r->mu);
                free(row->text);
                free(row);
            }
            continue;
        }

        if (up && !stop && r->cfg->outbox_interval_ms
            && crest_mono_ms() >= next_outbox)
        {
            crest_rows_reconcile(r, &pg, &redis);
            next_outbox = crest_mono_ms() + r->cfg->outbox_interval_ms;
            continue;
        }

        /* sleep until work, the next reconcile or a reconnect is due */
        wait = up ? next_outbox - crest_mono_ms()
                  : crest_pg_conn_next(&pg) - crest_mono_ms();
        if (!r->cfg->outbox_interval_ms && up) {
            wait = 1000;
        }
        if (wait > 1000) {
            wait = 1000;
        }
        if (wait < 1) {
            wait = 1;
        }

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }

        pthread_mutex_lock(&r->mu);
        if (!r->stop && (r->head == NULL || !up)) {
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        pthread_mutex_unlock(&r->mu);
    }

    if (r->n) {
        crest_log(CREST_LOG_WARN, "job row updates not written at shutdown",
                  CREST_LI("updates", r->n));
    }

    crest_pg_conn_close(&pg);
    crest_redis_conn_close(&redis);

    return NULL;
}


crest_jobrows_t *
crest_jobrows_start(const crest_config_t *cfg, char *err, size_t errlen)
{
    crest_jobrows_t     *r;
    pthread_condattr_t   a;
    sigset_t             block, old;
    int                  rc;

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    r->cfg = cfg;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &a);
    pthread_condattr_destroy(&a);

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = pthread_create(&r->thread, NULL, crest_rows_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        free(r);
        return NULL;
    }

    return r;
}


void
crest_jobrows_stop(crest_jobrows_t *r, int64_t deadline)
{
    crest_row_t      *row;
    struct timespec   ts;
    int64_t           ms;

    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    r->deadline = deadline;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);

    /* the deadline plus the time a query in progress may take */
    ms = deadline - crest_mono_ms() + (int64_t) r->cfg->command_timeout_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (ms > 0 ? ms : 0) / 1000;
    ts.tv_nsec += ((ms > 0 ? ms : 0) % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }

    if (pthread_timedjoin_np(r->thread, NULL, &ts) != 0) {
        return;     /* still stuck in a query: the process ends anyway */
    }

    while ((row = r->head)) {
        r->head = row->next;
        free(row->text);
        free(row);
    }

    free(r);
}
