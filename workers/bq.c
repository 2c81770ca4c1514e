#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bq.h"
#include "clock.h"
#include "crest_json.h"

#define CREST_BQ_MAX_ARGV  (3 + CREST_BULLMQ_MAX_KEYS + 16)


void
crest_bq_init(crest_bq_t *q, crest_redis_conn_t *conn, const char *prefix,
    const char *queue)
{
    q->conn = conn;
    q->prefix = prefix;
    q->queue = queue;
    crest_buf_init(&q->keys, &crest_malloc_allocator);
    q->err[0] = '\0';
}


void
crest_bq_free(crest_bq_t *q)
{
    crest_buf_free(&q->keys);
}


static int
crest_bq_fail(crest_bq_t *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
crest_bq_fail(crest_bq_t *q, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(q->err, sizeof(q->err), fmt, ap);
    va_end(ap);

    return -1;
}


/* An I/O failure: the connection says why only in its log line. */
static int
crest_bq_io(crest_bq_t *q, const char *what)
{
    return crest_bq_fail(q, "%s: Redis connection %s", what,
                         q->conn->ctx ? "error" : "down");
}


const char *
crest_bq_code_message(long long code)
{
    switch (code) {
    case -1: return "Missing key for job";
    case -2: return "Missing lock for job";
    case -3: return "Job is not in the expected state";
    case -4: return "Job has pending dependencies";
    case -5: return "Missing key for parent job";
    case -6: return "Lock mismatch for job";
    case -7: return "The parent job cannot be replaced";
    case -8: return "Job belongs to a job scheduler";
    case -9: return "Job has failed children";
    case -10: return "Job scheduler iteration id exists";
    case -11: return "Job scheduler time slots busy";
    default: return "Unknown error code";
    }
}


redisReply *
crest_bq_run(crest_bq_t *q, crest_bullmq_op_t op, const char *job_id,
    const char *extra, unsigned nargs, const char *const *args,
    const size_t *lens)
{
    const crest_bullmq_script_t  *s;
    const char                   *argv[CREST_BQ_MAX_ARGV];
    size_t                        argl[CREST_BQ_MAX_ARGV];
    redisReply                   *r, *l;
    char                          nk[16];
    int                           n, argc, i, retried;

    s = crest_bullmq_script_find(crest_bullmq_op_script(op));

    if (s == NULL || s->numkeys != crest_bullmq_op_numkeys(op)) {
        crest_bq_fail(q, "%s: not in BullMQ %s with %u keys",
                      crest_bullmq_op_script(op),
                      crest_bullmq_scripts_version(),
                      crest_bullmq_op_numkeys(op));
        return NULL;
    }

    n = crest_bullmq_keys(&q->k, &q->keys, q->prefix, q->queue, op, job_id,
                          extra);

    if (n < 0 || 3 + (unsigned) n + nargs > CREST_BQ_MAX_ARGV) {
        crest_bq_fail(q, "%s: bad arguments", s->name);
        return NULL;
    }

    snprintf(nk, sizeof(nk), "%d", n);

    argc = 0;
    argv[argc] = "EVALSHA";
    argl[argc++] = 7;
    argv[argc] = s->sha1;
    argl[argc++] = 40;
    argv[argc] = nk;
    argl[argc++] = strlen(nk);

    for (i = 0; i < n; i++) {
        argv[argc] = q->k.key[i];
        argl[argc++] = q->k.len[i];
    }

    for (i = 0; i < (int) nargs; i++) {
        argv[argc] = args[i];
        argl[argc++] = lens ? lens[i] : strlen(args[i]);
    }

    for (retried = 0; ; retried++) {
        r = crest_redis_conn_argv(q->conn, argc, argv, argl);

        if (r == NULL) {
            crest_bq_io(q, s->name);
            return NULL;
        }

        if (retried || r->type != REDIS_REPLY_ERROR
            || strncmp(r->str, "NOSCRIPT", 8) != 0)
        {
            break;
        }

        freeReplyObject(r);

        /* the server lost its scripts (restart, SCRIPT FLUSH): load it */
        {
            const char  *la[3] = { "SCRIPT", "LOAD", s->lua };
            size_t       ll[3] = { 6, 4, s->len };

            l = crest_redis_conn_argv(q->conn, 3, la, ll);
        }

        if (l == NULL) {
            crest_bq_io(q, s->name);
            return NULL;
        }

        if (l->type != REDIS_REPLY_STRING || l->len != 40
            || memcmp(l->str, s->sha1, 40) != 0)
        {
            crest_bq_fail(q, "SCRIPT LOAD %s: unexpected reply", s->name);
            freeReplyObject(l);
            return NULL;
        }

        freeReplyObject(l);
    }

    if (r->type == REDIS_REPLY_ERROR) {
        crest_bq_fail(q, "%s: %.*s", s->name, (int) r->len, r->str);
    }

    return r;
}


/* A reply that is an error or a negative status code is a failure. */
static int
crest_bq_check(crest_bq_t *q, redisReply *r, const char *what,
    const char *id)
{
    if (r == NULL) {
        return -1;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        return -1;
    }

    if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        return crest_bq_fail(q, "%s. %s (code %lld) for job %s",
                             crest_bq_code_message(r->integer), what,
                             r->integer, id ? id : "-");
    }

    return 0;
}


