#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "crest_bullmq.h"
#include "crest_json.h"


/*
 * KEYS specs: a plain string is a queue key "<prefix>:<queue>:<suffix>";
 * "" is the queue's base key "<prefix>:<queue>:".  In the others %i stands
 * for the job id and %x for the op's extra argument; "%p" is the producer's
 * job key, or an empty string without a producer.
 */
typedef struct {
    const char  *script;
    unsigned     n;
    const char  *keys[CREST_BULLMQ_MAX_KEYS];
    unsigned     need_id;       /* 1: job_id required */
    unsigned     need_extra;    /* 1: extra required */
} crest_bullmq_op_spec_t;

static const crest_bullmq_op_spec_t  crest_bullmq_ops[CREST_BQ_NOPS] = {
    [CREST_BQ_ADD_STANDARD] = { "addStandardJob", 9,
        { "wait", "paused", "meta", "id", "completed", "delayed", "active",
          "events", "marker" }, 0, 0 },
    [CREST_BQ_ADD_DELAYED] = { "addDelayedJob", 6,
        { "marker", "meta", "id", "delayed", "completed", "events" }, 0, 0 },
    [CREST_BQ_ADD_PRIORITIZED] = { "addPrioritizedJob", 9,
        { "marker", "meta", "id", "prioritized", "delayed", "completed",
          "active", "events", "pc" }, 0, 0 },
    [CREST_BQ_MOVE_TO_ACTIVE] = { "moveToActive", 11,
        { "wait", "active", "prioritized", "events", "stalled", "limiter",
          "delayed", "paused", "meta", "pc", "marker" }, 0, 0 },
    [CREST_BQ_MOVE_TO_FINISHED] = { "moveToFinished", 14,
        { "wait", "active", "prioritized", "events", "stalled", "limiter",
          "delayed", "paused", "meta", "pc", "%x", "%i", "metrics:%x",
          "marker" }, 1, 1 },
    [CREST_BQ_MOVE_TO_DELAYED] = { "moveToDelayed", 11,
        { "marker", "active", "prioritized", "delayed", "%i", "events",
          "meta", "stalled", "wait", "limiter", "pc" }, 1, 0 },
    [CREST_BQ_RETRY_JOB] = { "retryJob", 11,
        { "active", "wait", "paused", "%i", "meta", "events", "delayed",
          "prioritized", "pc", "marker", "stalled" }, 1, 0 },
    [CREST_BQ_EXTEND_LOCKS] = { "extendLocks", 1, { "stalled" }, 0, 0 },
    [CREST_BQ_EXTEND_LOCK] = { "extendLock", 2, { "%i:lock", "stalled" },
        1, 0 },
    [CREST_BQ_MOVE_STALLED] = { "moveStalledJobsToWait", 9,
        { "stalled", "wait", "active", "stalled-check", "meta", "paused",
          "marker", "events", "repeat" }, 0, 0 },
    [CREST_BQ_UPDATE_PROGRESS] = { "updateProgress", 3,
        { "%i", "events", "meta" }, 1, 0 },
    [CREST_BQ_ADD_LOG] = { "addLog", 2, { "%i", "%i:logs" }, 1, 0 },
    [CREST_BQ_GET_COUNTS] = { "getCounts", 1, { "" }, 0, 0 },
    [CREST_BQ_PAUSE] = { "pause", 7,
        { "wait", "paused", "meta", "prioritized", "events", "delayed",
          "marker" }, 0, 0 },
    [CREST_BQ_RESUME] = { "pause", 7,
        { "paused", "wait", "meta", "prioritized", "events", "delayed",
          "marker" }, 0, 0 },
    [CREST_BQ_REMOVE_JOB] = { "removeJob", 2, { "%i", "repeat" }, 1, 0 },
    [CREST_BQ_UPDATE_SCHEDULER] = { "updateJobScheduler", 12,
        { "repeat", "delayed", "wait", "paused", "meta", "prioritized",
          "marker", "id", "events", "pc", "%p", "active" }, 0, 0 },
    [CREST_BQ_GET_STATE] = { "getStateV2", 8,
        { "completed", "failed", "delayed", "active", "wait", "paused",
          "waiting-children", "prioritized" }, 1, 0 },
    [CREST_BQ_ADD_SCHEDULER] = { "addJobScheduler", 11,
        { "repeat", "delayed", "wait", "paused", "meta", "prioritized",
          "marker", "id", "events", "pc", "active" }, 0, 0 },
};


const char *
crest_bullmq_op_script(crest_bullmq_op_t op)
{
    return (unsigned) op < CREST_BQ_NOPS ? crest_bullmq_ops[op].script : NULL;
}


unsigned
crest_bullmq_op_numkeys(crest_bullmq_op_t op)
{
    return (unsigned) op < CREST_BQ_NOPS ? crest_bullmq_ops[op].n : 0;
}


