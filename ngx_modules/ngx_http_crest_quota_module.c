/*
 * ngx_http_crest_quota_module: monthly usage quotas per plan.
 *
 *   location /api/scrape { crest_auth on; crest_quota scrape cost=1; ... }
 *
 * Each user has, per usage type and calendar month (UTC), a counter in
 * Redis, "crest:usage:{<user>}:<type>:<YYYY-MM>".  The check and the
 * increment are one Lua script, so of any number of concurrent requests
 * exactly as many pass as the month has units left.  The limit comes from
 * the user's plan in PostgreSQL (kept a few seconds in the worker).
 *
 * PostgreSQL holds the same counts (user_usage) and is the source of truth:
 * every granted unit is written there before the request goes on, so losing
 * Redis loses no usage.  A missing counter ("cold": Redis was flushed or
 * restarted, or the month is new) is seeded from PostgreSQL by a variant of
 * the same script that sets the key only if it still does not exist and
 * then checks, so concurrent seeders agree on one value.
 *
 * A request that ends with a status of 400 or more after it took a unit
 * gives the unit back, in a cleanup of the request's pool: that runs however
 * the request ends (also after internal redirects to error pages, which
 * reset module contexts), and calls nothing bound to the request.
 *
 * The handler runs in the preaccess phase after crest_auth (this module is
 * listed before ngx_http_crest_auth_module in ../config).  A request
 * without an identity is answered 401 here: a quota cannot apply to nobody.
 */

#include <openssl/sha.h>

#include "ngx_crest_pg.h"
#include "ngx_crest_redis.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_quota.h"
#include "crest_json.h"


#define NGX_CREST_QUOTA_DENY          0
#define NGX_CREST_QUOTA_ALLOW         1

#define NGX_CREST_QUOTA_COST_MAX      1000000

/* a direct-mapped cache of users' plans: a collision costs one query */
#define NGX_CREST_QUOTA_CACHE_SLOTS   1024

/*
 * A counter outlives its month by a day, so that a request that started
 * just before midnight can still give its unit back.
 */
#define NGX_CREST_QUOTA_KEY_GRACE     86400

/* the steps of the check, in the order they usually run */
#define NGX_CREST_QUOTA_LIMITS        0     /* the plan's limit, from PG */
#define NGX_CREST_QUOTA_CHECK         1     /* the script */
#define NGX_CREST_QUOTA_COLD          2     /* no counter: read PG's count */
#define NGX_CREST_QUOTA_PERSIST       3     /* granted: record it in PG */
#define NGX_CREST_QUOTA_GRANTED       4
#define NGX_CREST_QUOTA_DENIED        5
#define NGX_CREST_QUOTA_FAILED        6
#define NGX_CREST_QUOTA_NO_USER       7
#define NGX_CREST_QUOTA_DONE          8

#define NGX_CREST_QUOTA_REDIS         0
#define NGX_CREST_QUOTA_PG            1


typedef struct {
    ngx_msec_t                 cache_ttl;
    ngx_flag_t                 test_clock;
} ngx_http_crest_quota_main_conf_t;


typedef struct {
    ngx_uint_t                 type;        /* NGX_CONF_UNSET_UINT: none */
    ngx_int_t                  cost;
    ngx_uint_t                 on_error;
} ngx_http_crest_quota_loc_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_uint_t                 step;
    ngx_uint_t                 type;
    ngx_int_t                  cost;
    ngx_int_t                  limit;
    ngx_int_t                  current;
    ngx_int_t                  seed;

    ngx_str_t                  user_id;
    u_char                     user[37];
    ngx_crest_quota_period_t   period;
    u_char                     key[NGX_CREST_QUOTA_KEY_LEN];
    size_t                     key_len;

    unsigned                   pending:1;
    unsigned                   seeded:1;    /* run the seeding variant */
    unsigned                   checked:1;   /* limit and current known */
    unsigned                   taken:1;     /* a unit to give back */
    unsigned                   persisted:1; /* PG has, or may have, it */
} ngx_http_crest_quota_ctx_t;


typedef struct {
    u_char                     user_id[37];
    u_char                     plan[NGX_CREST_QUOTA_PLAN_LEN];
    ngx_msec_t                 expires;
    ngx_int_t                  limits[NGX_CREST_QUOTA_NTYPES];
    unsigned                   used:1;
} ngx_crest_quota_slot_t;


static ngx_int_t ngx_http_crest_quota_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_crest_quota_init(ngx_conf_t *cf);
static void *ngx_http_crest_quota_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_quota_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_crest_quota_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_quota_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_crest_quota(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_crest_quota_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_crest_quota_handler(ngx_http_request_t *r);
static void ngx_http_crest_quota_cleanup(void *data);
static void ngx_http_crest_quota_give_back(ngx_http_crest_quota_ctx_t *ctx);
static ngx_int_t ngx_http_crest_quota_remaining_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);


