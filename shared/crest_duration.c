#include "crest_duration.h"


/* One "<digits>[.<digits>]<designator>" at *pp; 0 or -1. */
static int
crest_duration_field(const char **pp, const char *end, int frac_ok,
    int64_t *value, char *designator)
{
    const char  *p = *pp;
    int64_t      v = 0;
    int          digits = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        if (v > CREST_DURATION_MAX) {
            return -1;
        }
        v = v * 10 + (*p - '0');
        digits++;
        p++;
    }

    if (digits == 0) {
        return -1;
    }

    if (p < end && (*p == '.' || *p == ',')) {
        if (!frac_ok) {
            return -1;
        }
        p++;
        digits = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            digits++;
            p++;
        }
        if (digits == 0) {
            return -1;
        }
        if (p >= end || *p != 'S') {
            return -1;
        }
    }

    if (p >= end) {
        return -1;
    }

    *designator = *p++;
    *value = v;
    *pp = p;

    return 0;
}


int
crest_duration_parse(const char *s, size_t len, int64_t *secs)
{
    static const char     date_order[] = "WD";
    static const char     time_order[] = "HMS";
    static const int64_t  date_unit[] = { 604800, 86400 };
    static const int64_t  time_unit[] = { 3600, 60, 1 };
    const char           *p, *end, *o;
    int64_t               total = 0, v;
    int                   fields = 0, next = 0, in_time = 0, time_fields = 0;
    char                  d;

    if (s == NULL || len < 2 || s[0] != 'P') {
        return -1;
    }

    p = s + 1;
    end = s + len;

    while (p < end) {
        if (*p == 'T') {
            if (in_time) {
                return -1;
            }
            in_time = 1;
            next = 0;
            p++;
            if (p >= end) {
                return -1;              /* "T" with nothing after it */
            }
            continue;
        }

        if (crest_duration_field(&p, end, in_time, &v, &d) != 0) {
            return -1;
        }

        o = in_time ? time_order : date_order;

        while (o[next] && o[next] != d) {
            next++;
        }

        if (o[next] == '\0') {
            return -1;                  /* unknown, repeated or out of order */
        }

        v *= in_time ? time_unit[next] : date_unit[next];

        if (v > CREST_DURATION_MAX || total > CREST_DURATION_MAX - v) {
            return -1;
        }

        total += v;
        next++;
        fields++;
        time_fields += in_time;
    }

    if (fields == 0 || (in_time && time_fields == 0)) {
        return -1;
    }

    *secs = total;

    return 0;
}
