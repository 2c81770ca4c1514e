#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "scraper_http.h"


void
crest_http_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}


static size_t
crest_http_body_cb(char *p, size_t size, size_t n, void *ud)
{
    crest_buf_t  *b = ud;

    crest_buf_append(b, p, size * n);

    /* a chart page is well under a megabyte: refuse anything huge */
    if (b->failed || b->len > 32 * 1024 * 1024) {
        return 0;
    }

    return size * n;
}


static int
crest_http_header_is(const char *line, size_t n, const char *name,
    const char **value)
{
    size_t  k = strlen(name);

    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0) {
        return 0;
    }

    *value = line + k + 1;

    while (*value < line + n && (**value == ' ' || **value == '\t')) {
        (*value)++;
    }

    return 1;
}


static size_t
crest_http_header_cb(char *line, size_t size, size_t n, void *ud)
{
    crest_http_resp_t  *r = ud;
    const char         *v;
    char                tmp[128];
    size_t              len = size * n, vl;
    char               *end;
    double              d;
    struct tm           tm;
    time_t              t;

    if (crest_http_header_is(line, len, "Retry-After", &v)
        || crest_http_header_is(line, len, "X-Ratelimit-Remaining", &v)
        || crest_http_header_is(line, len, "X-Ratelimit-Reset", &v))
    {
        vl = (size_t) (line + len - v);
        while (vl && isspace((unsigned char) v[vl - 1])) {
            vl--;
        }
        if (vl >= sizeof(tmp)) {
            return len;
        }
        memcpy(tmp, v, vl);
        tmp[vl] = '\0';

        d = strtod(tmp, &end);

        if (tolower((unsigned char) line[0]) == 'r') {
            if (end != tmp && *end == '\0' && d >= 0) {
                r->retry_after_ms = (int64_t) (d * 1000);
            } else {
                /* the HTTP-date form */
                memset(&tm, 0, sizeof(tm));
                if (strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
                    t = timegm(&tm) - time(NULL);
                    r->retry_after_ms = t > 0 ? (int64_t) t * 1000 : 0;
                }
            }
        } else if (end != tmp && *end == '\0') {
            if (strncasecmp(line, "X-Ratelimit-Remaining", 21) == 0) {
                r->rl_remaining = d;
            } else {
                r->rl_reset_s = d;
            }
        }
    }

    return len;
}


int
crest_http_request(const char *url, const char *const *headers,
    const char *body, unsigned timeout_ms, crest_http_resp_t *r)
{
    CURL               *c;
    struct curl_slist  *hl = NULL, *tmp;
    CURLcode            rc;
    char                errbuf[CURL_ERROR_SIZE];

    memset(r, 0, sizeof(*r));
    crest_buf_init(&r->body, &crest_malloc_allocator);
    r->retry_after_ms = -1;
    r->rl_remaining = -1;
    r->rl_reset_s = -1;

    c = curl_easy_init();
    if (c == NULL) {
        snprintf(r->err, sizeof(r->err), "curl_easy_init failed");
        return -1;
    }

    for ( ; headers && *headers; headers++) {
        tmp = curl_slist_append(hl, *headers);
        if (tmp == NULL) {
            break;
        }
        hl = tmp;
    }

    if (body) {
        tmp = curl_slist_append(hl, "Content-Type: application/json");
        if (tmp) {
            hl = tmp;
        }
        /* no "Expect: 100-continue" round trip */
        tmp = curl_slist_append(hl, "Expect:");
        if (tmp) {
            hl = tmp;
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }

    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) (timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, crest_http_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, crest_http_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

    rc = curl_easy_perform(c);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    } else {
        snprintf(r->err, sizeof(r->err), "%s",
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }

    curl_slist_free_all(hl);
    curl_easy_cleanup(c);

    crest_buf_appendc(&r->body, '\0');
    if (!r->body.failed) {
        r->body.len--;
    }

    return rc == CURLE_OK ? 0 : -1;
}


void
crest_http_resp_free(crest_http_resp_t *r)
{
    crest_buf_free(&r->body);
}