static ngx_conf_enum_t  ngx_http_crest_quota_on_error[] = {
    { ngx_string("deny"), NGX_CREST_QUOTA_DENY },
    { ngx_string("allow"), NGX_CREST_QUOTA_ALLOW },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_crest_quota_commands[] = {

    { ngx_string("crest_quota"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_crest_quota,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_quota_on_error"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_quota_loc_conf_t, on_error),
      &ngx_http_crest_quota_on_error },

    { ngx_string("crest_quota_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_quota_main_conf_t, cache_ttl),
      NULL },

    { ngx_string("crest_quota_test_clock"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_quota_main_conf_t, test_clock),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_quota_module_ctx = {
    ngx_http_crest_quota_add_variables,    /* preconfiguration */
    ngx_http_crest_quota_init,             /* postconfiguration */

    ngx_http_crest_quota_create_main_conf, /* create main configuration */
    ngx_http_crest_quota_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_quota_create_loc_conf,  /* create location configuration */
    ngx_http_crest_quota_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_crest_quota_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_quota_module_ctx,      /* module context */
    ngx_http_crest_quota_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_crest_quota_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_str_t  ngx_crest_quota_types[NGX_CREST_QUOTA_NTYPES] = {
    ngx_string("scrape"),
    ngx_string("download"),
    ngx_string("ai_generation"),
    ngx_string("upload"),
    ngx_string("clip")
};


/*
 * KEYS[1] the counter; ARGV: cost, limit (-1: unlimited), expiry (Unix
 * seconds), and the count to seed a missing counter with.  Without a seed
 * a missing counter answers {-1, 0} ("cold"); else {1, count} when the
 * units were taken, {0, count} when they were not.  Scripts run atomically:
 * between the GET and the INCRBY no other client runs.
 */
static char  ngx_crest_quota_take_lua[] =
    "local n = redis.call('GET', KEYS[1])\n"
    "if not n then\n"
    "  if ARGV[4] == nil then return {-1, 0} end\n"
    "  n = ARGV[4]\n"
    "  redis.call('SET', KEYS[1], n, 'NX')\n"
    "  redis.call('EXPIREAT', KEYS[1], ARGV[3])\n"
    "end\n"
    "n = tonumber(n)\n"
    "local cost, limit = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "if limit >= 0 and n + cost > limit then return {0, n} end\n"
    "return {1, redis.call('INCRBY', KEYS[1], cost)}\n";

/*
 * KEYS[1] the counter; ARGV[1] the cost.  Never creates a counter: a
 * missing one is seeded from PostgreSQL, which gets the refund too.
 */
static char  ngx_crest_quota_give_back_lua[] =
    "local n = redis.call('GET', KEYS[1])\n"
    "if not n then return -1 end\n"
    "n = tonumber(n) - tonumber(ARGV[1])\n"
    "if n < 0 then n = 0 end\n"
    "redis.call('SET', KEYS[1], n, 'KEEPTTL')\n"
    "return n\n";

static ngx_crest_redis_script_t  ngx_crest_quota_take_script;
static ngx_crest_redis_script_t  ngx_crest_quota_give_back_script;


static ngx_str_t  ngx_http_crest_quota_remaining_name =
    ngx_string("crest_quota_remaining");


/* per worker: the plan cache, and which backend is known to be failing */
static ngx_crest_quota_slot_t  *ngx_crest_quota_cache;
static ngx_uint_t               ngx_crest_quota_down[2];


/* configuration */

static void *
ngx_http_crest_quota_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_quota_main_conf_t  *qmcf;

    qmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_quota_main_conf_t));
    if (qmcf == NULL) {
        return NULL;
    }

    qmcf->cache_ttl = NGX_CONF_UNSET_MSEC;
    qmcf->test_clock = NGX_CONF_UNSET;

    return qmcf;
}


static char *
ngx_http_crest_quota_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_quota_main_conf_t  *qmcf = conf;

    ngx_conf_init_msec_value(qmcf->cache_ttl, 5000);
    ngx_conf_init_value(qmcf->test_clock, 0);

    if (qmcf->test_clock) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "crest_quota_test_clock is on: clients choose the "
                           "month they are counted in; never use it in "
                           "production");
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_crest_quota_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_quota_loc_conf_t  *qlcf;

    qlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_quota_loc_conf_t));
    if (qlcf == NULL) {
        return NULL;
    }

    qlcf->type = NGX_CONF_UNSET_UINT;
    qlcf->cost = NGX_CONF_UNSET;
    qlcf->on_error = NGX_CONF_UNSET_UINT;

    return qlcf;
}


static char *
ngx_http_crest_quota_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_crest_quota_loc_conf_t  *prev = parent;
    ngx_http_crest_quota_loc_conf_t  *conf = child;

    if (conf->type == NGX_CONF_UNSET_UINT) {
        conf->type = prev->type;
        conf->cost = prev->cost;
    }

    ngx_conf_merge_value(conf->cost, prev->cost, 1);
    ngx_conf_merge_uint_value(conf->on_error, prev->on_error,
                              NGX_CREST_QUOTA_DENY);

    return NGX_CONF_OK;
}


