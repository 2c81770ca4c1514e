/*
 * ngx_http_crest_account_module: accounts and sessions.
 *
 *   crest_account register;   POST {email, password, name}
 *   crest_account login;      POST {email, password}
 *   crest_account refresh;    POST {refreshToken}: rotates it
 *   crest_account logout;     POST {refreshToken}: revokes its family
 *   crest_account user;       GET or DELETE the caller's account
 *
 * Passwords are hashed with argon2id on an nginx thread pool: a hash costs
 * tens of milliseconds of CPU and 19 MiB, which would stall every other
 * request of the worker if done on the event loop.  Refresh tokens are
 * random, stored as SHA-256 only, and rotate on every use; a spent token
 * presented again revokes its whole family (the token was stolen, or the
 * legitimate holder's copy was).
 */

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_crest_pg.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_limit.h"
#include "crest_json.h"
#include "crest_validate.h"


#if !(NGX_THREADS)
#error ngx_http_crest_account_module needs nginx built --with-threads
#endif


#define NGX_CREST_ACCOUNT_REGISTER   1
#define NGX_CREST_ACCOUNT_LOGIN      2
#define NGX_CREST_ACCOUNT_REFRESH    3
#define NGX_CREST_ACCOUNT_LOGOUT     4
#define NGX_CREST_ACCOUNT_USER       5

/* OWASP's argon2id floor: 19 MiB, two passes, one lane */
#define NGX_CREST_ARGON2_T           2
#define NGX_CREST_ARGON2_M           19456
#define NGX_CREST_ARGON2_P           1
#define NGX_CREST_ARGON2_SALT        16
#define NGX_CREST_ARGON2_HASH        32
#define NGX_CREST_ARGON2_ENCODED     128

#define NGX_CREST_PASSWORD_MIN       8
#define NGX_CREST_PASSWORD_MAX       1024
#define NGX_CREST_NAME_MAX           100

/* 32 random bytes, base64url */
#define NGX_CREST_REFRESH_RAW        32
#define NGX_CREST_REFRESH_LEN        43
#define NGX_CREST_TOKEN_INPUT_MAX    256

/* users u: id, email, name, role, plan, createdAt */
#define NGX_CREST_USER_COLUMNS                                                \
    "u.id, u.email, u.name, u.role, "                                         \
    "COALESCE((SELECT s.plan_id FROM subscriptions s WHERE s.user_id = u.id " \
    "AND s.status IN ('active', 'trialing', 'past_due') LIMIT 1), 'free'), "  \
    "to_char(u.created_at AT TIME ZONE 'UTC', "                               \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


typedef struct {
    ngx_thread_pool_t         *pool;
    ngx_str_t                  pool_name;
    ngx_uint_t                 used;        /* some location hashes */
    char                       dummy_hash[NGX_CREST_ARGON2_ENCODED];
} ngx_http_crest_account_main_conf_t;


typedef struct {
    ngx_uint_t                 op;
    ngx_shm_zone_t            *limit;       /* per-account login limit */
} ngx_http_crest_account_loc_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_uint_t                 op;

    char                       email[CREST_EMAIL_MAX + 1];
    ngx_str_t                  password;
    ngx_str_t                  name;

    /* argon2 work, filled on the thread */
    char                       hash[NGX_CREST_ARGON2_ENCODED];
    u_char                     salt[NGX_CREST_ARGON2_SALT];
    const char                *verify_against;
    ngx_int_t                  thread_rc;

    u_char                     refresh[NGX_CREST_REFRESH_LEN + 1];
    char                       refresh_hash[SHA256_DIGEST_LENGTH * 2 + 1];
    char                       ttl[NGX_INT_T_LEN + 1];

    /* the user row, copied out of the query result */
    ngx_str_t                  user[6];
    ngx_uint_t                 found;
} ngx_http_crest_account_ctx_t;


