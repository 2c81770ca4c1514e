/*
 * ngx_http_crest_trends_module: a user's own trend scrapes.
 *
 *   location /api/trends { crest_auth on; crest_trends; }
 *   location = /api/trends/scrape {
 *       crest_auth on; crest_quota scrape; crest_trends;
 *   }
 *
 *   POST   /api/trends/scrape    records a scrape and enqueues its job
 *   GET    /api/trends           the caller's scrapes, a page at a time
 *   GET    /api/trends/{id}      one scrape, with its results
 *   DELETE /api/trends/{id}      removes it; a job still to run is cancelled
 *
 * The scrape's row (trend_scrapes) and its job's row are written by one
 * statement through ngx_crest_job_enqueue's opts->sql, so neither exists
 * without the other.  The scrape's id is made here, because the job's data
 * must carry it.  The trend-scrape processor of crest-worker
 * (workers/trend_scrape.c) fills in the results.
 */

#include <openssl/rand.h>

#include "ngx_crest_pg.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_jobs.h"
#include "crest_json.h"
#include "crest_validate.h"


#define NGX_CREST_TRENDS_QUEUE          "trend-scrape"
#define NGX_CREST_TRENDS_JOB_NAME       "scrape"
#define NGX_CREST_TRENDS_KEYWORDS_MAX   10
#define NGX_CREST_TRENDS_KEYWORD_MAX    100
#define NGX_CREST_TRENDS_LIMIT_MAX      100
#define NGX_CREST_TRENDS_LIMIT_DEFAULT  10
/* past any real count of views, and exact in a double */
#define NGX_CREST_TRENDS_VIEWS_MAX      1000000000000000LL

#define NGX_CREST_TRENDS_TS(col)                                              \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/*
 * A job cancelled through POST /api/jobs/{id}/cancel before the worker saw
 * it leaves its scrape pending: the scrape is reported cancelled then.
 */
#define NGX_CREST_TRENDS_STATUS                                               \
    "CASE WHEN s.status IN ('pending', 'running') "                           \
    "AND j.status = 'cancelled' THEN 'cancelled' ELSE s.status END"

/* the columns of a scrape's answer, in ngx_http_crest_trends_col_e order */
#define NGX_CREST_TRENDS_COLUMNS                                              \
    "s.id::text, s.job_id::text, s.platform, to_json(s.keywords)::text, "     \
    "s.result_limit, s.filters::text, " NGX_CREST_TRENDS_STATUS ", "          \
    "s.error, s.result_count, " NGX_CREST_TRENDS_TS("s.created_at") ", "      \
    NGX_CREST_TRENDS_TS("s.updated_at") ", "                                  \
    NGX_CREST_TRENDS_TS("s.completed_at")

#define NGX_CREST_TRENDS_FROM                                                 \
    " FROM trend_scrapes s LEFT JOIN jobs j ON j.id = s.job_id "


typedef enum {
    NGX_CREST_TRENDS_COL_ID = 0,
    NGX_CREST_TRENDS_COL_JOB,
    NGX_CREST_TRENDS_COL_PLATFORM,
    NGX_CREST_TRENDS_COL_KEYWORDS,
    NGX_CREST_TRENDS_COL_LIMIT,
    NGX_CREST_TRENDS_COL_FILTERS,
    NGX_CREST_TRENDS_COL_STATUS,
    NGX_CREST_TRENDS_COL_ERROR,
    NGX_CREST_TRENDS_COL_COUNT,
    NGX_CREST_TRENDS_COL_CREATED,
    NGX_CREST_TRENDS_COL_UPDATED,
    NGX_CREST_TRENDS_COL_COMPLETED,
    NGX_CREST_TRENDS_COL_RESULTS,       /* GET /api/trends/{id} only */
    NGX_CREST_TRENDS_NCOLS
} ngx_http_crest_trends_col_e;


typedef struct {
    ngx_flag_t                 enabled;
} ngx_http_crest_trends_loc_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_crest_identity_t      *identity;
    u_char                     id[37];
    ngx_uint_t                 page;
    ngx_uint_t                 limit;
    /* POST: the scrape as answered, once the job's id is known */
    const char                *platform;
    json_int_t                 result_limit;
    ngx_str_t                  keywords;    /* JSON text */
    ngx_str_t                  filters;     /* JSON text */
} ngx_http_crest_trends_ctx_t;


