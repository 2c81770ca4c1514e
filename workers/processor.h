/*
 * Job processors: one function per queue, registered in processors.c.
 *
 *     static crest_job_result_t
 *     my_process(crest_job_ctx_t *ctx, const crest_job_t *job,
 *         crest_buf_t *out)
 *     {
 *         crest_job_progress(ctx, "50");
 *         crest_job_log(ctx, "half way");
 *         if (crest_job_sleep(ctx, 100) != 0) {
 *             return CREST_JOB_ABORTED;            // shutting down now
 *         }
 *         crest_buf_appends(out, "{\"ok\":true}");  // the return value
 *         return CREST_JOB_DONE;
 *     }
 *
 * A processor runs on one of its queue's worker threads (CREST_CONCURRENCY
 * of them), with the job locked for it; it must not keep pointers into job
 * or ctx after it returns.  Failing (CREST_JOB_FAIL, message in out) retries
 * the job as its attempts and backoff say; CREST_JOB_FAIL_FINAL fails it at
 * once (BullMQ's UnrecoverableError).  CREST_JOB_ABORTED leaves the job
 * active: its lock expires and the stalled-job checker of some worker puts
 * it back in wait.
 */
#ifndef CREST_PROCESSOR_H
#define CREST_PROCESSOR_H

#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "crest_buf.h"

typedef struct crest_job_ctx_s  crest_job_ctx_t;

typedef struct {
    const char    *queue;
    const char    *id;
    const char    *name;
    const char    *data;            /* the stored JSON text */
    size_t         data_len;
    const json_t  *data_json;       /* parsed, NULL if not JSON */
    const json_t  *opts;            /* the stored options, short keys */
    int64_t        attempts_made;   /* failures so far (atm) */
    int64_t        attempts_started;
    int64_t        timestamp;
    int64_t        processed_on;
} crest_job_t;

typedef enum {
    CREST_JOB_DONE = 0,     /* out: the return value as JSON, "" = null */
    CREST_JOB_FAIL,         /* out: the error message */
    CREST_JOB_FAIL_FINAL,   /* out: the error message; no retry */
    CREST_JOB_ABORTED       /* leave the job to stalled-job recovery */
} crest_job_result_t;

typedef crest_job_result_t (*crest_process_fn)(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

typedef struct {
    const char        *queue;
    crest_process_fn   process;
    const char        *about;       /* one line for --help */
} crest_processor_t;

/* Job.updateProgress(json); 0 or -1. */
int crest_job_progress(crest_job_ctx_t *ctx, const char *json);
/* Job.log(row); 0 or -1. */
int crest_job_log(crest_job_ctx_t *ctx, const char *row);
/* Sleeps ms; -1 as soon as the worker must stop at once (grace is over). */
int crest_job_sleep(crest_job_ctx_t *ctx, int64_t ms);
/* 1 once the worker must stop at once. */
int crest_job_aborted(crest_job_ctx_t *ctx);
/* The worker's settings (REDIS_URL, DATABASE_URL, ...), for processors
 * that open connections of their own. */
const crest_config_t *crest_job_config(crest_job_ctx_t *ctx);

/* The registry (processors.c). */
extern const crest_processor_t  crest_processors[];
const crest_processor_t *crest_processor_find(const char *queue);

/* The ping processor (ping.c). */
crest_job_result_t crest_ping_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

/* The trend discovery processor (trending.c). */
crest_job_result_t crest_trending_refresh_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

/* The media download processors (download.c). */
crest_job_result_t crest_download_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);
crest_job_result_t crest_formats_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

/* A user's own trend scrape (trend_scrape.c). */
crest_job_result_t crest_trend_scrape_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

#endif /* CREST_PROCESSOR_H */
