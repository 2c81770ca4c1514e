/*
 * ngx_http_crest_downloads_module: media downloads at the edge.
 *
 *   location /api/downloads { crest_auth on; crest_downloads; }
 *   location /api/media/    { crest_downloads_link on;
 *                             alias $crest_downloads_dir/; }
 *
 *   GET    /api/downloads/formats?url=   the formats yt-dlp lists (a job)
 *   POST   /api/downloads                records a download and enqueues it
 *   GET    /api/downloads                the caller's downloads, a page
 *   GET    /api/downloads/{id}           one download
 *   DELETE /api/downloads/{id}           cancels and removes it
 *   GET    /api/downloads/{id}/file      302 to a signed link to the file
 *   GET    /api/downloads/{id}/thumbnail 302 to a signed link to its JPEG
 *
 * The edge never runs yt-dlp nor touches storage: the worker's `formats`
 * and `download` processors do (workers/download.c), and stored files are
 * served by nginx's static handler under a location whose requests this
 * module lets through only with a valid, unexpired HMAC-SHA256 signature
 * (the preaccess phase, which `satisfy any` cannot skip as it can the
 * access phase), so file bytes never pass through our code and range
 * requests work as for any static file.
 *
 * URLs are checked here before anything is written: shape and scheme
 * (shared/crest_urlsafe.h), IP literals against the private ranges and
 * the allow-list, and host names through nginx's own asynchronous resolver
 * when the location has one (never getaddrinfo: it blocks).  The worker
 * checks again, resolving names itself, and alone sees redirects.
 */

#include "ngx_crest_pg.h"
#include "ngx_crest_redis.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_jobs.h"
#include "crest_json.h"
#include "crest_validate.h"
#include "crest_urlsafe.h"
#include "crest_sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>


#define NGX_CREST_DL_FORMAT_MAX      200
#define NGX_CREST_DL_SECRET_MIN      16
#define NGX_CREST_DL_POLL_FIRST      50
#define NGX_CREST_DL_POLL_MAX        500
#define NGX_CREST_DL_DELETE_TRIES    3

/* yt-dlp's selector for "the best mp4": video and audio merged, else a
 * single mp4 file, else whatever is best */
#define NGX_CREST_DL_FORMAT_DEFAULT  "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/b"

#define NGX_CREST_DL_TS(col)                                                  \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* the columns every download answer is made of, in the order of
 * ngx_http_crest_downloads_col_e */
#define NGX_CREST_DL_COLUMNS                                                  \
    "id::text, original_url, format, audio_only::text, status, "              \
    "progress::text, speed::text, eta::text, bytes::text, "                   \
    "total_bytes::text, error, file_size::text, duration::text, "             \
    "width::text, height::text, vcodec, acodec, "                             \
    "(thumbnail_key IS NOT NULL)::text, job_id, "                             \
    NGX_CREST_DL_TS("created_at") ", " NGX_CREST_DL_TS("updated_at") ", "     \
    NGX_CREST_DL_TS("completed_at") ", " NGX_CREST_DL_TS("expired_at")

enum {
    COL_ID = 0, COL_URL, COL_FORMAT, COL_AUDIO, COL_STATUS, COL_PROGRESS,
    COL_SPEED, COL_ETA, COL_BYTES, COL_TOTAL, COL_ERROR, COL_SIZE,
    COL_DURATION, COL_WIDTH, COL_HEIGHT, COL_VCODEC, COL_ACODEC, COL_THUMB,
    COL_JOB, COL_CREATED, COL_UPDATED, COL_COMPLETED, COL_EXPIRED, COL_N
};


/* S3 storage: links are presigned GET URLs to endpoint/bucket/key */
typedef struct {
    ngx_str_t                  origin;         /* "http://host:port" */
    ngx_str_t                  host;           /* "host:port", NUL-ended */
    ngx_str_t                  bucket;         /* NUL-ended, as all below */
    ngx_str_t                  region;
    ngx_str_t                  key_id;
    ngx_str_t                  secret;
} ngx_http_crest_downloads_s3_t;


typedef struct {
    ngx_str_t                       link_secret;
    ngx_str_t                       link_prefix;
    ngx_str_t                       dir;
    ngx_http_crest_downloads_s3_t  *s3;         /* NULL: local storage */
} ngx_http_crest_downloads_main_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 link;
    ngx_str_t                  allow;          /* NUL-ended; "" for none */
    ngx_uint_t                 concurrent;
    ngx_msec_t                 formats_timeout;
    time_t                     formats_cache;
    time_t                     link_ttl;
} ngx_http_crest_downloads_loc_conf_t;


typedef struct ngx_http_crest_downloads_ctx_s  ngx_http_crest_downloads_ctx_t;

typedef void (*ngx_http_crest_downloads_next_pt)(
    ngx_http_crest_downloads_ctx_t *ctx);

struct ngx_http_crest_downloads_ctx_s {
    ngx_http_request_t                   *request;
    ngx_crest_identity_t                 *identity;
    ngx_http_crest_downloads_loc_conf_t  *dlcf;

    u_char                                id[37];
    ngx_str_t                             url;       /* NUL-ended */
    ngx_str_t                             format;    /* empty: none */
    ngx_uint_t                            audio_only;
    crest_urlsafe_t                       parsed;

    /* the host name's check, then what comes next */
    ngx_resolver_ctx_t                   *resolving;
    ngx_http_crest_downloads_next_pt      next;

    /* formats: the cache key, the job and its polling */
    /* "crest:downloads:formats:" and sha256(url) in hex */
    u_char                                cache_key[24 + 64 + 1];
    ngx_str_t                             job_id;
    ngx_str_t                             job_key;
    ngx_event_t                           poll;
    ngx_msec_t                            delay;
    ngx_msec_t                            deadline;
    ngx_crest_redis_cmd_t                *cmd;

    ngx_uint_t                            page;
    ngx_uint_t                            limit;
    ngx_uint_t                            thumbnail;
    ngx_uint_t                            tries;
};


