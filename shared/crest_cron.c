#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crest_cron.h"


typedef enum {
    CREST_CRON_SEC = 0, CREST_CRON_MIN, CREST_CRON_HOUR, CREST_CRON_DOM,
    CREST_CRON_MONTH, CREST_CRON_DOW
} crest_cron_field_t;

static const struct {
    const char  *name;
    unsigned     min, max;
} crest_cron_fields[] = {
    { "second", 0, 59 }, { "minute", 0, 59 }, { "hour", 0, 23 },
    { "day of month", 1, 31 }, { "month", 1, 12 }, { "day of week", 0, 7 },
};

static const char  *crest_cron_months[] = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
    "NOV", "DEC"
};

static const char  *crest_cron_days[] = {
    "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"
};

static const struct {
    const char  *name;
    const char  *expr;
} crest_cron_macros[] = {
    { "@yearly", "0 0 0 1 1 *" }, { "@monthly", "0 0 0 1 * *" },
    { "@weekly", "0 0 0 * * 0" }, { "@daily", "0 0 0 * * *" },
    { "@hourly", "0 0 * * * *" }, { "@minutely", "0 * * * * *" },
    { "@secondly", "* * * * * *" }, { "@weekdays", "0 0 0 * * 1-5" },
    { "@weekends", "0 0 0 * * 0,6" },
};


/* A number or (months, weekdays) a name; advances *p.  -1 if none. */
static int
crest_cron_value(const char **p, const char *end, crest_cron_field_t f,
    unsigned *out)
{
    const char  *s;
    unsigned     v, i, n;

    s = *p;

    if (s < end && s[0] >= '0' && s[0] <= '9') {
        v = 0;
        n = 0;

        while (s < end && *s >= '0' && *s <= '9') {
            if (++n > 3) {
                return -1;
            }
            v = v * 10 + (unsigned) (*s++ - '0');
        }

        *p = s;
        *out = v;
        return 0;
    }

    if (end - s >= 3 && (f == CREST_CRON_MONTH || f == CREST_CRON_DOW)) {
        n = f == CREST_CRON_MONTH ? 12 : 7;

        for (i = 0; i < n; i++) {
            if (strncasecmp(s, f == CREST_CRON_MONTH ? crest_cron_months[i]
                                                     : crest_cron_days[i],
                            3) == 0)
            {
                *p = s + 3;
                *out = f == CREST_CRON_MONTH ? i + 1 : i;
                return 0;
            }
        }
    }

    return -1;
}


static void
crest_cron_set(crest_cron_t *c, crest_cron_field_t f, unsigned v)
{
    switch (f) {
    case CREST_CRON_SEC:
        c->sec |= UINT64_C(1) << v;
        break;
    case CREST_CRON_MIN:
        c->min |= UINT64_C(1) << v;
        break;
    case CREST_CRON_HOUR:
        c->hour |= UINT32_C(1) << v;
        break;
    case CREST_CRON_DOM:
        c->dom |= UINT32_C(1) << v;
        break;
    case CREST_CRON_MONTH:
        c->month |= UINT32_C(1) << v;
        break;
    case CREST_CRON_DOW:
        c->dow |= (uint8_t) (1u << (v % 7));
        break;
    }
}


