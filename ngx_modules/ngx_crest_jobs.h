/*
 * Jobs from the edge: the enqueue API of ngx_http_crest_jobs_module, for
 * any endpoint that records a request and hands the work to the workers.
 *
 * The outbox pattern: the job's row is written to PostgreSQL first (status
 * pending), then the BullMQ job is added with the row's id as its job id,
 * then the row is marked queued.  When Redis does not take the job, the row
 * stays pending and the workers' outbox reconciler adds it later with the
 * same id and options, which BullMQ makes a no-op should the first add have
 * gone through after all.  So a row always gets its job, and a job always
 * has its row; the caller learns which of the two happened.
 *
 * opts, when given, must be zeroed before its fields are set (ngx_memzero),
 * so that fields added later keep their defaults.
 *
 * Use from a content handler:
 *
 *     static void
 *     my_enqueued(ngx_http_request_t *r, ngx_crest_job_t *job, void *data)
 *     {
 *         ngx_crest_finalize(r, ngx_crest_job_send(r, job));
 *     }
 *
 *     rc = ngx_crest_job_enqueue(r, &queue, &name, &data_json, NULL,
 *                                my_enqueued, ctx);
 *     if (rc == NGX_DONE) {
 *         r->main->count++;
 *     }
 *     return rc;
 */
#ifndef _NGX_CREST_JOBS_H_INCLUDED_
#define _NGX_CREST_JOBS_H_INCLUDED_

#include "ngx_crest.h"


#define NGX_CREST_JOB_NAME_MAX     100
#define NGX_CREST_JOB_DATA_MAX     (512 * 1024)
#define NGX_CREST_JOB_ATTEMPTS_MAX 100


#define NGX_CREST_JOB_SQL_VALUES   8


typedef enum {
    NGX_CREST_JOB_QUEUED = 0,   /* the row is written, the job is queued */
    NGX_CREST_JOB_PENDING,      /* the row is written, Redis did not take
                                   the job: the outbox reconciler adds it */
    NGX_CREST_JOB_NOT_CREATED,  /* no row (PostgreSQL failed): no job */
    NGX_CREST_JOB_REFUSED       /* opts->sql returned no id: no row, no job */
} ngx_crest_job_result_e;


typedef struct {
    /* the row's max_attempts and BullMQ's attempts; 0: crest_jobs_attempts */
    ngx_uint_t                 attempts;

    /*
     * The statement that writes the job's row, instead of the plain
     * INSERT INTO jobs, for an endpoint whose own row (a download, a
     * scrape) must exist exactly when the job's row does: one statement is
     * one transaction, so there is never one without the other.  It gets
     * $1 user_id (uuid text or NULL), $2 queue, $3 name, $4 data (JSON
     * text), $5 max_attempts (integer text), then values[0 .. nvalues - 1]
     * as $6 onwards (NULL entries are SQL NULLs); it inserts the jobs row
     * from $1 to $5 and returns that row's id as the first column of its
     * first row, e.g.
     *
     *   WITH j AS (INSERT INTO jobs (user_id, queue, name, data,
     *                                max_attempts)
     *              VALUES ($1::uuid, $2, $3, $4::jsonb, $5::integer)
     *              RETURNING id)
     *   INSERT INTO media_downloads (id, user_id, job_id, original_url)
     *   SELECT $6::uuid, $1::uuid, j.id::text, $7 FROM j
     *   RETURNING job_id
     *
     * or a call of a PL/pgSQL function that checks a condition under a
     * lock first.  No row, or a NULL id, means the statement refused (a
     * condition of the caller's did not hold): the result is REFUSED.
     */
    const char                *sql;
    ngx_uint_t                 nvalues;     /* at most ..._SQL_VALUES */
    const char               **values;

    /* a system job (user_id NULL) even when the request has a caller: work
     * the caller's request only triggered, not asked for */
    unsigned                   system:1;
    /* never answers r: when PostgreSQL cannot take the row now, returns
     * NGX_DECLINED (no row, handler not called) instead of sending 503, for
     * a caller whose own answer does not depend on the job */
    unsigned                   quiet:1;
} ngx_crest_job_opts_t;


typedef struct {
    ngx_crest_job_result_e     result;
    /* of the step that did not succeed: PostgreSQL's for NOT_CREATED
     * (NGX_CREST_FAILED: the statement was refused), Redis' for PENDING */
    ngx_crest_status_e         status;
    ngx_str_t                  id;          /* the row's uuid, NUL-ended;
                                               empty for NOT_CREATED */
    ngx_str_t                  queue;
    ngx_str_t                  name;
} ngx_crest_job_t;


/* Called once; the handler finalizes r (ngx_crest_finalize). */
typedef void (*ngx_crest_job_handler_pt)(ngx_http_request_t *r,
    ngx_crest_job_t *job, void *data);


/*
 * Writes a job's row for the caller (user_id from crest_auth's identity;
 * NULL, a system job, without one) and enqueues it on queue, which must be
 * one of crest_jobs_queues.  name: 1 to NGX_CREST_JOB_NAME_MAX bytes of text;
 * data_json: a JSON object (at most NGX_CREST_JOB_DATA_MAX bytes), stored as
 * BullMQ's job data as given and in the row as jsonb.  opts may be NULL.
 * Everything is copied.  The BullMQ options are the ones the reconciler
 * uses too, so that a job is the same however it reached Redis: jobId = the
 * row's id, attempts, backoff {type: exponential, delay: 1000}.
 *
 * Returns NGX_DONE when handler will be called (never from in here; the
 * caller still owns r->main->count++), NGX_DECLINED (opts->quiet only)
 * when no row could be queued now, else what a content handler
 * returns: the 503 answer when PostgreSQL cannot take a query now, or
 * NGX_HTTP_INTERNAL_SERVER_ERROR for arguments that break the rules above
 * (logged: a bug in the caller).  The steps are bound to r: if the client
 * leaves, handler is never called, and a row already written is enqueued
 * by the reconciler.
 */
ngx_int_t ngx_crest_job_enqueue(ngx_http_request_t *r, ngx_str_t *queue,
    ngx_str_t *name, ngx_str_t *data_json, ngx_crest_job_opts_t *opts,
    ngx_crest_job_handler_pt handler, void *data);

/*
 * From the handler of a directive whose requests enqueue on *queue: once
 * the whole configuration is parsed, nginx warns if *queue is not in
 * crest_jobs_queues, naming who ("crest_trends") and the directive's file
 * and line.  *queue is read then, so it may be a conf field set later
 * (its default in init_main_conf); it must live as long as the
 * configuration.  NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_crest_jobs_need_queue(ngx_conf_t *cf, ngx_str_t *queue,
    const char *who);

/*
 * The usual answer: 202 {job: {id, queue, name, status}} (status "queued"
 * or "pending"), 503 / 500 in the envelope for NOT_CREATED, 409 CONFLICT
 * for REFUSED (callers with opts->sql usually answer that one themselves).
 */
ngx_int_t ngx_crest_job_send(ngx_http_request_t *r, ngx_crest_job_t *job);

/*
 * The Redis key of a job's BullMQ hash, "<crest_jobs_prefix>:<queue>:<id>",
 * NUL-ended in r->pool, for an endpoint that reads the job's state there
 * (finishedOn, returnvalue, failedReason).  NGX_ERROR: out of memory.
 */
ngx_int_t ngx_crest_job_key(ngx_http_request_t *r, ngx_str_t *queue,
    ngx_str_t *id, ngx_str_t *key);

#endif /* _NGX_CREST_JOBS_H_INCLUDED_ */
