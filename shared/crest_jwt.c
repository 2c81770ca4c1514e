#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "crest_base64.h"
#include "crest_json.h"
#include "crest_jwt.h"


#define CREST_JWT_RSA_MIN_BITS  2048
#define CREST_JWT_RSA_MAX_BITS  8192
#define CREST_JWT_SIG_MAX       (CREST_JWT_RSA_MAX_BITS / 8)
#define CREST_JWT_ECDSA_DER_MAX 160     /* SEQUENCE of two 66-byte INTEGERs */

/*
 * Decoded headers and payloads up to these sizes stay on the stack; typical
 * tokens are far below them, so the common path allocates only in jansson
 * and OpenSSL.
 */
#define CREST_JWT_HDR_STACK     512
#define CREST_JWT_PAYLOAD_STACK 2048

typedef enum {
    CREST_JWT_FAM_HMAC = 1,
    CREST_JWT_FAM_RSA,
    CREST_JWT_FAM_PSS,
    CREST_JWT_FAM_EC,
    CREST_JWT_FAM_ED
} crest_jwt_family_t;

typedef struct {
    const char          *name;
    crest_jwt_family_t   family;
    const char          *md;        /* OpenSSL digest name; NULL for EdDSA */
    int                  curve;     /* EC: the curve's NID */
    const char          *crv;       /* JWK crv */
    size_t               sig_len;   /* fixed signature size; 0 for RSA */
} crest_jwt_alg_info_t;

static const crest_jwt_alg_info_t  crest_jwt_algs[] = {
    [CREST_JWT_HS256] = { "HS256", CREST_JWT_FAM_HMAC, "SHA256", 0, NULL, 32 },
    [CREST_JWT_HS384] = { "HS384", CREST_JWT_FAM_HMAC, "SHA384", 0, NULL, 48 },
    [CREST_JWT_HS512] = { "HS512", CREST_JWT_FAM_HMAC, "SHA512", 0, NULL, 64 },
    [CREST_JWT_RS256] = { "RS256", CREST_JWT_FAM_RSA, "SHA256", 0, NULL, 0 },
    [CREST_JWT_RS384] = { "RS384", CREST_JWT_FAM_RSA, "SHA384", 0, NULL, 0 },
    [CREST_JWT_RS512] = { "RS512", CREST_JWT_FAM_RSA, "SHA512", 0, NULL, 0 },
    [CREST_JWT_PS256] = { "PS256", CREST_JWT_FAM_PSS, "SHA256", 0, NULL, 0 },
    [CREST_JWT_PS384] = { "PS384", CREST_JWT_FAM_PSS, "SHA384", 0, NULL, 0 },
    [CREST_JWT_PS512] = { "PS512", CREST_JWT_FAM_PSS, "SHA512", 0, NULL, 0 },
    [CREST_JWT_ES256] = { "ES256", CREST_JWT_FAM_EC, "SHA256",
                          NID_X9_62_prime256v1, "P-256", 64 },
    [CREST_JWT_ES384] = { "ES384", CREST_JWT_FAM_EC, "SHA384",
                          NID_secp384r1, "P-384", 96 },
    [CREST_JWT_ES512] = { "ES512", CREST_JWT_FAM_EC, "SHA512",
                          NID_secp521r1, "P-521", 132 },
    [CREST_JWT_EDDSA] = { "EdDSA", CREST_JWT_FAM_ED, NULL, 0, "Ed25519", 64 },
};

#define CREST_JWT_NALGS  (sizeof(crest_jwt_algs) / sizeof(crest_jwt_algs[0]))

struct crest_jwt_key_s {
    crest_jwt_alg_t   alg;
    char             *kid;        /* malloc'd, or NULL */
    size_t            kid_len;
    EVP_MAC_CTX      *hmac;       /* HMAC: keyed once, duplicated per use */
    EVP_PKEY         *pkey;       /* the others */
    EVP_MD           *md;         /* fetched once: no implicit fetch per token */
    size_t            sig_len;    /* the only signature size accepted */
    unsigned          can_sign:1;
};

struct crest_jwt_keyset_s {
    crest_jwt_key_t  **keys;
    size_t             nkeys;
    size_t             cap;
};

static const char  *crest_jwt_errors[] = {
    [CREST_JWT_OK]              = "ok",
    [CREST_JWT_E_MALFORMED]     = "malformed token",
    [CREST_JWT_E_TOO_LONG]      = "token too long",
    [CREST_JWT_E_ALG_NONE]      = "unsigned token (alg none)",
    [CREST_JWT_E_ALG_MISMATCH]  = "token alg does not match the key's alg",
    [CREST_JWT_E_UNKNOWN_KID]   = "unknown key id",
    [CREST_JWT_E_NO_KEY]        = "no suitable key",
    [CREST_JWT_E_BAD_SIGNATURE] = "bad signature",
    [CREST_JWT_E_EXPIRED]       = "token expired",
    [CREST_JWT_E_NOT_YET_VALID] = "token not yet valid",
    [CREST_JWT_E_NO_EXP]        = "token has no expiry",
    [CREST_JWT_E_BAD_ISSUER]    = "bad issuer",
    [CREST_JWT_E_BAD_AUDIENCE]  = "bad audience",
    [CREST_JWT_E_UNSUPPORTED]   = "unsupported token header (crit or typ)",
    [CREST_JWT_E_INTERNAL]      = "internal error",
};


/* --- algorithms and errors ---------------------------------------------- */

static const crest_jwt_alg_info_t *
crest_jwt_alg_info(crest_jwt_alg_t alg)
{
    if ((size_t) alg >= CREST_JWT_NALGS || crest_jwt_algs[alg].name == NULL) {
        return NULL;
    }

    return &crest_jwt_algs[alg];
}


const char *
crest_jwt_alg_name(crest_jwt_alg_t alg)
{
    const crest_jwt_alg_info_t  *info;

    info = crest_jwt_alg_info(alg);

    return info ? info->name : NULL;
}


int
crest_jwt_alg_parse(const char *name, size_t len, crest_jwt_alg_t *alg)
{
    size_t  i;

    for (i = 0; i < CREST_JWT_NALGS; i++) {
        if (crest_jwt_algs[i].name != NULL
            && strlen(crest_jwt_algs[i].name) == len
            && memcmp(crest_jwt_algs[i].name, name, len) == 0)
        {
            *alg = (crest_jwt_alg_t) i;
            return 0;
        }
    }

    return -1;
}


