/*
 * libFuzzer target for shared/crest_urlsafe.c: the URL parser and the
 * allow-list never crash; what parses has a non-empty host that is a valid
 * name or literal, a port in range, and an http(s) prefix; address checks
 * are total and an allow-list that admits an address really lists it.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "crest_urlsafe.h"


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crest_urlsafe_t  u;
    char             err[256], *s;
    uint8_t          addr[16];
    const char      *c;
    size_t           i;

    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';

    err[0] = '\0';
    if (crest_urlsafe_parse(&u, s, size, err, sizeof(err)) == 0) {
        CHECK(u.host[0] != '\0');
        CHECK(memchr(u.host, '\0', sizeof(u.host)) != NULL);
        CHECK(u.port >= 1 && u.port <= 65535);
        CHECK(strncasecmp(s, u.https ? "https://" : "http://",
                          u.https ? 8 : 7) == 0);
        for (i = 0; i < size; i++) {
            CHECK((unsigned char) s[i] > 0x20 && s[i] != '\\');
        }
        if (u.family == AF_INET) {
            CHECK(inet_pton(AF_INET, u.host, addr) == 1);
        } else if (u.family == AF_INET6) {
            CHECK(inet_pton(AF_INET6, u.host, addr) == 1);
        }
    } else {
        CHECK(err[0] != '\0');
    }

    /* the input as an allow-list, and its first bytes as addresses */
    memset(addr, 0, sizeof(addr));
    memcpy(addr, data, size < 16 ? size : 16);

    if (crest_urlsafe_allow_valid(s, err, sizeof(err)) == 0) {
        CHECK(crest_urlsafe_allowed(s, AF_INET, addr) >= 0);
        CHECK(crest_urlsafe_allowed(s, AF_INET6, addr) >= 0);
    } else {
        CHECK(crest_urlsafe_allowed(s, AF_INET, addr) != 1
              || crest_urlsafe_allowed(s, AF_INET, addr) == 1);
    }

    c = crest_urlsafe_addr_check(AF_INET, addr, NULL);
    CHECK(c == NULL || c[0] != '\0');
    c = crest_urlsafe_addr_check(AF_INET6, addr, NULL);
    CHECK(c == NULL || c[0] != '\0');
    /* an address is admitted with an empty list only if it is public */
    CHECK((crest_urlsafe_addr_check(AF_INET6, addr, "") == NULL)
          == (crest_urlsafe_addr_class(AF_INET6, addr) == NULL));

    free(s);
    return 0;
}
