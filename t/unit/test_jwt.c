#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "crest_base64.h"
#include "crest_jwt.h"
#include "tap.h"


#define NOW     1700000000LL
#define SECRET  "0123456789abcdef0123456789abcdef"   /* 32 bytes: HS256 */


/* Keys generated once for the whole run. */
static EVP_PKEY  *rsa_key, *ec256_key, *ec384_key, *ec521_key, *ed_key;


/* --- helpers ------------------------------------------------------------ */

/* base64url of p[0..n) as a malloc'd string. */
static char *
b64(const void *p, size_t n)
{
    char    *s;
    size_t   len;

    s = malloc(crest_b64url_encoded_len(n) + 1);
    len = crest_b64url_encode(s, p, n);
    s[len] = '\0';

    return s;
}


static char *
cat3(const char *a, const char *b, const char *c)
{
    char    *s;
    size_t   la, lb, lc;

    la = strlen(a);
    lb = strlen(b);
    lc = strlen(c);
    s = malloc(la + lb + lc + 3);
    memcpy(s, a, la);
    s[la] = '.';
    memcpy(s + la + 1, b, lb);
    s[la + 1 + lb] = '.';
    memcpy(s + la + lb + 2, c, lc);
    s[la + lb + lc + 2] = '\0';

    return s;
}


/*
 * A token from already-encoded parts, HMAC'd here with OpenSSL's one-shot
 * HMAC() (not the code under test); md NULL leaves the signature empty.
 */
static char *
sign_parts(const char *h, const char *p, const char *md, const void *secret,
    size_t slen)
{
    unsigned char   mac[EVP_MAX_MD_SIZE];
    unsigned int    mac_len;
    char           *input, *sig, *tok;

    input = cat3(h, p, "");
    input[strlen(input) - 1] = '\0';            /* drop the second dot */

    if (md == NULL) {
        sig = strdup("");

    } else {
        HMAC(EVP_get_digestbyname(md), secret, (int) slen,
             (unsigned char *) input, strlen(input), mac, &mac_len);
        sig = b64(mac, mac_len);
    }

    tok = cat3(h, p, sig);
    free(input);
    free(sig);

    return tok;
}


/* A token whose header and payload JSON are given as text. */
static char *
hs_token(const char *header, const char *payload, const char *md,
    const void *secret, size_t slen)
{
    char  *h, *p, *tok;

    h = b64(header, strlen(header));
    p = b64(payload, strlen(payload));
    tok = sign_parts(h, p, md, secret, slen);
    free(h);
    free(p);

    return tok;
}


/* HS256 with SECRET, header {"alg":"HS256","typ":"JWT"}. */
static char *
hs256(const char *payload)
{
    return hs_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, "SHA256",
                    SECRET, strlen(SECRET));
}


static char *
pem_of(EVP_PKEY *k, int private)
{
    BIO    *bio;
    char   *data, *s;
    long    n;

    bio = BIO_new(BIO_s_mem());

    if (private) {
        PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    } else {
        PEM_write_bio_PUBKEY(bio, k);
    }

    n = BIO_get_mem_data(bio, &data);
    s = strndup(data, (size_t) n);
    BIO_free(bio);

    return s;
}


static void
opts_default(crest_jwt_verify_opts_t *o)
{
    crest_jwt_verify_opts_init(o, NOW);
}


/* Verifies and returns the error class, releasing the claims. */
static crest_jwt_err_t
check(const crest_jwt_keyset_t *ks, const char *tok,
    const crest_jwt_verify_opts_t *o)
{
    crest_jwt_verify_opts_t  def;
    crest_jwt_claims_t       c;
    crest_jwt_err_t          e;
    int                      rc;

    if (o == NULL) {
        opts_default(&def);
        o = &def;
    }

    e = (crest_jwt_err_t) -1;
    rc = crest_jwt_verify(ks, tok, strlen(tok), o, &c, &e);

    if ((rc == 0) != (e == CREST_JWT_OK) || (rc != 0 && c.json != NULL)) {
        diag("return value, err and claims disagree");
        return (crest_jwt_err_t) -1;
    }

    crest_jwt_claims_free(&c);

    return e;
}


static crest_jwt_keyset_t *
hs_keyset(void)
{
    crest_jwt_keyset_t  *ks;
    char                 err[256];

    ks = crest_jwt_keyset_new();

    if (crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_HS256, SECRET,
                                  strlen(SECRET), NULL, err, sizeof(err))
        != 0)
    {
        diag("add_hmac: %s", err);
    }

    return ks;
}


#define is_err(got, want, ...)                                               \
    tap_is_str(crest_jwt_strerror(got), crest_jwt_strerror(want), __FILE__,  \
               __LINE__, __VA_ARGS__)


/* --- algorithms --------------------------------------------------------- */

static void
test_alg_names(void)
{
    static const char  *names[] = {
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
        "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
    };
    crest_jwt_alg_t     alg;
    size_t              i;
    int                 good;

    good = 0;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        good += crest_jwt_alg_parse(names[i], strlen(names[i]), &alg) == 0
                && strcmp(crest_jwt_alg_name(alg), names[i]) == 0;
    }

    is_int(good, 13, "every alg name parses and prints back");
    ok(crest_jwt_alg_parse("hs256", 5, &alg) == -1, "alg names are "
       "case-sensitive");
    ok(crest_jwt_alg_parse("none", 4, &alg) == -1, "none is no alg");
    ok(crest_jwt_alg_parse("HS256x", 5, &alg) == 0 && alg == CREST_JWT_HS256,
       "parse honours the length");
    ok(crest_jwt_alg_name(CREST_JWT_ALG_AUTO) == NULL
       && crest_jwt_alg_name((crest_jwt_alg_t) 99) == NULL,
       "no name for AUTO or out of range");
    ok(strcmp(crest_jwt_strerror((crest_jwt_err_t) 99), "unknown error") == 0,
       "strerror of an unknown value");
}


/* --- round trips -------------------------------------------------------- */

typedef struct {
    crest_jwt_alg_t   alg;
    EVP_PKEY        **pkey;     /* NULL: HMAC */
    size_t            sig_len;  /* decoded signature size; 0: RSA */
} rt_case_t;


static const char  rt_claims[] =
    "{\"sub\":\"user-42\",\"role\":\"admin\",\"plan\":\"pro\",\"jti\":\"j-1\","
    "\"iat\":1699999990,\"exp\":1700000600,\"name\":\"Zo\\u00eb\"}";