/* crest_quota <type> [cost=N]; */
static char *
ngx_http_crest_quota(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_quota_loc_conf_t  *qlcf = conf;

    ngx_int_t   cost;
    ngx_str_t  *value;
    ngx_uint_t  i;

    if (qlcf->type != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < NGX_CREST_QUOTA_NTYPES; i++) {
        if (value[1].len == ngx_crest_quota_types[i].len
            && ngx_strncmp(value[1].data, ngx_crest_quota_types[i].data,
                           value[1].len) == 0)
        {
            qlcf->type = i;
            break;
        }
    }

    if (qlcf->type == NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown usage type \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    qlcf->cost = 1;

    if (cf->args->nelts == 3) {
        cost = NGX_ERROR;

        if (value[2].len > 5 && ngx_strncmp(value[2].data, "cost=", 5) == 0) {
            cost = ngx_atoi(value[2].data + 5, value[2].len - 5);
        }

        if (cost < 1 || cost > NGX_CREST_QUOTA_COST_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        qlcf->cost = cost;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_quota_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_crest_quota_remaining_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_crest_quota_remaining_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_quota_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_crest_redis_script_init(&ngx_crest_quota_take_script,
                                ngx_crest_quota_take_lua,
                                sizeof(ngx_crest_quota_take_lua) - 1);
    ngx_crest_redis_script_init(&ngx_crest_quota_give_back_script,
                                ngx_crest_quota_give_back_lua,
                                sizeof(ngx_crest_quota_give_back_lua) - 1);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* registered before crest_auth's handler, so it runs after it */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_crest_quota_handler;

    return NGX_OK;
}


static void
ngx_http_crest_quota_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_crest_quota_cache) {
        ngx_free(ngx_crest_quota_cache);
        ngx_crest_quota_cache = NULL;
    }
}


/* periods */

static ngx_uint_t
ngx_http_crest_quota_leap(ngx_uint_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}


/* 00:00 UTC on the first of a month, as Unix time */
static time_t
ngx_http_crest_quota_month_start(ngx_uint_t year, ngx_uint_t mon)
{
    ngx_uint_t  y, days;

    static ngx_uint_t  before[] = {
        0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334
    };

    /* leap days in the years before this one, less those before 1970 */
    y = year - 1;
    days = 365 * (year - 1970) + (y / 4 - y / 100 + y / 400) - 477
           + before[mon - 1];

    if (mon > 2 && ngx_http_crest_quota_leap(year)) {
        days++;
    }

    return (time_t) days * 86400;
}


static time_t
ngx_http_crest_quota_now(ngx_http_request_t *r)
{
    time_t                             t;
    ngx_uint_t                         i;
    ngx_list_part_t                   *part;
    ngx_table_elt_t                   *h;
    ngx_http_crest_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_quota_module);

    if (!qmcf->test_clock) {
        return ngx_time();
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return ngx_time();
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-Crest-Test-Now") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Crest-Test-Now",
                               sizeof("X-Crest-Test-Now") - 1) == 0)
        {
            t = ngx_atotm(h[i].value.data, h[i].value.len);

            /* years 1970 to 9999 */
            if (t == NGX_ERROR || t >= 253402300800) {
                return ngx_time();
            }

            return t;
        }
    }
}


void
ngx_crest_quota_period(ngx_http_request_t *r, ngx_crest_quota_period_t *p)
{
    ngx_tm_t    tm;
    ngx_uint_t  year, mon;

    p->now = ngx_http_crest_quota_now(r);

    ngx_gmtime(p->now, &tm);

    year = tm.ngx_tm_year;
    mon = tm.ngx_tm_mon;            /* 1 to 12 */

    p->start = ngx_http_crest_quota_month_start(year, mon);
    p->end = (mon == 12) ? ngx_http_crest_quota_month_start(year + 1, 1)
                         : ngx_http_crest_quota_month_start(year, mon + 1);

    ngx_sprintf(p->key, "%04ui-%02ui%Z", year, mon);
    crest_iso8601_ms(p->start_iso, (int64_t) p->start * 1000);
    crest_iso8601_ms(p->end_iso, (int64_t) p->end * 1000);
}


size_t
ngx_crest_quota_key(u_char *buf, ngx_str_t *user_id, ngx_uint_t type,
    ngx_crest_quota_period_t *period)
{
    u_char  *p;

    /* the braces are a hash tag: a user's counters share a cluster slot */
    p = ngx_snprintf(buf, NGX_CREST_QUOTA_KEY_LEN - 1,
                     "crest:usage:{%V}:%V:%s", user_id,
                     &ngx_crest_quota_types[type], period->key);
    *p = '\0';

    return p - buf;
}


/* the plan cache */

static ngx_crest_quota_slot_t *
ngx_http_crest_quota_slot(ngx_str_t *user_id)
{
    if (ngx_crest_quota_cache == NULL) {
        ngx_crest_quota_cache = ngx_calloc(NGX_CREST_QUOTA_CACHE_SLOTS
                                           * sizeof(ngx_crest_quota_slot_t),
                                           ngx_cycle->log);
        if (ngx_crest_quota_cache == NULL) {
            return NULL;
        }
    }

    return &ngx_crest_quota_cache[ngx_crc32_short(user_id->data, user_id->len)
                                  % NGX_CREST_QUOTA_CACHE_SLOTS];
}