const char *
crest_jwt_strerror(crest_jwt_err_t e)
{
    if ((size_t) e >= sizeof(crest_jwt_errors) / sizeof(crest_jwt_errors[0])
        || crest_jwt_errors[e] == NULL)
    {
        return "unknown error";
    }

    return crest_jwt_errors[e];
}


/* --- key sets ----------------------------------------------------------- */

static int
crest_jwt_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
crest_jwt_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }

    /*
     * err tells the story now; errors left in OpenSSL's queue would be
     * blamed on whatever nginx does next with TLS
     */
    ERR_clear_error();

    return -1;
}


static void
crest_jwt_key_free(crest_jwt_key_t *key)
{
    if (key == NULL) {
        return;
    }

    EVP_MAC_CTX_free(key->hmac);
    EVP_PKEY_free(key->pkey);
    EVP_MD_free(key->md);
    free(key->kid);
    free(key);
}


crest_jwt_keyset_t *
crest_jwt_keyset_new(void)
{
    return calloc(1, sizeof(crest_jwt_keyset_t));
}


void
crest_jwt_keyset_free(crest_jwt_keyset_t *ks)
{
    size_t  i;

    if (ks == NULL) {
        return;
    }

    for (i = 0; i < ks->nkeys; i++) {
        crest_jwt_key_free(ks->keys[i]);
    }

    free(ks->keys);
    free(ks);
}


size_t
crest_jwt_keyset_count(const crest_jwt_keyset_t *ks)
{
    return ks->nkeys;
}


const crest_jwt_key_t *
crest_jwt_keyset_key(const crest_jwt_keyset_t *ks, size_t i)
{
    return i < ks->nkeys ? ks->keys[i] : NULL;
}


const crest_jwt_key_t *
crest_jwt_keyset_find(const crest_jwt_keyset_t *ks, const char *kid,
    size_t kid_len)
{
    size_t            i;
    crest_jwt_key_t  *key;

    if (ks == NULL) {
        return NULL;
    }

    for (i = 0; i < ks->nkeys; i++) {
        key = ks->keys[i];

        if (key->kid != NULL && key->kid_len == kid_len
            && memcmp(key->kid, kid, kid_len) == 0)
        {
            return key;
        }
    }

    return NULL;
}


crest_jwt_alg_t
crest_jwt_key_alg(const crest_jwt_key_t *key)
{
    return key->alg;
}


const char *
crest_jwt_key_kid(const crest_jwt_key_t *key)
{
    return key->kid;
}


int
crest_jwt_key_can_sign(const crest_jwt_key_t *key)
{
    return key->can_sign;
}


/* A new key with its kid copied; the caller fills in the rest. */
static crest_jwt_key_t *
crest_jwt_key_new(const char *kid, crest_jwt_alg_t alg, char *err,
    size_t errlen)
{
    crest_jwt_key_t  *key;

    key = calloc(1, sizeof(crest_jwt_key_t));
    if (key == NULL) {
        crest_jwt_fail(err, errlen, "out of memory");
        return NULL;
    }

    key->alg = alg;

    if (kid != NULL) {
        key->kid_len = strlen(kid);
        key->kid = strdup(kid);

        if (key->kid == NULL) {
            free(key);
            crest_jwt_fail(err, errlen, "out of memory");
            return NULL;
        }
    }

    return key;
}


/* Takes ownership of key: on failure it is freed. */
static int
crest_jwt_keyset_push(crest_jwt_keyset_t *ks, crest_jwt_key_t *key,
    char *err, size_t errlen)
{
    size_t             cap;
    crest_jwt_key_t  **keys;

    if (key->kid != NULL) {
        if (key->kid_len == 0) {
            crest_jwt_key_free(key);
            return crest_jwt_fail(err, errlen, "empty kid");
        }

        if (crest_jwt_keyset_find(ks, key->kid, key->kid_len) != NULL) {
            crest_jwt_fail(err, errlen, "duplicate kid \"%s\"", key->kid);
            crest_jwt_key_free(key);
            return -1;
        }
    }

    if (ks->nkeys == ks->cap) {
        cap = ks->cap ? ks->cap * 2 : 4;
        keys = realloc(ks->keys, cap * sizeof(crest_jwt_key_t *));

        if (keys == NULL) {
            crest_jwt_key_free(key);
            return crest_jwt_fail(err, errlen, "out of memory");
        }

        ks->keys = keys;
        ks->cap = cap;
    }

    ks->keys[ks->nkeys++] = key;

    return 0;
}


/* Removes the keys added after the set had n, when a batch fails. */
static void
crest_jwt_keyset_truncate(crest_jwt_keyset_t *ks, size_t n)
{
    while (ks->nkeys > n) {
        crest_jwt_key_free(ks->keys[--ks->nkeys]);
    }
}


static int
crest_jwt_looks_like_pem(const void *p, size_t len)
{
    static const char  mark[] = "-----BEGIN";

    return memmem(p, len, mark, sizeof(mark) - 1) != NULL;
}


static crest_jwt_key_t *
crest_jwt_hmac_key(const char *kid, crest_jwt_alg_t alg, const void *secret,
    size_t len, char *err, size_t errlen)
{
    const crest_jwt_alg_info_t  *info;
    crest_jwt_key_t             *key;
    EVP_MAC                     *mac;
    OSSL_PARAM                   params[2];

    info = crest_jwt_alg_info(alg);

    if (info == NULL || info->family != CREST_JWT_FAM_HMAC) {
        crest_jwt_fail(err, errlen, "an HMAC secret needs alg HS256, HS384 "
                       "or HS512");
        return NULL;
    }

    if (len < info->sig_len) {
        crest_jwt_fail(err, errlen, "%s needs a secret of at least %zu bytes",
                       info->name, info->sig_len);
        return NULL;
    }

    if (crest_jwt_looks_like_pem(secret, len)) {
        crest_jwt_fail(err, errlen, "the HMAC secret is a PEM block: "
                       "configure it as a public or private key instead");
        return NULL;
    }

    key = crest_jwt_key_new(kid, alg, err, errlen);
    if (key == NULL) {
        return NULL;
    }

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac != NULL) {
        key->hmac = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac);
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) info->md, 0);
    params[1] = OSSL_PARAM_construct_end();

    if (key->hmac == NULL || !EVP_MAC_init(key->hmac, secret, len, params)) {
        crest_jwt_key_free(key);
        crest_jwt_fail(err, errlen, "cannot set up HMAC-%s", info->md);
        return NULL;
    }

    key->sig_len = info->sig_len;
    key->can_sign = 1;

    return key;
}


