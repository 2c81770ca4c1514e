/*
 * BullMQ 6.7.0 on the wire: the pure pieces every Crest producer and worker
 * needs to run BullMQ's own Lua scripts with EVALSHA.
 *
 * Nothing here does I/O or allocates on its own: keys and packed arguments go
 * into a crest_buf_t whose allocator the caller chose (an nginx pool, malloc).
 * Arguments BullMQ packs with msgpackr are packed with libmsgpack's packer,
 * following msgpackr's choices byte for byte ({useRecords: false,
 * encodeUndefinedAsNil: true}): plain objects as map16, whole numbers in
 * [-2^31, 2^32) as the smallest integer, every other number as float64,
 * undefined as nil.
 *
 * The scripts themselves are not in shared/: the build generates
 * build/gen/crest_bullmq_scripts.c from the pinned npm package (see
 * tools/gen-bullmq-scripts.js), which defines crest_bullmq_script_find().
 * Link that file too when you need the Lua text or its SHA1.
 *
 * Adding a job (what Queue.add does), e.g. from nginx:
 *
 *     crest_bullmq_opts_t  o;
 *     crest_bullmq_keys_t  k;
 *     crest_buf_t          keys, args, opts;
 *     crest_bullmq_op_t    op;
 *
 *     crest_bullmq_opts_init(&o);
 *     o.job_id = row_uuid;  o.attempts = 3;
 *     crest_bullmq_add_keys(&k, &keys, "bull", "media", &o);     // KEYS
 *     crest_bullmq_pack_add_args(&args, "bull", "media", o.job_id, "download",
 *                                now_ms, NULL);                    // ARGV[1]
 *     crest_bullmq_pack_opts(&opts, &o);                           // ARGV[3]
 *     s = crest_bullmq_script_find(crest_bullmq_add_script(&o));
 *     EVALSHA s->sha1 k.n k.key[0..n) args data_json opts
 *     (on a NOSCRIPT error: SCRIPT LOAD s->lua, then EVALSHA again)
 *
 * where ARGV[2], data_json, is the job's data as JSON text, stored as is.
 *
 * The reply is the job id (a string or an integer); a custom id that exists
 * already is not added again and its id is returned.
 */
#ifndef CREST_BULLMQ_H
#define CREST_BULLMQ_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crest_buf.h"

#define CREST_BULLMQ_DEFAULT_PREFIX  "bull"
#define CREST_BULLMQ_MAX_KEYS        14
/* Job.PRIORITY_LIMIT */
#define CREST_BULLMQ_PRIORITY_MAX    2097151
/* Worker defaults */
#define CREST_BULLMQ_LOCK_DURATION   30000
#define CREST_BULLMQ_STALLED_INTERVAL 30000
#define CREST_BULLMQ_MAX_STALLED     1


/* ---- the generated script table (build/gen/crest_bullmq_scripts.c) ---- */

typedef struct {
    const char  *name;          /* "addStandardJob" */
    unsigned     numkeys;
    const char  *lua;           /* the exact bytes Node loads */
    size_t       len;
    char         sha1[41];      /* lower-case hex, what EVALSHA takes */
} crest_bullmq_script_t;

/* NULL when the pinned version has no script of that name. */
const crest_bullmq_script_t *crest_bullmq_script_find(const char *name);
const char *crest_bullmq_scripts_version(void);


/* ---- operations: which script, with which KEYS ------------------------- */

typedef enum {
    CREST_BQ_ADD_STANDARD = 0,  /* addStandardJob-9 */
    CREST_BQ_ADD_DELAYED,       /* addDelayedJob-6 */
    CREST_BQ_ADD_PRIORITIZED,   /* addPrioritizedJob-9 */
    CREST_BQ_MOVE_TO_ACTIVE,    /* moveToActive-11 */
    CREST_BQ_MOVE_TO_FINISHED,  /* moveToFinished-14; extra: "completed" or
                                   "failed", job id needed */
    CREST_BQ_MOVE_TO_DELAYED,   /* moveToDelayed-11; job id */
    CREST_BQ_RETRY_JOB,         /* retryJob-11; job id */
    CREST_BQ_EXTEND_LOCKS,      /* extendLocks-1 */
    CREST_BQ_EXTEND_LOCK,       /* extendLock-2; job id */
    CREST_BQ_MOVE_STALLED,      /* moveStalledJobsToWait-9 */
    CREST_BQ_UPDATE_PROGRESS,   /* updateProgress-3; job id */
    CREST_BQ_ADD_LOG,           /* addLog-2; job id */
    CREST_BQ_GET_COUNTS,        /* getCounts-1 */
    CREST_BQ_PAUSE,             /* pause-7 pausing */
    CREST_BQ_RESUME,            /* pause-7 resuming */
    CREST_BQ_REMOVE_JOB,        /* removeJob-2; job id */
    CREST_BQ_UPDATE_SCHEDULER,  /* updateJobScheduler-12; extra: producer
                                   job id or NULL */
    CREST_BQ_GET_STATE,         /* getStateV2-8 */
    CREST_BQ_ADD_SCHEDULER,     /* addJobScheduler-11 */
    CREST_BQ_NOPS
} crest_bullmq_op_t;