static ngx_crest_quota_slot_t *
ngx_http_crest_quota_cached(ngx_str_t *user_id)
{
    ngx_crest_quota_slot_t  *slot;

    if (ngx_crest_quota_cache == NULL) {
        return NULL;
    }

    slot = ngx_http_crest_quota_slot(user_id);

    if (slot->used
        && (ngx_msec_int_t) (slot->expires - ngx_current_msec) > 0
        && ngx_strlen(slot->user_id) == user_id->len
        && ngx_strncmp(slot->user_id, user_id->data, user_id->len) == 0)
    {
        return slot;
    }

    return NULL;
}


void
ngx_crest_quota_remember(ngx_http_request_t *r, ngx_str_t *user_id,
    ngx_crest_quota_user_t *user)
{
    ngx_crest_quota_slot_t            *slot;
    ngx_http_crest_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_quota_module);

    if (qmcf->cache_ttl == 0 || user_id->len >= sizeof(slot->user_id)) {
        return;
    }

    slot = ngx_http_crest_quota_slot(user_id);
    if (slot == NULL) {
        return;
    }

    ngx_cpystrn(slot->user_id, user_id->data, user_id->len + 1);
    ngx_cpystrn(slot->plan, user->plan, sizeof(slot->plan));
    ngx_memcpy(slot->limits, user->limits, sizeof(slot->limits));
    slot->expires = ngx_current_msec + qmcf->cache_ttl;
    slot->used = 1;
}


void
ngx_crest_quota_forget_user(ngx_str_t *user_id)
{
    ngx_crest_quota_slot_t  *slot;

    slot = ngx_http_crest_quota_cached(user_id);

    if (slot) {
        slot->used = 0;
    }
}


ngx_int_t
ngx_crest_quota_parse_user(PGresult *res, ngx_crest_quota_user_t *user)
{
    int         row, n;
    size_t      len;
    ngx_int_t   v;
    ngx_uint_t  i, seen;

    n = PQntuples(res);

    if (n == 0) {
        return NGX_DECLINED;
    }

    if (PQnfields(res) != 4
        || PQgetlength(res, 0, 0) >= (int) sizeof(user->plan))
    {
        return NGX_ERROR;
    }

    ngx_cpystrn(user->plan, (u_char *) PQgetvalue(res, 0, 0),
                sizeof(user->plan));

    seen = 0;

    for (row = 0; row < n; row++) {
        len = PQgetlength(res, row, 1);

        for (i = 0; i < NGX_CREST_QUOTA_NTYPES; i++) {
            if (len == ngx_crest_quota_types[i].len
                && ngx_strncmp(PQgetvalue(res, row, 1),
                               ngx_crest_quota_types[i].data,
                               ngx_crest_quota_types[i].len) == 0)
            {
                break;
            }
        }

        if (i == NGX_CREST_QUOTA_NTYPES) {
            return NGX_ERROR;
        }

        v = ngx_atoi((u_char *) PQgetvalue(res, row, 2),
                     PQgetlength(res, row, 2));

        if (PQgetlength(res, row, 2) == 2
            && ngx_strncmp(PQgetvalue(res, row, 2), "-1", 2) == 0)
        {
            v = NGX_CREST_QUOTA_UNLIMITED;

        } else if (v == NGX_ERROR) {
            return NGX_ERROR;
        }

        user->limits[i] = v;

        v = ngx_atoi((u_char *) PQgetvalue(res, row, 3),
                     PQgetlength(res, row, 3));
        if (v == NGX_ERROR) {
            return NGX_ERROR;
        }

        user->counts[i] = v;
        seen |= 1 << i;
    }

    return seen == (1 << NGX_CREST_QUOTA_NTYPES) - 1 ? NGX_OK : NGX_ERROR;
}


/* failures: logged when a backend starts and stops failing, not per request */

static void
ngx_http_crest_quota_backend(ngx_uint_t which, ngx_crest_status_e status,
    const char *detail)
{
    static const char  *names[] = { "redis", "postgresql" };

    if (status == NGX_CREST_OK) {
        if (ngx_crest_quota_down[which]) {
            ngx_crest_quota_down[which] = 0;
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "crest quota: %s answers again", names[which]);
        }

        return;
    }

    if (ngx_crest_quota_down[which]) {
        return;
    }

    ngx_crest_quota_down[which] = 1;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "crest quota: %s %s%s%s; quotas cannot be checked until "
                  "it answers (crest_quota_on_error decides)", names[which],
                  ngx_crest_status_text(status), detail ? ": " : "",
                  detail ? detail : "");
}


/* the steps */

