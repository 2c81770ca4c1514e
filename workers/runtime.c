#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bq.h"
#include "clock.h"
#include "crest_bullmq.h"
#include "crest_json.h"
#include "log.h"
#include "processor.h"
#include "redis_conn.h"
#include "runtime.h"
#include "scheduler.h"

/* BullMQ Worker defaults */
#define CREST_DRAIN_DELAY_MS     5000
#define CREST_MAX_BLOCK_MS       10000
#define CREST_RATE_LIMIT_MAX_MS  30000
/* how long a finish waits for Redis before trying again */
#define CREST_FINISH_RETRY_MS    1000

typedef struct crest_rtq_s  crest_rtq_t;

typedef struct {
    crest_rtq_t      *q;
    unsigned          index;
    pthread_t         thread;
    int               started;
    /* under q->mu */
    int               has_job;      /* a job handed over, not yet taken */
    crest_bq_next_t   handoff;
    char              token[96];
    int               busy;         /* 1 from hand-over to slot free */
    char             *lock_id;      /* the job whose lock to renew */
    char              lock_token[96];
    int64_t           lock_ts;      /* monotonic, last renewal */
} crest_slot_t;

struct crest_rtq_s {
    crest_rt_t                *rt;
    const char                *name;
    const crest_processor_t   *proc;
    unsigned                   n;
    crest_slot_t              *slots;
    pthread_t                  dispatcher;
    int                        dispatcher_started;
    pthread_mutex_t            mu;
    pthread_cond_t             cv;
    unsigned                   busy;
    int                        dispatcher_done;
    int                        bfd;         /* blocking socket or -1 */
    int64_t                    next_stalled_check;
};

struct crest_rt_s {
    const crest_config_t  *cfg;
    crest_jobrows_t       *rows;
    char                   worker_id[37];
    atomic_ulong           token_seq;
    atomic_int             stopping;
    atomic_int             aborting;
    atomic_int             maint_stop;
    /* sleeping and waiting for the end */
    pthread_mutex_t        mu;
    pthread_cond_t         cv;
    unsigned               running;         /* slots with a job */
    pthread_t              maint;
    int                    maint_started;
    unsigned               nq;
    crest_rtq_t            queues[CREST_CONFIG_MAX_QUEUES];
};

struct crest_job_ctx_s {
    crest_rt_t             *rt;
    crest_bq_t             *bq;
    const char             *id;
    int64_t                 keep_logs;
};


/* ---- small helpers ---------------------------------------------------- */

static void
crest_rt_abstime(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;

    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}


static void
crest_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t  a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}


/* Sleeps ms or until the flag (stopping, aborting...) is set; returns the
 * flag's value. */