static void
round_trip(const rt_case_t *rc)
{
    crest_jwt_keyset_t       *signer, *verifier;
    const crest_jwt_key_t    *skey;
    crest_jwt_claims_t        c;
    crest_jwt_err_t           e;
    crest_buf_t               out;
    char                      err[256], *pem, *tampered, *dot;
    const char               *name;
    unsigned char             hdr[256], sig[1024];
    size_t                    hlen, slen;
    int                       rc_load;

    name = crest_jwt_alg_name(rc->alg);
    signer = crest_jwt_keyset_new();
    verifier = crest_jwt_keyset_new();
    err[0] = '\0';

    if (rc->pkey == NULL) {
        rc_load = crest_jwt_keyset_add_hmac(signer, "k1", rc->alg,
                      SECRET SECRET, 64, &skey, err, sizeof(err))
                  | crest_jwt_keyset_add_hmac(verifier, "k1", rc->alg,
                      SECRET SECRET, 64, NULL, err, sizeof(err));
    } else {
        pem = pem_of(*rc->pkey, 1);
        rc_load = crest_jwt_keyset_add_pem(signer, "k1", rc->alg, pem,
                                           strlen(pem), &skey, err,
                                           sizeof(err));
        free(pem);
        pem = pem_of(*rc->pkey, 0);
        rc_load |= crest_jwt_keyset_add_pem(verifier, "k1", rc->alg, pem,
                                            strlen(pem), NULL, err,
                                            sizeof(err));
        free(pem);
    }

    if (!ok(rc_load == 0, "%s: keys load", name)) {
        diag("%s", err);
        goto done;
    }

    ok(crest_jwt_key_can_sign(skey) && crest_jwt_key_alg(skey) == rc->alg
       && strcmp(crest_jwt_key_kid(skey), "k1") == 0,
       "%s: loaded key can sign, alg and kid as given", name);

    crest_buf_init(&out, &crest_malloc_allocator);

    if (!ok(crest_jwt_sign(skey, rt_claims, strlen(rt_claims), &out) == 0,
            "%s: signs", name))
    {
        crest_buf_free(&out);
        goto done;
    }

    /* the header is exactly what the API promises */
    dot = strchr(out.data, '.');
    ok(dot && crest_b64url_decode(hdr, sizeof(hdr) - 1, out.data,
                                  (size_t) (dot - out.data), &hlen) == 0
       && (hdr[hlen] = '\0', 1)
       && strstr((char *) hdr, "\"typ\":\"JWT\"") != NULL
       && strstr((char *) hdr, "\"kid\":\"k1\"") != NULL
       && strncmp((char *) hdr, "{\"alg\":\"", 8) == 0
       && strncmp((char *) hdr + 8, name, strlen(name)) == 0,
       "%s: header {alg, typ, kid}", name);

    dot = strrchr(out.data, '.');
    ok(crest_b64url_decode(sig, sizeof(sig), dot + 1, strlen(dot + 1), &slen)
       == 0 && (rc->sig_len == 0 ? slen == 256 : slen == rc->sig_len),
       "%s: signature of %zu bytes", name, slen);

    memset(&c, 0, sizeof(c));
    e = CREST_JWT_E_INTERNAL;
    crest_jwt_verify(verifier, out.data, out.len, &(crest_jwt_verify_opts_t)
                     { .now = NOW, .max_len = 0 }, &c, &e);
    is_err(e, CREST_JWT_OK, "%s: verifies with the public key", name);

    ok(c.json != NULL && c.sub && strcmp(c.sub, "user-42") == 0
       && c.sub_len == 7 && strcmp(c.role, "admin") == 0
       && strcmp(c.plan, "pro") == 0 && strcmp(c.jti, "j-1") == 0
       && c.has_exp && c.exp == 1700000600 && c.has_iat
       && c.iat == 1699999990 && c.key == crest_jwt_keyset_key(verifier, 0),
       "%s: claims extracted", name);
    crest_jwt_claims_free(&c);

    is_err(check(signer, out.data, NULL), CREST_JWT_OK,
           "%s: the private key verifies too", name);

    /* one payload character changed: the signature no longer holds */
    tampered = strdup(out.data);
    dot = strchr(tampered, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    is_err(check(verifier, tampered, NULL), CREST_JWT_E_BAD_SIGNATURE,
           "%s: tampered payload", name);
    free(tampered);

    /* one signature bit flipped */
    tampered = strdup(out.data);
    dot = strrchr(tampered, '.');
    dot[5] = dot[5] == 'A' ? 'B' : 'A';
    is_err(check(verifier, tampered, NULL), CREST_JWT_E_BAD_SIGNATURE,
           "%s: tampered signature", name);
    free(tampered);

    crest_buf_free(&out);

done:

    crest_jwt_keyset_free(signer);
    crest_jwt_keyset_free(verifier);
}


static void
test_round_trips(void)
{
    const rt_case_t  cases[] = {
        { CREST_JWT_HS256, NULL, 32 },
        { CREST_JWT_HS384, NULL, 48 },
        { CREST_JWT_HS512, NULL, 64 },
        { CREST_JWT_RS256, &rsa_key, 0 },
        { CREST_JWT_RS384, &rsa_key, 0 },
        { CREST_JWT_RS512, &rsa_key, 0 },
        { CREST_JWT_PS256, &rsa_key, 0 },
        { CREST_JWT_PS384, &rsa_key, 0 },
        { CREST_JWT_PS512, &rsa_key, 0 },
        { CREST_JWT_ES256, &ec256_key, 64 },
        { CREST_JWT_ES384, &ec384_key, 96 },
        { CREST_JWT_ES512, &ec521_key, 132 },
        { CREST_JWT_EDDSA, &ed_key, 64 },
    };
    size_t           i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        round_trip(&cases[i]);
    }
}


/* ECDSA signatures are raw R || S of exactly twice the field size. */
static void
test_ecdsa_sizes(void)
{
    crest_jwt_keyset_t     *ks;
    const crest_jwt_key_t  *key;
    crest_buf_t             out;
    unsigned char           sig[200];
    size_t                  slen;
    char                   *pem, *dot, *head, *s, *tok;

    ks = crest_jwt_keyset_new();
    pem = pem_of(ec256_key, 1);
    crest_jwt_keyset_add_pem(ks, NULL, CREST_JWT_ALG_AUTO, pem, strlen(pem),
                             &key, NULL, 0);
    free(pem);

    crest_buf_init(&out, &crest_malloc_allocator);
    crest_jwt_sign(key, "{\"exp\":1700000600}", 18, &out);
    dot = strrchr(out.data, '.');
    crest_b64url_decode(sig, sizeof(sig), dot + 1, strlen(dot + 1), &slen);
    head = strndup(out.data, (size_t) (dot - out.data));

    ok(slen == 64, "ES256 signature is 64 bytes");

    /* one byte short and one byte long (a lax verifier might parse DER or
     * strip a byte) */
    sig[64] = 0;
    s = b64(sig, 63);
    tok = malloc(strlen(head) + strlen(s) + 2);
    sprintf(tok, "%s.%s", head, s);
    is_err(check(ks, tok, NULL), CREST_JWT_E_BAD_SIGNATURE,
           "ES256: 63-byte signature refused");
    free(s);
    free(tok);

    s = b64(sig, 65);
    tok = malloc(strlen(head) + strlen(s) + 2);
    sprintf(tok, "%s.%s", head, s);
    is_err(check(ks, tok, NULL), CREST_JWT_E_BAD_SIGNATURE,
           "ES256: 65-byte signature refused");
    free(s);
    free(tok);

    is_err(check(ks, out.data, NULL), CREST_JWT_OK, "ES256: the original "
           "verifies");

    free(head);
    crest_buf_free(&out);
    crest_jwt_keyset_free(ks);
}


/* --- key loading -------------------------------------------------------- */

static int
load_pem(crest_jwt_keyset_t *ks, const char *kid, crest_jwt_alg_t alg,
    EVP_PKEY *k, int private, crest_jwt_alg_t *got, char *err, size_t errlen)
{
    const crest_jwt_key_t  *key;
    char                   *pem;
    int                     rc;

    pem = pem_of(k, private);
    rc = crest_jwt_keyset_add_pem(ks, kid, alg, pem, strlen(pem), &key, err,
                                  errlen);
    free(pem);

    if (rc == 0 && got != NULL) {
        *got = crest_jwt_key_alg(key);
    }

    return rc;
}