static void *ngx_http_crest_account_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_account_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_crest_account_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_account_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_crest_account(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_account_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_account_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_account_body(ngx_http_request_t *r,
    json_t *body);
static ngx_int_t ngx_http_crest_account_user(ngx_http_request_t *r);


static ngx_command_t  ngx_http_crest_account_commands[] = {

    { ngx_string("crest_account"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_account,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_account_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_account_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_account_hash_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_account_main_conf_t, pool_name),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_account_module_ctx = {
    NULL,                                      /* preconfiguration */
    NULL,                                      /* postconfiguration */

    ngx_http_crest_account_create_main_conf,   /* create main configuration */
    ngx_http_crest_account_init_main_conf,     /* init main configuration */

    NULL,                                      /* create server configuration */
    NULL,                                      /* merge server configuration */

    ngx_http_crest_account_create_loc_conf,    /* create location configuration */
    ngx_http_crest_account_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_crest_account_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_account_module_ctx,    /* module context */
    ngx_http_crest_account_commands,       /* module directives */
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


static void *
ngx_http_crest_account_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_account_main_conf_t));
}


static char *
ngx_http_crest_account_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_account_main_conf_t  *amcf = conf;

    u_char  salt[NGX_CREST_ARGON2_SALT];

    if (amcf->pool_name.len == 0) {
        ngx_str_set(&amcf->pool_name, "crest_hash");
    }

    if (!amcf->used) {
        /* no account endpoint here: no thread pool need be declared */
        return NGX_CONF_OK;
    }

    /* it must be declared with thread_pool: nginx refuses it otherwise */
    amcf->pool = ngx_thread_pool_add(cf, &amcf->pool_name);
    if (amcf->pool == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * A login for an unknown email is checked against this hash, so that
     * it costs what a wrong password costs and the timing tells nothing.
     */
    if (RAND_bytes(salt, sizeof(salt)) != 1
        || argon2id_hash_encoded(NGX_CREST_ARGON2_T, NGX_CREST_ARGON2_M,
                                 NGX_CREST_ARGON2_P, "x", 1, salt,
                                 sizeof(salt), NGX_CREST_ARGON2_HASH,
                                 amcf->dummy_hash, sizeof(amcf->dummy_hash))
           != ARGON2_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest account: cannot prepare the password hash");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_crest_account_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_account_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_account_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->op = NGX_CONF_UNSET_UINT;

    return alcf;
}


static char *
ngx_http_crest_account_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_crest_account_loc_conf_t  *prev = parent;
    ngx_http_crest_account_loc_conf_t  *conf = child;

    ngx_conf_merge_uint_value(conf->op, prev->op, 0);

    if (conf->limit == NULL) {
        conf->limit = prev->limit;
    }

    return NGX_CONF_OK;
}


/* crest_account_limit zone=NAME: logins per account (the email) */
static char *
ngx_http_crest_account_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_account_loc_conf_t  *alcf = conf;

    ngx_str_t  *value, name;

    if (alcf->limit) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "zone=", 5) != 0 || value[1].len == 5) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data + 5;
    name.len = value[1].len - 5;

    alcf->limit = ngx_crest_limit_zone(cf, &name);

    return alcf->limit ? NGX_CONF_OK : NGX_CONF_ERROR;
}


static char *
ngx_http_crest_account(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_account_loc_conf_t  *alcf = conf;

    ngx_str_t                           *value;
    ngx_uint_t                           i;
    ngx_http_core_loc_conf_t            *clcf;
    ngx_http_crest_account_main_conf_t  *amcf;

    static struct {
        ngx_str_t   name;
        ngx_uint_t  op;
    }  ops[] = {
        { ngx_string("register"), NGX_CREST_ACCOUNT_REGISTER },
        { ngx_string("login"), NGX_CREST_ACCOUNT_LOGIN },
        { ngx_string("refresh"), NGX_CREST_ACCOUNT_REFRESH },
        { ngx_string("logout"), NGX_CREST_ACCOUNT_LOGOUT },
        { ngx_string("user"), NGX_CREST_ACCOUNT_USER },
    };

    if (alcf->op != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (value[1].len == ops[i].name.len
            && ngx_strncmp(value[1].data, ops[i].name.data, value[1].len) == 0)
        {
            alcf->op = ops[i].op;
            break;
        }
    }

    if (alcf->op == NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (alcf->op != NGX_CREST_ACCOUNT_USER) {
        amcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_crest_account_module);
        amcf->used = 1;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_account_handler;

    return NGX_CONF_OK;
}


/* helpers */

static ngx_int_t
ngx_http_crest_account_invalid(ngx_http_request_t *r, const char *field,
    const char *reason)
{
    crest_jw_t         w;
    crest_buf_t        details;
    crest_allocator_t  a;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&details, &a);
    crest_jw_init(&w, &details);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "fields");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, field);
    crest_jw_str(&w, reason);
    crest_jw_obj_end(&w);
    crest_jw_obj_end(&w);

    return ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                CREST_ERR_VALIDATION_ERROR,
                                "the request is not valid", &details);
}


