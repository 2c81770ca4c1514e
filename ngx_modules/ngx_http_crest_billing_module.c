/*
 * ngx_http_crest_billing_module: plans and usage.
 *
 *   crest_billing usage;   GET the caller's usage this month, every type
 *   crest_billing plan;    PUT {plan} on .../users/{id}/plan (admins): sets
 *                          a user's plan; any other path under the location
 *                          is 404 (a prefix location, not a regex, suffices)
 *
 * Usage is read from the Redis counters that crest_quota keeps, and from
 * PostgreSQL at the same time: a counter Redis does not have (flushed,
 * restarted, nothing used yet) is PostgreSQL's count, which every granted
 * unit reaches before its request goes on.  So after a Redis loss this
 * answers what PostgreSQL says.
 */

#include "ngx_crest_pg.h"
#include "ngx_crest_redis.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_quota.h"
#include "crest_json.h"
#include "crest_validate.h"


#define NGX_CREST_BILLING_USAGE   1
#define NGX_CREST_BILLING_PLAN    2


typedef struct {
    ngx_uint_t                 op;
} ngx_http_crest_billing_loc_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_str_t                  user_id;
    ngx_uint_t                 pending;
    ngx_crest_quota_period_t   period;

    /* usage: PostgreSQL's answer and Redis' counters */
    ngx_crest_status_e         pg_status;
    ngx_int_t                  pg_rc;
    ngx_crest_quota_user_t     user;
    ngx_int_t                  redis[NGX_CREST_QUOTA_NTYPES];
    ngx_uint_t                 in_redis;    /* bit per type */
} ngx_http_crest_billing_ctx_t;


static void *ngx_http_crest_billing_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_billing_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_crest_billing(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_billing_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_billing_usage(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_billing_plan_body(ngx_http_request_t *r,
    json_t *body);


static ngx_command_t  ngx_http_crest_billing_commands[] = {

    { ngx_string("crest_billing"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_billing,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_billing_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_billing_create_loc_conf, /* create location configuration */
    ngx_http_crest_billing_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_crest_billing_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_billing_module_ctx,    /* module context */
    ngx_http_crest_billing_commands,       /* module directives */
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
ngx_http_crest_billing_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_billing_loc_conf_t  *blcf;

    blcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_billing_loc_conf_t));
    if (blcf == NULL) {
        return NULL;
    }

    blcf->op = NGX_CONF_UNSET_UINT;

    return blcf;
}


static char *
ngx_http_crest_billing_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_crest_billing_loc_conf_t  *prev = parent;
    ngx_http_crest_billing_loc_conf_t  *conf = child;

    ngx_conf_merge_uint_value(conf->op, prev->op, 0);

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_billing(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_billing_loc_conf_t  *blcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (blcf->op != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "usage") == 0) {
        blcf->op = NGX_CREST_BILLING_USAGE;

    } else if (ngx_strcmp(value[1].data, "plan") == 0) {
        blcf->op = NGX_CREST_BILLING_PLAN;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_billing_handler;

    return NGX_CONF_OK;
}


/* helpers */

static ngx_int_t ngx_http_crest_billing_user_id(ngx_http_request_t *r,
    ngx_str_t *id);


static ngx_int_t
ngx_http_crest_billing_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_crest_identity_t               *id;
    ngx_http_crest_billing_ctx_t       *ctx;
    ngx_http_crest_billing_loc_conf_t  *blcf;

    blcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_billing_module);

    id = ngx_crest_auth_identity(r);

    if (id == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED,
                                    "authentication required", NULL);
    }

    if (blcf->op == NGX_CREST_BILLING_USAGE) {
        return ngx_http_crest_billing_usage(r);
    }

    /* crest_auth_role admin says so too: this holds if it is forgotten */
    if (!(id->role.len == 5 && ngx_strncmp(id->role.data, "admin", 5) == 0)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_crest_send_error(r, NGX_HTTP_FORBIDDEN,
                                    CREST_ERR_FORBIDDEN,
                                    "this needs the admin role", NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_billing_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_crest_billing_module);

    rc = ngx_http_crest_billing_user_id(r, &ctx->user_id);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED || r->method != NGX_HTTP_PUT) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        if (rc == NGX_DECLINED) {
            return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND,
                                        CREST_ERR_NOT_FOUND, "no such user",
                                        NULL);
        }

        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    return ngx_crest_read_json_body(r, 1, ngx_http_crest_billing_plan_body);
}


