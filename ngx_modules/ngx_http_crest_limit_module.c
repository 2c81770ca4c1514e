/*
 * ngx_http_crest_limit_module: rate limits, per key, in one of three ways.
 *
 *   crest_limit_zone zone=api key=$crest_user_id rate=100r/m
 *                    [policy=local|redis|sync] [size=10m]
 *                    [on_redis_error=local|allow|deny] [sync=50ms];
 *   crest_limit zone=api [burst=N] [cost=N] [dry_run];
 *
 * Every policy runs the same algorithm (GCRA, shared/crest_gcra.h), so a
 * zone means the same thing wherever its state lives:
 *   local  shared memory of this nginx, as limit_req: no I/O;
 *   redis  one atomic script per request on Redis' own clock, so any number
 *          of nginx instances share one budget exactly;
 *   sync   local decisions, with what every instance admitted pushed to
 *          Redis every few milliseconds and the shared level pulled back:
 *          the shared budget is approximate (over by at most what the
 *          instances admit in one sync interval) at local speed.
 *
 * Runs in the preaccess phase after crest_auth (listed before it in
 * ../config), so keys may use $crest_user_id.
 */

#include "ngx_crest_redis.h"
#include "ngx_crest_limit.h"
#include "crest_gcra.h"
#include "crest_json.h"


#define NGX_CREST_LIMIT_LOCAL          0
#define NGX_CREST_LIMIT_REDIS          1
#define NGX_CREST_LIMIT_SYNC           2

#define NGX_CREST_LIMIT_ERR_LOCAL      0
#define NGX_CREST_LIMIT_ERR_ALLOW      1
#define NGX_CREST_LIMIT_ERR_DENY       2

#define NGX_CREST_LIMIT_HEADERS_OFF    0
#define NGX_CREST_LIMIT_HEADERS_ON     1
#define NGX_CREST_LIMIT_HEADERS_DRAFT  2

#define NGX_CREST_LIMIT_SYNC_BATCH     256


/* a node of the zone's tree; the key bytes follow */
typedef struct {
    u_char                       color;
    u_char                       dummy;
    u_short                      len;
    ngx_queue_t                  queue;       /* LRU */
    ngx_queue_t                  dirty;       /* sync: admitted, not pushed */
    int64_t                      tat;         /* us, on ngx_current_msec */
    uint32_t                     pending;     /* sync: admitted cost */
    unsigned                     is_dirty:1;
    u_char                       data[1];
} ngx_http_crest_limit_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;
    ngx_queue_t                  dirty;
} ngx_http_crest_limit_shctx_t;


typedef struct {
    ngx_http_crest_limit_shctx_t  *sh;
    ngx_slab_pool_t               *shpool;
    ngx_http_complex_value_t       key;
    ngx_str_t                      name;
    int64_t                        count;
    int64_t                        period;      /* ms */
    int64_t                        interval;    /* us per request */
    ngx_uint_t                     policy;
    ngx_uint_t                     on_error;
    ngx_msec_t                     sync;
    ngx_shm_zone_t                *shm_zone;
    unsigned                       fallback:1;  /* redis down: logged once */
} ngx_http_crest_limit_zone_t;


typedef struct {
    ngx_http_crest_limit_zone_t   *zone;
    ngx_uint_t                     burst;
    ngx_uint_t                     cost;
    ngx_uint_t                     dry_run;
} ngx_http_crest_limit_t;


typedef struct {
    ngx_array_t                   *limits;     /* ngx_http_crest_limit_t */
    ngx_uint_t                     headers;
    ngx_uint_t                     status;
    ngx_uint_t                     log_level;
} ngx_http_crest_limit_loc_conf_t;


typedef struct {
    ngx_array_t                    zones;      /* ngx_shm_zone_t * */
} ngx_http_crest_limit_main_conf_t;


typedef struct {
    ngx_http_request_t            *request;
    ngx_uint_t                     next;        /* the limit to check */
    ngx_uint_t                     pending;
    ngx_uint_t                     done;
    ngx_str_t                      key;
    crest_gcra_result_t            redis;       /* the answer from Redis */
    ngx_int_t                      redis_rc;    /* NGX_OK, or failed */
    /* the tightest result so far, for the headers */
    crest_gcra_result_t            worst;
    ngx_http_crest_limit_t        *worst_limit;
    ngx_uint_t                     rejected;    /* a dry run would have */
    ngx_uint_t                     limited;
} ngx_http_crest_limit_ctx_t;