static ngx_int_t
ngx_http_crest_account_string(json_t *body, const char *key, ngx_str_t *out,
    ngx_pool_t *pool)
{
    json_t  *v;

    v = json_object_get(body, key);

    if (v == NULL || json_is_null(v)) {
        out->len = 0;
        out->data = NULL;
        return NGX_DECLINED;
    }

    if (!json_is_string(v)) {
        return NGX_ERROR;
    }

    out->len = json_string_length(v);
    out->data = ngx_pnalloc(pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, json_string_value(v), out->len);
    out->data[out->len] = '\0';

    return NGX_OK;
}


static void
ngx_http_crest_account_wipe(void *data)
{
    ngx_str_t  *s = data;

    if (s->data) {
        OPENSSL_cleanse(s->data, s->len);
    }
}


/* Makes a new refresh token and the hex SHA-256 stored for it. */
static ngx_int_t
ngx_http_crest_account_new_refresh(ngx_http_crest_account_ctx_t *ctx)
{
    u_char     raw[NGX_CREST_REFRESH_RAW];
    ngx_str_t  src, dst;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = sizeof(raw);
    dst.data = ctx->refresh;
    ngx_encode_base64url(&dst, &src);
    ctx->refresh[dst.len] = '\0';

    return NGX_OK;
}


static void
ngx_http_crest_account_hash_token(u_char *token, size_t len, char *hex)
{
    u_char  digest[SHA256_DIGEST_LENGTH];

    SHA256(token, len, digest);
    ngx_hex_dump((u_char *) hex, digest, sizeof(digest));
    hex[SHA256_DIGEST_LENGTH * 2] = '\0';
}


/* Copies the user columns out of a result (row 0) into the request pool. */
static ngx_int_t
ngx_http_crest_account_copy_user(ngx_http_crest_account_ctx_t *ctx,
    PGresult *res)
{
    int          i;
    ngx_pool_t  *pool;

    pool = ctx->request->pool;

    for (i = 0; i < 6; i++) {
        if (PQgetisnull(res, 0, i)) {
            ctx->user[i].len = 0;
            ctx->user[i].data = NULL;
            continue;
        }

        ctx->user[i].len = PQgetlength(res, 0, i);
        ctx->user[i].data = ngx_pnalloc(pool, ctx->user[i].len + 1);
        if (ctx->user[i].data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->user[i].data, PQgetvalue(res, 0, i), ctx->user[i].len);
        ctx->user[i].data[ctx->user[i].len] = '\0';
    }

    return NGX_OK;
}


static void
ngx_http_crest_account_user_json(crest_jw_t *w, ngx_str_t *u)
{
    static const char  *names[] = {
        "id", "email", "name", "role", "plan", "createdAt"
    };

    ngx_uint_t  i;

    crest_jw_obj_begin(w);

    for (i = 0; i < 6; i++) {
        crest_jw_key(w, names[i]);

        if (u[i].data == NULL) {
            crest_jw_null(w);

        } else {
            crest_jw_strn(w, (const char *) u[i].data, u[i].len);
        }
    }

    crest_jw_obj_end(w);
}


