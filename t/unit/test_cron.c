/*
 * Unit tests for shared/crest_cron.c.  The expected times are what
 * cron-parser 5.10.3 (BullMQ 6.7.0's) gives for the same pattern, start and
 * time zone.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crest_cron.h"
#include "tap.h"


/* "2026-01-01T00:00:00.000Z" -> ms */
static int64_t
iso(const char *s)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));
    strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

    return (int64_t) timegm(&tm) * 1000 + atoi(s + 20);
}


static const char *
fmt(int64_t ms)
{
    static char  buf[64];
    struct tm    tm;
    time_t       t;

    if (ms < 0) {
        return "none";
    }

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%03dZ",
             (int) (ms % 1000));

    return buf;
}


static int64_t
tz_offset(void *ctx, int64_t utc_ms)
{
    struct tm  tm;
    time_t     t;

    setenv("TZ", (const char *) ctx, 1);
    tzset();
    t = (time_t) (utc_ms >= 0 ? utc_ms / 1000 : -((-utc_ms + 999) / 1000));
    localtime_r(&t, &tm);

    return (int64_t) tm.tm_gmtoff * 1000;
}


static void
test_next(void)
{
    static const struct {
        const char  *pattern, *start, *tz, *first, *second;
    } cases[] = {
        { "*/5 * * * *", "2026-01-01T00:00:00.000Z", NULL,
          "2026-01-01T00:05:00.000Z", "2026-01-01T00:10:00.000Z" },
        { "*/5 * * * *", "2026-01-01T00:00:00.500Z", NULL,
          "2026-01-01T00:05:00.000Z", "2026-01-01T00:10:00.000Z" },
        { "0 * * * *", "2026-01-01T00:00:00.000Z", NULL,
          "2026-01-01T01:00:00.000Z", "2026-01-01T02:00:00.000Z" },
        { "* * * * * *", "2026-01-01T00:00:00.000Z", NULL,
          "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z" },
        { "0 0 L * *", "2026-02-10T00:00:00.000Z", NULL,
          "2026-02-28T00:00:00.000Z", "2026-03-31T00:00:00.000Z" },
        { "0 0 * * 5L", "2026-02-10T00:00:00.000Z", NULL,
          "2026-02-27T00:00:00.000Z", "2026-03-27T00:00:00.000Z" },
        { "0 0 * * 1#2", "2026-02-10T00:00:00.000Z", NULL,
          "2026-03-09T00:00:00.000Z", "2026-04-13T00:00:00.000Z" },
        { "0 0 13 * 5", "2026-02-10T00:00:00.000Z", NULL,
          "2026-02-13T00:00:00.000Z", "2026-02-20T00:00:00.000Z" },
        { "0 0 1,15 * MON", "2026-02-10T00:00:00.000Z", NULL,
          "2026-02-15T00:00:00.000Z", "2026-02-16T00:00:00.000Z" },
        { "30 9 * JAN-MAR SUN", "2026-02-10T00:00:00.000Z", NULL,
          "2026-02-15T09:30:00.000Z", "2026-02-22T09:30:00.000Z" },
        { "0 0 29 2 *", "2026-03-01T00:00:00.000Z", NULL,
          "2028-02-29T00:00:00.000Z", "2032-02-29T00:00:00.000Z" },
        { "0 0 * * 7", "2026-02-10T00:00:00.000Z", NULL,
          "2026-02-15T00:00:00.000Z", "2026-02-22T00:00:00.000Z" },
        { "@daily", "2026-02-10T10:00:00.000Z", NULL,
          "2026-02-11T00:00:00.000Z", "2026-02-12T00:00:00.000Z" },
        { "5-10/2 * * * *", "2026-02-10T10:07:00.000Z", NULL,
          "2026-02-10T10:09:00.000Z", "2026-02-10T11:05:00.000Z" },
        { "0 0 31 * *", "2026-04-01T00:00:00.000Z", NULL,
          "2026-05-31T00:00:00.000Z", "2026-07-31T00:00:00.000Z" },
        { "10/20 * * * * *", "2026-04-01T00:00:00.000Z", NULL,
          "2026-04-01T00:00:10.000Z", "2026-04-01T00:00:30.000Z" },
        { "* * * * 0-7", "2026-04-01T00:00:00.000Z", NULL,
          "2026-04-01T00:01:00.000Z", "2026-04-01T00:02:00.000Z" },
        { "0 12 * * *", "2026-03-08T00:00:00.000Z", "America/New_York",
          "2026-03-08T16:00:00.000Z", "2026-03-09T16:00:00.000Z" },
        /* 02:00 does not exist that day: 07:00Z is 03:00 EDT */
        { "0 2 * * *", "2026-03-08T00:00:00.000Z", "America/New_York",
          "2026-03-08T07:00:00.000Z", "2026-03-09T06:00:00.000Z" },
        /* 01:00 happens twice: the first */
        { "0 1 * * *", "2026-11-01T00:00:00.000Z", "America/New_York",
          "2026-11-01T05:00:00.000Z", "2026-11-02T06:00:00.000Z" },
        { "30 2 * * *", "2026-10-24T12:00:00.000Z", "Europe/Berlin",
          "2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z" },
        { "0 0 9 * * 1-5", "2026-02-13T12:00:00.000Z", "Asia/Kolkata",
          "2026-02-16T03:30:00.000Z", "2026-02-17T03:30:00.000Z" },
    };
    crest_cron_t  c;
    int64_t       a, b;
    char          err[256], first[64];
    size_t        i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        ok(crest_cron_parse(&c, cases[i].pattern, strlen(cases[i].pattern),
                            err, sizeof(err)) == 0,
           "\"%s\" parses %s", cases[i].pattern, err);

        a = crest_cron_next(&c, iso(cases[i].start),
                            cases[i].tz ? tz_offset : NULL,
                            (void *) cases[i].tz);
        snprintf(first, sizeof(first), "%s", fmt(a));
        is_str(first, cases[i].first, "\"%s\" from %s %s", cases[i].pattern,
               cases[i].start, cases[i].tz ? cases[i].tz : "UTC");

        b = crest_cron_next(&c, a, cases[i].tz ? tz_offset : NULL,
                            (void *) cases[i].tz);
        is_str(fmt(b), cases[i].second, "\"%s\" then", cases[i].pattern);
    }

    crest_cron_parse(&c, "0 0 30 2 *", 10, err, sizeof(err));
    is_int(crest_cron_next(&c, iso("2026-01-01T00:00:00.000Z"), NULL, NULL),
           -1, "February 30th never comes");
}


static void
test_errors(void)
{
    static const char  *bad[] = {
        "", "* * * *", "* * * * * * *", "60 * * * *", "* * 32 * *",
        "* * * 13 *", "* * * * 8", "a * * * *", "*/0 * * * *",
        "5-1 * * * *", "1- * * * *", "* * * * 1#6", "* * * * L",
        "H * * * *", "@often", "1,,2 * * * *", "* * * * MON-", "1/ * * * *",
        "0 0 L5 * *", "* * * * 1L2", "1234 * * * *", "* * * \x01 *",
    };
    crest_cron_t  c;
    char          err[256];
    size_t        i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ok(crest_cron_parse(&c, bad[i], strlen(bad[i]), err, sizeof(err))
           == -1 && err[0], "\"%s\" is refused: %s", bad[i], err);
    }

    ok(crest_cron_parse(&c, "  0 12 * * ?  ", 14, err, sizeof(err)) == 0,
       "blanks around fields and ? are fine");
    ok(crest_cron_parse(&c, "@WEEKDAYS", 9, err, sizeof(err)) == 0,
       "macros ignore case");
    ok(c.dow == 0x3e, "@weekdays is Monday to Friday");
}


int
main(void)
{
    test_next();
    test_errors();

    return done_testing();
}