static ngx_int_t ngx_http_crest_downloads_preconf(ngx_conf_t *cf);
static ngx_int_t ngx_http_crest_downloads_init(ngx_conf_t *cf);
static void *ngx_http_crest_downloads_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_downloads_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_crest_downloads_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_downloads_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_crest_downloads(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_downloads_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_crest_downloads_allow(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_crest_downloads_dir(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_downloads_storage(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_crest_downloads_handler(ngx_http_request_t *r);


static ngx_command_t  ngx_http_crest_downloads_commands[] = {

    { ngx_string("crest_downloads"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_crest_downloads,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_downloads_link"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_downloads_loc_conf_t, link),
      NULL },

    { ngx_string("crest_downloads_link_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_downloads_secret_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_downloads_link_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_downloads_main_conf_t, link_prefix),
      NULL },

    { ngx_string("crest_downloads_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_downloads_dir,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_downloads_storage"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_crest_downloads_storage,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_downloads_link_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_downloads_loc_conf_t, link_ttl),
      NULL },

    { ngx_string("crest_downloads_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_downloads_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_downloads_concurrent"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_downloads_loc_conf_t, concurrent),
      NULL },

    { ngx_string("crest_downloads_formats_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_downloads_loc_conf_t, formats_timeout),
      NULL },

    { ngx_string("crest_downloads_formats_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_crest_downloads_loc_conf_t, formats_cache),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_downloads_module_ctx = {
    ngx_http_crest_downloads_preconf,          /* preconfiguration */
    ngx_http_crest_downloads_init,             /* postconfiguration */

    ngx_http_crest_downloads_create_main_conf, /* create main configuration */
    ngx_http_crest_downloads_init_main_conf,   /* init main configuration */

    NULL,                                      /* create server configuration */
    NULL,                                      /* merge server configuration */

    ngx_http_crest_downloads_create_loc_conf,  /* create location configuration */
    ngx_http_crest_downloads_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_crest_downloads_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_downloads_module_ctx,      /* module context */
    ngx_http_crest_downloads_commands,         /* module directives */
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


static ngx_str_t  ngx_http_crest_downloads_statuses[] = {
    ngx_string("pending"), ngx_string("downloading"), ngx_string("processing"),
    ngx_string("completed"), ngx_string("failed"), ngx_string("cancelled")
};

static ngx_str_t  ngx_http_crest_downloads_dir_name =
    ngx_string("crest_downloads_dir");


/* configuration */

static void *
ngx_http_crest_downloads_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_downloads_main_conf_t  *dmcf;

    /*
     * set by ngx_pcalloc():
     *
     *     dmcf->link_secret = { 0, NULL };
     *     dmcf->link_prefix = { 0, NULL };
     *     dmcf->dir = { 0, NULL };
     */

    dmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_downloads_main_conf_t));

    return dmcf;
}


static char *
ngx_http_crest_downloads_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_downloads_main_conf_t  *dmcf = conf;

    if (dmcf->link_prefix.data == NULL) {
        ngx_str_set(&dmcf->link_prefix, "/api/media/");
    }

    if (dmcf->link_prefix.len < 2 || dmcf->link_prefix.data[0] != '/'
        || dmcf->link_prefix.data[dmcf->link_prefix.len - 1] != '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_downloads_link_prefix must start and end "
                           "with \"/\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_crest_downloads_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_downloads_loc_conf_t  *dlcf;

    dlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_downloads_loc_conf_t));
    if (dlcf == NULL) {
        return NULL;
    }

    dlcf->enable = NGX_CONF_UNSET;
    dlcf->link = NGX_CONF_UNSET;
    dlcf->concurrent = NGX_CONF_UNSET_UINT;
    dlcf->formats_timeout = NGX_CONF_UNSET_MSEC;
    dlcf->formats_cache = NGX_CONF_UNSET;
    dlcf->link_ttl = NGX_CONF_UNSET;

    return dlcf;
}


static char *
ngx_http_crest_downloads_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_crest_downloads_loc_conf_t  *prev = parent;
    ngx_http_crest_downloads_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->link, prev->link, 0);
    ngx_conf_merge_str_value(conf->allow, prev->allow, "");
    ngx_conf_merge_uint_value(conf->concurrent, prev->concurrent, 3);
    ngx_conf_merge_msec_value(conf->formats_timeout, prev->formats_timeout,
                              30000);
    ngx_conf_merge_sec_value(conf->formats_cache, prev->formats_cache, 300);
    ngx_conf_merge_sec_value(conf->link_ttl, prev->link_ttl, 300);

    if (conf->concurrent == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_downloads_concurrent must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (conf->link_ttl <= 0 || conf->formats_cache <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_downloads_link_ttl and "
                           "crest_downloads_formats_cache must be positive");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_downloads(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_downloads_loc_conf_t *dlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    static ngx_str_t  download = ngx_string("download");
    static ngx_str_t  formats = ngx_string("formats");

    if (dlcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    dlcf->enable = 1;

    /* downloads and download-delete on "download", formats on "formats" */
    if (ngx_crest_jobs_need_queue(cf, &download, "crest_downloads") != NGX_OK
        || ngx_crest_jobs_need_queue(cf, &formats, "crest_downloads")
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_downloads_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_downloads_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_crest_downloads_main_conf_t *dmcf = conf;

    ngx_str_t  *value;

    if (dmcf->link_secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_crest_read_conf_file(cf, &value[1], 4096, &dmcf->link_secret)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (dmcf->link_secret.len < NGX_CREST_DL_SECRET_MIN) {
        /* the file's name only: never its content */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the secret in \"%V\" is shorter than %d bytes",
                           &value[1], NGX_CREST_DL_SECRET_MIN);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_downloads_allow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_downloads_loc_conf_t *dlcf = conf;

    u_char     *p;
    char        err[256];
    ngx_str_t  *value;

    if (dlcf->allow.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_cpymem(p, value[1].data, value[1].len) = '\0';

    if (ngx_strlen(p) != value[1].len
        || crest_urlsafe_allow_valid((const char *) p, err, sizeof(err)) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid crest_downloads_allow \"%V\": %s",
                           &value[1], err);
        return NGX_CONF_ERROR;
    }

    dlcf->allow.data = p;
    dlcf->allow.len = value[1].len;

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_downloads_dir(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_downloads_main_conf_t *dmcf = conf;

    ngx_str_t  *value;

    if (dmcf->dir.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    dmcf->dir = value[1];

    /* no trailing slash: the alias adds its own */
    while (dmcf->dir.len > 1 && dmcf->dir.data[dmcf->dir.len - 1] == '/') {
        dmcf->dir.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &dmcf->dir, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_downloads_conf_str(ngx_conf_t *cf, ngx_str_t *from,
    ngx_str_t *to)
{
    to->len = from->len;
    to->data = ngx_pnalloc(cf->pool, from->len + 1);
    if (to->data == NULL) {
        return NGX_ERROR;
    }

    *ngx_cpymem(to->data, from->data, from->len) = '\0';

    return NGX_OK;
}


/*
 * crest_downloads_storage local;
 * crest_downloads_storage s3 endpoint=http://host:port bucket=NAME
 *                         region=REGION key_id_file=FILE secret_file=FILE;
 */
static char *
ngx_http_crest_downloads_storage(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_crest_downloads_main_conf_t *dmcf = conf;

    char                            err[128], trial[1024];
    u_char                         *p, *end;
    ngx_str_t                      *value, v, file;
    ngx_uint_t                      i;
    crest_sigv4_presign_t           ps;
    ngx_http_crest_downloads_s3_t  *s3;

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "local") == 0) {
        dmcf->s3 = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "s3") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_downloads_storage is \"local\" or \"s3 "
                           "...\", not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    s3 = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_downloads_s3_t));
    if (s3 == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        p = (u_char *) ngx_strchr(value[i].data, '=');
        if (p == NULL) {
            goto invalid;
        }

        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

        if (v.len == 0) {
            goto invalid;
        }

        if (ngx_strncmp(value[i].data, "endpoint=", 9) == 0) {
            /* an origin only: scheme, host, port; the bucket goes in the
             * path (path-style), which any S3 clone serves */
            if (ngx_strncmp(v.data, "http://", 7) == 0) {
                p = v.data + 7;

            } else if (ngx_strncmp(v.data, "https://", 8) == 0) {
                p = v.data + 8;

            } else {
                goto invalid;
            }

            end = v.data + v.len;

            while (end > p && end[-1] == '/') {
                end--;
            }

            if (end == p || ngx_strlchr(p, end, '/') != NULL) {
                goto invalid;
            }

            /*
             * The scheme's own port goes: clients (browsers, curl, the S3
             * SDKs) leave it out of the Host they send, and the link is
             * signed for that Host.
             */
            if (p == v.data + 7 && end - p > 3
                && ngx_strncmp(end - 3, ":80", 3) == 0)
            {
                end -= 3;

            } else if (p == v.data + 8 && end - p > 4
                       && ngx_strncmp(end - 4, ":443", 4) == 0)
            {
                end -= 4;
            }

            v.len = end - v.data;

            if (ngx_http_crest_downloads_conf_str(cf, &v, &s3->origin)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            v.data = s3->origin.data + (p - v.data);
            v.len = s3->origin.data + s3->origin.len - v.data;
            s3->host = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "bucket=", 7) == 0) {
            if (ngx_http_crest_downloads_conf_str(cf, &v, &s3->bucket)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "region=", 7) == 0) {
            if (ngx_http_crest_downloads_conf_str(cf, &v, &s3->region)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key_id_file=", 12) == 0
            || ngx_strncmp(value[i].data, "secret_file=", 12) == 0)
        {
            file = v;

            if (ngx_crest_read_conf_file(cf, &file, 1024, &v) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            if (ngx_http_crest_downloads_conf_str(cf, &v,
                                                  value[i].data[0] == 'k'
                                                  ? &s3->key_id
                                                  : &s3->secret)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (s3->origin.len == 0 || s3->bucket.len == 0 || s3->region.len == 0
        || s3->key_id.len == 0 || s3->secret.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_downloads_storage s3 needs endpoint=, "
                           "bucket=, region=, key_id_file= and "
                           "secret_file=");
        return NGX_CONF_ERROR;
    }

    /*
     * A trial link: keys or a region the signer refuses would otherwise
     * fail every /file request with a 500; the reason never holds a key.
     */
    ngx_memzero(&ps, sizeof(crest_sigv4_presign_t));
    ps.method = "GET";
    ps.host = (const char *) s3->host.data;
    ps.path = "/crest-config-check";
    ps.region = (const char *) s3->region.data;
    ps.service = "s3";
    ps.access_key_id = (const char *) s3->key_id.data;
    ps.secret_key = (const char *) s3->secret.data;
    ps.now = ngx_time();
    ps.expires = 60;

    if (crest_sigv4_presign(&ps, trial, sizeof(trial), NULL, err, sizeof(err))
        < 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_downloads_storage s3: the keys or region "
                           "cannot sign a link: %s", err);
        return NGX_CONF_ERROR;
    }

    dmcf->s3 = s3;

    return NGX_CONF_OK;

invalid:

    /* the parameter's name only: its value might be a secret written
     * inline by mistake (secret=... for secret_file=...) */
    v = value[i];
    p = (u_char *) ngx_strchr(v.data, '=');

    if (p) {
        v.len = p - v.data;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid crest_downloads_storage parameter \"%V%s\"",
                       &v, p ? "=..." : "");
    return NGX_CONF_ERROR;
}


/* $crest_downloads_dir: where local storage keeps files, for "alias" */
static ngx_int_t
ngx_http_crest_downloads_dir_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_crest_downloads_main_conf_t  *dmcf;

    dmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_downloads_module);

    if (dmcf->dir.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = dmcf->dir.data;
    v->len = dmcf->dir.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_downloads_preconf(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_crest_downloads_dir_name, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_crest_downloads_dir_variable;

    return NGX_OK;
}


/* small helpers */

static ngx_int_t
ngx_http_crest_downloads_not_found(ngx_http_request_t *r)
{
    return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                "no such download", NULL);
}


static ngx_uint_t
ngx_http_crest_downloads_is(ngx_str_t *s, const char *what)
{
    size_t  n;

    n = ngx_strlen(what);

    return s->len == n && ngx_strncmp(s->data, what, n) == 0;
}


static u_char *
ngx_http_crest_downloads_copy(ngx_pool_t *pool, const char *s, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s, len) = '\0';

    return p;
}


static void
ngx_http_crest_downloads_hex(u_char *dst, const u_char *src, size_t n)
{
    static const u_char  hex[] = "0123456789abcdef";

    while (n--) {
        *dst++ = hex[*src >> 4];
        *dst++ = hex[*src++ & 0xf];
    }
}


/* A random (version 4) UUID, NUL-ended: the download's id. */
static ngx_int_t
ngx_http_crest_downloads_uuid(u_char *out)
{
    u_char  b[16], h[32];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return NGX_ERROR;
    }

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    ngx_http_crest_downloads_hex(h, b, 16);

    ngx_sprintf(out, "%*s-%*s-%*s-%*s-%*s%Z", 8, h, 4, h + 8, 4, h + 12,
                4, h + 16, 12, h + 20);

    return NGX_OK;
}


static ngx_http_crest_downloads_ctx_t *
ngx_http_crest_downloads_ctx(ngx_http_request_t *r)
{
    return ngx_http_get_module_ctx(r, ngx_http_crest_downloads_module);
}


/* URL safety */

/*
 * Checks a URL's shape and, for an IP literal, its address.  NGX_OK, or
 * the 400 answer was sent (its rc in *rc).
 */
static ngx_int_t
ngx_http_crest_downloads_check_url(ngx_http_crest_downloads_ctx_t *ctx,
    ngx_int_t *rc)
{
    u_char               addr[16], *msg;
    char                 err[256];
    in_addr_t            a4;
    const char          *why;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->url.len == 0 || ctx->url.len > CREST_URLSAFE_MAX_URL
        || ngx_strlen(ctx->url.data) != ctx->url.len)
    {
        *rc = ngx_crest_send_invalid(r, "url",
                                     "url must be an http or https URL "
                                     "of at most 4096 bytes");
        return NGX_ERROR;
    }

    if (crest_urlsafe_parse(&ctx->parsed, (const char *) ctx->url.data,
                            ctx->url.len, err, sizeof(err))
        != 0)
    {
        msg = ngx_pnalloc(r->pool, sizeof("URL refused: ") + sizeof(err));
        if (msg == NULL) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "URL refused: %s%Z", err);
        *rc = ngx_crest_send_invalid(r, "url", (const char *) msg);
        return NGX_ERROR;
    }

    if (ctx->parsed.family == 0) {
        return NGX_OK;
    }

    if (ctx->parsed.family == AF_INET) {
        a4 = ngx_inet_addr((u_char *) ctx->parsed.host,
                           ngx_strlen(ctx->parsed.host));
        if (a4 == INADDR_NONE
            && ngx_strcmp(ctx->parsed.host, "255.255.255.255") != 0)
        {
            *rc = ngx_crest_send_invalid(r, "url",
                                         "URL refused: malformed "
                                         "address");
            return NGX_ERROR;
        }

        ngx_memcpy(addr, &a4, 4);

#if (NGX_HAVE_INET6)
    } else {
        if (ngx_inet6_addr((u_char *) ctx->parsed.host,
                           ngx_strlen(ctx->parsed.host), addr)
            != NGX_OK)
        {
            *rc = ngx_crest_send_invalid(r, "url",
                                         "URL refused: malformed "
                                         "address");
            return NGX_ERROR;
        }
#endif
    }

    why = crest_urlsafe_addr_check(ctx->parsed.family, addr,
                                   (const char *) ctx->dlcf->allow.data);
    if (why) {
        msg = ngx_pnalloc(r->pool, sizeof("URL refused: a  address") + 64);
        if (msg == NULL) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_ERROR;
        }

        ngx_sprintf(msg, "URL refused: a %s address%Z", why);
        *rc = ngx_crest_send_invalid(r, "url", (const char *) msg);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_crest_downloads_resolve_cleanup(void *data)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    if (ctx->resolving) {
        ngx_resolve_name_done(ctx->resolving);
        ctx->resolving = NULL;
    }
}


static void
ngx_http_crest_downloads_resolved(ngx_resolver_ctx_t *rctx)
{
    ngx_http_crest_downloads_ctx_t  *ctx = rctx->data;

    u_char               *msg;
    ngx_int_t             state;
    ngx_uint_t            i;
    const char           *why;
    const uint8_t        *a;
    struct sockaddr      *sa;
    ngx_http_request_t   *r;

    r = ctx->request;
    why = NULL;
    state = rctx->state;

    if (state == NGX_OK) {
        for (i = 0; i < rctx->naddrs && why == NULL; i++) {
            sa = rctx->addrs[i].sockaddr;

            if (sa->sa_family == AF_INET) {
                a = (const uint8_t *)
                    &((struct sockaddr_in *) sa)->sin_addr;

#if (NGX_HAVE_INET6)
            } else if (sa->sa_family == AF_INET6) {
                a = (const uint8_t *)
                    &((struct sockaddr_in6 *) sa)->sin6_addr;
#endif

            } else {
                continue;
            }

            why = crest_urlsafe_addr_check(sa->sa_family, a,
                                       (const char *) ctx->dlcf->allow.data);
        }
    }

    ngx_resolve_name_done(rctx);
    ctx->resolving = NULL;

    if (why) {
        msg = ngx_pnalloc(r->pool, sizeof(ctx->parsed.host) + 80);
        if (msg == NULL) {
            ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_sprintf(msg, "URL refused: %s resolves to a %s address%Z",
                    ctx->parsed.host, why);
        ngx_crest_finalize(r, ngx_crest_send_invalid(r, "url",
                                                     (const char *) msg));
        return;
    }

    if (state == NGX_RESOLVE_NXDOMAIN) {
        msg = ngx_pnalloc(r->pool, sizeof(ctx->parsed.host) + 40);
        if (msg == NULL) {
            ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_sprintf(msg, "URL refused: %s has no address%Z",
                    ctx->parsed.host);
        ngx_crest_finalize(r, ngx_crest_send_invalid(r, "url",
                                                     (const char *) msg));
        return;
    }

    if (state != NGX_OK) {
        /* a resolver that failed now says nothing about the name: the
         * worker resolves it again before anything connects */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest downloads: %s not resolved at the edge (%s), "
                      "left to the worker's check", ctx->parsed.host,
                      ngx_resolver_strerror(state));
    }

    ctx->next(ctx);
}


/*
 * A host name is resolved by nginx's resolver, if the location has one, and
 * every address checked; then next runs.  NGX_DONE: next will be called or
 * the request answered, and r->main->count is already taken for it (a name
 * in the resolver's cache is answered from inside ngx_resolve_name(), so
 * the count must be held before); NGX_OK: nothing to resolve, call next
 * yourself.
 */
static ngx_int_t
ngx_http_crest_downloads_resolve(ngx_http_crest_downloads_ctx_t *ctx,
    ngx_http_crest_downloads_next_pt next)
{
    ngx_resolver_ctx_t        *rctx;
    ngx_http_cleanup_t        *cln;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;

    if (ctx->parsed.family != 0) {
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->resolver == NULL) {
        return NGX_OK;
    }

    rctx = ngx_resolve_start(clcf->resolver, NULL);

    if (rctx == NGX_NO_RESOLVER) {
        return NGX_OK;
    }

    if (rctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_resolve_name_done(rctx);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rctx->name.data = (u_char *) ctx->parsed.host;
    rctx->name.len = ngx_strlen(ctx->parsed.host);
    rctx->handler = ngx_http_crest_downloads_resolved;
    rctx->data = ctx;
    rctx->timeout = clcf->resolver_timeout;

    ctx->next = next;
    ctx->resolving = rctx;

    cln->handler = ngx_http_crest_downloads_resolve_cleanup;
    cln->data = ctx;

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    if (ngx_resolve_name(rctx) != NGX_OK) {
        /* the resolver freed rctx itself */
        ctx->resolving = NULL;
        r->main->count--;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


/* a download's view */

static void
ngx_http_crest_downloads_col(crest_jw_t *w, PGresult *res, int row, int col,
    const char *key, ngx_uint_t number)
{
    crest_jw_key(w, key);

    if (PQgetisnull(res, row, col)) {
        crest_jw_null(w);

    } else if (number) {
        crest_jw_raw(w, PQgetvalue(res, row, col), PQgetlength(res, row, col));

    } else {
        crest_jw_strn(w, PQgetvalue(res, row, col),
                      PQgetlength(res, row, col));
    }
}


static void
ngx_http_crest_downloads_view(crest_jw_t *w, PGresult *res, int row)
{
    const char  *error, *status;

    status = PQgetvalue(res, row, COL_STATUS);

    crest_jw_obj_begin(w);
    ngx_http_crest_downloads_col(w, res, row, COL_ID, "id", 0);
    ngx_http_crest_downloads_col(w, res, row, COL_URL, "url", 0);
    ngx_http_crest_downloads_col(w, res, row, COL_FORMAT, "format", 0);
    crest_jw_key(w, "audioOnly");
    crest_jw_bool(w, PQgetvalue(res, row, COL_AUDIO)[0] == 't');
    ngx_http_crest_downloads_col(w, res, row, COL_STATUS, "status", 0);
    ngx_http_crest_downloads_col(w, res, row, COL_PROGRESS, "progress", 1);
    ngx_http_crest_downloads_col(w, res, row, COL_SPEED, "speed", 1);
    ngx_http_crest_downloads_col(w, res, row, COL_ETA, "eta", 1);
    ngx_http_crest_downloads_col(w, res, row, COL_BYTES, "bytes", 1);
    ngx_http_crest_downloads_col(w, res, row, COL_TOTAL, "totalBytes", 1);

    /*
     * The worker keeps the reason as text; a URL refused (at the start, or
     * a media URL or redirect found later) is the caller's input at fault,
     * so it is told as a VALIDATION_ERROR like the edge's own check.
     */
    crest_jw_key(w, "error");

    if (PQgetisnull(res, row, COL_ERROR)) {
        crest_jw_null(w);

    } else {
        error = PQgetvalue(res, row, COL_ERROR);

        crest_jw_obj_begin(w);
        crest_jw_key(w, "code");
        crest_jw_str(w, ngx_strstr(error, "URL refused") != NULL
                        ? "VALIDATION_ERROR"
                        : ngx_strcmp(status, "cancelled") == 0
                          ? "CANCELLED" : "DOWNLOAD_FAILED");
        crest_jw_key(w, "message");
        crest_jw_str(w, error);
        crest_jw_obj_end(w);
    }

    crest_jw_key(w, "file");

    if (PQgetisnull(res, row, COL_SIZE)) {
        crest_jw_null(w);

    } else {
        crest_jw_obj_begin(w);
        ngx_http_crest_downloads_col(w, res, row, COL_SIZE, "size", 1);
        ngx_http_crest_downloads_col(w, res, row, COL_DURATION, "duration", 1);
        ngx_http_crest_downloads_col(w, res, row, COL_WIDTH, "width", 1);
        ngx_http_crest_downloads_col(w, res, row, COL_HEIGHT, "height", 1);
        ngx_http_crest_downloads_col(w, res, row, COL_VCODEC, "vcodec", 0);
        ngx_http_crest_downloads_col(w, res, row, COL_ACODEC, "acodec", 0);
        crest_jw_key(w, "thumbnail");
        crest_jw_bool(w, PQgetvalue(res, row, COL_THUMB)[0] == 't');
        crest_jw_obj_end(w);
    }

    ngx_http_crest_downloads_col(w, res, row, COL_JOB, "jobId", 0);
    ngx_http_crest_downloads_col(w, res, row, COL_CREATED, "createdAt", 0);
    ngx_http_crest_downloads_col(w, res, row, COL_UPDATED, "updatedAt", 0);
    ngx_http_crest_downloads_col(w, res, row, COL_COMPLETED, "completedAt",
                                 0);
    /* set once the retention sweep removed the files: file says what they
     * were, /file has nothing to link to any more */
    ngx_http_crest_downloads_col(w, res, row, COL_EXPIRED, "expiredAt", 0);
    crest_jw_obj_end(w);
}


/* GET /api/downloads/{id} */

static void
ngx_http_crest_downloads_got(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0 || PQnfields(res) != COL_N) {
        ngx_crest_finalize(r, ngx_http_crest_downloads_not_found(r));
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "download");
    ngx_http_crest_downloads_view(&w, res, 0);
    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


/* GET /api/downloads */

static void
ngx_http_crest_downloads_listed(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    int                  i, n;
    ngx_int_t            total;
    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    n = PQntuples(res);
    total = (n && PQnfields(res) == COL_N + 1)
            ? ngx_atoi((u_char *) PQgetvalue(res, 0, COL_N),
                       PQgetlength(res, 0, COL_N))
            : 0;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "downloads");
    crest_jw_arr_begin(&w);

    for (i = 0; i < n; i++) {
        /* the count comes with one row of nulls past the last page */
        if (total <= 0 || PQgetisnull(res, i, COL_ID)) {
            continue;
        }

        ngx_http_crest_downloads_view(&w, res, i);
    }

    crest_jw_arr_end(&w);

    crest_envelope_pagination(&w, ctx->page, ctx->limit, total);

    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


static ngx_int_t
ngx_http_crest_downloads_list(ngx_http_crest_downloads_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_str_t            status;
    ngx_uint_t           i, n;
    const char          *values[4];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_crest_page_args(r, &ctx->page, &ctx->limit, &rc) != NGX_OK) {
        return rc;
    }

    values[0] = (const char *) ctx->identity->user_id.data;
    values[1] = NULL;

    rc = ngx_crest_arg(r, "status", &status);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        n = sizeof(ngx_http_crest_downloads_statuses) / sizeof(ngx_str_t);

        for (i = 0; i < n; i++) {
            if (status.len == ngx_http_crest_downloads_statuses[i].len
                && ngx_strncmp(status.data,
                               ngx_http_crest_downloads_statuses[i].data,
                               status.len) == 0)
            {
                break;
            }
        }

        if (i == n) {
            return ngx_crest_send_invalid(r, "status",
                                          "status must be pending, "
                                          "downloading, processing, "
                                          "completed, failed or cancelled");
        }

        values[1] = (const char *) status.data;
    }

    if (ngx_crest_page_sql(r->pool, ctx->page, ctx->limit, &values[2],
                           &values[3])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the count and the page in one statement; the count is the last
     * column so that the view's columns keep their numbers */
    rc = ngx_crest_pg_request(r,
        "WITH f AS (SELECT * FROM media_downloads WHERE user_id = $1::uuid "
        "AND ($2::text IS NULL OR status = $2)) "
        "SELECT p.*, c.total FROM (SELECT count(*) AS total FROM f) c "
        "LEFT JOIN LATERAL (SELECT " NGX_CREST_DL_COLUMNS " FROM f "
        "ORDER BY created_at DESC, id DESC "
        "LIMIT $3::integer OFFSET $4::integer) p ON true",
        4, values, ngx_http_crest_downloads_listed, ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* POST /api/downloads */

static void
ngx_http_crest_downloads_enqueued(ngx_http_request_t *r, ngx_crest_job_t *job,
    void *data)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    crest_jw_t         w;
    crest_buf_t        out, details;
    crest_allocator_t  a;

    ngx_crest_pool_allocator(&a, r->pool);

    if (job->result == NGX_CREST_JOB_REFUSED) {
        /*
         * 429 rather than 409: nothing about the request is in conflict,
         * the same request succeeds once a download finishes, and clients
         * already back off and retry on 429.  The quota unit comes back
         * (any answer of 400 or more returns it).
         */
        crest_buf_init(&details, &a);
        crest_buf_appendf(&details, "{\"limit\":%lu}",
                          (unsigned long) ctx->dlcf->concurrent);

        ngx_crest_finalize(r, ngx_crest_send_error(r,
                                   NGX_HTTP_TOO_MANY_REQUESTS,
                                   CREST_ERR_RATE_LIMITED,
                                   "too many downloads in progress: wait for "
                                   "one to finish", &details));
        return;
    }

    if (job->result == NGX_CREST_JOB_NOT_CREATED) {
        ngx_crest_finalize(r, ngx_crest_job_send(r, job));
        return;
    }

    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);

    crest_jw_key(&w, "download");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_str(&w, (const char *) ctx->id);
    crest_jw_key(&w, "url");
    crest_jw_strn(&w, (const char *) ctx->url.data, ctx->url.len);
    crest_jw_key(&w, "format");

    if (ctx->format.len) {
        crest_jw_strn(&w, (const char *) ctx->format.data, ctx->format.len);

    } else {
        crest_jw_null(&w);
    }

    crest_jw_key(&w, "audioOnly");
    crest_jw_bool(&w, ctx->audio_only);
    crest_jw_key(&w, "status");
    crest_jw_str(&w, "pending");
    crest_jw_key(&w, "progress");
    crest_jw_int(&w, 0);
    crest_jw_obj_end(&w);

    crest_jw_key(&w, "job");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_strn(&w, (const char *) job->id.data, job->id.len);
    crest_jw_key(&w, "queue");
    crest_jw_strn(&w, (const char *) job->queue.data, job->queue.len);
    crest_jw_key(&w, "name");
    crest_jw_strn(&w, (const char *) job->name.data, job->name.len);
    crest_jw_key(&w, "status");
    crest_jw_str(&w, job->result == NGX_CREST_JOB_QUEUED ? "queued"
                                                         : "pending");
    crest_jw_obj_end(&w);

    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_ACCEPTED, &out, NULL));
}


static ngx_int_t
ngx_http_crest_downloads_create(ngx_http_crest_downloads_ctx_t *ctx)
{
    char                  *dump;
    u_char                 limit[NGX_INT_T_LEN + 1];
    json_t                *data;
    ngx_str_t              queue, name, text;
    const char            *values[5];
    ngx_crest_job_opts_t   opts;
    ngx_http_request_t    *r;

    r = ctx->request;

    if (ngx_http_crest_downloads_uuid(ctx->id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* what the download processor reads (workers/download.c) */
    data = json_pack("{s:s, s:s, s:s%, s:b}",
                     "downloadId", (const char *) ctx->id,
                     "userId", (const char *) ctx->identity->user_id.data,
                     "url", (const char *) ctx->url.data, ctx->url.len,
                     "audioOnly", (int) ctx->audio_only);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->format.len
        && json_object_set_new(data, "format",
                               json_stringn((const char *) ctx->format.data,
                                            ctx->format.len))
           != 0)
    {
        json_decref(data);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dump = json_dumps(data, JSON_COMPACT);
    json_decref(data);

    if (dump == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = ngx_strlen(dump);
    text.data = ngx_http_crest_downloads_copy(r->pool, dump, text.len);
    free(dump);

    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(limit, "%ui%Z", ctx->dlcf->concurrent);

    values[0] = (const char *) ctx->id;
    values[1] = (const char *) ctx->url.data;
    values[2] = ctx->format.len ? (const char *) ctx->format.data : NULL;
    values[3] = ctx->audio_only ? "true" : "false";
    values[4] = (const char *) limit;

    ngx_memzero(&opts, sizeof(ngx_crest_job_opts_t));
    opts.sql = "SELECT crest_download_create($1::uuid, $2, $3, $4::jsonb, "
               "$5::integer, $6::uuid, $7, $8, $9::boolean, $10::integer)"
               "::text";
    opts.nvalues = 5;
    opts.values = values;

    ngx_str_set(&queue, "download");
    ngx_str_set(&name, "download");

    return ngx_crest_job_enqueue(r, &queue, &name, &text, &opts,
                                 ngx_http_crest_downloads_enqueued, ctx);
}


static void
ngx_http_crest_downloads_create_next(ngx_http_crest_downloads_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    rc = ngx_http_crest_downloads_create(ctx);

    if (rc == NGX_DONE) {
        /* the enqueue holds the request now: our hold goes */
        r->main->count++;
    }

    ngx_crest_finalize(r, rc);
}


static ngx_int_t
ngx_http_crest_downloads_body(ngx_http_request_t *r, json_t *body)
{
    json_t                          *v;
    ngx_int_t                        rc;
    const char                      *key, *s;
    ngx_http_crest_downloads_ctx_t  *ctx;

    ctx = ngx_http_crest_downloads_ctx(r);

    json_object_foreach(body, key, v) {

        if (ngx_strcmp(key, "url") == 0) {
            if (!json_is_string(v)) {
                return ngx_crest_send_invalid(r, "url",
                                              "url must be a string");
            }

            ctx->url.len = json_string_length(v);
            ctx->url.data = ngx_http_crest_downloads_copy(r->pool,
                                                      json_string_value(v),
                                                      ctx->url.len);
            if (ctx->url.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(key, "format") == 0) {
            if (json_is_null(v)) {
                continue;
            }

            s = json_is_string(v) ? json_string_value(v) : NULL;

            /* a selector or a format id, never an option for yt-dlp */
            if (s == NULL || json_string_length(v) == 0
                || json_string_length(v) > NGX_CREST_DL_FORMAT_MAX
                || s[0] == '-'
                || !crest_is_clean_text(s, json_string_length(v)))
            {
                return ngx_crest_send_invalid(r, "format",
                                              "format must be a yt-dlp format "
                                              "id or selector of 1 to 200 "
                                              "characters, not starting with "
                                              "\"-\"");
            }

            ctx->format.len = json_string_length(v);
            ctx->format.data = ngx_http_crest_downloads_copy(r->pool, s,
                                                         ctx->format.len);
            if (ctx->format.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(key, "audioOnly") == 0) {
            if (!json_is_boolean(v)) {
                return ngx_crest_send_invalid(r, "audioOnly",
                                              "audioOnly must be true "
                                              "or false");
            }

            ctx->audio_only = json_is_true(v);
            continue;
        }

        return ngx_crest_send_invalid(r, key,
                                      "unknown field: a download takes "
                                      "url, format and audioOnly");
    }

    if (ctx->url.data == NULL) {
        return ngx_crest_send_invalid(r, "url", "url is required");
    }

    /* audio only without a format: the worker picks the best audio */
    if (ctx->format.len == 0 && !ctx->audio_only) {
        ngx_str_set(&ctx->format, NGX_CREST_DL_FORMAT_DEFAULT);
    }

    if (ngx_http_crest_downloads_check_url(ctx, &rc) != NGX_OK) {
        return rc;
    }

    rc = ngx_http_crest_downloads_resolve(ctx,
                                          ngx_http_crest_downloads_create_next);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_crest_downloads_create(ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* GET /api/downloads/formats */

static void ngx_http_crest_downloads_poll(ngx_event_t *ev);


static void
ngx_http_crest_downloads_poll_cleanup(void *data)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    if (ctx->poll.timer_set) {
        ngx_del_timer(&ctx->poll);
    }
}


/*
 * yt-dlp's names into ours: {url, title, duration, formats: [{formatId,
 * ext, note, vcodec, acodec, width, height, fps, bitrate, size}]}; size is
 * the exact size when yt-dlp knows it, else its estimate.
 */
static json_t *
ngx_http_crest_downloads_formats_view(ngx_http_crest_downloads_ctx_t *ctx,
    json_t *rv)
{
    size_t   i;
    json_t  *out, *list, *f, *o, *v;

    static const char  *keys[][2] = {
        { "format_id", "formatId" }, { "ext", "ext" },
        { "format_note", "note" }, { "vcodec", "vcodec" },
        { "acodec", "acodec" }, { "width", "width" }, { "height", "height" },
        { "fps", "fps" }, { "tbr", "bitrate" }
    };

    out = json_object();
    list = json_array();

    if (out == NULL || list == NULL) {
        json_decref(out);
        json_decref(list);
        return NULL;
    }

    json_object_set_new(out, "url",
                        json_stringn((const char *) ctx->url.data,
                                     ctx->url.len));
    v = json_object_get(rv, "title");
    json_object_set(out, "title", json_is_string(v) ? v : json_null());
    v = json_object_get(rv, "duration");
    json_object_set(out, "duration", json_is_number(v) ? v : json_null());
    json_object_set_new(out, "formats", list);

    json_array_foreach(json_object_get(rv, "formats"), i, f) {
        o = json_object();
        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(out);
            return NULL;
        }

        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            v = json_object_get(f, keys[k][0]);
            json_object_set(o, keys[k][1], v ? v : json_null());
        }

        v = json_object_get(f, "filesize");
        if (!json_is_number(v)) {
            v = json_object_get(f, "filesize_approx");
        }

        json_object_set(o, "size", json_is_number(v) ? v : json_null());
    }

    return out;
}


static ngx_int_t
ngx_http_crest_downloads_formats_send(ngx_http_crest_downloads_ctx_t *ctx,
    const char *json, size_t len, ngx_uint_t cached)
{
    crest_jw_t           w;
    ngx_str_t            meta;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "formats");
    crest_jw_raw(&w, json, len);
    crest_jw_obj_end(&w);

    if (cached) {
        ngx_str_set(&meta, "\"cached\":true");

    } else {
        ngx_str_set(&meta, "\"cached\":false");
    }

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &out, &meta);
}


static void
ngx_http_crest_downloads_job_state(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    char                *dump;
    json_t              *rv, *view;
    size_t               argvlen[5], len;
    u_char              *msg;
    ngx_str_t            reason;
    const char          *argv[5];
    crest_buf_t          details;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;
    ctx->cmd = NULL;

    /* [finishedOn, returnvalue, failedReason]; a Redis hiccup is a poll
     * that saw nothing */
    if (status != NGX_CREST_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        if (ngx_current_msec >= ctx->deadline) {
            goto timeout;
        }

        ngx_add_timer(&ctx->poll, ctx->delay);
        ctx->delay = ngx_min(ctx->delay * 3 / 2, NGX_CREST_DL_POLL_MAX);
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);

    if (reply->element[1]->type != REDIS_REPLY_STRING) {
        /* failed: a URL the worker refused is the caller's to fix */
        reason.len = 0;
        reason.data = (u_char *) "";

        if (reply->element[2]->type == REDIS_REPLY_STRING) {
            reason.len = ngx_min(reply->element[2]->len, 1000);
            reason.data = ngx_http_crest_downloads_copy(r->pool,
                                                 reply->element[2]->str,
                                                 reason.len);
            if (reason.data == NULL) {
                ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }
        }

        if (ngx_strstr(reason.data, "URL refused") != NULL) {
            ngx_crest_finalize(r, ngx_crest_send_invalid(r, "url",
                                               (const char *) reason.data));
            return;
        }

        crest_buf_init(&details, &a);
        crest_buf_appends(&details, "{\"jobId\":");
        crest_json_escape(&details, (const char *) ctx->job_id.data,
                          ctx->job_id.len);
        crest_buf_appends(&details, ",\"reason\":");
        crest_json_escape(&details, (const char *) reason.data, reason.len);
        crest_buf_appendc(&details, '}');

        ngx_crest_finalize(r, ngx_crest_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                   CREST_ERR_EXTERNAL_SERVICE_ERROR,
                                   "the formats of this URL could not be "
                                   "listed", &details));
        return;
    }

    rv = json_loadb(reply->element[1]->str, reply->element[1]->len, 0, NULL);
    view = json_is_object(rv) ? ngx_http_crest_downloads_formats_view(ctx, rv)
                              : NULL;
    json_decref(rv);

    dump = view ? json_dumps(view, JSON_COMPACT) : NULL;
    json_decref(view);

    if (dump == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest downloads: formats job %V returned no object",
                      &ctx->job_id);
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = ngx_strlen(dump);

    /* cached for everyone: formats depend on the URL only.  Unbound: it
     * may outlive the request. */
    msg = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 1);
    if (msg) {
        ngx_sprintf(msg, "%T%Z", ctx->dlcf->formats_cache);

        argv[0] = "SET";
        argvlen[0] = 3;
        argv[1] = (const char *) ctx->cache_key;
        argvlen[1] = ngx_strlen(ctx->cache_key);
        argv[2] = dump;
        argvlen[2] = len;
        argv[3] = "EX";
        argvlen[3] = 2;
        argv[4] = (const char *) msg;
        argvlen[4] = ngx_strlen(msg);

        (void) ngx_crest_redis_command(5, argv, argvlen, 0, NULL, NULL,
                                       ngx_cycle->log);
    }

    ngx_crest_finalize(r, ngx_http_crest_downloads_formats_send(ctx, dump,
                                                               len, 0));
    free(dump);
    return;

timeout:

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&details, &a);
    crest_buf_appends(&details, "{\"jobId\":");
    crest_json_escape(&details, (const char *) ctx->job_id.data,
                      ctx->job_id.len);
    crest_buf_appendc(&details, '}');

    ngx_crest_finalize(r, ngx_crest_send_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                               CREST_ERR_SERVICE_UNAVAILABLE,
                               "the formats were not listed in time: follow "
                               "the job (GET /api/jobs/{jobId})", &details));
}


static void
ngx_http_crest_downloads_poll(ngx_event_t *ev)
{
    ngx_http_crest_downloads_ctx_t  *ctx = ev->data;

    size_t               argvlen[5];
    const char          *argv[5];
    ngx_http_request_t  *r;

    r = ctx->request;

    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = (const char *) ctx->job_key.data;
    argvlen[1] = ctx->job_key.len;
    argv[2] = "finishedOn";
    argvlen[2] = 10;
    argv[3] = "returnvalue";
    argvlen[3] = 11;
    argv[4] = "failedReason";
    argvlen[4] = 12;

    ctx->cmd = ngx_crest_redis_command(5, argv, argvlen, 0,
                                       ngx_http_crest_downloads_job_state,
                                       ctx, r->connection->log);

    if (ctx->cmd == NULL || ngx_crest_redis_bind(r, ctx->cmd) != NGX_OK) {
        if (ctx->cmd) {
            ngx_crest_redis_cancel(ctx->cmd);
        }

        ctx->cmd = NULL;
        ngx_http_crest_downloads_job_state(ctx, NGX_CREST_UNAVAILABLE, NULL);
    }
}


static void
ngx_http_crest_downloads_formats_enqueued(ngx_http_request_t *r,
    ngx_crest_job_t *job, void *data)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    ngx_str_t            queue;
    ngx_http_cleanup_t  *cln;

    if (job->result == NGX_CREST_JOB_NOT_CREATED
        || job->result == NGX_CREST_JOB_REFUSED)
    {
        ngx_crest_finalize(r, ngx_crest_job_send(r, job));
        return;
    }

    /* PENDING too: the reconciler adds the job, the wait covers it */
    ctx->job_id = job->id;
    ngx_str_set(&queue, "formats");

    if (ngx_crest_job_key(r, &queue, &job->id, &ctx->job_key) != NGX_OK) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_crest_downloads_poll_cleanup;
    cln->data = ctx;

    ctx->poll.handler = ngx_http_crest_downloads_poll;
    ctx->poll.data = ctx;
    ctx->poll.log = r->connection->log;
    ctx->delay = NGX_CREST_DL_POLL_FIRST;
    ctx->deadline = ngx_current_msec + ctx->dlcf->formats_timeout;

    /* a client that leaves ends the request, and the cleanup the polling */
    r->read_event_handler = ngx_http_test_reading;

    ngx_add_timer(&ctx->poll, ctx->delay);
}


static ngx_int_t
ngx_http_crest_downloads_formats_enqueue(ngx_http_crest_downloads_ctx_t *ctx)
{
    char                  *dump;
    json_t                *data;
    ngx_str_t              queue, name, text;
    ngx_crest_job_opts_t   opts;
    ngx_http_request_t    *r;

    r = ctx->request;

    data = json_pack("{s:s%}", "url", (const char *) ctx->url.data,
                     ctx->url.len);
    dump = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);

    if (dump == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = ngx_strlen(dump);
    text.data = ngx_http_crest_downloads_copy(r->pool, dump, text.len);
    free(dump);

    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* one attempt: the caller is waiting, a retry would come too late */
    ngx_memzero(&opts, sizeof(ngx_crest_job_opts_t));
    opts.attempts = 1;

    ngx_str_set(&queue, "formats");
    ngx_str_set(&name, "formats");

    return ngx_crest_job_enqueue(r, &queue, &name, &text, &opts,
                                 ngx_http_crest_downloads_formats_enqueued,
                                 ctx);
}


static void
ngx_http_crest_downloads_cache_got(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;
    ctx->cmd = NULL;

    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_STRING
        && reply->len > 0 && reply->str[0] == '{')
    {
        ngx_crest_finalize(r, ngx_http_crest_downloads_formats_send(ctx,
                                            reply->str, reply->len, 1));
        return;
    }

    if (status != NGX_CREST_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest downloads: formats cache not read: redis %s",
                      ngx_crest_status_text(status));
    }

    rc = ngx_http_crest_downloads_formats_enqueue(ctx);

    if (rc == NGX_DONE) {
        /* the enqueue holds the request now: our hold goes */
        r->main->count++;
    }

    ngx_crest_finalize(r, rc);
}


static void
ngx_http_crest_downloads_formats_next(ngx_http_crest_downloads_ctx_t *ctx)
{
    u_char               md[EVP_MAX_MD_SIZE], *p;
    size_t               argvlen[2];
    unsigned int         mdlen;
    const char          *argv[2];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (EVP_Digest(ctx->url.data, ctx->url.len, md, &mdlen, EVP_sha256(),
                   NULL)
        != 1)
    {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(ctx->cache_key, "crest:downloads:formats:", 24);
    ngx_http_crest_downloads_hex(p, md, 32);
    p[64] = '\0';

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (const char *) ctx->cache_key;
    argvlen[1] = 24 + 64;

    ctx->cmd = ngx_crest_redis_command(2, argv, argvlen, 0,
                                       ngx_http_crest_downloads_cache_got,
                                       ctx, r->connection->log);

    if (ctx->cmd == NULL || ngx_crest_redis_bind(r, ctx->cmd) != NGX_OK) {
        if (ctx->cmd) {
            ngx_crest_redis_cancel(ctx->cmd);
        }

        ngx_http_crest_downloads_cache_got(ctx, NGX_CREST_UNAVAILABLE, NULL);
        return;
    }

    r->read_event_handler = ngx_http_test_reading;
}


static ngx_int_t
ngx_http_crest_downloads_formats(ngx_http_crest_downloads_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    rc = ngx_crest_arg(r, "url", &ctx->url);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_crest_send_invalid(r, "url", "url is required");
    }

    if (ngx_http_crest_downloads_check_url(ctx, &rc) != NGX_OK) {
        return rc;
    }

    rc = ngx_http_crest_downloads_resolve(ctx,
                                          ngx_http_crest_downloads_formats_next);

    if (rc == NGX_OK) {
        /* held by us until the cache lookup answers */
        r->main->count++;
        ngx_http_crest_downloads_formats_next(ctx);
        return NGX_DONE;
    }

    return rc;
}


/* DELETE /api/downloads/{id} */

static ngx_int_t ngx_http_crest_downloads_delete(
    ngx_http_crest_downloads_ctx_t *ctx);


static void
ngx_http_crest_downloads_deleted_send(ngx_http_request_t *r,
    ngx_http_crest_downloads_ctx_t *ctx, ngx_str_t *job_id)
{
    crest_jw_t         w;
    crest_buf_t        out;
    crest_allocator_t  a;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_str(&w, (const char *) ctx->id);
    crest_jw_key(&w, "deleted");
    crest_jw_bool(&w, 1);
    crest_jw_key(&w, "deleteJobId");

    if (job_id) {
        crest_jw_strn(&w, (const char *) job_id->data, job_id->len);

    } else {
        crest_jw_null(&w);
    }

    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


static void
ngx_http_crest_downloads_delete_enqueued(ngx_http_request_t *r,
    ngx_crest_job_t *job, void *data)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    ngx_int_t  rc;

    if (job->result == NGX_CREST_JOB_REFUSED) {
        /* deleted meanwhile by another request (read again: 404), or its
         * keys changed (read again: the job gets the new ones) */
        rc = ngx_http_crest_downloads_delete(ctx);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        ngx_crest_finalize(r, rc);
        return;
    }

    if (job->result == NGX_CREST_JOB_NOT_CREATED) {
        ngx_crest_finalize(r, ngx_crest_job_send(r, job));
        return;
    }

    ngx_http_crest_downloads_deleted_send(r, ctx, &job->id);
}


static void
ngx_http_crest_downloads_unfinished_deleted(void *data,
    ngx_crest_status_e status, PGresult *res)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] != '0') {
        ngx_http_crest_downloads_deleted_send(r, ctx, NULL);
        return;
    }

    /* it completed (it has files now) or went away meanwhile: again */
    rc = ngx_http_crest_downloads_delete(ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    ngx_crest_finalize(r, rc);
}


static void
ngx_http_crest_downloads_delete_row(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    char                  *dump;
    json_t                *keys, *jd;
    ngx_int_t              rc;
    ngx_str_t              queue, name, text;
    const char            *values[2], *keyvals[3];
    ngx_crest_job_opts_t   opts;
    ngx_http_request_t    *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r, ngx_http_crest_downloads_not_found(r));
        return;
    }

    values[0] = (const char *) ctx->id;
    values[1] = (const char *) ctx->identity->user_id.data;

    if (PQgetisnull(res, 0, 0) && PQgetisnull(res, 0, 1)) {
        /*
         * No files yet: the row goes, and with it the download - a worker
         * running it finds the row gone at its next check, kills yt-dlp and
         * removes its scratch files (workers/download.c); one that has not
         * started fails it at once.  The job's row is marked cancelled in
         * the same statement.  Only a row still without files is deleted:
         * one that completed meanwhile goes the other way, with its files.
         */
        rc = ngx_crest_pg_request(r,
            "WITH d AS (DELETE FROM media_downloads WHERE id = $1::uuid "
            "AND user_id = $2::uuid AND storage_key IS NULL "
            "AND thumbnail_key IS NULL RETURNING job_id), "
            "j AS (UPDATE jobs SET status = 'cancelled', "
            "finished_at = coalesce(finished_at, now()) "
            "WHERE id::text IN (SELECT job_id FROM d) "
            "AND user_id = $2::uuid "
            "AND status IN ('pending', 'queued', 'active') RETURNING id) "
            "SELECT (SELECT count(*) FROM d)::text, "
            "(SELECT count(*) FROM j)::text",
            2, values, ngx_http_crest_downloads_unfinished_deleted, ctx);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        ngx_crest_finalize(r, rc);
        return;
    }

    /* stored files: the row goes with a job that removes them, in one
     * statement (the edge never touches storage itself) */
    keys = json_array();
    if (keys == NULL) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (!PQgetisnull(res, 0, 0)) {
        json_array_append_new(keys, json_string(PQgetvalue(res, 0, 0)));
    }

    if (!PQgetisnull(res, 0, 1)) {
        json_array_append_new(keys, json_string(PQgetvalue(res, 0, 1)));
    }

    jd = json_pack("{s:s, s:o}", "downloadId", (const char *) ctx->id,
                   "storageKeys", keys);
    dump = jd ? json_dumps(jd, JSON_COMPACT) : NULL;
    json_decref(jd);

    if (dump == NULL) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    text.len = ngx_strlen(dump);
    text.data = ngx_http_crest_downloads_copy(r->pool, dump, text.len);
    free(dump);

    if (text.data == NULL) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /*
     * The row goes only if it still names the keys read above: a download
     * that stored its thumbnail (or anything) meanwhile is read again, so
     * that the job removes every object the row named.
     */
    keyvals[0] = (const char *) ctx->id;
    keyvals[1] = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
    keyvals[2] = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);

    ngx_memzero(&opts, sizeof(ngx_crest_job_opts_t));
    opts.sql = "WITH d AS (DELETE FROM media_downloads WHERE id = $6::uuid "
               "AND user_id = $1::uuid "
               "AND storage_key IS NOT DISTINCT FROM $7::text "
               "AND thumbnail_key IS NOT DISTINCT FROM $8::text RETURNING id), "
               "j AS (INSERT INTO jobs (user_id, queue, name, data, "
               "max_attempts) SELECT $1::uuid, $2, $3, $4::jsonb, "
               "$5::integer FROM d RETURNING id) "
               "SELECT id::text FROM j";
    opts.nvalues = 3;
    opts.values = keyvals;

    ngx_str_set(&queue, "download");
    ngx_str_set(&name, "download-delete");

    rc = ngx_crest_job_enqueue(r, &queue, &name, &text, &opts,
                               ngx_http_crest_downloads_delete_enqueued, ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    ngx_crest_finalize(r, rc);
}


