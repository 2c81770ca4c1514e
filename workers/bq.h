/*
 * A BullMQ 6.7.0 queue client over one blocking Redis connection: runs
 * BullMQ's own Lua scripts (EVALSHA, loading a script on NOSCRIPT) with the
 * keys and packed arguments of shared/crest_bullmq.h.  One crest_bq_t per
 * (connection, queue); not thread-safe, like the connection under it.
 *
 * Functions returning int give 0 on success and -1 on failure with a
 * message in q->err (a Redis error reply, a script's negative code, or the
 * connection's I/O error; the connection is then dropped for a reconnect).
 */
#ifndef CREST_BQ_H
#define CREST_BQ_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "crest_buf.h"
#include "crest_bullmq.h"
#include "redis_conn.h"

typedef struct {
    crest_redis_conn_t   *conn;
    const char           *prefix;
    const char           *queue;
    crest_buf_t           keys;
    crest_bullmq_keys_t   k;
    char                  err[512];
} crest_bq_t;

/* A job as stored: the hash's fields, its id and its parsed opts. */
typedef struct {
    char     *id;
    json_t   *fields;       /* field -> string */
    json_t   *opts;         /* the parsed "opts" field; {} if missing */
} crest_bq_job_t;

/* What moveToActive (or a finish with fetch-next) returned. */
typedef struct {
    int             has_job;
    crest_bq_job_t  job;
    int64_t         rate_limit_ms;  /* > 0: the queue is rate limited */
    int64_t         next_delayed;   /* ms of the next delayed job, or 0 */
} crest_bq_next_t;

void crest_bq_init(crest_bq_t *q, crest_redis_conn_t *conn,
    const char *prefix, const char *queue);
void crest_bq_free(crest_bq_t *q);

/*
 * Runs op's script with its keys and args.  Returns the reply (free it with
 * freeReplyObject), or NULL on an I/O error or a missing script.
 */
redisReply *crest_bq_run(crest_bq_t *q, crest_bullmq_op_t op,
    const char *job_id, const char *extra, unsigned nargs,
    const char *const *args, const size_t *lens);

/* Queue.add: the job's id into id (at most idlen - 1 bytes). */
int crest_bq_add(crest_bq_t *q, const char *name, const char *data,
    size_t datalen, const crest_bullmq_opts_t *o, char *id, size_t idlen);
/* Queue.getJob: 1 found, 0 no such job, -1 error. */
int crest_bq_get(crest_bq_t *q, const char *id, crest_bq_job_t *job);
int crest_bq_progress(crest_bq_t *q, const char *id, const char *json);
/* Job.log; keep_logs 0 = keep all.  Returns the log's length or -1. */
int64_t crest_bq_log(crest_bq_t *q, const char *id, const char *row,
    int64_t keep_logs);
/* Queue.getJobLogs(id) in order: a JSON {logs: [...], count}. */
int crest_bq_logs(crest_bq_t *q, const char *id, crest_buf_t *out);
/* Queue.getJobCounts(...types); NULL types = Node's default seven, written
 * as a JSON object into out. */
int crest_bq_counts(crest_bq_t *q, const char *const *types, unsigned n,
    crest_buf_t *out);
/* Queue.pause() / resume(). */
int crest_bq_pause(crest_bq_t *q, int pause);
/* Job.remove(); -1 also when the job is locked. */
int crest_bq_remove(crest_bq_t *q, const char *id);
/* Job.getState(): "completed", ..., "unknown"; into state. */
int crest_bq_state(crest_bq_t *q, const char *id, char *state,
    size_t size);

/* Worker side. */
int crest_bq_move_to_active(crest_bq_t *q, const char *token,
    int64_t lock_ms, const char *worker, crest_bq_next_t *next);
/* Reads a script's [job, id, limit, delayed] tuple (or 0) into next. */
int crest_bq_read_next(crest_bq_t *q, const redisReply *r,
    crest_bq_next_t *next);
void crest_bq_next_free(crest_bq_next_t *next);

/* The job's fields; NULL when absent. */
const char *crest_bq_job_get(const crest_bq_job_t *job, const char *field);
int64_t crest_bq_job_int(const crest_bq_job_t *job, const char *field,
    int64_t def);
/* Fills job from a flat [field, value, ...] array reply. */
int crest_bq_job_from_reply(crest_bq_job_t *job, const redisReply *r,
    const char *id);
/* The job as Node's Job.toJSON() shows it (minus queue internals). */
void crest_bq_job_json(const crest_bq_job_t *job, crest_buf_t *out);
void crest_bq_job_free(crest_bq_job_t *job);

/* The negative codes scripts return, in Node's words. */
const char *crest_bq_code_message(long long code);

#endif /* CREST_BQ_H */
