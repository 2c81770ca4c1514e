/*
 * SigV4 presigning; see crest_sigv4.h.  Every string is built in a fixed
 * buffer through a small bounded writer: an input too long for it is an
 * error, never a truncated signature.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crest_sigv4.h"


#define SIGV4_CANONICAL_MAX  8192

typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
    int      overflow;
} sw_t;


static void
sw_init(sw_t *w, char *buf, size_t cap)
{
    w->p = buf;
    w->len = 0;
    w->cap = cap;
    w->overflow = cap == 0;

    if (cap) {
        buf[0] = '\0';
    }
}


static void
sw_put(sw_t *w, const char *s, size_t n)
{
    if (w->overflow || w->len + n + 1 > w->cap) {
        w->overflow = 1;
        return;
    }

    memcpy(w->p + w->len, s, n);
    w->len += n;
    w->p[w->len] = '\0';
}


static void
sw_puts(sw_t *w, const char *s)
{
    sw_put(w, s, strlen(s));
}


static int
unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
           || c == '~';
}


/* URI-encodes s as SigV4 does; '/' kept when keep_slash */
static void
sw_encode(sw_t *w, const char *s, int keep_slash)
{
    static const char  hex[] = "0123456789ABCDEF";
    char               e[3];

    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;

        if (unreserved(c) || (keep_slash && c == '/')) {
            sw_put(w, (const char *) &c, 1);
            continue;
        }

        e[0] = '%';
        e[1] = hex[c >> 4];
        e[2] = hex[c & 0xf];
        sw_put(w, e, 3);
    }
}


static void
hex_of(const unsigned char *md, size_t n, char *out)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }

    out[2 * n] = '\0';
}


static int
hmac(const unsigned char *key, size_t klen, const char *msg,
    unsigned char *out)
{
    unsigned int  n = 0;

    return HMAC(EVP_sha256(), key, (int) klen, (const unsigned char *) msg,
                strlen(msg), out, &n) != NULL && n == 32 ? 0 : -1;
}


/* non-empty and free of characters that would need escaping in a scope */
static int
plain(const char *s)
{
    if (s == NULL || *s == '\0') {
        return 0;
    }

    for (; *s; s++) {
        if (!unreserved((unsigned char) *s)) {
            return 0;
        }
    }

    return 1;
}


int
crest_sigv4_presign(const crest_sigv4_presign_t *p, char *out, size_t outlen,
    char *canonical_hash, char *err, size_t errlen)
{
    sw_t           q, c, w;
    char           query[2048], canonical[SIGV4_CANONICAL_MAX], sts[512];
    char           date[9], stamp[17], expires[16], scope[256], hash[65];
    char           sig[65], secret[256];
    unsigned char  md[32], k1[32], k2[32], k3[32], k4[32];
    unsigned int   mdlen;
    struct tm      tm;
    const char    *h;

    if (p == NULL || p->method == NULL || p->path == NULL
        || p->path[0] != '/' || p->host == NULL || p->host[0] == '\0'
        || !plain(p->region) || !plain(p->service) || !plain(p->method)
        || !plain(p->access_key_id) || p->secret_key == NULL
        || p->expires == 0 || p->expires > CREST_SIGV4_EXPIRES_MAX)
    {
        snprintf(err, errlen, "invalid presign input");
        return -1;
    }

    for (h = p->host; *h; h++) {
        if ((unsigned char) *h <= ' ' || *h == '/' || *h == 0x7f) {
            snprintf(err, errlen, "invalid host");
            return -1;
        }
    }

    if (gmtime_r(&p->now, &tm) == NULL
        || strftime(date, sizeof(date), "%Y%m%d", &tm) != 8
        || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) != 16)
    {
        snprintf(err, errlen, "invalid time");
        return -1;
    }

    snprintf(expires, sizeof(expires), "%u", p->expires);

    if ((size_t) snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request",
                          date, p->region, p->service)
        >= sizeof(scope))
    {
        snprintf(err, errlen, "region or service too long");
        return -1;
    }

    /* the query, its parameters in byte order as the canonical form wants */
    sw_init(&q, query, sizeof(query));
    sw_puts(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    sw_encode(&q, p->access_key_id, 0);
    sw_puts(&q, "%2F");
    sw_encode(&q, scope, 0);
    sw_puts(&q, "&X-Amz-Date=");
    sw_puts(&q, stamp);
    sw_puts(&q, "&X-Amz-Expires=");
    sw_puts(&q, expires);
    sw_puts(&q, "&X-Amz-SignedHeaders=host");

    sw_init(&c, canonical, sizeof(canonical));
    sw_puts(&c, p->method);
    sw_puts(&c, "\n");
    sw_encode(&c, p->path, 1);
    sw_puts(&c, "\n");
    sw_puts(&c, query);
    sw_puts(&c, "\nhost:");
    sw_puts(&c, p->host);
    sw_puts(&c, "\n\nhost\nUNSIGNED-PAYLOAD");

    if (q.overflow || c.overflow) {
        snprintf(err, errlen, "path or key id too long");
        return -1;
    }

    if (EVP_Digest(canonical, c.len, md, &mdlen, EVP_sha256(), NULL) != 1
        || mdlen != 32)
    {
        snprintf(err, errlen, "SHA-256 failed");
        return -1;
    }

    hex_of(md, 32, hash);

    if (canonical_hash) {
        memcpy(canonical_hash, hash, sizeof(hash));
    }

    snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", stamp, scope,
             hash);

    /* the signing key: the secret narrowed to the day, region, service */
    if ((size_t) snprintf(secret, sizeof(secret), "AWS4%s", p->secret_key)
        >= sizeof(secret))
    {
        snprintf(err, errlen, "secret key too long");
        return -1;
    }

    if (hmac((unsigned char *) secret, strlen(secret), date, k1) != 0
        || hmac(k1, 32, p->region, k2) != 0
        || hmac(k2, 32, p->service, k3) != 0
        || hmac(k3, 32, "aws4_request", k4) != 0
        || hmac(k4, 32, sts, md) != 0)
    {
        OPENSSL_cleanse(secret, sizeof(secret));
        snprintf(err, errlen, "HMAC-SHA256 failed");
        return -1;
    }

    /* OPENSSL_cleanse: a memset of buffers dead after it may be dropped */
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(k1, 32);
    OPENSSL_cleanse(k2, 32);
    OPENSSL_cleanse(k3, 32);
    OPENSSL_cleanse(k4, 32);

    hex_of(md, 32, sig);

    sw_init(&w, out, outlen);
    sw_encode(&w, p->path, 1);
    sw_puts(&w, "?");
    sw_puts(&w, query);
    sw_puts(&w, "&X-Amz-Signature=");
    sw_puts(&w, sig);

    if (w.overflow) {
        snprintf(err, errlen, "output buffer too small");
        return -1;
    }

    return (int) w.len;
}
