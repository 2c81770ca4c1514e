/*
 * URL safety checks: see crest_urlsafe.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "crest_urlsafe.h"


#define ERR(...)  do { if (errlen) snprintf(err, errlen, __VA_ARGS__); \
                       return -1; } while (0)


typedef struct {
    uint8_t      net[4];
    unsigned     bits;
    const char  *what;
} v4_range_t;

typedef struct {
    uint8_t      net[16];
    unsigned     bits;
    const char  *what;
} v6_range_t;


static const v4_range_t  v4_ranges[] = {
    { {   0,   0,   0,   0 },  8, "unspecified" },
    { {  10,   0,   0,   0 },  8, "private" },
    { { 100,  64,   0,   0 }, 10, "cgnat" },
    { { 127,   0,   0,   0 },  8, "loopback" },
    { { 169, 254,   0,   0 }, 16, "link-local" },
    { { 172,  16,   0,   0 }, 12, "private" },
    { { 192,   0,   0,   0 }, 24, "reserved" },
    { { 192,   0,   2,   0 }, 24, "documentation" },
    { { 192,  88,  99,   0 }, 24, "reserved" },
    { { 192, 168,   0,   0 }, 16, "private" },
    { { 198,  18,   0,   0 }, 15, "benchmarking" },
    { { 198,  51, 100,   0 }, 24, "documentation" },
    { { 203,   0, 113,   0 }, 24, "documentation" },
    { { 224,   0,   0,   0 },  4, "multicast" },
    { { 240,   0,   0,   0 },  4, "reserved" },   /* and 255.255.255.255 */
};

/* The IPv4-carrying prefixes are handled before this table. */
static const v6_range_t  v6_ranges[] = {
    { { 0x01, 0x00, 0, 0, 0, 0, 0, 0 }, 64, "discard" },
    { { 0x20, 0x01, 0x00, 0x00 }, 32, "teredo" },
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32, "documentation" },
    { { 0x20, 0x01, 0x00, 0x10 }, 28, "reserved" },         /* ORCHID */
    { { 0x20, 0x01, 0x00, 0x20 }, 28, "reserved" },         /* ORCHIDv2 */
    { { 0xfc }, 7, "private" },              /* ULA, incl. fd00:ec2::254 */
    { { 0xfe, 0x80 }, 10, "link-local" },
    { { 0xfe, 0xc0 }, 10, "site-local" },
    { { 0xff }, 8, "multicast" },
};


static int
prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned  full = bits / 8, rest = bits % 8;
    uint8_t   mask;

    if (memcmp(a, net, full) != 0) {
        return 0;
    }

    if (rest == 0) {
        return 1;
    }

    mask = (uint8_t) (0xff << (8 - rest));

    return (a[full] & mask) == (net[full] & mask);
}


static const char *
v4_class(const uint8_t *a)
{
    size_t  i;

    for (i = 0; i < sizeof(v4_ranges) / sizeof(v4_ranges[0]); i++) {
        if (prefix_match(a, v4_ranges[i].net, v4_ranges[i].bits)) {
            return v4_ranges[i].what;
        }
    }

    return NULL;
}


/* The IPv4 address an IPv6 address stands for, if any: 1 and v4 filled. */
static int
v6_embedded_v4(const uint8_t *a, uint8_t *v4)
{
    static const uint8_t  mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
    static const uint8_t  compat[12] = { 0 };
    static const uint8_t  nat64[12] = { 0x00,0x64,0xff,0x9b,0,0,0,0,0,0,0,0 };

    if (memcmp(a, mapped, 12) == 0 || memcmp(a, compat, 12) == 0
        || memcmp(a, nat64, 12) == 0)
    {
        memcpy(v4, a + 12, 4);
        return 1;
    }

    if (a[0] == 0x20 && a[1] == 0x02) {     /* 6to4: 2002:AABB:CCDD::/48 */
        memcpy(v4, a + 2, 4);
        return 1;
    }

    return 0;
}