static ngx_int_t
ngx_http_crest_downloads_delete(ngx_http_crest_downloads_ctx_t *ctx)
{
    const char          *values[2];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (++ctx->tries > NGX_CREST_DL_DELETE_TRIES) {
        return ngx_crest_send_error(r, NGX_HTTP_CONFLICT, CREST_ERR_CONFLICT,
                                    "the download changed while it was being "
                                    "deleted: try again", NULL);
    }

    values[0] = (const char *) ctx->id;
    values[1] = (const char *) ctx->identity->user_id.data;

    return ngx_crest_pg_request(r,
        "SELECT storage_key, thumbnail_key FROM media_downloads "
        "WHERE id = $1::uuid AND user_id = $2::uuid",
        2, values, ngx_http_crest_downloads_delete_row, ctx);
}


/* GET /api/downloads/{id}/file and /thumbnail: a signed link */

/*
 * HMAC-SHA256 over "<path>\n<expires>", hex: the path is the decoded URI
 * nginx serves, so the link is valid for that one file until then.
 */
static ngx_int_t
ngx_http_crest_downloads_sign(ngx_str_t *secret, ngx_str_t *path,
    time_t expires, u_char *hex)
{
    u_char        md[EVP_MAX_MD_SIZE], *msg, *p;
    unsigned int  mdlen;

    msg = ngx_alloc(path->len + NGX_TIME_T_LEN + 2, ngx_cycle->log);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(msg, path->data, path->len);
    p = ngx_sprintf(p, "\n%T", expires);

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, msg, p - msg, md,
             &mdlen)
        == NULL || mdlen != 32)
    {
        ngx_free(msg);
        return NGX_ERROR;
    }

    ngx_free(msg);
    ngx_http_crest_downloads_hex(hex, md, 32);

    return NGX_OK;
}


