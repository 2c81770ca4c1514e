/*
 * JSON Web Tokens (RFC 7519) in the JWS compact form (RFC 7515): verifying
 * them on every authenticated request at the edge, and issuing them.
 *
 * Key sets are built at configuration time and are read-only afterwards:
 * verification never changes them, allocates only what OpenSSL and jansson
 * need for one token, does no I/O and may run in any number of threads.
 *
 * Every key is pinned to one algorithm when it is loaded.  A token is
 * accepted only when its header names exactly that algorithm, so the header
 * cannot choose how its own signature is checked: an HS256 token is never
 * HMAC'd with an RSA public key, and "none" is never honoured.  Header
 * parameters that point at keys (jwk, jku, x5u, x5c) are ignored; keys come
 * only from the key set.
 *
 * Loading functions return 0 on success and -1 on error, with a one-line
 * English message in err (when err is not NULL and errlen > 0).  A failed
 * load leaves the key set as it was.  Memory of key sets comes from malloc
 * and OpenSSL; an nginx module frees a key set from a pool cleanup handler.
 */
#ifndef CREST_JWT_H
#define CREST_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crest_buf.h"

#define CREST_JWT_MAX_LEN_DEFAULT  8192

/* Algorithms ("alg" values of RFC 7518 and RFC 8037). */
typedef enum {
    CREST_JWT_ALG_AUTO = 0,    /* loading only: infer from the key type */
    CREST_JWT_HS256,
    CREST_JWT_HS384,
    CREST_JWT_HS512,
    CREST_JWT_RS256,
    CREST_JWT_RS384,
    CREST_JWT_RS512,
    CREST_JWT_PS256,
    CREST_JWT_PS384,
    CREST_JWT_PS512,
    CREST_JWT_ES256,           /* P-256 */
    CREST_JWT_ES384,           /* P-384 */
    CREST_JWT_ES512,           /* P-521 */
    CREST_JWT_EDDSA            /* Ed25519 */
} crest_jwt_alg_t;

/*
 * Why a token was refused.  Each class has its own value so that the caller
 * can log and count them; crest_jwt_strerror() gives a fixed message that
 * never contains anything from the token.
 */
typedef enum {
    CREST_JWT_OK = 0,
    CREST_JWT_E_MALFORMED,      /* not three base64url parts of JSON objects,
                                   duplicate keys, a claim of the wrong type */
    CREST_JWT_E_TOO_LONG,       /* longer than opts->max_len */
    CREST_JWT_E_ALG_NONE,       /* "alg": "none", in any case */
    CREST_JWT_E_ALG_MISMATCH,   /* header alg is not the key's pinned alg */
    CREST_JWT_E_UNKNOWN_KID,    /* header kid names no key of the set */
    CREST_JWT_E_NO_KEY,         /* no kid and not exactly one key */
    CREST_JWT_E_BAD_SIGNATURE,  /* signature of the wrong size or invalid */
    CREST_JWT_E_EXPIRED,        /* exp <= now - leeway */
    CREST_JWT_E_NOT_YET_VALID,  /* nbf > now + leeway */
    CREST_JWT_E_NO_EXP,         /* exp required but absent */
    CREST_JWT_E_BAD_ISSUER,     /* iss absent or not the required one */
    CREST_JWT_E_BAD_AUDIENCE,   /* aud does not contain the required one, or
                                   aud present and none required */
    CREST_JWT_E_UNSUPPORTED,    /* crit present, typ other than JWT */
    CREST_JWT_E_INTERNAL        /* out of memory, OpenSSL failure */
} crest_jwt_err_t;

typedef struct crest_jwt_key_s     crest_jwt_key_t;
typedef struct crest_jwt_keyset_s  crest_jwt_keyset_t;

/*
 * Verification options.  crest_jwt_verify_opts_init() sets the defaults;
 * a zeroed struct also works but has now = 0.
 */
typedef struct {
    int64_t      now;          /* seconds since the epoch, from the caller */
    int64_t      leeway;       /* clock skew allowed on exp and nbf, >= 0 */
    const char  *iss;          /* NUL-terminated; NULL: iss not checked */
    const char  *aud;          /* NUL-terminated; NULL: the token must not
                                  carry aud (RFC 7519 4.1.3) */
    size_t       max_len;      /* 0: CREST_JWT_MAX_LEN_DEFAULT */
    unsigned     exp_optional:1;   /* accept tokens without exp */
} crest_jwt_verify_opts_t;

/*
 * What a verified token says.  json is the payload object, owned by the
 * caller: json_decref() it, or call crest_jwt_claims_free().  The string
 * fields point into json (NUL-terminated, no embedded NUL) and are NULL when
 * the claim is absent; iss, sub, jti, role and plan are strings when present,
 * or the token is malformed.  On failure json is NULL and nothing is owed.
 */
typedef struct {
    json_t                 *json;
    const crest_jwt_key_t  *key;       /* the key that verified it */
    const char             *sub;
    size_t                  sub_len;
    const char             *role;
    size_t                  role_len;
    const char             *plan;
    size_t                  plan_len;
    const char             *jti;
    size_t                  jti_len;
    int64_t                 exp;       /* whole seconds, rounded down */
    int64_t                 iat;
    unsigned                has_exp:1;
    unsigned                has_iat:1;
} crest_jwt_claims_t;


/* --- algorithms and errors ---------------------------------------------- */