void
crest_bullmq_key(crest_buf_t *b, const char *prefix, const char *queue,
    const char *suffix)
{
    crest_buf_appends(b, prefix);
    crest_buf_appendc(b, ':');
    crest_buf_appends(b, queue);
    crest_buf_appendc(b, ':');
    crest_buf_appends(b, suffix);
}


/* Expands %i and %x of a spec into b. */
static void
crest_bullmq_expand(crest_buf_t *b, const char *spec, const char *job_id,
    const char *extra)
{
    const char  *p;

    for (p = spec; *p; p++) {
        if (p[0] == '%' && p[1] == 'i') {
            crest_buf_appends(b, job_id);
            p++;

        } else if (p[0] == '%' && p[1] == 'x') {
            crest_buf_appends(b, extra);
            p++;

        } else {
            crest_buf_appendc(b, *p);
        }
    }
}


int
crest_bullmq_keys(crest_bullmq_keys_t *k, crest_buf_t *b, const char *prefix,
    const char *queue, crest_bullmq_op_t op, const char *job_id,
    const char *extra)
{
    const crest_bullmq_op_spec_t  *s;
    size_t                         start[CREST_BULLMQ_MAX_KEYS];
    unsigned                       i;

    k->n = 0;

    if ((unsigned) op >= CREST_BQ_NOPS || prefix == NULL || queue == NULL) {
        return -1;
    }

    s = &crest_bullmq_ops[op];

    if ((s->need_id && (job_id == NULL || job_id[0] == '\0'))
        || (s->need_extra && (extra == NULL || extra[0] == '\0')))
    {
        return -1;
    }

    crest_buf_reset(b);

    for (i = 0; i < s->n; i++) {
        start[i] = b->len;

        if (strcmp(s->keys[i], "%p") == 0) {
            if (extra && extra[0]) {
                crest_bullmq_key(b, prefix, queue, extra);
            }

        } else {
            crest_bullmq_key(b, prefix, queue, "");
            crest_bullmq_expand(b, s->keys[i], job_id, extra);
        }

        /* NUL-separated, so that every key is also a C string */
        crest_buf_appendc(b, '\0');
    }

    if (crest_buf_failed(b)) {
        return -1;
    }

    for (i = 0; i < s->n; i++) {
        k->key[i] = b->data + start[i];
        k->len[i] = strlen(k->key[i]);
    }

    k->n = s->n;

    return (int) s->n;
}


void
crest_bullmq_client_name(crest_buf_t *b, const char *prefix,
    const char *queue, const char *worker)
{
    static const char    tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p;
    size_t               n, i;
    unsigned             v;

    crest_buf_appends(b, prefix);
    crest_buf_appendc(b, ':');

    /* Buffer.from(name).toString('base64'): standard alphabet, padded */
    p = (const unsigned char *) queue;
    n = strlen(queue);

    for (i = 0; i + 2 < n; i += 3) {
        v = (unsigned) p[i] << 16 | (unsigned) p[i + 1] << 8 | p[i + 2];
        crest_buf_appendc(b, tab[v >> 18]);
        crest_buf_appendc(b, tab[(v >> 12) & 63]);
        crest_buf_appendc(b, tab[(v >> 6) & 63]);
        crest_buf_appendc(b, tab[v & 63]);
    }

    if (n - i == 1) {
        v = (unsigned) p[i] << 16;
        crest_buf_appendc(b, tab[v >> 18]);
        crest_buf_appendc(b, tab[(v >> 12) & 63]);
        crest_buf_appends(b, "==");

    } else if (n - i == 2) {
        v = (unsigned) p[i] << 16 | (unsigned) p[i + 1] << 8;
        crest_buf_appendc(b, tab[v >> 18]);
        crest_buf_appendc(b, tab[(v >> 12) & 63]);
        crest_buf_appendc(b, tab[(v >> 6) & 63]);
        crest_buf_appendc(b, '=');
    }

    if (worker) {
        crest_buf_appends(b, ":w:");
        crest_buf_appends(b, worker);
    }
}


/* ---- a writer with two back ends: msgpack (msgpackr's way) and JSON ---- */

typedef struct {
    crest_buf_t     *b;
    msgpack_packer   pk;
    int              json;
    crest_jw_t       jw;
} crest_bq_w_t;


static int
crest_bq_buf_write(void *data, const char *buf, size_t len)
{
    crest_buf_append(data, buf, len);
    return 0;
}


static void
crest_bq_w_init(crest_bq_w_t *w, crest_buf_t *b, int json)
{
    w->b = b;
    w->json = json;
    crest_buf_reset(b);
    msgpack_packer_init(&w->pk, b, crest_bq_buf_write);
    crest_jw_init(&w->jw, b);
}


