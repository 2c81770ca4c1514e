/*
 * libFuzzer target for shared/crest_url.c: the parsers, formatters and the
 * redactor must never crash on any input, and whatever parses must format
 * to a URL that parses back to the same thing.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crest_url.h"


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define TERMINATED(a)  CHECK(memchr((a), '\0', sizeof(a)) != NULL)


static void
check_redis(const char *s, size_t n)
{
    crest_redis_url_t  u, u2;
    char               err[256], out[4096], red[4096], red2[4096];
    size_t             len, rlen;

    err[0] = '\0';

    if (crest_redis_url_parse(&u, s, n, err, sizeof(err)) != 0) {
        CHECK(err[0] != '\0');
        return;
    }

    TERMINATED(u.host);
    TERMINATED(u.path);
    TERMINATED(u.user);
    TERMINATED(u.password);
    CHECK(u.db <= CREST_REDIS_DB_MAX);

    if (u.unix_socket) {
        CHECK(u.path[0] == '/' && u.host[0] == '\0' && !u.tls && u.port == 0);

    } else {
        CHECK(u.host[0] != '\0' && u.path[0] == '\0');
        CHECK(u.port >= 1 && u.port <= 65535);
    }

    len = crest_redis_url_format(&u, 0, out, sizeof(out));
    CHECK(len < sizeof(out) && strlen(out) == len);
    CHECK(crest_redis_url_parse(&u2, out, len, err, sizeof(err)) == 0);
    CHECK(memcmp(&u, &u2, sizeof(u)) == 0);

    /* a redacted URL still parses, with *** for the password */
    rlen = crest_redis_url_format(&u, 1, red, sizeof(red));
    CHECK(crest_redis_url_parse(&u2, red, rlen, err, sizeof(err)) == 0);
    CHECK(strcmp(u2.password, u.password[0] ? "***" : "") == 0);
    memcpy(u2.password, u.password, sizeof(u.password));
    CHECK(memcmp(&u, &u2, sizeof(u)) == 0);

    /* the generic redactor agrees with the parser on canonical URLs */
    crest_url_redact(out, len, red2, sizeof(red2));
    CHECK(strcmp(red, red2) == 0);
}


static void
check_pg(const char *s, size_t n)
{
    crest_pg_url_t  u, u2;
    char            err[256], out[8192], red[8192];
    size_t          len, rlen;
    unsigned        i;

    err[0] = '\0';

    if (crest_pg_url_parse(&u, s, n, err, sizeof(err)) != 0) {
        CHECK(err[0] != '\0');
        return;
    }

    TERMINATED(u.host);
    TERMINATED(u.user);
    TERMINATED(u.password);
    TERMINATED(u.dbname);
    CHECK(u.port <= 65535);
    CHECK(u.nparams <= CREST_PG_PARAMS_MAX);
    CHECK(strchr(u.host, ',') == NULL);

    for (i = 0; i < u.nparams; i++) {
        TERMINATED(u.params[i].key);
        TERMINATED(u.params[i].value);
        CHECK(u.params[i].key[0] != '\0');
        CHECK(crest_pg_url_param(&u, u.params[i].key) == u.params[i].value);
    }

    len = crest_pg_url_format(&u, 0, out, sizeof(out));
    CHECK(len < sizeof(out) && strlen(out) == len);
    CHECK(crest_pg_url_parse(&u2, out, len, err, sizeof(err)) == 0);
    CHECK(memcmp(&u, &u2, sizeof(u)) == 0);

    rlen = crest_url_redact(out, len, red, sizeof(red));
    CHECK(rlen < sizeof(red));
    CHECK(crest_pg_url_parse(&u2, red, rlen, err, sizeof(err)) == 0);
    CHECK(strcmp(u2.password, u.password[0] ? "***" : "") == 0);
}


static void
check_redact(const char *s, size_t n)
{
    char    *big;
    char     small[16];
    size_t   cap, len, len2, keep;

    /* each "password=" (9+ bytes) can grow by at most "***" */
    cap = n * 2 + 16;
    big = malloc(cap);
    CHECK(big != NULL);

    len = crest_url_redact(s, n, big, cap);
    CHECK(len < cap && big[len] == '\0');

    len2 = crest_url_redact(s, n, small, sizeof(small));
    keep = len < sizeof(small) ? len : sizeof(small) - 1;
    CHECK(len2 == len && small[keep] == '\0');
    CHECK(memcmp(small, big, keep) == 0);

    CHECK(crest_url_redact(s, n, NULL, 0) == len);

    free(big);
}


static void
check_host(const char *s, size_t n)
{
    crest_redis_url_t  u;
    char               host[64], url[96];
    int                af, len;

    if (n >= sizeof(host) || memchr(s, '\0', n)) {
        return;
    }

    memcpy(host, s, n);
    host[n] = '\0';

    af = crest_host_numeric(host);

    if (af == 0) {
        return;
    }

    CHECK(af == AF_INET || af == AF_INET6);

    /* a literal the checker accepts is one the URL parser accepts */
    len = snprintf(url, sizeof(url), af == AF_INET6 ? "redis://[%s]:1"
                                                    : "redis://%s:1", host);
    CHECK(crest_redis_url_parse(&u, url, (size_t) len, NULL, 0) == 0);
    CHECK(strcmp(u.host, host) == 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *s = (const char *) data;

    check_redis(s, size);
    check_pg(s, size);
    check_redact(s, size);
    check_host(s, size);

    return 0;
}
