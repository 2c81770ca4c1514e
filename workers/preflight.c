/*
 * URL checks before a download may connect anywhere (see preflight.h).
 *
 * Each hop's host is resolved once, here; every address must pass
 * crest_urlsafe_addr_check; libcurl is then handed exactly those addresses
 * (CURLOPT_RESOLVE) so it never resolves the name itself, and its
 * opensocket callback checks the address of every socket it opens all the
 * same, so that nothing reaches a refused address even if the pin were
 * bypassed.  Redirects are never followed by libcurl: each Location is a
 * new hop that goes through the same checks.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "crest_urlsafe.h"
#include "preflight.h"


int
crest_url_resolve_check(const char *url, const char *allow, char *pin,
    size_t pinlen, char *err, size_t errlen)
{
    crest_urlsafe_t   u;
    struct addrinfo   hints, *res, *ai;
    const uint8_t    *a;
    const char       *why;
    char              e[256], text[INET6_ADDRSTRLEN];
    size_t            used = 0;
    int               rc, n = 0;

    if (pin && pinlen) {
        pin[0] = '\0';
    }

    if (crest_urlsafe_allow_valid(allow, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "CREST_DOWNLOAD_ALLOW: %s", e);
        return -1;
    }

    if (crest_urlsafe_parse(&u, url, strlen(url), e, sizeof(e)) != 0) {
        snprintf(err, errlen, "URL refused: %s", e);
        return -1;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = u.family ? AI_NUMERICHOST : AI_ADDRCONFIG;

    rc = getaddrinfo(u.host, NULL, &hints, &res);
    if (rc == EAI_AGAIN || rc == EAI_SYSTEM || rc == EAI_MEMORY) {
        snprintf(err, errlen, "cannot resolve %s now: %s", u.host,
                 gai_strerror(rc));
        return -2;                                  /* worth a retry */
    }
    if (rc != 0) {
        snprintf(err, errlen, "URL refused: cannot resolve %s: %s", u.host,
                 gai_strerror(rc));
        return -1;
    }

    if (pin && !u.family) {
        used = (size_t) snprintf(pin, pinlen, "%s:%u:", u.host, u.port);
    }

    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            a = (const uint8_t *)
                &((struct sockaddr_in *) ai->ai_addr)->sin_addr;
        } else if (ai->ai_family == AF_INET6) {
            a = (const uint8_t *)
                &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr;
        } else {
            continue;
        }
        n++;
        why = crest_urlsafe_addr_check(ai->ai_family, a, allow);
        if (why) {
            snprintf(err, errlen, "URL refused: %s resolves to a %s address",
                     u.host, why);
            freeaddrinfo(res);
            return -1;
        }
        if (pin && !u.family && used < pinlen
            && inet_ntop(ai->ai_family, a, text, sizeof(text)))
        {
            used += (size_t) snprintf(pin + used, pinlen - used,
                                      ai->ai_family == AF_INET6
                                      ? "%s[%s]" : "%s%s",
                                      n > 1 ? "," : "", text);
        }
    }

    freeaddrinfo(res);

    if (n == 0) {
        snprintf(err, errlen, "URL refused: %s has no address", u.host);
        return -1;
    }
    if (pin && used >= pinlen) {
        snprintf(err, errlen, "URL refused: %s has too many addresses",
                 u.host);
        return -1;
    }

    return 0;
}


typedef struct {
    const char  *allow;
    char         refused[64];       /* the class of a refused address */
} pf_sock_t;


static curl_socket_t
pf_opensocket(void *data, curlsocktype purpose, struct curl_sockaddr *sa)
{
    pf_sock_t       *ps = data;
    const uint8_t   *a;
    const char      *why;

    (void) purpose;

    if (sa->family == AF_INET) {
        a = (const uint8_t *) &((struct sockaddr_in *) &sa->addr)->sin_addr;
    } else if (sa->family == AF_INET6) {
        a = (const uint8_t *)
            &((struct sockaddr_in6 *) &sa->addr)->sin6_addr;
    } else {
        snprintf(ps->refused, sizeof(ps->refused), "non-IP");
        return CURL_SOCKET_BAD;
    }

    why = crest_urlsafe_addr_check(sa->family, a, ps->allow);
    if (why) {
        snprintf(ps->refused, sizeof(ps->refused), "%s", why);
        return CURL_SOCKET_BAD;
    }

    return socket(sa->family, sa->socktype | SOCK_CLOEXEC, sa->protocol);
}


