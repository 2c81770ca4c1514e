/*
 * The trending-refresh job schedulers: one BullMQ job scheduler per
 * platform x region (x category) of CREST_TRENDING_SCHEDULE, repeating
 * every CREST_TRENDING_EVERY_MS, upserted with BullMQ's addJobScheduler
 * the way Queue.upsertJobScheduler(id, {every}, {name, data, opts}) does.
 * Upserting again is idempotent: an unchanged scheduler keeps its next run.
 * Later iterations are scheduled by the worker that fetches each job
 * (scheduler.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crest_bullmq.h"
#include "trending_sched.h"


/* "platform:region[:category]" into a scheduler id and its job data. */
static int
crest_tsched_entry(const char *s, size_t n, char *id, size_t idlen,
    json_t **data, char *err, size_t errlen)
{
    char         buf[128], *f[3], *p;
    unsigned     k = 0;

    if (n == 0 || n >= sizeof(buf)) {
        snprintf(err, errlen, "CREST_TRENDING_SCHEDULE: bad entry \"%.*s\"",
                 (int) (n < 60 ? n : 60), s);
        return -1;
    }

    memcpy(buf, s, n);
    buf[n] = '\0';

    for (p = buf; k < 3; k++) {
        f[k] = p;
        p = strchr(p, ':');
        if (p == NULL) {
            k++;
            break;
        }
        *p++ = '\0';
    }

    if (p != NULL || k < 2 || f[0][0] == '\0' || f[1][0] == '\0'
        || (strcmp(f[0], "youtube") && strcmp(f[0], "tiktok")
            && strcmp(f[0], "x") && strcmp(f[0], "reddit")))
    {
        snprintf(err, errlen, "CREST_TRENDING_SCHEDULE: \"%s\" is not "
                 "platform:region[:category] (youtube, tiktok, x, reddit)",
                 s[0] ? buf : "");
        return -1;
    }

    *data = json_pack("{s:s, s:s}", "platform", f[0], "region", f[1]);
    if (k == 3 && f[2][0]) {
        json_object_set_new(*data, "category", json_string(f[2]));
    }

    snprintf(id, idlen, "trending:%s:%s:%s", f[0], f[1],
             k == 3 && f[2][0] ? f[2] : "all");

    return 0;
}


int
crest_sched_upsert(crest_bq_t *q, const char *id, const char *name,
    const json_t *data, long every, char *err, size_t errlen)
{
    crest_buf_t   popts, ptmpl, pnext, base;
    json_t       *opts, *tmpl, *next;
    char         *datas, nows[24];
    const char   *args[9];
    size_t        lens[9];
    redisReply   *r;
    int           i, rc = -1;

    opts = json_pack("{s:s, s:I, s:n}", "name", name, "every",
                     (json_int_t) every, "offset");
    tmpl = json_pack("{s:i, s:{s:s, s:i}}", "attempts", 3, "backoff",
                     "type", "exponential", "delay", 5000);
    next = json_deep_copy(tmpl);
    json_object_set_new(next, "repeat", json_pack("{s:I, s:n, s:i, s:n, s:n}",
                        "every", (json_int_t) every, "offset", "count", 1,
                        "startDate", "endDate"));
    json_object_set_new(next, "jobId", json_sprintf("repeat:%s:undefined", id));
    json_object_set_new(next, "timestamp", json_integer(crest_wall_ms()));
    json_object_set_new(next, "repeatJobKey", json_string(id));

    crest_buf_init(&popts, &crest_malloc_allocator);
    crest_buf_init(&ptmpl, &crest_malloc_allocator);
    crest_buf_init(&pnext, &crest_malloc_allocator);
    crest_buf_init(&base, &crest_malloc_allocator);
    crest_bullmq_pack_json(&popts, opts);
    crest_bullmq_pack_json(&ptmpl, tmpl);
    crest_bullmq_pack_json(&pnext, next);
    crest_bullmq_key(&base, q->prefix, q->queue, "");
    datas = json_dumps(data, JSON_COMPACT);
    snprintf(nows, sizeof(nows), "%lld", (long long) crest_wall_ms());

    args[0] = "";               /* nextMillis: the Lua computes "every" */
    args[1] = popts.data;
    args[2] = id;
    args[3] = datas ? datas : "{}";
    args[4] = ptmpl.data;
    args[5] = pnext.data;
    args[6] = nows;
    args[7] = base.data;
    args[8] = "";               /* no producer job */
    for (i = 0; i < 9; i++) {
        lens[i] = i == 1 ? popts.len : i == 4 ? ptmpl.len
                  : i == 5 ? pnext.len : i == 7 ? base.len : strlen(args[i]);
    }

    r = crest_bq_run(q, CREST_BQ_ADD_SCHEDULER, NULL, NULL, 9, args, lens);

    if (r == NULL || r->type == REDIS_REPLY_ERROR
        || (r->type == REDIS_REPLY_INTEGER && r->integer < 0))
    {
        snprintf(err, errlen, "%s: addJobScheduler: %s", id,
                 r && r->type == REDIS_REPLY_ERROR ? r->str
                 : r ? "error code" : q->err);
    } else {
        rc = 0;
    }

    if (r) {
        freeReplyObject(r);
    }

    free(datas);
    crest_buf_free(&popts);
    crest_buf_free(&ptmpl);
    crest_buf_free(&pnext);
    crest_buf_free(&base);
    json_decref(opts);
    json_decref(tmpl);
    json_decref(next);

    return rc;
}


int
crest_trending_schedule(crest_bq_t *q, const char *spec, long every_ms,
    FILE *out, char *err, size_t errlen)
{
    const char  *p, *e;
    char         id[160];
    json_t      *data;
    int          n = 0;

    if (every_ms < 1000) {
        snprintf(err, errlen, "CREST_TRENDING_EVERY_MS: at least 1000");
        return -1;
    }

    for (p = spec; *p; p = *e ? e + 1 : e) {
        while (*p == ' ') {
            p++;
        }
        e = p + strcspn(p, ",");
        if (e == p) {
            continue;
        }
        if (crest_tsched_entry(p, (size_t) (e - p), id, sizeof(id), &data,
                               err, errlen) != 0)
        {
            return -1;
        }
        if (crest_sched_upsert(q, id, "refresh", data, every_ms, err, errlen) != 0) {
            json_decref(data);
            return -1;
        }
        json_decref(data);
        if (out) {
            fprintf(out, "%s\n", id);
        }
        n++;
    }

    return n;
}
