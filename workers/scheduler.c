/*
 * Job schedulers, the worker's part: when a worker fetches a job a scheduler
 * produced (its hash has "rjk"), it schedules the scheduler's next job with
 * updateJobScheduler before processing this one, as Node's Worker does
 * (JobScheduler.upsertJobScheduler with override false).  For "every" the
 * Lua computes the next time; for a cron "pattern" the client does, here
 * with shared/crest_cron.c and, for a "tz", the zone files (tz.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crest_cron.h"
#include "log.h"
#include "scheduler.h"
#include "tz.h"


/* hasLegacyRepeatableKeyShape(): "name:id:endDate:tz:<cron|every>" */
static int
crest_sched_legacy_key(const char *k)
{
    const char  *c[4], *p, *s;
    unsigned     n;

    for (n = 0, p = k; *p && n < 4; p++) {
        if (*p == ':') {
            c[n++] = p;
        }
    }

    if (n < 4) {
        return 0;
    }

    /* endDate: empty or digits */
    for (s = c[1] + 1; s < c[2]; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
    }

    s = c[3] + 1;

    if (*s == '\0') {
        return 0;
    }

    if (strchr(s, ' ')) {
        return 1;
    }

    for ( ; *s; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
    }

    return 1;
}


static int
crest_sched_num(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 1;
    }

    return 0;
}


/* Job.fromJSON's constructor puts attempts first (0 if missing) and
 * normalizes a numeric backoff; the rest keeps the stored order. */
static json_t *
crest_sched_public_opts(const json_t *stored)
{
    json_t       *o, *v;
    const char   *key;

    o = json_object();

    v = json_object_get(stored, "attempts");
    json_object_set_new(o, "attempts", v ? json_incref(v) : json_integer(0));

    json_object_foreach((json_t *) stored, key, v) {
        if (strcmp(key, "repeatJobKey") == 0) {
            continue;
        }

        if (strcmp(key, "backoff") == 0 && json_is_number(v)) {
            json_t  *b = json_object();
            json_object_set_new(b, "type", json_string("fixed"));
            json_object_set(b, "delay", v);
            json_object_set_new(o, key, b);
            continue;
        }

        json_object_set(o, key, v);
    }

    return o;
}


