/*
 * ngx_http_crest_health_module: GET /api/health and /api/health/live.
 *
 * "crest_health;" asks PostgreSQL (SELECT 1) and Redis (PING) through the
 * worker's pools, both at once, and answers 200 with each one's status and
 * latency, or 503 naming what does not answer.  "crest_health live;" answers
 * without touching either: it only says this worker's event loop runs.
 */

#include "ngx_crest_pg.h"
#include "ngx_crest_redis.h"
#include "crest_json.h"


#define NGX_CREST_HEALTH_PG     0
#define NGX_CREST_HEALTH_REDIS  1


typedef struct {
    ngx_uint_t                 live;
    ngx_msec_t                 timeout;
} ngx_http_crest_health_loc_conf_t;


typedef struct {
    ngx_crest_status_e         status;
    double                     started;
    double                     latency;
    const char                *error;
} ngx_http_crest_health_check_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_uint_t                      pending;
    ngx_http_crest_health_check_t   checks[2];
} ngx_http_crest_health_ctx_t;


static void *ngx_http_crest_health_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_health_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_crest_health(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_health_handler(ngx_http_request_t *r);
static void ngx_http_crest_health_pg_done(void *data,
    ngx_crest_status_e status, PGresult *res);
static void ngx_http_crest_health_redis_done(void *data,
    ngx_crest_status_e status, redisReply *reply);
static ngx_int_t ngx_http_crest_health_respond(ngx_http_request_t *r,
    ngx_http_crest_health_ctx_t *ctx);


static ngx_command_t  ngx_http_crest_health_commands[] = {

    { ngx_string("crest_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_crest_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_health_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_health_loc_conf_t, timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_health_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_health_create_loc_conf, /* create location configuration */
    ngx_http_crest_health_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_crest_health_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_health_module_ctx,     /* module context */
    ngx_http_crest_health_commands,        /* module directives */
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


static const char  *ngx_http_crest_health_names[] = { "postgres", "redis" };


static void *
ngx_http_crest_health_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_health_loc_conf_t  *hlcf;

    hlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_health_loc_conf_t));
    if (hlcf == NULL) {
        return NULL;
    }

    hlcf->live = NGX_CONF_UNSET_UINT;
    hlcf->timeout = NGX_CONF_UNSET_MSEC;

    return hlcf;
}


static char *
ngx_http_crest_health_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_crest_health_loc_conf_t  *prev = parent;
    ngx_http_crest_health_loc_conf_t  *conf = child;

    ngx_conf_merge_uint_value(conf->live, prev->live, 0);
    /* under a second, so a dead dependency shows within one */
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 800);

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_health_loc_conf_t  *hlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (hlcf->live != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    hlcf->live = 0;

    if (cf->args->nelts == 2) {
        if (ngx_strcmp(value[1].data, "live") == 0) {
            hlcf->live = 1;

        } else if (ngx_strcmp(value[1].data, "full") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_health_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_health_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    crest_buf_t                        data;
    crest_allocator_t                  a;
    ngx_crest_pg_query_t              *q;
    ngx_crest_redis_cmd_t             *cmd;
    ngx_http_crest_health_ctx_t       *ctx;
    ngx_http_crest_health_loc_conf_t  *hlcf;

    static const char  *ping[] = { "PING" };
    static size_t       ping_len[] = { 4 };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    hlcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_health_module);

    if (hlcf->live) {
        ngx_crest_pool_allocator(&a, r->pool);
        crest_buf_init(&data, &a);
        crest_buf_appends(&data, "{\"status\":\"ok\"}");

        return ngx_crest_send_ok(r, NGX_HTTP_OK, &data, NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_health_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_crest_health_module);

    ctx->checks[NGX_CREST_HEALTH_PG].started = ngx_crest_now_ms();

    q = ngx_crest_pg_query("SELECT 1", 0, NULL, NULL, hlcf->timeout,
                           ngx_http_crest_health_pg_done, ctx,
                           r->connection->log);

    if (q == NULL) {
        ctx->checks[NGX_CREST_HEALTH_PG].status = NGX_CREST_UNAVAILABLE;

    } else if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ctx->pending++;
    }

    ctx->checks[NGX_CREST_HEALTH_REDIS].started = ngx_crest_now_ms();

    cmd = ngx_crest_redis_command(1, ping, ping_len, hlcf->timeout,
                                  ngx_http_crest_health_redis_done, ctx,
                                  r->connection->log);

    if (cmd == NULL) {
        ctx->checks[NGX_CREST_HEALTH_REDIS].status = NGX_CREST_UNAVAILABLE;

    } else if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ctx->pending++;
    }

    if (ctx->pending == 0) {
        return ngx_http_crest_health_respond(r, ctx);
    }

    /* a client that leaves is noticed now, and its checks detached */
    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_crest_health_finish(ngx_http_crest_health_ctx_t *ctx,
    ngx_uint_t which, ngx_crest_status_e status, const char *error)
{
    ngx_http_request_t             *r;
    ngx_http_crest_health_check_t  *check;

    check = &ctx->checks[which];
    check->status = status;
    check->error = error;
    check->latency = ngx_crest_now_ms() - check->started;

    if (--ctx->pending) {
        return;
    }

    r = ctx->request;

    ngx_crest_finalize(r, ngx_http_crest_health_respond(r, ctx));
}


static void
ngx_http_crest_health_pg_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_health_finish(data, NGX_CREST_HEALTH_PG, status,
                                 status == NGX_CREST_FAILED
                                 ? "query failed" : NULL);
}