static void
test_key_loading(void)
{
    crest_jwt_keyset_t     *ks;
    const crest_jwt_key_t  *key;
    crest_jwt_alg_t         got;
    crest_buf_t             out;
    EVP_PKEY               *small, *x25519;
    OSSL_ENCODER_CTX       *ectx;
    BIO                    *bio;
    char                    err[256], *pem, *data;
    long                    n;

    ks = crest_jwt_keyset_new();

    ok(load_pem(ks, "r", CREST_JWT_ALG_AUTO, rsa_key, 0, &got, err,
                sizeof(err)) == 0 && got == CREST_JWT_RS256,
       "RSA public key: RS256 by default");
    ok(load_pem(ks, "e1", CREST_JWT_ALG_AUTO, ec256_key, 0, &got, err,
                sizeof(err)) == 0 && got == CREST_JWT_ES256,
       "P-256 key: ES256");
    ok(load_pem(ks, "e2", CREST_JWT_ALG_AUTO, ec384_key, 0, &got, err,
                sizeof(err)) == 0 && got == CREST_JWT_ES384,
       "P-384 key: ES384");
    ok(load_pem(ks, "e3", CREST_JWT_ALG_AUTO, ec521_key, 0, &got, err,
                sizeof(err)) == 0 && got == CREST_JWT_ES512,
       "P-521 key: ES512");
    ok(load_pem(ks, "d", CREST_JWT_ALG_AUTO, ed_key, 1, &got, err,
                sizeof(err)) == 0 && got == CREST_JWT_EDDSA,
       "Ed25519 private key: EdDSA");
    ok(load_pem(ks, "p", CREST_JWT_PS256, rsa_key, 0, &got, err,
                sizeof(err)) == 0 && got == CREST_JWT_PS256,
       "RSA key pinned to PS256 when stated");
    is_int(crest_jwt_keyset_count(ks), 6, "six keys loaded");

    key = crest_jwt_keyset_find(ks, "r", 1);
    ok(key && !crest_jwt_key_can_sign(key), "a public key cannot sign");
    crest_buf_init(&out, &crest_malloc_allocator);
    crest_buf_appends(&out, "kept");
    ok(crest_jwt_sign(key, "{}", 2, &out) == -1 && out.len == 4,
       "signing with a public key fails and leaves the buffer");
    crest_buf_free(&out);
    ok(crest_jwt_keyset_find(ks, "e", 1) == NULL
       && crest_jwt_keyset_find(ks, "e1", 2) != NULL
       && crest_jwt_keyset_key(ks, 6) == NULL, "find and index");

    /* alg that does not suit the key type */
    ok(load_pem(ks, NULL, CREST_JWT_ES256, rsa_key, 0, NULL, err,
                sizeof(err)) == -1, "RSA key with ES256 refused (%s)", err);
    ok(load_pem(ks, NULL, CREST_JWT_HS256, rsa_key, 0, NULL, err,
                sizeof(err)) == -1, "RSA key with HS256 refused (%s)", err);
    ok(load_pem(ks, NULL, CREST_JWT_EDDSA, rsa_key, 0, NULL, err,
                sizeof(err)) == -1, "RSA key with EdDSA refused");
    ok(load_pem(ks, NULL, CREST_JWT_ES384, ec256_key, 0, NULL, err,
                sizeof(err)) == -1, "P-256 key with ES384 refused (%s)", err);
    ok(load_pem(ks, NULL, CREST_JWT_RS256, ec256_key, 0, NULL, err,
                sizeof(err)) == -1, "EC key with RS256 refused");
    ok(load_pem(ks, NULL, CREST_JWT_ES256, ed_key, 0, NULL, err,
                sizeof(err)) == -1, "Ed25519 key with ES256 refused");
    ok(load_pem(ks, "r", CREST_JWT_ALG_AUTO, ec256_key, 0, NULL, err,
                sizeof(err)) == -1 && strstr(err, "duplicate kid") != NULL,
       "duplicate kid refused");
    ok(load_pem(ks, "", CREST_JWT_ALG_AUTO, ec256_key, 0, NULL, err,
                sizeof(err)) == -1, "empty kid refused");

    small = EVP_RSA_gen(1024);
    ok(load_pem(ks, NULL, CREST_JWT_ALG_AUTO, small, 0, NULL, err,
                sizeof(err)) == -1 && strstr(err, "1024") != NULL,
       "1024-bit RSA refused (%s)", err);
    EVP_PKEY_free(small);

    x25519 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    ok(load_pem(ks, NULL, CREST_JWT_ALG_AUTO, x25519, 0, NULL, err,
                sizeof(err)) == -1, "X25519 key refused (%s)", err);
    EVP_PKEY_free(x25519);

    ok(crest_jwt_keyset_add_pem(ks, NULL, CREST_JWT_ALG_AUTO, "hello", 5,
                                NULL, err, sizeof(err)) == -1,
       "not PEM refused (%s)", err);

    /* an encrypted private key fails at once instead of asking on a tty */
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PKCS8PrivateKey(bio, ec256_key, EVP_aes_128_cbc(), "pw", 2,
                                  NULL, NULL);
    n = BIO_get_mem_data(bio, &data);
    ok(crest_jwt_keyset_add_pem(ks, NULL, CREST_JWT_ALG_AUTO, data,
                                (size_t) n, NULL, err, sizeof(err)) == -1,
       "encrypted private key refused");
    BIO_free(bio);

    /* PKCS#1 "RSA PUBLIC KEY" */
    bio = BIO_new(BIO_s_mem());
    ectx = OSSL_ENCODER_CTX_new_for_pkey(rsa_key, EVP_PKEY_PUBLIC_KEY, "PEM",
                                         "type-specific", NULL);
    OSSL_ENCODER_to_bio(ectx, bio);
    OSSL_ENCODER_CTX_free(ectx);
    n = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t) n);
    BIO_free(bio);
    ok(strstr(pem, "BEGIN RSA PUBLIC KEY") != NULL
       && crest_jwt_keyset_add_pem(ks, "pkcs1", CREST_JWT_ALG_AUTO, pem,
                                   strlen(pem), NULL, err, sizeof(err)) == 0,
       "PKCS#1 RSA public key loads");
    free(pem);

    is_int(crest_jwt_keyset_count(ks), 7, "failed loads added nothing");
    is_int(ERR_peek_error(), 0, "failed loads leave no OpenSSL errors queued");

    /* HMAC secrets */
    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_HS256, SECRET, 31, NULL,
                                 err, sizeof(err)) == -1,
       "HS256 secret of 31 bytes refused (%s)", err);
    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_HS512, SECRET, 32, NULL,
                                 err, sizeof(err)) == -1,
       "HS512 secret of 32 bytes refused");
    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_RS256, SECRET, 32, NULL,
                                 err, sizeof(err)) == -1,
       "HMAC secret with RS256 refused");
    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_ALG_AUTO, SECRET, 32,
                                 NULL, err, sizeof(err)) == -1,
       "HMAC secret with no alg refused");
    pem = pem_of(rsa_key, 0);
    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_HS256, pem, strlen(pem),
                                 NULL, err, sizeof(err)) == -1
       && strstr(err, "PEM") != NULL,
       "a PEM public key as HMAC secret refused (%s)", err);
    free(pem);
    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_HS256, SECRET, 32, NULL,
                                 NULL, 0) == 0, "err may be NULL");

    crest_jwt_keyset_free(ks);
    crest_jwt_keyset_free(NULL);
}


/* --- rejections --------------------------------------------------------- */

typedef struct {
    const char       *name;
    const char       *header;
    const char       *payload;
    crest_jwt_err_t   want;
} hs_case_t;

#define H   "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define P   "{\"sub\":\"u\",\"exp\":1700000060}"