int
crest_bq_add(crest_bq_t *q, const char *name, const char *data,
    size_t datalen, const crest_bullmq_opts_t *o, char *id, size_t idlen)
{
    crest_buf_t   a1, a3;
    const char   *args[3];
    size_t        lens[3];
    redisReply   *r;
    int64_t       ts;
    int           rc;

    crest_buf_init(&a1, &crest_malloc_allocator);
    crest_buf_init(&a3, &crest_malloc_allocator);

    ts = o->timestamp > 0 ? o->timestamp : crest_wall_ms();

    if (crest_bullmq_pack_add_args(&a1, q->prefix, q->queue, o->job_id, name,
                                   ts, NULL) != 0
        || crest_bullmq_pack_opts(&a3, o) != 0)
    {
        crest_buf_free(&a1);
        crest_buf_free(&a3);
        return crest_bq_fail(q, "add: cannot pack the arguments");
    }

    args[0] = a1.data;
    lens[0] = a1.len;
    args[1] = data;
    lens[1] = datalen;
    args[2] = a3.data;
    lens[2] = a3.len;

    r = crest_bq_run(q, crest_bullmq_add_op(o), NULL, NULL, 3, args, lens);

    crest_buf_free(&a1);
    crest_buf_free(&a3);

    rc = crest_bq_check(q, r, "addJob", o->job_id);

    if (rc == 0) {
        if (r->type == REDIS_REPLY_STRING) {
            snprintf(id, idlen, "%.*s", (int) r->len, r->str);
        } else if (r->type == REDIS_REPLY_INTEGER) {
            snprintf(id, idlen, "%lld", r->integer);
        } else {
            rc = crest_bq_fail(q, "addJob: unexpected reply type %d",
                               r->type);
        }
    }

    if (r) {
        freeReplyObject(r);
    }

    return rc;
}


int
crest_bq_job_from_reply(crest_bq_job_t *job, const redisReply *r,
    const char *id)
{
    const char    *raw;
    json_error_t   e;
    size_t         i;

    job->id = strdup(id);
    job->fields = json_object();
    job->opts = NULL;

    if (job->id == NULL || job->fields == NULL) {
        crest_bq_job_free(job);
        return -1;
    }

    for (i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING
            || r->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        json_object_set_new(job->fields, r->element[i]->str,
                            json_stringn_nocheck(r->element[i + 1]->str,
                                                 r->element[i + 1]->len));
    }

    raw = crest_bq_job_get(job, "opts");

    if (raw) {
        /* jansson keeps the object's key order, which Lua chose */
        job->opts = json_loads(raw, JSON_DECODE_ANY, &e);
    }

    if (!json_is_object(job->opts)) {
        json_decref(job->opts);
        job->opts = json_object();
    }

    return 0;
}


void
crest_bq_job_free(crest_bq_job_t *job)
{
    free(job->id);
    json_decref(job->fields);
    json_decref(job->opts);
    job->id = NULL;
    job->fields = NULL;
    job->opts = NULL;
}


const char *
crest_bq_job_get(const crest_bq_job_t *job, const char *field)
{
    return json_string_value(json_object_get(job->fields, field));
}


int64_t
crest_bq_job_int(const crest_bq_job_t *job, const char *field, int64_t def)
{
    const char  *s;
    char        *end;
    long long    v;

    s = crest_bq_job_get(job, field);

    if (s == NULL || *s == '\0') {
        return def;
    }

    v = strtoll(s, &end, 10);

    return end == s ? def : (int64_t) v;
}


