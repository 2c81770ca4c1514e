#include "backoff.h"


/* splitmix64: tiny, any seed works, and good enough for jitter */
static uint64_t
crest_backoff_rand(crest_backoff_t *b)
{
    uint64_t  z;

    b->rng += UINT64_C(0x9e3779b97f4a7c15);
    z = b->rng;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);

    return z ^ (z >> 31);
}


void
crest_backoff_init(crest_backoff_t *b, unsigned base_ms, unsigned cap_ms,
    uint64_t seed)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
    b->attempt = 0;
    b->rng = seed;
}


unsigned
crest_backoff_next(crest_backoff_t *b)
{
    uint64_t  d;
    unsigned  half;

    d = b->base_ms;

    /* shift one step at a time so that a long outage cannot overflow */
    if (b->attempt < 32) {
        d <<= b->attempt;
    }

    if (b->attempt >= 32 || d > b->cap_ms) {
        d = b->cap_ms;

    } else {
        b->attempt++;
    }

    half = (unsigned) (d / 2);

    return (unsigned) (d - half)
           + (unsigned) (crest_backoff_rand(b) % (half + 1));
}


void
crest_backoff_reset(crest_backoff_t *b)
{
    b->attempt = 0;
}