static void *ngx_http_crest_trends_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_trends_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_crest_trends(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_trends_handler(ngx_http_request_t *r);


static ngx_command_t  ngx_http_crest_trends_commands[] = {

    { ngx_string("crest_trends"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_crest_trends,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_trends_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_trends_create_loc_conf, /* create location configuration */
    ngx_http_crest_trends_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_crest_trends_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_trends_module_ctx,     /* module context */
    ngx_http_crest_trends_commands,        /* module directives */
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


static const char  *ngx_http_crest_trends_statuses[] = {
    "pending", "running", "completed", "failed", "cancelled", NULL
};

static const char  *ngx_http_crest_trends_platforms[] = {
    "youtube", "tiktok", "x", "reddit", NULL
};


/* configuration */

static void *
ngx_http_crest_trends_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_trends_loc_conf_t  *tlcf;

    tlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_trends_loc_conf_t));
    if (tlcf == NULL) {
        return NULL;
    }

    tlcf->enabled = NGX_CONF_UNSET;

    return tlcf;
}


static char *
ngx_http_crest_trends_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_crest_trends_loc_conf_t  *prev = parent;
    ngx_http_crest_trends_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->enabled, prev->enabled, 0);

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_trends(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_trends_loc_conf_t  *tlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    static ngx_str_t  queue = ngx_string(NGX_CREST_TRENDS_QUEUE);

    if (tlcf->enabled != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    tlcf->enabled = 1;

    if (ngx_crest_jobs_need_queue(cf, &queue, "crest_trends") != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_trends_handler;

    return NGX_CONF_OK;
}


/* helpers */

static ngx_uint_t
ngx_http_crest_trends_is(ngx_str_t *s, const char *what)
{
    size_t  len;

    len = ngx_strlen(what);

    return s->len == len && ngx_strncmp(s->data, what, len) == 0;
}


static ngx_int_t
ngx_http_crest_trends_one_of(const char *s, size_t len, const char **list)
{
    ngx_uint_t  i;

    for (i = 0; list[i]; i++) {
        if (ngx_strlen(list[i]) == len && ngx_strncmp(list[i], s, len) == 0) {
            return i;
        }
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_crest_trends_not_found(ngx_http_request_t *r)
{
    return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                "no such scrape", NULL);
}


static u_char *
ngx_http_crest_trends_copy(ngx_pool_t *pool, const char *s, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s, len) = '\0';

    return p;
}


static ngx_int_t
ngx_http_crest_trends_dump(ngx_pool_t *pool, json_t *v, ngx_str_t *out)
{
    char  *dump;

    dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (dump == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(dump);
    out->data = ngx_http_crest_trends_copy(pool, dump, out->len);
    free(dump);

    return out->data ? NGX_OK : NGX_ERROR;
}


/* characters, not bytes: jansson has checked the UTF-8 already */
static size_t
ngx_http_crest_trends_chars(const char *s, size_t len)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        n += ((u_char) s[i] & 0xc0) != 0x80;
    }

    return n;
}


/* "en", "pt-BR", "zh-Hant": what YouTube's relevanceLanguage takes */
static ngx_uint_t
ngx_http_crest_trends_is_language(const char *s, size_t len)
{
    size_t  i, n;

    for (n = 0; n < len && isalpha((u_char) s[n]); n++) { /* void */ }

    if (n < 2 || n > 3) {
        return 0;
    }

    if (n == len) {
        return 1;
    }

    if (s[n] != '-' || len - n - 1 < 2 || len - n - 1 > 8) {
        return 0;
    }

    for (i = n + 1; i < len; i++) {
        if (!isalnum((u_char) s[i])) {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_crest_trends_uuid4(u_char *out)
{
    u_char      b[16];
    ngx_uint_t  i;
    u_char     *p;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return NGX_ERROR;
    }

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    p = out;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *p++ = '-';
        }

        p = ngx_sprintf(p, "%02xd", (u_int) b[i]);
    }

    *p = '\0';

    return NGX_OK;
}


/* a scrape's JSON from the columns of NGX_CREST_TRENDS_COLUMNS at row */
static void
ngx_http_crest_trends_row_json(crest_jw_t *w, PGresult *res, int row,
    int col0, ngx_uint_t results)
{
    ngx_uint_t  i;
    int         c;

    static const struct {
        const char  *name;
        ngx_uint_t   kind;      /* 0 string, 1 JSON or number */
    } fields[] = {
        { "id", 0 }, { "jobId", 0 }, { "platform", 0 }, { "keywords", 1 },
        { "limit", 1 }, { "filters", 1 }, { "status", 0 }, { "error", 0 },
        { "resultCount", 1 }, { "createdAt", 0 }, { "updatedAt", 0 },
        { "completedAt", 0 }, { "results", 1 }
    };

    crest_jw_obj_begin(w);

    for (i = 0; i < NGX_CREST_TRENDS_NCOLS; i++) {
        if (i == NGX_CREST_TRENDS_COL_RESULTS && !results) {
            break;
        }

        c = col0 + (int) i;

        crest_jw_key(w, fields[i].name);

        if (PQgetisnull(res, row, c)) {
            crest_jw_null(w);

        } else if (fields[i].kind == 0) {
            crest_jw_strn(w, PQgetvalue(res, row, c), PQgetlength(res, row, c));

        } else {
            /* jsonb, json and integer columns are valid JSON as they are */
            crest_jw_raw(w, PQgetvalue(res, row, c), PQgetlength(res, row, c));
        }
    }

    crest_jw_obj_end(w);
}


/* POST /api/trends/scrape */

static void
ngx_http_crest_trends_enqueued(ngx_http_request_t *r, ngx_crest_job_t *job,
    void *data)
{
    ngx_http_crest_trends_ctx_t  *ctx = data;

    crest_jw_t         w;
    crest_buf_t        out;
    crest_allocator_t  a;

    if (job->result != NGX_CREST_JOB_QUEUED
        && job->result != NGX_CREST_JOB_PENDING)
    {
        /* no rows: the error answer gives the quota unit back */
        ngx_crest_finalize(r, ngx_crest_job_send(r, job));
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "scrape");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_str(&w, (const char *) ctx->id);
    crest_jw_key(&w, "jobId");
    crest_jw_strn(&w, (const char *) job->id.data, job->id.len);
    crest_jw_key(&w, "platform");
    crest_jw_str(&w, ctx->platform);
    crest_jw_key(&w, "keywords");
    crest_jw_raw(&w, (const char *) ctx->keywords.data, ctx->keywords.len);
    crest_jw_key(&w, "limit");
    crest_jw_int(&w, ctx->result_limit);
    crest_jw_key(&w, "filters");
    crest_jw_raw(&w, (const char *) ctx->filters.data, ctx->filters.len);
    crest_jw_key(&w, "status");
    crest_jw_str(&w, "pending");
    crest_jw_key(&w, "error");
    crest_jw_null(&w);
    crest_jw_key(&w, "resultCount");
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

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_ACCEPTED, &out,
                                            NULL));
}


