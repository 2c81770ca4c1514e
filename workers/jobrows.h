/*
 * The worker's PostgreSQL side, on one thread of its own:
 *
 *  - job rows: for a job whose id is a uuid, the runtime queues updates of
 *    its row in `jobs` (active + started_at + attempts, completed + result,
 *    failed + error, with finished_at); they are applied in order, so that
 *    job throughput never waits on PostgreSQL, and flushed at shutdown;
 *  - the outbox reconciler: every CREST_OUTBOX_INTERVAL_MS it takes up to
 *    50 rows still `pending` 2 seconds after their creation (FOR UPDATE SKIP
 *    LOCKED), adds each to its queue with jobId = the row's id (adding an
 *    existing custom id is a no-op in BullMQ, so this is idempotent) and
 *    marks them `queued`.
 */
#ifndef CREST_JOBROWS_H
#define CREST_JOBROWS_H

#include <stdint.h>

#include "config.h"

typedef struct crest_jobrows_s  crest_jobrows_t;

crest_jobrows_t *crest_jobrows_start(const crest_config_t *cfg, char *err,
    size_t errlen);
/* Each copies its arguments; ids that are not uuids are ignored. */
void crest_jobrows_active(crest_jobrows_t *r, const char *id,
    int64_t attempts);
void crest_jobrows_completed(crest_jobrows_t *r, const char *id,
    const char *result_json);
void crest_jobrows_failed(crest_jobrows_t *r, const char *id,
    const char *error);
/* Flushes what is queued until the monotonic deadline, then ends the
 * thread and frees r (also when it could not flush everything). */
void crest_jobrows_stop(crest_jobrows_t *r, int64_t deadline);

/* 8-4-4-4-12 hex digits. */
int crest_job_id_is_uuid(const char *s);

#endif /* CREST_JOBROWS_H */