/* msgpackr writes every plain object as map16, whatever its size. */
static void
crest_bq_w_map(crest_bq_w_t *w, size_t n)
{
    char  h[3];

    if (w->json) {
        crest_jw_obj_begin(&w->jw);
        return;
    }

    if (n > 0xffff) {
        w->b->failed = 1;
        return;
    }

    h[0] = (char) 0xde;
    h[1] = (char) (n >> 8);
    h[2] = (char) (n & 0xff);
    crest_buf_append(w->b, h, 3);
}


static void
crest_bq_w_map_end(crest_bq_w_t *w)
{
    if (w->json) {
        crest_jw_obj_end(&w->jw);
    }
}


static void
crest_bq_w_array(crest_bq_w_t *w, size_t n)
{
    if (w->json) {
        crest_jw_arr_begin(&w->jw);
        return;
    }

    msgpack_pack_array(&w->pk, n);
}


static void
crest_bq_w_array_end(crest_bq_w_t *w)
{
    if (w->json) {
        crest_jw_arr_end(&w->jw);
    }
}


static void
crest_bq_w_strn(crest_bq_w_t *w, const char *s, size_t n)
{
    if (w->json) {
        crest_jw_strn(&w->jw, s, n);
        return;
    }

    msgpack_pack_str(&w->pk, n);
    msgpack_pack_str_body(&w->pk, s, n);
}


static void
crest_bq_w_str(crest_bq_w_t *w, const char *s)
{
    crest_bq_w_strn(w, s, strlen(s));
}


static void
crest_bq_w_key(crest_bq_w_t *w, const char *k)
{
    if (w->json) {
        crest_jw_key(&w->jw, k);
        return;
    }

    crest_bq_w_str(w, k);
}


static void
crest_bq_w_nil(crest_bq_w_t *w)
{
    if (w->json) {
        crest_jw_null(&w->jw);
        return;
    }

    msgpack_pack_nil(&w->pk);
}


static void
crest_bq_w_bool(crest_bq_w_t *w, int v)
{
    if (w->json) {
        crest_jw_bool(&w->jw, v);
        return;
    }

    if (v) {
        msgpack_pack_true(&w->pk);
    } else {
        msgpack_pack_false(&w->pk);
    }
}


/* JavaScript's shortest round-trip form of a finite double (JSON.stringify
 * writes no exponent between 1e-7 and 1e21). */
static void
crest_bq_js_number(char *s, size_t size, double v)
{
    int  prec;

    if (!isfinite(v)) {
        snprintf(s, size, "null");
        return;
    }

    for (prec = 1; prec <= 17; prec++) {
        snprintf(s, size, "%.*g", prec, v);
        if (strtod(s, NULL) == v) {
            break;
        }
    }

    if (strchr(s, 'e') && fabs(v) < 1e21 && fabs(v) >= 1e-7) {
        for (prec = 0; prec <= 20; prec++) {
            snprintf(s, size, "%.*f", prec, v);
            if (strtod(s, NULL) == v) {
                break;
            }
        }
    }
}


/* A JS number: msgpackr packs whole numbers in [-2^31, 2^32) as integers
 * and everything else as float64. */
static void
crest_bq_w_num(crest_bq_w_t *w, double v)
{
    char  num[64];

    if (w->json) {
        crest_bq_js_number(num, sizeof(num), v);
        crest_jw_raw(&w->jw, num, strlen(num));
        return;
    }

    if (v == floor(v) && v >= 0 && v < 4294967296.0) {
        msgpack_pack_uint32(&w->pk, (uint32_t) v);

    } else if (v == floor(v) && v < 0 && v >= -2147483648.0) {
        msgpack_pack_int32(&w->pk, (int32_t) v);

    } else {
        msgpack_pack_double(&w->pk, v);
    }
}


static void
crest_bq_w_int(crest_bq_w_t *w, int64_t v)
{
    if (w->json) {
        crest_jw_int(&w->jw, v);
        return;
    }

    crest_bq_w_num(w, (double) v);
}


static int
crest_bq_w_done(crest_bq_w_t *w)
{
    return crest_buf_failed(w->b) ? -1 : 0;
}


/* ---- job options ---------------------------------------------------------- */

void
crest_bullmq_opts_init(crest_bullmq_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->stack_trace_limit = -1;
    o->remove_on_complete.count = -1;
    o->remove_on_complete.limit = -1;
    o->remove_on_fail.count = -1;
    o->remove_on_fail.limit = -1;
}


crest_bullmq_op_t
crest_bullmq_add_op(const crest_bullmq_opts_t *o)
{
    if (o->delay > 0) {
        return CREST_BQ_ADD_DELAYED;
    }

    return o->priority ? CREST_BQ_ADD_PRIORITIZED : CREST_BQ_ADD_STANDARD;
}