static int
crest_rt_sleep(crest_rt_t *rt, int64_t ms, atomic_int *flag)
{
    struct timespec  ts;

    if (ms <= 0) {
        return atomic_load(flag);
    }

    crest_rt_abstime(&ts, ms);

    pthread_mutex_lock(&rt->mu);
    while (!atomic_load(flag)) {
        if (pthread_cond_timedwait(&rt->cv, &rt->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&rt->mu);

    return atomic_load(flag);
}


static void
crest_rt_wake(crest_rt_t *rt)
{
    pthread_mutex_lock(&rt->mu);
    pthread_cond_broadcast(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
}


static void
crest_rt_uuid(char out[37])
{
    unsigned char  b[16];
    size_t         i, o;
    uint64_t       x;

    if (getrandom(b, sizeof(b), 0) != (ssize_t) sizeof(b)) {
        x = (uint64_t) crest_wall_ms() ^ ((uint64_t) getpid() << 32);
        for (i = 0; i < sizeof(b); i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            b[i] = (unsigned char) (x >> 56);
        }
    }

    b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);

    for (i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        o += (size_t) snprintf(out + o, 3, "%02x", b[i]);
    }

    out[36] = '\0';
}


/* Keeps a connection up: 1 when it is, else waits a little and returns 0. */
static int
crest_rt_conn_up(crest_rt_t *rt, crest_redis_conn_t *c, atomic_int *flag)
{
    int64_t  now, wait;

    now = crest_mono_ms();

    if (crest_redis_conn_tick(c, now)) {
        return 1;
    }

    wait = crest_redis_conn_next(c) - crest_mono_ms();
    crest_rt_sleep(rt, wait > 1000 ? 1000 : wait, flag);

    return 0;
}


static double
crest_rt_rand(void)
{
    uint64_t  x;

    if (getrandom(&x, sizeof(x), 0) != (ssize_t) sizeof(x)) {
        x = (uint64_t) crest_wall_ms() * 2654435761u;
    }

    return (double) (x >> 11) / 9007199254740992.0;
}


/* ---- the job context a processor sees -------------------------------- */

int
crest_job_progress(crest_job_ctx_t *ctx, const char *json)
{
    if (crest_bq_progress(ctx->bq, ctx->id, json) != 0) {
        crest_log(CREST_LOG_WARN, "progress not saved",
                  CREST_LS("queue", ctx->bq->queue), CREST_LS("job", ctx->id),
                  CREST_LS("error", ctx->bq->err));
        return -1;
    }

    return 0;
}


int
crest_job_log(crest_job_ctx_t *ctx, const char *row)
{
    if (crest_bq_log(ctx->bq, ctx->id, row, ctx->keep_logs) < 0) {
        crest_log(CREST_LOG_WARN, "job log not saved",
                  CREST_LS("queue", ctx->bq->queue), CREST_LS("job", ctx->id),
                  CREST_LS("error", ctx->bq->err));
        return -1;
    }

    return 0;
}


int
crest_job_sleep(crest_job_ctx_t *ctx, int64_t ms)
{
    return crest_rt_sleep(ctx->rt, ms, &ctx->rt->aborting) ? -1 : 0;
}


int
crest_job_aborted(crest_job_ctx_t *ctx)
{
    return atomic_load(&ctx->rt->aborting);
}


const crest_config_t *
crest_job_config(crest_job_ctx_t *ctx)
{
    return ctx->rt->cfg;
}


/* ---- lock tracking (the maintenance thread renews) -------------------- */

static void
crest_slot_track(crest_slot_t *s, const char *id, const char *token)
{
    crest_rtq_t  *q = s->q;

    pthread_mutex_lock(&q->mu);
    free(s->lock_id);
    s->lock_id = strdup(id);
    snprintf(s->lock_token, sizeof(s->lock_token), "%s", token);
    s->lock_ts = crest_mono_ms();
    pthread_mutex_unlock(&q->mu);
}


static void
crest_slot_untrack(crest_slot_t *s)
{
    crest_rtq_t  *q = s->q;

    pthread_mutex_lock(&q->mu);
    free(s->lock_id);
    s->lock_id = NULL;
    pthread_mutex_unlock(&q->mu);
}


/* ---- finishing a job ---------------------------------------------------- */

/* "Error: msg\n    at <queue> processor (crest-worker)", Node's err.stack
 * shape, added to the job's earlier traces and cut to stackTraceLimit. */
static char *
crest_rt_stacktrace(const crest_bq_job_t *job, const char *queue,
    const char *msg, int unrecoverable)
{
    json_t        *arr, *lim;
    json_error_t   e;
    const char    *old;
    char          *entry, *out;
    int64_t        limit;
    size_t         len;

    old = crest_bq_job_get(job, "stacktrace");
    arr = old ? json_loads(old, 0, &e) : NULL;

    if (!json_is_array(arr)) {
        json_decref(arr);
        arr = json_array();
    }

    len = strlen(msg) + strlen(queue) + 80;
    entry = malloc(len);
    if (entry) {
        snprintf(entry, len, "%s: %s\n    at %s processor (crest-worker)",
                 unrecoverable ? "UnrecoverableError" : "Error", msg, queue);
        json_array_append_new(arr, json_string_nocheck(entry));
        free(entry);
    }

    lim = json_object_get(job->opts, "stackTraceLimit");

    if (json_is_number(lim)) {
        limit = (int64_t) json_number_value(lim);

        if (limit == 0) {
            json_array_clear(arr);
        }

        while (limit > 0 && (int64_t) json_array_size(arr) > limit) {
            json_array_remove(arr, 0);
        }
    }

    out = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);

    return out;
}


typedef enum {
    CREST_FIN_OK = 0,       /* done; next may hold a fetched job */
    CREST_FIN_RETRY,        /* Redis unreachable: try again */
    CREST_FIN_GIVE_UP       /* the script refused (lock lost...) */
} crest_fin_t;


static crest_fin_t
crest_rt_reply(crest_bq_t *bq, redisReply *r, const char *what,
    const char *id, crest_bq_next_t *next)
{
    crest_fin_t  rc;

    memset(next, 0, sizeof(*next));

    if (r == NULL) {
        return CREST_FIN_RETRY;
    }

    rc = CREST_FIN_OK;

    if (r->type == REDIS_REPLY_ERROR) {
        crest_log(CREST_LOG_ERROR, "finishing a job failed",
                  CREST_LS("queue", bq->queue), CREST_LS("job", id),
                  CREST_LS("script", what), CREST_LS("error", bq->err));
        rc = CREST_FIN_GIVE_UP;

    } else if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        crest_log(CREST_LOG_WARN, "job not finished",
                  CREST_LS("queue", bq->queue), CREST_LS("job", id),
                  CREST_LS("script", what),
                  CREST_LS("error", crest_bq_code_message(r->integer)),
                  CREST_LI("code", r->integer));
        rc = CREST_FIN_GIVE_UP;

    } else if (crest_bq_read_next(bq, r, next) != 0) {
        crest_log(CREST_LOG_WARN, "cannot read the next job",
                  CREST_LS("queue", bq->queue), CREST_LS("error", bq->err));
    }

    freeReplyObject(r);

    return rc;
}


static crest_fin_t
crest_rt_complete(crest_rt_t *rt, crest_bq_t *bq, const crest_bq_job_t *job,
    const char *token, const char *value, int fetch, crest_bq_next_t *next)
{
    crest_bullmq_finish_t  f;
    crest_buf_t            base, opts;
    const char            *args[9];
    size_t                 lens[9];
    char                   now[24];
    json_t                *a;
    redisReply            *r;

    memset(&f, 0, sizeof(f));
    f.token = token;
    f.worker = rt->cfg->name;
    crest_bullmq_keep_from_json(&f.keep,
                                json_object_get(job->opts, "removeOnComplete"));
    f.lock_duration = rt->cfg->lock_duration_ms;
    a = json_object_get(job->opts, "attempts");
    f.attempts = json_is_number(a) ? (int64_t) json_number_value(a) : 0;

    crest_buf_init(&base, &crest_malloc_allocator);
    crest_buf_init(&opts, &crest_malloc_allocator);
    crest_bullmq_key(&base, rt->cfg->queue_prefix, bq->queue, "");
    crest_bullmq_pack_finish_opts(&opts, &f);
    snprintf(now, sizeof(now), "%lld", (long long) crest_wall_ms());

    args[0] = job->id;
    args[1] = now;
    args[2] = "returnvalue";
    args[3] = value;
    args[4] = "completed";
    args[5] = fetch ? "1" : "0";
    args[6] = base.data;
    args[7] = opts.data;
    args[8] = "";

    for (int i = 0; i < 9; i++) {
        lens[i] = i == 7 ? opts.len : strlen(args[i]);
    }

    r = crest_bq_run(bq, CREST_BQ_MOVE_TO_FINISHED, job->id, "completed", 9,
                     args, lens);

    crest_buf_free(&base);
    crest_buf_free(&opts);

    return crest_rt_reply(bq, r, "moveToFinished", job->id, next);
}


