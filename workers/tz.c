/*
 * UTC offsets of IANA time zones, read from the system's TZif files
 * (/usr/share/zoneinfo), for cron patterns with a "tz".  No setenv("TZ"):
 * the process has other threads (libpq reads the environment).
 *
 * Debian's tzdata files are "fat": they list every transition up to 2037,
 * which is what this reads; past the last transition the last offset holds
 * (the POSIX rule at the end of the file is not evaluated).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tz.h"

#define CREST_TZ_DIR    "/usr/share/zoneinfo/"
#define CREST_TZ_CACHE  8

struct crest_tz_s {
    char       name[64];
    size_t     n;               /* transitions */
    int64_t   *at;              /* seconds */
    int32_t   *off;             /* the offset from at[i] on */
    int32_t    before;          /* the offset before at[0] */
};

static pthread_mutex_t  crest_tz_mu = PTHREAD_MUTEX_INITIALIZER;
static crest_tz_t      *crest_tz_cache[CREST_TZ_CACHE];


static uint32_t
crest_be32(const unsigned char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
           | (uint32_t) p[2] << 8 | p[3];
}


static int
crest_tz_parse(crest_tz_t *tz, const unsigned char *p, size_t len, char *err,
    size_t errlen)
{
    const unsigned char  *d;
    uint32_t              isut, isstd, leap, timecnt, typecnt, charcnt;
    size_t                v1, need, i;
    unsigned              idx, k;
    int                   wide;

    if (len < 44 || memcmp(p, "TZif", 4) != 0) {
        snprintf(err, errlen, "not a TZif file");
        return -1;
    }

    wide = p[4] >= '2';

    isut = crest_be32(p + 20);
    isstd = crest_be32(p + 24);
    leap = crest_be32(p + 28);
    timecnt = crest_be32(p + 32);
    typecnt = crest_be32(p + 36);
    charcnt = crest_be32(p + 40);

    v1 = 44 + (size_t) timecnt * 5 + (size_t) typecnt * 6 + charcnt
         + (size_t) leap * 8 + isstd + isut;

    if (v1 > len) {
        snprintf(err, errlen, "truncated TZif file");
        return -1;
    }

    if (wide) {
        /* the 64-bit block after the version 1 block */
        p += v1;
        len -= v1;

        if (len < 44 || memcmp(p, "TZif", 4) != 0) {
            snprintf(err, errlen, "bad TZif v2 header");
            return -1;
        }

        isut = crest_be32(p + 20);
        isstd = crest_be32(p + 24);
        leap = crest_be32(p + 28);
        timecnt = crest_be32(p + 32);
        typecnt = crest_be32(p + 36);
        charcnt = crest_be32(p + 40);
    }

    need = 44 + (size_t) timecnt * (wide ? 9 : 5) + (size_t) typecnt * 6;

    if (typecnt == 0 || need > len) {
        snprintf(err, errlen, "truncated TZif data");
        return -1;
    }

    (void) isut;
    (void) isstd;
    (void) leap;
    (void) charcnt;

    tz->n = timecnt;
    tz->at = calloc(timecnt ? timecnt : 1, sizeof(int64_t));
    tz->off = calloc(timecnt ? timecnt : 1, sizeof(int32_t));

    if (tz->at == NULL || tz->off == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    d = p + 44;

    for (i = 0; i < timecnt; i++) {
        if (wide) {
            tz->at[i] = (int64_t) ((uint64_t) crest_be32(d + 8 * i) << 32
                                   | crest_be32(d + 8 * i + 4));
        } else {
            tz->at[i] = (int32_t) crest_be32(d + 4 * i);
        }
    }

    d += (size_t) timecnt * (wide ? 8 : 4);

    for (i = 0; i < timecnt; i++) {
        idx = d[i];
        if (idx >= typecnt) {
            snprintf(err, errlen, "bad TZif type index");
            return -1;
        }
        tz->off[i] = (int32_t) crest_be32(d + timecnt + (size_t) idx * 6);
    }

    d += timecnt;

    /* before the first transition: the first standard-time type */
    tz->before = (int32_t) crest_be32(d);

    for (k = 0; k < typecnt; k++) {
        if (d[(size_t) k * 6 + 4] == 0) {
            tz->before = (int32_t) crest_be32(d + (size_t) k * 6);
            break;
        }
    }

    return 0;
}


static void
crest_tz_free(crest_tz_t *tz)
{
    if (tz) {
        free(tz->at);
        free(tz->off);
        free(tz);
    }
}


const crest_tz_t *
crest_tz_get(const char *name, char *err, size_t errlen)
{
    crest_tz_t     *tz;
    unsigned char  *buf;
    char            path[256];
    const char     *p;
    FILE           *f;
    size_t          len;
    unsigned        i;

    if (name[0] == '\0' || strlen(name) >= sizeof(tz->name)
        || strstr(name, "..") || name[0] == '/')
    {
        snprintf(err, errlen, "bad time zone name");
        return NULL;
    }

    for (p = name; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
        {
            snprintf(err, errlen, "bad time zone name");
            return NULL;
        }
    }

    pthread_mutex_lock(&crest_tz_mu);

    for (i = 0; i < CREST_TZ_CACHE; i++) {
        if (crest_tz_cache[i] && strcmp(crest_tz_cache[i]->name, name) == 0) {
            tz = crest_tz_cache[i];
            pthread_mutex_unlock(&crest_tz_mu);
            return tz;
        }
    }

    snprintf(path, sizeof(path), CREST_TZ_DIR "%s", name);

    tz = calloc(1, sizeof(*tz));
    buf = malloc(1 << 16);

    if (tz == NULL || buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    snprintf(tz->name, sizeof(tz->name), "%s", name);

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "unknown time zone \"%s\": %s", name,
                 strerror(errno));
        goto failed;
    }

    len = fread(buf, 1, 1 << 16, f);
    fclose(f);

    if (crest_tz_parse(tz, buf, len, err, errlen) != 0) {
        goto failed;
    }

    free(buf);

    /* a small cache: the oldest entry makes room, never freed while in use
     * because entries are only replaced when all slots are taken, and zone
     * names in use are few */
    for (i = 0; i < CREST_TZ_CACHE && crest_tz_cache[i]; i++) {
        /* void */
    }

    if (i == CREST_TZ_CACHE) {
        /* keep it simple: a process with that many zones leaks the rest */
        pthread_mutex_unlock(&crest_tz_mu);
        return tz;
    }

    crest_tz_cache[i] = tz;
    pthread_mutex_unlock(&crest_tz_mu);

    return tz;

failed:

    pthread_mutex_unlock(&crest_tz_mu);
    free(buf);
    crest_tz_free(tz);

    return NULL;
}


int64_t
crest_tz_offset(void *ctx, int64_t utc_ms)
{
    const crest_tz_t  *tz = ctx;
    int64_t            t;
    size_t             lo, hi, mid;
    struct tm          tm;
    time_t             tt;

    t = utc_ms >= 0 ? utc_ms / 1000 : -((-utc_ms + 999) / 1000);

    if (tz == NULL) {
        /* the process's own zone, like cron-parser without tz */
        tt = (time_t) t;
        localtime_r(&tt, &tm);
        return (int64_t) tm.tm_gmtoff * 1000;
    }

    if (tz->n == 0 || t < tz->at[0]) {
        return (int64_t) tz->before * 1000;
    }

    lo = 0;
    hi = tz->n;

    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }

    return (int64_t) tz->off[lo] * 1000;
}