int
crest_jwt_keyset_add_hmac(crest_jwt_keyset_t *ks, const char *kid,
    crest_jwt_alg_t alg, const void *secret, size_t len,
    const crest_jwt_key_t **key, char *err, size_t errlen)
{
    crest_jwt_key_t  *k;

    k = crest_jwt_hmac_key(kid, alg, secret, len, err, errlen);

    if (k == NULL || crest_jwt_keyset_push(ks, k, err, errlen) != 0) {
        return -1;
    }

    if (key != NULL) {
        *key = k;
    }

    return 0;
}


/* The NID of an EC key's curve, or NID_undef. */
static int
crest_jwt_pkey_curve(const EVP_PKEY *pkey)
{
    char  name[64];
    int   nid;

    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                        name, sizeof(name), NULL))
    {
        return NID_undef;
    }

    nid = OBJ_sn2nid(name);

    return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}


/* The alg a key type gets when none is stated, or AUTO when none fits. */
static crest_jwt_alg_t
crest_jwt_pkey_default_alg(const EVP_PKEY *pkey)
{
    size_t  i;
    int     nid;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        return CREST_JWT_RS256;
    }

    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        return CREST_JWT_EDDSA;
    }

    if (EVP_PKEY_is_a(pkey, "EC")) {
        nid = crest_jwt_pkey_curve(pkey);

        for (i = 0; i < CREST_JWT_NALGS; i++) {
            if (crest_jwt_algs[i].family == CREST_JWT_FAM_EC
                && crest_jwt_algs[i].curve == nid)
            {
                return (crest_jwt_alg_t) i;
            }
        }
    }

    return CREST_JWT_ALG_AUTO;
}


/*
 * Wraps pkey (taking ownership, freed on failure) in a key pinned to alg,
 * after checking that alg suits the key: this pinning is what stops a token
 * from choosing an algorithm its key was never meant for.
 */
static crest_jwt_key_t *
crest_jwt_pkey_key(const char *kid, crest_jwt_alg_t alg, EVP_PKEY *pkey,
    int can_sign, char *err, size_t errlen)
{
    const crest_jwt_alg_info_t  *info;
    crest_jwt_alg_t              natural;
    crest_jwt_key_t             *key;
    int                          bits;

    natural = crest_jwt_pkey_default_alg(pkey);

    if (natural == CREST_JWT_ALG_AUTO) {
        crest_jwt_fail(err, errlen, "unsupported key type or curve (%s); RSA, "
                       "EC P-256, P-384, P-521 and Ed25519 are supported",
                       EVP_PKEY_get0_type_name(pkey) != NULL
                       ? EVP_PKEY_get0_type_name(pkey) : "unknown");
        EVP_PKEY_free(pkey);
        return NULL;
    }

    if (alg == CREST_JWT_ALG_AUTO) {
        alg = natural;
    }

    info = crest_jwt_alg_info(alg);

    if (info == NULL
        || !(alg == natural
             || (crest_jwt_algs[natural].family == CREST_JWT_FAM_RSA
                 && (info->family == CREST_JWT_FAM_RSA
                     || info->family == CREST_JWT_FAM_PSS))))
    {
        EVP_PKEY_free(pkey);
        crest_jwt_fail(err, errlen, "alg %s does not suit this %s key",
                       info ? info->name : "(unknown)",
                       crest_jwt_algs[natural].crv != NULL
                       ? crest_jwt_algs[natural].crv : "RSA");
        return NULL;
    }

    if (info->family == CREST_JWT_FAM_RSA || info->family == CREST_JWT_FAM_PSS) {
        bits = EVP_PKEY_get_bits(pkey);

        if (bits < CREST_JWT_RSA_MIN_BITS || bits > CREST_JWT_RSA_MAX_BITS) {
            EVP_PKEY_free(pkey);
            crest_jwt_fail(err, errlen, "RSA key of %d bits (%d to %d are "
                           "accepted)", bits, CREST_JWT_RSA_MIN_BITS,
                           CREST_JWT_RSA_MAX_BITS);
            return NULL;
        }
    }

    key = crest_jwt_key_new(kid, alg, err, errlen);
    if (key == NULL) {
        EVP_PKEY_free(pkey);
        return NULL;
    }

    key->pkey = pkey;
    key->can_sign = can_sign ? 1 : 0;
    key->sig_len = info->sig_len ? info->sig_len
                                 : (size_t) EVP_PKEY_get_size(pkey);

    if (info->md != NULL) {
        key->md = EVP_MD_fetch(NULL, info->md, NULL);

        if (key->md == NULL) {
            crest_jwt_key_free(key);
            crest_jwt_fail(err, errlen, "digest %s unavailable", info->md);
            return NULL;
        }
    }

    return key;
}


/* Never prompts: a key that needs a passphrase fails to load. */
static int
crest_jwt_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) u;

    return -1;
}


int
crest_jwt_keyset_add_pem(crest_jwt_keyset_t *ks, const char *kid,
    crest_jwt_alg_t alg, const char *pem, size_t len,
    const crest_jwt_key_t **key, char *err, size_t errlen)
{
    BIO              *bio;
    EVP_PKEY         *pkey;
    crest_jwt_key_t  *k;
    int               private;

    if (len > INT32_MAX) {
        return crest_jwt_fail(err, errlen, "PEM too large");
    }

    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        return crest_jwt_fail(err, errlen, "out of memory");
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, crest_jwt_no_passphrase, NULL);
    private = pkey != NULL;
    BIO_free(bio);

    if (pkey == NULL) {
        ERR_clear_error();

        bio = BIO_new_mem_buf(pem, (int) len);
        if (bio == NULL) {
            return crest_jwt_fail(err, errlen, "out of memory");
        }

        pkey = PEM_read_bio_PUBKEY(bio, NULL, crest_jwt_no_passphrase, NULL);
        BIO_free(bio);
    }

    if (pkey == NULL) {
        return crest_jwt_fail(err, errlen, "no public or unencrypted private "
                              "key in the PEM data");
    }

    k = crest_jwt_pkey_key(kid, alg, pkey, private, err, errlen);

    if (k == NULL || crest_jwt_keyset_push(ks, k, err, errlen) != 0) {
        return -1;
    }

    if (key != NULL) {
        *key = k;
    }

    return 0;
}


/* --- JWKS --------------------------------------------------------------- */

/*
 * Decodes the base64url member name of a JWK into a malloc'd block; with
 * want != 0 it must decode to exactly want bytes.
 */