static int
crest_cron_item(crest_cron_t *c, crest_cron_field_t f, const char *s,
    const char *end, char *err, size_t errlen)
{
    const char  *p, *name;
    unsigned     lo, hi, step, v, k, min, max;
    int          star;

    name = crest_cron_fields[f].name;
    min = crest_cron_fields[f].min;
    max = crest_cron_fields[f].max;
    p = s;

    if (f == CREST_CRON_DOM && end - p == 1 && *p == 'L') {
        c->dom_last = 1;
        return 0;
    }

    star = 0;

    if (p < end && (*p == '*' || *p == '?')) {
        star = 1;
        lo = min;
        hi = max;
        p++;

    } else {
        if (crest_cron_value(&p, end, f, &lo) != 0) {
            goto bad;
        }

        if (lo < min || lo > max) {
            snprintf(err, errlen, "%s: %u is out of range %u-%u", name, lo,
                     min, max);
            return -1;
        }

        hi = lo;

        if (f == CREST_CRON_DOW && p < end && *p == 'L') {
            if (p + 1 != end) {
                goto bad;
            }
            c->dow_last |= (uint8_t) (1u << (lo % 7));
            return 0;
        }

        if (f == CREST_CRON_DOW && p < end && *p == '#') {
            p++;
            if (crest_cron_value(&p, end, CREST_CRON_SEC, &k) != 0
                || p != end || k < 1 || k > 5)
            {
                snprintf(err, errlen, "%s: \"#\" takes 1 to 5", name);
                return -1;
            }
            c->dow_nth[lo % 7] |= (uint8_t) (1u << (k - 1));
            return 0;
        }

        if (p < end && *p == '-') {
            p++;
            if (crest_cron_value(&p, end, f, &hi) != 0) {
                goto bad;
            }
            if (hi < min || hi > max) {
                snprintf(err, errlen, "%s: %u is out of range %u-%u", name,
                         hi, min, max);
                return -1;
            }
            if (hi < lo) {
                snprintf(err, errlen, "%s: range %u-%u runs backwards", name,
                         lo, hi);
                return -1;
            }
        }
    }

    step = 1;

    if (p < end && *p == '/') {
        p++;
        if (crest_cron_value(&p, end, CREST_CRON_SEC, &step) != 0) {
            goto bad;
        }
        if (step == 0) {
            snprintf(err, errlen, "%s: a step of 0", name);
            return -1;
        }
        /* "N/step" runs from N to the end of the field */
        if (!star && hi == lo) {
            hi = max;
        }
    }

    if (p != end) {
        goto bad;
    }

    for (v = lo; v <= hi; v += step) {
        crest_cron_set(c, f, v);
    }

    return 0;

bad:

    snprintf(err, errlen, "%s: cannot read \"%.*s\"", name,
             (int) (end - s > 32 ? 32 : end - s), s);

    return -1;
}


static int
crest_cron_field(crest_cron_t *c, crest_cron_field_t f, const char *s,
    const char *end, char *err, size_t errlen)
{
    const char  *comma;

    if ((f == CREST_CRON_DOM || f == CREST_CRON_DOW) && end - s == 1
        && (*s == '*' || *s == '?'))
    {
        if (f == CREST_CRON_DOM) {
            c->dom_star = 1;
        } else {
            c->dow_star = 1;
        }
    }

    for ( ;; ) {
        comma = memchr(s, ',', (size_t) (end - s));

        if (crest_cron_item(c, f, s, comma ? comma : end, err, errlen) != 0)
        {
            return -1;
        }

        if (comma == NULL) {
            return 0;
        }

        s = comma + 1;
    }
}


int
crest_cron_parse(crest_cron_t *c, const char *expr, size_t len, char *err,
    size_t errlen)
{
    const char  *p, *end, *start[7], *stop[7];
    unsigned     n, i, first;
    size_t       k;

    memset(c, 0, sizeof(*c));

    p = expr;
    end = expr + len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (p < end && *p == '@') {
        for (k = 0; k < sizeof(crest_cron_macros) / sizeof(crest_cron_macros[0]);
             k++)
        {
            if ((size_t) (end - p) == strlen(crest_cron_macros[k].name)
                && strncasecmp(p, crest_cron_macros[k].name,
                               (size_t) (end - p)) == 0)
            {
                return crest_cron_parse(c, crest_cron_macros[k].expr,
                                        strlen(crest_cron_macros[k].expr),
                                        err, errlen);
            }
        }

        snprintf(err, errlen, "unknown macro \"%.*s\"",
                 (int) (end - p > 32 ? 32 : end - p), p);
        return -1;
    }

    n = 0;

    while (p < end) {
        if (n == 7) {
            break;
        }

        start[n] = p;
        while (p < end && *p != ' ' && *p != '\t') {
            if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e) {
                snprintf(err, errlen, "invalid character in pattern");
                return -1;
            }
            p++;
        }
        stop[n++] = p;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
    }

    if (n < 5 || n > 6) {
        snprintf(err, errlen, "expected 5 or 6 fields, got %s%u",
                 n > 6 ? "more than " : "", n > 6 ? 6 : n);
        return -1;
    }

    /* five fields: seconds are 0 */
    first = n == 6 ? CREST_CRON_SEC : CREST_CRON_MIN;

    if (n == 5) {
        c->sec = 1;
    }

    for (i = 0; i < n; i++) {
        if (crest_cron_field(c, (crest_cron_field_t) (first + i), start[i],
                             stop[i], err, errlen) != 0)
        {
            return -1;
        }
    }

    return 0;
}