typedef struct {
    const char  *key[CREST_BULLMQ_MAX_KEYS];
    size_t       len[CREST_BULLMQ_MAX_KEYS];
    unsigned     n;
} crest_bullmq_keys_t;

/* The script name an operation runs ("addStandardJob"...). */
const char *crest_bullmq_op_script(crest_bullmq_op_t op);
/* How many KEYS it passes; must equal the script's numkeys. */
unsigned crest_bullmq_op_numkeys(crest_bullmq_op_t op);

/*
 * Writes the KEYS of op for queue `queue` under `prefix` into b (reset
 * first) and points k at them: the pointers stay valid while b is neither
 * changed nor freed.  job_id and extra as the op list says (NULL otherwise).
 * Returns the number of keys, or -1 (bad arguments or b out of memory).
 */
int crest_bullmq_keys(crest_bullmq_keys_t *k, crest_buf_t *b,
    const char *prefix, const char *queue, crest_bullmq_op_t op,
    const char *job_id, const char *extra);

/* "<prefix>:<queue>:<suffix>" appended to b, e.g. the job key or "meta". */
void crest_bullmq_key(crest_buf_t *b, const char *prefix, const char *queue,
    const char *suffix);

/* The CLIENT SETNAME that makes Queue.getWorkers() list a worker:
 * "<prefix>:<base64(queue)>:w:<worker>" (or without ":w:..." if NULL). */
void crest_bullmq_client_name(crest_buf_t *b, const char *prefix,
    const char *queue, const char *worker);


/* ---- job options -------------------------------------------------------- */

typedef enum {
    CREST_BQ_KEEP_UNSET = 0,    /* keep every job (Lua: count -1) */
    CREST_BQ_KEEP_BOOL,         /* true: remove at once, false: keep */
    CREST_BQ_KEEP_COUNT,        /* keep the newest count */
    CREST_BQ_KEEP_AGE           /* {age[, count][, limit]}: seconds */
} crest_bullmq_keep_kind_t;

typedef struct {
    crest_bullmq_keep_kind_t  kind;
    int                       flag;     /* KEEP_BOOL */
    int64_t                   count;    /* KEEP_COUNT; KEEP_AGE: -1 = none */
    int64_t                   age;      /* KEEP_AGE */
    int64_t                   limit;    /* KEEP_AGE: -1 = none */
} crest_bullmq_keep_t;

typedef enum {
    CREST_BQ_BACKOFF_NONE = 0,
    CREST_BQ_BACKOFF_FIXED,
    CREST_BQ_BACKOFF_EXPONENTIAL,
    CREST_BQ_BACKOFF_OTHER      /* a custom strategy only Node knows */
} crest_bullmq_backoff_type_t;

typedef struct {
    crest_bullmq_backoff_type_t  type;
    int64_t                      delay;
    double                       jitter;    /* 0..1 */
    int                          has_jitter;
} crest_bullmq_backoff_t;

/*
 * What Queue.add(name, data, opts) takes, as far as Crest uses it.  Packed
 * (and written as JSON) in this order, which is the order to give Node the
 * same options in when its stored opts must be byte-identical: attempts,
 * delay, priority, lifo, jobId, backoff {type, delay, jitter},
 * removeOnComplete, removeOnFail ({age, count, limit}), kl (keepLogs),
 * stackTraceLimit, timestamp.  attempts is always written (Node adds
 * attempts: 0); the others only when set.
 */
typedef struct {
    int64_t                 attempts;           /* 0 = one attempt */
    int64_t                 delay;              /* ms; > 0 = delayed */
    int64_t                 priority;           /* 0 = none, 1..2^21-1 */
    int                     lifo;
    const char             *job_id;             /* NULL = the next number */
    crest_bullmq_backoff_t  backoff;
    crest_bullmq_keep_t     remove_on_complete;
    crest_bullmq_keep_t     remove_on_fail;
    int64_t                 keep_logs;          /* 0 = unset */
    int64_t                 stack_trace_limit;  /* -1 = unset */
    int64_t                 timestamp;          /* ms; 0 = unset */
} crest_bullmq_opts_t;

void crest_bullmq_opts_init(crest_bullmq_opts_t *o);
/*
 * Reads Queue.add-style options from a JSON object (the keys above, with
 * backoff a number or {type, delay, jitter}, removeOn* a boolean, a number
 * or {age, count, limit}, keepLogs or kl).  Strings point into obj.  Checks
 * what Node's Job.validateOptions checks.  0 or -1 with a message in err.
 */