/*
 * Checks filters into out; NULL when valid, else the field at fault (and
 * *why the message).
 */
static const char *
ngx_http_crest_trends_filters(json_t *in, json_t *out, const char **why)
{
    json_t      *v;
    const char  *key, *s;
    json_int_t   n;

    if (!json_is_object(in)) {
        *why = "filters must be an object";
        return "filters";
    }

    json_object_foreach(in, key, v) {

        if (json_is_null(v)) {
            continue;
        }

        if (ngx_strcmp(key, "dateRange") == 0) {
            s = json_string_value(v);

            if (s == NULL
                || (ngx_strcmp(s, "1d") != 0 && ngx_strcmp(s, "7d") != 0
                    && ngx_strcmp(s, "30d") != 0))
            {
                *why = "filters.dateRange must be 1d, 7d or 30d";
                return "filters.dateRange";
            }

            json_object_set(out, key, v);
            continue;
        }

        if (ngx_strcmp(key, "minViews") == 0) {
            n = json_is_integer(v) ? json_integer_value(v) : -1;

            if (n < 0 || n > NGX_CREST_TRENDS_VIEWS_MAX) {
                *why = "filters.minViews must be an integer of at least 0";
                return "filters.minViews";
            }

            json_object_set(out, key, v);
            continue;
        }

        if (ngx_strcmp(key, "language") == 0) {
            s = json_string_value(v);

            if (s == NULL
                || !ngx_http_crest_trends_is_language(s,
                                                      json_string_length(v)))
            {
                *why = "filters.language must be a language code such as "
                       "en or pt-BR";
                return "filters.language";
            }

            json_object_set(out, key, v);
            continue;
        }

        *why = "unknown filter: filters are dateRange, minViews and "
               "language";
        return "filters";
    }

    return NULL;
}


