/*
 * One blocking HTTP exchange with libcurl for the scraper's adapters:
 * connect and total timeouts, no redirects followed, the headers the
 * adapters need kept (Retry-After, X-Ratelimit-*).
 */
#ifndef CREST_SCRAPER_HTTP_H
#define CREST_SCRAPER_HTTP_H

#include <stdint.h>

#include "crest_buf.h"

typedef struct {
    long         status;        /* 0: no answer (err says why) */
    crest_buf_t  body;          /* NUL-terminated */
    int64_t      retry_after_ms;    /* -1: none */
    double       rl_remaining;      /* X-Ratelimit-Remaining, -1: none */
    double       rl_reset_s;        /* X-Ratelimit-Reset, -1: none */
    char         err[256];
} crest_http_resp_t;

/* Once per process, before threads use it. */
void crest_http_global_init(void);
/*
 * GET (body NULL) or POST body as application/json.  headers: NULL-ended
 * "Name: value" lines.  Returns 0 if an answer came (any status), -1
 * otherwise.  Free the response with crest_http_resp_free.
 */
int crest_http_request(const char *url, const char *const *headers,
    const char *body, unsigned timeout_ms, crest_http_resp_t *r);
void crest_http_resp_free(crest_http_resp_t *r);

#endif /* CREST_SCRAPER_HTTP_H */