const char *
crest_bullmq_add_script(const crest_bullmq_opts_t *o)
{
    return crest_bullmq_op_script(crest_bullmq_add_op(o));
}


int
crest_bullmq_add_keys(crest_bullmq_keys_t *k, crest_buf_t *b,
    const char *prefix, const char *queue, const crest_bullmq_opts_t *o)
{
    return crest_bullmq_keys(k, b, prefix, queue, crest_bullmq_add_op(o), NULL,
                             NULL);
}


static void
crest_bq_w_keep_value(crest_bq_w_t *w, const crest_bullmq_keep_t *k)
{
    size_t  n;

    switch (k->kind) {
    case CREST_BQ_KEEP_BOOL:
        crest_bq_w_bool(w, k->flag);
        break;

    case CREST_BQ_KEEP_COUNT:
        crest_bq_w_int(w, k->count);
        break;

    default:
        n = 1 + (k->count >= 0) + (k->limit >= 0);
        crest_bq_w_map(w, n);
        crest_bq_w_key(w, "age");
        crest_bq_w_int(w, k->age);
        if (k->count >= 0) {
            crest_bq_w_key(w, "count");
            crest_bq_w_int(w, k->count);
        }
        if (k->limit >= 0) {
            crest_bq_w_key(w, "limit");
            crest_bq_w_int(w, k->limit);
        }
        crest_bq_w_map_end(w);
    }
}


static int
crest_bq_write_opts(crest_bq_w_t *w, const crest_bullmq_opts_t *o)
{
    const crest_bullmq_backoff_t  *bo;
    size_t                         n;

    bo = &o->backoff;

    n = 1 + (o->delay > 0) + (o->priority > 0) + (o->lifo != 0)
        + (o->job_id != NULL) + (bo->type != CREST_BQ_BACKOFF_NONE)
        + (o->remove_on_complete.kind != CREST_BQ_KEEP_UNSET)
        + (o->remove_on_fail.kind != CREST_BQ_KEEP_UNSET)
        + (o->keep_logs > 0) + (o->stack_trace_limit >= 0)
        + (o->timestamp > 0);

    crest_bq_w_map(w, n);

    crest_bq_w_key(w, "attempts");
    crest_bq_w_int(w, o->attempts);

    if (o->delay > 0) {
        crest_bq_w_key(w, "delay");
        crest_bq_w_int(w, o->delay);
    }

    if (o->priority > 0) {
        crest_bq_w_key(w, "priority");
        crest_bq_w_int(w, o->priority);
    }

    if (o->lifo) {
        crest_bq_w_key(w, "lifo");
        crest_bq_w_bool(w, 1);
    }

    if (o->job_id) {
        crest_bq_w_key(w, "jobId");
        crest_bq_w_str(w, o->job_id);
    }

    if (bo->type == CREST_BQ_BACKOFF_FIXED
        || bo->type == CREST_BQ_BACKOFF_EXPONENTIAL)
    {
        crest_bq_w_key(w, "backoff");
        crest_bq_w_map(w, 2 + (bo->has_jitter != 0));
        crest_bq_w_key(w, "type");
        crest_bq_w_str(w, bo->type == CREST_BQ_BACKOFF_FIXED ? "fixed"
                                                               : "exponential");
        crest_bq_w_key(w, "delay");
        crest_bq_w_int(w, bo->delay);
        if (bo->has_jitter) {
            crest_bq_w_key(w, "jitter");
            crest_bq_w_num(w, bo->jitter);
        }
        crest_bq_w_map_end(w);

    } else if (bo->type == CREST_BQ_BACKOFF_OTHER) {
        return -1;
    }

    if (o->remove_on_complete.kind != CREST_BQ_KEEP_UNSET) {
        crest_bq_w_key(w, "removeOnComplete");
        crest_bq_w_keep_value(w, &o->remove_on_complete);
    }

    if (o->remove_on_fail.kind != CREST_BQ_KEEP_UNSET) {
        crest_bq_w_key(w, "removeOnFail");
        crest_bq_w_keep_value(w, &o->remove_on_fail);
    }

    if (o->keep_logs > 0) {
        crest_bq_w_key(w, "kl");
        crest_bq_w_int(w, o->keep_logs);
    }

    if (o->stack_trace_limit >= 0) {
        crest_bq_w_key(w, "stackTraceLimit");
        crest_bq_w_int(w, o->stack_trace_limit);
    }

    if (o->timestamp > 0) {
        crest_bq_w_key(w, "timestamp");
        crest_bq_w_int(w, o->timestamp);
    }

    crest_bq_w_map_end(w);

    return crest_bq_w_done(w);
}