int
crest_scheduler_next(crest_bq_t *bq, const crest_bq_job_t *job,
    const char *prefix)
{
    const crest_tz_t  *tz;
    crest_cron_t       cron;
    crest_buf_t        key, base, packed;
    json_t            *repeat, *merged, *rep;
    const json_t      *v;
    const char        *rjk, *pattern, *tzname, *data, *argv[3], *args[7];
    const char        *kk;
    size_t             argl[3], lens[7];
    redisReply        *r;
    double             every, limit, count, offset, start, end, prev;
    int64_t            now, next, iteration, delay;
    char               err[256], nexts[24], nows[24], jobid[512];
    int                has_every, has_limit, immediately, legacy, rc;

    rjk = crest_bq_job_get(job, "rjk");
    legacy = crest_sched_legacy_key(rjk);

    if (legacy) {
        /* a legacy key shape may still name a scheduler: ask Redis */
        crest_buf_init(&key, &crest_malloc_allocator);
        crest_bullmq_key(&key, prefix, bq->queue, "repeat:");
        crest_buf_appends(&key, rjk);
        argv[0] = "HEXISTS";
        argl[0] = 7;
        argv[1] = key.data;
        argl[1] = key.len;
        argv[2] = "ic";
        argl[2] = 2;
        r = crest_redis_conn_argv(bq->conn, 3, argv, argl);
        crest_buf_free(&key);

        rc = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (r) {
            freeReplyObject(r);
        }

        if (!rc) {
            crest_log(CREST_LOG_ERROR, "Failed to add repeatable job for next "
                      "iteration: legacy repeatable job metadata is not "
                      "supported in BullMQ v6", CREST_LS("queue", bq->queue),
                      CREST_LS("job", job->id), CREST_LS("key", rjk));
            return -1;
        }
    }

    repeat = json_object_get(job->opts, "repeat");

    if (!json_is_object(repeat)) {
        crest_log(CREST_LOG_WARN, "scheduler job without repeat options",
                  CREST_LS("queue", bq->queue), CREST_LS("job", job->id));
        return -1;
    }

    has_every = crest_sched_num(json_object_get(repeat, "every"), &every)
                && every > 0;
    pattern = json_string_value(json_object_get(repeat, "pattern"));

    if ((pattern != NULL) == has_every) {
        crest_log(CREST_LOG_WARN, pattern ? "both .pattern and .every are set"
                                          : "neither .pattern nor .every is set",
                  CREST_LS("queue", bq->queue), CREST_LS("job", job->id));
        return -1;
    }

    count = 0;
    crest_sched_num(json_object_get(repeat, "count"), &count);
    iteration = count > 0 ? (int64_t) count + 1 : 1;

    has_limit = crest_sched_num(json_object_get(repeat, "limit"), &limit);
    if (has_limit && (double) iteration > limit) {
        return 0;
    }

    now = crest_wall_ms();

    if (crest_sched_num(json_object_get(repeat, "endDate"), &end)
        && (double) now > end)
    {
        return 0;
    }

    prev = 0;
    crest_sched_num(json_object_get(job->opts, "prevMillis"), &prev);
    if ((double) now < prev) {
        now = (int64_t) prev;
    }

    offset = 0;
    crest_sched_num(json_object_get(repeat, "offset"), &offset);
    immediately = json_is_true(json_object_get(repeat, "immediately"));

    next = -1;

    if (pattern) {
        if (crest_cron_parse(&cron, pattern, strlen(pattern), err, sizeof(err))
            != 0)
        {
            crest_log(CREST_LOG_WARN, "bad cron pattern",
                      CREST_LS("queue", bq->queue), CREST_LS("job", job->id),
                      CREST_LS("pattern", pattern), CREST_LS("error", err));
            return -1;
        }

        tz = NULL;
        tzname = json_string_value(json_object_get(repeat, "tz"));

        if (tzname && strcmp(tzname, "UTC") != 0
            && strcmp(tzname, "Etc/UTC") != 0)
        {
            tz = crest_tz_get(tzname, err, sizeof(err));
            if (tz == NULL) {
                crest_log(CREST_LOG_WARN, "bad time zone",
                          CREST_LS("queue", bq->queue),
                          CREST_LS("job", job->id), CREST_LS("error", err));
                return -1;
            }
        }

        start = 0;
        crest_sched_num(json_object_get(repeat, "startDate"), &start);

        if (immediately) {
            next = crest_wall_ms();
        } else {
            next = crest_cron_next(&cron, start > (double) now ? (int64_t) start
                                                               : now,
                                   tzname && tz == NULL ? NULL
                                                        : crest_tz_offset,
                                   (void *) tz);
        }

        if (next < 0) {
            return 0;       /* nothing ahead: cron-parser would throw */
        }

        if (next < now) {
            next = now;
        }
    }

    /* the next job's options: getNextJobOpts() in Node */
    merged = crest_sched_public_opts(job->opts);

    rep = json_deep_copy(repeat);
    json_object_del(rep, "immediately");
    json_object_set_new(rep, "offset", has_every && offset != 0
                                       ? json_real(offset) : json_null());
    json_object_set_new(rep, "count", json_integer(iteration));

    v = json_object_get(repeat, "startDate");
    json_object_set_new(rep, "startDate", json_is_number(v)
                        ? json_copy((json_t *) v) : json_null());
    v = json_object_get(repeat, "endDate");
    json_object_set_new(rep, "endDate", json_is_number(v)
                        ? json_copy((json_t *) v) : json_null());
    json_object_set_new(merged, "repeat", rep);

    if (pattern) {
        snprintf(jobid, sizeof(jobid), "repeat:%s:%lld", rjk, (long long) next);
        delay = next - now;
        json_object_set_new(merged, "jobId", json_string(jobid));
        json_object_set_new(merged, "delay", json_integer(delay < 0 ? 0
                                                                    : delay));
        json_object_set_new(merged, "timestamp", json_integer(now));
        json_object_set_new(merged, "prevMillis", json_integer(next));
        snprintf(nexts, sizeof(nexts), "%lld", (long long) next);

    } else {
        /* the Lua computes "every" from the scheduler's last run; Node
         * sends undefined here, which ends up as "" and NaN */
        snprintf(jobid, sizeof(jobid), "repeat:%s:undefined", rjk);
        json_object_set_new(merged, "jobId", json_string(jobid));
        json_object_set_new(merged, "delay", json_real(NAN));
        json_object_set_new(merged, "timestamp", json_integer(now));
        json_object_del(merged, "prevMillis");
        nexts[0] = '\0';
    }

    json_object_set_new(merged, "repeatJobKey", json_string(rjk));

    crest_buf_init(&packed, &crest_malloc_allocator);
    crest_buf_init(&base, &crest_malloc_allocator);
    crest_bullmq_pack_json(&packed, merged);
    crest_bullmq_key(&base, prefix, bq->queue, "");
    json_decref(merged);

    data = crest_bq_job_get(job, "data");
    snprintf(nows, sizeof(nows), "%lld", (long long) crest_wall_ms());

    args[0] = nexts;
    args[1] = rjk;
    args[2] = data ? data : "{}";
    args[3] = packed.data;
    args[4] = nows;
    args[5] = base.data;
    args[6] = job->id;

    for (int i = 0; i < 7; i++) {
        lens[i] = i == 3 ? packed.len : strlen(args[i]);
    }

    r = crest_bq_run(bq, CREST_BQ_UPDATE_SCHEDULER, NULL, job->id, 7, args,
                     lens);

    crest_buf_free(&packed);
    crest_buf_free(&base);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        crest_log(CREST_LOG_ERROR, "Failed to add repeatable job for next "
                  "iteration", CREST_LS("queue", bq->queue),
                  CREST_LS("job", job->id), CREST_LS("error", bq->err));
        if (r) {
            freeReplyObject(r);
        }
        return -1;
    }

    kk = r->type == REDIS_REPLY_STRING ? r->str : NULL;
    crest_log(CREST_LOG_DEBUG, "scheduled the next iteration",
              CREST_LS("queue", bq->queue), CREST_LS("scheduler", rjk),
              CREST_LS("job", kk));
    freeReplyObject(r);

    return 0;
}
