/*
 * ngx_http_crest_apikey_module: the caller's API keys.
 *
 *   location /api/keys { crest_auth on; crest_api_keys; }
 *
 *   POST   /api/keys        {name}: a new key, shown in full this once
 *   GET    /api/keys        the caller's keys, never their secrets
 *   DELETE /api/keys/{id}   revokes one of the caller's keys
 *
 * A key is "crest_" and 32 random bytes in base64url; only its SHA-256 is
 * stored.  Another user's key id answers 404, like a key that never was.
 */

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_crest_pg.h"
#include "ngx_crest_auth.h"
#include "crest_json.h"
#include "crest_validate.h"


#define NGX_CREST_KEY_RAW         32
#define NGX_CREST_KEY_PREFIX_LEN  8
#define NGX_CREST_KEY_NAME_MAX    100
#define NGX_CREST_KEYS_MAX        100   /* per user: a list fits one page */

#define NGX_CREST_KEY_COLUMNS                                                 \
    "id, name, prefix, "                                                      \
    "to_char(created_at AT TIME ZONE 'UTC', "                                 \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "                                  \
    "to_char(last_used_at AT TIME ZONE 'UTC', "                               \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


typedef struct {
    ngx_http_request_t        *request;
    ngx_crest_identity_t      *identity;
    u_char                     key[sizeof("crest_") - 1 + 43 + 1];
} ngx_http_crest_apikey_ctx_t;


static char *ngx_http_crest_api_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_apikey_handler(ngx_http_request_t *r);


static ngx_command_t  ngx_http_crest_apikey_commands[] = {

    { ngx_string("crest_api_keys"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_crest_api_keys,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_apikey_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_crest_apikey_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_apikey_module_ctx,     /* module context */
    ngx_http_crest_apikey_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static char *
ngx_http_crest_api_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_apikey_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_apikey_query(ngx_http_crest_apikey_ctx_t *ctx, const char *sql,
    int n, const char **values, ngx_crest_pg_handler_pt handler)
{
    ngx_int_t  rc;

    rc = ngx_crest_pg_request(ctx->request, sql, n, values, handler, ctx);

    if (rc == NGX_DONE) {
        ctx->request->main->count++;
    }

    return rc;
}


/* One key as JSON: columns as in NGX_CREST_KEY_COLUMNS. */
static void
ngx_http_crest_apikey_json(crest_jw_t *w, PGresult *res, int row,
    const char *secret)
{
    int                 i;
    static const char  *names[] = {
        "id", "name", "prefix", "createdAt", "lastUsedAt"
    };

    crest_jw_obj_begin(w);

    for (i = 0; i < 5; i++) {
        crest_jw_key(w, names[i]);

        if (PQgetisnull(res, row, i)) {
            crest_jw_null(w);

        } else {
            crest_jw_strn(w, PQgetvalue(res, row, i),
                          PQgetlength(res, row, i));
        }
    }

    if (secret) {
        crest_jw_key(w, "key");
        crest_jw_str(w, secret);
    }

    crest_jw_obj_end(w);
}


/* POST: create */

static void
ngx_http_crest_apikey_created(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_apikey_ctx_t  *ctx = data;

    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                           ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_CONFLICT, CREST_ERR_CONFLICT,
                                 "the key limit is reached: revoke a key first",
                                 NULL));
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);
    ngx_http_crest_apikey_json(&w, res, 0, (const char *) ctx->key);

    ngx_crest_finalize(r,
                       ngx_crest_send_ok(r, NGX_HTTP_CREATED, &out, NULL));
}


static ngx_int_t
ngx_http_crest_apikey_create(ngx_http_request_t *r, json_t *body)
{
    u_char                        raw[NGX_CREST_KEY_RAW], digest[SHA256_DIGEST_LENGTH];
    char                          hex[SHA256_DIGEST_LENGTH * 2 + 1];
    char                          prefix[NGX_CREST_KEY_PREFIX_LEN + 1];
    const char                   *values[5], *name;
    size_t                        len;
    json_t                       *v;
    ngx_str_t                     src, dst;
    ngx_http_crest_apikey_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_apikey_module);

    v = json_object_get(body, "name");
    name = json_string_value(v);
    len = json_string_length(v);

    if (name == NULL || len == 0 || len > NGX_CREST_KEY_NAME_MAX
        || !crest_is_clean_text(name, len))
    {
        return ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "name must be 1 to 100 characters of text",
                                    NULL);
    }

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->key, "crest_", 6);
    src.data = raw;
    src.len = sizeof(raw);
    dst.data = ctx->key + 6;
    ngx_encode_base64url(&dst, &src);
    ctx->key[6 + dst.len] = '\0';

    SHA256(ctx->key, 6 + dst.len, digest);
    ngx_hex_dump((u_char *) hex, digest, sizeof(digest));
    hex[sizeof(hex) - 1] = '\0';

    ngx_memcpy(prefix, ctx->key + 6, NGX_CREST_KEY_PREFIX_LEN);
    prefix[NGX_CREST_KEY_PREFIX_LEN] = '\0';

    values[0] = (const char *) ctx->identity->user_id.data;
    values[1] = name;
    values[2] = prefix;
    values[3] = hex;

    /* the count check and the insert in one statement */
    return ngx_http_crest_apikey_query(ctx,
        "INSERT INTO api_keys (user_id, name, prefix, key_hash) "
        "SELECT $1, $2, $3, decode($4, 'hex') "
        "WHERE (SELECT count(*) FROM api_keys WHERE user_id = $1 "
        "AND revoked_at IS NULL) < " ngx_value(NGX_CREST_KEYS_MAX) " "
        "RETURNING " NGX_CREST_KEY_COLUMNS,
        4, values, ngx_http_crest_apikey_created);
}