int
crest_bullmq_pack_opts(crest_buf_t *b, const crest_bullmq_opts_t *o)
{
    crest_bq_w_t  w;

    crest_bq_w_init(&w, b, 0);

    return crest_bq_write_opts(&w, o);
}


int
crest_bullmq_opts_json(crest_buf_t *b, const crest_bullmq_opts_t *o)
{
    crest_bq_w_t  w;

    crest_bq_w_init(&w, b, 1);

    return crest_bq_write_opts(&w, o);
}


int
crest_bullmq_check_job_id(const char *id, char *err, size_t errlen)
{
    const char  *p;
    char        *end;
    long long    v;
    char         back[32];
    unsigned     colons;

    if (id[0] == '\0') {
        snprintf(err, errlen, "jobId must not be empty");
        return -1;
    }

    if (strcmp(id, "0") == 0 || strncmp(id, "0:", 2) == 0) {
        snprintf(err, errlen, "JobId cannot be '0' or start with '0:'");
        return -1;
    }

    /* `${parseInt(id, 10)}` === id */
    v = strtoll(id, &end, 10);
    if (*end == '\0' && id[0] != '+' && id[0] != ' ') {
        snprintf(back, sizeof(back), "%lld", v);
        if (strcmp(back, id) == 0) {
            snprintf(err, errlen, "Custom Id cannot be integers");
            return -1;
        }
    }

    colons = 0;
    for (p = id; *p; p++) {
        colons += *p == ':';
    }

    if (colons && colons != 2) {
        snprintf(err, errlen, "Custom Id cannot contain :");
        return -1;
    }

    return 0;
}


/* A whole JSON number (integer, or a real without a fraction). */
static int
crest_bq_json_whole(const json_t *v, int64_t min, int64_t max, int64_t *out)
{
    double  d;

    if (json_is_integer(v)) {
        if (json_integer_value(v) < min || json_integer_value(v) > max) {
            return -1;
        }
        *out = json_integer_value(v);
        return 0;
    }

    if (json_is_real(v)) {
        d = json_real_value(v);
        if (d != floor(d) || d < (double) min || d > (double) max) {
            return -1;
        }
        *out = (int64_t) d;
        return 0;
    }

    return -1;
}


static int
crest_bq_keep_from_opt(crest_bullmq_keep_t *k, const char *name,
    const json_t *v, char *err, size_t errlen)
{
    const char  *key;
    json_t      *x;

    k->count = -1;
    k->limit = -1;

    if (json_is_boolean(v)) {
        k->kind = CREST_BQ_KEEP_BOOL;
        k->flag = json_is_true(v);
        return 0;
    }

    if (json_is_number(v)) {
        k->kind = CREST_BQ_KEEP_COUNT;
        if (crest_bq_json_whole(v, 0, INT32_MAX, &k->count) != 0) {
            snprintf(err, errlen, "%s: expected a count >= 0", name);
            return -1;
        }
        return 0;
    }

    if (json_is_object(v)) {
        k->kind = CREST_BQ_KEEP_AGE;
        k->age = -1;

        json_object_foreach((json_t *) v, key, x) {
            int64_t  *dst;

            dst = strcmp(key, "age") == 0 ? &k->age
                  : strcmp(key, "count") == 0 ? &k->count
                  : strcmp(key, "limit") == 0 ? &k->limit : NULL;

            if (dst == NULL) {
                snprintf(err, errlen, "%s: unknown key \"%s\"", name, key);
                return -1;
            }

            if (crest_bq_json_whole(x, 0, INT32_MAX, dst) != 0) {
                snprintf(err, errlen, "%s.%s: expected a whole number >= 0",
                         name, key);
                return -1;
            }
        }

        if (k->age < 0) {
            snprintf(err, errlen, "%s: an object needs \"age\" (seconds)",
                     name);
            return -1;
        }

        return 0;
    }

    snprintf(err, errlen, "%s: expected a boolean, a count or "
             "{age, count, limit}", name);

    return -1;
}