/* Stops a GET after the first body bytes: only the status is wanted. */
static size_t
pf_discard(char *p, size_t size, size_t n, void *data)
{
    (void) p;
    (void) size;
    (void) n;
    (void) data;

    return 0;
}


/* One hop: HEAD (or GET of one byte); status and where it redirects. */
static int
pf_hop(const char *url, const char *pin, const char *allow, int get,
    long timeout_ms, long *status, char *location, size_t loclen,
    char *err, size_t errlen)
{
    CURL               *c;
    CURLcode            cc;
    struct curl_slist  *resolve = NULL, *hdrs = NULL;
    pf_sock_t           ps;
    char               *loc = NULL;

    c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errlen, "preflight: curl_easy_init failed");
        return -2;
    }

    memset(&ps, 0, sizeof(ps));
    ps.allow = allow;

    if (pin[0]) {
        resolve = curl_slist_append(NULL, pin);
    }
    if (get) {
        hdrs = curl_slist_append(NULL, "Range: bytes=0-0");
    }

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");         /* none from the env */
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, pf_opensocket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &ps);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < 10000 ? timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "Mozilla/5.0 (crest preflight)");
    if (get) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, pf_discard);
    } else {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    }

    cc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);

    location[0] = '\0';
    if (curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
    {
        snprintf(location, loclen, "%s", loc);
    }

    curl_easy_cleanup(c);
    curl_slist_free_all(resolve);
    curl_slist_free_all(hdrs);

    if (ps.refused[0]) {
        snprintf(err, errlen, "URL refused: a connection to a %s address",
                 ps.refused);
        return -1;
    }
    if (cc != CURLE_OK && !(get && cc == CURLE_WRITE_ERROR && *status)) {
        snprintf(err, errlen, "cannot reach %s: %s", url,
                 curl_easy_strerror(cc));
        return -2;
    }

    return 0;
}


int
crest_preflight(const char *url, const char *allow, unsigned max_hops,
    long timeout_ms, char *final, size_t finallen, char *err, size_t errlen)
{
    /* next has room for one byte more than a URL may have, so that a
     * Location too long is seen as such rather than cut to a valid URL */
    char      cur[CREST_URLSAFE_MAX_URL + 1], next[CREST_URLSAFE_MAX_URL + 2];
    char      pin[1024], e[512];
    long      status;
    unsigned  hop;
    int       rc;

    if (strlen(url) > CREST_URLSAFE_MAX_URL) {
        snprintf(err, errlen, "URL refused: longer than %d bytes",
                 CREST_URLSAFE_MAX_URL);
        return -1;
    }
    snprintf(cur, sizeof(cur), "%s", url);

    for (hop = 0; ; hop++) {
        rc = crest_url_resolve_check(cur, allow, pin, sizeof(pin), e,
                                     sizeof(e));
        if (rc == 0) {
            rc = pf_hop(cur, pin, allow, 0, timeout_ms, &status, next,
                        sizeof(next), e, sizeof(e));
            /* servers that do not do HEAD: one byte of a GET */
            if (rc == 0 && (status == 405 || status == 501)) {
                rc = pf_hop(cur, pin, allow, 1, timeout_ms, &status, next,
                            sizeof(next), e, sizeof(e));
            }
        }

        if (rc != 0) {
            if (hop > 0 && strncmp(e, "URL refused: ", 13) == 0) {
                snprintf(err, errlen, "URL refused: redirect %u: %s", hop,
                         e + 13);
            } else {
                snprintf(err, errlen, "%s", e);
            }
            return rc;
        }

        if (status < 300 || status > 399 || status == 304
            || next[0] == '\0')
        {
            break;
        }

        if (hop + 1 > max_hops) {
            snprintf(err, errlen, "URL refused: more than %u redirects",
                     max_hops);
            return -1;
        }
        if (strlen(next) > CREST_URLSAFE_MAX_URL) {
            snprintf(err, errlen, "URL refused: redirect %u: longer than "
                     "%d bytes", hop + 1, CREST_URLSAFE_MAX_URL);
            return -1;
        }
        memcpy(cur, next, strlen(next) + 1);
    }

    if (strlen(cur) >= finallen) {
        snprintf(err, errlen, "URL refused: too long");
        return -1;
    }
    memcpy(final, cur, strlen(cur) + 1);

    return 0;
}
