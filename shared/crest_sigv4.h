/*
 * AWS Signature Version 4 for presigned URLs (query-string authentication,
 * as S3 documents it): a GET link to one object that works without any
 * header but Host until it expires.  Pure: no I/O, no allocation; the
 * caller gives the output buffer.
 *
 *     crest_sigv4_presign_t  p = { "GET", "s3.example.com:9000",
 *         "/bucket/downloads/u/id/media.mp4", "us-east-1", "s3",
 *         key_id, secret, time(NULL), 300 };
 *     n = crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err));
 *     → "/bucket/downloads/u/id/media.mp4?X-Amz-Algorithm=...&X-Amz-Signature=..."
 *
 * The path is given unencoded and is encoded here as S3 wants it (every byte
 * but the unreserved characters and '/' as %XX, uppercase).  The payload is
 * UNSIGNED-PAYLOAD, the only signed header is host.
 */
#ifndef CREST_SIGV4_H
#define CREST_SIGV4_H

#include <stddef.h>
#include <time.h>

#define CREST_SIGV4_EXPIRES_MAX  604800     /* seven days: S3's limit */

typedef struct {
    const char  *method;            /* "GET" */
    const char  *host;              /* as sent in Host: name[:port] */
    const char  *path;              /* "/bucket/key", unencoded */
    const char  *region;
    const char  *service;           /* "s3" */
    const char  *access_key_id;
    const char  *secret_key;
    time_t       now;               /* when it is signed (X-Amz-Date) */
    unsigned     expires;           /* seconds, 1 .. CREST_SIGV4_EXPIRES_MAX */
} crest_sigv4_presign_t;

/*
 * Writes the encoded path and the query string, NUL-ended, into out and
 * returns its length; -1 with the reason in err when an input is invalid or
 * out is too small.  If canonical_hash is not NULL it receives the hex
 * SHA-256 of the canonical request (65 bytes), for tests.
 */
int crest_sigv4_presign(const crest_sigv4_presign_t *p, char *out,
    size_t outlen, char *canonical_hash, char *err, size_t errlen);

#endif /* CREST_SIGV4_H */