/* Answers a new session: access token, refresh token and the user. */
static ngx_int_t
ngx_http_crest_account_session(ngx_http_request_t *r,
    ngx_http_crest_account_ctx_t *ctx, ngx_uint_t status)
{
    time_t             expires_in;
    ngx_str_t          token;
    crest_jw_t         w;
    crest_buf_t        data;
    crest_allocator_t  a;

    if (ngx_crest_auth_issue(r, &ctx->user[0], &ctx->user[3], &ctx->user[4],
                             &token, &expires_in)
        != NGX_OK)
    {
        return ngx_crest_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                    CREST_ERR_INTERNAL_SERVER_ERROR,
                                    "cannot issue a token", NULL);
    }

    if (ngx_crest_auth_set_cookie(r, &token, expires_in) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&data, &a);
    crest_jw_init(&w, &data);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "accessToken");
    crest_jw_strn(&w, (const char *) token.data, token.len);
    crest_jw_key(&w, "refreshToken");
    crest_jw_str(&w, (const char *) ctx->refresh);
    crest_jw_key(&w, "tokenType");
    crest_jw_str(&w, "Bearer");
    crest_jw_key(&w, "expiresIn");
    crest_jw_int(&w, expires_in);
    crest_jw_key(&w, "refreshExpiresIn");
    crest_jw_int(&w, ngx_crest_auth_refresh_ttl(r));
    crest_jw_key(&w, "user");
    ngx_http_crest_account_user_json(&w, ctx->user);
    crest_jw_obj_end(&w);

    r->headers_out.last_modified_time = -1;

    return ngx_crest_send_ok(r, status, &data, NULL);
}


/* the password hash, on a thread */

static void
ngx_http_crest_account_hash_thread(void *data, ngx_log_t *log)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    if (ctx->verify_against) {
        ctx->thread_rc = argon2id_verify(ctx->verify_against,
                                         ctx->password.data,
                                         ctx->password.len);
        return;
    }

    ctx->thread_rc = argon2id_hash_encoded(NGX_CREST_ARGON2_T,
                                           NGX_CREST_ARGON2_M,
                                           NGX_CREST_ARGON2_P,
                                           ctx->password.data,
                                           ctx->password.len,
                                           ctx->salt, sizeof(ctx->salt),
                                           NGX_CREST_ARGON2_HASH,
                                           ctx->hash, sizeof(ctx->hash));
}


static void
ngx_http_crest_account_hash_done(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    /* our continuation, or nginx's finalizer if the client left meanwhile */
    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_crest_account_hash(ngx_http_request_t *r,
    ngx_http_crest_account_ctx_t *ctx, ngx_http_event_handler_pt next)
{
    ngx_thread_task_t                   *task;
    ngx_http_crest_account_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_account_module);

    if (!ctx->verify_against
        && RAND_bytes(ctx->salt, sizeof(ctx->salt)) != 1)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task = ngx_thread_task_alloc(r->pool, 0);
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task->ctx = ctx;
    task->handler = ngx_http_crest_account_hash_thread;
    task->event.data = r;
    task->event.handler = ngx_http_crest_account_hash_done;

    if (ngx_thread_task_post(amcf->pool, task) != NGX_OK) {
        /* the queue is full: a flood; refuse rather than wait */
        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "too many sign-ins at once, retry shortly",
                                    NULL);
    }

    /* the request's memory must outlive the thread's use of it */
    r->main->blocked++;
    r->aio = 1;
    r->write_event_handler = next;

    return NGX_DONE;
}


/* the handler */

static ngx_int_t
ngx_http_crest_account_handler(ngx_http_request_t *r)
{
    ngx_http_crest_account_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_account_module);

    if (alcf->op == NGX_CREST_ACCOUNT_USER) {
        return ngx_http_crest_account_user(r);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    return ngx_crest_read_json_body(r, 1, ngx_http_crest_account_body);
}


static void ngx_http_crest_account_register_hashed(ngx_http_request_t *r);
static void ngx_http_crest_account_register_done(void *data,
    ngx_crest_status_e status, PGresult *res);
static void ngx_http_crest_account_login_found(void *data,
    ngx_crest_status_e status, PGresult *res);