const char *
crest_urlsafe_addr_class(int family, const uint8_t *a)
{
    static const uint8_t  zero[16] = { 0 };
    uint8_t               v4[4];
    const char           *c;
    size_t                i;

    if (family == AF_INET) {
        return v4_class(a);
    }

    if (family != AF_INET6) {
        return "not an IP address";
    }

    if (memcmp(a, zero, 16) == 0) {
        return "unspecified";
    }

    if (memcmp(a, zero, 15) == 0 && a[15] == 1) {
        return "loopback";
    }

    if (v6_embedded_v4(a, v4)) {
        c = v4_class(v4);
        /* v4-compatible ::a.b.c.d is deprecated: refuse it outright */
        if (c == NULL && memcmp(a, zero, 12) == 0) {
            return "reserved";
        }
        return c;
    }

    for (i = 0; i < sizeof(v6_ranges) / sizeof(v6_ranges[0]); i++) {
        if (prefix_match(a, v6_ranges[i].net, v6_ranges[i].bits)) {
            return v6_ranges[i].what;
        }
    }

    return NULL;
}


/*
 * Walks the allow-list; with addr NULL it only validates.  1 on a match,
 * 0 on none, -1 on a malformed entry.
 */
static int
allow_walk(const char *allow, int family, const uint8_t *addr, char *err,
    size_t errlen)
{
    const char  *p, *e, *slash;
    char         tok[80], ip[64];
    uint8_t      net[16], v4[4];
    size_t       n, iplen;
    long         bits;
    int          fam, maxbits;
    char        *end;

    if (allow == NULL) {
        return 0;
    }

    for (p = allow; *p; p = *e ? e + 1 : e) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }

        e = strchr(p, ',');
        if (e == NULL) {
            e = p + strlen(p);
        }

        n = (size_t) (e - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }

        if (n == 0) {
            continue;
        }

        if (n >= sizeof(tok)) {
            ERR("allow-list entry too long");
        }

        memcpy(tok, p, n);
        tok[n] = '\0';

        slash = strchr(tok, '/');
        iplen = slash ? (size_t) (slash - tok) : n;
        if (iplen == 0 || iplen >= sizeof(ip)) {
            ERR("allow-list entry \"%s\" is not an address", tok);
        }
        memcpy(ip, tok, iplen);
        ip[iplen] = '\0';

        if (inet_pton(AF_INET, ip, net) == 1) {
            fam = AF_INET;
            maxbits = 32;
        } else if (inet_pton(AF_INET6, ip, net) == 1) {
            fam = AF_INET6;
            maxbits = 128;
        } else {
            ERR("allow-list entry \"%s\" is not an address", tok);
        }

        bits = maxbits;
        if (slash) {
            if (!isdigit((unsigned char) slash[1])) {
                ERR("allow-list entry \"%s\": bad prefix length", tok);
            }
            bits = strtol(slash + 1, &end, 10);
            if (*end != '\0' || bits < 0 || bits > maxbits) {
                ERR("allow-list entry \"%s\": bad prefix length", tok);
            }
        }

        if (addr == NULL) {
            continue;
        }

        if (fam == family && prefix_match(addr, net, (unsigned) bits)) {
            return 1;
        }

        /* an IPv4 entry also admits the v4-mapped form */
        if (fam == AF_INET && family == AF_INET6
            && v6_embedded_v4(addr, v4) && addr[10] == 0xff
            && prefix_match(v4, net, (unsigned) bits))
        {
            return 1;
        }
    }

    return 0;
}


int
crest_urlsafe_allowed(const char *allow, int family, const uint8_t *addr)
{
    return allow_walk(allow, family, addr, NULL, 0);
}


int
crest_urlsafe_allow_valid(const char *allow, char *err, size_t errlen)
{
    return allow_walk(allow, 0, NULL, err, errlen) < 0 ? -1 : 0;
}


const char *
crest_urlsafe_addr_check(int family, const uint8_t *addr, const char *allow)
{
    const char  *c;
    int          rc;

    c = crest_urlsafe_addr_class(family, addr);
    if (c == NULL) {
        return NULL;
    }

    rc = crest_urlsafe_allowed(allow, family, addr);
    if (rc < 0) {
        return "refused (malformed allow-list)";
    }

    return rc == 1 ? NULL : c;
}