static void
ngx_http_crest_quota_resume(ngx_http_crest_quota_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;
    ctx->pending = 0;

    /* back into the phases, where the handler takes the next step */
    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_crest_quota_fail(ngx_http_crest_quota_ctx_t *ctx, ngx_uint_t which,
    ngx_crest_status_e status, const char *detail)
{
    ngx_http_crest_quota_backend(which, status, detail);

    ctx->step = NGX_CREST_QUOTA_FAILED;
}


static void
ngx_http_crest_quota_pg_read_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_quota_ctx_t  *ctx = data;

    ngx_int_t               rc;
    ngx_crest_quota_user_t  user;

    if (status != NGX_CREST_OK) {
        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_PG, status,
                                  ngx_crest_pg_error(status, res));
        goto resume;
    }

    ngx_http_crest_quota_backend(NGX_CREST_QUOTA_PG, status, NULL);

    rc = ngx_crest_quota_parse_user(res, &user);

    if (rc == NGX_DECLINED) {
        /* a valid token of an account deleted since */
        ctx->step = NGX_CREST_QUOTA_NO_USER;
        goto resume;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "crest quota: unexpected answer to the plan query");
        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_PG, NGX_CREST_FAILED,
                                  "unexpected answer");
        goto resume;
    }

    ngx_crest_quota_remember(ctx->request, &ctx->user_id, &user);

    ctx->limit = user.limits[ctx->type];

    if (ctx->step == NGX_CREST_QUOTA_COLD) {
        ctx->seed = user.counts[ctx->type];
        ctx->seeded = 1;
    }

    ctx->step = NGX_CREST_QUOTA_CHECK;

resume:

    ngx_http_crest_quota_resume(ctx);
}


/* the plan and the period's counts, for LIMITS and COLD alike */
static ngx_int_t
ngx_http_crest_quota_pg_read(ngx_http_request_t *r,
    ngx_http_crest_quota_ctx_t *ctx)
{
    const char            *values[2];
    ngx_crest_pg_query_t  *q;

    values[0] = (const char *) ctx->user;
    values[1] = ctx->period.start_iso;

    q = ngx_crest_pg_query(NGX_CREST_QUOTA_SQL, 2, values, NULL, 0,
                           ngx_http_crest_quota_pg_read_done, ctx,
                           r->connection->log);
    if (q == NULL) {
        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_PG,
                                  NGX_CREST_UNAVAILABLE, NULL);
        return NGX_DECLINED;
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_crest_quota_take_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_quota_ctx_t  *ctx = data;

    long long  verdict;

    if (status == NGX_CREST_OK
        && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
            || reply->element[0]->type != REDIS_REPLY_INTEGER
            || reply->element[1]->type != REDIS_REPLY_INTEGER))
    {
        status = NGX_CREST_FAILED;
    }

    if (status != NGX_CREST_OK) {
        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_REDIS, status,
                                  reply && reply->type == REDIS_REPLY_ERROR
                                  ? reply->str : NULL);
        goto resume;
    }

    ngx_http_crest_quota_backend(NGX_CREST_QUOTA_REDIS, status, NULL);

    verdict = reply->element[0]->integer;
    ctx->current = (ngx_int_t) reply->element[1]->integer;
    ctx->checked = (verdict >= 0);

    if (verdict < 0) {
        if (ctx->seeded) {
            /* the seeding variant never answers cold */
            ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_REDIS,
                                      NGX_CREST_FAILED, "cold after seeding");

        } else {
            ctx->step = NGX_CREST_QUOTA_COLD;
        }

    } else if (verdict == 0) {
        ctx->step = NGX_CREST_QUOTA_DENIED;

    } else {
        ctx->taken = 1;
        ctx->step = NGX_CREST_QUOTA_PERSIST;
    }

resume:

    ngx_http_crest_quota_resume(ctx);
}


static ngx_int_t
ngx_http_crest_quota_take(ngx_http_request_t *r,
    ngx_http_crest_quota_ctx_t *ctx)
{
    int                     argc;
    time_t                  expires;
    u_char                 *p;
    const char             *argv[8];
    size_t                  argvlen[8];
    ngx_crest_redis_cmd_t  *cmd;
    u_char                  num[4][NGX_INT64_LEN + 1];

    /* the counter lives past its month, and never dies at once */
    expires = ngx_max(ctx->period.end, ngx_time()) + NGX_CREST_QUOTA_KEY_GRACE;

    argc = 0;

    argv[argc] = "1";
    argvlen[argc++] = 1;
    argv[argc] = (char *) ctx->key;
    argvlen[argc++] = ctx->key_len;

    p = ngx_sprintf(num[0], "%i", ctx->cost);
    argv[argc] = (char *) num[0];
    argvlen[argc++] = p - num[0];

    p = ngx_sprintf(num[1], "%i", ctx->limit);
    argv[argc] = (char *) num[1];
    argvlen[argc++] = p - num[1];

    p = ngx_sprintf(num[2], "%T", expires);
    argv[argc] = (char *) num[2];
    argvlen[argc++] = p - num[2];

    if (ctx->seeded) {
        p = ngx_sprintf(num[3], "%i", ctx->seed);
        argv[argc] = (char *) num[3];
        argvlen[argc++] = p - num[3];
    }

    /* hiredis copies the arguments into its output buffer at once */
    cmd = ngx_crest_redis_script(&ngx_crest_quota_take_script, argc, argv,
                                 argvlen, 0, ngx_http_crest_quota_take_done,
                                 ctx, r->connection->log);
    if (cmd == NULL) {
        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_REDIS,
                                  NGX_CREST_UNAVAILABLE, NULL);
        return NGX_DECLINED;
    }

    if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_crest_quota_persist_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_quota_ctx_t  *ctx = data;

    if (status != NGX_CREST_OK) {
        /*
         * An error answer recorded nothing: the unit goes back to Redis
         * only when the request ends.  After a timeout or a lost
         * connection the write may have happened; then PostgreSQL gets
         * the refund too, floored at zero: uncertainty favours the user.
         */
        if (status == NGX_CREST_FAILED) {
            ctx->persisted = 0;
        }

        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_PG, status,
                                  ngx_crest_pg_error(status, res));

    } else {
        ngx_http_crest_quota_backend(NGX_CREST_QUOTA_PG, status, NULL);
        ctx->step = NGX_CREST_QUOTA_GRANTED;
    }

    ngx_http_crest_quota_resume(ctx);
}