static crest_fin_t
crest_rt_fail(crest_rt_t *rt, crest_bq_t *bq, const crest_bq_job_t *job,
    const char *token, const char *msg, int unrecoverable, int fetch,
    crest_bq_next_t *next, const char **outcome)
{
    crest_bullmq_finish_t   f;
    crest_bullmq_backoff_t  bo;
    crest_buf_t             base, fields, opts;
    const char             *fv[4], *args[9];
    size_t                  lens[9];
    char                    now[24], delay_s[24], *stack;
    json_t                 *a;
    int64_t                 atm, attempts, delay;
    redisReply             *r;
    crest_fin_t             rc;
    int                     i;

    atm = crest_bq_job_int(job, "atm", 0);
    a = json_object_get(job->opts, "attempts");
    attempts = json_is_number(a) ? (int64_t) json_number_value(a) : 0;

    stack = crest_rt_stacktrace(job, bq->queue, msg, unrecoverable);

    fv[0] = "failedReason";
    fv[1] = msg;
    fv[2] = "stacktrace";
    fv[3] = stack ? stack : "[]";

    crest_buf_init(&base, &crest_malloc_allocator);
    crest_buf_init(&fields, &crest_malloc_allocator);
    crest_buf_init(&opts, &crest_malloc_allocator);
    crest_bullmq_key(&base, rt->cfg->queue_prefix, bq->queue, "");
    crest_bullmq_pack_strings(&fields, fv, 4);
    snprintf(now, sizeof(now), "%lld", (long long) crest_wall_ms());

    delay = -1;

    if (crest_bullmq_should_retry(atm, attempts, unrecoverable)) {
        crest_bullmq_backoff_from_json(&bo,
                                       json_object_get(job->opts, "backoff"));
        delay = crest_bullmq_backoff_delay(&bo, atm + 1, crest_rt_rand());

        if (delay < 0) {
            crest_log(CREST_LOG_WARN, "unknown backoff strategy: no retry",
                      CREST_LS("queue", bq->queue), CREST_LS("job", job->id));
        }
    }

    if (delay > 0) {
        *outcome = "delayed";
        snprintf(delay_s, sizeof(delay_s), "%lld", (long long) delay);

        if (fetch) {
            crest_bullmq_pack_fetch_opts(&opts, token,
                                         rt->cfg->lock_duration_ms,
                                         rt->cfg->name);
        }

        args[0] = base.data;
        args[1] = now;
        args[2] = job->id;
        args[3] = token;
        args[4] = delay_s;
        args[5] = "0";
        args[6] = fields.data;
        args[7] = fetch ? "1" : "0";
        args[8] = fetch ? opts.data : "";

        for (i = 0; i < 9; i++) {
            lens[i] = i == 6 ? fields.len : i == 8 && fetch ? opts.len
                      : strlen(args[i]);
        }

        r = crest_bq_run(bq, CREST_BQ_MOVE_TO_DELAYED, job->id, NULL, 9, args,
                         lens);
        rc = crest_rt_reply(bq, r, "moveToDelayed", job->id, next);

    } else if (delay == 0) {
        *outcome = "retried";
        args[0] = base.data;
        args[1] = now;
        args[2] = json_is_true(json_object_get(job->opts, "lifo")) ? "RPUSH"
                                                                    : "LPUSH";
        args[3] = job->id;
        args[4] = token;
        args[5] = fields.data;

        for (i = 0; i < 6; i++) {
            lens[i] = i == 5 ? fields.len : strlen(args[i]);
        }

        r = crest_bq_run(bq, CREST_BQ_RETRY_JOB, job->id, NULL, 6, args, lens);
        rc = crest_rt_reply(bq, r, "retryJob", job->id, next);

    } else {
        *outcome = "failed";

        memset(&f, 0, sizeof(f));
        f.token = token;
        f.worker = rt->cfg->name;
        crest_bullmq_keep_from_json(&f.keep,
                                    json_object_get(job->opts, "removeOnFail"));
        f.lock_duration = rt->cfg->lock_duration_ms;
        f.attempts = attempts;
        crest_bullmq_pack_finish_opts(&opts, &f);

        args[0] = job->id;
        args[1] = now;
        args[2] = "failedReason";
        args[3] = msg;
        args[4] = "failed";
        args[5] = fetch ? "1" : "0";
        args[6] = base.data;
        args[7] = opts.data;
        args[8] = fields.data;

        for (i = 0; i < 9; i++) {
            lens[i] = i == 7 ? opts.len : i == 8 ? fields.len
                      : strlen(args[i]);
        }

        r = crest_bq_run(bq, CREST_BQ_MOVE_TO_FINISHED, job->id, "failed", 9,
                         args, lens);
        rc = crest_rt_reply(bq, r, "moveToFinished", job->id, next);
    }

    free(stack);
    crest_buf_free(&base);
    crest_buf_free(&fields);
    crest_buf_free(&opts);

    return rc;
}


/* ---- running one job -------------------------------------------------- */

/*
 * Processes job and finishes it; next receives the job the finish fetched
 * (if any).  The connection may be down on entry; finishing waits for it.
 */
