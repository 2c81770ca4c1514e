/*
 * See crest_xml.h.  Everything is bounded by n: the input need not be
 * NUL-terminated and may stop anywhere.
 */
#include <string.h>

#include "crest_xml.h"


/* Where the construct starting at p ("<!--", "<?", "<![CDATA[", "<!")
 * ends, just past it; NULL if it does not end before e. */
static const char *
crest_xml_skip(const char *p, const char *e)
{
    const char  *close;
    size_t       clen, skip;

    if (e - p >= 4 && memcmp(p, "<!--", 4) == 0) {
        close = "-->"; clen = 3; skip = 4;
    } else if (e - p >= 9 && memcmp(p, "<![CDATA[", 9) == 0) {
        close = "]]>"; clen = 3; skip = 9;
    } else if (e - p >= 2 && p[1] == '?') {
        close = "?>"; clen = 2; skip = 2;
    } else {
        close = ">"; clen = 1; skip = 2;            /* <!DOCTYPE ...> */
    }

    for (p += skip; (size_t) (e - p) >= clen; p++) {
        if (memcmp(p, close, clen) == 0) {
            return p + clen;
        }
    }

    return NULL;
}


static int
crest_xml_name_end(char c)
{
    return c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r'
           || c == '\n';
}


/* Decodes the reference at p (just past '&') into *c; its end or NULL. */
static const char *
crest_xml_ref(const char *p, const char *e, char *c)
{
    static const struct { const char *name; size_t len; char c; } ents[] = {
        { "amp;", 4, '&' }, { "lt;", 3, '<' }, { "gt;", 3, '>' },
        { "quot;", 5, '"' }, { "apos;", 5, '\'' }
    };
    unsigned long  v = 0;
    unsigned       i, digits = 0;
    int            hex;

    for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
        if ((size_t) (e - p) >= ents[i].len
            && memcmp(p, ents[i].name, ents[i].len) == 0)
        {
            *c = ents[i].c;
            return p + ents[i].len;
        }
    }

    if (p >= e || *p != '#') {
        return NULL;
    }
    p++;
    hex = p < e && *p == 'x';
    p += hex;

    for ( ; p < e && *p != ';'; p++, digits++) {
        if (*p >= '0' && *p <= '9') {
            v = v * (hex ? 16 : 10) + (unsigned long) (*p - '0');
        } else if (hex && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')) {
            v = v * 16 + (unsigned long) ((*p | 0x20) - 'a' + 10);
        } else {
            return NULL;
        }
        if (v >= 0x80 || digits > 8) {
            return NULL;                /* only ASCII: no encoding to do */
        }
    }

    if (p >= e || digits == 0 || v == 0) {
        return NULL;
    }
    *c = (char) v;

    return p + 1;
}


long
crest_xml_text(const char *xml, size_t n, const char *name, char *out,
    size_t outlen)
{
    const char  *p = xml, *e = xml + n, *t;
    size_t       nlen = strlen(name), len = 0;
    char         c;

    if (nlen == 0 || outlen == 0) {
        return -2;
    }

    while (p < e) {
        if (*p != '<') {
            p++;
            continue;
        }

        if (e - p >= 2 && (p[1] == '!' || p[1] == '?')) {
            p = crest_xml_skip(p, e);
            if (p == NULL) {
                return -1;
            }
            continue;
        }

        if ((size_t) (e - p) <= nlen + 1 || memcmp(p + 1, name, nlen) != 0
            || !crest_xml_name_end(p[1 + nlen]))
        {
            p++;
            continue;
        }

        /* the start tag: attributes are skipped, quotes honoured */
        for (t = p + 1 + nlen; t < e && *t != '>'; t++) {
            if (*t == '"' || *t == '\'') {
                c = *t;
                t = memchr(t + 1, c, (size_t) (e - t - 1));
                if (t == NULL) {
                    return -2;
                }
            }
        }
        if (t >= e) {
            return -2;
        }
        if (t[-1] == '/') {
            out[0] = '\0';                      /* <name/> */
            return 0;
        }

        for (p = t + 1; p < e && *p != '<'; p++) {
            c = *p;
            if (c == '\0') {
                return -2;          /* would cut the C string short */
            }
            if (c == '&') {
                p = crest_xml_ref(p + 1, e, &c);
                if (p == NULL) {
                    return -2;
                }
                p--;
            }
            if (len + 1 >= outlen) {
                return -2;
            }
            out[len++] = c;
        }

        if ((size_t) (e - p) < nlen + 3 || memcmp(p, "</", 2) != 0
            || memcmp(p + 2, name, nlen) != 0)
        {
            return -2;
        }
        for (t = p + 2 + nlen; t < e && (*t == ' ' || *t == '\t'
                                         || *t == '\r' || *t == '\n'); t++)
        { }
        if (t >= e || *t != '>') {
            return -2;
        }

        out[len] = '\0';
        return (long) len;
    }

    return -1;
}
