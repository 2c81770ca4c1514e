/*
 * The generic cell rate algorithm: a token bucket kept as one number, the
 * theoretical arrival time (TAT) of the next request.  Crest's rate limits
 * use it locally (shared memory), in Redis (one script call) and in sync
 * mode (local, reconciled with Redis), so all three agree on what "100
 * requests a minute with a burst of 20" means.
 *
 * A rate of `count` requests per `period` spaces requests `interval =
 * period / count` apart; the bucket holds `burst` of them, so `burst`
 * requests may arrive at once and the bucket refills one every interval.
 */
#ifndef CREST_GCRA_H
#define CREST_GCRA_H

#include <stdint.h>

/* Times are in one unit of the caller's choosing (Crest uses microseconds). */
typedef struct {
    int       allowed;
    int64_t   remaining;        /* requests that would still pass now */
    int64_t   reset;            /* until the bucket is full again */
    int64_t   retry_after;      /* denied: until this request would pass */
} crest_gcra_result_t;

/*
 * Decides one request of weight cost at time now (any epoch, as long as
 * tat uses the same).  *tat is updated only when it passes.
 */
void crest_gcra(int64_t now, int64_t *tat, int64_t interval, int64_t burst,
    int64_t cost, crest_gcra_result_t *res);

/*
 * The same figures from "used", the part of the bucket taken (tat - now,
 * after the decision), as the Redis script reports it.
 */
void crest_gcra_from_used(int allowed, int64_t used, int64_t interval,
    int64_t burst, int64_t cost, crest_gcra_result_t *res);

#endif /* CREST_GCRA_H */