static void
crest_slot_run(crest_slot_t *s, crest_redis_conn_t *conn, crest_bq_t *bq,
    const crest_bq_job_t *job, const char *token, crest_bq_next_t *next)
{
    crest_rtq_t         *q = s->q;
    crest_rt_t          *rt = q->rt;
    crest_job_ctx_t      ctx;
    crest_job_t          j;
    crest_job_result_t   res;
    crest_buf_t          out;
    json_t              *data, *kl;
    json_error_t         e;
    const char          *defa, *outcome, *value;
    char                *valcopy;
    int64_t              started;
    crest_fin_t          fin;
    int                  fetch, uuid;

    memset(next, 0, sizeof(*next));
    started = crest_mono_ms();
    uuid = crest_job_id_is_uuid(job->id);

    /* a job scheduler's iteration: schedule the next one first, as Node */
    if (crest_bq_job_get(job, "rjk")) {
        crest_scheduler_next(bq, job, rt->cfg->queue_prefix);
    }

    crest_slot_track(s, job->id, token);

    if (uuid && rt->rows) {
        crest_jobrows_active(rt->rows, job->id,
                             crest_bq_job_int(job, "ats", 1));
    }

    data = json_loadb(crest_bq_job_get(job, "data") ? crest_bq_job_get(job,
                                                                       "data")
                                                    : "{}",
                      crest_bq_job_get(job, "data")
                      ? strlen(crest_bq_job_get(job, "data")) : 2,
                      JSON_DECODE_ANY, &e);

    memset(&j, 0, sizeof(j));
    j.queue = q->name;
    j.id = job->id;
    j.name = crest_bq_job_get(job, "name") ? crest_bq_job_get(job, "name") : "";
    j.data = crest_bq_job_get(job, "data") ? crest_bq_job_get(job, "data")
                                           : "{}";
    j.data_len = strlen(j.data);
    j.data_json = data;
    j.opts = job->opts;
    j.attempts_made = crest_bq_job_int(job, "atm", 0);
    j.attempts_started = crest_bq_job_int(job, "ats", 0);
    j.timestamp = crest_bq_job_int(job, "timestamp", 0);
    j.processed_on = crest_bq_job_int(job, "processedOn", 0);

    kl = json_object_get(job->opts, "kl");
    ctx.rt = rt;
    ctx.bq = bq;
    ctx.id = job->id;
    ctx.keep_logs = json_is_number(kl) ? (int64_t) json_number_value(kl) : 0;

    crest_buf_init(&out, &crest_malloc_allocator);

    /* a job that stalled too often carries BullMQ's deferred failure */
    defa = crest_bq_job_get(job, "defa");

    if (defa) {
        crest_buf_appends(&out, defa);
        res = CREST_JOB_FAIL_FINAL;

    } else {
        res = q->proc->process(&ctx, &j, &out);
    }

    json_decref(data);
    crest_slot_untrack(s);

    if (res == CREST_JOB_ABORTED || (atomic_load(&rt->aborting)
                                     && res != CREST_JOB_DONE))
    {
        crest_log(CREST_LOG_WARN, "job left for stalled-job recovery",
                  CREST_LS("queue", q->name), CREST_LS("job", job->id));
        crest_buf_free(&out);
        return;
    }

    if (crest_buf_failed(&out)) {
        crest_buf_reset(&out);
        out.failed = 0;
        crest_buf_appends(&out, "out of memory");
        res = CREST_JOB_FAIL;
    }

    /* the return value must be JSON: "" is null, anything else checked */
    valcopy = NULL;
    value = out.len ? out.data : "null";

    if (res == CREST_JOB_DONE && out.len) {
        json_t  *v = json_loadb(out.data, out.len, JSON_DECODE_ANY, &e);

        if (v == NULL) {
            crest_log(CREST_LOG_WARN, "return value is not JSON, "
                      "stored as a string", CREST_LS("queue", q->name),
                      CREST_LS("job", job->id));
            valcopy = json_dumps(json_stringn(out.data, out.len),
                                 JSON_ENCODE_ANY);
            value = valcopy ? valcopy : "null";
        }

        json_decref(v);
    }

    /* finish: if Redis is unreachable, keep trying while the lock may
     * still be ours; stalled-job recovery covers the rest */
    outcome = "completed";

    for ( ;; ) {
        fetch = !atomic_load(&rt->stopping);

        if (!conn->ctx && !crest_rt_conn_up(rt, conn, &rt->aborting)) {
            if (atomic_load(&rt->aborting)) {
                break;
            }
            continue;
        }

        if (res == CREST_JOB_DONE) {
            fin = crest_rt_complete(rt, bq, job, token, value, fetch, next);
        } else {
            fin = crest_rt_fail(rt, bq, job, token,
                                out.len ? out.data : "failed",
                                res == CREST_JOB_FAIL_FINAL, fetch, next,
                                &outcome);
        }

        if (fin != CREST_FIN_RETRY) {
            break;
        }

        if (crest_rt_sleep(rt, CREST_FINISH_RETRY_MS, &rt->aborting)) {
            break;
        }
    }

    if (fin == CREST_FIN_OK) {
        crest_log(res == CREST_JOB_DONE ? CREST_LOG_DEBUG : CREST_LOG_INFO,
                  res == CREST_JOB_DONE ? "job completed" : "job failed",
                  CREST_LS("queue", q->name), CREST_LS("job", job->id),
                  CREST_LS("outcome", outcome),
                  CREST_LS("error", res == CREST_JOB_DONE ? NULL : out.data),
                  CREST_LI("ms", crest_mono_ms() - started));

        if (uuid && rt->rows) {
            if (res == CREST_JOB_DONE) {
                crest_jobrows_completed(rt->rows, job->id, value);
            } else if (strcmp(outcome, "failed") == 0) {
                crest_jobrows_failed(rt->rows, job->id, out.data);
            }
        }
    }

    free(valcopy);
    crest_buf_free(&out);
}