static unsigned char *
crest_jwk_bytes(json_t *jwk, const char *name, size_t want, size_t *len,
    char *err, size_t errlen)
{
    json_t         *v;
    const char     *s;
    size_t          n, cap;
    unsigned char  *p;

    v = json_object_get(jwk, name);

    if (!json_is_string(v)) {
        crest_jwt_fail(err, errlen, "\"%s\" missing or not a string", name);
        return NULL;
    }

    s = json_string_value(v);
    n = json_string_length(v);
    cap = crest_b64url_decoded_len(n);

    if (cap == (size_t) -1 || cap == 0) {
        crest_jwt_fail(err, errlen, "\"%s\" is not base64url", name);
        return NULL;
    }

    p = malloc(cap);
    if (p == NULL) {
        crest_jwt_fail(err, errlen, "out of memory");
        return NULL;
    }

    if (crest_b64url_decode(p, cap, s, n, len) != 0) {
        free(p);
        crest_jwt_fail(err, errlen, "\"%s\" is not base64url", name);
        return NULL;
    }

    if (want != 0 && *len != want) {
        free(p);
        crest_jwt_fail(err, errlen, "\"%s\" is %zu bytes, not %zu", name, *len,
                       want);
        return NULL;
    }

    return p;
}


/* Builds a public key of type from params; NULL on failure. */
static EVP_PKEY *
crest_jwk_fromdata(const char *type, OSSL_PARAM *params)
{
    EVP_PKEY_CTX  *ctx;
    EVP_PKEY      *pkey;

    pkey = NULL;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    {
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(ctx);

    return pkey;
}


static EVP_PKEY *
crest_jwk_rsa(json_t *jwk, char *err, size_t errlen)
{
    unsigned char   *n, *e;
    size_t           n_len, e_len;
    BIGNUM          *bn_n, *bn_e;
    OSSL_PARAM_BLD  *bld;
    OSSL_PARAM      *params;
    EVP_PKEY        *pkey;

    pkey = NULL;
    params = NULL;
    bn_n = bn_e = NULL;
    e = NULL;
    bld = NULL;

    n = crest_jwk_bytes(jwk, "n", 0, &n_len, err, errlen);
    if (n == NULL) {
        return NULL;
    }

    /* spare OpenSSL the checks of absurd moduli; one leading zero is
     * tolerated, as some publishers add it */
    if (n_len > CREST_JWT_RSA_MAX_BITS / 8 + 1) {
        crest_jwt_fail(err, errlen, "RSA modulus of %zu bytes (at most %d "
                       "bits are accepted)", n_len, CREST_JWT_RSA_MAX_BITS);
        goto done;
    }

    e = crest_jwk_bytes(jwk, "e", 0, &e_len, err, errlen);
    if (e == NULL) {
        goto done;
    }

    bn_n = BN_bin2bn(n, (int) n_len, NULL);
    bn_e = BN_bin2bn(e, (int) e_len, NULL);
    bld = OSSL_PARAM_BLD_new();

    if (bn_n == NULL || bn_e == NULL || bld == NULL
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
    {
        crest_jwt_fail(err, errlen, "out of memory");
        goto done;
    }

    pkey = crest_jwk_fromdata("RSA", params);
    if (pkey == NULL) {
        crest_jwt_fail(err, errlen, "invalid RSA key");
    }

done:

    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);

    return pkey;
}


static EVP_PKEY *
crest_jwk_ec(json_t *jwk, const char *crv, char *err, size_t errlen)
{
    unsigned char  *x, *y, point[1 + 2 * 66];
    size_t          i, size, x_len, y_len;
    OSSL_PARAM      params[3];
    EVP_PKEY       *pkey;

    size = 0;

    for (i = 0; i < CREST_JWT_NALGS; i++) {
        if (crest_jwt_algs[i].family == CREST_JWT_FAM_EC
            && strcmp(crest_jwt_algs[i].crv, crv) == 0)
        {
            size = crest_jwt_algs[i].sig_len / 2;
        }
    }

    if (size == 0) {
        crest_jwt_fail(err, errlen, "unsupported EC curve \"%s\"", crv);
        return NULL;
    }

    /* coordinates are fixed-size (RFC 7518 6.2.1.2), so no BIGNUMs needed */
    x = crest_jwk_bytes(jwk, "x", size, &x_len, err, errlen);
    if (x == NULL) {
        return NULL;
    }

    y = crest_jwk_bytes(jwk, "y", size, &y_len, err, errlen);
    if (y == NULL) {
        free(x);
        return NULL;
    }

    point[0] = 0x04;
    memcpy(point + 1, x, size);
    memcpy(point + 1 + size, y, size);
    free(x);
    free(y);

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *) crv, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  point, 1 + 2 * size);
    params[2] = OSSL_PARAM_construct_end();

    pkey = crest_jwk_fromdata("EC", params);
    if (pkey == NULL) {
        crest_jwt_fail(err, errlen, "invalid EC key (not a point of %s?)", crv);
    }

    return pkey;
}


static EVP_PKEY *
crest_jwk_okp(json_t *jwk, const char *crv, char *err, size_t errlen)
{
    unsigned char  *x;
    size_t          x_len;
    OSSL_PARAM      params[2];
    EVP_PKEY       *pkey;

    if (strcmp(crv, "Ed25519") != 0) {
        crest_jwt_fail(err, errlen, "unsupported OKP curve \"%s\"", crv);
        return NULL;
    }

    x = crest_jwk_bytes(jwk, "x", 32, &x_len, err, errlen);
    if (x == NULL) {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, x,
                                                  x_len);
    params[1] = OSSL_PARAM_construct_end();

    pkey = crest_jwk_fromdata("ED25519", params);
    free(x);

    if (pkey == NULL) {
        crest_jwt_fail(err, errlen, "invalid Ed25519 key");
    }

    return pkey;
}


/* Checks a public key as a whole: for EC, that the point is on the curve. */
static int
crest_jwk_check(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX  *ctx;
    int            rc;

    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL) {
        return -1;
    }

    rc = EVP_PKEY_public_check(ctx);
    EVP_PKEY_CTX_free(ctx);

    return rc == 1 ? 0 : -1;
}


static const char *
crest_jwk_str(json_t *jwk, const char *name, int *bad)
{
    json_t  *v;

    v = json_object_get(jwk, name);

    if (v == NULL) {
        return NULL;
    }

    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }

    return json_string_value(v);
}


