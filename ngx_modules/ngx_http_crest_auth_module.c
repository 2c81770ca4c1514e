/*
 * ngx_http_crest_auth_module: who is calling, decided at the edge.
 *
 * "crest_auth on;" protects a location: the caller shows an access token
 * (JWT, from "Authorization: Bearer" or the dashboard's cookie) or an API
 * key ("X-API-Key", or as the Bearer token).  A JWT is verified in memory
 * against keys loaded at configuration time, with each key's algorithm
 * pinned; no I/O.  An API key is looked up in PostgreSQL through the pool
 * and the answer kept a few seconds in this worker, so the hot path is not
 * a query per request and a revoked key stops working within seconds.
 *
 * The handler runs in the preaccess phase, ahead of limit_req and Crest's
 * own limits, so they can key on $crest_user_id.
 */

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_crest_pg.h"
#include "ngx_crest_auth.h"
#include "crest_json.h"
#include "crest_jwt.h"
#include "crest_validate.h"


#define NGX_CREST_AUTH_OFF        0
#define NGX_CREST_AUTH_ON         1
#define NGX_CREST_AUTH_OPTIONAL   2

#define NGX_CREST_API_KEY_PREFIX  "crest_"

/* a direct-mapped cache: a collision evicts, which costs one query */
#define NGX_CREST_KEY_CACHE_SLOTS 4096


typedef struct {
    crest_jwt_keyset_t        *keys;
    const crest_jwt_key_t     *signing_key;
    ngx_str_t                  issuer;
    ngx_str_t                  audience;
    time_t                     leeway;
    time_t                     access_ttl;
    time_t                     refresh_ttl;
    ngx_msec_t                 key_cache_ttl;
    ngx_str_t                  cookie;
} ngx_http_crest_auth_main_conf_t;


typedef struct {
    ngx_uint_t                 mode;
    ngx_uint_t                 admin;
} ngx_http_crest_auth_loc_conf_t;


typedef struct {
    u_char                     digest[SHA256_DIGEST_LENGTH];
    ngx_msec_t                 expires;
    unsigned                   used:1;
    unsigned                   valid:1;
    u_char                     user_id[37];
    u_char                     role[16];
    u_char                     plan[32];
} ngx_crest_key_cache_slot_t;


typedef struct {
    ngx_crest_identity_t       identity;
    ngx_http_request_t        *request;
    ngx_uint_t                 pending;
    ngx_uint_t                 done;
    ngx_int_t                  status;        /* NGX_OK, or why not */
    u_char                     digest[SHA256_DIGEST_LENGTH];
} ngx_http_crest_auth_ctx_t;


