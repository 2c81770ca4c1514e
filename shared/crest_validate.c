#include <string.h>

#include "crest_validate.h"


static int
crest_is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL;
}


static int
crest_domain_ok(const char *d, size_t len)
{
    size_t  i, label, labels;

    if (len == 0 || len > 253) {
        return 0;
    }

    label = 0;
    labels = 1;

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) d[i];

        if (c == '.') {
            /* no empty label, none ending in a hyphen */
            if (label == 0 || d[i - 1] == '-') {
                return 0;
            }
            label = 0;
            labels++;
            continue;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return 0;
        }

        if (c == '-' && label == 0) {
            return 0;
        }

        if (++label > 63) {
            return 0;
        }
    }

    return label > 0 && d[len - 1] != '-' && labels >= 2;
}


int
crest_email_normalize(const char *in, size_t len, char *out)
{
    size_t  i, at, n;

    while (len && (*in == ' ' || *in == '\t')) {
        in++;
        len--;
    }

    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t')) {
        len--;
    }

    if (len < 3 || len > CREST_EMAIL_MAX) {
        return -1;
    }

    at = len;

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) in[i];

        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char) (c - 'A' + 'a');
        }

        if (c == '@') {
            if (at != len) {
                return -1;
            }
            at = i;
        }

        out[i] = (char) c;
    }

    out[len] = '\0';

    if (at == len || at == 0 || at > 64) {
        return -1;
    }

    /* dot-atom: atext runs joined by single dots */
    for (i = 0; i < at; i++) {
        if (out[i] == '.') {
            if (i == 0 || i + 1 == at || out[i + 1] == '.') {
                return -1;
            }
            continue;
        }

        if (!crest_is_atext((unsigned char) out[i])) {
            return -1;
        }
    }

    n = len - at - 1;

    if (!crest_domain_ok(out + at + 1, n)) {
        return -1;
    }

    return (int) len;
}


int
crest_is_uuid(const char *s, size_t len)
{
    size_t  i;

    if (len != 36) {
        return 0;
    }

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }
            continue;
        }

        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


int
crest_is_clean_text(const char *s, size_t len)
{
    const unsigned char  *p = (const unsigned char *) s, *end = p + len;
    size_t                n, k;
    unsigned int          cp;

    while (p < end) {
        if (*p < 0x80) {
            if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
                return 0;
            }
            p++;
            continue;
        }

        if (*p >= 0xc2 && *p <= 0xdf) {
            n = 1;
            cp = *p & 0x1f;
        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 2;
            cp = *p & 0x0f;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 3;
            cp = *p & 0x07;
        } else {
            return 0;
        }

        if ((size_t) (end - p) <= n) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            if ((p[k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[k] & 0x3f);
        }

        /* overlong forms, surrogates, past U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)
            || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        {
            return 0;
        }

        p += n + 1;
    }

    return 1;
}