static ngx_int_t
ngx_http_crest_quota_persist(ngx_http_request_t *r,
    ngx_http_crest_quota_ctx_t *ctx)
{
    u_char                 cost[NGX_INT_T_LEN + 1];
    const char            *values[5];
    ngx_crest_pg_query_t  *q;

    ngx_sprintf(cost, "%i%Z", ctx->cost);

    values[0] = (const char *) ctx->user;
    values[1] = (const char *) ngx_crest_quota_types[ctx->type].data;
    values[2] = ctx->period.start_iso;
    values[3] = ctx->period.end_iso;
    values[4] = (const char *) cost;

    /* a delta, not a value: concurrent writers from any worker commute */
    q = ngx_crest_pg_query(
            "INSERT INTO user_usage "
            "(user_id, usage_type, period_start, period_end, count) "
            "VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (user_id, usage_type, period_start) "
            "DO UPDATE SET count = user_usage.count + EXCLUDED.count",
            5, values, NULL, 0, ngx_http_crest_quota_persist_done, ctx,
            r->connection->log);

    if (q == NULL) {
        ngx_http_crest_quota_fail(ctx, NGX_CREST_QUOTA_PG,
                                  NGX_CREST_UNAVAILABLE, NULL);
        return NGX_DECLINED;
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * From now on a refund goes to PostgreSQL too, also if the client
     * leaves before the write is confirmed: the write still happens.
     */
    ctx->persisted = 1;

    return NGX_AGAIN;
}


/* answers */

static ngx_int_t
ngx_http_crest_quota_end(ngx_http_request_t *r, ngx_int_t rc)
{
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_crest_quota_headers(ngx_http_request_t *r,
    ngx_http_crest_quota_ctx_t *ctx)
{
    u_char           *p;
    ngx_int_t         remaining;
    ngx_table_elt_t  *h;

    if (ctx->limit == NGX_CREST_QUOTA_UNLIMITED) {
        return NGX_OK;
    }

    remaining = ngx_max(ctx->limit - ctx->current, 0);

    p = ngx_pnalloc(r->pool, 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Quota-Limit");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%i", ctx->limit) - p;
    p += h->value.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Quota-Remaining");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%i", remaining) - p;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Quota-Reset");
    h->value.data = (u_char *) ctx->period.end_iso;
    h->value.len = ngx_strlen(ctx->period.end_iso);

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_quota_exceeded(ngx_http_request_t *r,
    ngx_http_crest_quota_ctx_t *ctx)
{
    ngx_int_t          remaining;
    crest_jw_t         w;
    ngx_str_t          extra;
    crest_buf_t        meta, details;
    crest_allocator_t  a;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "crest quota: %V limit of %i reached by user %V",
                  &ngx_crest_quota_types[ctx->type], ctx->limit,
                  &ctx->user_id);

    if (ngx_http_crest_quota_headers(r, ctx) != NGX_OK) {
        return ngx_http_crest_quota_end(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    remaining = ngx_max(ctx->limit - ctx->current, 0);

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&meta, &a);
    crest_buf_init(&details, &a);

    /* meta members, without the braces */
    crest_buf_appends(&meta, "\"usage\":");
    crest_jw_init(&w, &meta);
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "type");
    crest_jw_strn(&w, (const char *) ngx_crest_quota_types[ctx->type].data,
                  ngx_crest_quota_types[ctx->type].len);
    crest_jw_key(&w, "current");
    crest_jw_int(&w, ctx->current);
    crest_jw_key(&w, "limit");
    crest_jw_int(&w, ctx->limit);
    crest_jw_key(&w, "remaining");
    crest_jw_int(&w, remaining);
    crest_jw_key(&w, "cost");
    crest_jw_int(&w, ctx->cost);
    crest_jw_key(&w, "resetsAt");
    crest_jw_str(&w, ctx->period.end_iso);
    crest_jw_obj_end(&w);

    crest_jw_init(&w, &details);
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "type");
    crest_jw_strn(&w, (const char *) ngx_crest_quota_types[ctx->type].data,
                  ngx_crest_quota_types[ctx->type].len);
    crest_jw_obj_end(&w);

    if (crest_buf_failed(&meta)) {
        return ngx_http_crest_quota_end(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    extra.data = (u_char *) meta.data;
    extra.len = meta.len;

    return ngx_http_crest_quota_end(r,
               ngx_crest_send_error_meta(r, NGX_HTTP_FORBIDDEN,
                                         CREST_ERR_USAGE_EXCEEDED,
                                         "the monthly usage limit of your "
                                         "plan is reached", &details,
                                         &extra));
}


static ngx_int_t
ngx_http_crest_quota_failed(ngx_http_request_t *r,
    ngx_http_crest_quota_ctx_t *ctx)
{
    ngx_http_crest_quota_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_quota_module);

    if (qlcf->on_error == NGX_CREST_QUOTA_ALLOW) {
        /* uncounted, or counted in Redis only: the request goes on */
        ctx->step = NGX_CREST_QUOTA_DONE;
        return NGX_DECLINED;
    }

    return ngx_http_crest_quota_end(r,
               ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "usage cannot be checked now, "
                                    "retry shortly", NULL));
}


