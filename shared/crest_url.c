#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "crest_url.h"


static const char  crest_url_hex[] = "0123456789ABCDEF";


/* --- small helpers ------------------------------------------------------- */

static int
crest_url_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
crest_url_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }

    return -1;
}


static int
crest_url_prefix(const char *s, size_t n, const char *prefix, int icase)
{
    size_t  len;

    len = strlen(prefix);

    if (n < len) {
        return 0;
    }

    return icase ? strncasecmp(s, prefix, len) == 0
                 : memcmp(s, prefix, len) == 0;
}


static int
crest_url_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


static const char *
crest_url_memrchr(const char *p, const char *end, char c)
{
    while (end > p) {
        end--;
        if (*end == c) {
            return end;
        }
    }

    return NULL;
}


static const char *
crest_url_find(const char *p, const char *end, const char *set)
{
    while (p < end && strchr(set, *p) == NULL) {
        p++;
    }

    return p;
}


/* Percent-decodes [s, s + n) into out; what names the part for errors. */
static int
crest_url_decode(char *out, size_t size, const char *s, size_t n,
    const char *what, char *err, size_t errlen)
{
    size_t  i, len;
    int     hi, lo;
    char    c;

    len = 0;

    for (i = 0; i < n; i++) {
        c = s[i];

        if (c == '%') {
            if (n - i < 3) {
                return crest_url_fail(err, errlen, "bad %%-escape in %s", what);
            }

            hi = crest_url_hexval(s[i + 1]);
            lo = crest_url_hexval(s[i + 2]);

            if (hi < 0 || lo < 0) {
                return crest_url_fail(err, errlen, "bad %%-escape in %s", what);
            }

            c = (char) (hi << 4 | lo);
            i += 2;

            /* everything downstream is a C string */
            if (c == '\0') {
                return crest_url_fail(err, errlen, "%%00 in %s", what);
            }
        }

        if (len + 1 >= size) {
            return crest_url_fail(err, errlen, "%s is too long", what);
        }

        out[len++] = c;
    }

    /* zero-fill: a repeated keyword overwrites, and parsed structs should
     * compare equal with memcmp whatever they held before */
    memset(out + len, 0, size - len);

    return 0;
}


static int
crest_url_copy(char *out, size_t size, const char *s, size_t n,
    const char *what, char *err, size_t errlen)
{
    if (n >= size) {
        return crest_url_fail(err, errlen, "%s is too long", what);
    }

    memcpy(out, s, n);
    memset(out + n, 0, size - n);

    return 0;
}


/* A decimal number without sign or spaces, at most max. */
static int
crest_url_number(const char *s, size_t n, unsigned max, unsigned *out)
{
    size_t    i;
    unsigned  v;

    if (n == 0) {
        return -1;
    }

    v = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        v = v * 10 + (unsigned) (s[i] - '0');

        /* max is small, so checking every digit rules out overflow */
        if (v > max) {
            return -1;
        }
    }

    *out = v;

    return 0;
}


static int
crest_url_port(const char *s, size_t n, unsigned *port, char *err,
    size_t errlen)
{
    if (crest_url_number(s, n, 65535, port) != 0 || *port == 0) {
        return crest_url_fail(err, errlen,
                              "port must be a number from 1 to 65535");
    }

    return 0;
}


/* A DNS name or an unbracketed IPv6 literal. */
static int
crest_url_hostname_ok(const char *h)
{
    const char  *p;

    if (strchr(h, ':')) {
        return crest_host_numeric(h) == AF_INET6;
    }

    for (p = h; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'
              || *p == '_'))
        {
            return 0;
        }
    }

    return p != h;
}


/* URLs proper are printable ASCII; anything else must be %-escaped. */
static int
crest_url_check_bytes(const char *s, size_t n, char *err, size_t errlen)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f) {
            return crest_url_fail(err, errlen,
                "byte 0x%02x at offset %zu must be %%-escaped",
                (unsigned char) s[i], i);
        }
    }

    return 0;
}


/* --- output -------------------------------------------------------------- */

typedef struct {
    char    *out;
    size_t   size;
    size_t   len;
} crest_url_w_t;


