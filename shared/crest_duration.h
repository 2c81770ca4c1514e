/*
 * ISO-8601 durations as the video APIs give them (YouTube's
 * contentDetails.duration: "PT4M13S", "P1DT2H", "PT0S", "P0D").
 *
 * Accepted: "P" [n "W"] [n "D"] ["T" [n "H"] [n "M"] [n["." digits] "S"]],
 * designators in that order, each at most once, at least one of them, and
 * a "T" only when a time part follows.  Fractions of a second are
 * truncated.  Years and months are refused: their length in seconds
 * depends on the calendar.  Lower-case letters are refused too, as is any
 * sign or space.
 */
#ifndef CREST_DURATION_H
#define CREST_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* The longest duration accepted, in seconds (about 317 years). */
#define CREST_DURATION_MAX  INT64_C(10000000000)

/* 0 and *secs, or -1 (malformed, years/months, or over the maximum). */
int crest_duration_parse(const char *s, size_t len, int64_t *secs);

#endif /* CREST_DURATION_H */