static ngx_int_t ngx_http_crest_auth_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_crest_auth_init(ngx_conf_t *cf);
static void *ngx_http_crest_auth_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_auth_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_crest_auth_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_auth_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_crest_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_auth_role(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_auth_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_auth_handler(ngx_http_request_t *r);
static void ngx_http_crest_auth_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_crest_auth_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_crest_auth_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_conf_enum_t  ngx_http_crest_auth_modes[] = {
    { ngx_string("off"), NGX_CREST_AUTH_OFF },
    { ngx_string("on"), NGX_CREST_AUTH_ON },
    { ngx_string("optional"), NGX_CREST_AUTH_OPTIONAL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_crest_auth_commands[] = {

    { ngx_string("crest_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_auth_role"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_auth_role,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_auth_jwt_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_crest_auth_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      (void *) "secret" },

    { ngx_string("crest_auth_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_crest_auth_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      (void *) "pem" },

    { ngx_string("crest_auth_jwks"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_auth_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      (void *) "jwks" },

    { ngx_string("crest_auth_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, issuer),
      NULL },

    { ngx_string("crest_auth_audience"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, audience),
      NULL },

    { ngx_string("crest_auth_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, leeway),
      NULL },

    { ngx_string("crest_auth_access_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, access_ttl),
      NULL },

    { ngx_string("crest_auth_refresh_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, refresh_ttl),
      NULL },

    { ngx_string("crest_auth_key_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, key_cache_ttl),
      NULL },

    { ngx_string("crest_auth_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_auth_main_conf_t, cookie),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_auth_module_ctx = {
    ngx_http_crest_auth_add_variables,     /* preconfiguration */
    ngx_http_crest_auth_init,              /* postconfiguration */

    ngx_http_crest_auth_create_main_conf,  /* create main configuration */
    ngx_http_crest_auth_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_auth_create_loc_conf,   /* create location configuration */
    ngx_http_crest_auth_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_crest_auth_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_auth_module_ctx,       /* module context */
    ngx_http_crest_auth_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_crest_auth_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_CREST_VAR_USER_ID   0
#define NGX_CREST_VAR_ROLE      1
#define NGX_CREST_VAR_PLAN      2
#define NGX_CREST_VAR_METHOD    3

static ngx_http_variable_t  ngx_http_crest_auth_vars[] = {

    { ngx_string("crest_user_id"), NULL, ngx_http_crest_auth_variable,
      NGX_CREST_VAR_USER_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("crest_user_role"), NULL, ngx_http_crest_auth_variable,
      NGX_CREST_VAR_ROLE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("crest_user_plan"), NULL, ngx_http_crest_auth_variable,
      NGX_CREST_VAR_PLAN, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("crest_auth_method"), NULL, ngx_http_crest_auth_variable,
      NGX_CREST_VAR_METHOD, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("crest_claim_"), NULL, ngx_http_crest_auth_claim_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


/* one cache per worker process, allocated on first use */
static ngx_crest_key_cache_slot_t  *ngx_crest_key_cache;


static void
ngx_http_crest_auth_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_crest_key_cache) {
        ngx_free(ngx_crest_key_cache);
        ngx_crest_key_cache = NULL;
    }
}


/* configuration */

static void *
ngx_http_crest_auth_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_auth_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_auth_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    amcf->leeway = NGX_CONF_UNSET;
    amcf->access_ttl = NGX_CONF_UNSET;
    amcf->refresh_ttl = NGX_CONF_UNSET;
    amcf->key_cache_ttl = NGX_CONF_UNSET_MSEC;

    return amcf;
}


static char *
ngx_http_crest_auth_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_auth_main_conf_t  *amcf = conf;

    ngx_conf_init_value(amcf->leeway, 0);
    ngx_conf_init_value(amcf->access_ttl, 3600);
    ngx_conf_init_value(amcf->refresh_ttl, 86400);
    ngx_conf_init_msec_value(amcf->key_cache_ttl, 5000);

    if (amcf->access_ttl <= 0 || amcf->refresh_ttl <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_auth token lifetimes must be positive");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_crest_auth_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_auth_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_auth_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->mode = NGX_CONF_UNSET_UINT;
    alcf->admin = NGX_CONF_UNSET_UINT;

    return alcf;
}


static char *
ngx_http_crest_auth_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_crest_auth_loc_conf_t  *prev = parent;
    ngx_http_crest_auth_loc_conf_t  *conf = child;

    ngx_http_crest_auth_main_conf_t  *amcf;

    ngx_conf_merge_uint_value(conf->mode, prev->mode, NGX_CREST_AUTH_OFF);
    ngx_conf_merge_uint_value(conf->admin, prev->admin, 0);

    if (conf->mode != NGX_CREST_AUTH_OFF) {
        amcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_crest_auth_module);

        if (amcf->keys == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "crest_auth needs a key: "
                               "crest_auth_jwt_secret_file, crest_auth_jwt_key "
                               "or crest_auth_jwks");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_auth_loc_conf_t  *alcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (alcf->mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_crest_auth_modes[i].name.len; i++) {
        if (ngx_strcmp(value[1].data, ngx_http_crest_auth_modes[i].name.data)
            == 0)
        {
            alcf->mode = ngx_http_crest_auth_modes[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[1]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_crest_auth_role(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_auth_loc_conf_t  *alcf = conf;

    ngx_str_t  *value;

    if (alcf->admin != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "admin") == 0) {
        alcf->admin = 1;

    } else if (ngx_strcmp(value[1].data, "user") == 0) {
        alcf->admin = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid role \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_crest_auth_free_keys(void *data)
{
    crest_jwt_keyset_free(data);
}


/*
 * crest_auth_jwt_secret_file PATH [alg=HS256] [kid=ID];
 * crest_auth_jwt_key PATH [alg=...] [kid=ID];
 * crest_auth_jwks PATH;
 * The first key that can sign is the one Crest issues tokens with.
 */
static char *
ngx_http_crest_auth_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_auth_main_conf_t  *amcf = conf;

    char                   *kind, *kid, err[256];
    ngx_str_t              *value, file, content;
    ngx_uint_t              i;
    crest_jwt_alg_t         alg;
    ngx_pool_cleanup_t     *cln;
    const crest_jwt_key_t  *key;

    kind = cmd->post;
    value = cf->args->elts;
    kid = NULL;
    alg = ngx_strcmp(kind, "secret") == 0 ? CREST_JWT_HS256 : CREST_JWT_ALG_AUTO;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "alg=", 4) == 0
            && crest_jwt_alg_parse((char *) value[i].data + 4,
                                   value[i].len - 4, &alg) == 0)
        {
            continue;
        }

        if (ngx_strncmp(value[i].data, "kid=", 4) == 0 && value[i].len > 4) {
            kid = (char *) value[i].data + 4;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (amcf->keys == NULL) {
        amcf->keys = crest_jwt_keyset_new();
        if (amcf->keys == NULL) {
            return NGX_CONF_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            crest_jwt_keyset_free(amcf->keys);
            amcf->keys = NULL;
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_crest_auth_free_keys;
        cln->data = amcf->keys;
    }

    file = value[1];

    if (ngx_crest_read_conf_file(cf, &file, 1024 * 1024, &content) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key = NULL;
    err[0] = '\0';

    if (ngx_strcmp(kind, "secret") == 0) {
        if (crest_jwt_keyset_add_hmac(amcf->keys, kid, alg, content.data,
                                      content.len, &key, err, sizeof(err))
            != 0)
        {
            goto failed;
        }

    } else if (ngx_strcmp(kind, "pem") == 0) {
        if (crest_jwt_keyset_add_pem(amcf->keys, kid, alg,
                                     (const char *) content.data, content.len,
                                     &key, err, sizeof(err))
            != 0)
        {
            goto failed;
        }

    } else if (crest_jwt_keyset_add_jwks(amcf->keys,
                                         (const char *) content.data,
                                         content.len, err, sizeof(err))
               != 0)
    {
        goto failed;
    }

    /* the secret's copy in the configuration pool is not needed any more */
    ngx_explicit_memzero(content.data, content.len);

    if (amcf->signing_key == NULL && key && crest_jwt_key_can_sign(key)) {
        amcf->signing_key = key;
    }

    return NGX_CONF_OK;

failed:

    ngx_explicit_memzero(content.data, content.len);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V \"%V\": %s",
                       &cmd->name, &file, err);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_crest_auth_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_crest_auth_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_auth_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* preaccess, registered last, so it runs before the limit modules */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_crest_auth_handler;

    return NGX_OK;
}


/* answers */

static ngx_int_t
ngx_http_crest_auth_reject(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    u_char           *p;
    size_t            len;
    ngx_table_elt_t  *h;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (status == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        len = sizeof("Bearer realm=\"crest\", error=\"invalid_token\", "
                     "error_description=\"\"") - 1 + ngx_strlen(reason);

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");

        if (reason[0] == '\0') {
            /* no credentials at all: RFC 6750 says name no error */
            h->value.len = ngx_sprintf(p, "Bearer realm=\"crest\"") - p;

        } else {
            h->value.len = ngx_sprintf(p, "Bearer realm=\"crest\", "
                                       "error=\"invalid_token\", "
                                       "error_description=\"%s\"", reason)
                           - p;
        }

        h->value.data = p;
    }

    return ngx_crest_send_error(r, status,
                                status == NGX_HTTP_FORBIDDEN
                                ? CREST_ERR_FORBIDDEN : CREST_ERR_UNAUTHORIZED,
                                reason[0] ? reason : "authentication required",
                                NULL);
}


/* Ends the request from within a phase handler. */
static ngx_int_t
ngx_http_crest_auth_end(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    ngx_http_finalize_request(r, ngx_http_crest_auth_reject(r, status, reason));
    return NGX_DONE;
}


/* credentials */

static ngx_int_t
ngx_http_crest_auth_find_header(ngx_http_request_t *r, const char *name,
    size_t len, ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            *value = h[i].value;
            return NGX_OK;
        }
    }
}


/* The presented credential: a token or an API key, or NGX_DECLINED. */
static ngx_int_t
ngx_http_crest_auth_credential(ngx_http_request_t *r,
    ngx_http_crest_auth_main_conf_t *amcf, ngx_str_t *cred)
{
    ngx_str_t  *auth;

    if (ngx_http_crest_auth_find_header(r, "X-API-Key", 9, cred) == NGX_OK) {
        return NGX_OK;
    }

    if (r->headers_in.authorization) {
        auth = &r->headers_in.authorization->value;

        if (auth->len < 7
            || ngx_strncasecmp(auth->data, (u_char *) "Bearer ", 7) != 0)
        {
            return NGX_ERROR;
        }

        cred->data = auth->data + 7;
        cred->len = auth->len - 7;

        while (cred->len && *cred->data == ' ') {
            cred->data++;
            cred->len--;
        }

        return cred->len ? NGX_OK : NGX_ERROR;
    }

    if (amcf->cookie.len
        && ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                             &amcf->cookie, cred)
           != NGX_DECLINED)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


static void
ngx_http_crest_auth_free_claims(void *data)
{
    crest_jwt_claims_free(data);
}


static ngx_int_t
ngx_http_crest_auth_jwt(ngx_http_request_t *r,
    ngx_http_crest_auth_main_conf_t *amcf, ngx_http_crest_auth_ctx_t *ctx,
    ngx_str_t *token, const char **reason)
{
    crest_jwt_err_t           err;
    crest_jwt_claims_t       *claims;
    ngx_pool_cleanup_t       *cln;
    crest_jwt_verify_opts_t   opts;

    crest_jwt_verify_opts_init(&opts, (int64_t) ngx_time());
    opts.leeway = amcf->leeway;
    opts.iss = amcf->issuer.len ? (const char *) amcf->issuer.data : NULL;
    opts.aud = amcf->audience.len ? (const char *) amcf->audience.data : NULL;

    claims = ngx_pcalloc(r->pool, sizeof(crest_jwt_claims_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (claims == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    if (crest_jwt_verify(amcf->keys, (const char *) token->data, token->len,
                         &opts, claims, &err)
        != 0)
    {
        *reason = crest_jwt_strerror(err);
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_crest_auth_free_claims;
    cln->data = claims;

    /* identity is a Crest user: the subject is a user id */
    if (claims->sub == NULL || !crest_is_uuid(claims->sub, claims->sub_len)) {
        *reason = "token subject is not a user";
        return NGX_DECLINED;
    }

    ctx->identity.user_id.data = (u_char *) claims->sub;
    ctx->identity.user_id.len = claims->sub_len;

    if (claims->role) {
        ctx->identity.role.data = (u_char *) claims->role;
        ctx->identity.role.len = claims->role_len;

    } else {
        ngx_str_set(&ctx->identity.role, "user");
    }

    if (claims->plan) {
        ctx->identity.plan.data = (u_char *) claims->plan;
        ctx->identity.plan.len = claims->plan_len;

    } else {
        ngx_str_set(&ctx->identity.plan, "free");
    }

    ctx->identity.claims = claims->json;

    return NGX_OK;
}


/* API keys */

static ngx_crest_key_cache_slot_t *
ngx_http_crest_auth_cache_slot(u_char *digest)
{
    ngx_uint_t  i;

    if (ngx_crest_key_cache == NULL) {
        ngx_crest_key_cache = ngx_calloc(NGX_CREST_KEY_CACHE_SLOTS
                                         * sizeof(ngx_crest_key_cache_slot_t),
                                         ngx_cycle->log);
        if (ngx_crest_key_cache == NULL) {
            return NULL;
        }
    }

    /* the digest is uniformly random: its first bytes are the index */
    i = ((ngx_uint_t) digest[0] << 8 | digest[1]) % NGX_CREST_KEY_CACHE_SLOTS;

    return &ngx_crest_key_cache[i];
}


static ngx_int_t
ngx_http_crest_auth_identity_copy(ngx_http_request_t *r, ngx_str_t *dst,
    u_char *src)
{
    /* NUL-terminated: other modules pass these to libpq as C strings */
    dst->len = ngx_strlen(src);
    dst->data = ngx_pnalloc(r->pool, dst->len + 1);

    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(dst->data, src, dst->len + 1);

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_auth_from_slot(ngx_http_request_t *r,
    ngx_http_crest_auth_ctx_t *ctx, ngx_crest_key_cache_slot_t *slot)
{
    if (ngx_http_crest_auth_identity_copy(r, &ctx->identity.user_id,
                                          slot->user_id) != NGX_OK
        || ngx_http_crest_auth_identity_copy(r, &ctx->identity.role,
                                             slot->role) != NGX_OK
        || ngx_http_crest_auth_identity_copy(r, &ctx->identity.plan,
                                             slot->plan) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->identity.api_key = 1;

    return NGX_OK;
}


static void
ngx_http_crest_auth_key_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_auth_ctx_t  *ctx = data;

    ngx_connection_t                 *c;
    ngx_http_request_t               *r;
    ngx_crest_key_cache_slot_t       *slot;
    ngx_http_crest_auth_main_conf_t  *amcf;

    r = ctx->request;
    c = r->connection;
    ctx->pending = 0;
    ctx->done = 1;

    if (status != NGX_CREST_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "crest auth: api key lookup %s: %s",
                      ngx_crest_status_text(status),
                      ngx_crest_pg_error(status, res));
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        goto resume;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_auth_module);
    slot = ngx_http_crest_auth_cache_slot(ctx->digest);

    if (slot == NULL) {
        ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto resume;
    }

    ngx_memzero(slot, sizeof(ngx_crest_key_cache_slot_t));
    ngx_memcpy(slot->digest, ctx->digest, sizeof(ctx->digest));
    slot->used = 1;
    slot->expires = ngx_current_msec + amcf->key_cache_ttl;

    if (PQntuples(res) == 1
        && PQgetlength(res, 0, 0) < (int) sizeof(slot->user_id)
        && PQgetlength(res, 0, 1) < (int) sizeof(slot->role)
        && PQgetlength(res, 0, 2) < (int) sizeof(slot->plan))
    {
        slot->valid = 1;
        ngx_cpystrn(slot->user_id, (u_char *) PQgetvalue(res, 0, 0),
                    sizeof(slot->user_id));
        ngx_cpystrn(slot->role, (u_char *) PQgetvalue(res, 0, 1),
                    sizeof(slot->role));
        ngx_cpystrn(slot->plan, (u_char *) PQgetvalue(res, 0, 2),
                    sizeof(slot->plan));
    }

    if (!slot->valid) {
        ctx->status = NGX_HTTP_UNAUTHORIZED;

    } else {
        ctx->status = ngx_http_crest_auth_from_slot(r, ctx, slot);
    }

resume:

    /* back into the phases, where the handler reads ctx->status */
    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_crest_auth_api_key(ngx_http_request_t *r,
    ngx_http_crest_auth_ctx_t *ctx, ngx_str_t *key)
{
    char                         hex[SHA256_DIGEST_LENGTH * 2 + 1];
    const char                  *values[1];
    ngx_crest_pg_query_t        *q;
    ngx_crest_key_cache_slot_t  *slot;

    SHA256(key->data, key->len, ctx->digest);

    slot = ngx_http_crest_auth_cache_slot(ctx->digest);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    if (slot->used
        && (ngx_msec_int_t) (slot->expires - ngx_current_msec) > 0
        && ngx_memcmp(slot->digest, ctx->digest, sizeof(ctx->digest)) == 0)
    {
        if (!slot->valid) {
            return NGX_DECLINED;
        }

        return ngx_http_crest_auth_from_slot(r, ctx, slot);
    }

    ngx_hex_dump((u_char *) hex, ctx->digest, sizeof(ctx->digest));
    hex[SHA256_DIGEST_LENGTH * 2] = '\0';
    values[0] = hex;

    q = ngx_crest_pg_query(
            "UPDATE api_keys k SET last_used_at = now() FROM users u "
            "WHERE k.key_hash = decode($1, 'hex') AND k.revoked_at IS NULL "
            "AND u.id = k.user_id "
            "RETURNING k.user_id, u.role, "
            "COALESCE((SELECT s.plan_id FROM subscriptions s "
            "WHERE s.user_id = u.id "
            "AND s.status IN ('active', 'trialing', 'past_due') LIMIT 1), "
            "'free')",
            1, values, NULL, 0, ngx_http_crest_auth_key_done, ctx,
            r->connection->log);

    if (q == NULL) {
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        return NGX_ERROR;
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->pending = 1;

    return NGX_AGAIN;
}


/* the phase handler */

static ngx_int_t
ngx_http_crest_auth_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         cred;
    const char                       *reason;
    ngx_http_crest_auth_ctx_t        *ctx;
    ngx_http_crest_auth_loc_conf_t   *alcf;
    ngx_http_crest_auth_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_auth_module);

    if (alcf->mode == NGX_CREST_AUTH_OFF || r != r->main) {
        return NGX_DECLINED;
    }

    /* a CORS preflight carries no credentials by design */
    if (r->method == NGX_HTTP_OPTIONS) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_auth_module);

    if (ctx) {
        if (ctx->pending) {
            return NGX_AGAIN;
        }

        if (ctx->done) {
            /* resumed after an API key lookup */
            if (ctx->status == NGX_HTTP_UNAUTHORIZED) {
                return ngx_http_crest_auth_end(r, NGX_HTTP_UNAUTHORIZED,
                                               "invalid API key");
            }

            if (ctx->status == NGX_HTTP_SERVICE_UNAVAILABLE) {
                ngx_http_finalize_request(r,
                    ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         CREST_ERR_SERVICE_UNAVAILABLE,
                                         "cannot check the API key now",
                                         NULL));
                return NGX_DONE;
            }

            if (ctx->status != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            goto authorized;
        }

        /* ran already (an internal redirect): keep the identity */
        goto authorized;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_auth_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_crest_auth_module);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_auth_module);

    rc = ngx_http_crest_auth_credential(r, amcf, &cred);

    if (rc == NGX_DECLINED) {
        if (alcf->mode == NGX_CREST_AUTH_OPTIONAL) {
            return NGX_DECLINED;
        }

        return ngx_http_crest_auth_end(r, NGX_HTTP_UNAUTHORIZED, "");
    }

    if (rc == NGX_ERROR) {
        return ngx_http_crest_auth_end(r, NGX_HTTP_UNAUTHORIZED,
                                       "malformed Authorization header");
    }

    if (cred.len > sizeof(NGX_CREST_API_KEY_PREFIX) - 1
        && ngx_strncmp(cred.data, NGX_CREST_API_KEY_PREFIX,
                       sizeof(NGX_CREST_API_KEY_PREFIX) - 1) == 0)
    {
        rc = ngx_http_crest_auth_api_key(r, ctx, &cred);

        if (rc == NGX_AGAIN) {
            r->read_event_handler = ngx_http_test_reading;
            r->write_event_handler = ngx_http_core_run_phases;
            return NGX_AGAIN;
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_crest_auth_end(r, NGX_HTTP_UNAUTHORIZED,
                                           "invalid API key");
        }

        if (rc == NGX_ERROR) {
            if (ctx->status == NGX_HTTP_SERVICE_UNAVAILABLE) {
                ngx_http_finalize_request(r,
                    ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         CREST_ERR_SERVICE_UNAVAILABLE,
                                         "cannot check the API key now",
                                         NULL));
                return NGX_DONE;
            }

            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->done = 1;
        goto authorized;
    }

    reason = NULL;
    rc = ngx_http_crest_auth_jwt(r, amcf, ctx, &cred, &reason);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest auth: token refused: %s", reason);
        return ngx_http_crest_auth_end(r, NGX_HTTP_UNAUTHORIZED, reason);
    }

    ctx->done = 1;

authorized:

    if (ctx->identity.user_id.len == 0) {
        /* optional authentication, nothing presented */
        return NGX_DECLINED;
    }

    if (alcf->admin
        && !(ctx->identity.role.len == 5
             && ngx_strncmp(ctx->identity.role.data, "admin", 5) == 0))
    {
        return ngx_http_crest_auth_end(r, NGX_HTTP_FORBIDDEN,
                                       "this needs the admin role");
    }

    return NGX_DECLINED;
}


/* the identity for other modules */

ngx_crest_identity_t *
ngx_crest_auth_identity(ngx_http_request_t *r)
{
    ngx_http_crest_auth_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_crest_auth_module);

    if (ctx == NULL || ctx->identity.user_id.len == 0) {
        return NULL;
    }

    return &ctx->identity;
}


static ngx_int_t
ngx_http_crest_auth_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t             *s;
    ngx_crest_identity_t  *id;

    static ngx_str_t  jwt = ngx_string("jwt");
    static ngx_str_t  key = ngx_string("api_key");

    id = ngx_crest_auth_identity(r);

    if (id == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {
    case NGX_CREST_VAR_USER_ID:
        s = &id->user_id;
        break;
    case NGX_CREST_VAR_ROLE:
        s = &id->role;
        break;
    case NGX_CREST_VAR_PLAN:
        s = &id->plan;
        break;
    default:
        s = id->api_key ? &key : &jwt;
    }

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* $crest_claim_<name>: a claim of the caller's JWT, scalars only */
static ngx_int_t
ngx_http_crest_auth_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t             *var = (ngx_str_t *) data;

    char                  *name;
    json_t                *c;
    u_char                *p;
    ngx_crest_identity_t  *id;

    id = ngx_crest_auth_identity(r);

    v->not_found = 1;

    if (id == NULL || id->claims == NULL) {
        return NGX_OK;
    }

    name = ngx_pnalloc(r->pool, var->len - (sizeof("crest_claim_") - 1) + 1);
    if (name == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) name, var->data + sizeof("crest_claim_") - 1,
                var->len - (sizeof("crest_claim_") - 1) + 1);

    c = json_object_get(id->claims, name);

    if (json_is_string(c)) {
        v->data = (u_char *) json_string_value(c);
        v->len = json_string_length(c);

    } else if (json_is_integer(c)) {
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }
        v->data = p;
        v->len = ngx_sprintf(p, "%L", (int64_t) json_integer_value(c)) - p;

    } else if (json_is_boolean(c)) {
        v->data = (u_char *) (json_is_true(c) ? "true" : "false");
        v->len = json_is_true(c) ? 4 : 5;

    } else {
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* issuing */

ngx_int_t
ngx_crest_auth_issue(ngx_http_request_t *r, ngx_str_t *user_id,
    ngx_str_t *role, ngx_str_t *plan, ngx_str_t *token, time_t *expires_in)
{
    time_t                            now;
    u_char                            jti_raw[16], jti[33];
    crest_jw_t                        w;
    crest_buf_t                       claims, out;
    crest_allocator_t                 a;
    ngx_http_crest_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_auth_module);

    if (amcf->signing_key == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest auth: no key that can sign tokens is configured");
        return NGX_ERROR;
    }

    if (RAND_bytes(jti_raw, sizeof(jti_raw)) != 1) {
        return NGX_ERROR;
    }

    ngx_hex_dump(jti, jti_raw, sizeof(jti_raw));
    now = ngx_time();

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&claims, &a);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &claims);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "sub");
    crest_jw_strn(&w, (const char *) user_id->data, user_id->len);
    crest_jw_key(&w, "role");
    crest_jw_strn(&w, (const char *) role->data, role->len);
    crest_jw_key(&w, "plan");
    crest_jw_strn(&w, (const char *) plan->data, plan->len);
    crest_jw_key(&w, "iat");
    crest_jw_int(&w, now);
    crest_jw_key(&w, "exp");
    crest_jw_int(&w, now + amcf->access_ttl);
    crest_jw_key(&w, "jti");
    crest_jw_strn(&w, (const char *) jti, 32);

    if (amcf->issuer.len) {
        crest_jw_key(&w, "iss");
        crest_jw_strn(&w, (const char *) amcf->issuer.data, amcf->issuer.len);
    }

    if (amcf->audience.len) {
        crest_jw_key(&w, "aud");
        crest_jw_strn(&w, (const char *) amcf->audience.data,
                      amcf->audience.len);
    }

    crest_jw_obj_end(&w);

    if (crest_buf_failed(&claims)
        || crest_jwt_sign(amcf->signing_key, claims.data, claims.len, &out)
           != 0)
    {
        return NGX_ERROR;
    }

    token->data = (u_char *) out.data;
    token->len = out.len;
    *expires_in = amcf->access_ttl;

    return NGX_OK;
}


time_t
ngx_crest_auth_refresh_ttl(ngx_http_request_t *r)
{
    ngx_http_crest_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_auth_module);

    return amcf->refresh_ttl;
}


ngx_int_t
ngx_crest_auth_set_cookie(ngx_http_request_t *r, ngx_str_t *token,
    time_t max_age)
{
    u_char                           *p;
    size_t                            len;
    ngx_table_elt_t                  *h;
    ngx_http_crest_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_auth_module);

    if (amcf->cookie.len == 0) {
        return NGX_OK;
    }

    len = amcf->cookie.len + (token ? token->len : 0)
          + sizeof("=; Path=/; Max-Age=; HttpOnly; SameSite=Lax; Secure") - 1
          + NGX_TIME_T_LEN;

    p = ngx_pnalloc(r->pool, len);
    h = ngx_list_push(&r->headers_out.headers);

    if (p == NULL || h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Set-Cookie");
    h->value.data = p;

    p = ngx_sprintf(p, "%V=%V; Path=/; Max-Age=%T; HttpOnly; SameSite=Lax",
                    &amcf->cookie, token ? token : &(ngx_str_t) ngx_null_string,
                    token ? max_age : 0);

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }
#endif

    h->value.len = p - h->value.data;

    return NGX_OK;
}


void
ngx_crest_auth_forget_user(ngx_str_t *user_id)
{
    ngx_uint_t  i;

    if (ngx_crest_key_cache == NULL) {
        return;
    }

    for (i = 0; i < NGX_CREST_KEY_CACHE_SLOTS; i++) {
        if (ngx_crest_key_cache[i].used
            && ngx_strlen(ngx_crest_key_cache[i].user_id) == user_id->len
            && ngx_strncmp(ngx_crest_key_cache[i].user_id, user_id->data,
                           user_id->len) == 0)
        {
            ngx_crest_key_cache[i].used = 0;
        }
    }
}