static void
crest_url_w_init(crest_url_w_t *w, char *out, size_t size)
{
    w->out = out;
    w->size = size;
    w->len = 0;
}


static void
crest_url_putn(crest_url_w_t *w, const char *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (w->len + 1 < w->size) {
            w->out[w->len] = s[i];
        }
        w->len++;
    }
}


static void
crest_url_puts(crest_url_w_t *w, const char *s)
{
    crest_url_putn(w, s, strlen(s));
}


static void
crest_url_putu(crest_url_w_t *w, unsigned v)
{
    char  num[16];
    int   n;

    n = snprintf(num, sizeof(num), "%u", v);
    crest_url_putn(w, num, (size_t) n);
}


/* Percent-encodes all but RFC 3986 unreserved characters (and keep). */
static void
crest_url_put_enc(crest_url_w_t *w, const char *s, const char *keep)
{
    unsigned char  c;
    char           esc[3];

    for ( /* void */ ; *s; s++) {
        c = (unsigned char) *s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~' || (keep && strchr(keep, c)))
        {
            crest_url_putn(w, (const char *) &c, 1);
            continue;
        }

        esc[0] = '%';
        esc[1] = crest_url_hex[c >> 4];
        esc[2] = crest_url_hex[c & 0xf];
        crest_url_putn(w, esc, 3);
    }
}


static size_t
crest_url_w_done(crest_url_w_t *w)
{
    if (w->size) {
        w->out[w->len < w->size ? w->len : w->size - 1] = '\0';
    }

    return w->len;
}


int
crest_host_numeric(const char *host)
{
    unsigned char  addr[16];

    if (inet_pton(AF_INET, host, addr) == 1) {
        return AF_INET;
    }

    if (inet_pton(AF_INET6, host, addr) == 1) {
        return AF_INET6;
    }

    return 0;
}


/* --- Redis --------------------------------------------------------------- */

static int
crest_redis_userinfo(crest_redis_url_t *u, const char *p, const char *end,
    char *err, size_t errlen)
{
    const char  *colon;

    colon = memchr(p, ':', (size_t) (end - p));

    /* "secret@host" would be read as a user name by some clients and as a
     * password by others: make the author say which */
    if (colon == NULL) {
        return crest_url_fail(err, errlen,
            "credentials need a ':' (user:password@ or :password@)");
    }

    if (crest_url_decode(u->user, sizeof(u->user), p, (size_t) (colon - p),
                         "user", err, errlen) != 0
        || crest_url_decode(u->password, sizeof(u->password), colon + 1,
                            (size_t) (end - colon - 1), "password", err,
                            errlen) != 0)
    {
        return -1;
    }

    return 0;
}


static int
crest_redis_unix(crest_redis_url_t *u, const char *p, const char *end,
    char *err, size_t errlen)
{
    const char  *slash, *q, *amp, *eq;

    u->unix_socket = 1;
    u->port = 0;

    slash = memchr(p, '/', (size_t) (end - p));

    if (slash == NULL) {
        return crest_url_fail(err, errlen,
            "unix:// needs an absolute socket path, as in unix:///run/r.sock");
    }

    if (slash > p) {
        if (slash[-1] != '@') {
            return crest_url_fail(err, errlen,
                "unix:// URLs have no host: write unix:///path/to.sock");
        }

        if (crest_redis_userinfo(u, p, slash - 1, err, errlen) != 0) {
            return -1;
        }
    }

    q = crest_url_find(slash, end, "?");

    if (crest_url_decode(u->path, sizeof(u->path), slash,
                         (size_t) (q - slash), "socket path", err, errlen) != 0)
    {
        return -1;
    }

    if (q == end) {
        return 0;
    }

    for (p = q + 1; p < end; p = amp < end ? amp + 1 : end) {
        amp = crest_url_find(p, end, "&");

        if (amp == p) {
            continue;
        }

        eq = memchr(p, '=', (size_t) (amp - p));

        if (eq == NULL || eq - p != 2 || memcmp(p, "db", 2) != 0) {
            return crest_url_fail(err, errlen,
                "unknown query parameter \"%.*s\" (only db=N is supported)",
                (int) ((eq ? eq : amp) - p), p);
        }

        if (crest_url_number(eq + 1, (size_t) (amp - eq - 1),
                             CREST_REDIS_DB_MAX, &u->db) != 0)
        {
            return crest_url_fail(err, errlen,
                "db must be a number from 0 to %d", CREST_REDIS_DB_MAX);
        }
    }

    return 0;
}