/* Builds the key of one JWK; NULL with err set on failure. */
static crest_jwt_key_t *
crest_jwk_key(json_t *jwk, char *err, size_t errlen)
{
    static const char  *private[] = { "d", "p", "q", "dp", "dq", "qi", "oth" };
    const char         *kty, *kid, *use, *name, *crv;
    crest_jwt_alg_t     alg;
    EVP_PKEY           *pkey;
    crest_jwt_key_t    *key;
    unsigned char      *k;
    size_t              i, k_len;
    int                 bad;

    if (!json_is_object(jwk)) {
        crest_jwt_fail(err, errlen, "not an object");
        return NULL;
    }

    bad = 0;
    kty = crest_jwk_str(jwk, "kty", &bad);
    kid = crest_jwk_str(jwk, "kid", &bad);
    use = crest_jwk_str(jwk, "use", &bad);
    name = crest_jwk_str(jwk, "alg", &bad);
    crv = crest_jwk_str(jwk, "crv", &bad);

    if (bad || kty == NULL) {
        crest_jwt_fail(err, errlen, "kty missing, or kty, kid, use, alg or crv "
                       "not a string");
        return NULL;
    }

    if (use != NULL && strcmp(use, "sig") != 0) {
        crest_jwt_fail(err, errlen, "use is \"%s\", not \"sig\"", use);
        return NULL;
    }

    for (i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
        if (json_object_get(jwk, private[i]) != NULL) {
            crest_jwt_fail(err, errlen, "private key members (\"%s\") are not "
                           "accepted", private[i]);
            return NULL;
        }
    }

    alg = CREST_JWT_ALG_AUTO;

    if (name != NULL && crest_jwt_alg_parse(name, strlen(name), &alg) != 0) {
        crest_jwt_fail(err, errlen, "unsupported alg \"%s\"", name);
        return NULL;
    }

    if (strcmp(kty, "oct") == 0) {
        if (alg == CREST_JWT_ALG_AUTO) {
            crest_jwt_fail(err, errlen, "an oct key needs alg");
            return NULL;
        }

        k = crest_jwk_bytes(jwk, "k", 0, &k_len, err, errlen);
        if (k == NULL) {
            return NULL;
        }

        key = crest_jwt_hmac_key(kid, alg, k, k_len, err, errlen);
        OPENSSL_cleanse(k, k_len);
        free(k);

        return key;
    }

    if (strcmp(kty, "RSA") == 0) {
        pkey = crest_jwk_rsa(jwk, err, errlen);

    } else if (strcmp(kty, "EC") == 0 && crv != NULL) {
        pkey = crest_jwk_ec(jwk, crv, err, errlen);

    } else if (strcmp(kty, "OKP") == 0 && crv != NULL) {
        pkey = crest_jwk_okp(jwk, crv, err, errlen);

    } else {
        crest_jwt_fail(err, errlen, "unsupported kty \"%s\"%s", kty,
                       crv == NULL ? " or no crv" : "");
        return NULL;
    }

    if (pkey == NULL) {
        return NULL;
    }

    if (crest_jwk_check(pkey) != 0) {
        EVP_PKEY_free(pkey);
        crest_jwt_fail(err, errlen, "the public key fails OpenSSL's checks");
        return NULL;
    }

    return crest_jwt_pkey_key(kid, alg, pkey, 0, err, errlen);
}


int
crest_jwt_keyset_add_jwks(crest_jwt_keyset_t *ks, const char *json,
    size_t len, char *err, size_t errlen)
{
    json_t           *doc, *keys, *jwk;
    json_error_t      jerr;
    crest_jwt_key_t  *key;
    size_t            i, before;
    char              why[192];
    const char       *kid;

    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);

    if (doc == NULL) {
        return crest_jwt_fail(err, errlen, "JWKS: line %d: %s", jerr.line,
                              jerr.text);
    }

    keys = json_object_get(doc, "keys");

    if (!json_is_array(keys) || json_array_size(keys) == 0) {
        json_decref(doc);
        return crest_jwt_fail(err, errlen, "JWKS: \"keys\" is not a non-empty "
                              "array");
    }

    before = ks->nkeys;

    json_array_foreach(keys, i, jwk) {
        key = crest_jwk_key(jwk, why, sizeof(why));

        if (key == NULL || crest_jwt_keyset_push(ks, key, why, sizeof(why)) != 0)
        {
            kid = json_string_value(json_object_get(jwk, "kid"));
            crest_jwt_fail(err, errlen, "JWKS key %zu%s%s%s: %s", i,
                           kid ? " (kid \"" : "", kid ? kid : "",
                           kid ? "\")" : "", why);
            crest_jwt_keyset_truncate(ks, before);
            json_decref(doc);
            return -1;
        }
    }

    json_decref(doc);

    return 0;
}


/* --- verifying ---------------------------------------------------------- */

void
crest_jwt_verify_opts_init(crest_jwt_verify_opts_t *opts, int64_t now)
{
    memset(opts, 0, sizeof(crest_jwt_verify_opts_t));
    opts->now = now;
    opts->max_len = CREST_JWT_MAX_LEN_DEFAULT;
}


/*
 * Decodes one part of a token into stack when it fits, else into a malloc'd
 * block returned in *heap for the caller to free.
 */
static crest_jwt_err_t
crest_jwt_decode_part(const char *s, size_t n, unsigned char *stack,
    size_t stack_size, unsigned char **heap, unsigned char **out,
    size_t *out_len)
{
    size_t          need;
    unsigned char  *dst;

    need = crest_b64url_decoded_len(n);

    if (need == (size_t) -1) {
        return CREST_JWT_E_MALFORMED;
    }

    dst = stack;

    if (need > stack_size) {
        dst = malloc(need);
        if (dst == NULL) {
            return CREST_JWT_E_INTERNAL;
        }
        *heap = dst;
    }

    if (crest_b64url_decode(dst, need, s, n, out_len) != 0) {
        return CREST_JWT_E_MALFORMED;
    }

    *out = dst;

    return CREST_JWT_OK;
}


/* Parses a decoded part as one JSON object without duplicate keys. */
static json_t *
crest_jwt_parse_object(const unsigned char *p, size_t n)
{
    json_t        *j;
    json_error_t   jerr;

    j = json_loadb((const char *) p, n, JSON_REJECT_DUPLICATES, &jerr);

    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }

    return j;
}


static int
crest_jwt_str_is(json_t *v, const char *s)
{
    size_t  n;

    n = strlen(s);

    return json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0;
}


/*
 * Reads the header and chooses the key.  Everything that can refuse a token
 * without cryptography happens here, so that forged headers cost little.
 */