/* GET usage: PostgreSQL and Redis asked at once */

static ngx_int_t
ngx_http_crest_billing_usage_respond(ngx_http_request_t *r,
    ngx_http_crest_billing_ctx_t *ctx)
{
    ngx_int_t          current, limit;
    ngx_uint_t         i;
    crest_jw_t         w;
    crest_buf_t        b;
    crest_allocator_t  a;

    if (ctx->pg_status == NGX_CREST_FAILED) {
        return ngx_crest_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                    CREST_ERR_INTERNAL_SERVER_ERROR,
                                    "the request could not be completed",
                                    NULL);
    }

    if (ctx->pg_status != NGX_CREST_OK) {
        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "the database is unavailable", NULL);
    }

    if (ctx->pg_rc == NGX_DECLINED) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                    "the account does not exist", NULL);
    }

    if (ctx->pg_rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest billing: unexpected answer to the usage query");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the plan is fresh here: let the quota check use it */
    ngx_crest_quota_remember(r, &ctx->user_id, &ctx->user);

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&b, &a);
    crest_jw_init(&w, &b);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "period");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "start");
    crest_jw_str(&w, ctx->period.start_iso);
    crest_jw_key(&w, "end");
    crest_jw_str(&w, ctx->period.end_iso);
    crest_jw_obj_end(&w);
    crest_jw_key(&w, "plan");
    crest_jw_str(&w, (const char *) ctx->user.plan);
    crest_jw_key(&w, "usage");
    crest_jw_arr_begin(&w);

    for (i = 0; i < NGX_CREST_QUOTA_NTYPES; i++) {
        current = (ctx->in_redis & (1 << i)) ? ctx->redis[i]
                                              : ctx->user.counts[i];
        limit = ctx->user.limits[i];

        crest_jw_obj_begin(&w);
        crest_jw_key(&w, "type");
        crest_jw_strn(&w, (const char *) ngx_crest_quota_types[i].data,
                      ngx_crest_quota_types[i].len);
        crest_jw_key(&w, "current");
        crest_jw_int(&w, current);
        crest_jw_key(&w, "limit");

        if (limit == NGX_CREST_QUOTA_UNLIMITED) {
            crest_jw_null(&w);
            crest_jw_key(&w, "remaining");
            crest_jw_null(&w);
            crest_jw_key(&w, "unlimited");
            crest_jw_bool(&w, 1);

        } else {
            crest_jw_int(&w, limit);
            crest_jw_key(&w, "remaining");
            crest_jw_int(&w, ngx_max(limit - current, 0));
            crest_jw_key(&w, "unlimited");
            crest_jw_bool(&w, 0);
        }

        crest_jw_obj_end(&w);
    }

    crest_jw_arr_end(&w);
    crest_jw_obj_end(&w);

    r->headers_out.last_modified_time = -1;

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &b, NULL);
}


static void
ngx_http_crest_billing_usage_step(ngx_http_crest_billing_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    if (--ctx->pending) {
        return;
    }

    r = ctx->request;

    ngx_crest_finalize(r,
                               ngx_http_crest_billing_usage_respond(r, ctx));
}