int
crest_redis_url_parse(crest_redis_url_t *u, const char *s, size_t n,
    char *err, size_t errlen)
{
    const char  *p, *end, *auth_end, *at, *host_end, *q;

    memset(u, 0, sizeof(*u));
    u->port = 6379;

    if (crest_url_check_bytes(s, n, err, errlen) != 0) {
        return -1;
    }

    end = s + n;

    if (memchr(s, '#', n)) {
        return crest_url_fail(err, errlen,
            "'#' is not allowed (%%-escape it as %%23 in a password)");
    }

    if (crest_url_prefix(s, n, "redis://", 1)) {
        p = s + 8;

    } else if (crest_url_prefix(s, n, "rediss://", 1)) {
        p = s + 9;
        u->tls = 1;

    } else if (crest_url_prefix(s, n, "unix://", 1)) {
        return crest_redis_unix(u, s + 7, end, err, errlen);

    } else {
        return crest_url_fail(err, errlen,
            "scheme must be redis://, rediss:// or unix://");
    }

    auth_end = crest_url_find(p, end, "/?");

    /* the last '@', as a raw '@' in a password is a common slip */
    at = crest_url_memrchr(p, auth_end, '@');

    if (at) {
        if (crest_redis_userinfo(u, p, at, err, errlen) != 0) {
            return -1;
        }
        p = at + 1;
    }

    if (p < auth_end && *p == '[') {
        q = memchr(p, ']', (size_t) (auth_end - p));

        if (q == NULL) {
            return crest_url_fail(err, errlen, "unterminated '[' in host");
        }

        if (crest_url_copy(u->host, sizeof(u->host), p + 1,
                           (size_t) (q - p - 1), "host", err, errlen) != 0)
        {
            return -1;
        }

        if (crest_host_numeric(u->host) != AF_INET6) {
            return crest_url_fail(err, errlen,
                                  "[%s] is not an IPv6 address", u->host);
        }

        host_end = q + 1;

        if (host_end < auth_end && *host_end != ':') {
            return crest_url_fail(err, errlen, "junk after ']' in host");
        }

    } else {
        host_end = crest_url_find(p, auth_end, ":");

        if (crest_url_copy(u->host, sizeof(u->host), p,
                           (size_t) (host_end - p), "host", err, errlen) != 0)
        {
            return -1;
        }

        if (host_end < auth_end
            && memchr(host_end + 1, ':', (size_t) (auth_end - host_end - 1)))
        {
            return crest_url_fail(err, errlen,
                "an IPv6 address must be in brackets, as in [::1]:6379");
        }

        if (u->host[0] == '\0') {
            return crest_url_fail(err, errlen, "missing host");
        }

        if (!crest_url_hostname_ok(u->host)) {
            return crest_url_fail(err, errlen, "bad character in host");
        }
    }

    if (host_end < auth_end
        && crest_url_port(host_end + 1, (size_t) (auth_end - host_end - 1),
                          &u->port, err, errlen) != 0)
    {
        return -1;
    }

    p = auth_end;

    if (p < end && *p == '/') {
        q = crest_url_find(p + 1, end, "?");

        if (q > p + 1
            && crest_url_number(p + 1, (size_t) (q - p - 1),
                                CREST_REDIS_DB_MAX, &u->db) != 0)
        {
            return crest_url_fail(err, errlen,
                "db must be a number from 0 to %d", CREST_REDIS_DB_MAX);
        }

        p = q;
    }

    if (p < end) {
        return crest_url_fail(err, errlen,
            "query parameters are not supported here: put the db in the path");
    }

    return 0;
}