static crest_jwt_err_t
crest_jwt_check_header(const crest_jwt_keyset_t *ks, const char *b64,
    size_t n, const crest_jwt_key_t **key)
{
    unsigned char   stack[CREST_JWT_HDR_STACK], *heap, *p;
    size_t          len;
    json_t         *hdr, *alg, *typ, *kid;
    crest_jwt_err_t e;

    heap = NULL;
    hdr = NULL;

    e = crest_jwt_decode_part(b64, n, stack, sizeof(stack), &heap, &p, &len);
    if (e != CREST_JWT_OK) {
        goto done;
    }

    hdr = crest_jwt_parse_object(p, len);
    if (hdr == NULL) {
        e = CREST_JWT_E_MALFORMED;
        goto done;
    }

    alg = json_object_get(hdr, "alg");

    if (!json_is_string(alg)) {
        e = CREST_JWT_E_MALFORMED;
        goto done;
    }

    if (strcasecmp(json_string_value(alg), "none") == 0) {
        e = CREST_JWT_E_ALG_NONE;
        goto done;
    }

    /* extensions we would have to understand are refused, as RFC 7515 4.1.11
     * requires of unknown ones */
    if (json_object_get(hdr, "crit") != NULL) {
        e = CREST_JWT_E_UNSUPPORTED;
        goto done;
    }

    typ = json_object_get(hdr, "typ");

    if (typ != NULL
        && !(json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT")
                                    == 0))
    {
        e = CREST_JWT_E_UNSUPPORTED;
        goto done;
    }

    kid = json_object_get(hdr, "kid");

    if (kid != NULL) {
        if (!json_is_string(kid)) {
            e = CREST_JWT_E_MALFORMED;
            goto done;
        }

        *key = crest_jwt_keyset_find(ks, json_string_value(kid),
                                     json_string_length(kid));
        if (*key == NULL) {
            e = CREST_JWT_E_UNKNOWN_KID;
            goto done;
        }

    } else if (ks != NULL && ks->nkeys == 1) {
        *key = ks->keys[0];

    } else {
        e = CREST_JWT_E_NO_KEY;
        goto done;
    }

    if (!crest_jwt_str_is(alg, crest_jwt_algs[(*key)->alg].name)) {
        e = CREST_JWT_E_ALG_MISMATCH;
    }

done:

    json_decref(hdr);
    free(heap);

    return e;
}


/* The HMAC of in[0..n) into mac (64 bytes); 0 or -1. */
static int
crest_jwt_hmac(const crest_jwt_key_t *key, const void *in, size_t n,
    unsigned char *mac, size_t *mac_len)
{
    EVP_MAC_CTX  *ctx;
    int           ok;

    ctx = EVP_MAC_CTX_dup(key->hmac);
    if (ctx == NULL) {
        return -1;
    }

    ok = EVP_MAC_update(ctx, in, n)
         && EVP_MAC_final(ctx, mac, mac_len, EVP_MAX_MD_SIZE);

    EVP_MAC_CTX_free(ctx);

    return ok ? 0 : -1;
}


/* Sets up ctx for signing or verifying with an asymmetric key. */
static int
crest_jwt_digest_init(EVP_MD_CTX *ctx, const crest_jwt_key_t *key, int sign)
{
    EVP_PKEY_CTX  *pctx;
    int            rc;

    pctx = NULL;
    rc = sign ? EVP_DigestSignInit(ctx, &pctx, key->md, NULL, key->pkey)
              : EVP_DigestVerifyInit(ctx, &pctx, key->md, NULL, key->pkey);

    if (rc != 1) {
        return -1;
    }

    if (crest_jwt_algs[key->alg].family == CREST_JWT_FAM_PSS) {
        /* RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash */
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
               != 1)
        {
            return -1;
        }
    }

    return 0;
}


/* The DER form OpenSSL verifies of a raw R || S signature; 0 or -1. */
static int
crest_jwt_ecdsa_to_der(const unsigned char *sig, size_t sig_len,
    unsigned char *der, size_t *der_len)
{
    ECDSA_SIG      *es;
    BIGNUM         *r, *s;
    unsigned char  *p;
    int             n;

    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, (int) (sig_len / 2), NULL);
    s = BN_bin2bn(sig + sig_len / 2, (int) (sig_len / 2), NULL);

    if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return -1;
    }

    /* es owns r and s now */

    n = i2d_ECDSA_SIG(es, NULL);

    if (n <= 0 || (size_t) n > CREST_JWT_ECDSA_DER_MAX) {
        ECDSA_SIG_free(es);
        return -1;
    }

    p = der;
    n = i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);

    if (n <= 0) {
        return -1;
    }

    *der_len = (size_t) n;

    return 0;
}


static crest_jwt_err_t
crest_jwt_check_signature(const crest_jwt_key_t *key, const char *input,
    size_t input_len, const char *b64, size_t n)
{
    unsigned char     sig[CREST_JWT_SIG_MAX], mac[EVP_MAX_MD_SIZE];
    unsigned char     der[CREST_JWT_ECDSA_DER_MAX];
    const unsigned char  *vsig;
    size_t            sig_len, mac_len, vsig_len;
    EVP_MD_CTX       *ctx;
    crest_jwt_err_t   e;

    sig_len = crest_b64url_decoded_len(n);

    if (sig_len == (size_t) -1) {
        return CREST_JWT_E_MALFORMED;
    }

    if (sig_len != key->sig_len) {
        return CREST_JWT_E_BAD_SIGNATURE;
    }

    if (crest_b64url_decode(sig, sizeof(sig), b64, n, &sig_len) != 0) {
        return CREST_JWT_E_MALFORMED;
    }

    if (key->hmac != NULL) {
        if (crest_jwt_hmac(key, input, input_len, mac, &mac_len) != 0) {
            ERR_clear_error();
            return CREST_JWT_E_INTERNAL;
        }

        return mac_len == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0
               ? CREST_JWT_OK : CREST_JWT_E_BAD_SIGNATURE;
    }

    vsig = sig;
    vsig_len = sig_len;

    if (crest_jwt_algs[key->alg].family == CREST_JWT_FAM_EC) {
        if (crest_jwt_ecdsa_to_der(sig, sig_len, der, &vsig_len) != 0) {
            ERR_clear_error();
            return CREST_JWT_E_BAD_SIGNATURE;
        }
        vsig = der;
    }

    ctx = EVP_MD_CTX_new();

    if (ctx == NULL || crest_jwt_digest_init(ctx, key, 0) != 0) {
        e = CREST_JWT_E_INTERNAL;

    } else if (EVP_DigestVerify(ctx, vsig, vsig_len,
                                (const unsigned char *) input, input_len) == 1)
    {
        e = CREST_JWT_OK;

    } else {
        e = CREST_JWT_E_BAD_SIGNATURE;
    }

    EVP_MD_CTX_free(ctx);

    if (e != CREST_JWT_OK) {
        ERR_clear_error();
    }

    return e;
}


