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

#endif /* CREST_TRENDING_SCHED_H */