int
crest_bullmq_opts_from_json(crest_bullmq_opts_t *o, const json_t *obj,
    char *err, size_t errlen)
{
    const char  *key, *type, *bkey;
    json_t      *v, *x;
    void        *it;
    int64_t      n;
    double       j;

    crest_bullmq_opts_init(o);

    if (!json_is_object(obj)) {
        snprintf(err, errlen, "options must be a JSON object");
        return -1;
    }

    json_object_foreach((json_t *) obj, key, v) {

        if (strcmp(key, "attempts") == 0) {
            if (crest_bq_json_whole(v, 0, INT32_MAX, &o->attempts) != 0) {
                snprintf(err, errlen, "attempts: expected a whole number");
                return -1;
            }

        } else if (strcmp(key, "delay") == 0) {
            if (crest_bq_json_whole(v, 0, INT64_C(1) << 50, &o->delay) != 0) {
                snprintf(err, errlen, "delay: expected milliseconds >= 0");
                return -1;
            }

        } else if (strcmp(key, "priority") == 0) {
            if (!json_is_number(v)
                || json_number_value(v) != floor(json_number_value(v)))
            {
                snprintf(err, errlen, "Priority should not be float");
                return -1;
            }
            if (crest_bq_json_whole(v, 0, CREST_BULLMQ_PRIORITY_MAX,
                                    &o->priority) != 0)
            {
                snprintf(err, errlen, "Priority should be between 0 and %d",
                         CREST_BULLMQ_PRIORITY_MAX);
                return -1;
            }

        } else if (strcmp(key, "lifo") == 0) {
            if (!json_is_boolean(v)) {
                snprintf(err, errlen, "lifo: expected a boolean");
                return -1;
            }
            o->lifo = json_is_true(v);

        } else if (strcmp(key, "jobId") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "jobId: expected a string");
                return -1;
            }
            if (crest_bullmq_check_job_id(json_string_value(v), err, errlen)
                != 0)
            {
                return -1;
            }
            o->job_id = json_string_value(v);

        } else if (strcmp(key, "backoff") == 0) {
            if (json_is_number(v)) {
                if (crest_bq_json_whole(v, 0, INT32_MAX, &n) != 0) {
                    snprintf(err, errlen, "backoff: expected milliseconds");
                    return -1;
                }
                o->backoff.type = CREST_BQ_BACKOFF_FIXED;
                o->backoff.delay = n;
                continue;
            }

            if (!json_is_object(v)) {
                snprintf(err, errlen, "backoff: expected a number or "
                         "{type, delay, jitter}");
                return -1;
            }

            x = json_object_get(v, "type");
            type = json_string_value(x);

            if (type && strcmp(type, "fixed") == 0) {
                o->backoff.type = CREST_BQ_BACKOFF_FIXED;
            } else if (type && strcmp(type, "exponential") == 0) {
                o->backoff.type = CREST_BQ_BACKOFF_EXPONENTIAL;
            } else {
                snprintf(err, errlen, "backoff.type: expected \"fixed\" or "
                         "\"exponential\"");
                return -1;
            }

            /* not json_object_foreach with the outer key: its iteration
             * goes on from the key variable */
            for (it = json_object_iter(v); it;
                 it = json_object_iter_next(v, it))
            {
                bkey = json_object_iter_key(it);
                x = json_object_iter_value(it);

                if (strcmp(bkey, "type") == 0) {
                    continue;
                }

                if (strcmp(bkey, "delay") == 0) {
                    if (crest_bq_json_whole(x, 0, INT32_MAX,
                                            &o->backoff.delay) != 0)
                    {
                        snprintf(err, errlen, "backoff.delay: expected "
                                 "milliseconds");
                        return -1;
                    }

                } else if (strcmp(bkey, "jitter") == 0) {
                    j = json_number_value(x);
                    if (!json_is_number(x) || j < 0 || j > 1) {
                        snprintf(err, errlen,
                                 "Jitter should be between 0 and 1");
                        return -1;
                    }
                    o->backoff.jitter = j;
                    o->backoff.has_jitter = 1;

                } else {
                    snprintf(err, errlen, "backoff: unknown key \"%s\"",
                             bkey);
                    return -1;
                }
            }

        } else if (strcmp(key, "removeOnComplete") == 0) {
            if (crest_bq_keep_from_opt(&o->remove_on_complete, key, v, err,
                                       errlen) != 0)
            {
                return -1;
            }

        } else if (strcmp(key, "removeOnFail") == 0) {
            if (crest_bq_keep_from_opt(&o->remove_on_fail, key, v, err,
                                       errlen) != 0)
            {
                return -1;
            }

        } else if (strcmp(key, "keepLogs") == 0 || strcmp(key, "kl") == 0) {
            if (crest_bq_json_whole(v, 1, INT32_MAX, &o->keep_logs) != 0) {
                snprintf(err, errlen, "%s: expected a count >= 1", key);
                return -1;
            }

        } else if (strcmp(key, "stackTraceLimit") == 0) {
            if (crest_bq_json_whole(v, 0, INT32_MAX, &o->stack_trace_limit)
                != 0)
            {
                snprintf(err, errlen, "stackTraceLimit: expected a count");
                return -1;
            }

        } else if (strcmp(key, "timestamp") == 0) {
            if (crest_bq_json_whole(v, 1, INT64_C(1) << 52, &o->timestamp)
                != 0)
            {
                snprintf(err, errlen, "timestamp: expected milliseconds");
                return -1;
            }

        } else {
            snprintf(err, errlen, "%.64s: unknown or unsupported option",
                     key);
            return -1;
        }
    }

    return 0;
}