static void *
crest_slot_main(void *arg)
{
    crest_slot_t        *s = arg;
    crest_rtq_t         *q = s->q;
    crest_rt_t          *rt = q->rt;
    crest_redis_conn_t   conn;
    crest_bq_t           bq;
    crest_bq_next_t      cur, next;
    char                 token[96];

    crest_redis_conn_init(&conn, rt->cfg);
    crest_bq_init(&bq, &conn, rt->cfg->queue_prefix, q->name);

    for ( ;; ) {
        pthread_mutex_lock(&q->mu);

        while (!s->has_job && !q->dispatcher_done) {
            pthread_cond_wait(&q->cv, &q->mu);
        }

        if (!s->has_job) {
            pthread_mutex_unlock(&q->mu);
            break;
        }

        cur = s->handoff;
        memset(&s->handoff, 0, sizeof(s->handoff));
        s->has_job = 0;
        snprintf(token, sizeof(token), "%s", s->token);
        pthread_mutex_unlock(&q->mu);

        /* processors report progress and logs: be connected first */
        while (!conn.ctx && !atomic_load(&rt->aborting)) {
            crest_rt_conn_up(rt, &conn, &rt->aborting);
        }

        /* the same token serves the jobs a finish fetches, as in Node */
        while (cur.has_job && !atomic_load(&rt->aborting)) {
            crest_slot_run(s, &conn, &bq, &cur.job, token, &next);
            crest_bq_next_free(&cur);
            cur = next;

        }

        /* a job we will not run (aborting): its lock expires */
        crest_bq_next_free(&cur);

        pthread_mutex_lock(&q->mu);
        s->busy = 0;
        q->busy--;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);

        pthread_mutex_lock(&rt->mu);
        rt->running--;
        pthread_cond_broadcast(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
    }

    crest_bq_free(&bq);
    crest_redis_conn_close(&conn);

    return NULL;
}


/* ---- the dispatcher ----------------------------------------------------- */

/*
 * BZPOPMIN <queue>:marker for up to timeout_ms.  Returns 1 with *score set
 * when a marker came, 0 on timeout, -1 when the connection broke (or was
 * shut down to stop us).
 */
static int
crest_rt_block(crest_rtq_t *q, crest_redis_conn_t *c, int64_t timeout_ms,
    double *score)
{
    crest_buf_t   key;
    const char   *argv[3];
    size_t        argl[3];
    char          t[32];
    redisReply   *r;
    int           rc;

    crest_buf_init(&key, &crest_malloc_allocator);
    crest_bullmq_key(&key, q->rt->cfg->queue_prefix, q->name, "marker");
    snprintf(t, sizeof(t), "%.3f", (double) timeout_ms / 1000.0);

    argv[0] = "BZPOPMIN";
    argl[0] = 8;
    argv[1] = key.data;
    argl[1] = key.len;
    argv[2] = t;
    argl[2] = strlen(t);

    redisSetTimeout(c->ctx, (struct timeval) {
        (timeout_ms + 3000) / 1000, ((timeout_ms + 3000) % 1000) * 1000 });

    /* published so that crest_rt_stop can cut the wait short */
    pthread_mutex_lock(&q->mu);
    q->bfd = atomic_load(&q->rt->stopping) ? -1 : c->ctx->fd;
    pthread_mutex_unlock(&q->mu);

    r = atomic_load(&q->rt->stopping)
        ? NULL : redisCommandArgv(c->ctx, 3, argv, argl);

    pthread_mutex_lock(&q->mu);
    q->bfd = -1;
    pthread_mutex_unlock(&q->mu);

    crest_buf_free(&key);

    if (r == NULL) {
        if (!atomic_load(&q->rt->stopping)) {
            crest_redis_conn_fail(c, c->ctx->errstr[0] ? c->ctx->errstr
                                                       : "BZPOPMIN failed");
        } else {
            crest_redis_conn_close(c);
        }
        return -1;
    }

    crest_redis_conn_set_timeout(c, 0);

    rc = 0;

    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3
        && r->element[2]->type == REDIS_REPLY_STRING)
    {
        *score = atof(r->element[2]->str);
        rc = 1;

    } else if (r->type == REDIS_REPLY_ERROR) {
        crest_log(CREST_LOG_WARN, "BZPOPMIN failed", CREST_LS("queue", q->name),
                  CREST_LS("error", r->str));
        rc = -1;
    }

    freeReplyObject(r);

    return rc;
}