size_t
crest_redis_url_format(const crest_redis_url_t *u, int redact, char *out,
    size_t size)
{
    crest_url_w_t  w;

    crest_url_w_init(&w, out, size);

    crest_url_puts(&w, u->unix_socket ? "unix://"
                       : u->tls ? "rediss://" : "redis://");

    if (u->user[0] || u->password[0]) {
        crest_url_put_enc(&w, u->user, NULL);
        crest_url_puts(&w, ":");

        if (redact && u->password[0]) {
            crest_url_puts(&w, "***");

        } else {
            crest_url_put_enc(&w, u->password, NULL);
        }

        crest_url_puts(&w, "@");
    }

    if (u->unix_socket) {
        crest_url_put_enc(&w, u->path, "/");

        if (u->db) {
            crest_url_puts(&w, "?db=");
            crest_url_putu(&w, u->db);
        }

        return crest_url_w_done(&w);
    }

    if (strchr(u->host, ':')) {
        crest_url_puts(&w, "[");
        crest_url_puts(&w, u->host);
        crest_url_puts(&w, "]");

    } else {
        crest_url_puts(&w, u->host);
    }

    crest_url_puts(&w, ":");
    crest_url_putu(&w, u->port);
    crest_url_puts(&w, "/");
    crest_url_putu(&w, u->db);

    return crest_url_w_done(&w);
}


/* --- PostgreSQL ---------------------------------------------------------- */

static int
crest_pg_key_ok(const char *key)
{
    const char  *p;

    for (p = key; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_'))
        {
            return 0;
        }
    }

    return p != key;
}


/* Stores one keyword; as in libpq, a repeated keyword overrides. */
static int
crest_pg_set(crest_pg_url_t *u, const char *key, const char *value,
    char *err, size_t errlen)
{
    size_t             len, i;
    crest_pg_param_t  *param;

    len = strlen(value);

    if (strcmp(key, "host") == 0) {
        if (strchr(value, ',')) {
            return crest_url_fail(err, errlen,
                                  "multiple hosts are not supported");
        }

        if (value[0] && value[0] != '/' && !crest_url_hostname_ok(value)) {
            return crest_url_fail(err, errlen, "bad character in host");
        }

        return crest_url_copy(u->host, sizeof(u->host), value, len, "host",
                              err, errlen);
    }

    if (strcmp(key, "port") == 0) {
        if (len == 0) {
            u->port = 0;
            return 0;
        }

        return crest_url_port(value, len, &u->port, err, errlen);
    }

    if (strcmp(key, "user") == 0) {
        return crest_url_copy(u->user, sizeof(u->user), value, len, "user",
                              err, errlen);
    }

    if (strcmp(key, "password") == 0) {
        return crest_url_copy(u->password, sizeof(u->password), value, len,
                              "password", err, errlen);
    }

    if (strcmp(key, "dbname") == 0) {
        return crest_url_copy(u->dbname, sizeof(u->dbname), value, len,
                              "dbname", err, errlen);
    }

    if (!crest_pg_key_ok(key) || strlen(key) >= CREST_PG_KEY_LEN) {
        return crest_url_fail(err, errlen, "bad keyword \"%.*s\"",
                              CREST_PG_KEY_LEN, key);
    }

    /* hostaddr is how libpq skips name lookups: it must be numeric */
    if (strcmp(key, "hostaddr") == 0 && value[0]
        && crest_host_numeric(value) == 0)
    {
        return crest_url_fail(err, errlen,
                              "hostaddr must be one numeric IP address");
    }

    param = NULL;

    for (i = 0; i < u->nparams; i++) {
        if (strcmp(u->params[i].key, key) == 0) {
            param = &u->params[i];
            break;
        }
    }

    if (param == NULL) {
        if (u->nparams == CREST_PG_PARAMS_MAX) {
            return crest_url_fail(err, errlen, "more than %d parameters",
                                  CREST_PG_PARAMS_MAX);
        }

        param = &u->params[u->nparams];
    }

    if (crest_url_copy(param->value, sizeof(param->value), value, len, key,
                       err, errlen) != 0)
    {
        return -1;
    }

    if (param == &u->params[u->nparams]) {
        strcpy(param->key, key);
        u->nparams++;
    }

    return 0;
}