static ngx_int_t ngx_http_crest_limit_handler(ngx_http_request_t *r);
static void *ngx_http_crest_limit_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_crest_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_crest_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_limit_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_crest_limit_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_crest_limit_init_process(ngx_cycle_t *cycle);
static void ngx_http_crest_limit_sync_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_crest_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_conf_enum_t  ngx_http_crest_limit_headers[] = {
    { ngx_string("off"), NGX_CREST_LIMIT_HEADERS_OFF },
    { ngx_string("on"), NGX_CREST_LIMIT_HEADERS_ON },
    { ngx_string("draft"), NGX_CREST_LIMIT_HEADERS_DRAFT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_crest_limit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_crest_limit_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_command_t  ngx_http_crest_limit_commands[] = {

    { ngx_string("crest_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_crest_limit_zone,
      0,
      0,
      NULL },

    { ngx_string("crest_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_crest_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_limit_loc_conf_t, headers),
      &ngx_http_crest_limit_headers },

    { ngx_string("crest_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_limit_loc_conf_t, status),
      &ngx_http_crest_limit_status_bounds },

    { ngx_string("crest_limit_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_limit_loc_conf_t, log_level),
      &ngx_http_crest_limit_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_limit_module_ctx = {
    ngx_http_crest_limit_add_variables,    /* preconfiguration */
    ngx_http_crest_limit_init,             /* postconfiguration */

    ngx_http_crest_limit_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_limit_create_loc_conf,  /* create location configuration */
    ngx_http_crest_limit_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_crest_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_limit_module_ctx,      /* module context */
    ngx_http_crest_limit_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_crest_limit_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * KEYS[1] the zone's key; ARGV interval (us), burst, cost, and a mode:
 * "1" decides, "0" only adds what was admitted elsewhere (sync).  A dry
 * run is accounted like any request, as limit_req does; it is only never
 * refused.  Redis' clock is the one clock every
 * instance shares.  Returns {allowed, used}, used = tat - now afterwards.
 */
static const char  ngx_http_crest_limit_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local cap = interval * tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
    "if tat < now then tat = now end\n"
    "local nxt = tat + interval * tonumber(ARGV[3])\n"
    "if ARGV[4] == '0' or nxt - now <= cap then\n"
    "  redis.call('SET', KEYS[1], nxt, 'PX', math.ceil((nxt - now) / 1000) + 1)\n"
    "  return {1, nxt - now}\n"
    "end\n"
    "return {0, tat - now}\n";


static ngx_str_t  ngx_http_crest_limit_status_var = ngx_string("crest_limit_status");

static ngx_event_t  ngx_http_crest_limit_sync_event;

static ngx_crest_redis_script_t  ngx_http_crest_limit_script;


/* configuration */

static void *
ngx_http_crest_limit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_limit_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_limit_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->zones, cf->pool, 4, sizeof(ngx_shm_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_crest_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_limit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_limit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limits = NULL;
     */

    conf->headers = NGX_CONF_UNSET_UINT;
    conf->status = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_crest_limit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_crest_limit_loc_conf_t  *prev = parent;
    ngx_http_crest_limit_loc_conf_t  *conf = child;

    if (conf->limits == NULL) {
        conf->limits = prev->limits;
    }

    ngx_conf_merge_uint_value(conf->headers, prev->headers,
                              NGX_CREST_LIMIT_HEADERS_ON);
    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level,
                              NGX_LOG_WARN);

    return NGX_CONF_OK;
}


static void
ngx_http_crest_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t            **p;
    ngx_http_crest_limit_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            ln = (ngx_http_crest_limit_node_t *) &node->color;
            lnt = (ngx_http_crest_limit_node_t *) &temp->color;

            p = (ngx_memn2cmp(ln->data, lnt->data, ln->len, lnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_crest_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_crest_limit_zone_t  *octx = data;

    size_t                        len;
    ngx_http_crest_limit_zone_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload: keep the state if the zone means the same */
        if (ctx->key.value.len != octx->key.value.len
            || ngx_strncmp(ctx->key.value.data, octx->key.value.data,
                           ctx->key.value.len) != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "crest_limit_zone \"%V\" uses the \"%V\" key "
                          "while previously it used the \"%V\" key",
                          &shm_zone->shm.name, &ctx->key.value,
                          &octx->key.value);
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool,
                             sizeof(ngx_http_crest_limit_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_crest_limit_rbtree_insert);
    ngx_queue_init(&ctx->sh->queue);
    ngx_queue_init(&ctx->sh->dirty);

    len = sizeof(" in crest_limit_zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in crest_limit_zone \"%V\"%Z",
                &shm_zone->shm.name);

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


/* "100r/m": a count per second, minute, hour or day */
static ngx_int_t
ngx_http_crest_limit_parse_rate(ngx_str_t *s, int64_t *count, int64_t *period)
{
    u_char     *p, *end;
    ngx_int_t   n;

    end = s->data + s->len;
    p = ngx_strlchr(s->data, end, 'r');

    if (p == NULL || end - p != 3 || p[1] != '/') {
        return NGX_ERROR;
    }

    n = ngx_atoi(s->data, p - s->data);
    if (n <= 0) {
        return NGX_ERROR;
    }

    switch (p[2]) {
    case 's':
        *period = 1000;
        break;
    case 'm':
        *period = 60 * 1000;
        break;
    case 'h':
        *period = 3600 * 1000;
        break;
    case 'd':
        *period = 86400 * 1000;
        break;
    default:
        return NGX_ERROR;
    }

    *count = n;

    return NGX_OK;
}


static char *
ngx_http_crest_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                            *p;
    ssize_t                            size;
    ngx_str_t                         *value, name, s;
    ngx_uint_t                         i;
    ngx_shm_zone_t                    *shm_zone, **zp;
    ngx_http_crest_limit_zone_t       *ctx;
    ngx_http_compile_complex_value_t   ccv;
    ngx_http_crest_limit_main_conf_t  *lmcf;

    value = cf->args->elts;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_limit_zone_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->policy = NGX_CREST_LIMIT_LOCAL;
    ctx->on_error = NGX_CREST_LIMIT_ERR_LOCAL;
    ctx->sync = 50;

    size = 10 * 1024 * 1024;
    name.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
            ccv.cf = cf;
            ccv.value = &(ngx_str_t) { value[i].len - 4, value[i].data + 4 };
            ccv.complex_value = &ctx->key;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (ngx_http_crest_limit_parse_rate(&s, &ctx->count, &ctx->period)
                != NGX_OK)
            {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "policy=", 7) == 0) {
            p = value[i].data + 7;

            if (ngx_strcmp(p, "local") == 0) {
                ctx->policy = NGX_CREST_LIMIT_LOCAL;
            } else if (ngx_strcmp(p, "redis") == 0) {
                ctx->policy = NGX_CREST_LIMIT_REDIS;
            } else if (ngx_strcmp(p, "sync") == 0) {
                ctx->policy = NGX_CREST_LIMIT_SYNC;
            } else {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "on_redis_error=", 15) == 0) {
            p = value[i].data + 15;

            if (ngx_strcmp(p, "local") == 0) {
                ctx->on_error = NGX_CREST_LIMIT_ERR_LOCAL;
            } else if (ngx_strcmp(p, "allow") == 0) {
                ctx->on_error = NGX_CREST_LIMIT_ERR_ALLOW;
            } else if (ngx_strcmp(p, "deny") == 0) {
                ctx->on_error = NGX_CREST_LIMIT_ERR_DENY;
            } else {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "size=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            size = ngx_parse_size(&s);
            if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "sync=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            ctx->sync = ngx_parse_time(&s, 0);
            if (ctx->sync == (ngx_msec_t) NGX_ERROR || ctx->sync == 0) {
                goto invalid;
            }
            continue;
        }

        goto invalid;
    }

    /* without key= a zone is only counted by modules (crest_account_limit) */
    if (name.len == 0 || ctx->count == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs zone= and rate=", &cmd->name);
        return NGX_CONF_ERROR;
    }

    ctx->name = name;

    /* microseconds: a millisecond would cap a key at 1000 requests/s */
    ctx->interval = ctx->period * 1000 / ctx->count;

    if (ctx->interval == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_limit_zone \"%V\": more than a million "
                           "requests a second is not a limit", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_crest_limit_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate crest_limit_zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    ctx->shm_zone = shm_zone;
    shm_zone->init = ngx_http_crest_limit_init_zone;
    shm_zone->data = ctx;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_crest_limit_module);

    zp = ngx_array_push(&lmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = shm_zone;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_crest_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_limit_loc_conf_t  *llcf = conf;

    ngx_int_t                n;
    ngx_str_t               *value, s;
    ngx_uint_t               i;
    ngx_shm_zone_t          *shm_zone;
    ngx_http_crest_limit_t  *limit, *limits;

    value = cf->args->elts;

    shm_zone = NULL;

    limit = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_limit_t));
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    limit->cost = 1;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            shm_zone = ngx_shared_memory_add(cf, &s, 0,
                                             &ngx_http_crest_limit_module);
            if (shm_zone == NULL) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n <= 0) {
                goto invalid;
            }
            limit->burst = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "cost=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n <= 0) {
                goto invalid;
            }
            limit->cost = n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            limit->dry_run = 1;
            continue;
        }

        goto invalid;
    }

    if (shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter", &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* the zone may be defined after its first use: resolved at runtime */
    limit->zone = (ngx_http_crest_limit_zone_t *) shm_zone;

    if (llcf->limits == NULL) {
        llcf->limits = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_crest_limit_t));
        if (llcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limits = llcf->limits->elts;

    for (i = 0; i < llcf->limits->nelts; i++) {
        if ((void *) limits[i].zone == (void *) shm_zone) {
            return "is duplicate";
        }
    }

    limits = ngx_array_push(llcf->limits);
    if (limits == NULL) {
        return NGX_CONF_ERROR;
    }

    *limits = *limit;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_crest_limit_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_crest_limit_status_var, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_crest_limit_status_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_limit_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_crest_redis_script_init(&ngx_http_crest_limit_script,
                                ngx_http_crest_limit_lua,
                                sizeof(ngx_http_crest_limit_lua) - 1);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_crest_limit_handler;

    return NGX_OK;
}


/* The zone context of a limit; NULL if the zone was never defined. */
static ngx_http_crest_limit_zone_t *
ngx_http_crest_limit_zone_ctx(ngx_http_crest_limit_t *limit)
{
    return ((ngx_shm_zone_t *) limit->zone)->data;
}


/* local state */

static ngx_http_crest_limit_node_t *
ngx_http_crest_limit_lookup(ngx_http_crest_limit_zone_t *ctx, ngx_str_t *key,
    uint32_t hash, ngx_uint_t create)
{
    size_t                        size;
    ngx_int_t                     rc;
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_crest_limit_node_t  *ln;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        ln = (ngx_http_crest_limit_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, ln->data, key->len, (size_t) ln->len);

        if (rc == 0) {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&ctx->sh->queue, &ln->queue);
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (!create) {
        return NULL;
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_crest_limit_node_t, data)
           + key->len;

    node = ngx_slab_alloc_locked(ctx->shpool, size);

    while (node == NULL) {
        /* full: forget the least recently used key that is not dirty */
        if (ngx_queue_empty(&ctx->sh->queue)) {
            return NULL;
        }

        q = ngx_queue_last(&ctx->sh->queue);
        ln = ngx_queue_data(q, ngx_http_crest_limit_node_t, queue);

        ngx_queue_remove(q);

        if (ln->is_dirty) {
            ngx_queue_remove(&ln->dirty);
        }

        node = (ngx_rbtree_node_t *)
                   ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&ctx->sh->rbtree, node);
        ngx_slab_free_locked(ctx->shpool, node);

        node = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    node->key = hash;

    ln = (ngx_http_crest_limit_node_t *) &node->color;
    ln->len = (u_short) key->len;
    ln->tat = 0;
    ln->pending = 0;
    ln->is_dirty = 0;
    ngx_memcpy(ln->data, key->data, key->len);

    ngx_rbtree_insert(&ctx->sh->rbtree, node);
    ngx_queue_insert_head(&ctx->sh->queue, &ln->queue);

    return ln;
}


static ngx_int_t
ngx_http_crest_limit_local(ngx_http_crest_limit_zone_t *ctx,
    ngx_http_crest_limit_t *limit, ngx_str_t *key, int64_t burst,
    crest_gcra_result_t *res)
{
    uint32_t                      hash;
    ngx_http_crest_limit_node_t  *ln;

    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ln = ngx_http_crest_limit_lookup(ctx, key, hash, 1);

    if (ln == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_ERROR;
    }

    crest_gcra((int64_t) ngx_current_msec * 1000, &ln->tat, ctx->interval,
               burst, limit->cost, res);

    if (res->allowed && ctx->policy == NGX_CREST_LIMIT_SYNC) {
        ln->pending += limit->cost;

        if (!ln->is_dirty) {
            ln->is_dirty = 1;
            ngx_queue_insert_tail(&ctx->sh->dirty, &ln->dirty);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/* the redis policy */

static void
ngx_http_crest_limit_redis_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_limit_ctx_t  *ctx = data;

    ngx_connection_t  *c;

    ctx->pending = 0;
    ctx->redis_rc = NGX_ERROR;

    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_INTEGER)
    {
        ctx->redis.allowed = (int) reply->element[0]->integer;
        ctx->redis.reset = reply->element[1]->integer;   /* "used", us */
        ctx->redis_rc = NGX_OK;

    } else if (status == NGX_CREST_FAILED) {
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "crest limit: redis script failed: %*s",
                      (size_t) reply->len, reply->str);
    }

    c = ctx->request->connection;

    ctx->request->write_event_handler(ctx->request);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_crest_limit_redis(ngx_http_request_t *r,
    ngx_http_crest_limit_ctx_t *ctx, ngx_http_crest_limit_zone_t *zone,
    ngx_http_crest_limit_t *limit, int64_t burst)
{
    u_char                 *key;
    const char             *argv[6];
    size_t                  argvlen[6];
    u_char                  interval[NGX_INT64_LEN], b[NGX_INT64_LEN];
    u_char                  cost[NGX_INT64_LEN];
    ngx_crest_redis_cmd_t  *cmd;

    key = ngx_pnalloc(r->pool, sizeof("crest:rl::") + zone->name.len
                               + ctx->key.len);
    if (key == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "1";
    argv[1] = (const char *) key;
    argv[2] = (const char *) interval;
    argv[3] = (const char *) b;
    argv[4] = (const char *) cost;
    argv[5] = "1";

    argvlen[0] = 1;
    argvlen[1] = ngx_sprintf(key, "crest:rl:%V:%V", &zone->name, &ctx->key)
                 - key;
    argvlen[2] = ngx_sprintf(interval, "%L", zone->interval) - interval;
    argvlen[3] = ngx_sprintf(b, "%L", burst) - b;
    argvlen[4] = ngx_sprintf(cost, "%ui", limit->cost) - cost;
    argvlen[5] = 1;

    cmd = ngx_crest_redis_script(&ngx_http_crest_limit_script, 6, argv,
                                 argvlen, 0, ngx_http_crest_limit_redis_done,
                                 ctx, r->connection->log);

    if (cmd == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->pending = 1;

    return NGX_AGAIN;
}


/* the sync policy: push what was admitted, pull the shared level back */

typedef struct {
    ngx_http_crest_limit_zone_t   *zone;
    uint32_t                       hash;
    ngx_str_t                      key;
} ngx_http_crest_limit_sync_t;


static void
ngx_http_crest_limit_sync_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_limit_sync_t  *s = data;

    int64_t                       level;
    ngx_http_crest_limit_node_t  *ln;

    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2
        && reply->element[1]->type == REDIS_REPLY_INTEGER)
    {
        /* the shared bucket's level, on our clock */
        level = (int64_t) ngx_current_msec * 1000 + reply->element[1]->integer;

        ngx_shmtx_lock(&s->zone->shpool->mutex);

        ln = ngx_http_crest_limit_lookup(s->zone, &s->key, s->hash, 0);

        if (ln && ln->tat < level) {
            ln->tat = level;
        }

        ngx_shmtx_unlock(&s->zone->shpool->mutex);

        if (s->zone->fallback) {
            s->zone->fallback = 0;
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "crest limit: zone \"%V\" syncs with redis again",
                          &s->zone->name);
        }

    } else if (!s->zone->fallback) {
        s->zone->fallback = 1;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "crest limit: zone \"%V\" cannot sync with redis, "
                      "limiting locally", &s->zone->name);
    }

    ngx_free(s);
}


static void
ngx_http_crest_limit_sync_zone(ngx_http_crest_limit_zone_t *zone)
{
    size_t                        n;
    u_char                        interval[NGX_INT64_LEN];
    u_char                        cost[NGX_INT64_LEN], *p;
    uint32_t                      pending;
    const char                   *argv[6];
    size_t                        argvlen[6];
    ngx_queue_t                  *q;
    ngx_http_crest_limit_node_t  *ln;
    ngx_http_crest_limit_sync_t  *s;

    for (n = 0; n < NGX_CREST_LIMIT_SYNC_BATCH; n++) {

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (ngx_queue_empty(&zone->sh->dirty)) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return;
        }

        q = ngx_queue_head(&zone->sh->dirty);
        ln = ngx_queue_data(q, ngx_http_crest_limit_node_t, dirty);
        ngx_queue_remove(q);
        ln->is_dirty = 0;
        pending = ln->pending;
        ln->pending = 0;

        /* the key, then the Redis key name that contains it again */
        s = ngx_alloc(sizeof(ngx_http_crest_limit_sync_t) + ln->len
                      + sizeof("crest:rl::") + zone->name.len + ln->len,
                      ngx_cycle->log);

        if (s == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return;
        }

        s->zone = zone;
        s->key.data = (u_char *) (s + 1);
        s->key.len = ln->len;
        ngx_memcpy(s->key.data, ln->data, ln->len);
        s->hash = ngx_crc32_short(s->key.data, s->key.len);

        ngx_shmtx_unlock(&zone->shpool->mutex);

        p = s->key.data + s->key.len;

        argv[0] = "1";
        argv[1] = (const char *) p;
        argv[2] = (const char *) interval;
        argv[3] = "1";
        argv[4] = (const char *) cost;
        argv[5] = "0";

        argvlen[0] = 1;
        argvlen[1] = ngx_sprintf(p, "crest:rl:%V:%V", &zone->name, &s->key)
                     - p;
        argvlen[2] = ngx_sprintf(interval, "%L", zone->interval) - interval;
        argvlen[3] = 1;
        argvlen[4] = ngx_sprintf(cost, "%uD", pending) - cost;
        argvlen[5] = 1;

        if (ngx_crest_redis_script(&ngx_http_crest_limit_script, 6, argv,
                                   argvlen, 0, ngx_http_crest_limit_sync_done,
                                   s, ngx_cycle->log)
            == NULL)
        {
            ngx_free(s);

            if (!zone->fallback) {
                zone->fallback = 1;
                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "crest limit: zone \"%V\" cannot sync with "
                              "redis, limiting locally", &zone->name);
            }

            return;
        }
    }
}


static void
ngx_http_crest_limit_sync_handler(ngx_event_t *ev)
{
    ngx_msec_t                         every;
    ngx_uint_t                         i;
    ngx_shm_zone_t                   **zones;
    ngx_http_crest_limit_zone_t       *zone;
    ngx_http_crest_limit_main_conf_t  *lmcf;

    lmcf = ev->data;
    zones = lmcf->zones.elts;
    every = 0;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        zone = zones[i]->data;

        if (zone->policy != NGX_CREST_LIMIT_SYNC) {
            continue;
        }

        ngx_http_crest_limit_sync_zone(zone);

        if (every == 0 || zone->sync < every) {
            every = zone->sync;
        }
    }

    if (every && !ngx_exiting) {
        ngx_add_timer(ev, every);
    }
}


