/*
 * SigV4 presigning against the example of AWS's S3 documentation
 * ("Authenticating Requests: Using Query Parameters (AWS Signature Version
 * 4)"): GET examplebucket.s3.amazonaws.com/test.txt, the documentation's
 * example key pair, us-east-1, 2013-05-24T00:00:00Z, valid 86400 s.
 */
#include <string.h>

#include "crest_sigv4.h"
#include "tap.h"


/* 2013-05-24T00:00:00Z */
#define EXAMPLE_TIME  1369353600


static crest_sigv4_presign_t
example(void)
{
    crest_sigv4_presign_t  p;

    p.method = "GET";
    p.host = "examplebucket.s3.amazonaws.com";
    p.path = "/test.txt";
    p.region = "us-east-1";
    p.service = "s3";
    p.access_key_id = "AKIAIOSFODNN7EXAMPLE";
    p.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    p.now = EXAMPLE_TIME;
    p.expires = 86400;

    return p;
}


int
main(void)
{
    char                   out[2048], small[64], hash[65], err[128];
    int                    n;
    crest_sigv4_presign_t  p;

    p = example();
    n = crest_sigv4_presign(&p, out, sizeof(out), hash, err, sizeof(err));
    ok(n > 0, "the example presigns");
    is_int(n, (long) strlen(out), "the length returned");

    /* the hash of the canonical request and the signature the
     * documentation gives */
    is_str(hash,
           "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
           "canonical request hash");
    is_str(out,
           "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1"
           "%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"
           "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
           "&X-Amz-Signature="
           "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
           "the documented presigned URL");

    /* path encoding: unreserved and '/' kept, the rest %XX */
    p = example();
    p.path = "/b/a b+c/\xc3\xa9~_.-";
    n = crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err));
    ok(n > 0 && strncmp(out, "/b/a%20b%2Bc/%C3%A9~_.-?", 24) == 0,
       "path encoded: %s", n > 0 ? out : err);

    /* another second, another signature */
    p = example();
    p.now++;
    n = crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err));
    ok(n > 0 && strstr(out, "aeeed9bbccd4d02ee5c01") == NULL
       && strstr(out, "X-Amz-Date=20130524T000001Z") != NULL,
       "the time is signed");

    /* refused inputs */
    p = example();
    p.expires = 0;
    is_int(crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err)),
           -1, "expires 0 refused");
    p.expires = CREST_SIGV4_EXPIRES_MAX + 1;
    is_int(crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err)),
           -1, "more than seven days refused");
    p = example();
    p.path = "test.txt";
    is_int(crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err)),
           -1, "a relative path refused");
    p = example();
    p.host = "a b";
    is_int(crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err)),
           -1, "a host with a space refused");
    p = example();
    p.region = "us/east";
    is_int(crest_sigv4_presign(&p, out, sizeof(out), NULL, err, sizeof(err)),
           -1, "a region with '/' refused");
    p = example();
    is_int(crest_sigv4_presign(&p, small, sizeof(small), NULL, err,
                               sizeof(err)),
           -1, "a buffer too small: refused, not truncated");
    is_str(err, "output buffer too small", "and says so");

    return done_testing();
}