/* A time claim: absent (0), a number (1, value in *t), or malformed (-1). */
static int
crest_jwt_time_claim(json_t *claims, const char *name, json_t **v)
{
    *v = json_object_get(claims, name);

    if (*v == NULL) {
        return 0;
    }

    return json_is_number(*v) ? 1 : -1;
}


/* Whether the time claim v is at or before t (seconds, may be fractional). */
static int
crest_jwt_time_le(json_t *v, int64_t t)
{
    if (json_is_integer(v)) {
        return json_integer_value(v) <= t;
    }

    return json_real_value(v) <= (double) t;
}


static int64_t
crest_jwt_time_floor(json_t *v)
{
    double  d;

    if (json_is_integer(v)) {
        return json_integer_value(v);
    }

    d = floor(json_real_value(v));

    if (d >= 9223372036854775807.0) {
        return INT64_MAX;
    }

    if (d < -9223372036854775807.0) {
        return INT64_MIN;
    }

    return (int64_t) d;
}


static int64_t
crest_jwt_add_sat(int64_t a, int64_t b)
{
    int64_t  r;

    if (__builtin_add_overflow(a, b, &r)) {
        return b > 0 ? INT64_MAX : INT64_MIN;
    }

    return r;
}


/* A claim that must be a string when present; 0 or -1. */
static int
crest_jwt_str_claim(json_t *claims, const char *name, const char **s,
    size_t *len)
{
    json_t  *v;

    v = json_object_get(claims, name);
    *s = NULL;
    *len = 0;

    if (v == NULL) {
        return 0;
    }

    if (!json_is_string(v)) {
        return -1;
    }

    *s = json_string_value(v);
    *len = json_string_length(v);

    return 0;
}


static crest_jwt_err_t
crest_jwt_check_audience(json_t *aud, const char *want)
{
    json_t  *v;
    size_t   i;
    int      found;

    if (aud == NULL) {
        return want == NULL ? CREST_JWT_OK : CREST_JWT_E_BAD_AUDIENCE;
    }

    if (json_is_string(aud)) {
        found = want != NULL && crest_jwt_str_is(aud, want);

    } else if (json_is_array(aud)) {
        found = 0;

        json_array_foreach(aud, i, v) {
            if (!json_is_string(v)) {
                return CREST_JWT_E_MALFORMED;
            }

            if (want != NULL && crest_jwt_str_is(v, want)) {
                found = 1;
            }
        }

    } else {
        return CREST_JWT_E_MALFORMED;
    }

    return found ? CREST_JWT_OK : CREST_JWT_E_BAD_AUDIENCE;
}


static crest_jwt_err_t
crest_jwt_check_claims(json_t *claims, const crest_jwt_verify_opts_t *opts,
    crest_jwt_claims_t *out)
{
    json_t      *exp, *nbf, *iat;
    const char  *iss;
    size_t       iss_len;
    int          has_exp, has_nbf, has_iat;
    int64_t      leeway;

    has_exp = crest_jwt_time_claim(claims, "exp", &exp);
    has_nbf = crest_jwt_time_claim(claims, "nbf", &nbf);
    has_iat = crest_jwt_time_claim(claims, "iat", &iat);

    if (has_exp < 0 || has_nbf < 0 || has_iat < 0
        || crest_jwt_str_claim(claims, "iss", &iss, &iss_len) != 0
        || crest_jwt_str_claim(claims, "sub", &out->sub, &out->sub_len) != 0
        || crest_jwt_str_claim(claims, "jti", &out->jti, &out->jti_len) != 0
        || crest_jwt_str_claim(claims, "role", &out->role, &out->role_len) != 0
        || crest_jwt_str_claim(claims, "plan", &out->plan, &out->plan_len) != 0)
    {
        return CREST_JWT_E_MALFORMED;
    }

    leeway = opts->leeway > 0 ? opts->leeway : 0;

    if (!has_exp && !opts->exp_optional) {
        return CREST_JWT_E_NO_EXP;
    }

    if (has_exp && crest_jwt_time_le(exp, crest_jwt_add_sat(opts->now,
                                                            -leeway)))
    {
        return CREST_JWT_E_EXPIRED;
    }

    if (has_nbf && !crest_jwt_time_le(nbf, crest_jwt_add_sat(opts->now,
                                                             leeway)))
    {
        return CREST_JWT_E_NOT_YET_VALID;
    }

    if (opts->iss != NULL
        && (iss == NULL || iss_len != strlen(opts->iss)
            || memcmp(iss, opts->iss, iss_len) != 0))
    {
        return CREST_JWT_E_BAD_ISSUER;
    }

    out->has_exp = has_exp ? 1 : 0;
    out->exp = has_exp ? crest_jwt_time_floor(exp) : 0;
    out->has_iat = has_iat ? 1 : 0;
    out->iat = has_iat ? crest_jwt_time_floor(iat) : 0;

    return crest_jwt_check_audience(json_object_get(claims, "aud"), opts->aud);
}


static crest_jwt_err_t
crest_jwt_verify_token(const crest_jwt_keyset_t *ks, const char *token,
    size_t len, const crest_jwt_verify_opts_t *opts, crest_jwt_claims_t *out)
{
    const char             *dot1, *dot2, *payload;
    size_t                  hdr_len, payload_len, dec_len;
    const crest_jwt_key_t  *key;
    unsigned char           stack[CREST_JWT_PAYLOAD_STACK], *heap, *p;
    json_t                 *claims;
    crest_jwt_err_t         e;

    if (len > (opts->max_len ? opts->max_len : CREST_JWT_MAX_LEN_DEFAULT)) {
        return CREST_JWT_E_TOO_LONG;
    }

    dot1 = memchr(token, '.', len);
    if (dot1 == NULL) {
        return CREST_JWT_E_MALFORMED;
    }

    payload = dot1 + 1;
    dot2 = memchr(payload, '.', (size_t) (token + len - payload));

    if (dot2 == NULL
        || memchr(dot2 + 1, '.', (size_t) (token + len - dot2 - 1)) != NULL)
    {
        return CREST_JWT_E_MALFORMED;
    }

    hdr_len = (size_t) (dot1 - token);
    payload_len = (size_t) (dot2 - payload);

    if (hdr_len == 0 || payload_len == 0) {
        return CREST_JWT_E_MALFORMED;
    }

    key = NULL;

    e = crest_jwt_check_header(ks, token, hdr_len, &key);
    if (e != CREST_JWT_OK) {
        return e;
    }

    e = crest_jwt_check_signature(key, token, (size_t) (dot2 - token),
                                  dot2 + 1, (size_t) (token + len - dot2 - 1));
    if (e != CREST_JWT_OK) {
        return e;
    }

    /* only now, signed by a key we trust, is the payload worth parsing */

    heap = NULL;

    e = crest_jwt_decode_part(payload, payload_len, stack, sizeof(stack),
                              &heap, &p, &dec_len);

    claims = e == CREST_JWT_OK ? crest_jwt_parse_object(p, dec_len) : NULL;
    free(heap);

    if (e != CREST_JWT_OK) {
        return e;
    }

    if (claims == NULL) {
        return CREST_JWT_E_MALFORMED;
    }

    e = crest_jwt_check_claims(claims, opts, out);

    if (e != CREST_JWT_OK) {
        json_decref(claims);
        return e;
    }

    out->json = claims;
    out->key = key;

    return CREST_JWT_OK;
}