/* ---- civil dates (proleptic Gregorian), days since 1970-01-01 ---------- */

static int64_t
crest_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t   era;
    unsigned  yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}


static void
crest_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t   era;
    unsigned  doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned) (z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    *y = (int64_t) yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y += *m <= 2;
}


static unsigned
crest_days_in_month(int64_t y, unsigned m)
{
    static const unsigned  dim[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return 29;
    }

    return dim[m - 1];
}


static int64_t
crest_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}


static int
crest_cron_day_matches(const crest_cron_t *c, int64_t y, unsigned m,
    unsigned d, unsigned wd)
{
    unsigned  dim;
    int       dom, dow;

    dim = crest_days_in_month(y, m);

    dom = (c->dom >> d & 1) || (c->dom_last && d == dim);
    dow = (c->dow >> wd & 1) || ((c->dow_last >> wd & 1) && d + 7 > dim)
          || (c->dow_nth[wd] >> ((d - 1) / 7) & 1);

    if (c->dom_star && c->dow_star) {
        return 1;
    }

    if (c->dom_star) {
        return dow;
    }

    if (c->dow_star) {
        return dom;
    }

    return dom || dow;
}


/* The first local second >= t (seconds, local time as if UTC) matching c,
 * or -1 past limit. */
static int64_t
crest_cron_search(const crest_cron_t *c, int64_t t, int64_t limit)
{
    int64_t   days, y, sod;
    unsigned  m, d, wd, h, mi, s;

    while (t <= limit) {
        days = crest_floor_div(t, 86400);
        sod = t - days * 86400;
        crest_civil_from_days(days, &y, &m, &d);

        if (!(c->month >> m & 1)) {
            /* the first day of the next month */
            t = crest_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1,
                                      1) * 86400;
            continue;
        }

        wd = (unsigned) ((days % 7 + 11) % 7);     /* 1970-01-01: Thursday */

        if (!crest_cron_day_matches(c, y, m, d, wd)) {
            t = (days + 1) * 86400;
            continue;
        }

        h = (unsigned) (sod / 3600);
        mi = (unsigned) (sod / 60 % 60);
        s = (unsigned) (sod % 60);

        if (!(c->hour >> h & 1)) {
            t = days * 86400 + (int64_t) (h + 1) * 3600;
            continue;
        }

        if (!(c->min >> mi & 1)) {
            t = days * 86400 + (int64_t) h * 3600 + (int64_t) (mi + 1) * 60;
            continue;
        }

        if (!(c->sec >> s & 1)) {
            t++;
            continue;
        }

        return t;
    }

    return -1;
}


/* The UTC second of local second l: the earliest whose offset agrees, or
 * in a gap the one the offset before the change gives. */
static int64_t
crest_cron_to_utc(int64_t l, crest_cron_offset_fn off, void *ctx)
{
    int64_t   cand[3], u, best;
    unsigned  i;

    if (off == NULL) {
        return l;
    }

    cand[0] = off(ctx, (l - 86400) * 1000) / 1000;
    cand[1] = off(ctx, l * 1000) / 1000;
    cand[2] = off(ctx, (l + 86400) * 1000) / 1000;

    best = INT64_MAX;

    for (i = 0; i < 3; i++) {
        u = l - cand[i];
        if (off(ctx, u * 1000) / 1000 == cand[i] && u < best) {
            best = u;
        }
    }

    return best != INT64_MAX ? best : l - cand[0];
}


int64_t
crest_cron_next(const crest_cron_t *c, int64_t after_ms,
    crest_cron_offset_fn off, void *ctx)
{
    int64_t  after_s, l, limit, u;

    if (c->sec == 0 || c->min == 0 || c->hour == 0 || c->month == 0) {
        return -1;
    }

    after_s = crest_floor_div(after_ms, 1000);
    l = after_s + (off ? off(ctx, after_s * 1000) / 1000 : 0) + 1;
    limit = l + INT64_C(86400) * 366 * 10;

    for ( ;; ) {
        l = crest_cron_search(c, l, limit);

        if (l < 0) {
            return -1;
        }

        u = crest_cron_to_utc(l, off, ctx);

        /* around a DST change a local time may map to the past */
        if (u * 1000 > after_ms) {
            return u * 1000;
        }

        l++;
    }
}