/* "HS256" ... "EdDSA"; NULL for CREST_JWT_ALG_AUTO and unknown values. */
const char *crest_jwt_alg_name(crest_jwt_alg_t alg);

/* Parses an alg name (case-sensitive, as RFC 7518); 0 or -1. */
int crest_jwt_alg_parse(const char *name, size_t len, crest_jwt_alg_t *alg);

/* A static message for e, e.g. "token expired". */
const char *crest_jwt_strerror(crest_jwt_err_t e);


/* --- key sets (configuration time) -------------------------------------- */

/* An empty key set, or NULL when out of memory. */
crest_jwt_keyset_t *crest_jwt_keyset_new(void);

/* Frees the set and every key in it (secrets are wiped).  NULL is a no-op. */
void crest_jwt_keyset_free(crest_jwt_keyset_t *ks);

size_t crest_jwt_keyset_count(const crest_jwt_keyset_t *ks);

/* The i-th key in loading order, or NULL. */
const crest_jwt_key_t *crest_jwt_keyset_key(const crest_jwt_keyset_t *ks,
    size_t i);

/* The key with this kid, or NULL. */
const crest_jwt_key_t *crest_jwt_keyset_find(const crest_jwt_keyset_t *ks,
    const char *kid, size_t kid_len);

/*
 * Adds an HMAC key: alg is HS256, HS384 or HS512, and the secret is at least
 * as long as the hash output (RFC 7518 3.2).  A secret that looks like a PEM
 * block is refused: it would be a public key configured as a shared secret.
 * kid may be NULL.  If key is not NULL it receives the new key.
 */
int crest_jwt_keyset_add_hmac(crest_jwt_keyset_t *ks, const char *kid,
    crest_jwt_alg_t alg, const void *secret, size_t len,
    const crest_jwt_key_t **key, char *err, size_t errlen);

/*
 * Adds a key from one PEM block: a public key (SubjectPublicKeyInfo, or
 * PKCS#1 "RSA PUBLIC KEY") verifies; an unencrypted private key (PKCS#8,
 * PKCS#1, SEC1) signs and verifies.  alg AUTO infers RS256 for RSA, ES256,
 * ES384 or ES512 from the curve, EdDSA for Ed25519; any other alg must suit
 * the key (RS* or PS* for RSA of 2048 to 8192 bits, the ES* of its curve).
 */
int crest_jwt_keyset_add_pem(crest_jwt_keyset_t *ks, const char *kid,
    crest_jwt_alg_t alg, const char *pem, size_t len,
    const crest_jwt_key_t **key, char *err, size_t errlen);

/*
 * Adds every key of a JWKS document (RFC 7517): {"keys": [...]} with kty
 * RSA (n, e), EC (crv P-256/P-384/P-521, x, y), OKP (crv Ed25519, x) or oct
 * (k; alg required).  alg, when given, must suit the key, and is inferred
 * as for PEM otherwise; use, when given, must be "sig".  Private members
 * (d, p, q, ...) are refused.  All keys are added, or none.
 */
int crest_jwt_keyset_add_jwks(crest_jwt_keyset_t *ks, const char *json,
    size_t len, char *err, size_t errlen);

crest_jwt_alg_t crest_jwt_key_alg(const crest_jwt_key_t *key);

/* The key's kid (NUL-terminated), or NULL. */
const char *crest_jwt_key_kid(const crest_jwt_key_t *key);

/* 1 when the key can sign (HMAC keys and private keys), else 0. */
int crest_jwt_key_can_sign(const crest_jwt_key_t *key);


/* --- verifying (per request) -------------------------------------------- */

/* Defaults: leeway 0, no iss, no aud, max_len 8 KiB, exp required. */
void crest_jwt_verify_opts_init(crest_jwt_verify_opts_t *opts, int64_t now);

/*
 * Verifies token[0..len) against the key set (NULL counts as empty) with
 * opts (required).  Returns 0 with *out filled, or -1 with *err set (err
 * and out may be NULL).  Checks, in order: length,
 * shape and header (typ, crit, alg none), key choice (kid, else the only
 * key), alg equal to the key's, signature, then payload and claims (exp,
 * nbf, iat numbers; exp, nbf, iss, aud).  The payload is parsed only after
 * the signature is valid.
 */
int crest_jwt_verify(const crest_jwt_keyset_t *ks, const char *token,
    size_t len, const crest_jwt_verify_opts_t *opts, crest_jwt_claims_t *out,
    crest_jwt_err_t *err);

/*
 * The string claim called name, with its length in *len (len may be NULL);
 * NULL when absent or not a string.  Points into claims->json.
 */
const char *crest_jwt_claim_str(const crest_jwt_claims_t *claims,
    const char *name, size_t *len);

/* json_decref()s claims->json and clears the struct. */
void crest_jwt_claims_free(crest_jwt_claims_t *claims);


/* --- signing ------------------------------------------------------------ */

/*
 * Appends a token to out: header {"alg":...,"typ":"JWT"[,"kid":...]}, the
 * claims exactly as given (they must be one JSON object without duplicate
 * keys), and the signature.  Returns 0, or -1 when the key cannot sign, the
 * claims are not such an object, or out failed; out->len is then as before.
 */
int crest_jwt_sign(const crest_jwt_key_t *key, const char *claims_json,
    size_t len, crest_buf_t *out);

#endif /* CREST_JWT_H */