/* Decodes a URI component and stores it under key. */
static int
crest_pg_set_enc(crest_pg_url_t *u, const char *key, const char *s,
    size_t n, char *err, size_t errlen)
{
    char  value[CREST_PG_VALUE_LEN > CREST_URL_HOST_LEN
                ? CREST_PG_VALUE_LEN : CREST_URL_HOST_LEN];

    if (crest_url_decode(value, sizeof(value), s, n, key, err, errlen) != 0) {
        return -1;
    }

    return crest_pg_set(u, key, value, err, errlen);
}


static int
crest_pg_uri(crest_pg_url_t *u, const char *p, const char *end, char *err,
    size_t errlen)
{
    const char  *auth_end, *at, *colon, *host_end, *q, *amp, *eq;
    char         key[CREST_PG_KEY_LEN];

    auth_end = crest_url_find(p, end, "/?");
    at = crest_url_memrchr(p, auth_end, '@');

    if (at) {
        colon = memchr(p, ':', (size_t) (at - p));

        if (crest_url_decode(u->user, sizeof(u->user), p,
                             (size_t) ((colon ? colon : at) - p), "user",
                             err, errlen) != 0)
        {
            return -1;
        }

        if (colon
            && crest_url_decode(u->password, sizeof(u->password), colon + 1,
                                (size_t) (at - colon - 1), "password", err,
                                errlen) != 0)
        {
            return -1;
        }

        p = at + 1;
    }

    if (memchr(p, ',', (size_t) (auth_end - p))) {
        return crest_url_fail(err, errlen, "multiple hosts are not supported");
    }

    if (p < auth_end && *p == '[') {
        q = memchr(p, ']', (size_t) (auth_end - p));

        if (q == NULL) {
            return crest_url_fail(err, errlen, "unterminated '[' in host");
        }

        if (crest_url_copy(u->host, sizeof(u->host), p + 1,
                           (size_t) (q - p - 1), "host", err, errlen) != 0)
        {
            return -1;
        }

        if (crest_host_numeric(u->host) != AF_INET6) {
            return crest_url_fail(err, errlen,
                                  "[%s] is not an IPv6 address", u->host);
        }

        host_end = q + 1;

        if (host_end < auth_end && *host_end != ':') {
            return crest_url_fail(err, errlen, "junk after ']' in host");
        }

    } else {
        host_end = crest_url_find(p, auth_end, ":");

        if (host_end < auth_end
            && memchr(host_end + 1, ':', (size_t) (auth_end - host_end - 1)))
        {
            return crest_url_fail(err, errlen,
                "an IPv6 address must be in brackets, as in [::1]:5432");
        }

        if (crest_pg_set_enc(u, "host", p, (size_t) (host_end - p), err,
                             errlen) != 0)
        {
            return -1;
        }
    }

    if (host_end < auth_end
        && crest_pg_set_enc(u, "port", host_end + 1,
                            (size_t) (auth_end - host_end - 1), err,
                            errlen) != 0)
    {
        return -1;
    }

    p = auth_end;

    if (p < end && *p == '/') {
        q = crest_url_find(p + 1, end, "?");

        if (crest_pg_set_enc(u, "dbname", p + 1, (size_t) (q - p - 1), err,
                             errlen) != 0)
        {
            return -1;
        }

        p = q;
    }

    if (p == end) {
        return 0;
    }

    for (p++; p < end; p = amp < end ? amp + 1 : end) {
        amp = crest_url_find(p, end, "&");
        eq = memchr(p, '=', (size_t) (amp - p));

        if (eq == NULL) {
            return crest_url_fail(err, errlen,
                                  "query parameter without '=' at \"%.*s\"",
                                  (int) (amp - p > 32 ? 32 : amp - p), p);
        }

        if (crest_url_decode(key, sizeof(key), p, (size_t) (eq - p),
                             "keyword", err, errlen) != 0
            || crest_pg_set_enc(u, key, eq + 1, (size_t) (amp - eq - 1),
                                err, errlen) != 0)
        {
            return -1;
        }
    }

    return 0;
}


