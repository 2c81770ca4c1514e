/* Job schedulers: the next iteration when a worker fetches one (scheduler.c). */
#ifndef CREST_SCHEDULER_H
#define CREST_SCHEDULER_H

#include "bq.h"

/* For a fetched job with "rjk": updateJobScheduler.  0, or -1 (logged). */
int crest_scheduler_next(crest_bq_t *bq, const crest_bq_job_t *job,
    const char *prefix);

#endif /* CREST_SCHEDULER_H */