static void
ngx_http_crest_health_redis_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    if (status == NGX_CREST_OK
        && (reply->type != REDIS_REPLY_STATUS || reply->len != 4
            || ngx_strncmp(reply->str, "PONG", 4) != 0))
    {
        status = NGX_CREST_FAILED;
    }

    ngx_http_crest_health_finish(data, NGX_CREST_HEALTH_REDIS, status,
                                 status == NGX_CREST_FAILED
                                 ? "unexpected reply" : NULL);
}


static ngx_int_t
ngx_http_crest_health_respond(ngx_http_request_t *r,
    ngx_http_crest_health_ctx_t *ctx)
{
    ngx_uint_t                      i, down;
    crest_jw_t                      w;
    crest_buf_t                     b, msg;
    crest_allocator_t               a;
    ngx_http_crest_health_check_t  *check;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&b, &a);
    crest_buf_init(&msg, &a);
    crest_jw_init(&w, &b);

    down = 0;

    for (i = 0; i < 2; i++) {
        if (ctx->checks[i].status != NGX_CREST_OK) {
            if (down++) {
                crest_buf_appends(&msg, " and ");
            }
            crest_buf_appends(&msg, ngx_http_crest_health_names[i]);
        }
    }

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "status");
    crest_jw_str(&w, down ? "unavailable" : "ok");
    crest_jw_key(&w, "checks");
    crest_jw_obj_begin(&w);

    for (i = 0; i < 2; i++) {
        check = &ctx->checks[i];

        crest_jw_key(&w, ngx_http_crest_health_names[i]);
        crest_jw_obj_begin(&w);
        crest_jw_key(&w, "status");
        crest_jw_str(&w, check->status == NGX_CREST_OK ? "up" : "down");

        if (check->status == NGX_CREST_OK) {
            crest_jw_key(&w, "latencyMs");
            crest_jw_double(&w, check->latency, 3);

        } else {
            crest_jw_key(&w, "error");
            crest_jw_str(&w, check->error ? check->error
                                          : ngx_crest_status_text(check->status));
        }

        crest_jw_obj_end(&w);
    }

    crest_jw_obj_end(&w);
    crest_jw_obj_end(&w);

    r->headers_out.last_modified_time = -1;

    if (down) {
        crest_buf_appends(&msg, down > 1 ? " are unavailable"
                                         : " is unavailable");

        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    crest_buf_failed(&msg) ? "unavailable"
                                                           : msg.data,
                                    &b);
    }

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &b, NULL);
}