int
crest_bq_get(crest_bq_t *q, const char *id, crest_bq_job_t *job)
{
    crest_buf_t   key;
    const char   *argv[2];
    size_t        argl[2];
    redisReply   *r;
    int           rc;

    crest_buf_init(&key, &crest_malloc_allocator);
    crest_bullmq_key(&key, q->prefix, q->queue, id);

    argv[0] = "HGETALL";
    argl[0] = 7;
    argv[1] = key.data;
    argl[1] = key.len;

    r = crest_redis_conn_argv(q->conn, 2, argv, argl);
    crest_buf_free(&key);

    if (r == NULL) {
        return crest_bq_io(q, "HGETALL");
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        rc = crest_bq_fail(q, "HGETALL: %s",
                           r->type == REDIS_REPLY_ERROR ? r->str
                                                        : "unexpected reply");
        freeReplyObject(r);
        return rc;
    }

    if (r->elements == 0) {
        freeReplyObject(r);
        return 0;
    }

    rc = crest_bq_job_from_reply(job, r, id) == 0 ? 1 : -1;
    freeReplyObject(r);

    return rc;
}


int
crest_bq_progress(crest_bq_t *q, const char *id, const char *json)
{
    const char  *args[2] = { id, json };
    redisReply  *r;
    int          rc;

    r = crest_bq_run(q, CREST_BQ_UPDATE_PROGRESS, id, NULL, 2, args, NULL);
    rc = crest_bq_check(q, r, "updateProgress", id);

    if (r) {
        freeReplyObject(r);
    }

    return rc;
}


int64_t
crest_bq_log(crest_bq_t *q, const char *id, const char *row,
    int64_t keep_logs)
{
    const char  *args[3];
    char         keep[24];
    redisReply  *r;
    int64_t      n;

    keep[0] = '\0';
    if (keep_logs > 0) {
        snprintf(keep, sizeof(keep), "%lld", (long long) keep_logs);
    }

    args[0] = id;
    args[1] = row;
    args[2] = keep;

    r = crest_bq_run(q, CREST_BQ_ADD_LOG, id, NULL, 3, args, NULL);

    if (crest_bq_check(q, r, "addLog", id) != 0) {
        if (r) {
            freeReplyObject(r);
        }
        return -1;
    }

    n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);

    return n;
}


int
crest_bq_logs(crest_bq_t *q, const char *id, crest_buf_t *out)
{
    crest_buf_t   key;
    crest_jw_t    w;
    const char   *argv[4];
    size_t        argl[4], i;
    redisReply   *r;

    crest_buf_init(&key, &crest_malloc_allocator);
    crest_bullmq_key(&key, q->prefix, q->queue, id);
    crest_buf_appends(&key, ":logs");

    argv[0] = "LRANGE";
    argv[1] = key.data;
    argv[2] = "0";
    argv[3] = "-1";
    argl[0] = 6;
    argl[1] = key.len;
    argl[2] = 1;
    argl[3] = 2;

    r = crest_redis_conn_argv(q->conn, 4, argv, argl);
    crest_buf_free(&key);

    if (r == NULL) {
        return crest_bq_io(q, "LRANGE");
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return crest_bq_fail(q, "LRANGE: unexpected reply");
    }

    crest_jw_init(&w, out);
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "logs");
    crest_jw_arr_begin(&w);

    for (i = 0; i < r->elements; i++) {
        if (r->element[i]->type == REDIS_REPLY_STRING) {
            crest_jw_strn(&w, r->element[i]->str, r->element[i]->len);
        }
    }

    crest_jw_arr_end(&w);
    crest_jw_key(&w, "count");
    crest_jw_int(&w, (int64_t) r->elements);
    crest_jw_obj_end(&w);

    freeReplyObject(r);

    return 0;
}


