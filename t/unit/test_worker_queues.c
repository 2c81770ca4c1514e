/*
 * Unit tests for the job runtime's settings (workers/config.c: CREST_QUEUES,
 * CREST_CONCURRENCY...) and for workers/tz.c, the time zone reader the cron
 * schedules use, against the C library's own localtime_r.  The unit build
 * links only shared/, so the worker sources are included directly.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../workers/config.c"
#include "../../workers/log.c"
#include "../../workers/tz.c"
#include "tap.h"


static void
test_queues(void)
{
    static const char  *bad[] = {
        "", ",", "ping,", "a b", "ping,ping", "bad:queue", "x=", "=ping",
        "a=b=c", "q/1",
    };
    crest_config_t  c;
    char            err[512];
    size_t          i;

    crest_config_defaults(&c);
    is_int(c.nqueues, 1, "one queue by default");
    is_str(c.queues[0], "ping", "ping");
    is_str(c.processors[0], "ping", "served by ping");
    is_int(c.concurrency, 1, "concurrency 1");
    is_int(c.lock_duration_ms, 30000, "lock duration 30 s");
    is_int(c.stalled_interval_ms, 30000, "stalled interval 30 s");
    is_int(c.max_stalled_count, 1, "max stalled count 1");
    is_int(c.outbox_interval_ms, 3000, "outbox every 3 s");

    ok(crest_config_set(&c, "CREST_QUEUES", " ping , media=ping,x.y-z_1 ", err,
                        sizeof(err)) == 0, "a list with blanks and an alias");
    is_int(c.nqueues, 3, "three queues");
    is_str(c.queues[1], "media", "queue name");
    is_str(c.processors[1], "ping", "its processor");
    is_str(c.processors[2], "x.y-z_1", "no alias: the queue's name");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ok(crest_config_set(&c, "queues", bad[i], err, sizeof(err)) != 0
           && strncmp(err, "queues: ", 8) == 0,
           "\"%s\" is refused: %s", bad[i], err);
    }

    ok(crest_config_set(&c, "CREST_QUEUES",
                        "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", err, sizeof(err))
       != 0, "at most 16 queues");

    ok(crest_config_set(&c, "CREST_CONCURRENCY", "0", err, sizeof(err)) != 0,
       "concurrency 0 is refused");
    ok(crest_config_set(&c, "CREST_CONCURRENCY", "257", err, sizeof(err)) != 0,
       "concurrency 257 is refused");
    ok(crest_config_set(&c, "concurrency", "50", err, sizeof(err)) == 0
       && c.concurrency == 50, "concurrency 50");
    ok(crest_config_set(&c, "CREST_LOCK_DURATION_MS", "999", err, sizeof(err))
       != 0, "a lock under a second is refused");
    ok(crest_config_set(&c, "CREST_OUTBOX_INTERVAL_MS", "0", err, sizeof(err))
       == 0 && c.outbox_interval_ms == 0, "outbox off");
    ok(crest_config_set(&c, "CREST_OUTBOX_INTERVAL_MS", "50", err, sizeof(err))
       != 0, "outbox every 50 ms is refused");
    ok(crest_config_set(&c, "CREST_MAX_STALLED_COUNT", "0", err, sizeof(err))
       == 0 && c.max_stalled_count == 0, "max stalled count 0");
}


static int64_t
libc_offset(const char *zone, int64_t utc_ms)
{
    struct tm  tm;
    time_t     t;

    setenv("TZ", zone, 1);
    tzset();
    t = (time_t) (utc_ms / 1000);
    localtime_r(&t, &tm);

    return (int64_t) tm.tm_gmtoff * 1000;
}


static void
test_tz(void)
{
    static const char  *zones[] = {
        "America/New_York", "Europe/Berlin", "Asia/Kolkata",
        "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham",
    };
    const crest_tz_t   *tz;
    int64_t             t, step, bad;
    char                err[256];
    size_t              i;

    for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        tz = crest_tz_get(zones[i], err, sizeof(err));
        ok(tz != NULL, "%s loads %s", zones[i], tz ? "" : err);
        if (tz == NULL) {
            continue;
        }

        ok(crest_tz_get(zones[i], err, sizeof(err)) == tz, "and is cached");

        /* every 6 hours from 1990 to 2036 */
        bad = 0;
        step = INT64_C(6) * 3600 * 1000;
        for (t = INT64_C(631152000000); t < INT64_C(2082758400000); t += step) {
            if (crest_tz_offset((void *) tz, t) != libc_offset(zones[i], t)) {
                if (!bad) {
                    diag("%s at %lld: %lld vs %lld", zones[i], (long long) t,
                         (long long) crest_tz_offset((void *) tz, t),
                         (long long) libc_offset(zones[i], t));
                }
                bad++;
            }
        }
        is_int(bad, 0, "%s: the offsets libc gives, 1990-2036", zones[i]);
    }

    ok(crest_tz_get("No/Such_Zone", err, sizeof(err)) == NULL,
       "an unknown zone: %s", err);
    ok(crest_tz_get("../etc/passwd", err, sizeof(err)) == NULL,
       "no path tricks: %s", err);
    ok(crest_tz_get("", err, sizeof(err)) == NULL, "no empty name");

    setenv("TZ", "UTC", 1);
    tzset();
    is_int(crest_tz_offset(NULL, 0), 0, "NULL: the process's zone (UTC)");
}


int
main(void)
{
    test_queues();
    test_tz();

    return done_testing();
}