static void
ngx_http_crest_billing_usage_pg_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_billing_ctx_t  *ctx = data;

    ngx_uint_t  level;

    ctx->pg_status = status;

    if (status == NGX_CREST_OK) {
        ctx->pg_rc = ngx_crest_quota_parse_user(res, &ctx->user);

    } else {
        /* the macro does not parenthesize its level argument */
        level = (status == NGX_CREST_FAILED) ? NGX_LOG_ERR : NGX_LOG_WARN;

        ngx_log_error(level, ctx->request->connection->log, 0,
                      "crest billing: usage query %s: %s",
                      ngx_crest_status_text(status),
                      ngx_crest_pg_error(status, res));
    }

    ngx_http_crest_billing_usage_step(ctx);
}


static void
ngx_http_crest_billing_usage_redis_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_billing_ctx_t  *ctx = data;

    ngx_int_t    n;
    ngx_uint_t   i;
    redisReply  *e;

    /*
     * Without Redis the counts are PostgreSQL's, which has every unit that
     * was granted: a read need not fail for it.
     */
    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == NGX_CREST_QUOTA_NTYPES)
    {
        for (i = 0; i < NGX_CREST_QUOTA_NTYPES; i++) {
            e = reply->element[i];

            if (e->type != REDIS_REPLY_STRING) {
                continue;
            }

            n = ngx_atoi((u_char *) e->str, e->len);

            if (n != NGX_ERROR) {
                ctx->redis[i] = n;
                ctx->in_redis |= 1 << i;
            }
        }
    }

    ngx_http_crest_billing_usage_step(ctx);
}


static ngx_int_t
ngx_http_crest_billing_usage(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    const char                    *values[2];
    const char                    *argv[NGX_CREST_QUOTA_NTYPES + 1];
    size_t                         argvlen[NGX_CREST_QUOTA_NTYPES + 1];
    u_char                        *key;
    ngx_crest_identity_t          *id;
    ngx_crest_pg_query_t          *q;
    ngx_crest_redis_cmd_t         *cmd;
    ngx_http_crest_billing_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    id = ngx_crest_auth_identity(r);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_billing_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->user_id = id->user_id;
    ngx_crest_quota_period(r, &ctx->period);
    ngx_http_set_ctx(r, ctx, ngx_http_crest_billing_module);

    values[0] = (const char *) id->user_id.data;
    values[1] = ctx->period.start_iso;

    q = ngx_crest_pg_query(NGX_CREST_QUOTA_SQL, 2, values, NULL, 0,
                           ngx_http_crest_billing_usage_pg_done, ctx,
                           r->connection->log);
    if (q == NULL) {
        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "the database is unavailable", NULL);
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->pending++;

    argv[0] = "MGET";
    argvlen[0] = 4;

    for (i = 0; i < NGX_CREST_QUOTA_NTYPES; i++) {
        key = ngx_pnalloc(r->pool, NGX_CREST_QUOTA_KEY_LEN);
        if (key == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argvlen[i + 1] = ngx_crest_quota_key(key, &id->user_id, i,
                                             &ctx->period);
        argv[i + 1] = (const char *) key;
    }

    cmd = ngx_crest_redis_command(NGX_CREST_QUOTA_NTYPES + 1, argv, argvlen,
                                  0, ngx_http_crest_billing_usage_redis_done,
                                  ctx, r->connection->log);

    if (cmd) {
        if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->pending++;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


/* PUT a user's plan */

static void
ngx_http_crest_billing_plan_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_billing_ctx_t  *ctx = data;

    ngx_int_t            rc;
    crest_jw_t           w;
    crest_buf_t          b;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r,
                    ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (PQgetvalue(res, 0, 0)[0] != 't') {
        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                 "no such user", NULL));
        return;
    }

    if (PQgetvalue(res, 0, 1)[0] != 't' || PQgetisnull(res, 0, 2)) {
        ngx_crest_pool_allocator(&a, r->pool);
        crest_buf_init(&b, &a);
        crest_buf_appends(&b, "{\"fields\":{\"plan\":\"is not a plan\"}}");

        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                 CREST_ERR_VALIDATION_ERROR,
                                 "the request is not valid", &b));
        return;
    }

    /* this worker applies the new limits at once, others within the TTL */
    ngx_crest_quota_forget_user(&ctx->user_id);
    ngx_crest_auth_forget_user(&ctx->user_id);

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "crest billing: user %V is now on plan \"%s\"",
                  &ctx->user_id, PQgetvalue(res, 0, 2));

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&b, &a);
    crest_jw_init(&w, &b);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "userId");
    crest_jw_strn(&w, (const char *) ctx->user_id.data, ctx->user_id.len);
    crest_jw_key(&w, "plan");
    crest_jw_str(&w, PQgetvalue(res, 0, 2));
    crest_jw_key(&w, "status");
    crest_jw_str(&w, PQgetvalue(res, 0, 3));
    crest_jw_obj_end(&w);

    rc = ngx_crest_send_ok(r, NGX_HTTP_OK, &b, NULL);

    ngx_crest_finalize(r, rc);
}