static const hs_case_t  hs_cases[] = {
    { "the reference token", H, P, CREST_JWT_OK },
    { "header without typ", "{\"alg\":\"HS256\"}", P, CREST_JWT_OK },
    { "typ jwt in lower case", "{\"typ\":\"jwt\",\"alg\":\"HS256\"}", P,
      CREST_JWT_OK },
    { "unknown header fields and jwk/jku ignored",
      "{\"alg\":\"HS256\",\"x\":[1],\"jku\":\"https://evil\",\"jwk\":{}}", P,
      CREST_JWT_OK },

    { "header not JSON", "{alg:HS256}", P, CREST_JWT_E_MALFORMED },
    { "header an array", "[\"HS256\"]", P, CREST_JWT_E_MALFORMED },
    { "header a string", "\"HS256\"", P, CREST_JWT_E_MALFORMED },
    { "header empty", "", P, CREST_JWT_E_MALFORMED },
    { "header with duplicate alg",
      "{\"alg\":\"HS256\",\"alg\":\"HS256\"}", P, CREST_JWT_E_MALFORMED },
    { "header without alg", "{\"typ\":\"JWT\"}", P, CREST_JWT_E_MALFORMED },
    { "header alg a number", "{\"alg\":256}", P, CREST_JWT_E_MALFORMED },
    { "header kid a number", "{\"alg\":\"HS256\",\"kid\":1}", P,
      CREST_JWT_E_MALFORMED },
    { "header trailing garbage", H "x", P, CREST_JWT_E_MALFORMED },
    { "payload not JSON", H, "sub=u", CREST_JWT_E_MALFORMED },
    { "payload an array", H, "[1]", CREST_JWT_E_MALFORMED },
    { "payload a number", H, "1700000060", CREST_JWT_E_MALFORMED },
    { "payload with duplicate exp", H,
      "{\"exp\":1700000060,\"exp\":1800000000}", CREST_JWT_E_MALFORMED },
    { "payload with duplicate sub", H,
      "{\"sub\":\"a\",\"sub\":\"b\",\"exp\":1700000060}",
      CREST_JWT_E_MALFORMED },
    { "payload with \\u0000 in a string", H,
      "{\"sub\":\"a\\u0000b\",\"exp\":1700000060}", CREST_JWT_E_MALFORMED },
    { "exp a string", H, "{\"exp\":\"1700000060\"}", CREST_JWT_E_MALFORMED },
    { "exp null", H, "{\"exp\":null}", CREST_JWT_E_MALFORMED },
    { "nbf a string", H, "{\"exp\":1700000060,\"nbf\":\"0\"}",
      CREST_JWT_E_MALFORMED },
    { "iat a string", H, "{\"exp\":1700000060,\"iat\":\"0\"}",
      CREST_JWT_E_MALFORMED },
    { "iat a boolean", H, "{\"exp\":1700000060,\"iat\":true}",
      CREST_JWT_E_MALFORMED },
    { "sub a number", H, "{\"exp\":1700000060,\"sub\":42}",
      CREST_JWT_E_MALFORMED },
    { "role an array", H, "{\"exp\":1700000060,\"role\":[\"admin\"]}",
      CREST_JWT_E_MALFORMED },
    { "iss an object", H, "{\"exp\":1700000060,\"iss\":{}}",
      CREST_JWT_E_MALFORMED },
    { "aud a number", H, "{\"exp\":1700000060,\"aud\":1}",
      CREST_JWT_E_MALFORMED },

    { "alg none", "{\"alg\":\"none\"}", P, CREST_JWT_E_ALG_NONE },
    { "alg NONE", "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", P,
      CREST_JWT_E_ALG_NONE },
    { "alg nOnE", "{\"alg\":\"nOnE\"}", P, CREST_JWT_E_ALG_NONE },

    { "alg HS384 for an HS256 key", "{\"alg\":\"HS384\"}", P,
      CREST_JWT_E_ALG_MISMATCH },
    { "alg hs256 (case matters)", "{\"alg\":\"hs256\"}", P,
      CREST_JWT_E_ALG_MISMATCH },
    { "alg RS256 for an HS256 key", "{\"alg\":\"RS256\"}", P,
      CREST_JWT_E_ALG_MISMATCH },
    { "alg unknown", "{\"alg\":\"XX999\"}", P, CREST_JWT_E_ALG_MISMATCH },

    { "kid the key does not have", "{\"alg\":\"HS256\",\"kid\":\"k9\"}", P,
      CREST_JWT_E_UNKNOWN_KID },

    { "crit present", "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", P,
      CREST_JWT_E_UNSUPPORTED },
    { "crit empty", "{\"alg\":\"HS256\",\"crit\":[]}", P,
      CREST_JWT_E_UNSUPPORTED },
    { "typ JWS", "{\"alg\":\"HS256\",\"typ\":\"JWS\"}", P,
      CREST_JWT_E_UNSUPPORTED },
    { "typ at+jwt", "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", P,
      CREST_JWT_E_UNSUPPORTED },
    { "typ not a string", "{\"alg\":\"HS256\",\"typ\":1}", P,
      CREST_JWT_E_UNSUPPORTED },

    { "exp missing", H, "{\"sub\":\"u\"}", CREST_JWT_E_NO_EXP },
};


static void
test_hs_cases(void)
{
    crest_jwt_keyset_t  *ks;
    size_t               i;
    char                *tok;

    ks = hs_keyset();

    for (i = 0; i < sizeof(hs_cases) / sizeof(hs_cases[0]); i++) {
        tok = hs_token(hs_cases[i].header, hs_cases[i].payload, "SHA256",
                       SECRET, strlen(SECRET));
        is_err(check(ks, tok, NULL), hs_cases[i].want, "%s",
               hs_cases[i].name);
        free(tok);
    }

    crest_jwt_keyset_free(ks);
}


/* Tokens whose shape or encoding is wrong before any JSON is read. */
static void
test_shape(void)
{
    static const char  *bad[] = {
        "", ".", "..", "...", "abc", "abc.def", "a.b.c.d",
    };
    crest_jwt_keyset_t  *ks;
    char                *good, *tok, *h, *p, *dot;
    size_t               i;

    ks = hs_keyset();
    good = hs256(P);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        is_err(check(ks, bad[i], NULL), CREST_JWT_E_MALFORMED,
               "shape \"%s\"", bad[i]);
    }

    /* a fourth part after a valid token */
    tok = cat3(good, "x", "");
    tok[strlen(tok) - 1] = '\0';
    is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "four parts");
    free(tok);

    /* empty header or payload part */
    dot = strchr(good, '.');
    is_err(check(ks, dot, NULL), CREST_JWT_E_MALFORMED, "empty header part");

    h = b64(H, strlen(H));
    tok = sign_parts(h, "", "SHA256", SECRET, strlen(SECRET));
    is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "empty payload part");
    free(tok);

    /* base64 with padding, standard alphabet, non-canonical bits, but
     * signed: the refusal is of the encoding itself */
    p = b64(P, strlen(P));

    {
        char  *q;

        /* {"exp":1700000060} is 18 bytes, so "==" is pure padding */
        tok = sign_parts(h, "eyJleHAiOjE3MDAwMDAwNjB9==", "SHA256", SECRET,
                         strlen(SECRET));
        is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "payload with "
               "'=' padding");
        free(tok);

        q = strdup(p);
        q[2] = '+';
        tok = sign_parts(h, q, "SHA256", SECRET, strlen(SECRET));
        is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "payload with "
               "'+'");
        free(tok);

        q[2] = ' ';
        tok = sign_parts(h, q, "SHA256", SECRET, strlen(SECRET));
        is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "payload with "
               "a space");
        free(tok);
        free(q);

        /* "e30" is {} ; "e31" has a non-zero trailing bit */
        tok = sign_parts(h, "e31", "SHA256", SECRET, strlen(SECRET));
        is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "payload with "
               "non-canonical trailing bits");
        free(tok);

        q = strdup(h);
        q[strlen(q) - 1] = '=';
        tok = sign_parts(q, p, "SHA256", SECRET, strlen(SECRET));
        is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "header with "
               "'='");
        free(tok);
        free(q);
    }

    /* the HS256 signature is 43 characters, the last carrying 2 unused bits:
     * setting them gives the same bytes in a lax decoder */
    tok = strdup(good);
    dot = tok + strlen(tok) - 1;
    {
        static const char  alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                     "opqrstuvwxyz0123456789-_";
        size_t             v;

        v = (size_t) (strchr(alpha, *dot) - alpha);
        *dot = alpha[v | 1];
    }
    is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "signature with "
           "non-canonical trailing bits");
    free(tok);

    tok = strdup(good);
    tok[strlen(tok) - 5] = '/';
    is_err(check(ks, tok, NULL), CREST_JWT_E_MALFORMED, "signature with '/'");
    free(tok);

    free(h);
    free(p);
    free(good);
    crest_jwt_keyset_free(ks);
}