static ngx_int_t
ngx_http_crest_trends_scrape_body(ngx_http_request_t *r, json_t *body)
{
    char                         *dump;
    size_t                        len;
    json_t                       *v, *k, *data, *keywords, *filters;
    ngx_int_t                     rc, p;
    ngx_str_t                     queue, name, text;
    ngx_uint_t                    i;
    json_int_t                    limit;
    const char                   *key, *s, *field, *why, *values[1];
    ngx_crest_job_opts_t          opts;
    ngx_http_crest_trends_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_trends_module);

    /* refused rather than ignored: a misspelt "keyword" must not pass */
    json_object_foreach(body, key, v) {
        if (ngx_strcmp(key, "platform") != 0
            && ngx_strcmp(key, "keywords") != 0
            && ngx_strcmp(key, "limit") != 0
            && ngx_strcmp(key, "filters") != 0)
        {
            return ngx_crest_send_invalid(r, key,
                                          "unknown field: a scrape takes "
                                          "platform, keywords, limit and "
                                          "filters");
        }
    }

    v = json_object_get(body, "platform");
    s = json_string_value(v);
    p = NGX_ERROR;

    if (s) {
        len = json_string_length(v);

        /* Kapture's name of X */
        if (len == 7 && ngx_strncmp(s, "twitter", 7) == 0) {
            s = "x";
            len = 1;
        }

        p = ngx_http_crest_trends_one_of(s, len,
                                         ngx_http_crest_trends_platforms);
    }

    if (p == NGX_ERROR) {
        return ngx_crest_send_invalid(r, "platform",
                                      "platform must be youtube, tiktok, "
                                      "x (or twitter) or reddit");
    }

    v = json_object_get(body, "keywords");

    if (!json_is_array(v) || json_array_size(v) == 0
        || json_array_size(v) > NGX_CREST_TRENDS_KEYWORDS_MAX)
    {
        return ngx_crest_send_invalid(r, "keywords",
                                      "keywords must be an array of 1 to "
                                      "10 strings");
    }

    json_array_foreach(v, i, k) {
        s = json_string_value(k);
        len = s ? json_string_length(k) : 0;

        /* one made of spaces only would search for everything */
        if (s == NULL || len == 0
            || ngx_http_crest_trends_chars(s, len)
               > NGX_CREST_TRENDS_KEYWORD_MAX
            || !crest_is_clean_text(s, len)
            || strspn(s, " \t") == len)
        {
            return ngx_crest_send_invalid(r, "keywords",
                                          "each keyword must be 1 to 100 "
                                          "characters of text");
        }
    }

    keywords = v;

    limit = NGX_CREST_TRENDS_LIMIT_DEFAULT;
    v = json_object_get(body, "limit");

    if (v && !json_is_null(v)) {
        limit = json_is_integer(v) ? json_integer_value(v) : 0;

        if (limit < 1 || limit > NGX_CREST_TRENDS_LIMIT_MAX) {
            return ngx_crest_send_invalid(r, "limit",
                                          "limit must be an integer from "
                                          "1 to 100");
        }
    }

    filters = json_object();
    if (filters == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = json_object_get(body, "filters");

    if (v && !json_is_null(v)) {
        field = ngx_http_crest_trends_filters(v, filters, &why);

        if (field) {
            json_decref(filters);
            return ngx_crest_send_invalid(r, field, why);
        }
    }

    if (ngx_http_crest_trends_uuid4(ctx->id) != NGX_OK) {
        json_decref(filters);
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "crest trends: RAND_bytes() failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the job's data: what the worker reads (workers/trend_scrape.c) */
    data = json_pack("{s:s, s:s, s:O, s:I, s:O}",
                     "scrapeId", (const char *) ctx->id,
                     "platform", ngx_http_crest_trends_platforms[p],
                     "keywords", keywords, "limit", limit,
                     "filters", filters);

    json_decref(filters);

    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->platform = ngx_http_crest_trends_platforms[p];
    ctx->result_limit = limit;

    if (ngx_http_crest_trends_dump(r->pool, json_object_get(data, "keywords"),
                                   &ctx->keywords) != NGX_OK
        || ngx_http_crest_trends_dump(r->pool,
                                      json_object_get(data, "filters"),
                                      &ctx->filters) != NGX_OK)
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
    text.data = ngx_http_crest_trends_copy(r->pool, dump, text.len);
    free(dump);

    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&queue, NGX_CREST_TRENDS_QUEUE);
    ngx_str_set(&name, NGX_CREST_TRENDS_JOB_NAME);

    /* the scrape's columns come from the job's data, checked above */
    values[0] = (const char *) ctx->id;

    ngx_memzero(&opts, sizeof(ngx_crest_job_opts_t));
    opts.sql =
        "WITH j AS (INSERT INTO jobs (user_id, queue, name, data, "
        "max_attempts) VALUES ($1::uuid, $2, $3, $4::jsonb, $5::integer) "
        "RETURNING id) "
        "INSERT INTO trend_scrapes (id, user_id, job_id, platform, keywords, "
        "result_limit, filters) "
        "SELECT $6::uuid, $1::uuid, j.id, $4::jsonb->>'platform', "
        "ARRAY(SELECT jsonb_array_elements_text($4::jsonb->'keywords')), "
        "($4::jsonb->>'limit')::integer, $4::jsonb->'filters' FROM j "
        "RETURNING job_id::text";
    opts.nvalues = 1;
    opts.values = values;

    rc = ngx_crest_job_enqueue(r, &queue, &name, &text, &opts,
                               ngx_http_crest_trends_enqueued, ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* GET /api/trends */

static void
ngx_http_crest_trends_listed(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_trends_ctx_t  *ctx = data;

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
    total = n ? ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                         PQgetlength(res, 0, 0))
              : 0;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "scrapes");
    crest_jw_arr_begin(&w);

    for (i = 0; i < n; i++) {
        /* the count comes with one row of nulls past the last page */
        if (PQgetisnull(res, i, 1)) {
            continue;
        }

        ngx_http_crest_trends_row_json(&w, res, i, 1, 0);
    }

    crest_jw_arr_end(&w);

    crest_envelope_pagination(&w, ctx->page, ctx->limit, total);

    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


static ngx_int_t
ngx_http_crest_trends_list(ngx_http_crest_trends_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_str_t            v;
    const char          *values[5];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_crest_page_args(r, &ctx->page, &ctx->limit, &rc) != NGX_OK) {
        return rc;
    }

    values[0] = (const char *) ctx->identity->user_id.data;
    values[1] = NULL;
    values[2] = NULL;

    rc = ngx_crest_arg(r, "status", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (ngx_http_crest_trends_one_of((const char *) v.data, v.len,
                                         ngx_http_crest_trends_statuses)
            == NGX_ERROR)
        {
            return ngx_crest_send_invalid(r, "status",
                                          "status must be pending, running, "
                                          "completed, failed or cancelled");
        }

        values[1] = (const char *) v.data;
    }

    rc = ngx_crest_arg(r, "platform", &v);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (ngx_http_crest_trends_is(&v, "twitter")) {
            ngx_str_set(&v, "x");
        }

        if (ngx_http_crest_trends_one_of((const char *) v.data, v.len,
                                         ngx_http_crest_trends_platforms)
            == NGX_ERROR)
        {
            return ngx_crest_send_invalid(r, "platform",
                                          "platform must be youtube, tiktok, "
                                          "x (or twitter) or reddit");
        }

        values[2] = (const char *) v.data;
    }

    if (ngx_crest_page_sql(r->pool, ctx->page, ctx->limit, &values[3],
                           &values[4])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the count and the page in one statement, as GET /api/jobs does */
    rc = ngx_crest_pg_request(r,
        "WITH f AS (SELECT " NGX_CREST_TRENDS_COLUMNS ", "
        "s.created_at AS c_at, s.id AS c_id, "
        NGX_CREST_TRENDS_STATUS " AS c_status" NGX_CREST_TRENDS_FROM
        "WHERE s.user_id = $1::uuid "
        "AND ($3::text IS NULL OR s.platform = $3)), "
        "g AS (SELECT * FROM f WHERE $2::text IS NULL OR c_status = $2) "
        "SELECT c.total, p.* FROM (SELECT count(*) AS total FROM g) c "
        "LEFT JOIN LATERAL (SELECT * FROM g "
        "ORDER BY c_at DESC, c_id DESC "
        "LIMIT $4::integer OFFSET $5::integer) p ON true",
        5, values, ngx_http_crest_trends_listed, ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* GET and DELETE /api/trends/{id} */

static void
ngx_http_crest_trends_got(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_trends_ctx_t  *ctx = data;

    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r, ngx_http_crest_trends_not_found(r));
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "scrape");
    ngx_http_crest_trends_row_json(&w, res, 0, 0, 1);
    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


static void
ngx_http_crest_trends_deleted(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_trends_ctx_t  *ctx = data;

    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r, ngx_http_crest_trends_not_found(r));
        return;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_str(&w, (const char *) ctx->id);
    crest_jw_key(&w, "deleted");
    crest_jw_bool(&w, 1);
    crest_jw_key(&w, "jobCancelled");
    crest_jw_bool(&w, PQgetvalue(res, 0, 0)[0] == 't');
    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


/* routing */

static ngx_int_t
ngx_http_crest_trends_handler(ngx_http_request_t *r)
{
    u_char                       *p, *end;
    ngx_int_t                     rc;
    ngx_str_t                     seg, rest;
    ngx_uint_t                    methods;
    const char                   *values[2];
    ngx_http_crest_trends_ctx_t  *ctx;

    enum { LIST, SCRAPE, ONE } what;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_trends_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->identity = ngx_crest_auth_identity(r);
    ngx_http_set_ctx(r, ctx, ngx_http_crest_trends_module);

    if (ctx->identity == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED,
                                    "authentication required", NULL);
    }

    /* .../trends, .../trends/scrape, .../trends/{id} */
    end = r->uri.data + r->uri.len;

    if (end > r->uri.data && end[-1] == '/') {
        end--;
    }

    p = end;

    while (p > r->uri.data && p[-1] != '/') {
        p--;
    }

    seg.data = p;
    seg.len = end - p;

    rest.data = r->uri.data;
    rest.len = (p > r->uri.data) ? (size_t) (p - 1 - r->uri.data) : 0;

    if (ngx_http_crest_trends_is(&seg, "trends")) {
        what = LIST;
        methods = NGX_HTTP_GET|NGX_HTTP_HEAD;

    } else if (rest.len >= 7
               && ngx_strncmp(rest.data + rest.len - 7, "/trends", 7) == 0)
    {
        if (ngx_http_crest_trends_is(&seg, "scrape")) {
            what = SCRAPE;
            methods = NGX_HTTP_POST;

        } else {
            what = ONE;
            methods = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_DELETE;
        }

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

    if (what == SCRAPE) {
        return ngx_crest_read_json_body(r, 1,
                                        ngx_http_crest_trends_scrape_body);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (what == LIST) {
        return ngx_http_crest_trends_list(ctx);
    }

    /* a malformed id is a scrape that does not exist */
    if (!crest_is_uuid((const char *) seg.data, seg.len)) {
        return ngx_http_crest_trends_not_found(r);
    }

    ngx_memcpy(ctx->id, seg.data, 36);
    ctx->id[36] = '\0';

    values[0] = (const char *) ctx->id;
    values[1] = (const char *) ctx->identity->user_id.data;

    if (r->method == NGX_HTTP_DELETE) {
        /*
         * The row goes, and a job that has not finished is cancelled in
         * the same statement: the worker then finds no row and leaves
         * the job be, and the job's row never claims work still to come
         * for a scrape that is gone.
         */
        rc = ngx_crest_pg_request(r,
            "WITH s AS (DELETE FROM trend_scrapes WHERE id = $1::uuid "
            "AND user_id = $2::uuid RETURNING job_id), "
            "j AS (UPDATE jobs SET status = 'cancelled', "
            "finished_at = coalesce(finished_at, now()) "
            "WHERE id IN (SELECT job_id FROM s) "
            "AND status IN ('pending', 'queued', 'active') RETURNING id) "
            "SELECT EXISTS (SELECT 1 FROM j) FROM s",
            2, values, ngx_http_crest_trends_deleted, ctx);

    } else {
        rc = ngx_crest_pg_request(r,
            "SELECT " NGX_CREST_TRENDS_COLUMNS ", s.results::text"
            NGX_CREST_TRENDS_FROM
            "WHERE s.id = $1::uuid AND s.user_id = $2::uuid",
            2, values, ngx_http_crest_trends_got, ctx);
    }

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}
