/*
 * ngx_http_crest_trending_module: trending videos at the edge.
 *
 *   http {
 *       crest_trending_cache zone=trending:10m valid=60s refresh=60s;
 *       server {
 *           location = /api/trending            { crest_auth on;
 *                                                 crest_trending list; }
 *           location = /api/trending/regions    { crest_auth on;
 *                                                 crest_trending regions; }
 *           location = /api/trending/categories { crest_auth on;
 *                                                 crest_trending categories; }
 *       }
 *   }
 *
 * A page of GET /api/trending comes from, in order: the shared-memory cache
 * (no I/O at all: the hot path), the workers' serving cache in Redis
 * (crest:trending:<platform>:<REGION>:<category|all>, see workers/trending.c),
 * then trending_videos in PostgreSQL.  What Redis or PostgreSQL answer is
 * kept in shared memory for "valid", so every worker process serves it from
 * there; past that, or when the data itself is past its expiry, the next
 * request looks again.  Data past its expiry is served all the same (never
 * an empty page while data exists) and one trending-refresh job per
 * platform chart and "refresh" interval is enqueued: the claim is made in
 * shared memory under the zone's mutex, so a burst on stale data in any
 * number of worker processes enqueues one job, and confirmed with a lock in
 * Redis (SET NX PX) so that several nginx hosts enqueue one between them.
 *
 * An entry holds the items as one buffer of compact JSON texts joined by
 * commas plus their offsets, so a page is a slice of it: serving never
 * parses or re-encodes JSON.
 */

#include <ngx_md5.h>

#include "ngx_crest_pg.h"
#include "ngx_crest_redis.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_jobs.h"
#include "crest_json.h"


#define NGX_CREST_TRENDING_PLATFORMS    4
#define NGX_CREST_TRENDING_ALL          NGX_CREST_TRENDING_PLATFORMS
#define NGX_CREST_TRENDING_LIMIT_MAX    50
#define NGX_CREST_TRENDING_LIMIT_DFLT   10
#define NGX_CREST_TRENDING_PAGE_MAX     10000
/* the most items kept per chart: a page beyond them is empty */
#define NGX_CREST_TRENDING_ITEMS_MAX    1000
/* entries evicted (oldest first) to make room for one */
#define NGX_CREST_TRENDING_EVICT        16
#define NGX_CREST_TRENDING_KEY_MAX      100

/* the order of a merged chart, the same from Redis and from PostgreSQL */
#define NGX_CREST_TRENDING_ORDER_ALL                                         \
    "view_count DESC NULLS LAST, rank, platform, platform_id"
#define NGX_CREST_TRENDING_ORDER_ONE    "rank, platform_id"


typedef enum {
    NGX_CREST_TRENDING_LIST = 1,
    NGX_CREST_TRENDING_REGIONS,
    NGX_CREST_TRENDING_CATEGORIES
} ngx_http_crest_trending_what_e;


static ngx_str_t  ngx_http_crest_trending_platforms[] = {
    ngx_string("youtube"), ngx_string("tiktok"), ngx_string("x"),
    ngx_string("reddit"), ngx_string("all")
};

/* the worker's default subreddit: Reddit's "whole chart" in a merge */
static ngx_str_t  ngx_http_crest_trending_reddit_default =
    ngx_string("videos");


typedef struct {
    ngx_str_t                  code;
    ngx_str_t                  name;
} ngx_http_crest_trending_region_t;


typedef struct {
    ngx_uint_t                 platform;
    ngx_str_t                  id;
    ngx_str_t                  name;
} ngx_http_crest_trending_category_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;       /* least recently used last */
} ngx_http_crest_trending_shctx_t;


/* the parts of a chart: one platform, or the four of a merge */
typedef struct {
    ngx_uint_t                 platform;
    ngx_str_t                  category;    /* '' for the whole chart */
} ngx_http_crest_trending_member_t;


typedef struct {
    ngx_str_node_t             sn;          /* sn.str: the key, in data */
    ngx_queue_t                queue;
    int64_t                    stored;      /* Unix ms */
    int64_t                    expiry;      /* 0: no data */
    int64_t                    member_expiry[NGX_CREST_TRENDING_PLATFORMS];
    int64_t                    refresh[NGX_CREST_TRENDING_PLATFORMS];
    u_char                     etag[16];    /* hex: half an MD5 */
    uint32_t                   nitems;
    uint32_t                   text_at;     /* the items' text: data + this */
    unsigned                   from_pg:1;
    /* uint32_t offsets[nitems + 1], the key, the items' text */
    u_char                     data[1];
} ngx_http_crest_trending_node_t;


typedef struct {
    ngx_shm_zone_t            *shm_zone;
    ngx_http_crest_trending_shctx_t  *sh;
    ngx_slab_pool_t           *shpool;
    ngx_msec_t                 valid;
    ngx_msec_t                 refresh;
    ngx_msec_t                 ttl[NGX_CREST_TRENDING_PLATFORMS];
    ngx_str_t                  queue;
    ngx_array_t               *regions;     /* ..._region_t */
    ngx_array_t               *categories;  /* ..._category_t */
} ngx_http_crest_trending_main_conf_t;


typedef struct {
    ngx_uint_t                 what;
} ngx_http_crest_trending_loc_conf_t;


/* a chart being answered: from shared memory, Redis or PostgreSQL */
typedef struct {
    ngx_uint_t                 nitems;
    uint32_t                  *off;
    u_char                    *text;
    size_t                     len;
    int64_t                    expiry;
    int64_t                    member_expiry[NGX_CREST_TRENDING_PLATFORMS];
    u_char                     etag[16];
} ngx_http_crest_trending_chart_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_http_crest_trending_main_conf_t  *tmcf;
    ngx_uint_t                 platform;
    u_char                     region[3];
    ngx_str_t                  category;
    ngx_str_t                  key;
    ngx_uint_t                 nmembers;
    ngx_http_crest_trending_member_t  members[NGX_CREST_TRENDING_PLATFORMS];
    ngx_uint_t                 page;
    ngx_uint_t                 limit;

    /* the answer */
    ngx_str_t                  videos;
    ngx_uint_t                 total;
    int64_t                    expiry;
    u_char                     etag[16];
    unsigned                   found:1;
    unsigned                   cached:1;
    unsigned                   have_old:1;  /* an entry past "valid" */

    ngx_uint_t                 refresh;     /* members to refresh, bits */
    ngx_uint_t                 locking;     /* the member whose lock is
                                               being taken */
} ngx_http_crest_trending_ctx_t;


typedef struct {
    json_t                    *item;
    json_int_t                 views;
    json_int_t                 rank;
    ngx_uint_t                 has_views;
    const char                *platform;
    const char                *id;
} ngx_http_crest_trending_sort_t;