static void
test_too_long(void)
{
    crest_jwt_keyset_t       *ks;
    crest_jwt_verify_opts_t   o;
    char                     *tok, *big, *payload;
    size_t                    len;

    ks = hs_keyset();
    opts_default(&o);

    tok = hs256(P);
    len = strlen(tok);
    o.max_len = len;
    is_err(check(ks, tok, &o), CREST_JWT_OK, "max_len equal to the length");
    o.max_len = len - 1;
    is_err(check(ks, tok, &o), CREST_JWT_E_TOO_LONG, "one byte over max_len");
    free(tok);

    /* 8193 bytes of anything, refused before it is read */
    big = malloc(8194);
    memset(big, '.', 8193);
    big[8193] = '\0';
    is_err(check(ks, big, NULL), CREST_JWT_E_TOO_LONG, "8193 bytes: default "
           "limit 8 KiB");
    o.max_len = 0;
    is_err(check(ks, big, &o), CREST_JWT_E_TOO_LONG, "max_len 0 means 8 KiB");
    free(big);

    /* a large valid token: header and payload past the stack buffers */
    payload = calloc(1, 6000);
    strcpy(payload, "{\"exp\":1700000060,\"pad\":\"");
    memset(payload + strlen(payload), 'x', 4000);
    strcat(payload, "\"}");
    big = calloc(1, 1000);
    strcpy(big, "{\"alg\":\"HS256\",\"x\":\"");
    memset(big + strlen(big), 'y', 600);
    strcat(big, "\"}");
    tok = hs_token(big, payload, "SHA256", SECRET, strlen(SECRET));
    o.max_len = 16384;
    is_err(check(ks, tok, &o), CREST_JWT_OK, "%zu-byte token with a large "
           "header and payload", strlen(tok));
    free(tok);
    free(big);
    free(payload);

    crest_jwt_keyset_free(ks);
}


static void
test_times(void)
{
    crest_jwt_keyset_t       *ks;
    crest_jwt_verify_opts_t   o;
    char                     *tok, payload[128];
    crest_jwt_claims_t        c;
    crest_jwt_err_t           e;

    ks = hs_keyset();
    opts_default(&o);

#define TIME_CASE(json, skew, want, name)                                    \
    do {                                                                     \
        tok = hs256(json);                                                   \
        o.leeway = (skew);                                                   \
        is_err(check(ks, tok, &o), (want), "%s", (name));                    \
        free(tok);                                                           \
    } while (0)

    TIME_CASE("{\"exp\":1700000001}", 0, CREST_JWT_OK, "exp now+1: valid");
    TIME_CASE("{\"exp\":1700000000}", 0, CREST_JWT_E_EXPIRED,
              "exp == now: expired");
    TIME_CASE("{\"exp\":1699999999}", 0, CREST_JWT_E_EXPIRED,
              "exp now-1: expired");
    TIME_CASE("{\"exp\":1699999971}", 30, CREST_JWT_OK,
              "exp now-29, leeway 30: valid");
    TIME_CASE("{\"exp\":1699999970}", 30, CREST_JWT_E_EXPIRED,
              "exp now-30, leeway 30: expired");
    TIME_CASE("{\"exp\":1700000000.5}", 0, CREST_JWT_OK,
              "exp now+0.5 (a float): valid");
    TIME_CASE("{\"exp\":1699999999.9}", 0, CREST_JWT_E_EXPIRED,
              "exp now-0.1 (a float): expired");
    TIME_CASE("{\"exp\":1.7e9}", 0, CREST_JWT_E_EXPIRED,
              "exp 1.7e9 (exponent form) == now: expired");
    TIME_CASE("{\"exp\":-9223372036854775808}", 0, CREST_JWT_E_EXPIRED,
              "exp INT64_MIN: expired");
    TIME_CASE("{\"exp\":9223372036854775807}", 0, CREST_JWT_OK,
              "exp INT64_MAX: valid");
    TIME_CASE("{\"exp\":1700000060,\"nbf\":1700000000}", 0, CREST_JWT_OK,
              "nbf == now: valid");
    TIME_CASE("{\"exp\":1700000060,\"nbf\":1700000001}", 0,
              CREST_JWT_E_NOT_YET_VALID, "nbf now+1: not yet valid");
    TIME_CASE("{\"exp\":1700000060,\"nbf\":1700000030}", 30, CREST_JWT_OK,
              "nbf now+30, leeway 30: valid");
    TIME_CASE("{\"exp\":1700000060,\"nbf\":1700000031}", 30,
              CREST_JWT_E_NOT_YET_VALID, "nbf now+31, leeway 30: not yet "
              "valid");
    TIME_CASE("{\"exp\":1700000060,\"nbf\":1700000000.5}", 0,
              CREST_JWT_E_NOT_YET_VALID, "nbf now+0.5 (a float): not yet "
              "valid");
    TIME_CASE("{\"exp\":1700000060,\"iat\":1800000000}", 0, CREST_JWT_OK,
              "iat in the future is only informative");
    TIME_CASE("{\"exp\":1700000001}", -50, CREST_JWT_OK,
              "negative leeway counts as 0");

    o.leeway = 0;
    o.exp_optional = 1;
    tok = hs256("{\"sub\":\"u\"}");
    is_err(check(ks, tok, &o), CREST_JWT_OK, "no exp accepted when optional");
    free(tok);
    o.exp_optional = 0;

    tok = hs256("{\"exp\":1700000060.75,\"iat\":1699999999.25}");
    e = CREST_JWT_E_INTERNAL;
    crest_jwt_verify(ks, tok, strlen(tok), &o, &c, &e);
    ok(e == CREST_JWT_OK && c.has_exp && c.exp == 1700000060 && c.has_iat
       && c.iat == 1699999999 && c.sub == NULL && c.role == NULL,
       "float exp and iat round down; absent claims are NULL");
    crest_jwt_claims_free(&c);
    free(tok);

    snprintf(payload, sizeof(payload), "{\"exp\":%lld}", NOW + 10);
    tok = hs256(payload);
    o.now = NOW + 10;
    is_err(check(ks, tok, &o), CREST_JWT_E_EXPIRED, "now is the caller's");
    o.now = NOW + 9;
    is_err(check(ks, tok, &o), CREST_JWT_OK, "now is the caller's (2)");
    free(tok);

#undef TIME_CASE

    crest_jwt_keyset_free(ks);
}


static void
test_iss_aud(void)
{
    crest_jwt_keyset_t       *ks;
    crest_jwt_verify_opts_t   o;
    char                     *tok;

    ks = hs_keyset();
    opts_default(&o);

#define CLAIM_CASE(json, iss_, aud_, want, name)                             \
    do {                                                                     \
        tok = hs256(json);                                                   \
        o.iss = (iss_);                                                      \
        o.aud = (aud_);                                                      \
        is_err(check(ks, tok, &o), (want), "%s", (name));                    \
        free(tok);                                                           \
    } while (0)

    CLAIM_CASE("{\"exp\":1700000060,\"iss\":\"crest\"}", "crest", NULL,
               CREST_JWT_OK, "iss as required");
    CLAIM_CASE("{\"exp\":1700000060,\"iss\":\"other\"}", "crest", NULL,
               CREST_JWT_E_BAD_ISSUER, "iss other than required");
    CLAIM_CASE("{\"exp\":1700000060,\"iss\":\"crestx\"}", "crest", NULL,
               CREST_JWT_E_BAD_ISSUER, "iss with the required as prefix");
    CLAIM_CASE("{\"exp\":1700000060}", "crest", NULL,
               CREST_JWT_E_BAD_ISSUER, "iss missing when required");
    CLAIM_CASE("{\"exp\":1700000060,\"iss\":\"any\"}", NULL, NULL,
               CREST_JWT_OK, "iss not checked when not required");

    CLAIM_CASE("{\"exp\":1700000060,\"aud\":\"api\"}", NULL, "api",
               CREST_JWT_OK, "aud string as required");
    CLAIM_CASE("{\"exp\":1700000060,\"aud\":[\"web\",\"api\"]}", NULL, "api",
               CREST_JWT_OK, "aud array containing the required");
    CLAIM_CASE("{\"exp\":1700000060,\"aud\":[\"web\",\"apix\"]}", NULL,
               "api", CREST_JWT_E_BAD_AUDIENCE, "aud array without it");
    CLAIM_CASE("{\"exp\":1700000060,\"aud\":[]}", NULL, "api",
               CREST_JWT_E_BAD_AUDIENCE, "aud empty array");
    CLAIM_CASE("{\"exp\":1700000060,\"aud\":\"web\"}", NULL, "api",
               CREST_JWT_E_BAD_AUDIENCE, "aud string other than required");
    CLAIM_CASE("{\"exp\":1700000060}", NULL, "api",
               CREST_JWT_E_BAD_AUDIENCE, "aud missing when required");
    CLAIM_CASE("{\"exp\":1700000060,\"aud\":\"api\"}", NULL, NULL,
               CREST_JWT_E_BAD_AUDIENCE, "aud present, none required "
               "(RFC 7519 4.1.3)");
    CLAIM_CASE("{\"exp\":1700000060,\"aud\":[\"api\",7]}", NULL, "api",
               CREST_JWT_E_MALFORMED, "aud array with a non-string");
    CLAIM_CASE("{\"exp\":1700000060,\"iss\":\"crest\",\"aud\":[\"api\"]}",
               "crest", "api", CREST_JWT_OK, "iss and aud together");

#undef CLAIM_CASE

    crest_jwt_keyset_free(ks);
}


