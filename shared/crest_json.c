#include <math.h>
#include <stdio.h>
#include <string.h>

#include "crest_json.h"


static const char  crest_hex[] = "0123456789abcdef";


void
crest_jw_init(crest_jw_t *w, crest_buf_t *b)
{
    w->b = b;
    w->depth = 0;
    w->after_key = 0;
    w->has_items = 0;
}


/* Writes the separator a new value needs at the current position. */
static void
crest_jw_value_prefix(crest_jw_t *w)
{
    uint64_t  bit;

    if (w->after_key) {
        w->after_key = 0;
        return;
    }

    if (w->depth == 0) {
        return;
    }

    bit = (uint64_t) 1 << (w->depth - 1);

    if (w->has_items & bit) {
        crest_buf_appendc(w->b, ',');
    }

    w->has_items |= bit;
}


static void
crest_jw_open(crest_jw_t *w, char c)
{
    crest_jw_value_prefix(w);
    crest_buf_appendc(w->b, c);

    if (w->depth >= CREST_JW_MAX_DEPTH) {
        /* deeper nesting than any response of ours: refuse the document */
        w->b->failed = 1;
        return;
    }

    w->depth++;
    w->has_items &= ~((uint64_t) 1 << (w->depth - 1));
}


static void
crest_jw_close(crest_jw_t *w, char c)
{
    if (w->depth == 0) {
        w->b->failed = 1;
        return;
    }

    w->depth--;
    crest_buf_appendc(w->b, c);
}


void
crest_jw_obj_begin(crest_jw_t *w)
{
    crest_jw_open(w, '{');
}


void
crest_jw_obj_end(crest_jw_t *w)
{
    crest_jw_close(w, '}');
}


void
crest_jw_arr_begin(crest_jw_t *w)
{
    crest_jw_open(w, '[');
}


void
crest_jw_arr_end(crest_jw_t *w)
{
    crest_jw_close(w, ']');
}


void
crest_jw_keyn(crest_jw_t *w, const char *key, size_t n)
{
    crest_jw_value_prefix(w);
    crest_json_escape(w->b, key, n);
    crest_buf_appendc(w->b, ':');
    w->after_key = 1;
}


void
crest_jw_key(crest_jw_t *w, const char *key)
{
    crest_jw_keyn(w, key, strlen(key));
}


void
crest_jw_strn(crest_jw_t *w, const char *s, size_t n)
{
    crest_jw_value_prefix(w);
    crest_json_escape(w->b, s, n);
}


void
crest_jw_str(crest_jw_t *w, const char *s)
{
    if (s == NULL) {
        crest_jw_null(w);
        return;
    }

    crest_jw_strn(w, s, strlen(s));
}


void
crest_jw_int(crest_jw_t *w, int64_t v)
{
    crest_jw_value_prefix(w);
    crest_buf_appendf(w->b, "%lld", (long long) v);
}


void
crest_jw_double(crest_jw_t *w, double v, int decimals)
{
    crest_jw_value_prefix(w);

    /* JSON has no NaN or infinity */
    if (!isfinite(v)) {
        crest_buf_appends(w->b, "null");
        return;
    }

    crest_buf_appendf(w->b, "%.*f", decimals, v);
}


void
crest_jw_bool(crest_jw_t *w, int v)
{
    crest_jw_value_prefix(w);
    crest_buf_appends(w->b, v ? "true" : "false");
}


void
crest_jw_null(crest_jw_t *w)
{
    crest_jw_value_prefix(w);
    crest_buf_appends(w->b, "null");
}


void
crest_jw_raw(crest_jw_t *w, const char *json, size_t n)
{
    crest_jw_value_prefix(w);
    crest_buf_append(w->b, json, n);
}


/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0 if it is not one.
 */
static size_t
crest_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char  c = p[0];

    if (c < 0x80) {
        return 1;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        return (n >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    }

    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) {
            return 0;
        }
        if (c == 0xe0 && p[1] < 0xa0) {
            return 0;
        }
        if (c == 0xed && p[1] >= 0xa0) {
            return 0;
        }
        return 3;
    }

    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
            || (p[3] & 0xc0) != 0x80)
        {
            return 0;
        }
        if (c == 0xf0 && p[1] < 0x90) {
            return 0;
        }
        if (c == 0xf4 && p[1] >= 0x90) {
            return 0;
        }
        return 4;
    }

    return 0;
}


void
crest_json_escape(crest_buf_t *b, const char *s, size_t n)
{
    const unsigned char  *p, *end, *run;
    size_t                k;
    char                  esc[6];

    crest_buf_appendc(b, '"');

    /* s may be NULL when n is 0, and NULL + 0 is undefined in C */
    if (n == 0) {
        crest_buf_appendc(b, '"');
        return;
    }

    p = (const unsigned char *) s;
    end = p + n;

    while (p < end) {
        run = p;

        /* copy the longest stretch that needs no escaping in one go */
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }

        crest_buf_append(b, run, (size_t) (p - run));

        if (p == end) {
            break;
        }

        if (*p >= 0x80) {
            k = crest_utf8_seq(p, (size_t) (end - p));

            if (k == 0) {
                crest_buf_append(b, "\xef\xbf\xbd", 3);
                p++;

            } else {
                crest_buf_append(b, p, k);
                p += k;
            }

            continue;
        }

        switch (*p) {
        case '"':
            crest_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            crest_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            crest_buf_append(b, "\\n", 2);
            break;
        case '\r':
            crest_buf_append(b, "\\r", 2);
            break;
        case '\t':
            crest_buf_append(b, "\\t", 2);
            break;
        default:
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = crest_hex[*p >> 4];
            esc[5] = crest_hex[*p & 0xf];
            crest_buf_append(b, esc, 6);
        }

        p++;
    }

    crest_buf_appendc(b, '"');
}