static ngx_int_t
ngx_http_crest_quota_unauthorized(ngx_http_request_t *r, const char *message)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return ngx_http_crest_quota_end(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer realm=\"crest\"");

    return ngx_http_crest_quota_end(r,
               ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED, message, NULL));
}


/* the phase handler */

/*
 * The context, also after an internal redirect (an error page), which
 * clears module contexts: then it is found through its pool cleanup, as
 * the realip module does, so a request is never charged twice.
 */
static ngx_http_crest_quota_ctx_t *
ngx_http_crest_quota_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_crest_quota_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_quota_module);

    if (ctx) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_crest_quota_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_crest_quota_module);
            return ctx;
        }
    }

    return NULL;
}


static ngx_http_crest_quota_ctx_t *
ngx_http_crest_quota_create_ctx(ngx_http_request_t *r,
    ngx_http_crest_quota_loc_conf_t *qlcf, ngx_crest_identity_t *id)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_crest_quota_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_quota_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->type = qlcf->type;
    ctx->cost = qlcf->cost;
    ctx->step = NGX_CREST_QUOTA_LIMITS;

    /* NUL-terminated: it goes to libpq as a C string */
    ngx_memcpy(ctx->user, id->user_id.data, id->user_id.len);
    ctx->user[id->user_id.len] = '\0';
    ctx->user_id.data = ctx->user;
    ctx->user_id.len = id->user_id.len;

    ngx_crest_quota_period(r, &ctx->period);
    ctx->key_len = ngx_crest_quota_key(ctx->key, &ctx->user_id, ctx->type,
                                       &ctx->period);

    cln->handler = ngx_http_crest_quota_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_crest_quota_module);

    return ctx;
}