/* --- key selection ------------------------------------------------------ */

static void
test_kid_selection(void)
{
    static const char  *secrets[] = {
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "cccccccccccccccccccccccccccccccc",
    };
    crest_jwt_keyset_t  *ks, *one, *empty;
    crest_jwt_claims_t   c;
    crest_jwt_err_t      e;
    char                *tok;

    ks = crest_jwt_keyset_new();
    crest_jwt_keyset_add_hmac(ks, "a", CREST_JWT_HS256, secrets[0], 32, NULL,
                              NULL, 0);
    crest_jwt_keyset_add_hmac(ks, "b", CREST_JWT_HS256, secrets[1], 32, NULL,
                              NULL, 0);
    crest_jwt_keyset_add_hmac(ks, "c", CREST_JWT_HS384,
                              "cccccccccccccccccccccccccccccccccccccccccccccccc",
                              48, NULL, NULL, 0);

    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"b\"}", P, "SHA256",
                   secrets[1], 32);
    e = CREST_JWT_E_INTERNAL;
    crest_jwt_verify(ks, tok, strlen(tok), &(crest_jwt_verify_opts_t)
                     { .now = NOW }, &c, &e);
    ok(e == CREST_JWT_OK && c.key == crest_jwt_keyset_find(ks, "b", 1),
       "kid b selects key b");
    crest_jwt_claims_free(&c);
    free(tok);

    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"b\"}", P, "SHA256",
                   secrets[0], 32);
    is_err(check(ks, tok, NULL), CREST_JWT_E_BAD_SIGNATURE,
           "kid b, signed with a's secret");
    free(tok);

    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"c\"}", P, "SHA256",
                   secrets[2], 32);
    is_err(check(ks, tok, NULL), CREST_JWT_E_ALG_MISMATCH,
           "kid c (HS384) with alg HS256");
    free(tok);

    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"B\"}", P, "SHA256",
                   secrets[1], 32);
    is_err(check(ks, tok, NULL), CREST_JWT_E_UNKNOWN_KID,
           "kid matching is exact");
    free(tok);

    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"\"}", P, "SHA256",
                   secrets[1], 32);
    is_err(check(ks, tok, NULL), CREST_JWT_E_UNKNOWN_KID, "empty kid");
    free(tok);

    tok = hs_token("{\"alg\":\"HS256\"}", P, "SHA256", secrets[0], 32);
    is_err(check(ks, tok, NULL), CREST_JWT_E_NO_KEY,
           "no kid and three keys: no suitable key");

    empty = crest_jwt_keyset_new();
    is_err(check(empty, tok, NULL), CREST_JWT_E_NO_KEY,
           "no kid and an empty key set");
    crest_jwt_keyset_free(empty);
    is_err(check(NULL, tok, NULL), CREST_JWT_E_NO_KEY,
           "no kid and a NULL key set");

    one = crest_jwt_keyset_new();
    crest_jwt_keyset_add_hmac(one, "a", CREST_JWT_HS256, secrets[0], 32, NULL,
                              NULL, 0);
    is_err(check(one, tok, NULL), CREST_JWT_OK,
           "no kid and exactly one key (which has a kid): that key");
    free(tok);
    crest_jwt_keyset_free(one);

    one = hs_keyset();
    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"a\"}", P, "SHA256", SECRET,
                   strlen(SECRET));
    is_err(check(one, tok, NULL), CREST_JWT_E_UNKNOWN_KID,
           "kid given, the only key has none: unknown kid");
    free(tok);
    crest_jwt_keyset_free(one);

    crest_jwt_keyset_free(ks);
}


/*
 * The classic attack: the verifier holds an RSA public key, the attacker
 * HMACs a token with the key's PEM text as the secret and says HS256.  A
 * library that lets the header choose the algorithm would check the HMAC
 * with the PEM as secret and accept it.
 */
static void
test_hs256_with_rsa_public_key(void)
{
    crest_jwt_keyset_t  *ks;
    char                *pem, *tok, err[256];

    ks = crest_jwt_keyset_new();
    pem = pem_of(rsa_key, 0);
    crest_jwt_keyset_add_pem(ks, NULL, CREST_JWT_ALG_AUTO, pem, strlen(pem),
                             NULL, err, sizeof(err));

    tok = hs_token(H, "{\"sub\":\"admin\",\"role\":\"admin\","
                   "\"exp\":1700000060}", "SHA256", pem, strlen(pem));
    is_err(check(ks, tok, NULL), CREST_JWT_E_ALG_MISMATCH,
           "HS256 token HMAC'd with the RSA public PEM: alg mismatch");
    free(tok);

    /* the same with a kid naming the RSA key */
    crest_jwt_keyset_free(ks);
    ks = crest_jwt_keyset_new();
    crest_jwt_keyset_add_pem(ks, "rsa", CREST_JWT_ALG_AUTO, pem, strlen(pem),
                             NULL, err, sizeof(err));
    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"rsa\"}",
                   "{\"exp\":1700000060}", "SHA256", pem, strlen(pem));
    is_err(check(ks, tok, NULL), CREST_JWT_E_ALG_MISMATCH,
           "... also when its kid names the RSA key");
    free(tok);

    ok(crest_jwt_keyset_add_hmac(ks, NULL, CREST_JWT_HS256, pem, strlen(pem),
                                 NULL, err, sizeof(err)) == -1,
       "and the PEM cannot be configured as an HMAC secret");

    free(pem);
    crest_jwt_keyset_free(ks);
}


/* --- JWKS --------------------------------------------------------------- */

static char *
bn_b64(EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM         *bn;
    unsigned char   buf[1024];
    int             n;
    char           *s;

    bn = NULL;
    EVP_PKEY_get_bn_param(k, param, &bn);
    n = pad ? BN_bn2binpad(bn, buf, (int) pad) : BN_bn2bin(bn, buf);
    s = b64(buf, (size_t) n);
    BN_free(bn);

    return s;
}


static char *
jwk_rsa(EVP_PKEY *k, const char *extra)
{
    char  *n, *e, *s;

    n = bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0);
    e = bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
    s = malloc(strlen(n) + strlen(e) + strlen(extra) + 64);
    sprintf(s, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", n, e, extra);
    free(n);
    free(e);

    return s;
}


static char *
jwk_ec(EVP_PKEY *k, const char *crv, size_t size, const char *extra)
{
    char  *x, *y, *s;

    x = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, size);
    y = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, size);
    s = malloc(strlen(x) + strlen(y) + strlen(extra) + 64);
    sprintf(s, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}",
            crv, x, y, extra);
    free(x);
    free(y);

    return s;
}