/* GET: list */

static void
ngx_http_crest_apikey_listed(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_apikey_ctx_t  *ctx = data;

    int                  i;
    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                           ngx_crest_pg_send_error(r, status, res));
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "keys");
    crest_jw_arr_begin(&w);

    for (i = 0; i < PQntuples(res); i++) {
        ngx_http_crest_apikey_json(&w, res, i, NULL);
    }

    crest_jw_arr_end(&w);
    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out,
                                                      NULL));
}


/* DELETE: revoke */

static void
ngx_http_crest_apikey_revoked(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_apikey_ctx_t  *ctx = data;

    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                           ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                 "no such API key", NULL));
        return;
    }

    /* this worker at once; the others within crest_auth_key_cache */
    ngx_crest_auth_forget_user(&ctx->identity->user_id);

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_buf_appends(&out, "{\"revoked\":true,\"id\":\"");
    crest_buf_append(&out, PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));
    crest_buf_appends(&out, "\"}");

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out,
                                                      NULL));
}


static ngx_int_t
ngx_http_crest_apikey_handler(ngx_http_request_t *r)
{
    u_char                       *p, *last, key_id[37];
    ngx_int_t                     rc;
    ngx_str_t                     id;
    const char                   *values[2];
    ngx_http_crest_apikey_ctx_t  *ctx;

    static ngx_str_t  base = ngx_string("/api/keys");

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_apikey_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->identity = ngx_crest_auth_identity(r);
    ngx_http_set_ctx(r, ctx, ngx_http_crest_apikey_module);

    if (ctx->identity == NULL) {
        return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED,
                                    "authentication required", NULL);
    }

    /* /api/keys, or /api/keys/{id}: the last segment after the base */
    id.len = 0;
    p = r->uri.data + r->uri.len;
    last = p;

    while (last > r->uri.data && last[-1] != '/') {
        last--;
    }

    if (last - r->uri.data >= (ssize_t) base.len + 1
        && ngx_strncmp(last - 1 - base.len, base.data, base.len) == 0
        && p > last)
    {
        id.data = last;
        id.len = p - last;

    } else if (!((r->uri.len >= base.len
                  && ngx_strncmp(p - base.len, base.data, base.len) == 0)
                 || (r->uri.len > base.len && p[-1] == '/'
                     && ngx_strncmp(p - 1 - base.len, base.data, base.len)
                        == 0)))
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                    "no such API key", NULL);
    }

    if (id.len) {
        if (r->method != NGX_HTTP_DELETE) {
            return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                        CREST_ERR_VALIDATION_ERROR,
                                        "method not allowed", NULL);
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (!crest_is_uuid((const char *) id.data, id.len)) {
            return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND,
                                        CREST_ERR_NOT_FOUND,
                                        "no such API key", NULL);
        }

        ngx_memcpy(key_id, id.data, id.len);
        key_id[id.len] = '\0';

        values[0] = (const char *) key_id;
        values[1] = (const char *) ctx->identity->user_id.data;

        return ngx_http_crest_apikey_query(ctx,
            "UPDATE api_keys SET revoked_at = now() "
            "WHERE id = $1::uuid AND user_id = $2 AND revoked_at IS NULL "
            "RETURNING id",
            2, values, ngx_http_crest_apikey_revoked);
    }

    if (r->method == NGX_HTTP_POST) {
        return ngx_crest_read_json_body(r, 1, ngx_http_crest_apikey_create);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    values[0] = (const char *) ctx->identity->user_id.data;

    return ngx_http_crest_apikey_query(ctx,
        "SELECT " NGX_CREST_KEY_COLUMNS " FROM api_keys "
        "WHERE user_id = $1 AND revoked_at IS NULL "
        "ORDER BY created_at DESC",
        1, values, ngx_http_crest_apikey_listed);
}