static void *
crest_dispatcher_main(void *arg)
{
    crest_rtq_t         *q = arg;
    crest_rt_t          *rt = q->rt;
    crest_redis_conn_t   cmd, blk;
    crest_bq_t           bq;
    crest_bq_next_t      next;
    crest_buf_t          name;
    crest_slot_t        *slot;
    char                 token[96];
    double               score, wait;
    int64_t              block_until, now, ms;
    unsigned             i;
    int                  drained, rc, warned;

    crest_redis_conn_init(&cmd, rt->cfg);
    crest_redis_conn_init(&blk, rt->cfg);

    crest_buf_init(&name, &crest_malloc_allocator);
    crest_bullmq_client_name(&name, rt->cfg->queue_prefix, q->name,
                             rt->cfg->name);
    crest_redis_conn_set_client_name(&blk, name.data);
    crest_buf_free(&name);

    crest_bq_init(&bq, &cmd, rt->cfg->queue_prefix, q->name);

    drained = 0;
    block_until = 0;
    warned = 0;

    while (!atomic_load(&rt->stopping)) {

        if (!crest_rt_conn_up(rt, &cmd, &rt->stopping)
            || !crest_rt_conn_up(rt, &blk, &rt->stopping))
        {
            continue;
        }

        /* wait for a free slot */
        pthread_mutex_lock(&q->mu);
        while (q->busy == q->n && !atomic_load(&rt->stopping)) {
            pthread_cond_wait(&q->cv, &q->mu);
        }
        pthread_mutex_unlock(&q->mu);

        if (atomic_load(&rt->stopping)) {
            break;
        }

        if (drained) {
            now = crest_wall_ms();

            if (block_until > 0 && block_until - now <= 0) {
                block_until = 0;

            } else {
                if (block_until > 0) {
                    wait = (double) (block_until - now);
                    ms = wait < 1 ? 1 : wait > CREST_MAX_BLOCK_MS
                                        ? CREST_MAX_BLOCK_MS : (int64_t) wait;
                } else {
                    ms = CREST_DRAIN_DELAY_MS;
                }

                rc = crest_rt_block(q, &blk, ms, &score);

                if (rc < 0) {
                    continue;
                }

                /* "0" (score 0): work waits; "1": the next delayed job */
                block_until = rc == 1 ? (int64_t) score : 0;

                if (block_until > 0 && block_until - crest_wall_ms() >= 1) {
                    continue;
                }
            }
        }

        snprintf(token, sizeof(token), "%s:%lu", rt->worker_id,
                 atomic_fetch_add(&rt->token_seq, 1));

        if (crest_bq_move_to_active(&bq, token, rt->cfg->lock_duration_ms,
                                    rt->cfg->name, &next) != 0)
        {
            if (!warned++) {
                crest_log(CREST_LOG_WARN, "fetching jobs failed",
                          CREST_LS("queue", q->name),
                          CREST_LS("error", bq.err));
            }
            crest_rt_sleep(rt, 1000, &rt->stopping);
            continue;
        }

        warned = 0;

        if (!next.has_job) {
            drained = 1;
            block_until = next.next_delayed;

            if (next.rate_limit_ms > 0) {
                crest_rt_sleep(rt, next.rate_limit_ms > CREST_RATE_LIMIT_MAX_MS
                                   ? CREST_RATE_LIMIT_MAX_MS
                                   : next.rate_limit_ms, &rt->stopping);
                drained = 0;
            }

            continue;
        }

        drained = 0;

        pthread_mutex_lock(&rt->mu);
        rt->running++;
        pthread_mutex_unlock(&rt->mu);

        pthread_mutex_lock(&q->mu);

        for (i = 0, slot = NULL; i < q->n; i++) {
            if (!q->slots[i].busy) {
                slot = &q->slots[i];
                break;
            }
        }

        /* busy < n was checked, and only this thread takes slots */
        slot->handoff = next;
        slot->has_job = 1;
        slot->busy = 1;
        snprintf(slot->token, sizeof(slot->token), "%s", token);
        q->busy++;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }

    pthread_mutex_lock(&q->mu);
    q->dispatcher_done = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);

    crest_bq_free(&bq);
    crest_redis_conn_close(&cmd);
    crest_redis_conn_close(&blk);

    return NULL;
}


/* ---- maintenance: lock renewal and stalled jobs ------------------------ */

static void
crest_rt_renew(crest_rt_t *rt, crest_bq_t *bq, crest_rtq_t *q, int64_t now)
{
    crest_buf_t   base, toks, ids, dur;
    const char  **tv, **iv, *args[4];
    size_t        lens[4], n, i, k;
    char          d[24];
    redisReply   *r;
    int64_t       quarter;

    quarter = rt->cfg->lock_duration_ms / 4;

    tv = calloc(q->n, sizeof(char *));
    iv = calloc(q->n, sizeof(char *));

    if (tv == NULL || iv == NULL) {
        free(tv);
        free(iv);
        return;
    }

    n = 0;

    pthread_mutex_lock(&q->mu);
    for (i = 0; i < q->n; i++) {
        crest_slot_t  *s = &q->slots[i];

        if (s->lock_id && s->lock_ts + quarter <= now) {
            iv[n] = strdup(s->lock_id);
            tv[n] = strdup(s->lock_token);
            if (iv[n] && tv[n]) {
                n++;
            } else {
                free((void *) iv[n]);
                free((void *) tv[n]);
            }
        }
    }
    pthread_mutex_unlock(&q->mu);

    if (n == 0) {
        free(tv);
        free(iv);
        return;
    }

    crest_buf_init(&base, &crest_malloc_allocator);
    crest_buf_init(&toks, &crest_malloc_allocator);
    crest_buf_init(&ids, &crest_malloc_allocator);
    crest_buf_init(&dur, &crest_malloc_allocator);
    crest_bullmq_key(&base, rt->cfg->queue_prefix, q->name, "");
    crest_bullmq_pack_strings(&toks, tv, n);
    crest_bullmq_pack_strings(&ids, iv, n);
    snprintf(d, sizeof(d), "%u", rt->cfg->lock_duration_ms);

    args[0] = base.data;
    lens[0] = base.len;
    args[1] = toks.data;
    lens[1] = toks.len;
    args[2] = ids.data;
    lens[2] = ids.len;
    args[3] = d;
    lens[3] = strlen(d);

    r = crest_bq_run(bq, CREST_BQ_EXTEND_LOCKS, NULL, NULL, 4, args, lens);

    if (r && r->type == REDIS_REPLY_ARRAY) {
        /* the ids it could not extend: the lock is gone or not ours */
        for (k = 0; k < r->elements; k++) {
            crest_log(CREST_LOG_WARN, "could not renew lock",
                      CREST_LS("queue", q->name),
                      CREST_LS("job", r->element[k]->str));
        }

        pthread_mutex_lock(&q->mu);
        for (i = 0; i < q->n; i++) {
            crest_slot_t  *s = &q->slots[i];

            for (k = 0; k < n && s->lock_id; k++) {
                if (strcmp(s->lock_id, iv[k]) == 0
                    && strcmp(s->lock_token, tv[k]) == 0)
                {
                    s->lock_ts = now;
                }
            }
        }
        pthread_mutex_unlock(&q->mu);

        crest_log(CREST_LOG_DEBUG, "locks renewed", CREST_LS("queue", q->name),
                  CREST_LI("jobs", n - r->elements));

    } else if (r) {
        crest_log(CREST_LOG_WARN, "extendLocks failed",
                  CREST_LS("queue", q->name), CREST_LS("error", bq->err));
    }

    if (r) {
        freeReplyObject(r);
    }

    for (i = 0; i < n; i++) {
        free((void *) tv[i]);
        free((void *) iv[i]);
    }

    free(tv);
    free(iv);
    crest_buf_free(&base);
    crest_buf_free(&toks);
    crest_buf_free(&ids);
    crest_buf_free(&dur);
}