static void ngx_http_crest_account_login_checked(ngx_http_request_t *r);
static void ngx_http_crest_account_session_done(void *data,
    ngx_crest_status_e status, PGresult *res);
static void ngx_http_crest_account_refresh_done(void *data,
    ngx_crest_status_e status, PGresult *res);
static void ngx_http_crest_account_reuse_done(void *data,
    ngx_crest_status_e status, PGresult *res);
static void ngx_http_crest_account_logout_done(void *data,
    ngx_crest_status_e status, PGresult *res);


static ngx_int_t
ngx_http_crest_account_body(ngx_http_request_t *r, json_t *body)
{
    int                                  n;
    ngx_int_t                            rc;
    ngx_str_t                            email, token;
    const char                          *values[1];
    ngx_pool_cleanup_t                  *cln;
    ngx_http_crest_account_ctx_t        *ctx;
    ngx_http_crest_account_loc_conf_t   *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_account_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_account_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->op = alcf->op;
    ngx_http_set_ctx(r, ctx, ngx_http_crest_account_module);

    if (ctx->op == NGX_CREST_ACCOUNT_REFRESH
        || ctx->op == NGX_CREST_ACCOUNT_LOGOUT)
    {
        rc = ngx_http_crest_account_string(body, "refreshToken", &token,
                                           r->pool);
        if (rc != NGX_OK || token.len == 0
            || token.len > NGX_CREST_TOKEN_INPUT_MAX)
        {
            return ngx_http_crest_account_invalid(r, "refreshToken",
                                                  "must be a refresh token");
        }

        ngx_http_crest_account_hash_token(token.data, token.len,
                                          ctx->refresh_hash);

        if (ctx->op == NGX_CREST_ACCOUNT_LOGOUT) {
            values[0] = ctx->refresh_hash;

            rc = ngx_crest_pg_request(r,
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE family_id IN (SELECT family_id FROM refresh_tokens "
                "WHERE token_hash = decode($1, 'hex')) "
                "AND revoked_at IS NULL",
                1, values, ngx_http_crest_account_logout_done, ctx);

            goto async;
        }

        if (ngx_http_crest_account_new_refresh(ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        {
            const char  *v[3];
            char        *hex;

            hex = ngx_pnalloc(r->pool, SHA256_DIGEST_LENGTH * 2 + 1);
            if (hex == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_http_crest_account_hash_token(ctx->refresh,
                                              NGX_CREST_REFRESH_LEN, hex);
            ngx_sprintf((u_char *) ctx->ttl, "%T%Z",
                        ngx_crest_auth_refresh_ttl(r));

            v[0] = ctx->refresh_hash;
            v[1] = hex;
            v[2] = ctx->ttl;

            /*
             * Spend the old token and issue its successor in one statement;
             * a token spent already, revoked or expired matches nothing.
             */
            rc = ngx_crest_pg_request(r,
                "WITH old AS ("
                "UPDATE refresh_tokens SET used_at = now() "
                "WHERE token_hash = decode($1, 'hex') AND used_at IS NULL "
                "AND revoked_at IS NULL AND expires_at > now() "
                "RETURNING user_id, family_id), "
                "new AS ("
                "INSERT INTO refresh_tokens "
                "(user_id, family_id, token_hash, expires_at) "
                "SELECT user_id, family_id, decode($2, 'hex'), "
                "now() + make_interval(secs => $3::int) FROM old "
                "RETURNING user_id) "
                "SELECT " NGX_CREST_USER_COLUMNS " FROM users u "
                "JOIN new ON new.user_id = u.id",
                3, v, ngx_http_crest_account_refresh_done, ctx);
        }

        goto async;
    }

    /* register and login */

    rc = ngx_http_crest_account_string(body, "email", &email, r->pool);
    if (rc != NGX_OK) {
        return ngx_http_crest_account_invalid(r, "email",
                                              rc == NGX_DECLINED
                                              ? "is required"
                                              : "must be a string");
    }

    n = crest_email_normalize((const char *) email.data, email.len,
                              ctx->email);
    if (n < 0) {
        if (ctx->op == NGX_CREST_ACCOUNT_LOGIN) {
            /* no account can have it: the same answer as a wrong password */
            goto bad_login;
        }

        return ngx_http_crest_account_invalid(r, "email",
                                              "must be a valid email address");
    }

    rc = ngx_http_crest_account_string(body, "password", &ctx->password,
                                       r->pool);
    if (rc != NGX_OK) {
        return ngx_http_crest_account_invalid(r, "password",
                                              rc == NGX_DECLINED
                                              ? "is required"
                                              : "must be a string");
    }

    /* the password's copy is wiped with the request */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_crest_account_wipe;
    cln->data = &ctx->password;

    if (ctx->op == NGX_CREST_ACCOUNT_LOGIN) {
        /* guessing one account's password from many addresses */
        if (alcf->limit) {
            email.data = (u_char *) ctx->email;
            email.len = n;

            if (ngx_crest_limit_key(r, alcf->limit, &email, &rc)
                == NGX_DECLINED)
            {
                return rc;
            }
        }

        if (ctx->password.len == 0
            || ctx->password.len > NGX_CREST_PASSWORD_MAX)
        {
            goto bad_login;
        }

        values[0] = ctx->email;

        rc = ngx_crest_pg_request(r,
            "SELECT " NGX_CREST_USER_COLUMNS ", u.password_hash "
            "FROM users u WHERE u.email = $1",
            1, values, ngx_http_crest_account_login_found, ctx);

        goto async;
    }

    if (ctx->password.len < NGX_CREST_PASSWORD_MIN
        || ctx->password.len > NGX_CREST_PASSWORD_MAX)
    {
        return ngx_http_crest_account_invalid(r, "password",
                                              "must be 8 to 1024 bytes long");
    }

    rc = ngx_http_crest_account_string(body, "name", &ctx->name, r->pool);
    if (rc == NGX_ERROR
        || (rc == NGX_OK
            && (ctx->name.len == 0 || ctx->name.len > NGX_CREST_NAME_MAX
                || !crest_is_clean_text((const char *) ctx->name.data,
                                        ctx->name.len))))
    {
        return ngx_http_crest_account_invalid(r, "name",
                                              "must be 1 to 100 characters "
                                              "of text");
    }

    rc = ngx_http_crest_account_hash(r, ctx,
                                     ngx_http_crest_account_register_hashed);

async:

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;

bad_login:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "crest account: failed login");

    return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                CREST_ERR_UNAUTHORIZED,
                                "invalid email or password", NULL);
}


/* register: hashed, then one statement writes the user and a session */

static void
ngx_http_crest_account_register_hashed(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    const char                    *values[5];
    char                          *hex;
    ngx_http_crest_account_ctx_t  *ctx;

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_account_module);

    if (ctx->thread_rc != ARGON2_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest account: argon2 failed: %s",
                      argon2_error_message((int) ctx->thread_rc));
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    hex = ngx_pnalloc(r->pool, SHA256_DIGEST_LENGTH * 2 + 1);

    if (hex == NULL || ngx_http_crest_account_new_refresh(ctx) != NGX_OK) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_crest_account_hash_token(ctx->refresh, NGX_CREST_REFRESH_LEN, hex);
    ngx_sprintf((u_char *) ctx->ttl, "%T%Z", ngx_crest_auth_refresh_ttl(r));

    values[0] = ctx->email;
    values[1] = (const char *) ctx->name.data;     /* NULL: SQL NULL */
    values[2] = ctx->hash;
    values[3] = hex;
    values[4] = ctx->ttl;

    rc = ngx_crest_pg_request(r,
        "WITH u AS ("
        "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (email) DO NOTHING "
        "RETURNING id, email, name, role, created_at), "
        "t AS ("
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) "
        "SELECT id, gen_random_uuid(), decode($4, 'hex'), "
        "now() + make_interval(secs => $5::int) FROM u RETURNING user_id) "
        "SELECT u.id, u.email, u.name, u.role, 'free', "
        "to_char(u.created_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
        "FROM u JOIN t ON t.user_id = u.id",
        5, values, ngx_http_crest_account_register_done, ctx);

    if (rc != NGX_DONE) {
        ngx_crest_finalize(r, rc);
    }
}