/* The {id} of ".../users/{id}/plan". */
static ngx_int_t
ngx_http_crest_billing_user_id(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char  *end, *p;

    if (r->uri.len < sizeof("/users//plan") - 1) {
        return NGX_DECLINED;
    }

    end = r->uri.data + r->uri.len - (sizeof("/plan") - 1);

    if (ngx_strncmp(end, "/plan", sizeof("/plan") - 1) != 0) {
        return NGX_DECLINED;
    }

    for (p = end; p > r->uri.data && p[-1] != '/'; p--) {
        /* void */
    }

    if (!crest_is_uuid((const char *) p, end - p)
        || p - r->uri.data < (ssize_t) sizeof("/users/") - 1
        || ngx_strncmp(p - (sizeof("/users/") - 1), "/users/",
                       sizeof("/users/") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    /* NUL-terminated for libpq */
    id->len = end - p;
    id->data = ngx_pnalloc(r->pool, id->len + 1);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(id->data, p, id->len);
    id->data[id->len] = '\0';

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_billing_plan_body(ngx_http_request_t *r, json_t *body)
{
    char                          *plan;
    json_t                        *v;
    crest_buf_t                    details;
    const char                    *values[2];
    crest_allocator_t              a;
    ngx_crest_pg_query_t          *q;
    ngx_http_crest_billing_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_billing_module);

    v = json_object_get(body, "plan");

    if (!json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) >= NGX_CREST_QUOTA_PLAN_LEN
        || !crest_is_clean_text(json_string_value(v), json_string_length(v)))
    {
        ngx_crest_pool_allocator(&a, r->pool);
        crest_buf_init(&details, &a);
        crest_buf_appends(&details, "{\"fields\":{\"plan\":\"must be the id "
                                    "of a plan\"}}");

        return ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "the request is not valid", &details);
    }

    plan = (char *) json_string_value(v);

    values[0] = (const char *) ctx->user_id.data;
    values[1] = plan;

    /*
     * The live subscription (at most one: a partial unique index) takes the
     * plan, or a new active one is made; one statement, so two admins at
     * once cannot make two.
     */
    q = ngx_crest_pg_query(
            "WITH s AS ("
            "INSERT INTO subscriptions (user_id, plan_id, status) "
            "SELECT u.id, p.id, 'active' FROM users u, plans p "
            "WHERE u.id = $1 AND p.id = $2 "
            "ON CONFLICT (user_id) "
            "WHERE status IN ('active', 'trialing', 'past_due') "
            "DO UPDATE SET plan_id = EXCLUDED.plan_id "
            "RETURNING plan_id, status) "
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1), "
            "EXISTS (SELECT 1 FROM plans WHERE id = $2), "
            "(SELECT plan_id FROM s), (SELECT status FROM s)",
            2, values, NULL, 0, ngx_http_crest_billing_plan_done, ctx,
            r->connection->log);

    if (q == NULL) {
        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "the database is unavailable", NULL);
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}