static int
crest_pg_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
           || c == '\v';
}


/* libpq's "key = value key='quoted \' value'" form. */
static int
crest_pg_keywords(crest_pg_url_t *u, const char *p, const char *end,
    char *err, size_t errlen)
{
    const char  *k;
    char         key[CREST_PG_KEY_LEN];
    char         value[CREST_PG_VALUE_LEN > CREST_URL_HOST_LEN
                       ? CREST_PG_VALUE_LEN : CREST_URL_HOST_LEN];
    size_t       len;
    int          quoted;
    char         c;

    for ( ;; ) {
        while (p < end && crest_pg_space(*p)) {
            p++;
        }

        if (p == end) {
            return 0;
        }

        k = p;

        while (p < end && *p != '=' && !crest_pg_space(*p)) {
            p++;
        }

        if (crest_url_copy(key, sizeof(key), k, (size_t) (p - k), "keyword",
                           err, errlen) != 0)
        {
            return -1;
        }

        if (!crest_pg_key_ok(key)) {
            return crest_url_fail(err, errlen, "bad keyword \"%s\"", key);
        }

        while (p < end && crest_pg_space(*p)) {
            p++;
        }

        if (p == end || *p != '=') {
            return crest_url_fail(err, errlen,
                                  "missing '=' after \"%s\"", key);
        }

        p++;

        while (p < end && crest_pg_space(*p)) {
            p++;
        }

        quoted = (p < end && *p == '\'');
        p += quoted;
        len = 0;

        for ( ;; ) {
            if (p == end) {
                if (quoted) {
                    return crest_url_fail(err, errlen,
                        "unterminated quoted value of \"%s\"", key);
                }
                break;
            }

            c = *p;

            if (quoted ? c == '\'' : crest_pg_space(c)) {
                p += quoted;
                break;
            }

            if (c == '\\' && p + 1 < end) {
                c = *++p;
            }

            if ((unsigned char) c < 0x20 || c == 0x7f) {
                return crest_url_fail(err, errlen,
                    "control character in the value of \"%s\"", key);
            }

            if (len + 1 >= sizeof(value)) {
                return crest_url_fail(err, errlen,
                                      "value of \"%s\" is too long", key);
            }

            value[len++] = c;
            p++;
        }

        value[len] = '\0';

        if (crest_pg_set(u, key, value, err, errlen) != 0) {
            return -1;
        }
    }
}


int
crest_pg_url_parse(crest_pg_url_t *u, const char *s, size_t n, char *err,
    size_t errlen)
{
    memset(u, 0, sizeof(*u));

    if (memchr(s, '\0', n)) {
        return crest_url_fail(err, errlen, "NUL byte in connection string");
    }

    /* libpq matches these prefixes case-sensitively; so do we */
    if (crest_url_prefix(s, n, "postgresql://", 0)) {
        if (crest_url_check_bytes(s, n, err, errlen) != 0) {
            return -1;
        }
        return crest_pg_uri(u, s + 13, s + n, err, errlen);
    }

    if (crest_url_prefix(s, n, "postgres://", 0)) {
        if (crest_url_check_bytes(s, n, err, errlen) != 0) {
            return -1;
        }
        return crest_pg_uri(u, s + 11, s + n, err, errlen);
    }

    return crest_pg_keywords(u, s, s + n, err, errlen);
}


