/* UTC offsets of IANA time zones from /usr/share/zoneinfo (see tz.c). */
#ifndef CREST_TZ_H
#define CREST_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct crest_tz_s  crest_tz_t;

/* A loaded zone, cached for the life of the process; NULL + err if none. */
const crest_tz_t *crest_tz_get(const char *name, char *err, size_t errlen);
/* A crest_cron_offset_fn: ctx is a crest_tz_t, or NULL for the process's
 * own zone (localtime_r). */
int64_t crest_tz_offset(void *ctx, int64_t utc_ms);

#endif /* CREST_TZ_H */
