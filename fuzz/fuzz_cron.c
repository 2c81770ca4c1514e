/*
 * libFuzzer target for shared/crest_cron.c: parsing must never crash or
 * read past the input, and whatever parses must iterate forward: each next
 * time is a whole second strictly after the one before, and matches the
 * pattern's fields.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crest_cron.h"


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


/* A fixed, DST-like offset: +1h during the first half of each day (UTC). */
static int64_t
odd_offset(void *ctx, int64_t utc_ms)
{
    (void) ctx;
    return ((utc_ms / 1000) % 86400 < 43200) ? 3600000 : 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crest_cron_t  c;
    char         *copy, err[256];
    int64_t       t, next, start;
    struct tm     tm;
    time_t        s;
    int           i;

    /* an exact-size heap copy, so ASan sees any read past the end */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);

    err[0] = '\0';

    if (crest_cron_parse(&c, copy, size, err, sizeof(err)) != 0) {
        CHECK(err[0] != '\0');
        free(copy);
        return 0;
    }

    start = INT64_C(1767225600000);     /* 2026-01-01 */
    t = start + (size ? data[0] * 7919 : 0);

    for (i = 0; i < 4; i++) {
        next = crest_cron_next(&c, t, NULL, NULL);
        if (next < 0) {
            break;
        }

        CHECK(next > t);
        CHECK(next % 1000 == 0);
        CHECK(next <= t + INT64_C(86400000) * 366 * 11);

        s = (time_t) (next / 1000);
        gmtime_r(&s, &tm);
        CHECK(c.sec >> tm.tm_sec & 1);
        CHECK(c.min >> tm.tm_min & 1);
        CHECK(c.hour >> tm.tm_hour & 1);
        CHECK(c.month >> (tm.tm_mon + 1) & 1);

        t = next;
    }

    t = start;
    for (i = 0; i < 4; i++) {
        next = crest_cron_next(&c, t, odd_offset, NULL);
        if (next < 0) {
            break;
        }
        CHECK(next > t);
        t = next;
    }

    free(copy);

    return 0;
}