size_t
crest_pg_url_format(const crest_pg_url_t *u, int redact, char *out,
    size_t size)
{
    crest_url_w_t  w;
    unsigned       i;
    const char    *sep;

    crest_url_w_init(&w, out, size);
    crest_url_puts(&w, "postgresql://");

    if (u->user[0] || u->password[0]) {
        crest_url_put_enc(&w, u->user, NULL);

        if (u->password[0]) {
            crest_url_puts(&w, ":");

            if (redact) {
                crest_url_puts(&w, "***");

            } else {
                crest_url_put_enc(&w, u->password, NULL);
            }
        }

        crest_url_puts(&w, "@");
    }

    if (u->host[0] && u->host[0] != '/') {
        if (strchr(u->host, ':')) {
            crest_url_puts(&w, "[");
            crest_url_puts(&w, u->host);
            crest_url_puts(&w, "]");

        } else {
            crest_url_puts(&w, u->host);
        }
    }

    if (u->port) {
        crest_url_puts(&w, ":");
        crest_url_putu(&w, u->port);
    }

    crest_url_puts(&w, "/");
    crest_url_put_enc(&w, u->dbname, NULL);

    sep = "?";

    /* a socket directory cannot go in the authority */
    if (u->host[0] == '/') {
        crest_url_puts(&w, "?host=");
        crest_url_put_enc(&w, u->host, "/");
        sep = "&";
    }

    for (i = 0; i < u->nparams; i++) {
        crest_url_puts(&w, sep);
        crest_url_puts(&w, u->params[i].key);
        crest_url_puts(&w, "=");
        crest_url_put_enc(&w, u->params[i].value, NULL);
        sep = "&";
    }

    return crest_url_w_done(&w);
}


const char *
crest_pg_url_param(const crest_pg_url_t *u, const char *key)
{
    unsigned  i;

    for (i = 0; i < u->nparams; i++) {
        if (strcmp(u->params[i].key, key) == 0) {
            return u->params[i].value;
        }
    }

    return NULL;
}


/* --- redaction ----------------------------------------------------------- */

/*
 * If a "password" keyword starts at s[i] (any case, so sslpassword and
 * PASSWORD count too), sets *vstart and *vend around its value.
 */
static int
crest_url_password_kw(const char *s, size_t n, size_t i, size_t *vstart,
    size_t *vend)
{
    size_t  j;

    if (n - i < 8 || strncasecmp(s + i, "password", 8) != 0) {
        return 0;
    }

    j = i + 8;

    while (j < n && (s[j] == ' ' || s[j] == '\t')) {
        j++;
    }

    if (j == n || s[j] != '=') {
        return 0;
    }

    j++;

    while (j < n && (s[j] == ' ' || s[j] == '\t')) {
        j++;
    }

    *vstart = j;

    if (j < n && s[j] == '\'') {
        for (j++; j < n && s[j] != '\''; j++) {
            if (s[j] == '\\') {
                j++;
            }
        }

        *vend = j < n ? j + 1 : n;
        return 1;
    }

    while (j < n && !crest_pg_space(s[j]) && s[j] != '&') {
        j++;
    }

    *vend = j;

    return 1;
}


size_t
crest_url_redact(const char *s, size_t n, char *out, size_t size)
{
    crest_url_w_t  w;
    size_t         i, a, pw, pw_end, vstart, vend;
    const char    *at, *colon;

    crest_url_w_init(&w, out, size);

    /*
     * The userinfo password runs from the first ':' after "://" to the
     * last '@' anywhere after it.  That is wider than any parser would
     * read it, which is the point: a raw '@', '/' or '?' in a password
     * must not leak its tail.
     */
    pw = pw_end = n;

    for (a = 0; a + 3 <= n; a++) {
        if (memcmp(s + a, "://", 3) == 0) {
            a += 3;
            at = crest_url_memrchr(s + a, s + n, '@');
            colon = at ? memchr(s + a, ':', (size_t) (at - s - a)) : NULL;

            if (colon) {
                pw = (size_t) (colon - s) + 1;
                pw_end = (size_t) (at - s);
            }

            break;
        }
    }

    i = 0;

    while (i < n) {
        if (i >= pw && i < pw_end) {
            crest_url_puts(&w, "***");
            i = pw_end;
            continue;
        }

        if (crest_url_password_kw(s, n, i, &vstart, &vend)) {
            crest_url_putn(&w, s + i, vstart - i);
            crest_url_puts(&w, "***");

            /* the value ended inside the userinfo password: that is covered */
            if (vend > pw && vend < pw_end) {
                vend = pw_end;
            }

            i = vend;
            continue;
        }

        crest_url_putn(&w, s + i, 1);
        i++;
    }

    return crest_url_w_done(&w);
}
