/*
 * libFuzzer target for shared/crest_jwt.c and shared/crest_base64.c.  The
 * first byte says what the input is:
 *
 *   '{'  claims JSON: signed with the HS256 key (even lengths) or the ES256
 *        key (odd), then verified, so that the claim checks behind the
 *        signature are reached.  Signing succeeds exactly when the input is
 *        one JSON object, and such a token is never refused for its header,
 *        key or signature.
 *   '#'  base64url text after the '#': whatever decodes re-encodes to itself.
 *   '!'  a JWKS document after the '!', loaded into a fresh key set.
 *   else a token, verified against a key set with one HS256 key (kid "h")
 *        and one ES256 key (kid "e"); 0 comes with claims, -1 without.
 *
 * Nothing may crash or leak (ASan's leak check runs at exit).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "crest_base64.h"
#include "crest_jwt.h"


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define FUZZ_NOW     1700000000
#define FUZZ_SECRET  "fuzz-secret-fuzz-secret-fuzz-sec"   /* 32 bytes */

/* Lives for the whole run: reachable, so not a leak. */
static crest_jwt_keyset_t     *keys;
static const crest_jwt_key_t  *hs_key, *es_key;


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EVP_PKEY  *pkey;
    BIO       *bio;
    char      *pem, err[256];
    long       n;

    (void) argc;
    (void) argv;

    keys = crest_jwt_keyset_new();
    CHECK(keys != NULL);
    CHECK(crest_jwt_keyset_add_hmac(keys, "h", CREST_JWT_HS256, FUZZ_SECRET,
                                    strlen(FUZZ_SECRET), &hs_key, err,
                                    sizeof(err)) == 0);

    pkey = EVP_EC_gen("P-256");
    bio = BIO_new(BIO_s_mem());
    CHECK(pkey != NULL && bio != NULL);
    CHECK(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1);
    n = BIO_get_mem_data(bio, &pem);
    CHECK(crest_jwt_keyset_add_pem(keys, "e", CREST_JWT_ALG_AUTO, pem,
                                   (size_t) n, &es_key, err, sizeof(err))
          == 0);
    BIO_free(bio);
    EVP_PKEY_free(pkey);

    return 0;
}


static void
opts_for(crest_jwt_verify_opts_t *opts)
{
    crest_jwt_verify_opts_init(opts, FUZZ_NOW);
    opts->leeway = 60;
}


static void
fuzz_token(const uint8_t *data, size_t size)
{
    crest_jwt_verify_opts_t  opts;
    crest_jwt_claims_t       claims;
    crest_jwt_err_t          err;
    int                      rc;

    opts_for(&opts);
    err = (crest_jwt_err_t) -1;

    rc = crest_jwt_verify(keys, (const char *) data, size, &opts, &claims,
                          &err);

    CHECK((rc == 0) == (err == CREST_JWT_OK));
    CHECK(rc == 0 ? json_is_object(claims.json) : claims.json == NULL);
    CHECK(crest_jwt_strerror(err) != NULL);

    if (rc == 0) {
        CHECK(claims.key == hs_key || claims.key == es_key);
    }

    crest_jwt_claims_free(&claims);
}


static void
fuzz_claims(const uint8_t *data, size_t size)
{
    const crest_jwt_key_t    *key;
    crest_jwt_verify_opts_t   opts;
    crest_jwt_claims_t        claims;
    crest_jwt_err_t           err;
    crest_buf_t               out;
    json_t                   *j;
    int                       is_object, rc;

    j = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
    is_object = json_is_object(j);
    json_decref(j);

    key = size % 2 ? es_key : hs_key;
    crest_buf_init(&out, &crest_malloc_allocator);

    rc = crest_jwt_sign(key, (const char *) data, size, &out);
    CHECK((rc == 0) == is_object);

    if (rc == 0) {
        opts_for(&opts);
        rc = crest_jwt_verify(keys, out.data, out.len, &opts, &claims, &err);

        CHECK(err != CREST_JWT_E_ALG_NONE && err != CREST_JWT_E_ALG_MISMATCH
              && err != CREST_JWT_E_UNKNOWN_KID && err != CREST_JWT_E_NO_KEY
              && err != CREST_JWT_E_BAD_SIGNATURE
              && err != CREST_JWT_E_UNSUPPORTED
              && err != CREST_JWT_E_INTERNAL);
        CHECK(err != CREST_JWT_E_TOO_LONG || out.len > 8192);
        CHECK(rc != 0 || claims.key == key);

        crest_jwt_claims_free(&claims);
    }

    crest_buf_free(&out);
}


static void
fuzz_base64(const uint8_t *data, size_t size)
{
    uint8_t  *dec;
    char     *enc;
    size_t    cap, len, n;

    cap = crest_b64url_decoded_len(size);

    if (cap == (size_t) -1) {
        CHECK(crest_b64url_decode(NULL, 0, (const char *) data, size, &len)
              == -1);
        return;
    }

    dec = malloc(cap + 1);
    CHECK(dec != NULL);

    if (crest_b64url_decode(dec, cap, (const char *) data, size, &len) == 0) {
        CHECK(len == cap);
        enc = malloc(crest_b64url_encoded_len(len) + 1);
        CHECK(enc != NULL);
        n = crest_b64url_encode(enc, dec, len);
        CHECK(n == size && memcmp(enc, data, size) == 0);
        free(enc);
    }

    free(dec);
}


static void
fuzz_jwks(const uint8_t *data, size_t size)
{
    crest_jwt_keyset_t  *ks;
    char                 err[256];
    int                  rc;

    ks = crest_jwt_keyset_new();
    CHECK(ks != NULL);

    err[0] = '\0';
    rc = crest_jwt_keyset_add_jwks(ks, (const char *) data, size, err,
                                   sizeof(err));

    CHECK(rc == 0 ? crest_jwt_keyset_count(ks) > 0
                  : crest_jwt_keyset_count(ks) == 0 && err[0] != '\0');

    crest_jwt_keyset_free(ks);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == '{') {
        fuzz_claims(data, size);

    } else if (size > 0 && data[0] == '#') {
        fuzz_base64(data + 1, size - 1);

    } else if (size > 0 && data[0] == '!') {
        fuzz_jwks(data + 1, size - 1);

    } else {
        fuzz_token(data, size);
    }

    return 0;
}