static int
name_ok(const char *h, size_t n)
{
    size_t  i, last = 0;
    int     numeric = 1;

    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-') {
        return 0;
    }

    for (i = 0; i < n; i++) {
        unsigned char  c = (unsigned char) h[i];

        if (!(isalnum(c) || c == '-' || c == '_' || c == '.')) {
            return 0;
        }
        if (c == '.' && i + 1 < n) {
            if (h[i + 1] == '.') {
                return 0;
            }
            last = i + 1;
        }
    }

    /* the last label (a trailing dot ignored) must not look numeric:
     * 127.1, 0x7f.1 and 2130706433 are addresses to some resolvers */
    for (i = last; i < n && h[i] != '.'; i++) {
        if (!isxdigit((unsigned char) h[i]) && h[i] != 'x' && h[i] != 'X') {
            numeric = 0;
        }
    }
    if (numeric && isdigit((unsigned char) h[last])) {
        return 0;
    }

    return 1;
}


int
crest_urlsafe_parse(crest_urlsafe_t *u, const char *s, size_t n, char *err,
    size_t errlen)
{
    const char     *p, *end, *auth, *aend, *hend, *colon;
    size_t          i, hl;
    unsigned long   port;
    uint8_t         buf[16];

    memset(u, 0, sizeof(*u));

    if (n == 0) {
        ERR("empty URL");
    }
    if (n > CREST_URLSAFE_MAX_URL) {
        ERR("URL longer than %d bytes", CREST_URLSAFE_MAX_URL);
    }

    for (i = 0; i < n; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (c <= 0x20 || c == 0x7f || c == '\\') {
            ERR("URL contains a space, control character or backslash");
        }
    }

    end = s + n;

    if (n > 7 && strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
        u->port = 80;
    } else if (n > 8 && strncasecmp(s, "https://", 8) == 0) {
        p = s + 8;
        u->https = 1;
        u->port = 443;
    } else {
        ERR("only http and https URLs are allowed");
    }

    auth = p;
    for (aend = p; aend < end && *aend != '/' && *aend != '?'
                   && *aend != '#'; aend++)
    {
        if (*aend == '@') {
            ERR("URL must not carry a user name or password");
        }
    }

    if (aend == auth) {
        ERR("URL has no host");
    }

    if (*auth == '[') {
        hend = memchr(auth, ']', (size_t) (aend - auth));
        if (hend == NULL) {
            ERR("unterminated IPv6 literal");
        }
        hl = (size_t) (hend - auth - 1);
        if (hl == 0 || hl >= 64) {
            ERR("bad IPv6 literal");
        }
        memcpy(u->host, auth + 1, hl);
        u->host[hl] = '\0';
        if (strchr(u->host, '%') || inet_pton(AF_INET6, u->host, buf) != 1) {
            ERR("bad IPv6 literal");
        }
        u->family = AF_INET6;
        colon = hend + 1;
        if (colon < aend && *colon != ':') {
            ERR("garbage after the IPv6 literal");
        }
        if (colon == aend) {
            colon = NULL;
        }

    } else {
        colon = memchr(auth, ':', (size_t) (aend - auth));
        hend = colon ? colon : aend;
        hl = (size_t) (hend - auth);
        if (hl == 0 || hl >= sizeof(u->host)) {
            ERR("bad host");
        }
        memcpy(u->host, auth, hl);
        u->host[hl] = '\0';

        if (inet_pton(AF_INET, u->host, buf) == 1) {
            u->family = AF_INET;
        } else if (!name_ok(u->host, hl)) {
            ERR("bad host \"%s\"", u->host);
        }
    }

    if (colon) {
        colon++;
        if (colon == aend || aend - colon > 5) {
            ERR("bad port");
        }
        port = 0;
        for (p = colon; p < aend; p++) {
            if (!isdigit((unsigned char) *p)) {
                ERR("bad port");
            }
            port = port * 10 + (unsigned long) (*p - '0');
        }
        if (port == 0 || port > 65535) {
            ERR("bad port");
        }
        u->port = (unsigned) port;
    }

    return 0;
}