static void
crest_rt_stalled(crest_rt_t *rt, crest_bq_t *bq, crest_rtq_t *q)
{
    crest_buf_t   base;
    const char   *args[4];
    char          max[16], now[24], interval[16];
    redisReply   *r;
    size_t        i;

    crest_buf_init(&base, &crest_malloc_allocator);
    crest_bullmq_key(&base, rt->cfg->queue_prefix, q->name, "");
    snprintf(max, sizeof(max), "%u", rt->cfg->max_stalled_count);
    snprintf(now, sizeof(now), "%lld", (long long) crest_wall_ms());
    snprintf(interval, sizeof(interval), "%u", rt->cfg->stalled_interval_ms);

    args[0] = max;
    args[1] = base.data;
    args[2] = now;
    args[3] = interval;

    r = crest_bq_run(bq, CREST_BQ_MOVE_STALLED, NULL, NULL, 4, args, NULL);
    crest_buf_free(&base);

    if (r == NULL) {
        return;
    }

    if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_STRING) {
                crest_log(CREST_LOG_WARN, "stalled job moved back to wait",
                          CREST_LS("queue", q->name),
                          CREST_LS("job", r->element[i]->str));
            }
        }

    } else if (r->type == REDIS_REPLY_ERROR) {
        crest_log(CREST_LOG_WARN, "stalled-job check failed",
                  CREST_LS("queue", q->name), CREST_LS("error", bq->err));
    }

    freeReplyObject(r);
}


static void *
crest_maint_main(void *arg)
{
    crest_rt_t          *rt = arg;
    crest_redis_conn_t   conn;
    crest_bq_t           bq[CREST_CONFIG_MAX_QUEUES];
    int64_t              now, next_renew, next, quarter;
    unsigned             i;

    crest_redis_conn_init(&conn, rt->cfg);

    for (i = 0; i < rt->nq; i++) {
        crest_bq_init(&bq[i], &conn, rt->cfg->queue_prefix,
                      rt->queues[i].name);
        rt->queues[i].next_stalled_check = 0;
    }

    quarter = rt->cfg->lock_duration_ms / 4;
    next_renew = crest_mono_ms() + quarter;

    while (!atomic_load(&rt->maint_stop)) {

        if (!crest_rt_conn_up(rt, &conn, &rt->maint_stop)) {
            continue;
        }

        now = crest_mono_ms();

        if (now >= next_renew) {
            for (i = 0; i < rt->nq; i++) {
                crest_rt_renew(rt, &bq[i], &rt->queues[i], now);
            }
            next_renew = now + quarter;
        }

        next = next_renew;

        for (i = 0; i < rt->nq; i++) {
            crest_rtq_t  *q = &rt->queues[i];

            /* like Node, stop checking for stalled jobs when closing */
            if (atomic_load(&rt->stopping)) {
                continue;
            }

            if (crest_mono_ms() >= q->next_stalled_check) {
                crest_rt_stalled(rt, &bq[i], q);
                q->next_stalled_check = crest_mono_ms()
                                        + rt->cfg->stalled_interval_ms;
            }

            if (q->next_stalled_check < next) {
                next = q->next_stalled_check;
            }
        }

        crest_rt_sleep(rt, next - crest_mono_ms(), &rt->maint_stop);
    }

    for (i = 0; i < rt->nq; i++) {
        crest_bq_free(&bq[i]);
    }

    crest_redis_conn_close(&conn);

    return NULL;
}


/* ---- life cycle ---------------------------------------------------------- */

