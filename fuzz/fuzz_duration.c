/*
 * libFuzzer target for shared/crest_duration.c: never crashes or reads past
 * len; a parsed duration is within [0, CREST_DURATION_MAX]; and the
 * canonical form "P<d>DT<h>H<m>M<s>S" of any result parses back to it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crest_duration.h"


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t  secs, again;
    char    *copy, canon[96];
    int      n;

    /* an exact-size heap copy, so ASan catches any read past len */
    copy = malloc(size ? size : 1);
    CHECK(copy != NULL);
    if (size) {
        memcpy(copy, data, size);
    }

    if (crest_duration_parse(copy, size, &secs) == 0) {
        CHECK(secs >= 0 && secs <= CREST_DURATION_MAX);
        CHECK(size >= 3 && copy[0] == 'P');

        n = snprintf(canon, sizeof(canon), "P%" PRId64 "DT%" PRId64 "H%"
                     PRId64 "M%" PRId64 "S", secs / 86400,
                     secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
        CHECK(n > 0 && (size_t) n < sizeof(canon));
        CHECK(crest_duration_parse(canon, (size_t) n, &again) == 0);
        CHECK(again == secs);
    }

    free(copy);

    return 0;
}