int
crest_bullmq_pack_add_args(crest_buf_t *b, const char *prefix,
    const char *queue, const char *job_id, const char *name,
    int64_t timestamp, const char *repeat_job_key)
{
    crest_bq_w_t  w;
    unsigned      i;

    crest_bq_w_init(&w, b, 0);

    crest_bq_w_array(&w, 10);

    /* queueKeys['']: "<prefix>:<queue>:" */
    msgpack_pack_str(&w.pk, strlen(prefix) + strlen(queue) + 2);
    crest_buf_appends(b, prefix);
    crest_buf_appendc(b, ':');
    crest_buf_appends(b, queue);
    crest_buf_appendc(b, ':');

    crest_bq_w_str(&w, job_id ? job_id : "");
    crest_bq_w_str(&w, name);
    crest_bq_w_num(&w, (double) timestamp);

    /* parentKey, parentDependenciesKey, parent */
    for (i = 0; i < 3; i++) {
        crest_bq_w_nil(&w);
    }

    if (repeat_job_key) {
        crest_bq_w_str(&w, repeat_job_key);
    } else {
        crest_bq_w_nil(&w);
    }

    /* deduplication key, deferParentRelease */
    crest_bq_w_nil(&w);
    crest_bq_w_nil(&w);

    return crest_bq_w_done(&w);
}


/* ---- worker arguments ------------------------------------------------------ */

int
crest_bullmq_pack_fetch_opts(crest_buf_t *b, const char *token,
    int64_t lock_duration, const char *worker)
{
    crest_bq_w_t  w;

    crest_bq_w_init(&w, b, 0);

    crest_bq_w_map(&w, 4);
    crest_bq_w_key(&w, "token");
    crest_bq_w_str(&w, token);
    crest_bq_w_key(&w, "lockDuration");
    crest_bq_w_int(&w, lock_duration);
    crest_bq_w_key(&w, "limiter");
    crest_bq_w_nil(&w);
    crest_bq_w_key(&w, "name");
    if (worker) {
        crest_bq_w_str(&w, worker);
    } else {
        crest_bq_w_nil(&w);
    }

    return crest_bq_w_done(&w);
}


/* RedisQueueBackend.getKeepJobs() without worker-level defaults. */
static void
crest_bq_w_keep_jobs(crest_bq_w_t *w, const crest_bullmq_keep_t *k)
{
    if (k->kind == CREST_BQ_KEEP_AGE) {
        crest_bq_w_keep_value(w, k);
        return;
    }

    crest_bq_w_map(w, 1);
    crest_bq_w_key(w, "count");

    switch (k->kind) {
    case CREST_BQ_KEEP_COUNT:
        crest_bq_w_int(w, k->count);
        break;
    case CREST_BQ_KEEP_BOOL:
        crest_bq_w_int(w, k->flag ? 0 : -1);
        break;
    default:
        crest_bq_w_int(w, -1);
    }
}


void
crest_bullmq_pack_keep(crest_buf_t *b, const crest_bullmq_keep_t *k)
{
    crest_bq_w_t  w;

    crest_bq_w_init(&w, b, 0);
    crest_bq_w_keep_jobs(&w, k);
}


int
crest_bullmq_pack_finish_opts(crest_buf_t *b, const crest_bullmq_finish_t *f)
{
    crest_bq_w_t  w;

    crest_bq_w_init(&w, b, 0);

    crest_bq_w_map(&w, 11);
    crest_bq_w_key(&w, "token");
    crest_bq_w_str(&w, f->token);
    crest_bq_w_key(&w, "name");
    if (f->worker) {
        crest_bq_w_str(&w, f->worker);
    } else {
        crest_bq_w_nil(&w);
    }
    crest_bq_w_key(&w, "keepJobs");
    crest_bq_w_keep_jobs(&w, &f->keep);
    crest_bq_w_key(&w, "limiter");
    crest_bq_w_nil(&w);
    crest_bq_w_key(&w, "lockDuration");
    crest_bq_w_int(&w, f->lock_duration);
    crest_bq_w_key(&w, "attempts");
    crest_bq_w_int(&w, f->attempts);
    crest_bq_w_key(&w, "maxMetricsSize");
    if (f->max_metrics_size > 0) {
        crest_bq_w_int(&w, f->max_metrics_size);
    } else {
        crest_bq_w_str(&w, "");
    }
    crest_bq_w_key(&w, "fpof");
    crest_bq_w_bool(&w, f->fpof);
    crest_bq_w_key(&w, "cpof");
    crest_bq_w_bool(&w, f->cpof);
    crest_bq_w_key(&w, "idof");
    crest_bq_w_bool(&w, f->idof);
    crest_bq_w_key(&w, "rdof");
    crest_bq_w_bool(&w, f->rdof);

    return crest_bq_w_done(&w);
}


