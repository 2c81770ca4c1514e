/*
 * What a download URL leads to, checked before yt-dlp runs (preflight.c):
 * libcurl fetches the URL (HEAD, or one byte of a GET where HEAD is not
 * allowed) without following redirects; each hop's host is resolved once,
 * every address checked with shared/crest_urlsafe.h, and libcurl connects
 * only to those checked addresses (CURLOPT_RESOLVE, and an opensocket
 * callback that refuses any other).  A Location that leads to a refused
 * address, or a non-http(s) one, refuses the URL.
 */
#ifndef CREST_PREFLIGHT_H
#define CREST_PREFLIGHT_H

#include <stddef.h>

/*
 * Resolves url's host once and checks every address against allow.  0 if
 * it may be fetched, -1 if refused ("URL refused: ..." in err), -2 for a
 * temporary DNS failure.  With pin, the CURLOPT_RESOLVE entry
 * "host:port:addr,..." of the checked addresses ("" for an IP literal).
 */
int crest_url_resolve_check(const char *url, const char *allow, char *pin,
    size_t pinlen, char *err, size_t errlen);

/*
 * Follows url through at most max_hops redirects, each hop checked as
 * above; the URL the chain ends at (any status but a redirect) in final.
 * 0, -1 refused (err starts "URL refused: "), -2 worth a retry (DNS,
 * connection, timeout).
 */
int crest_preflight(const char *url, const char *allow, unsigned max_hops,
    long timeout_ms, char *final, size_t finallen, char *err, size_t errlen);

#endif /* CREST_PREFLIGHT_H */