static void
ngx_http_crest_account_register_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        rc = ngx_crest_pg_send_error(r, status, res);

    } else if (PQntuples(res) == 0) {
        rc = ngx_crest_send_error(r, NGX_HTTP_CONFLICT, CREST_ERR_CONFLICT,
                                  "an account with this email already exists",
                                  NULL);

    } else if (ngx_http_crest_account_copy_user(ctx, res) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        rc = ngx_http_crest_account_session(r, ctx, NGX_HTTP_CREATED);
    }

    ngx_crest_finalize(r, rc);
}


/* login: find the user, check the password on a thread, open a session */

static void
ngx_http_crest_account_login_found(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    char                                *hash;
    ngx_int_t                            rc;
    ngx_http_request_t                  *r;
    ngx_http_crest_account_main_conf_t  *amcf;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                     ngx_crest_pg_send_error(r, status, res));
        return;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_account_module);
    ctx->verify_against = amcf->dummy_hash;

    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 6)) {
        hash = ngx_pnalloc(r->pool, PQgetlength(res, 0, 6) + 1);

        if (hash == NULL || ngx_http_crest_account_copy_user(ctx, res) != NGX_OK)
        {
            ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_cpystrn((u_char *) hash, (u_char *) PQgetvalue(res, 0, 6),
                    PQgetlength(res, 0, 6) + 1);

        ctx->verify_against = hash;
        ctx->found = 1;
    }

    rc = ngx_http_crest_account_hash(r, ctx,
                                     ngx_http_crest_account_login_checked);

    if (rc != NGX_DONE) {
        ngx_crest_finalize(r, rc);
    }
}