int
crest_jwt_verify(const crest_jwt_keyset_t *ks, const char *token, size_t len,
    const crest_jwt_verify_opts_t *opts, crest_jwt_claims_t *out,
    crest_jwt_err_t *err)
{
    crest_jwt_claims_t  claims;
    crest_jwt_err_t     e;

    memset(&claims, 0, sizeof(crest_jwt_claims_t));

    e = crest_jwt_verify_token(ks, token, len, opts, &claims);

    if (e != CREST_JWT_OK) {
        memset(&claims, 0, sizeof(crest_jwt_claims_t));
    }

    if (out != NULL) {
        *out = claims;

    } else {
        json_decref(claims.json);
    }

    if (err != NULL) {
        *err = e;
    }

    return e == CREST_JWT_OK ? 0 : -1;
}


const char *
crest_jwt_claim_str(const crest_jwt_claims_t *claims, const char *name,
    size_t *len)
{
    json_t  *v;

    v = json_object_get(claims->json, name);

    if (!json_is_string(v)) {
        return NULL;
    }

    if (len != NULL) {
        *len = json_string_length(v);
    }

    return json_string_value(v);
}


void
crest_jwt_claims_free(crest_jwt_claims_t *claims)
{
    json_decref(claims->json);
    memset(claims, 0, sizeof(crest_jwt_claims_t));
}


/* --- signing ------------------------------------------------------------ */

/* A raw R || S signature from OpenSSL's DER; 0 or -1. */
static int
crest_jwt_ecdsa_from_der(const unsigned char *der, size_t der_len,
    unsigned char *sig, size_t sig_len)
{
    const unsigned char  *p;
    const BIGNUM         *r, *s;
    ECDSA_SIG            *es;
    int                   ok;

    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
    if (es == NULL) {
        return -1;
    }

    ECDSA_SIG_get0(es, &r, &s);

    ok = BN_bn2binpad(r, sig, (int) (sig_len / 2)) > 0
         && BN_bn2binpad(s, sig + sig_len / 2, (int) (sig_len / 2)) > 0;

    ECDSA_SIG_free(es);

    return ok ? 0 : -1;
}


/* Signs in[0..n) into sig (CREST_JWT_SIG_MAX bytes); 0 or -1. */
static int
crest_jwt_sign_bytes(const crest_jwt_key_t *key, const char *in, size_t n,
    unsigned char *sig, size_t *sig_len)
{
    unsigned char  der[CREST_JWT_ECDSA_DER_MAX], *dst;
    size_t         dst_len;
    EVP_MD_CTX    *ctx;
    int            ec, rc;

    if (key->hmac != NULL) {
        return crest_jwt_hmac(key, in, n, sig, sig_len);
    }

    ec = crest_jwt_algs[key->alg].family == CREST_JWT_FAM_EC;
    dst = ec ? der : sig;
    dst_len = ec ? sizeof(der) : CREST_JWT_SIG_MAX;

    ctx = EVP_MD_CTX_new();

    rc = ctx != NULL
         && crest_jwt_digest_init(ctx, key, 1) == 0
         && EVP_DigestSign(ctx, dst, &dst_len, (const unsigned char *) in, n)
            == 1
         ? 0 : -1;

    EVP_MD_CTX_free(ctx);

    if (rc == 0 && ec) {
        rc = crest_jwt_ecdsa_from_der(der, dst_len, sig, key->sig_len);
        dst_len = key->sig_len;
    }

    *sig_len = dst_len;

    return rc;
}


int
crest_jwt_sign(const crest_jwt_key_t *key, const char *claims_json,
    size_t len, crest_buf_t *out)
{
    json_t         *claims;
    crest_buf_t     hdr;
    crest_jw_t      w;
    size_t          start, sig_len;
    unsigned char   sig[CREST_JWT_SIG_MAX];
    int             rc;

    if (!key->can_sign) {
        return -1;
    }

    claims = crest_jwt_parse_object((const unsigned char *) claims_json, len);
    if (claims == NULL) {
        return -1;
    }

    json_decref(claims);

    crest_buf_init(&hdr, out->a);
    crest_jw_init(&w, &hdr);
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "alg");
    crest_jw_str(&w, crest_jwt_algs[key->alg].name);
    crest_jw_key(&w, "typ");
    crest_jw_str(&w, "JWT");

    if (key->kid != NULL) {
        crest_jw_key(&w, "kid");
        crest_jw_strn(&w, key->kid, key->kid_len);
    }

    crest_jw_obj_end(&w);

    start = out->len;

    if (!crest_buf_failed(&hdr)) {
        crest_b64url_append(out, hdr.data, hdr.len);
        crest_buf_appendc(out, '.');
        crest_b64url_append(out, claims_json, len);
    }

    rc = crest_buf_failed(&hdr) || crest_buf_failed(out) ? -1 : 0;
    crest_buf_free(&hdr);

    if (rc == 0) {
        rc = crest_jwt_sign_bytes(key, out->data + start, out->len - start,
                                  sig, &sig_len);
    }

    if (rc == 0) {
        crest_buf_appendc(out, '.');
        crest_b64url_append(out, sig, sig_len);
        rc = crest_buf_failed(out) ? -1 : 0;
    }

    OPENSSL_cleanse(sig, sizeof(sig));

    if (rc != 0) {
        ERR_clear_error();

        out->len = start;
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
    }

    return rc;
}
