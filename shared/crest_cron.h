/*
 * Cron patterns as BullMQ's job schedulers use them (cron-parser 5 syntax):
 *
 *   [second] minute hour day-of-month month day-of-week
 *
 * Five fields (seconds = 0) or six.  Each field is a comma list of "*" or
 * "?", N, N-M, with an optional "/step" ("*" + "/step", N + "/step" runs to
 * the field's maximum).  Months take JAN-DEC, weekdays SUN-SAT (0 and 7 are
 * Sunday).  Day of month also takes "L" (the last day), day of week "NL"
 * (the last such weekday of the month) and "N#K" (its K-th occurrence,
 * K = 1..5).  When both day fields are restricted, a day matches either, as
 * in Vixie cron.  Predefined: @yearly @monthly @weekly @daily @hourly
 * @minutely @secondly @weekdays @weekends.  Not supported: "H" (hashed
 * values), "W", and "L" alone in day of week.
 *
 * Parsing and iterating never allocate.
 */
#ifndef CREST_CRON_H
#define CREST_CRON_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t  sec;          /* bit n: second n */
    uint64_t  min;
    uint32_t  hour;
    uint32_t  dom;          /* bit n: day n (1..31) */
    uint32_t  month;        /* bit n: month n (1..12) */
    uint8_t   dow;          /* bit n: weekday n (0 = Sunday) */
    uint8_t   dow_last;     /* "NL": bit n */
    uint8_t   dow_nth[7];   /* "N#K": bit K-1 of dow_nth[N] */
    uint8_t   dom_last;     /* "L" in day of month */
    uint8_t   dom_star;     /* day of month unrestricted ("*" or "?") */
    uint8_t   dow_star;
} crest_cron_t;

/*
 * The local time's offset from UTC, in milliseconds, at UTC time utc_ms
 * (tm_gmtoff * 1000).  NULL means UTC.
 */
typedef int64_t (*crest_cron_offset_fn)(void *ctx, int64_t utc_ms);

/* 0, or -1 with a one-line message in err. */
int crest_cron_parse(crest_cron_t *c, const char *expr, size_t len,
    char *err, size_t errlen);

/*
 * The first time matching c strictly after after_ms, in ms since the epoch
 * (a whole second), with the pattern read in the local time off gives.  A
 * local time skipped by a DST change fires at the same wall clock time of
 * the offset before it, one repeated by it fires the first time.  -1 if
 * nothing matches within 10 years (e.g. "0 0 30 2 *").
 */
int64_t crest_cron_next(const crest_cron_t *c, int64_t after_ms,
    crest_cron_offset_fn off, void *ctx);

#endif /* CREST_CRON_H */
