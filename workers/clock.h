/* Time in milliseconds: monotonic for deadlines, wall clock for logs. */
#ifndef CREST_CLOCK_H
#define CREST_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
crest_mono_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static inline int64_t
crest_wall_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* CREST_CLOCK_H */
