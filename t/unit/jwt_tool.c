/*
 * A command line over crest_jwt, for t/021-jwt-interop.t to check tokens
 * against another implementation (PyJWT):
 *
 *     jwt_tool verify <alg> <keyfile> <token>        prints the claims
 *     jwt_tool sign   <alg> <keyfile> <claims-json>  prints the token
 *
 * For HS* the key file holds the secret bytes as they are; otherwise it is
 * PEM (a public key verifies, a private key signs and verifies).  Claims
 * are printed as compact JSON with sorted keys.  Exit status: 0 done,
 * 1 token refused (the message on stderr), 2 usage or key error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crest_jwt.h"


/* The whole file in a malloc'd block, or NULL. */
static char *
read_file(const char *path, size_t *len)
{
    FILE    *f;
    char    *data, *p;
    size_t   cap, n;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    cap = 4096;
    *len = 0;
    data = malloc(cap);

    while (data != NULL) {
        n = fread(data + *len, 1, cap - *len, f);
        *len += n;

        if (*len < cap) {
            break;
        }

        cap *= 2;
        p = realloc(data, cap);

        if (p == NULL) {
            free(data);
        }

        data = p;
    }

    if (data != NULL && ferror(f)) {
        free(data);
        data = NULL;
    }

    fclose(f);

    return data;
}


static int
usage(void)
{
    fprintf(stderr, "usage: jwt_tool verify <alg> <keyfile> <token>\n"
                    "       jwt_tool sign <alg> <keyfile> <claims-json>\n");
    return 2;
}


static int
verify(const crest_jwt_keyset_t *ks, const char *token)
{
    crest_jwt_verify_opts_t   opts;
    crest_jwt_claims_t        claims;
    crest_jwt_err_t           err;
    char                     *json;

    crest_jwt_verify_opts_init(&opts, (int64_t) time(NULL));

    if (crest_jwt_verify(ks, token, strlen(token), &opts, &claims, &err)
        != 0)
    {
        fprintf(stderr, "jwt_tool: refused (%d): %s\n", (int) err,
                crest_jwt_strerror(err));
        return 1;
    }

    json = json_dumps(claims.json, JSON_COMPACT | JSON_SORT_KEYS);
    crest_jwt_claims_free(&claims);

    if (json == NULL) {
        return 2;
    }

    printf("%s\n", json);
    free(json);

    return 0;
}


static int
sign(const crest_jwt_key_t *key, const char *claims)
{
    crest_buf_t  out;
    int          rc;

    crest_buf_init(&out, &crest_malloc_allocator);

    rc = crest_jwt_sign(key, claims, strlen(claims), &out);

    if (rc == 0) {
        printf("%s\n", out.data);
    } else {
        fprintf(stderr, "jwt_tool: cannot sign these claims with this key\n");
    }

    crest_buf_free(&out);

    return rc == 0 ? 0 : 2;
}


int
main(int argc, char **argv)
{
    crest_jwt_keyset_t     *ks;
    const crest_jwt_key_t  *key;
    crest_jwt_alg_t         alg;
    char                   *data, err[256];
    size_t                  len;
    int                     rc;

    if (argc != 5 || (strcmp(argv[1], "verify") != 0
                      && strcmp(argv[1], "sign") != 0)
        || crest_jwt_alg_parse(argv[2], strlen(argv[2]), &alg) != 0)
    {
        return usage();
    }

    data = read_file(argv[3], &len);
    if (data == NULL) {
        perror(argv[3]);
        return 2;
    }

    ks = crest_jwt_keyset_new();

    if (ks == NULL) {
        rc = -1;
        snprintf(err, sizeof(err), "out of memory");

    } else if (argv[2][0] == 'H') {
        rc = crest_jwt_keyset_add_hmac(ks, NULL, alg, data, len, &key, err,
                                       sizeof(err));
    } else {
        rc = crest_jwt_keyset_add_pem(ks, NULL, alg, data, len, &key, err,
                                      sizeof(err));
    }

    free(data);

    if (rc != 0) {
        fprintf(stderr, "jwt_tool: %s: %s\n", argv[3], err);
        crest_jwt_keyset_free(ks);
        return 2;
    }

    rc = strcmp(argv[1], "verify") == 0 ? verify(ks, argv[4])
                                        : sign(key, argv[4]);

    crest_jwt_keyset_free(ks);

    return rc;
}