static void *ngx_http_crest_trending_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_trending_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_crest_trending_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_trending_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_crest_trending(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_trending_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_trending_ttl(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_trending_region(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_crest_trending_category(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_crest_trending_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_trending_redis(
    ngx_http_crest_trending_ctx_t *ctx);
static void ngx_http_crest_trending_redis_done(void *data,
    ngx_crest_status_e status, redisReply *reply);
static ngx_int_t ngx_http_crest_trending_pg(ngx_http_crest_trending_ctx_t *ctx);
static void ngx_http_crest_trending_pg_done(void *data,
    ngx_crest_status_e status, PGresult *res);
static ngx_int_t ngx_http_crest_trending_refresh(
    ngx_http_crest_trending_ctx_t *ctx);
static ngx_int_t ngx_http_crest_trending_send(
    ngx_http_crest_trending_ctx_t *ctx);


static ngx_command_t  ngx_http_crest_trending_commands[] = {

    { ngx_string("crest_trending"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_trending,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_trending_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_crest_trending_cache,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_trending_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_crest_trending_ttl,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_trending_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_trending_main_conf_t, queue),
      NULL },

    { ngx_string("crest_trending_region"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_crest_trending_region,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_trending_category"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_http_crest_trending_category,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_trending_module_ctx = {
    NULL,                                      /* preconfiguration */
    NULL,                                      /* postconfiguration */

    ngx_http_crest_trending_create_main_conf,  /* create main configuration */
    ngx_http_crest_trending_init_main_conf,    /* init main configuration */

    NULL,                                      /* create server configuration */
    NULL,                                      /* merge server configuration */

    ngx_http_crest_trending_create_loc_conf,   /* create location configuration */
    ngx_http_crest_trending_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_crest_trending_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_trending_module_ctx,       /* module context */
    ngx_http_crest_trending_commands,          /* module directives */
    NGX_HTTP_MODULE,                           /* module type */
    NULL,                                      /* init master */
    NULL,                                      /* init module */
    NULL,                                      /* init process */
    NULL,                                      /* init thread */
    NULL,                                      /* exit thread */
    NULL,                                      /* exit process */
    NULL,                                      /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the defaults of /api/trending/regions and /categories */

static const char  *ngx_http_crest_trending_default_regions[][2] = {
    { "US", "United States" }, { "GB", "United Kingdom" },
    { "CA", "Canada" }, { "AU", "Australia" }, { "DE", "Germany" },
    { "FR", "France" }, { "ES", "Spain" }, { "IT", "Italy" },
    { "BR", "Brazil" }, { "MX", "Mexico" }, { "IN", "India" },
    { "JP", "Japan" }, { "KR", "South Korea" }
};

/* YouTube's assignable videoCategoryIds (videoCategories.list, US) */
static const char  *ngx_http_crest_trending_default_categories[][3] = {
    { "youtube", "1", "Film & Animation" },
    { "youtube", "2", "Autos & Vehicles" },
    { "youtube", "10", "Music" },
    { "youtube", "15", "Pets & Animals" },
    { "youtube", "17", "Sports" },
    { "youtube", "20", "Gaming" },
    { "youtube", "22", "People & Blogs" },
    { "youtube", "23", "Comedy" },
    { "youtube", "24", "Entertainment" },
    { "youtube", "25", "News & Politics" },
    { "youtube", "26", "Howto & Style" },
    { "youtube", "27", "Education" },
    { "youtube", "28", "Science & Technology" },
    { "reddit", "videos", "r/videos" },
    { "reddit", "funny", "r/funny" },
    { "reddit", "gaming", "r/gaming" },
    { "reddit", "music", "r/music" }
};


/* ---- configuration ------------------------------------------------------ */

static void *
ngx_http_crest_trending_create_main_conf(ngx_conf_t *cf)
{
    ngx_uint_t                            i;
    ngx_http_crest_trending_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_trending_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     tmcf->shm_zone = NULL;
     *     tmcf->queue = { 0, NULL };
     *     tmcf->regions = NULL;
     *     tmcf->categories = NULL;
     */

    tmcf->valid = NGX_CONF_UNSET_MSEC;
    tmcf->refresh = NGX_CONF_UNSET_MSEC;

    for (i = 0; i < NGX_CREST_TRENDING_PLATFORMS; i++) {
        tmcf->ttl[i] = NGX_CONF_UNSET_MSEC;
    }

    return tmcf;
}


static char *
ngx_http_crest_trending_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_trending_main_conf_t  *tmcf = conf;

    ngx_uint_t                           i, j;
    ngx_http_crest_trending_region_t    *rg;
    ngx_http_crest_trending_category_t  *ct;

    /* the worker's CREST_TRENDING_TTL_* defaults */
    static ngx_msec_t  ttl[] = { 1800000, 900000, 900000, 900000 };

    ngx_conf_init_msec_value(tmcf->valid, 60000);
    ngx_conf_init_msec_value(tmcf->refresh, 60000);

    for (i = 0; i < NGX_CREST_TRENDING_PLATFORMS; i++) {
        ngx_conf_init_msec_value(tmcf->ttl[i], ttl[i]);
    }

    if (tmcf->queue.data == NULL) {
        ngx_str_set(&tmcf->queue, "trending-refresh");
    }

    if (tmcf->regions == NULL) {
        tmcf->regions = ngx_array_create(cf->pool, 16,
                                    sizeof(ngx_http_crest_trending_region_t));
        if (tmcf->regions == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < sizeof(ngx_http_crest_trending_default_regions)
                        / sizeof(ngx_http_crest_trending_default_regions[0]);
             i++)
        {
            rg = ngx_array_push(tmcf->regions);
            if (rg == NULL) {
                return NGX_CONF_ERROR;
            }

            rg->code.data = (u_char *)
                            ngx_http_crest_trending_default_regions[i][0];
            rg->code.len = ngx_strlen(rg->code.data);
            rg->name.data = (u_char *)
                            ngx_http_crest_trending_default_regions[i][1];
            rg->name.len = ngx_strlen(rg->name.data);
        }
    }

    if (tmcf->categories == NULL) {
        tmcf->categories = ngx_array_create(cf->pool, 20,
                                  sizeof(ngx_http_crest_trending_category_t));
        if (tmcf->categories == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < sizeof(ngx_http_crest_trending_default_categories)
                     / sizeof(ngx_http_crest_trending_default_categories[0]);
             i++)
        {
            ct = ngx_array_push(tmcf->categories);
            if (ct == NULL) {
                return NGX_CONF_ERROR;
            }

            for (j = 0; j < NGX_CREST_TRENDING_PLATFORMS; j++) {
                if (ngx_strcmp(ngx_http_crest_trending_platforms[j].data,
                         ngx_http_crest_trending_default_categories[i][0])
                    == 0)
                {
                    ct->platform = j;
                }
            }

            ct->id.data = (u_char *)
                          ngx_http_crest_trending_default_categories[i][1];
            ct->id.len = ngx_strlen(ct->id.data);
            ct->name.data = (u_char *)
                            ngx_http_crest_trending_default_categories[i][2];
            ct->name.len = ngx_strlen(ct->name.data);
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_crest_trending_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_trending_loc_conf_t  *tlcf;

    tlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_trending_loc_conf_t));
    if (tlcf == NULL) {
        return NULL;
    }

    tlcf->what = NGX_CONF_UNSET_UINT;

    return tlcf;
}


static char *
ngx_http_crest_trending_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_crest_trending_loc_conf_t  *prev = parent;
    ngx_http_crest_trending_loc_conf_t  *conf = child;

    ngx_conf_merge_uint_value(conf->what, prev->what, 0);

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_trending(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_trending_loc_conf_t  *tlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (tlcf->what != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "list") == 0) {
        tlcf->what = NGX_CREST_TRENDING_LIST;

    } else if (ngx_strcmp(value[1].data, "regions") == 0) {
        tlcf->what = NGX_CREST_TRENDING_REGIONS;

    } else if (ngx_strcmp(value[1].data, "categories") == 0) {
        tlcf->what = NGX_CREST_TRENDING_CATEGORIES;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": list, regions or categories",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_trending_handler;

    return NGX_CONF_OK;
}


static void
ngx_http_crest_trending_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_str_rbtree_insert_value(temp, node, sentinel);
}


static ngx_int_t
ngx_http_crest_trending_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_crest_trending_main_conf_t  *otmcf = data;

    size_t                                len;
    ngx_http_crest_trending_main_conf_t  *tmcf;

    tmcf = shm_zone->data;

    if (otmcf) {
        tmcf->sh = otmcf->sh;
        tmcf->shpool = otmcf->shpool;
        return NGX_OK;
    }

    tmcf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        tmcf->sh = tmcf->shpool->data;
        return NGX_OK;
    }

    tmcf->sh = ngx_slab_alloc(tmcf->shpool,
                              sizeof(ngx_http_crest_trending_shctx_t));
    if (tmcf->sh == NULL) {
        return NGX_ERROR;
    }

    tmcf->shpool->data = tmcf->sh;

    ngx_rbtree_init(&tmcf->sh->rbtree, &tmcf->sh->sentinel,
                    ngx_http_crest_trending_rbtree_insert);
    ngx_queue_init(&tmcf->sh->queue);

    len = sizeof(" in crest_trending_cache \"\"") + shm_zone->shm.name.len;

    tmcf->shpool->log_ctx = ngx_slab_alloc(tmcf->shpool, len);
    if (tmcf->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(tmcf->shpool->log_ctx, " in crest_trending_cache \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts the oldest entries: not worth a log line each */
    tmcf->shpool->log_nomem = 0;

    return NGX_OK;
}


static char *
ngx_http_crest_trending_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_trending_main_conf_t  *tmcf = conf;

    u_char          *p;
    ssize_t          size;
    ngx_str_t       *value, name, s;
    ngx_uint_t       i;
    ngx_msec_t      *t;

    if (tmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;
    size = 0;
    name.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                goto invalid;
            }

            name.len = p - name.data;
            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);
            if (name.len == 0 || size == NGX_ERROR
                || size < (ssize_t) (8 * ngx_pagesize))
            {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "valid=", 6) == 0) {
            t = &tmcf->valid;
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

        } else if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            t = &tmcf->refresh;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else {
            goto invalid;
        }

        *t = ngx_parse_time(&s, 0);
        if (*t == (ngx_msec_t) NGX_ERROR || *t == 0) {
            goto invalid;
        }
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs zone=",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    tmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_crest_trending_module);
    if (tmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (tmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    tmcf->shm_zone->init = ngx_http_crest_trending_init_zone;
    tmcf->shm_zone->data = tmcf;

    /* refreshes are enqueued only with the cache (its claims); the queue
     * is final (crest_trending_queue or its default) once all is parsed */
    if (ngx_crest_jobs_need_queue(cf, &tmcf->queue, "crest_trending_cache")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_crest_trending_platform(u_char *s, size_t len, ngx_uint_t with_all)
{
    ngx_uint_t  i, n;

    n = NGX_CREST_TRENDING_PLATFORMS + (with_all ? 1 : 0);

    for (i = 0; i < n; i++) {
        if (ngx_http_crest_trending_platforms[i].len == len
            && ngx_strncmp(ngx_http_crest_trending_platforms[i].data, s, len)
               == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


static char *
ngx_http_crest_trending_ttl(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_trending_main_conf_t  *tmcf = conf;

    ngx_int_t    p;
    ngx_str_t   *value;
    ngx_msec_t   t;

    value = cf->args->elts;

    p = ngx_http_crest_trending_platform(value[1].data, value[1].len, 0);
    if (p == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown platform \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    t = ngx_parse_time(&value[2], 0);
    if (t == (ngx_msec_t) NGX_ERROR || t == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    tmcf->ttl[p] = t;

    return NGX_CONF_OK;
}


static ngx_uint_t
ngx_http_crest_trending_is_word(u_char *s, size_t len, size_t max,
    const char *extra)
{
    size_t  i;

    if (len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9')
              || (extra && ngx_strchr(extra, s[i]) != NULL)))
        {
            return 0;
        }
    }

    return 1;
}


/* the worker's rules for a category (tr_parse in workers/trending.c) */
static ngx_uint_t
ngx_http_crest_trending_category_ok(ngx_uint_t platform, u_char *s,
    size_t len)
{
    size_t  i;

    switch (platform) {

    case 0: /* youtube: a videoCategoryId */
        for (i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return 0;
            }
        }
        return len <= 10;

    case 3: /* reddit: a subreddit */
        return len > 0 && ngx_http_crest_trending_is_word(s, len, 21, "_");

    default:
        return ngx_http_crest_trending_is_word(s, len, 64, "_-");
    }
}


static char *
ngx_http_crest_trending_region(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_trending_main_conf_t  *tmcf = conf;

    ngx_str_t                         *value;
    ngx_http_crest_trending_region_t  *rg;

    value = cf->args->elts;

    if (value[1].len != 2
        || !ngx_http_crest_trending_is_word(value[1].data, 2, 2, NULL)
        || value[2].len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a region is a two-letter code and a name");
        return NGX_CONF_ERROR;
    }

    if (tmcf->regions == NULL) {
        tmcf->regions = ngx_array_create(cf->pool, 16,
                                    sizeof(ngx_http_crest_trending_region_t));
        if (tmcf->regions == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rg = ngx_array_push(tmcf->regions);
    if (rg == NULL) {
        return NGX_CONF_ERROR;
    }

    value[1].data[0] = ngx_toupper(value[1].data[0]);
    value[1].data[1] = ngx_toupper(value[1].data[1]);

    rg->code = value[1];
    rg->name = value[2];

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_trending_category(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_crest_trending_main_conf_t  *tmcf = conf;

    ngx_int_t                            p;
    ngx_str_t                           *value;
    ngx_http_crest_trending_category_t  *ct;

    value = cf->args->elts;

    p = ngx_http_crest_trending_platform(value[1].data, value[1].len, 0);
    if (p == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown platform \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0
        || !ngx_http_crest_trending_category_ok(p, value[2].data,
                                                value[2].len)
        || value[3].len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid category \"%V\" for %V", &value[2],
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (tmcf->categories == NULL) {
        tmcf->categories = ngx_array_create(cf->pool, 20,
                                  sizeof(ngx_http_crest_trending_category_t));
        if (tmcf->categories == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ct = ngx_array_push(tmcf->categories);
    if (ct == NULL) {
        return NGX_CONF_ERROR;
    }

    ct->platform = p;
    ct->id = value[2];
    ct->name = value[3];

    return NGX_CONF_OK;
}


/* ---- helpers ------------------------------------------------------------ */

static int64_t
ngx_http_crest_trending_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


/* 1..max, or NGX_ERROR */
static ngx_int_t
ngx_http_crest_trending_number(ngx_str_t *v, ngx_uint_t max)
{
    ngx_int_t  n;

    n = (v->len && v->len <= 6) ? ngx_atoi(v->data, v->len) : NGX_ERROR;

    if (n == NGX_ERROR || n < 1 || (ngx_uint_t) n > max) {
        return NGX_ERROR;
    }

    return n;
}


/* "2026-11-22T05:18:00Z" (the worker's fetchedAt) in Unix ms, or -1 */
static int64_t
ngx_http_crest_trending_parse_time(const char *s)
{
    int        y, mo, d, h, mi, sec;
    struct tm  tm;

    if (s == NULL
        || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec)
           != 6)
    {
        return -1;
    }

    ngx_memzero(&tm, sizeof(struct tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;

    return (int64_t) timegm(&tm) * 1000;
}


/* the chart's ETag: half the MD5 of its items and expiry */
static void
ngx_http_crest_trending_etag(ngx_http_crest_trending_chart_t *c)
{
    u_char     digest[16];
    ngx_md5_t  md5;

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, c->text, c->len);
    ngx_md5_update(&md5, &c->expiry, sizeof(int64_t));
    ngx_md5_final(digest, &md5);

    ngx_hex_dump(c->etag, digest, 8);
}


/* the requested page of a chart, copied out of it into r's pool */
static ngx_int_t
ngx_http_crest_trending_page(ngx_http_crest_trending_ctx_t *ctx,
    ngx_uint_t nitems, uint32_t *off, u_char *text, int64_t expiry,
    u_char *etag)
{
    ngx_uint_t  start, end;

    ctx->total = nitems;
    ctx->expiry = expiry;
    ctx->found = 1;
    ngx_memcpy(ctx->etag, etag, 16);
    ngx_str_null(&ctx->videos);

    start = (ctx->page - 1) * ctx->limit;

    if (start >= nitems) {
        return NGX_OK;
    }

    end = ngx_min(start + ctx->limit, nitems);

    ctx->videos.len = off[end] - 1 - off[start];
    ctx->videos.data = ngx_pnalloc(ctx->request->pool, ctx->videos.len);
    if (ctx->videos.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->videos.data, text + off[start], ctx->videos.len);

    return NGX_OK;
}


/* ---- the shared-memory cache -------------------------------------------- */

static ngx_http_crest_trending_node_t *
ngx_http_crest_trending_lookup(ngx_http_crest_trending_main_conf_t *tmcf,
    ngx_str_t *key)
{
    uint32_t  hash;

    hash = ngx_crc32_short(key->data, key->len);

    return (ngx_http_crest_trending_node_t *)
           ngx_str_rbtree_lookup(&tmcf->sh->rbtree, key, hash);
}


static uint32_t *
ngx_http_crest_trending_node_off(ngx_http_crest_trending_node_t *node)
{
    return (uint32_t *) ngx_align_ptr(node->data, sizeof(uint32_t));
}


/* Claims the refresh of each stale member whose last claim is older than
 * the interval; the zone is locked. */
static void
ngx_http_crest_trending_claim(ngx_http_crest_trending_ctx_t *ctx,
    ngx_http_crest_trending_node_t *node, int64_t now)
{
    ngx_uint_t  i;

    for (i = 0; i < ctx->nmembers; i++) {
        if (node->member_expiry[i] > now) {
            continue;
        }

        if (node->refresh[i] != 0
            && now - node->refresh[i] < (int64_t) ctx->tmcf->refresh)
        {
            continue;
        }

        node->refresh[i] = now;
        ctx->refresh |= (ngx_uint_t) 1 << i;
    }
}


/*
 * Serves the page from shared memory: a fresh entry (stored within
 * "valid"), or with any_age an entry of any age.  NGX_DECLINED when there
 * is none.
 */
static ngx_int_t
ngx_http_crest_trending_from_shm(ngx_http_crest_trending_ctx_t *ctx,
    ngx_uint_t any_age)
{
    int64_t                               now;
    ngx_int_t                             rc;
    ngx_http_crest_trending_node_t       *node;
    ngx_http_crest_trending_main_conf_t  *tmcf;

    tmcf = ctx->tmcf;
    now = ngx_http_crest_trending_now();
    rc = NGX_DECLINED;

    if (tmcf->shm_zone == NULL) {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&tmcf->shpool->mutex);

    node = ngx_http_crest_trending_lookup(tmcf, &ctx->key);

    /* an entry without items only holds refresh claims: never served, so
     * that data a refresh brings is seen at once */
    if (node == NULL || node->nitems == 0) {
        goto done;
    }

    if (!any_age && now - node->stored >= (int64_t) tmcf->valid) {
        ctx->have_old = 1;
        goto done;
    }

    ngx_queue_remove(&node->queue);
    ngx_queue_insert_head(&tmcf->sh->queue, &node->queue);

    rc = ngx_http_crest_trending_page(ctx, node->nitems,
                                      ngx_http_crest_trending_node_off(node),
                                      node->data + node->text_at, node->expiry,
                                      node->etag);
    if (rc == NGX_OK) {
        ctx->cached = 1;
        ngx_http_crest_trending_claim(ctx, node, now);
    }

done:

    ngx_shmtx_unlock(&tmcf->shpool->mutex);

    return rc;
}


/*
 * Keeps a chart read from Redis or PostgreSQL (an empty one too, for its
 * refresh claims), and claims the refreshes it needs.  The items' text
 * follows the offsets and the key in the node; the offsets come first to
 * stay aligned.
 */
static void
ngx_http_crest_trending_store(ngx_http_crest_trending_ctx_t *ctx,
    ngx_http_crest_trending_chart_t *c, ngx_uint_t from_pg)
{
    size_t                                size, offlen;
    int64_t                               now, refresh[4];
    u_char                               *p;
    uint32_t                              hash;
    ngx_uint_t                            i;
    ngx_queue_t                          *q;
    ngx_http_crest_trending_node_t       *node, *old;
    ngx_http_crest_trending_main_conf_t  *tmcf;

    tmcf = ctx->tmcf;
    now = ngx_http_crest_trending_now();

    /* the refresh claims live in the zone: without one, a burst on stale
     * data would enqueue a job per request, so none is */
    if (tmcf->shm_zone == NULL) {
        return;
    }

    offlen = (c->nitems + 1) * sizeof(uint32_t);
    size = offsetof(ngx_http_crest_trending_node_t, data) + sizeof(uint32_t)
           + offlen + ctx->key.len + c->len;

    ngx_memzero(refresh, sizeof(refresh));

    ngx_shmtx_lock(&tmcf->shpool->mutex);

    old = ngx_http_crest_trending_lookup(tmcf, &ctx->key);

    if (old) {
        /* the claims outlive the data they were made for */
        ngx_memcpy(refresh, old->refresh, sizeof(refresh));
        ngx_queue_remove(&old->queue);
        ngx_rbtree_delete(&tmcf->sh->rbtree, &old->sn.node);
        ngx_slab_free_locked(tmcf->shpool, old);
    }

    node = ngx_slab_alloc_locked(tmcf->shpool, size);

    for (i = 0; node == NULL && i < NGX_CREST_TRENDING_EVICT; i++) {
        if (ngx_queue_empty(&tmcf->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&tmcf->sh->queue);
        old = ngx_queue_data(q, ngx_http_crest_trending_node_t, queue);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&tmcf->sh->rbtree, &old->sn.node);
        ngx_slab_free_locked(tmcf->shpool, old);

        node = ngx_slab_alloc_locked(tmcf->shpool, size);
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&tmcf->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "crest trending: no room for \"%V\" (%uz bytes) in "
                      "crest_trending_cache \"%V\": no refresh claimed",
                      &ctx->key, size, &tmcf->shm_zone->shm.name);
        return;
    }

    node->stored = now;
    node->expiry = c->expiry;
    ngx_memcpy(node->member_expiry, c->member_expiry,
               sizeof(node->member_expiry));
    ngx_memcpy(node->refresh, refresh, sizeof(refresh));
    ngx_memcpy(node->etag, c->etag, 16);
    node->nitems = (uint32_t) c->nitems;
    node->from_pg = from_pg;

    p = (u_char *) ngx_http_crest_trending_node_off(node);
    p = ngx_cpymem(p, c->off, offlen);

    node->sn.str.data = p;
    node->sn.str.len = ctx->key.len;
    p = ngx_cpymem(p, ctx->key.data, ctx->key.len);

    node->text_at = (uint32_t) (p - node->data);
    ngx_memcpy(p, c->text, c->len);

    hash = ngx_crc32_short(ctx->key.data, ctx->key.len);
    node->sn.node.key = hash;

    ngx_rbtree_insert(&tmcf->sh->rbtree, &node->sn.node);
    ngx_queue_insert_head(&tmcf->sh->queue, &node->queue);

    ngx_http_crest_trending_claim(ctx, node, now);

    ngx_shmtx_unlock(&tmcf->shpool->mutex);
}


/* ---- building a chart from JSON texts ----------------------------------- */

/* Joins item texts into a chart: texts[i] of lens[i] bytes. */
static ngx_int_t
ngx_http_crest_trending_chart(ngx_pool_t *pool,
    ngx_http_crest_trending_chart_t *c, ngx_uint_t n, char **texts,
    size_t *lens)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    len = 0;
    for (i = 0; i < n; i++) {
        len += lens[i] + 1;
    }

    c->nitems = n;
    c->off = ngx_palloc(pool, (n + 1) * sizeof(uint32_t));
    c->text = ngx_pnalloc(pool, len ? len : 1);

    if (c->off == NULL || c->text == NULL || len > 0xffffff00) {
        return NGX_ERROR;
    }

    p = c->text;

    for (i = 0; i < n; i++) {
        c->off[i] = (uint32_t) (p - c->text);
        p = ngx_cpymem(p, texts[i], lens[i]);
        *p++ = ',';
    }

    c->off[n] = (uint32_t) (p - c->text);
    /* the text does not end in a comma */
    c->len = n ? len - 1 : 0;

    ngx_http_crest_trending_etag(c);

    return NGX_OK;
}


static int
ngx_http_crest_trending_cmp(const void *one, const void *two)
{
    const ngx_http_crest_trending_sort_t  *a = one, *b = two;

    int  rc;

    if (a->has_views != b->has_views) {
        return a->has_views ? -1 : 1;
    }

    if (a->views != b->views) {
        return a->views > b->views ? -1 : 1;
    }

    if (a->rank != b->rank) {
        return a->rank < b->rank ? -1 : 1;
    }

    rc = ngx_strcmp(a->platform, b->platform);
    if (rc) {
        return rc;
    }

    return ngx_strcmp(a->id, b->id);
}


/* ---- the list ----------------------------------------------------------- */

static ngx_int_t
ngx_http_crest_trending_list(ngx_http_request_t *r)
{
    u_char                               *p;
    ngx_int_t                             rc, n;
    ngx_str_t                             v;
    ngx_uint_t                            i;
    ngx_http_crest_trending_ctx_t        *ctx;
    ngx_http_crest_trending_member_t     *m;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_trending_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->tmcf = ngx_http_get_module_main_conf(r,
                                              ngx_http_crest_trending_module);
    ngx_http_set_ctx(r, ctx, ngx_http_crest_trending_module);

    /* unknown arguments are ignored: they do not split the cache either */

    ctx->platform = NGX_CREST_TRENDING_ALL;
    rc = ngx_crest_arg(r, "platform", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        n = ngx_http_crest_trending_platform(v.data, v.len, 1);
        if (n == NGX_ERROR) {
            return ngx_crest_send_invalid(r, "platform",
                             "platform must be youtube, tiktok, reddit, x "
                             "or all");
        }
        ctx->platform = n;
    }

    ngx_memcpy(ctx->region, "US", 3);
    rc = ngx_crest_arg(r, "region", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (v.len != 2 || !ngx_http_crest_trending_is_word(v.data, 2, 2, NULL)
            || (v.data[0] >= '0' && v.data[0] <= '9')
            || (v.data[1] >= '0' && v.data[1] <= '9'))
        {
            return ngx_crest_send_invalid(r, "region",
                             "region must be a two-letter country code");
        }
        ctx->region[0] = ngx_toupper(v.data[0]);
        ctx->region[1] = ngx_toupper(v.data[1]);
    }

    ngx_str_null(&ctx->category);
    rc = ngx_crest_arg(r, "category", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK && v.len) {
        if (ctx->platform == NGX_CREST_TRENDING_ALL) {
            return ngx_crest_send_invalid(r, "category",
                             "a category needs one platform: categories "
                             "differ between platforms");
        }

        if (!ngx_http_crest_trending_category_ok(ctx->platform, v.data,
                                                 v.len))
        {
            return ngx_crest_send_invalid(r, "category",
                             ctx->platform == 0
                             ? "category: a YouTube videoCategoryId (digits)"
                             : ctx->platform == 3
                             ? "category: a subreddit name (letters, digits, "
                               "_; at most 21)"
                             : "category: letters, digits, _ and -, at most "
                               "64");
        }

        ctx->category = v;
    }

    ctx->page = 1;
    rc = ngx_crest_arg(r, "page", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        n = ngx_http_crest_trending_number(&v, NGX_CREST_TRENDING_PAGE_MAX);
        if (n == NGX_ERROR) {
            return ngx_crest_send_invalid(r, "page",
                             "page must be an integer from 1 to 10000");
        }
        ctx->page = n;
    }

    ctx->limit = NGX_CREST_TRENDING_LIMIT_DFLT;
    rc = ngx_crest_arg(r, "limit", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        n = ngx_http_crest_trending_number(&v, NGX_CREST_TRENDING_LIMIT_MAX);
        if (n == NGX_ERROR) {
            return ngx_crest_send_invalid(r, "limit",
                             "limit must be an integer from 1 to 50");
        }
        ctx->limit = n;
    }

    /* the members, and the key: the worker's cache key without its prefix */

    if (ctx->platform == NGX_CREST_TRENDING_ALL) {
        ctx->nmembers = NGX_CREST_TRENDING_PLATFORMS;

        for (i = 0; i < NGX_CREST_TRENDING_PLATFORMS; i++) {
            m = &ctx->members[i];
            m->platform = i;
            ngx_str_null(&m->category);
            if (i == 3) {
                m->category = ngx_http_crest_trending_reddit_default;
            }
        }

    } else {
        ctx->nmembers = 1;
        ctx->members[0].platform = ctx->platform;
        ctx->members[0].category = ctx->category;

        if (ctx->platform == 3 && ctx->category.len == 0) {
            ctx->members[0].category = ngx_http_crest_trending_reddit_default;
        }
    }

    ctx->key.data = ngx_pnalloc(r->pool, NGX_CREST_TRENDING_KEY_MAX);
    if (ctx->key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    m = &ctx->members[0];
    p = ngx_snprintf(ctx->key.data, NGX_CREST_TRENDING_KEY_MAX, "%V:%s:",
                     &ngx_http_crest_trending_platforms[ctx->platform],
                     ctx->region);

    if (ctx->platform != NGX_CREST_TRENDING_ALL && m->category.len) {
        p = ngx_cpymem(p, m->category.data, m->category.len);
    } else {
        p = ngx_cpymem(p, "all", 3);
    }

    ctx->key.len = p - ctx->key.data;

    rc = ngx_http_crest_trending_from_shm(ctx, 0);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_crest_trending_refresh(ctx);

    } else {
        rc = ngx_http_crest_trending_redis(ctx);
    }

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* ---- Redis -------------------------------------------------------------- */

static ngx_int_t
ngx_http_crest_trending_redis(ngx_http_crest_trending_ctx_t *ctx)
{
    u_char                *p;
    size_t                 argvlen[1 + NGX_CREST_TRENDING_PLATFORMS];
    ngx_uint_t             i;
    const char            *argv[1 + NGX_CREST_TRENDING_PLATFORMS];
    ngx_http_request_t    *r;
    ngx_crest_redis_cmd_t *cmd;
    ngx_http_crest_trending_member_t  *m;

    r = ctx->request;

    argv[0] = "MGET";
    argvlen[0] = 4;

    for (i = 0; i < ctx->nmembers; i++) {
        m = &ctx->members[i];

        p = ngx_pnalloc(r->pool, NGX_CREST_TRENDING_KEY_MAX + 16);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[1 + i] = (const char *) p;

        p = ngx_snprintf(p, NGX_CREST_TRENDING_KEY_MAX + 16,
                         "crest:trending:%V:%s:",
                         &ngx_http_crest_trending_platforms[m->platform],
                         ctx->region);
        if (m->category.len) {
            p = ngx_cpymem(p, m->category.data, m->category.len);
        } else {
            p = ngx_cpymem(p, "all", 3);
        }

        argvlen[1 + i] = p - (u_char *) argv[1 + i];
    }

    cmd = ngx_crest_redis_command(1 + ctx->nmembers, argv, argvlen, 0,
                                  ngx_http_crest_trending_redis_done, ctx,
                                  r->connection->log);

    if (cmd == NULL) {
        return ngx_http_crest_trending_pg(ctx);
    }

    /* a failed bind has cancelled the command */
    if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


/*
 * The chart from the workers' serving cache: NGX_OK, or NGX_DECLINED when
 * a member is missing or not as the worker writes it.
 */
static ngx_int_t
ngx_http_crest_trending_from_redis(ngx_http_crest_trending_ctx_t *ctx,
    redisReply *reply, ngx_http_crest_trending_chart_t *c)
{
    char                            **texts;
    size_t                           *lens, n, k;
    json_t                           *doc[NGX_CREST_TRENDING_PLATFORMS];
    json_t                           *items, *it, *v;
    int64_t                           fetched, ttl, expiry;
    ngx_int_t                         rc;
    ngx_uint_t                        i, total;
    redisReply                       *e;
    ngx_http_crest_trending_sort_t   *sort;

    ngx_memzero(doc, sizeof(doc));
    ngx_memzero(c, sizeof(ngx_http_crest_trending_chart_t));

    rc = NGX_DECLINED;
    texts = NULL;
    sort = NULL;
    total = 0;
    n = 0;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != ctx->nmembers)
    {
        return NGX_DECLINED;
    }

    for (i = 0; i < ctx->nmembers; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            goto done;
        }

        doc[i] = json_loadb(e->str, e->len, 0, NULL);
        items = json_object_get(doc[i], "items");
        fetched = ngx_http_crest_trending_parse_time(
                      json_string_value(json_object_get(doc[i], "fetchedAt")));
        v = json_object_get(doc[i], "ttl");

        if (!json_is_array(items) || fetched < 0 || !json_is_integer(v)) {
            ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                          "crest trending: the cached chart of \"%V\" is not "
                          "as the worker writes it: read from the database",
                          &ctx->key);
            goto done;
        }

        ttl = json_integer_value(v);
        expiry = fetched + ttl * 1000;
        c->member_expiry[i] = expiry;

        if (c->expiry == 0 || expiry < c->expiry) {
            c->expiry = expiry;
        }

        total += json_array_size(items);
    }

    total = ngx_min(total, NGX_CREST_TRENDING_ITEMS_MAX);

    sort = ngx_alloc(sizeof(ngx_http_crest_trending_sort_t) * (total + 1),
                     ctx->request->connection->log);
    texts = ngx_pcalloc(ctx->request->pool,
                        (sizeof(char *) + sizeof(size_t)) * (total + 1));
    if (sort == NULL || texts == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    lens = (size_t *) (texts + total + 1);

    for (i = 0; i < ctx->nmembers; i++) {
        items = json_object_get(doc[i], "items");

        json_array_foreach(items, k, it) {
            if (n == total) {
                break;
            }

            if (!json_is_object(it)) {
                continue;
            }

            sort[n].item = it;
            v = json_object_get(it, "viewCount");
            sort[n].has_views = json_is_integer(v);
            sort[n].views = json_integer_value(v);
            sort[n].rank = json_integer_value(json_object_get(it, "rank"));
            sort[n].platform = json_string_value(json_object_get(it,
                                                                 "platform"));
            sort[n].id = json_string_value(json_object_get(it, "platformId"));

            if (sort[n].platform == NULL) {
                sort[n].platform = "";
            }

            if (sort[n].id == NULL) {
                sort[n].id = "";
            }

            n++;
        }
    }

    if (ctx->nmembers > 1) {
        ngx_qsort(sort, n, sizeof(ngx_http_crest_trending_sort_t),
                  ngx_http_crest_trending_cmp);
    }

    for (i = 0; i < n; i++) {
        texts[i] = json_dumps(sort[i].item, JSON_COMPACT);
        if (texts[i] == NULL) {
            rc = NGX_ERROR;
            goto done;
        }
        lens[i] = ngx_strlen(texts[i]);
    }

    rc = ngx_http_crest_trending_chart(ctx->request->pool, c, n, texts, lens);

done:

    if (texts) {
        for (i = 0; i < n; i++) {
            free(texts[i]);
        }
    }

    if (sort) {
        ngx_free(sort);
    }

    for (i = 0; i < ctx->nmembers; i++) {
        json_decref(doc[i]);
    }

    return rc;
}


static void
ngx_http_crest_trending_redis_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_trending_ctx_t  *ctx = data;

    ngx_int_t                         rc;
    ngx_http_crest_trending_chart_t   c;

    if (status != NGX_CREST_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "crest trending: redis %s: \"%V\" read from the "
                      "database", ngx_crest_status_text(status), &ctx->key);
        rc = ngx_http_crest_trending_pg(ctx);
        goto done;
    }

    rc = ngx_http_crest_trending_from_redis(ctx, reply, &c);

    if (rc == NGX_ERROR) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_crest_trending_pg(ctx);
        goto done;
    }

    ngx_http_crest_trending_store(ctx, &c, 0);

    if (ngx_http_crest_trending_page(ctx, c.nitems, c.off, c.text, c.expiry,
                                     c.etag)
        != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ctx->cached = 1;
    rc = ngx_http_crest_trending_refresh(ctx);

done:

    if (rc != NGX_DONE) {
        ngx_crest_finalize(ctx->request, rc);
    }
}


/* ---- PostgreSQL --------------------------------------------------------- */

/* The rows the last refresh of each member saw, as the worker's records. */
#define NGX_CREST_TRENDING_SQL(order)                                         \
    "SELECT j, platform, (extract(epoch FROM latest) * 1000)::bigint "        \
    "FROM (SELECT json_build_object('platform', t.platform, "                 \
    "'platformId', t.platform_id, 'region', t.region, "                       \
    "'category', t.category, 'rank', t.rank, 'title', t.title, "              \
    "'description', t.description, 'thumbnailUrl', t.thumbnail_url, "         \
    "'viewCount', t.view_count, 'likeCount', t.like_count, "                  \
    "'commentCount', t.comment_count, 'creatorName', t.creator_name, "        \
    "'creatorUrl', t.creator_url, 'durationSeconds', t.duration_s, "          \
    "'url', t.url, 'publishedAt', to_char(t.published_at AT TIME ZONE "       \
    "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'hashtags', t.hashtags)::text " \
    "AS j, t.platform, t.platform_id, t.rank, t.view_count, t.fetched_at, "   \
    "max(t.fetched_at) OVER (PARTITION BY t.platform) AS latest "             \
    "FROM trending_videos t "                                                 \
    "JOIN unnest($2::text[], $3::text[]) AS m(p, c) "                         \
    "ON t.platform = m.p AND t.category = m.c "                               \
    "WHERE t.region = $1) s "                                                 \
    "WHERE fetched_at = latest "                                              \
    "ORDER BY " order " LIMIT 1000"


static ngx_int_t
ngx_http_crest_trending_pg(ngx_http_crest_trending_ctx_t *ctx)
{
    u_char                *p, *q;
    ngx_uint_t             i;
    const char            *values[3];
    ngx_http_request_t    *r;
    ngx_crest_pg_query_t  *query;

    r = ctx->request;

    p = ngx_pnalloc(r->pool, 4 + 12 * NGX_CREST_TRENDING_PLATFORMS);
    q = ngx_pnalloc(r->pool, 4 + 72 * NGX_CREST_TRENDING_PLATFORMS);
    if (p == NULL || q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[0] = (const char *) ctx->region;
    values[1] = (const char *) p;
    values[2] = (const char *) q;

    /* array literals of validated words: nothing to escape */
    *p++ = '{';
    *q++ = '{';

    for (i = 0; i < ctx->nmembers; i++) {
        p = ngx_sprintf(p, "%s\"%V\"", i ? "," : "",
                  &ngx_http_crest_trending_platforms[ctx->members[i].platform]);
        q = ngx_sprintf(q, "%s\"%V\"", i ? "," : "",
                        &ctx->members[i].category);
    }

    *p++ = '}';
    *p = '\0';
    *q++ = '}';
    *q = '\0';

    query = ngx_crest_pg_query(ctx->nmembers > 1
                   ? NGX_CREST_TRENDING_SQL(NGX_CREST_TRENDING_ORDER_ALL)
                   : NGX_CREST_TRENDING_SQL(NGX_CREST_TRENDING_ORDER_ONE),
                   3, values, NULL, 0, ngx_http_crest_trending_pg_done, ctx,
                   r->connection->log);

    if (query == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "crest trending: the database is unavailable for "
                      "\"%V\"", &ctx->key);
        goto failed;
    }

    if (ngx_crest_pg_bind(r, query) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;

failed:

    /* stale data beats no data */
    if (ctx->have_old && ngx_http_crest_trending_from_shm(ctx, 1) == NGX_OK) {
        return ngx_http_crest_trending_refresh(ctx);
    }

    return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                CREST_ERR_SERVICE_UNAVAILABLE,
                                "trending data is unavailable: try again "
                                "shortly", NULL);
}


static void
ngx_http_crest_trending_pg_done(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_trending_ctx_t  *ctx = data;

    char                            **texts;
    size_t                           *lens;
    int64_t                           expiry, fetched;
    ngx_int_t                         rc, p;
    ngx_uint_t                        i, j, n;
    ngx_http_request_t               *r;
    ngx_http_crest_trending_chart_t   c;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest trending: reading \"%V\" failed: %s", &ctx->key,
                      ngx_crest_pg_error(status, res));

        if (ctx->have_old && ngx_http_crest_trending_from_shm(ctx, 1) == NGX_OK)
        {
            rc = ngx_http_crest_trending_refresh(ctx);

        } else {
            rc = ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      CREST_ERR_SERVICE_UNAVAILABLE,
                                      "trending data is unavailable: try "
                                      "again shortly", NULL);
        }

        goto done;
    }

    n = PQntuples(res);

    texts = ngx_palloc(r->pool, (sizeof(char *) + sizeof(size_t)) * (n + 1));
    if (texts == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    lens = (size_t *) (texts + n + 1);

    ngx_memzero(&c, sizeof(ngx_http_crest_trending_chart_t));

    for (i = 0; i < n; i++) {
        texts[i] = PQgetvalue(res, i, 0);
        lens[i] = PQgetlength(res, i, 0);

        p = ngx_http_crest_trending_platform((u_char *) PQgetvalue(res, i, 1),
                                             PQgetlength(res, i, 1), 0);
        fetched = ngx_atoof((u_char *) PQgetvalue(res, i, 2),
                            PQgetlength(res, i, 2));

        for (j = 0; p != NGX_ERROR && j < ctx->nmembers; j++) {
            if (ctx->members[j].platform != (ngx_uint_t) p) {
                continue;
            }

            expiry = fetched + (int64_t) ctx->tmcf->ttl[p];
            c.member_expiry[j] = expiry;
        }
    }

    for (j = 0; j < ctx->nmembers; j++) {
        if (c.member_expiry[j]
            && (c.expiry == 0 || c.member_expiry[j] < c.expiry))
        {
            c.expiry = c.member_expiry[j];
        }
    }

    if (ngx_http_crest_trending_chart(r->pool, &c, n, texts, lens) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_http_crest_trending_store(ctx, &c, 1);

    if (ngx_http_crest_trending_page(ctx, c.nitems, c.off, c.text, c.expiry,
                                     c.etag)
        != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ctx->cached = 0;
    rc = ngx_http_crest_trending_refresh(ctx);

done:

    if (rc != NGX_DONE) {
        ngx_crest_finalize(r, rc);
    }
}


/* ---- refreshing --------------------------------------------------------- */

static void
ngx_http_crest_trending_enqueued(ngx_http_request_t *r, ngx_crest_job_t *job,
    void *data)
{
    ngx_http_crest_trending_ctx_t  *ctx = data;

    ngx_int_t  rc;

    if (job->result == NGX_CREST_JOB_NOT_CREATED) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "crest trending: the refresh of \"%V\" was not "
                      "enqueued: %s", &ctx->key,
                      ngx_crest_status_text(job->status));

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest trending: refresh of \"%V\" enqueued as job %V"
                      "%s", &ctx->key, &job->id,
                      job->result == NGX_CREST_JOB_PENDING
                      ? " (pending, for the outbox)" : "");
    }

    rc = ngx_http_crest_trending_refresh(ctx);

    if (rc != NGX_DONE) {
        ngx_crest_finalize(r, rc);
    }
}


/* Enqueues the refresh of member i; NGX_DONE, or NGX_OK when it was not. */
static ngx_int_t
ngx_http_crest_trending_enqueue(ngx_http_crest_trending_ctx_t *ctx,
    ngx_uint_t i)
{
    u_char                            *p;
    ngx_int_t                          rc;
    ngx_str_t                          name, data;
    ngx_http_request_t                *r;
    ngx_crest_job_opts_t               opts;
    ngx_http_crest_trending_member_t  *m;

    r = ctx->request;
    m = &ctx->members[i];

    data.data = ngx_pnalloc(r->pool, 128);
    if (data.data == NULL) {
        return NGX_OK;
    }

    p = ngx_snprintf(data.data, 128, "{\"platform\":\"%V\",\"region\":\"%s\"",
                     &ngx_http_crest_trending_platforms[m->platform],
                     ctx->region);
    if (m->category.len) {
        p = ngx_snprintf(p, 128 - (p - data.data), ",\"category\":\"%V\"",
                         &m->category);
    }
    p = ngx_snprintf(p, 128 - (p - data.data), "}");
    data.len = p - data.data;

    ngx_str_set(&name, "refresh");

    ngx_memzero(&opts, sizeof(ngx_crest_job_opts_t));
    opts.system = 1;
    opts.quiet = 1;

    rc = ngx_crest_job_enqueue(r, &ctx->tmcf->queue, &name, &data, &opts,
                               ngx_http_crest_trending_enqueued, ctx);

    if (rc == NGX_DONE) {
        return NGX_DONE;
    }

    /* quiet: nothing was sent; an unknown queue was logged already */
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "crest trending: the refresh of \"%V\" was not enqueued%s",
                  &ctx->key,
                  rc == NGX_DECLINED ? ": the database is unavailable" : "");

    return NGX_OK;
}


/*
 * Another nginx host's claim: the zone dedups within one host, this
 * lock across hosts.  Without an answer from Redis the refresh is
 * enqueued all the same: the zone's claim still bounds it.
 */
static void
ngx_http_crest_trending_locked(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_trending_ctx_t  *ctx = data;

    ngx_int_t  rc;

    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_NIL) {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "crest trending: \"%V\" is being refreshed already",
                      &ctx->key);
        rc = NGX_OK;

    } else {
        rc = ngx_http_crest_trending_enqueue(ctx, ctx->locking);
    }

    if (rc != NGX_DONE) {
        rc = ngx_http_crest_trending_refresh(ctx);
    }

    if (rc != NGX_DONE) {
        ngx_crest_finalize(ctx->request, rc);
    }
}


/*
 * Takes the next claimed refresh: its lock in Redis, then its job; sends
 * the page after the last.  A refresh that cannot be enqueued is logged
 * and skipped: the read never fails for it.
 */
static ngx_int_t
ngx_http_crest_trending_refresh(ngx_http_crest_trending_ctx_t *ctx)
{
    u_char                            *p;
    size_t                             argvlen[6];
    ngx_int_t                          rc;
    ngx_uint_t                         i;
    const char                        *argv[6];
    ngx_http_request_t                *r;
    ngx_crest_redis_cmd_t             *cmd;
    ngx_http_crest_trending_member_t  *m;

    r = ctx->request;

    while (ctx->refresh) {
        for (i = 0; !(ctx->refresh & ((ngx_uint_t) 1 << i)); i++) {
            /* void */
        }

        ctx->refresh &= ~((ngx_uint_t) 1 << i);
        ctx->locking = i;
        m = &ctx->members[i];

        p = ngx_pnalloc(r->pool, NGX_CREST_TRENDING_KEY_MAX + 32
                                 + NGX_INT_T_LEN);
        if (p == NULL) {
            continue;
        }

        argv[0] = "SET";
        argv[1] = (const char *) p;
        p = ngx_sprintf(p, "crest:trending:refresh:%V:%s:",
                        &ngx_http_crest_trending_platforms[m->platform],
                        ctx->region);
        p = m->category.len ? ngx_cpymem(p, m->category.data, m->category.len)
                            : ngx_cpymem(p, "all", 3);
        argvlen[1] = p - (u_char *) argv[1];
        argv[2] = "1";
        argv[3] = "NX";
        argv[4] = "PX";
        argv[5] = (const char *) p;
        argvlen[5] = ngx_sprintf(p, "%M", ctx->tmcf->refresh) - p;

        argvlen[0] = 3;
        argvlen[2] = 1;
        argvlen[3] = 2;
        argvlen[4] = 2;

        cmd = ngx_crest_redis_command(6, argv, argvlen, 0,
                                      ngx_http_crest_trending_locked, ctx,
                                      r->connection->log);

        if (cmd) {
            if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_DONE;
        }

        rc = ngx_http_crest_trending_enqueue(ctx, i);

        if (rc == NGX_DONE) {
            return NGX_DONE;
        }
    }

    return ngx_http_crest_trending_send(ctx);
}


/* ---- answers ------------------------------------------------------------ */

static ngx_uint_t
ngx_http_crest_trending_none_match(ngx_http_request_t *r, ngx_str_t *etag)
{
    u_char  *p, *end, *start;

    if (r->headers_in.if_none_match == NULL) {
        return 0;
    }

    p = r->headers_in.if_none_match->value.data;
    end = p + r->headers_in.if_none_match->value.len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        if (p < end && *p == '*') {
            return 1;
        }

        /* If-None-Match compares weakly: W/ does not matter */
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            p += 2;
        }

        start = p;

        while (p < end && *p != ',') {
            p++;
        }

        while (p > start && (p[-1] == ' ' || p[-1] == '\t')) {
            p--;
        }

        if ((size_t) (p - start) == etag->len
            && ngx_strncmp(start, etag->data, etag->len) == 0)
        {
            return 1;
        }

        while (p < end && *p != ',') {
            p++;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_crest_trending_send(ngx_http_crest_trending_ctx_t *ctx)
{
    char                 when[25];
    u_char              *p;
    ngx_str_t            meta, etag;
    crest_jw_t           w;
    crest_buf_t          out;
    ngx_table_elt_t     *h;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    meta.data = ngx_pnalloc(r->pool, 64);
    if (meta.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    meta.len = ngx_sprintf(meta.data, "\"region\":\"%s\",\"platform\":\"%V\"",
                           ctx->region,
                           &ngx_http_crest_trending_platforms[ctx->platform])
               - meta.data;

    if (ctx->found && ctx->total) {
        /* the page of this content: the same bytes give the same tag */
        etag.data = ngx_pnalloc(r->pool, 64);
        if (etag.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(etag.data, "\"%*s-%ui-%ui\"", (size_t) 16, ctx->etag,
                        ctx->page, ctx->limit);
        etag.len = p - etag.data;

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "ETag");
        h->value = etag;
        r->headers_out.etag = h;

        if (ngx_http_crest_trending_none_match(r, &etag)) {
            r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
            r->headers_out.content_length_n = -1;
            r->header_only = 1;

            return ngx_http_send_header(r);
        }
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "videos");
    crest_jw_arr_begin(&w);
    if (ctx->videos.len) {
        crest_jw_raw(&w, (const char *) ctx->videos.data, ctx->videos.len);
    }
    crest_jw_arr_end(&w);

    crest_envelope_pagination(&w, ctx->page, ctx->limit, ctx->total);

    crest_jw_key(&w, "cached");
    crest_jw_bool(&w, ctx->cached);
    crest_jw_key(&w, "cacheExpiry");

    if (ctx->expiry) {
        crest_iso8601_ms(when, ctx->expiry);
        crest_jw_str(&w, when);

    } else {
        crest_jw_null(&w);
    }

    crest_jw_obj_end(&w);

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &out, &meta);
}


static ngx_int_t
ngx_http_crest_trending_regions(ngx_http_request_t *r)
{
    ngx_uint_t                            i;
    crest_jw_t                            w;
    crest_buf_t                           out;
    crest_allocator_t                     a;
    ngx_http_crest_trending_region_t     *rg;
    ngx_http_crest_trending_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_trending_module);

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "regions");
    crest_jw_arr_begin(&w);

    rg = tmcf->regions->elts;

    for (i = 0; i < tmcf->regions->nelts; i++) {
        crest_jw_obj_begin(&w);
        crest_jw_key(&w, "code");
        crest_jw_strn(&w, (const char *) rg[i].code.data, rg[i].code.len);
        crest_jw_key(&w, "name");
        crest_jw_strn(&w, (const char *) rg[i].name.data, rg[i].name.len);
        crest_jw_obj_end(&w);
    }

    crest_jw_arr_end(&w);
    crest_jw_obj_end(&w);

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL);
}


static ngx_int_t
ngx_http_crest_trending_categories(ngx_http_request_t *r)
{
    ngx_int_t                             platform, rc;
    ngx_str_t                             v;
    ngx_uint_t                            i;
    crest_jw_t                            w;
    crest_buf_t                           out;
    crest_allocator_t                     a;
    ngx_http_crest_trending_category_t   *ct;
    ngx_http_crest_trending_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_trending_module);

    platform = NGX_CREST_TRENDING_ALL;

    rc = ngx_crest_arg(r, "platform", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        platform = ngx_http_crest_trending_platform(v.data, v.len, 1);
        if (platform == NGX_ERROR) {
            return ngx_crest_send_invalid(r, "platform",
                             "platform must be youtube, tiktok, reddit, x "
                             "or all");
        }
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "categories");
    crest_jw_arr_begin(&w);

    ct = tmcf->categories->elts;

    for (i = 0; i < tmcf->categories->nelts; i++) {
        if (platform != NGX_CREST_TRENDING_ALL
            && ct[i].platform != (ngx_uint_t) platform)
        {
            continue;
        }

        crest_jw_obj_begin(&w);
        crest_jw_key(&w, "platform");
        crest_jw_strn(&w,
                    (const char *)
                    ngx_http_crest_trending_platforms[ct[i].platform].data,
                    ngx_http_crest_trending_platforms[ct[i].platform].len);
        crest_jw_key(&w, "id");
        crest_jw_strn(&w, (const char *) ct[i].id.data, ct[i].id.len);
        crest_jw_key(&w, "name");
        crest_jw_strn(&w, (const char *) ct[i].name.data, ct[i].name.len);
        crest_jw_obj_end(&w);
    }

    crest_jw_arr_end(&w);
    crest_jw_obj_end(&w);

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL);
}


static ngx_int_t
ngx_http_crest_trending_handler(ngx_http_request_t *r)
{
    ngx_int_t                            rc;
    ngx_http_crest_trending_loc_conf_t  *tlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* crest_auth on refuses anonymous callers before this; without it the
     * endpoints are public on purpose */

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_trending_module);

    switch (tlcf->what) {

    case NGX_CREST_TRENDING_REGIONS:
        return ngx_http_crest_trending_regions(r);

    case NGX_CREST_TRENDING_CATEGORIES:
        return ngx_http_crest_trending_categories(r);

    default:
        return ngx_http_crest_trending_list(r);
    }
}