static void
ngx_http_crest_account_login_checked(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    const char                    *values[3];
    char                          *hex;
    ngx_http_crest_account_ctx_t  *ctx;

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_account_module);

    if (!ctx->found || ctx->thread_rc != ARGON2_OK) {
        if (ctx->thread_rc != ARGON2_OK
            && ctx->thread_rc != ARGON2_VERIFY_MISMATCH)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "crest account: argon2 failed: %s",
                          argon2_error_message((int) ctx->thread_rc));
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest account: failed login");

        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                 CREST_ERR_UNAUTHORIZED,
                                 "invalid email or password", NULL));
        return;
    }

    hex = ngx_pnalloc(r->pool, SHA256_DIGEST_LENGTH * 2 + 1);

    if (hex == NULL || ngx_http_crest_account_new_refresh(ctx) != NGX_OK) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_crest_account_hash_token(ctx->refresh, NGX_CREST_REFRESH_LEN, hex);
    ngx_sprintf((u_char *) ctx->ttl, "%T%Z", ngx_crest_auth_refresh_ttl(r));

    values[0] = (const char *) ctx->user[0].data;
    values[1] = hex;
    values[2] = ctx->ttl;

    rc = ngx_crest_pg_request(r,
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, "
        "expires_at) VALUES ($1, gen_random_uuid(), decode($2, 'hex'), "
        "now() + make_interval(secs => $3::int))",
        3, values, ngx_http_crest_account_session_done, ctx);

    if (rc != NGX_DONE) {
        ngx_crest_finalize(r, rc);
    }
}


static void
ngx_http_crest_account_session_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        rc = ngx_crest_pg_send_error(r, status, res);

    } else {
        rc = ngx_http_crest_account_session(r, ctx, NGX_HTTP_OK);
    }

    ngx_crest_finalize(r, rc);
}


/* refresh and logout */