static ngx_int_t
ngx_http_crest_quota_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_crest_identity_t             *id;
    ngx_crest_quota_slot_t           *slot;
    ngx_http_crest_quota_ctx_t       *ctx;
    ngx_http_crest_quota_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_quota_module);

    if (qlcf->type == NGX_CONF_UNSET_UINT || r != r->main) {
        return NGX_DECLINED;
    }

    /* a CORS preflight does nothing that costs */
    if (r->method == NGX_HTTP_OPTIONS) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_crest_quota_get_ctx(r);

    if (ctx == NULL) {
        id = ngx_crest_auth_identity(r);

        if (id == NULL) {
            return ngx_http_crest_quota_unauthorized(r, "authentication "
                                                     "required");
        }

        if (id->user_id.len >= sizeof(ctx->user)) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx = ngx_http_crest_quota_create_ctx(r, qlcf, id);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (ctx->pending) {
        return NGX_AGAIN;
    }

    for ( ;; ) {

        switch (ctx->step) {

        case NGX_CREST_QUOTA_LIMITS:
            slot = ngx_http_crest_quota_cached(&ctx->user_id);

            if (slot) {
                ctx->limit = slot->limits[ctx->type];
                ctx->step = NGX_CREST_QUOTA_CHECK;
                continue;
            }

            rc = ngx_http_crest_quota_pg_read(r, ctx);
            break;

        case NGX_CREST_QUOTA_CHECK:
            rc = ngx_http_crest_quota_take(r, ctx);
            break;

        case NGX_CREST_QUOTA_COLD:
            rc = ngx_http_crest_quota_pg_read(r, ctx);
            break;

        case NGX_CREST_QUOTA_PERSIST:
            rc = ngx_http_crest_quota_persist(r, ctx);
            break;

        case NGX_CREST_QUOTA_GRANTED:
            ctx->step = NGX_CREST_QUOTA_DONE;

            if (ngx_http_crest_quota_headers(r, ctx) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_DECLINED;

        case NGX_CREST_QUOTA_DENIED:
            ctx->step = NGX_CREST_QUOTA_DONE;
            return ngx_http_crest_quota_exceeded(r, ctx);

        case NGX_CREST_QUOTA_FAILED:
            return ngx_http_crest_quota_failed(r, ctx);

        case NGX_CREST_QUOTA_NO_USER:
            ctx->step = NGX_CREST_QUOTA_DONE;
            return ngx_http_crest_quota_unauthorized(r, "the account does "
                                                     "not exist");

        default:
            /* NGX_CREST_QUOTA_DONE: charged before an internal redirect */
            return NGX_DECLINED;
        }

        if (rc == NGX_AGAIN) {
            ctx->pending = 1;
            r->read_event_handler = ngx_http_test_reading;
            r->write_event_handler = ngx_http_core_run_phases;
            return NGX_AGAIN;
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* NGX_DECLINED: the step could not start; ctx->step says what next */
    }
}


/* giving units back */

static void
ngx_http_crest_quota_give_back_redis_done(void *data,
    ngx_crest_status_e status, redisReply *reply)
{
    ngx_http_crest_quota_backend(NGX_CREST_QUOTA_REDIS, status,
                                 reply && reply->type == REDIS_REPLY_ERROR
                                 ? reply->str : NULL);
}


static void
ngx_http_crest_quota_give_back_pg_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_quota_backend(NGX_CREST_QUOTA_PG, status,
                                 ngx_crest_pg_error(status, res));
}


/*
 * Fire and forget, with nothing bound to the request, which may be gone by
 * the time the answers come: the callbacks only log, on the cycle's log.
 */
static void
ngx_http_crest_quota_give_back(ngx_http_crest_quota_ctx_t *ctx)
{
    u_char                  cost[NGX_INT_T_LEN + 1];
    size_t                  argvlen[3];
    const char             *argv[3], *values[4];
    ngx_crest_redis_cmd_t  *cmd;
    ngx_crest_pg_query_t   *q;

    if (!ctx->taken) {
        return;
    }

    ctx->taken = 0;

    ngx_sprintf(cost, "%i%Z", ctx->cost);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "crest quota: giving back %i %V of %V", ctx->cost,
                   &ngx_crest_quota_types[ctx->type], &ctx->user_id);

    argv[0] = "1";
    argvlen[0] = 1;
    argv[1] = (const char *) ctx->key;
    argvlen[1] = ctx->key_len;
    argv[2] = (const char *) cost;
    argvlen[2] = ngx_strlen(cost);

    cmd = ngx_crest_redis_script(&ngx_crest_quota_give_back_script, 3, argv,
                                 argvlen, 0,
                                 ngx_http_crest_quota_give_back_redis_done,
                                 NULL, ngx_cycle->log);
    if (cmd == NULL) {
        ngx_http_crest_quota_backend(NGX_CREST_QUOTA_REDIS,
                                     NGX_CREST_UNAVAILABLE, NULL);
    }

    if (!ctx->persisted) {
        return;
    }

    ctx->persisted = 0;

    values[0] = (const char *) ctx->user;
    values[1] = (const char *) ngx_crest_quota_types[ctx->type].data;
    values[2] = ctx->period.start_iso;
    values[3] = (const char *) cost;

    /*
     * An UPDATE, not the upsert with a negative delta: the CHECK (count >= 0)
     * holds for the row an upsert proposes, before it finds the conflict.
     */
    q = ngx_crest_pg_query(
            "UPDATE user_usage SET count = GREATEST(count - $4::int, 0) "
            "WHERE user_id = $1 AND usage_type = $2 AND period_start = $3",
            4, values, NULL, 0, ngx_http_crest_quota_give_back_pg_done, NULL,
            ngx_cycle->log);

    if (q == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "crest quota: cannot give back %i %V to user %V in "
                      "postgresql now", ctx->cost,
                      &ngx_crest_quota_types[ctx->type], &ctx->user_id);
    }
}


/*
 * Runs when the request's pool goes, after the log phase, however the
 * request ended.  r is still readable here, but its pool is gone.
 */
static void
ngx_http_crest_quota_cleanup(void *data)
{
    ngx_http_crest_quota_ctx_t  *ctx = data;

    ngx_uint_t           status;
    ngx_http_request_t  *r;

    if (!ctx->taken) {
        return;
    }

    r = ctx->request;

    /* what the access log says: the original status of an error page */
    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status >= NGX_HTTP_OK && status < NGX_HTTP_BAD_REQUEST) {
        return;
    }

    ngx_http_crest_quota_give_back(ctx);
}


void
ngx_crest_quota_refund(ngx_http_request_t *r)
{
    ngx_http_crest_quota_ctx_t  *ctx;

    ctx = ngx_http_crest_quota_get_ctx(r->main);

    if (ctx) {
        ngx_http_crest_quota_give_back(ctx);
    }
}


static ngx_int_t
ngx_http_crest_quota_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *p;
    ngx_http_crest_quota_ctx_t  *ctx;

    ctx = ngx_http_crest_quota_get_ctx(r->main);

    if (ctx == NULL || !ctx->checked) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ctx->limit == NGX_CREST_QUOTA_UNLIMITED) {
        v->data = (u_char *) "unlimited";
        v->len = sizeof("unlimited") - 1;

    } else {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%i", ngx_max(ctx->limit - ctx->current, 0))
                 - p;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
