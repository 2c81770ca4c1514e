/*
 * The job runtime: serves the queues of CREST_QUEUES with their processors,
 * the way a BullMQ Worker does, with BullMQ's own scripts.
 *
 * Threads, each with its own blocking Redis connection (hiredis contexts are
 * not shared):
 *
 *  - per queue, a dispatcher: fetches with moveToActive while a slot is
 *    free, and when the queue is drained blocks on BZPOPMIN <queue>:marker
 *    (its connection carries the CLIENT SETNAME that Queue.getWorkers()
 *    and dashboards look for);
 *  - per queue, CREST_CONCURRENCY slot threads: each runs the processor on
 *    a job, finishes it with moveToFinished (fetching the next job in the
 *    same call, as Node does), or retries it with moveToDelayed/retryJob;
 *  - one maintenance thread: renews the locks of every job in flight
 *    (extendLocks, every lock duration / 4) and runs the stalled-job check
 *    of each queue (moveStalledJobsToWait, every stalled interval).
 *
 * Threads rather than one event loop with hiredis async: a processor is
 * plain blocking C (it may call libraries that block, or sleep), a slow
 * job cannot delay another job's lock renewal or finish, and blocking
 * hiredis keeps every Redis exchange a simple call with a timeout.  The cost
 * is a few connections per queue, which Redis handles easily.
 */
#ifndef CREST_RUNTIME_H
#define CREST_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "jobrows.h"

typedef struct crest_rt_s  crest_rt_t;

/* Starts every thread; NULL with a message in err. */
crest_rt_t *crest_rt_start(const crest_config_t *cfg, crest_jobrows_t *rows,
    char *err, size_t errlen);
/* Stops fetching; jobs in flight carry on (and finish without fetching). */
void crest_rt_stop(crest_rt_t *rt);
/* Waits until no job is in flight or the monotonic deadline passes;
 * returns how many jobs are still running. */
unsigned crest_rt_wait(crest_rt_t *rt, int64_t deadline);
/* Tells processors to give up (crest_job_sleep returns -1): their jobs are
 * left active for stalled-job recovery. */
void crest_rt_abort(crest_rt_t *rt);
/* Joins the threads that ended by the deadline and frees what it can;
 * returns 0 if every thread ended. */
int crest_rt_destroy(crest_rt_t *rt, int64_t deadline);

#endif /* CREST_RUNTIME_H */