int crest_bullmq_opts_from_json(crest_bullmq_opts_t *o, const json_t *obj,
    char *err, size_t errlen);
/* Node's checks on a custom job id: not "0", not an integer, no ':' unless
 * "a:b:c".  0 or -1 with a message. */
int crest_bullmq_check_job_id(const char *id, char *err, size_t errlen);
/* Which add script the options call for: a delay > 0 addDelayedJob, else
 * a priority addPrioritizedJob, else addStandardJob (as Queue.add). */
crest_bullmq_op_t crest_bullmq_add_op(const crest_bullmq_opts_t *o);
/* Its name, for crest_bullmq_script_find(). */
const char *crest_bullmq_add_script(const crest_bullmq_opts_t *o);
/* Its KEYS: crest_bullmq_keys() for crest_bullmq_add_op(o); 9, 6 or 9, or
 * -1. */
int crest_bullmq_add_keys(crest_bullmq_keys_t *k, crest_buf_t *b,
    const char *prefix, const char *queue, const crest_bullmq_opts_t *o);
/* ARGV[3] of the add scripts. */
int crest_bullmq_pack_opts(crest_buf_t *b, const crest_bullmq_opts_t *o);
/* The same object as JSON, what JSON.stringify gives in Node. */
int crest_bullmq_opts_json(crest_buf_t *b, const crest_bullmq_opts_t *o);

/*
 * ARGV[1] of the add scripts: [prefix:queue:, customId or "", name,
 * timestamp, nil x6] (repeat_job_key, the 8th, when not NULL).
 */
int crest_bullmq_pack_add_args(crest_buf_t *b, const char *prefix,
    const char *queue, const char *job_id, const char *name,
    int64_t timestamp, const char *repeat_job_key);


/* ---- worker arguments ---------------------------------------------------- */

/* moveToActive ARGV[3], and moveToDelayed's fetch-next opts:
 * {token, lockDuration, limiter: nil, name}; worker NULL = nil. */
int crest_bullmq_pack_fetch_opts(crest_buf_t *b, const char *token,
    int64_t lock_duration, const char *worker);

typedef struct {
    const char           *token;
    const char           *worker;           /* NULL = nil */
    crest_bullmq_keep_t   keep;             /* the job's removeOn* */
    int64_t               lock_duration;
    int64_t               attempts;         /* the job's opts.attempts */
    int64_t               max_metrics_size; /* 0 = off ('') */
    int                   fpof, cpof, idof, rdof;
} crest_bullmq_finish_t;

/* moveToFinished ARGV[8]: {token, name, keepJobs, limiter, lockDuration,
 * attempts, maxMetricsSize, fpof, cpof, idof, rdof}. */
int crest_bullmq_pack_finish_opts(crest_buf_t *b,
    const crest_bullmq_finish_t *f);
/* keepJobs as Node derives it from removeOnComplete/removeOnFail. */
void crest_bullmq_pack_keep(crest_buf_t *b, const crest_bullmq_keep_t *k);

/* A msgpack array of n strings: moveToFinished/moveToDelayed/retryJob field
 * lists (["failedReason", msg, "stacktrace", json]) and extendLocks' token
 * and id arrays. */
int crest_bullmq_pack_strings(crest_buf_t *b, const char *const *s,
    size_t n);

/* Any JSON value the way msgpackr packs what JSON.parse gave (objects keep
 * their key order). */
int crest_bullmq_pack_json(crest_buf_t *b, const json_t *v);

/* Reads removeOnComplete/removeOnFail from a job's stored opts (NULL or
 * missing = unset). */
void crest_bullmq_keep_from_json(crest_bullmq_keep_t *k, const json_t *v);
/* Reads opts.backoff (a number or an object) from stored opts. */
void crest_bullmq_backoff_from_json(crest_bullmq_backoff_t *b,
    const json_t *v);


/* ---- retries -------------------------------------------------------------- */

/*
 * Backoffs.calculate for the built-in strategies: attempt is attemptsMade + 1
 * (1 for the first retry), rnd a number in [0, 1) used only with jitter.
 * fixed: delay; exponential: round(2^(attempt-1) * delay); with jitter j:
 * floor(rnd * d * j + d * (1 - j)).  Returns 0 without a backoff, -1 for a
 * strategy only Node knows.
 */
int64_t crest_bullmq_backoff_delay(const crest_bullmq_backoff_t *b,
    int64_t attempt, double rnd);

/* Job.shouldRetryJob's condition: attemptsMade + 1 < attempts. */
static inline int
crest_bullmq_should_retry(int64_t attempts_made, int64_t attempts,
    int unrecoverable)
{
    return !unrecoverable && attempts_made + 1 < attempts;
}

#endif /* CREST_BULLMQ_H */
