/* The trending-refresh job schedulers (trending_sched.c). */
#ifndef CREST_TRENDING_SCHED_H
#define CREST_TRENDING_SCHED_H

#include <stdio.h>

#include "bq.h"

/*
 * Upserts one job scheduler "trending:<platform>:<region>:<category|all>"
 * per entry of spec ("platform:region[:category]", comma-separated) on
 * queue q, repeating every every_ms; prints each id to out if not NULL.
 * Returns how many, or -1 with err.
 */
int crest_trending_schedule(crest_bq_t *q, const char *spec, long every_ms,
    FILE *out, char *err, size_t errlen);

/*
 * Upserts the job scheduler id on queue q: a job named name with data
 * (3 attempts, exponential backoff from 5 s) every every_ms.  0, or -1
 * with err.
 */
int crest_sched_upsert(crest_bq_t *q, const char *id, const char *name,
    const json_t *data, long every, char *err, size_t errlen);

#endif /* CREST_TRENDING_SCHED_H */