int
crest_bq_counts(crest_bq_t *q, const char *const *types, unsigned n,
    crest_buf_t *out)
{
    static const char  *all[] = {
        "active", "completed", "delayed", "failed", "prioritized", "waiting",
        "waiting-children"
    };
    const char         *args[16];
    redisReply         *r;
    crest_jw_t          w;
    unsigned            i;

    if (types == NULL || n == 0) {
        types = all;
        n = 7;
    }

    if (n > 16) {
        return crest_bq_fail(q, "getCounts: too many types");
    }

    for (i = 0; i < n; i++) {
        args[i] = strcmp(types[i], "waiting") == 0 ? "wait" : types[i];
    }

    r = crest_bq_run(q, CREST_BQ_GET_COUNTS, NULL, NULL, n, args, NULL);

    if (crest_bq_check(q, r, "getCounts", NULL) != 0) {
        if (r) {
            freeReplyObject(r);
        }
        return -1;
    }

    crest_jw_init(&w, out);
    crest_jw_obj_begin(&w);

    for (i = 0; i < n; i++) {
        crest_jw_key(&w, types[i]);
        crest_jw_int(&w, r->type == REDIS_REPLY_ARRAY && i < r->elements
                         && r->element[i]->type == REDIS_REPLY_INTEGER
                         ? r->element[i]->integer : 0);
    }

    crest_jw_obj_end(&w);
    freeReplyObject(r);

    return 0;
}


int
crest_bq_pause(crest_bq_t *q, int pause)
{
    const char  *args[2];
    redisReply  *r;
    long long    left;
    int          emit;

    if (pause) {
        args[0] = "paused";
        args[1] = "1";
        r = crest_bq_run(q, CREST_BQ_PAUSE, NULL, NULL, 2, args, NULL);
        left = crest_bq_check(q, r, "pause", NULL);
        if (r) {
            freeReplyObject(r);
        }
        return (int) left;
    }

    /* Queue.resume: repeat while legacy "paused" lists still hold jobs */
    emit = 1;

    do {
        args[0] = "resumed";
        args[1] = emit ? "1" : "0";
        r = crest_bq_run(q, CREST_BQ_RESUME, NULL, NULL, 2, args, NULL);

        if (crest_bq_check(q, r, "resume", NULL) != 0) {
            if (r) {
                freeReplyObject(r);
            }
            return -1;
        }

        left = r->type == REDIS_REPLY_INTEGER ? r->integer
               : r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
        freeReplyObject(r);
        emit = 0;

    } while (left > 0);

    return 0;
}


int
crest_bq_remove(crest_bq_t *q, const char *id)
{
    crest_buf_t  base;
    const char  *args[3];
    redisReply  *r;
    int          rc;

    crest_buf_init(&base, &crest_malloc_allocator);
    crest_bullmq_key(&base, q->prefix, q->queue, "");

    args[0] = id;
    args[1] = "1";
    args[2] = base.data;

    r = crest_bq_run(q, CREST_BQ_REMOVE_JOB, id, NULL, 3, args, NULL);
    crest_buf_free(&base);

    rc = crest_bq_check(q, r, "removeJob", id);

    if (rc == 0 && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        rc = crest_bq_fail(q, "Job %s could not be removed because it is "
                           "locked by another worker", id);
    }

    if (r) {
        freeReplyObject(r);
    }

    return rc;
}


int
crest_bq_state(crest_bq_t *q, const char *id, char *state, size_t size)
{
    const char  *args[1] = { id };
    redisReply  *r;

    r = crest_bq_run(q, CREST_BQ_GET_STATE, id, NULL, 1, args, NULL);

    if (crest_bq_check(q, r, "getState", id) != 0) {
        if (r) {
            freeReplyObject(r);
        }
        return -1;
    }

    snprintf(state, size, "%.*s",
             r->type == REDIS_REPLY_STRING ? (int) r->len : 7,
             r->type == REDIS_REPLY_STRING ? r->str : "unknown");
    freeReplyObject(r);

    return 0;
}


static int64_t
crest_bq_reply_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer;
    }

    if (r->type == REDIS_REPLY_STRING) {
        return (int64_t) atof(r->str);
    }

    return 0;
}


int
crest_bq_read_next(crest_bq_t *q, const redisReply *r, crest_bq_next_t *next)
{
    const redisReply  *id;
    char               idbuf[32];

    memset(next, 0, sizeof(*next));

    if (r->type != REDIS_REPLY_ARRAY) {
        /* 0: finished, nothing fetched */
        return 0;
    }

    if (r->elements < 4) {
        return crest_bq_fail(q, "unexpected job tuple");
    }

    next->rate_limit_ms = crest_bq_reply_int(r->element[2]);
    next->next_delayed = crest_bq_reply_int(r->element[3]);

    if (r->element[0]->type != REDIS_REPLY_ARRAY) {
        return 0;
    }

    id = r->element[1];

    if (id->type == REDIS_REPLY_INTEGER) {
        snprintf(idbuf, sizeof(idbuf), "%lld", id->integer);

    } else if (id->type == REDIS_REPLY_STRING) {
        snprintf(idbuf, sizeof(idbuf), "%s", "");
    } else {
        return crest_bq_fail(q, "unexpected job id");
    }

    if (crest_bq_job_from_reply(&next->job, r->element[0],
                                id->type == REDIS_REPLY_STRING ? id->str
                                                               : idbuf) != 0)
    {
        return crest_bq_fail(q, "out of memory");
    }

    next->has_job = 1;

    return 0;
}