static char *
jwk_ed(EVP_PKEY *k, const char *extra)
{
    unsigned char   raw[32];
    size_t          n;
    char           *x, *s;

    n = sizeof(raw);
    EVP_PKEY_get_raw_public_key(k, raw, &n);
    x = b64(raw, n);
    s = malloc(strlen(x) + strlen(extra) + 64);
    sprintf(s, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"%s}", x,
            extra);
    free(x);

    return s;
}


/* Signs claims with the private key k under kid and alg. */
static char *
sign_with(EVP_PKEY *k, const char *kid, crest_jwt_alg_t alg)
{
    crest_jwt_keyset_t     *ks;
    const crest_jwt_key_t  *key;
    crest_buf_t             out;
    char                   *pem, *tok;

    ks = crest_jwt_keyset_new();
    pem = pem_of(k, 1);
    crest_jwt_keyset_add_pem(ks, kid, alg, pem, strlen(pem), &key, NULL, 0);
    free(pem);

    crest_buf_init(&out, &crest_malloc_allocator);
    crest_jwt_sign(key, P, strlen(P), &out);
    tok = strdup(out.data ? out.data : "");
    crest_buf_free(&out);
    crest_jwt_keyset_free(ks);

    return tok;
}


static int
add_jwks(crest_jwt_keyset_t *ks, const char *doc, char *err, size_t errlen)
{
    return crest_jwt_keyset_add_jwks(ks, doc, strlen(doc), err, errlen);
}


static void
test_jwks(void)
{
    crest_jwt_keyset_t  *ks;
    char                 err[512], *doc, *rsa, *rsa_ps, *ec, *ec384, *ed;
    char                 *tok, *k64, *bad, *q;
    size_t               len;

    rsa = jwk_rsa(rsa_key, ",\"kid\":\"rsa\",\"use\":\"sig\"");
    rsa_ps = jwk_rsa(rsa_key, ",\"kid\":\"rsa-ps\",\"alg\":\"PS256\"");
    ec = jwk_ec(ec256_key, "P-256", 32, ",\"kid\":\"ec\"");
    ec384 = jwk_ec(ec384_key, "P-384", 48, ",\"kid\":\"ec384\","
                   "\"alg\":\"ES384\"");
    ed = jwk_ed(ed_key, ",\"kid\":\"ed\"");
    k64 = b64(SECRET, 32);

    len = strlen(rsa) + strlen(rsa_ps) + strlen(ec) + strlen(ec384)
          + strlen(ed) + strlen(k64) + 256;
    doc = malloc(len);
    snprintf(doc, len, "{\"keys\":[%s,%s,%s,%s,%s,{\"kty\":\"oct\","
             "\"kid\":\"hs\",\"alg\":\"HS256\",\"k\":\"%s\"}]}",
             rsa, rsa_ps, ec, ec384, ed, k64);

    ks = crest_jwt_keyset_new();
    if (!ok(add_jwks(ks, doc, err, sizeof(err)) == 0, "JWKS of six keys "
            "loads"))
    {
        diag("%s", err);
    }
    is_int(crest_jwt_keyset_count(ks), 6, "six keys");

    ok(crest_jwt_key_alg(crest_jwt_keyset_find(ks, "rsa", 3))
       == CREST_JWT_RS256
       && crest_jwt_key_alg(crest_jwt_keyset_find(ks, "rsa-ps", 6))
          == CREST_JWT_PS256
       && crest_jwt_key_alg(crest_jwt_keyset_find(ks, "ec", 2))
          == CREST_JWT_ES256
       && crest_jwt_key_alg(crest_jwt_keyset_find(ks, "ec384", 5))
          == CREST_JWT_ES384
       && crest_jwt_key_alg(crest_jwt_keyset_find(ks, "ed", 2))
          == CREST_JWT_EDDSA
       && crest_jwt_key_alg(crest_jwt_keyset_find(ks, "hs", 2))
          == CREST_JWT_HS256,
       "algs inferred (RS256, ES256, EdDSA) or as stated (PS256, ES384, "
       "HS256)");
    ok(!crest_jwt_key_can_sign(crest_jwt_keyset_find(ks, "ec", 2))
       && crest_jwt_key_can_sign(crest_jwt_keyset_find(ks, "hs", 2)),
       "JWKS public keys cannot sign, oct keys can");

#define JWKS_OK(key, kid, alg, name)                                         \
    do {                                                                     \
        tok = sign_with((key), (kid), (alg));                                \
        is_err(check(ks, tok, NULL), CREST_JWT_OK, "%s", (name));            \
        free(tok);                                                           \
    } while (0)

    JWKS_OK(rsa_key, "rsa", CREST_JWT_RS256, "RS256 token verifies with the "
            "JWKS RSA key");
    JWKS_OK(rsa_key, "rsa-ps", CREST_JWT_PS256, "PS256 token verifies with "
            "the JWKS key pinned to PS256");
    JWKS_OK(ec256_key, "ec", CREST_JWT_ES256, "ES256 token verifies with the "
            "JWKS P-256 key");
    JWKS_OK(ec384_key, "ec384", CREST_JWT_ES384, "ES384 token verifies with "
            "the JWKS P-384 key");
    JWKS_OK(ed_key, "ed", CREST_JWT_EDDSA, "EdDSA token verifies with the "
            "JWKS Ed25519 key");

#undef JWKS_OK

    tok = hs_token("{\"alg\":\"HS256\",\"kid\":\"hs\"}", P, "SHA256", SECRET,
                   32);
    is_err(check(ks, tok, NULL), CREST_JWT_OK, "HS256 token verifies with the "
           "JWKS oct key");
    free(tok);

    tok = sign_with(rsa_key, "rsa-ps", CREST_JWT_RS256);
    is_err(check(ks, tok, NULL), CREST_JWT_E_ALG_MISMATCH, "RS256 token for "
           "the key pinned to PS256");
    free(tok);

    tok = sign_with(ec256_key, "ec384", CREST_JWT_ES256);
    is_err(check(ks, tok, NULL), CREST_JWT_E_ALG_MISMATCH, "ES256 token "
           "naming the P-384 key");
    free(tok);

    tok = sign_with(ec256_key, "ed", CREST_JWT_ES256);
    is_err(check(ks, tok, NULL), CREST_JWT_E_ALG_MISMATCH, "ES256 token "
           "naming the Ed25519 key");
    free(tok);

    tok = sign_with(ec256_key, "nope", CREST_JWT_ES256);
    is_err(check(ks, tok, NULL), CREST_JWT_E_UNKNOWN_KID, "kid not in the "
           "JWKS");
    free(tok);

    ok(add_jwks(ks, doc, err, sizeof(err)) == -1
       && strstr(err, "duplicate kid") != NULL
       && crest_jwt_keyset_count(ks) == 6,
       "loading the same JWKS again: duplicate kid, nothing added (%s)", err);
    free(doc);

    /* one bad key among good ones: nothing is added */
    len = strlen(ec) + strlen(rsa) + 256;
    doc = malloc(len);
    crest_jwt_keyset_free(ks);
    ks = crest_jwt_keyset_new();
    snprintf(doc, len, "{\"keys\":[%s,{\"kty\":\"RSA\",\"kid\":\"x\","
             "\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", ec);
    ok(add_jwks(ks, doc, err, sizeof(err)) == -1
       && crest_jwt_keyset_count(ks) == 0 && strstr(err, "JWKS key 1") != NULL
       && strstr(err, "\"x\"") != NULL,
       "use enc refused, the good key before it not kept (%s)", err);

#define JWKS_BAD(json, name)                                                 \
    do {                                                                     \
        err[0] = '\0';                                                       \
        ok(add_jwks(ks, (json), err, sizeof(err)) == -1                      \
           && crest_jwt_keyset_count(ks) == 0, "%s (%s)", (name), err);      \
    } while (0)

    JWKS_BAD("not json", "not JSON");
    JWKS_BAD("[]", "not an object");
    JWKS_BAD("{\"keys\":{}}", "keys not an array");
    JWKS_BAD("{\"keys\":[]}", "no keys");
    JWKS_BAD("{\"keys\":[1]}", "a key not an object");
    JWKS_BAD("{\"keys\":[{\"kid\":\"a\"}]}", "no kty");
    JWKS_BAD("{\"keys\":[{\"kty\":\"XYZ\"}]}", "unknown kty");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"k\":\"" SECRET "\"}]}",
             "oct without alg");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"AAAA\"}]}",
             "oct secret too short");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"RS256\",\"k\":\""
             "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"}]}",
             "oct with alg RS256");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\""
             "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"}]}",
             "k with padding");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"kid\":7,\"k\":\""
             "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"}]}",
             "kid a number");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\""
             "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"},"
             "{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"x\",\"k\":\"y\"}]}",
             "duplicate member");
    JWKS_BAD("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"kid\":\"a\","
             "\"k\":\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"},"
             "{\"kty\":\"oct\",\"alg\":\"HS256\",\"kid\":\"a\",\"k\":\""
             "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"}]}",
             "duplicate kid within the document");

    bad = jwk_ec(ec256_key, "P-256", 32, ",\"alg\":\"ES384\"");
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "P-256 key with alg ES384");
    free(bad);

    bad = jwk_ec(ec256_key, "P-384", 32, "");
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "P-256 coordinates with crv P-384");
    free(bad);

    bad = jwk_ec(ec256_key, "secp256k1", 32, "");
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "unsupported curve");
    free(bad);

    bad = jwk_ec(ec256_key, "P-256", 32, "");
    q = strstr(bad, "\"y\":\"") + 6;              /* off the curve */
    *q = *q == 'A' ? 'B' : 'A';
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "EC point not on the curve");
    free(bad);

    bad = jwk_ec(ec256_key, "P-256", 32, ",\"d\":\"AAAA\"");
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "private EC key");
    free(bad);

    bad = jwk_rsa(rsa_key, ",\"alg\":\"ES256\"");
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "RSA key with alg ES256");
    free(bad);

    bad = jwk_rsa(rsa_key, ",\"alg\":\"XS256\"");
    snprintf(doc, len, "{\"keys\":[%s]}", bad);
    JWKS_BAD(doc, "unknown alg");
    free(bad);

    JWKS_BAD("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
             "RSA key of 17 bits");
    JWKS_BAD("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "RSA without n");

    {
        unsigned char  huge[1100];
        char          *n64;

        memset(huge, 0xc5, sizeof(huge));
        n64 = b64(huge, sizeof(huge));
        free(doc);
        len = strlen(n64) + 128;
        doc = malloc(len);
        snprintf(doc, len, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\","
                 "\"e\":\"AQAB\"}]}", n64);
        JWKS_BAD(doc, "RSA modulus of 8800 bits");
        free(n64);
    }
    JWKS_BAD("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AAAA\"}]}",
             "OKP Ed448");
    JWKS_BAD("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}",
             "Ed25519 x of 3 bytes");
    JWKS_BAD("{\"keys\":[{\"kty\":\"OKP\",\"x\":\"AAAA\"}]}", "OKP without crv");

#undef JWKS_BAD

    is_int(ERR_peek_error(), 0, "failed JWKS loads leave no OpenSSL errors");

    free(doc);
    free(rsa);
    free(rsa_ps);
    free(ec);
    free(ec384);
    free(ed);
    free(k64);
    crest_jwt_keyset_free(ks);
}


