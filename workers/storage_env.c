/*
 * Which storage backend a worker uses: CREST_STORAGE.  Apart from
 * storage.c so that the unit tests of the local backend link without
 * libcurl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage.h"


crest_storage_t *
crest_storage_open_env(char *err, size_t errlen)
{
    const char  *kind = getenv("CREST_STORAGE");
    const char  *dir = getenv("CREST_STORAGE_DIR");

    if (kind && strcmp(kind, "s3") == 0) {
        return crest_storage_s3_open_env(err, errlen);
    }

    if (kind && *kind && strcmp(kind, "local") != 0) {
        snprintf(err, errlen, "CREST_STORAGE: unknown backend \"%s\" "
                 "(local or s3)", kind);
        return NULL;
    }

    return crest_storage_local_open(dir && *dir ? dir : "var/media", err,
                                    errlen);
}