crest_rt_t *
crest_rt_start(const crest_config_t *cfg, crest_jobrows_t *rows, char *err,
    size_t errlen)
{
    crest_rt_t   *rt;
    crest_rtq_t  *q;
    sigset_t      block, old;
    unsigned      i, k;
    int           rc;

    for (i = 0; i < cfg->nqueues; i++) {
        if (crest_processor_find(cfg->processors[i]) == NULL) {
            snprintf(err, errlen, "CREST_QUEUES: no processor \"%s\" (for "
                     "queue \"%s\")", cfg->processors[i], cfg->queues[i]);
            return NULL;
        }
    }

    if (crest_bullmq_script_find("moveToActive") == NULL) {
        snprintf(err, errlen, "BullMQ scripts missing from the build");
        return NULL;
    }

    rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    rt->cfg = cfg;
    rt->rows = rows;
    crest_rt_uuid(rt->worker_id);
    atomic_init(&rt->token_seq, 0);
    atomic_init(&rt->stopping, 0);
    atomic_init(&rt->aborting, 0);
    atomic_init(&rt->maint_stop, 0);
    pthread_mutex_init(&rt->mu, NULL);
    crest_cond_init_mono(&rt->cv);
    rt->nq = cfg->nqueues;

    for (i = 0; i < rt->nq; i++) {
        q = &rt->queues[i];
        q->rt = rt;
        q->name = cfg->queues[i];
        q->proc = crest_processor_find(cfg->processors[i]);
        q->n = cfg->concurrency;
        q->bfd = -1;
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, NULL);
        q->slots = calloc(q->n, sizeof(crest_slot_t));

        if (q->slots == NULL) {
            snprintf(err, errlen, "out of memory");
            rt->nq = i;
            crest_rt_stop(rt);
            crest_rt_destroy(rt, crest_mono_ms());
            return NULL;
        }

        for (k = 0; k < q->n; k++) {
            q->slots[k].q = q;
            q->slots[k].index = k;
        }
    }

    /* SIGTERM and SIGINT stay with the main thread */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    rc = 0;

    for (i = 0; i < rt->nq && rc == 0; i++) {
        q = &rt->queues[i];

        for (k = 0; k < q->n && rc == 0; k++) {
            rc = pthread_create(&q->slots[k].thread, NULL, crest_slot_main,
                                &q->slots[k]);
            q->slots[k].started = rc == 0;
        }

        if (rc == 0) {
            rc = pthread_create(&q->dispatcher, NULL, crest_dispatcher_main, q);
            q->dispatcher_started = rc == 0;
        }
    }

    if (rc == 0) {
        rc = pthread_create(&rt->maint, NULL, crest_maint_main, rt);
        rt->maint_started = rc == 0;
    }

    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));

        for (i = 0; i < rt->nq; i++) {
            /* threads never started wait for nothing */
            rt->queues[i].dispatcher_done = !rt->queues[i].dispatcher_started;
        }

        crest_rt_stop(rt);
        crest_rt_destroy(rt, crest_mono_ms() + 5000);
        return NULL;
    }

    for (i = 0; i < rt->nq; i++) {
        crest_log(CREST_LOG_INFO, "serving queue",
                  CREST_LS("queue", rt->queues[i].name),
                  CREST_LS("processor", rt->queues[i].proc->queue),
                  CREST_LI("concurrency", rt->queues[i].n),
                  CREST_LS("worker_id", rt->worker_id));
    }

    return rt;
}


void
crest_rt_stop(crest_rt_t *rt)
{
    unsigned  i;

    atomic_store(&rt->stopping, 1);

    for (i = 0; i < rt->nq; i++) {
        crest_rtq_t  *q = &rt->queues[i];

        pthread_mutex_lock(&q->mu);

        /* cut a BZPOPMIN short: the dispatcher sees the stop at once */
        if (q->bfd >= 0) {
            shutdown(q->bfd, SHUT_RDWR);
        }

        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }

    crest_rt_wake(rt);
}


unsigned
crest_rt_wait(crest_rt_t *rt, int64_t deadline)
{
    struct timespec  ts;
    unsigned         left;
    int64_t          ms;

    pthread_mutex_lock(&rt->mu);

    while (rt->running > 0) {
        ms = deadline - crest_mono_ms();
        if (ms <= 0) {
            break;
        }

        crest_rt_abstime(&ts, ms);
        pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
    }

    left = rt->running;
    pthread_mutex_unlock(&rt->mu);

    return left;
}


void
crest_rt_abort(crest_rt_t *rt)
{
    atomic_store(&rt->aborting, 1);
    crest_rt_wake(rt);
}


static int
crest_rt_join(pthread_t t, int64_t deadline)
{
    struct timespec  ts;
    int64_t          ms;

    ms = deadline - crest_mono_ms();
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (ms > 0 ? ms : 0) / 1000;
    ts.tv_nsec += ((ms > 0 ? ms : 0) % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }

    return pthread_timedjoin_np(t, NULL, &ts) == 0 ? 0 : -1;
}


int
crest_rt_destroy(crest_rt_t *rt, int64_t deadline)
{
    crest_rtq_t  *q;
    unsigned      i, k;
    int           stuck;

    stuck = 0;

    for (i = 0; i < rt->nq; i++) {
        q = &rt->queues[i];

        if (q->dispatcher_started && crest_rt_join(q->dispatcher, deadline)) {
            stuck = 1;
        }

        for (k = 0; k < q->n; k++) {
            if (q->slots[k].started
                && crest_rt_join(q->slots[k].thread, deadline))
            {
                stuck = 1;
            }
        }
    }

    /* locks are renewed until the last job is done */
    atomic_store(&rt->maint_stop, 1);
    crest_rt_wake(rt);

    if (rt->maint_started && crest_rt_join(rt->maint, deadline + 2000)) {
        stuck = 1;
    }

    if (stuck) {
        /* a thread still runs: leave its memory alone, the process ends */
        return -1;
    }

    for (i = 0; i < rt->nq; i++) {
        q = &rt->queues[i];

        for (k = 0; k < q->n; k++) {
            free(q->slots[k].lock_id);
            crest_bq_next_free(&q->slots[k].handoff);
        }

        free(q->slots);
    }

    free(rt);

    return 0;
}
