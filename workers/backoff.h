/*
 * Exponential backoff with jitter for reconnecting: the n-th retry waits a
 * random time in [d/2, d] where d = min(cap, base * 2^n).  The random half
 * keeps a fleet of workers from reconnecting in lock step after an outage;
 * the fixed half keeps a single worker from hammering a server that is down.
 */
#ifndef CREST_BACKOFF_H
#define CREST_BACKOFF_H

#include <stdint.h>

typedef struct {
    unsigned  base_ms;
    unsigned  cap_ms;
    unsigned  attempt;
    uint64_t  rng;
} crest_backoff_t;

void crest_backoff_init(crest_backoff_t *b, unsigned base_ms, unsigned cap_ms,
    uint64_t seed);
/* The delay before the next retry, in milliseconds. */
unsigned crest_backoff_next(crest_backoff_t *b);
/* After a success: the next failure starts from base again. */
void crest_backoff_reset(crest_backoff_t *b);

#endif /* CREST_BACKOFF_H */