/* 302 to url, which the body repeats with its expiry */
static ngx_int_t
ngx_http_crest_downloads_redirect(ngx_http_request_t *r, u_char *url,
    size_t len, time_t expires)
{
    crest_jw_t          w;
    crest_buf_t         out;
    ngx_table_elt_t    *h;
    crest_allocator_t   a;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = url;
    h->value.len = len;
    r->headers_out.location = h;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "url");
    crest_jw_strn(&w, (const char *) url, len);
    crest_jw_key(&w, "expiresAt");
    crest_jw_int(&w, expires);
    crest_jw_obj_end(&w);

    return ngx_crest_send_ok(r, NGX_HTTP_MOVED_TEMPORARILY, &out, NULL);
}


/* S3: a presigned GET of endpoint/bucket/key, made here, sent as is */
static ngx_int_t
ngx_http_crest_downloads_presigned(ngx_http_crest_downloads_ctx_t *ctx,
    ngx_http_crest_downloads_main_conf_t *dmcf, ngx_str_t *key)
{
    int                             n;
    char                            err[128];
    u_char                         *path, *url, *p;
    size_t                          size;
    ngx_http_request_t             *r;
    crest_sigv4_presign_t           ps;
    ngx_http_crest_downloads_s3_t  *s3;

    r = ctx->request;
    s3 = dmcf->s3;

    path = ngx_pnalloc(r->pool, s3->bucket.len + key->len + 3);
    if (path == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(path, "/%V/%V%Z", &s3->bucket, key);

    ngx_memzero(&ps, sizeof(crest_sigv4_presign_t));
    ps.method = "GET";
    ps.host = (const char *) s3->host.data;
    ps.path = (const char *) path;
    ps.region = (const char *) s3->region.data;
    ps.service = "s3";
    ps.access_key_id = (const char *) s3->key_id.data;
    ps.secret_key = (const char *) s3->secret.data;
    ps.now = ngx_time();
    ps.expires = (unsigned) ngx_min(ctx->dlcf->link_ttl,
                                    CREST_SIGV4_EXPIRES_MAX);

    size = s3->origin.len + 3 * (s3->bucket.len + key->len) + 1024;

    url = ngx_pnalloc(r->pool, size);
    if (url == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(url, s3->origin.data, s3->origin.len);

    n = crest_sigv4_presign(&ps, (char *) p, size - s3->origin.len, NULL,
                            err, sizeof(err));
    if (n < 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest downloads: no presigned URL for a download: %s",
                      err);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_crest_downloads_redirect(r, url, s3->origin.len + n,
                                             ps.now + ps.expires);
}


static void
ngx_http_crest_downloads_linked(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_downloads_ctx_t  *ctx = data;

    u_char                                *url, *p, sig[64];
    time_t                                 expires;
    ngx_str_t                              path, key;
    ngx_http_request_t                    *r;
    ngx_http_crest_downloads_main_conf_t  *dmcf;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r, ngx_http_crest_downloads_not_found(r));
        return;
    }

    if (ngx_strcmp(PQgetvalue(res, 0, 0), "completed") == 0
        && PQgetisnull(res, 0, 1))
    {
        /*
         * Completed, but the retention sweep removed its files
         * (sql/0007): waiting will not help, so not the 409 of a download
         * still running.
         */
        ngx_crest_finalize(r, ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND,
                                   CREST_ERR_NOT_FOUND,
                                   "the download's files have expired",
                                   NULL));
        return;
    }

    if (ngx_strcmp(PQgetvalue(res, 0, 0), "completed") != 0) {
        ngx_crest_finalize(r, ngx_crest_send_error(r, NGX_HTTP_CONFLICT,
                                   CREST_ERR_CONFLICT,
                                   "the download has not completed", NULL));
        return;
    }

    if (ctx->thumbnail && PQgetisnull(res, 0, 2)) {
        ngx_crest_finalize(r, ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND,
                                   CREST_ERR_NOT_FOUND,
                                   "the download has no thumbnail", NULL));
        return;
    }

    dmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_downloads_module);

    key.data = (u_char *) PQgetvalue(res, 0, ctx->thumbnail ? 2 : 1);
    key.len = ngx_strlen(key.data);

    if (dmcf->s3) {
        ngx_crest_finalize(r, ngx_http_crest_downloads_presigned(ctx, dmcf,
                                                                 &key));
        return;
    }

    if (dmcf->link_secret.len == 0 || dmcf->dir.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest downloads: no link can be made without "
                      "crest_downloads_link_secret_file and "
                      "crest_downloads_dir");
        ngx_crest_finalize(r, ngx_crest_send_error(r,
                                   NGX_HTTP_SERVICE_UNAVAILABLE,
                                   CREST_ERR_SERVICE_UNAVAILABLE,
                                   "file delivery is not configured", NULL));
        return;
    }

    path.len = dmcf->link_prefix.len + key.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(ngx_cpymem(path.data, dmcf->link_prefix.data,
                          dmcf->link_prefix.len),
               key.data, key.len);

    expires = ngx_time() + ctx->dlcf->link_ttl;

    if (ngx_http_crest_downloads_sign(&dmcf->link_secret, &path, expires, sig)
        != NGX_OK)
    {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* keys are of safe characters only (workers/storage.h): no escaping */
    url = ngx_pnalloc(r->pool, path.len + sizeof("?expires=&sig=")
                               + NGX_TIME_T_LEN + 64);
    if (url == NULL) {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(url, "%V?expires=%T&sig=%*s", &path, expires, 64, sig);

    ngx_crest_finalize(r, ngx_http_crest_downloads_redirect(r, url, p - url,
                                                            expires));
}


/* the signed location's check, in the preaccess phase (see the top) */
static ngx_int_t
ngx_http_crest_downloads_link_handler(ngx_http_request_t *r)
{
    u_char                                 sig[64];
    time_t                                 expires;
    ngx_str_t                              e, s;
    ngx_http_crest_downloads_loc_conf_t   *dlcf;
    ngx_http_crest_downloads_main_conf_t  *dmcf;

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_crest_downloads_module);

    if (!dlcf->link || r->main != r) {
        return NGX_DECLINED;
    }

    dmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_downloads_module);

    if (dmcf->link_secret.len == 0 || dmcf->dir.len == 0) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_arg(r, (u_char *) "expires", 7, &e) != NGX_OK
        || ngx_http_arg(r, (u_char *) "sig", 3, &s) != NGX_OK
        || s.len != 64 || e.len == 0 || e.len > 12)
    {
        return NGX_HTTP_FORBIDDEN;
    }

    expires = ngx_atotm(e.data, e.len);

    if (expires == NGX_ERROR || expires < ngx_time()) {
        return NGX_HTTP_FORBIDDEN;
    }

    if (ngx_http_crest_downloads_sign(&dmcf->link_secret, &r->uri, expires,
                                      sig)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (CRYPTO_memcmp(sig, s.data, 64) != 0) {
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_crest_downloads_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_crest_downloads_link_handler;

    return NGX_OK;
}


/* routing */

/* The path segment that ends at *end, and *end moved before its '/'. */
static ngx_uint_t
ngx_http_crest_downloads_segment(u_char *start, u_char **end, ngx_str_t *seg)
{
    u_char  *p;

    p = *end;

    if (p == start) {
        ngx_str_null(seg);
        return 0;
    }

    while (p > start && p[-1] != '/') {
        p--;
    }

    seg->data = p;
    seg->len = *end - p;

    *end = (p > start) ? p - 1 : p;

    return 1;
}


static ngx_int_t
ngx_http_crest_downloads_handler(ngx_http_request_t *r)
{
    u_char                          *end;
    ngx_int_t                        rc;
    ngx_str_t                        seg[3], *id, thumb;
    ngx_uint_t                       methods;
    const char                      *values[2];
    ngx_http_crest_downloads_ctx_t  *ctx;

    enum { LIST, CREATE, FORMATS, GET, DELETE, FILE_ } what;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_downloads_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->identity = ngx_crest_auth_identity(r);
    ctx->dlcf = ngx_http_get_module_loc_conf(r,
                                             ngx_http_crest_downloads_module);
    ngx_http_set_ctx(r, ctx, ngx_http_crest_downloads_module);

    if (ctx->identity == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED,
                                    "authentication required", NULL);
    }

    /* .../downloads, .../formats, .../{id}, .../{id}/{file,thumbnail} */
    end = r->uri.data + r->uri.len;

    ngx_http_crest_downloads_segment(r->uri.data, &end, &seg[2]);
    ngx_http_crest_downloads_segment(r->uri.data, &end, &seg[1]);
    ngx_http_crest_downloads_segment(r->uri.data, &end, &seg[0]);

    id = NULL;

    if (ngx_http_crest_downloads_is(&seg[2], "downloads")) {
        what = (r->method == NGX_HTTP_POST) ? CREATE : LIST;
        methods = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST;

    } else if (ngx_http_crest_downloads_is(&seg[1], "downloads")) {
        if (ngx_http_crest_downloads_is(&seg[2], "formats")) {
            what = FORMATS;
            methods = NGX_HTTP_GET;

        } else {
            what = (r->method == NGX_HTTP_DELETE) ? DELETE : GET;
            methods = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_DELETE;
            id = &seg[2];
        }

    } else if (ngx_http_crest_downloads_is(&seg[0], "downloads")
               && (ngx_http_crest_downloads_is(&seg[2], "file")
                   || ngx_http_crest_downloads_is(&seg[2], "thumbnail")))
    {
        what = FILE_;
        methods = NGX_HTTP_GET|NGX_HTTP_HEAD;
        id = &seg[1];
        ctx->thumbnail = seg[2].data[0] == 't';

    } else {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                    "no such endpoint", NULL);
    }

    if (!(r->method & methods)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    if (what == CREATE) {
        return ngx_crest_read_json_body(r, 1, ngx_http_crest_downloads_body);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (what == LIST) {
        return ngx_http_crest_downloads_list(ctx);
    }

    if (what == FORMATS) {
        return ngx_http_crest_downloads_formats(ctx);
    }

    /* a malformed id is a download that does not exist */
    if (!crest_is_uuid((const char *) id->data, id->len)) {
        return ngx_http_crest_downloads_not_found(r);
    }

    ngx_memcpy(ctx->id, id->data, 36);
    ctx->id[36] = '\0';

    if (what == DELETE) {
        rc = ngx_http_crest_downloads_delete(ctx);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
    }

    values[0] = (const char *) ctx->id;
    values[1] = (const char *) ctx->identity->user_id.data;

    if (what == FILE_) {
        if (ngx_crest_arg(r, "thumbnail", &thumb) == NGX_OK
            && ngx_http_crest_downloads_is(&thumb, "1"))
        {
            ctx->thumbnail = 1;
        }

        rc = ngx_crest_pg_request(r,
            "SELECT status, storage_key, thumbnail_key FROM media_downloads "
            "WHERE id = $1::uuid AND user_id = $2::uuid",
            2, values, ngx_http_crest_downloads_linked, ctx);

    } else {
        rc = ngx_crest_pg_request(r,
            "SELECT " NGX_CREST_DL_COLUMNS " FROM media_downloads "
            "WHERE id = $1::uuid AND user_id = $2::uuid",
            2, values, ngx_http_crest_downloads_got, ctx);
    }

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}