static ngx_int_t
ngx_http_crest_limit_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_shm_zone_t                   **zones;
    ngx_http_crest_limit_zone_t       *zone;
    ngx_http_crest_limit_main_conf_t  *lmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_crest_limit_module);
    if (lmcf == NULL) {
        return NGX_OK;
    }

    zones = lmcf->zones.elts;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        zone = zones[i]->data;

        if (zone->policy == NGX_CREST_LIMIT_SYNC) {
            ngx_memzero(&ngx_http_crest_limit_sync_event, sizeof(ngx_event_t));
            ngx_http_crest_limit_sync_event.handler =
                                             ngx_http_crest_limit_sync_handler;
            ngx_http_crest_limit_sync_event.data = lmcf;
            ngx_http_crest_limit_sync_event.log = cycle->log;
            ngx_http_crest_limit_sync_event.cancelable = 1;

            ngx_add_timer(&ngx_http_crest_limit_sync_event, zone->sync);
            break;
        }
    }

    return NGX_OK;
}


/* answers */

static ngx_int_t
ngx_http_crest_limit_add_header(ngx_http_request_t *r, const char *name,
    size_t len, u_char *value, size_t vlen)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value.data = value;
    h->value.len = vlen;

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_limit_headers_out(ngx_http_request_t *r,
    ngx_http_crest_limit_loc_conf_t *llcf, ngx_http_crest_limit_ctx_t *ctx)
{
    u_char                       *p, *v;
    int64_t                       limit, reset;
    ngx_http_crest_limit_zone_t  *zone;

    if (llcf->headers == NGX_CREST_LIMIT_HEADERS_OFF
        || ctx->worst_limit == NULL)
    {
        return NGX_OK;
    }

    zone = ngx_http_crest_limit_zone_ctx(ctx->worst_limit);
    limit = ctx->worst_limit->burst ? (int64_t) ctx->worst_limit->burst
                                    : zone->count;
    reset = (ctx->worst.reset + 999999) / 1000000;

    p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN + 2 * zone->name.len + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v = p;
    p = ngx_sprintf(p, "%L", limit);
    if (ngx_http_crest_limit_add_header(r, "RateLimit-Limit", 15, v, p - v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = p;
    p = ngx_sprintf(p, "%L", ctx->worst.remaining);
    if (ngx_http_crest_limit_add_header(r, "RateLimit-Remaining", 19, v, p - v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = p;
    p = ngx_sprintf(p, "%L", reset);
    if (ngx_http_crest_limit_add_header(r, "RateLimit-Reset", 15, v, p - v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (llcf->headers == NGX_CREST_LIMIT_HEADERS_DRAFT) {
        /* draft-ietf-httpapi-ratelimit-headers-08 structured fields */
        v = ngx_pnalloc(r->pool, 2 * zone->name.len + 4 * NGX_INT64_LEN + 32);
        if (v == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(v, "\"%V\";q=%L;w=%L", &zone->name, limit,
                        zone->period / 1000 ? zone->period / 1000 : 1);
        if (ngx_http_crest_limit_add_header(r, "RateLimit-Policy", 16, v,
                                            p - v)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        v = p;
        p = ngx_sprintf(p, "\"%V\";r=%L;t=%L", &zone->name,
                        ctx->worst.remaining, reset);
        if (ngx_http_crest_limit_add_header(r, "RateLimit", 9, v, p - v)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_limit_reject(ngx_http_request_t *r,
    ngx_http_crest_limit_loc_conf_t *llcf, ngx_http_crest_limit_ctx_t *ctx,
    ngx_http_crest_limit_t *limit, crest_gcra_result_t *res)
{
    u_char                       *p, *v;
    int64_t                       retry;
    crest_jw_t                    w;
    crest_buf_t                   details;
    crest_allocator_t             a;
    ngx_http_crest_limit_zone_t  *zone;

    zone = ngx_http_crest_limit_zone_ctx(limit);
    retry = (res->retry_after + 999999) / 1000000;

    if (retry < 1) {
        retry = 1;
    }

    ngx_log_error(llcf->log_level, r->connection->log, 0,
                  "crest limit: limiting requests by zone \"%V\"",
                  &zone->name);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    ctx->worst = *res;
    ctx->worst_limit = limit;

    if (ngx_http_crest_limit_headers_out(r, llcf, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    v = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (v == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(v, "%L", retry);
    if (ngx_http_crest_limit_add_header(r, "Retry-After", 11, v, p - v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&details, &a);
    crest_jw_init(&w, &details);
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "zone");
    crest_jw_strn(&w, (const char *) zone->name.data, zone->name.len);
    crest_jw_key(&w, "limit");
    crest_jw_int(&w, zone->count);
    crest_jw_key(&w, "periodSeconds");
    crest_jw_int(&w, zone->period / 1000);
    crest_jw_key(&w, "retryAfter");
    crest_jw_int(&w, retry);
    crest_jw_obj_end(&w);

    return ngx_crest_send_error(r, llcf->status, CREST_ERR_RATE_LIMITED,
                                "too many requests, slow down", &details);
}


/* the phase handler */

static ngx_int_t
ngx_http_crest_limit_handler(ngx_http_request_t *r)
{
    int64_t                           burst;
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    crest_gcra_result_t               res;
    ngx_http_crest_limit_t           *limits, *limit;
    ngx_http_crest_limit_ctx_t       *ctx;
    ngx_http_crest_limit_zone_t      *zone;
    ngx_http_crest_limit_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_limit_module);

    if (llcf->limits == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_limit_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_limit_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->request = r;
        ngx_http_set_ctx(r, ctx, ngx_http_crest_limit_module);

    } else if (ctx->pending) {
        return NGX_AGAIN;

    } else if (ctx->done == 1) {
        return NGX_DECLINED;
    }

    limits = llcf->limits->elts;

    for (i = ctx->next; i < llcf->limits->nelts; i++) {
        limit = &limits[i];
        zone = ngx_http_crest_limit_zone_ctx(limit);

        if (zone == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "crest limit: unknown zone");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        burst = limit->burst ? (int64_t) limit->burst : zone->count;

        if (ctx->done == 2 && ctx->next == i) {
            /* resumed: the answer from Redis for this limit is in */
            ctx->done = 0;

            if (ctx->redis_rc == NGX_OK) {
                crest_gcra_from_used(ctx->redis.allowed, ctx->redis.reset,
                                     zone->interval, burst, limit->cost, &res);

                if (zone->fallback) {
                    zone->fallback = 0;
                    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                                  "crest limit: zone \"%V\" uses redis again",
                                  &zone->name);
                }

                goto decided;
            }

            goto redis_down;
        }

        if (ngx_http_complex_value(r, &zone->key, &ctx->key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->key.len == 0) {
            continue;
        }

        if (ctx->key.len > 65535) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "crest limit: the key of zone \"%V\" is too long",
                          &zone->name);
            continue;
        }

        if (zone->policy == NGX_CREST_LIMIT_REDIS) {
            rc = ngx_http_crest_limit_redis(r, ctx, zone, limit, burst);

            if (rc == NGX_AGAIN) {
                ctx->next = i;
                ctx->done = 2;
                r->read_event_handler = ngx_http_test_reading;
                r->write_event_handler = ngx_http_core_run_phases;
                return NGX_AGAIN;
            }

            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            goto redis_down;
        }

        if (ngx_http_crest_limit_local(zone, limit, &ctx->key, burst, &res)
            != NGX_OK)
        {
            /* the zone is full of keys: let it pass rather than fail */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "crest limit: zone \"%V\" is out of memory",
                          &zone->name);
            continue;
        }

        goto decided;

    redis_down:

        if (!zone->fallback) {
            zone->fallback = 1;
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "crest limit: redis unavailable for zone \"%V\", "
                          "%s", &zone->name,
                          zone->on_error == NGX_CREST_LIMIT_ERR_LOCAL
                          ? "limiting locally"
                          : zone->on_error == NGX_CREST_LIMIT_ERR_ALLOW
                            ? "letting requests through"
                            : "refusing requests");
        }

        if (zone->on_error == NGX_CREST_LIMIT_ERR_ALLOW) {
            continue;
        }

        if (zone->on_error == NGX_CREST_LIMIT_ERR_DENY) {
            ngx_http_finalize_request(r,
                ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     CREST_ERR_SERVICE_UNAVAILABLE,
                                     "the rate limiter is unavailable",
                                     NULL));
            return NGX_DONE;
        }

        if (ngx_http_crest_limit_local(zone, limit, &ctx->key, burst, &res)
            != NGX_OK)
        {
            continue;
        }

    decided:

        if (!res.allowed) {
            if (limit->dry_run) {
                ctx->rejected = 1;
                ngx_log_error(llcf->log_level, r->connection->log, 0,
                              "crest limit: limiting requests, dry run, "
                              "by zone \"%V\"", &zone->name);
                continue;
            }

            ctx->limited = 1;

            ngx_http_finalize_request(r,
                ngx_http_crest_limit_reject(r, llcf, ctx, limit, &res));
            return NGX_DONE;
        }

        if (ctx->worst_limit == NULL || res.remaining < ctx->worst.remaining) {
            ctx->worst = res;
            ctx->worst_limit = limit;
        }
    }

    ctx->done = 1;
    ctx->next = llcf->limits->nelts;

    if (ngx_http_crest_limit_headers_out(r, llcf, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_crest_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_crest_limit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_crest_limit_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ctx->limited) {
        ngx_str_set(v, "REJECTED");

    } else if (ctx->rejected) {
        ngx_str_set(v, "REJECTED_DRY_RUN");

    } else {
        ngx_str_set(v, "PASSED");
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* for modules that limit by a key of their own */

ngx_shm_zone_t *
ngx_crest_limit_zone(ngx_conf_t *cf, ngx_str_t *name)
{
    return ngx_shared_memory_add(cf, name, 0, &ngx_http_crest_limit_module);
}


ngx_int_t
ngx_crest_limit_key(ngx_http_request_t *r, ngx_shm_zone_t *shm_zone,
    ngx_str_t *key, ngx_int_t *rc)
{
    crest_gcra_result_t               res;
    ngx_http_crest_limit_t            limit;
    ngx_http_crest_limit_ctx_t        ctx;
    ngx_http_crest_limit_zone_t      *zone;
    ngx_http_crest_limit_loc_conf_t  *llcf;

    zone = shm_zone->data;

    if (zone == NULL || key->len == 0 || key->len > 65535) {
        return NGX_OK;
    }

    ngx_memzero(&limit, sizeof(ngx_http_crest_limit_t));
    limit.zone = (ngx_http_crest_limit_zone_t *) shm_zone;
    limit.cost = 1;

    if (ngx_http_crest_limit_local(zone, &limit, key, zone->count, &res)
        != NGX_OK || res.allowed)
    {
        return NGX_OK;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_limit_module);

    ngx_memzero(&ctx, sizeof(ngx_http_crest_limit_ctx_t));
    ctx.request = r;
    ctx.limited = 1;

    *rc = ngx_http_crest_limit_reject(r, llcf, &ctx, &limit, &res);

    return NGX_DECLINED;
}