void
crest_bq_next_free(crest_bq_next_t *next)
{
    if (next->has_job) {
        crest_bq_job_free(&next->job);
        next->has_job = 0;
    }
}


int
crest_bq_move_to_active(crest_bq_t *q, const char *token, int64_t lock_ms,
    const char *worker, crest_bq_next_t *next)
{
    crest_buf_t   base, opts;
    const char   *args[3];
    size_t        lens[3];
    char          now[24];
    redisReply   *r;
    int           rc;

    memset(next, 0, sizeof(*next));

    crest_buf_init(&base, &crest_malloc_allocator);
    crest_buf_init(&opts, &crest_malloc_allocator);
    crest_bullmq_key(&base, q->prefix, q->queue, "");
    crest_bullmq_pack_fetch_opts(&opts, token, lock_ms, worker);
    snprintf(now, sizeof(now), "%lld", (long long) crest_wall_ms());

    args[0] = base.data;
    lens[0] = base.len;
    args[1] = now;
    lens[1] = strlen(now);
    args[2] = opts.data;
    lens[2] = opts.len;

    r = crest_bq_run(q, CREST_BQ_MOVE_TO_ACTIVE, NULL, NULL, 3, args, lens);

    crest_buf_free(&base);
    crest_buf_free(&opts);

    rc = crest_bq_check(q, r, "moveToActive", NULL);

    if (rc == 0) {
        rc = crest_bq_read_next(q, r, next);
    }

    if (r) {
        freeReplyObject(r);
    }

    return rc;
}


/* A stored JSON text as a JSON value, or as a string if it is not JSON. */
static void
crest_bq_jw_stored(crest_jw_t *w, const char *s)
{
    json_t        *v;
    json_error_t   e;

    v = json_loads(s, JSON_DECODE_ANY, &e);

    if (v == NULL) {
        crest_jw_str(w, s);
        return;
    }

    json_decref(v);
    crest_jw_raw(w, s, strlen(s));
}


void
crest_bq_job_json(const crest_bq_job_t *job, crest_buf_t *out)
{
    static const struct {
        const char  *field, *name;
        int          json;       /* 1: number, 2: JSON text, 0: string */
    } f[] = {
        { "name", "name", 0 }, { "data", "data", 2 },
        { "progress", "progress", 2 }, { "returnvalue", "returnvalue", 2 },
        { "failedReason", "failedReason", 0 },
        { "stacktrace", "stacktrace", 2 }, { "atm", "attemptsMade", 1 },
        { "ats", "attemptsStarted", 1 }, { "stc", "stalledCounter", 1 },
        { "timestamp", "timestamp", 1 }, { "delay", "delay", 1 },
        { "priority", "priority", 1 }, { "processedOn", "processedOn", 1 },
        { "finishedOn", "finishedOn", 1 }, { "pb", "processedBy", 0 },
        { "rjk", "repeatJobKey", 0 }, { "defa", "deferredFailure", 0 },
    };
    crest_jw_t   w;
    const char  *v;
    char        *opts;
    size_t       i;

    crest_jw_init(&w, out);
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_str(&w, job->id);

    for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        v = crest_bq_job_get(job, f[i].field);

        if (v == NULL) {
            continue;
        }

        crest_jw_key(&w, f[i].name);

        if (f[i].json == 1) {
            crest_jw_int(&w, crest_bq_job_int(job, f[i].field, 0));
        } else if (f[i].json == 2) {
            crest_bq_jw_stored(&w, v);
        } else {
            crest_jw_str(&w, v);
        }
    }

    opts = json_dumps(job->opts, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (opts) {
        crest_jw_key(&w, "opts");
        crest_jw_raw(&w, opts, strlen(opts));
        free(opts);
    }

    crest_jw_obj_end(&w);
}