/* --- claims and signing errors ------------------------------------------ */

static void
test_claims_api(void)
{
    crest_jwt_keyset_t       *ks;
    crest_jwt_verify_opts_t   o;
    crest_jwt_claims_t        c;
    const char               *s;
    size_t                    len;
    char                     *tok;
    int                       rc;

    ks = hs_keyset();
    opts_default(&o);

    tok = hs256("{\"exp\":1700000060,\"sub\":\"s\",\"org\":\"acme\","
                "\"n\":5,\"u\":\"caf\\u00e9\"}");

    rc = crest_jwt_verify(ks, tok, strlen(tok), &o, &c, NULL);
    ok(rc == 0, "err may be NULL");

    s = crest_jwt_claim_str(&c, "org", &len);
    ok(s && len == 4 && strcmp(s, "acme") == 0, "claim_str of a string");
    s = crest_jwt_claim_str(&c, "u", &len);
    ok(s && len == 5 && strcmp(s, "caf\xc3\xa9") == 0, "claim_str decodes "
       "escapes to UTF-8");
    ok(crest_jwt_claim_str(&c, "n", &len) == NULL, "claim_str of a number "
       "is NULL");
    ok(crest_jwt_claim_str(&c, "zz", NULL) == NULL, "claim_str of a missing "
       "claim is NULL");
    ok(json_integer_value(json_object_get(c.json, "n")) == 5,
       "the payload object is the caller's to read");

    crest_jwt_claims_free(&c);
    ok(c.json == NULL && c.sub == NULL, "claims_free clears");

    ok(crest_jwt_verify(ks, tok, strlen(tok), &o, NULL, NULL) == 0,
       "out may be NULL (the payload is released)");
    free(tok);

    tok = hs256("{\"exp\":1}");
    memset(&c, 0x5a, sizeof(c));
    ok(crest_jwt_verify(ks, tok, strlen(tok), &o, &c, NULL) == -1
       && c.json == NULL && c.sub == NULL, "on failure the claims are "
       "cleared");
    free(tok);

    crest_jwt_keyset_free(ks);
}


static void
test_sign_errors(void)
{
    static const char  *bad[] = {
        "", "[]", "1", "\"s\"", "{", "{\"a\":1,\"a\":2}", "{} {}", "null",
    };
    crest_jwt_keyset_t     *ks;
    const crest_jwt_key_t  *key;
    crest_buf_t             out;
    size_t                  i;
    int                     fails;

    ks = crest_jwt_keyset_new();
    crest_jwt_keyset_add_hmac(ks, "kid\"with quote", CREST_JWT_HS256, SECRET,
                              32, &key, NULL, 0);

    crest_buf_init(&out, &crest_malloc_allocator);
    crest_buf_appends(&out, "Bearer ");
    fails = 0;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fails += crest_jwt_sign(key, bad[i], strlen(bad[i]), &out) != -1
                 || out.len != 7;
    }

    is_int(fails, 0, "claims that are not one JSON object are refused and "
           "the buffer is left as it was");

    ok(crest_jwt_sign(key, P, strlen(P), &out) == 0
       && strncmp(out.data, "Bearer ey", 9) == 0,
       "signing appends after existing content");
    is_err(check(ks, out.data + 7, NULL), CREST_JWT_OK, "a kid with a quote "
           "is escaped in the header and round-trips");

    crest_buf_free(&out);
    crest_jwt_keyset_free(ks);
}


int
main(void)
{
    rsa_key = EVP_RSA_gen(2048);
    ec256_key = EVP_EC_gen("P-256");
    ec384_key = EVP_EC_gen("P-384");
    ec521_key = EVP_EC_gen("P-521");
    ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    if (!rsa_key || !ec256_key || !ec384_key || !ec521_key || !ed_key) {
        printf("Bail out! key generation failed\n");
        return 1;
    }

    test_alg_names();
    test_round_trips();
    test_ecdsa_sizes();
    test_key_loading();
    test_hs_cases();
    test_shape();
    test_too_long();
    test_times();
    test_iss_aud();
    test_kid_selection();
    test_hs256_with_rsa_public_key();
    test_jwks();
    test_claims_api();
    test_sign_errors();

    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec256_key);
    EVP_PKEY_free(ec384_key);
    EVP_PKEY_free(ec521_key);
    EVP_PKEY_free(ed_key);

    return done_testing();
}