static void
ngx_http_crest_account_refresh_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    ngx_int_t            rc;
    const char          *values[1];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                     ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 1) {
        rc = ngx_http_crest_account_copy_user(ctx, res) == NGX_OK
             ? ngx_http_crest_account_session(r, ctx, NGX_HTTP_OK)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;

        ngx_crest_finalize(r, rc);
        return;
    }

    /*
     * Nothing was spent: unknown, expired or revoked - or spent before,
     * which means the token leaked.  Then its whole family goes.
     */
    values[0] = ctx->refresh_hash;

    rc = ngx_crest_pg_request(r,
        "UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE family_id IN (SELECT family_id FROM refresh_tokens "
        "WHERE token_hash = decode($1, 'hex') AND used_at IS NOT NULL) "
        "AND revoked_at IS NULL",
        1, values, ngx_http_crest_account_reuse_done, ctx);

    if (rc != NGX_DONE) {
        ngx_crest_finalize(r, rc);
    }
}


static void
ngx_http_crest_account_reuse_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    ngx_http_request_t  *r;

    r = ctx->request;

    if (status == NGX_CREST_OK && ngx_atoi((u_char *) PQcmdTuples(res),
                                           ngx_strlen(PQcmdTuples(res))) > 0)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "crest account: a spent refresh token was presented "
                      "again; its session family is revoked");
    }

    ngx_crest_finalize(r,
        ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED, CREST_ERR_UNAUTHORIZED,
                             "the refresh token is invalid or expired",
                             NULL));
}


static void
ngx_http_crest_account_logout_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    ngx_int_t            rc;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                     ngx_crest_pg_send_error(r, status, res));
        return;
    }

    /* an unknown token is logged out too: logout never fails for it */
    rc = ngx_crest_auth_set_cookie(r, NULL, 0);

    if (rc == NGX_OK) {
        ngx_crest_pool_allocator(&a, r->pool);
        crest_buf_init(&out, &a);
        crest_buf_appends(&out, "{\"loggedOut\":true}");
        rc = ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL);
    }

    ngx_crest_finalize(r, rc);
}


/* the caller's own account */

static void ngx_http_crest_account_user_done(void *data,
    ngx_crest_status_e status, PGresult *res);


static ngx_int_t
ngx_http_crest_account_user(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    const char                    *values[1];
    ngx_crest_identity_t          *id;
    ngx_http_crest_account_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_DELETE))) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    id = ngx_crest_auth_identity(r);
    if (id == NULL) {
        return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED,
                                    "authentication required", NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_account_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->op = NGX_CREST_ACCOUNT_USER;
    ngx_http_set_ctx(r, ctx, ngx_http_crest_account_module);

    values[0] = (const char *) id->user_id.data;

    if (r->method == NGX_HTTP_DELETE) {
        /* everything the user owns goes with the row (ON DELETE CASCADE) */
        rc = ngx_crest_pg_request(r,
            "DELETE FROM users u WHERE u.id = $1 RETURNING "
            "u.id, u.email, u.name, u.role, NULL, "
            "to_char(u.created_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            1, values, ngx_http_crest_account_user_done, ctx);

    } else {
        rc = ngx_crest_pg_request(r,
            "SELECT " NGX_CREST_USER_COLUMNS " FROM users u WHERE u.id = $1",
            1, values, ngx_http_crest_account_user_done, ctx);
    }

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


static void
ngx_http_crest_account_user_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_account_ctx_t  *ctx = data;

    ngx_int_t            rc;
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
        /* a valid token for an account deleted since */
        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                 "the account does not exist", NULL));
        return;
    }

    if (ngx_http_crest_account_copy_user(ctx, res) != NGX_OK) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    if (r->method == NGX_HTTP_DELETE) {
        ngx_crest_auth_forget_user(&ctx->user[0]);

        rc = ngx_crest_auth_set_cookie(r, NULL, 0);
        if (rc != NGX_OK) {
            ngx_crest_finalize(r, rc);
            return;
        }

        crest_jw_obj_begin(&w);
        crest_jw_key(&w, "deleted");
        crest_jw_bool(&w, 1);
        crest_jw_key(&w, "id");
        crest_jw_strn(&w, (const char *) ctx->user[0].data, ctx->user[0].len);
        crest_jw_obj_end(&w);

    } else {
        ngx_http_crest_account_user_json(&w, ctx->user);
    }

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out,
                                                       NULL));
}