int
crest_bullmq_pack_strings(crest_buf_t *b, const char *const *s, size_t n)
{
    crest_bq_w_t  w;
    size_t        i;

    crest_bq_w_init(&w, b, 0);
    crest_bq_w_array(&w, n);

    for (i = 0; i < n; i++) {
        crest_bq_w_str(&w, s[i]);
    }

    return crest_bq_w_done(&w);
}


static void
crest_bq_w_json(crest_bq_w_t *w, const json_t *v, unsigned depth)
{
    const char  *key;
    json_t      *x;
    size_t       i;

    if (depth > 64) {
        w->b->failed = 1;
        return;
    }

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        crest_bq_w_map(w, json_object_size(v));
        json_object_foreach((json_t *) v, key, x) {
            crest_bq_w_key(w, key);
            crest_bq_w_json(w, x, depth + 1);
        }
        crest_bq_w_map_end(w);
        break;

    case JSON_ARRAY:
        crest_bq_w_array(w, json_array_size(v));
        for (i = 0; i < json_array_size(v); i++) {
            crest_bq_w_json(w, json_array_get(v, i), depth + 1);
        }
        crest_bq_w_array_end(w);
        break;

    case JSON_STRING:
        crest_bq_w_strn(w, json_string_value(v), json_string_length(v));
        break;

    case JSON_INTEGER:
        crest_bq_w_num(w, (double) json_integer_value(v));
        break;

    case JSON_REAL:
        crest_bq_w_num(w, json_real_value(v));
        break;

    case JSON_TRUE:
        crest_bq_w_bool(w, 1);
        break;

    case JSON_FALSE:
        crest_bq_w_bool(w, 0);
        break;

    default:
        crest_bq_w_nil(w);
    }
}


int
crest_bullmq_pack_json(crest_buf_t *b, const json_t *v)
{
    crest_bq_w_t  w;

    crest_bq_w_init(&w, b, 0);
    crest_bq_w_json(&w, v, 0);

    return crest_bq_w_done(&w);
}


void
crest_bullmq_keep_from_json(crest_bullmq_keep_t *k, const json_t *v)
{
    char  err[128];

    memset(k, 0, sizeof(*k));
    k->count = -1;
    k->limit = -1;

    if (v == NULL || json_is_null(v)) {
        return;
    }

    if (crest_bq_keep_from_opt(k, "keep", v, err, sizeof(err)) != 0) {
        /* what Lua would make of it: keep everything */
        memset(k, 0, sizeof(*k));
        k->count = -1;
        k->limit = -1;
    }
}


void
crest_bullmq_backoff_from_json(crest_bullmq_backoff_t *b, const json_t *v)
{
    const char  *type;
    json_t      *x;

    memset(b, 0, sizeof(*b));

    if (v == NULL) {
        return;
    }

    /* Backoffs.normalize: a number is a fixed delay */
    if (json_is_number(v)) {
        b->type = CREST_BQ_BACKOFF_FIXED;
        b->delay = (int64_t) json_number_value(v);
        return;
    }

    if (!json_is_object(v)) {
        return;
    }

    type = json_string_value(json_object_get(v, "type"));

    b->type = type == NULL ? CREST_BQ_BACKOFF_OTHER
              : strcmp(type, "fixed") == 0 ? CREST_BQ_BACKOFF_FIXED
              : strcmp(type, "exponential") == 0
                ? CREST_BQ_BACKOFF_EXPONENTIAL
              : CREST_BQ_BACKOFF_OTHER;

    x = json_object_get(v, "delay");
    b->delay = json_is_number(x) ? (int64_t) json_number_value(x) : 0;

    x = json_object_get(v, "jitter");
    if (json_is_number(x)) {
        b->jitter = json_number_value(x);
        b->has_jitter = 1;
    }
}


/* ---- retries ---------------------------------------------------------------- */

int64_t
crest_bullmq_backoff_delay(const crest_bullmq_backoff_t *b, int64_t attempt,
    double rnd)
{
    double  d, jitter;

    switch (b->type) {
    case CREST_BQ_BACKOFF_NONE:
        return 0;

    case CREST_BQ_BACKOFF_FIXED:
        d = (double) b->delay;
        break;

    case CREST_BQ_BACKOFF_EXPONENTIAL:
        /* Math.round(Math.pow(2, attemptsMade - 1) * delay) */
        d = floor(pow(2.0, (double) (attempt - 1)) * (double) b->delay + 0.5);
        break;

    default:
        return -1;
    }

    jitter = b->has_jitter ? b->jitter : 0;

    if (jitter > 0) {
        d = floor(rnd * d * jitter + d * (1 - jitter));
    }

    if (d > 9e15) {
        d = 9e15;
    }

    return d > 0 ? (int64_t) d : 0;
}
