/*
 * The trend-scrape processor: a user's own keyword scrape (POST
 * /api/trends/scrape) on one platform, its results written into the
 * scrape's row of trend_scrapes.
 *
 * Job data (the edge checked it; checked again here):
 *   {"scrapeId": uuid, "platform": "youtube"|"tiktok"|"x"|"reddit",
 *    "keywords": [1-10 strings], "limit": 1-100,
 *    "filters": {"dateRange": "1d"|"7d"|"30d", "minViews": n,
 *                "language": "en"}}
 *
 * Platforms (every call through trending.c's guards: circuit breaker,
 * rate limits, retries, YouTube's daily quota):
 *   youtube  search.list (q = the keywords joined by "|", YouTube's OR,
 *            order=viewCount, publishedAfter, relevanceLanguage), then
 *            videos.list?id= for the counts; a second page past 50
 *   tiktok,  the Apify actors of trending-refresh, run synchronously, with
 *   x        the input of CREST_TRENDING_APIFY_{TIKTOK,X}_SCRAPE_INPUT
 *            (see tsc_apify_input) or a default
 *   reddit   /search.json?q=<keywords joined by " OR ">&sort=top&t=...
 *
 * Then, on every platform: records older than dateRange or under minViews
 * (a count the platform does not give counts as under) are dropped, at
 * most limit are kept, ranked 1 to n in the platform's order.
 *
 * The row: pending -> running -> completed (results, resultCount) or
 * failed (error).  A row deleted or cancelled meanwhile is left alone and
 * the job completes with {"skipped": ...}.  Errors that retrying cannot
 * mend (a key refused, YouTube's quota spent, bad data) fail the row and
 * the job at once; others fail the row on the job's last attempt only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "clock.h"
#include "jobrows.h"
#include "log.h"
#include "processor.h"
#include "trending.h"


#define TSC_KEYWORDS_MAX  10
#define TSC_LIMIT_MAX     100
#define TSC_YT_PAGE       50


typedef struct {
    const char            *id;
    const char            *platform;
    const json_t          *keywords;
    long                   limit;
    long                   days;        /* 0: no dateRange */
    json_int_t             min_views;   /* -1: none */
    const char            *language;    /* NULL: none */
    int64_t                since_ms;    /* with days */
    char                   since[32];   /* ISO-8601 UTC of since_ms */
    crest_trending_run_t  *run;
    char                   err[768];
} tsc_t;


static const char  tsc_claim_sql[] =
    /* a job cancelled through /api/jobs cancels its scrape */
    "WITH c AS (SELECT s.id, coalesce(j.status = 'cancelled', false) AS gone "
    "FROM trend_scrapes s LEFT JOIN jobs j ON j.id = s.job_id "
    "WHERE s.id = $1::uuid AND s.status IN ('pending', 'running') "
    "FOR UPDATE OF s) "
    "UPDATE trend_scrapes t SET "
    "status = CASE WHEN c.gone THEN 'cancelled' ELSE 'running' END, "
    "completed_at = CASE WHEN c.gone THEN now() END "
    "FROM c WHERE t.id = c.id RETURNING t.status";

static const char  tsc_done_sql[] =
    "UPDATE trend_scrapes SET status = 'completed', results = $2::jsonb, "
    "result_count = $3::integer, error = NULL, completed_at = now() "
    "WHERE id = $1::uuid AND status = 'running' RETURNING id";

static const char  tsc_failed_sql[] =
    "UPDATE trend_scrapes SET status = 'failed', error = $2, "
    "completed_at = now() "
    "WHERE id = $1::uuid AND status IN ('pending', 'running') RETURNING id";

/* a failed attempt that will be retried: the row says why meanwhile */
static const char  tsc_retry_sql[] =
    "UPDATE trend_scrapes SET error = $2 "
    "WHERE id = $1::uuid AND status = 'running'";


/* ---- the data ---------------------------------------------------------- */

static int
tsc_parse(tsc_t *s, const json_t *d)
{
    const json_t  *f, *v;
    const char    *p, *key;
    size_t         i, n;
    json_int_t     lim;

    if (!json_is_object(d)) {
        snprintf(s->err, sizeof(s->err), "data must be an object");
        return -1;
    }

    s->id = json_string_value(json_object_get(d, "scrapeId"));

    if (s->id == NULL || !crest_job_id_is_uuid(s->id)) {
        s->id = NULL;
        snprintf(s->err, sizeof(s->err), "data.scrapeId must be a uuid");
        return -1;
    }

    p = json_string_value(json_object_get(d, "platform"));

    if (p && strcmp(p, "youtube") == 0) {
        s->platform = "youtube";
    } else if (p && strcmp(p, "tiktok") == 0) {
        s->platform = "tiktok";
    } else if (p && strcmp(p, "x") == 0) {
        s->platform = "x";
    } else if (p && strcmp(p, "reddit") == 0) {
        s->platform = "reddit";
    } else {
        snprintf(s->err, sizeof(s->err), "data.platform must be youtube, "
                 "tiktok, x or reddit");
        return -1;
    }

    s->keywords = json_object_get(d, "keywords");
    n = json_array_size(s->keywords);

    if (!json_is_array(s->keywords) || n == 0 || n > TSC_KEYWORDS_MAX) {
        snprintf(s->err, sizeof(s->err), "data.keywords must be 1 to 10 "
                 "strings");
        return -1;
    }

    json_array_foreach(s->keywords, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0
            || json_string_length(v) > 400)
        {
            snprintf(s->err, sizeof(s->err), "data.keywords must be 1 to 10 "
                     "strings");
            return -1;
        }
    }

    lim = json_integer_value(json_object_get(d, "limit"));
    s->limit = (lim >= 1 && lim <= TSC_LIMIT_MAX) ? (long) lim : 10;

    s->min_views = -1;
    f = json_object_get(d, "filters");

    json_object_foreach((json_t *) f, key, v) {
        if (strcmp(key, "dateRange") == 0 && json_is_string(v)) {
            p = json_string_value(v);
            s->days = strcmp(p, "1d") == 0 ? 1 : strcmp(p, "7d") == 0 ? 7
                      : strcmp(p, "30d") == 0 ? 30 : -1;
            if (s->days < 0) {
                snprintf(s->err, sizeof(s->err), "data.filters.dateRange "
                         "must be 1d, 7d or 30d");
                return -1;
            }
        } else if (strcmp(key, "minViews") == 0 && json_is_integer(v)
                   && json_integer_value(v) >= 0)
        {
            s->min_views = json_integer_value(v);
        } else if (strcmp(key, "language") == 0 && json_is_string(v)
                   && json_string_length(v) >= 2
                   && json_string_length(v) <= 12
                   && strspn(json_string_value(v), "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz0123456789-")
                      == json_string_length(v))
        {
            s->language = json_string_value(v);
        } else if (!json_is_null(v)) {
            snprintf(s->err, sizeof(s->err), "data.filters.%.40s is not "
                     "valid", key);
            return -1;
        }
    }

    if (s->days) {
        time_t     t;
        struct tm  tm;

        s->since_ms = crest_trending_now_ms() - (int64_t) s->days * 86400000;
        t = (time_t) (s->since_ms / 1000);
        gmtime_r(&t, &tm);
        strftime(s->since, sizeof(s->since), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }

    return 0;
}


/* The keywords joined by sep, URL-escaped; free with curl_free. */
static char *
tsc_query(tsc_t *s, const char *sep)
{
    crest_buf_t    b;
    const json_t  *v;
    size_t         i;
    char          *q;

    crest_buf_init(&b, &crest_malloc_allocator);

    json_array_foreach(s->keywords, i, v) {
        if (i) {
            crest_buf_appends(&b, sep);
        }
        crest_buf_append(&b, json_string_value(v), json_string_length(v));
    }

    q = crest_buf_failed(&b) ? NULL
        : curl_easy_escape(NULL, b.data ? b.data : "", (int) b.len);
    crest_buf_free(&b);

    return q;
}


static int
tsc_passes(tsc_t *s, const json_t *rec)
{
    const json_t  *v;
    const char    *at;

    if (s->min_views > 0) {
        v = json_object_get(rec, "viewCount");
        if (!json_is_integer(v) || json_integer_value(v) < s->min_views) {
            return 0;
        }
    }

    if (s->days) {
        /* ISO-8601 UTC of one format compares as text */
        at = json_string_value(json_object_get(rec, "publishedAt"));
        if (at == NULL || strncmp(at, s->since, 19) < 0) {
            return 0;
        }
    }

    return 1;
}


static long
tsc_passing(tsc_t *s, const json_t *items)
{
    const json_t  *rec;
    size_t         i;
    long           n = 0;

    json_array_foreach(items, i, rec) {
        n += tsc_passes(s, rec);
    }

    return n;
}


/* ---- the platforms ----------------------------------------------------- */

static crest_trending_rc_t
tsc_youtube(tsc_t *s, json_t *items)
{
    const crest_trending_conf_t  *conf = crest_trending_conf();
    crest_trending_rc_t           rc = CREST_TRENDING_OK;
    crest_buf_t                   url, ids;
    json_t                       *resp = NULL;
    const json_t                 *it;
    const char                   *id, *tok;
    char                         *key, *q, *page = NULL, *lang = NULL;
    long                          n, pages;
    size_t                        i;

    if (conf->youtube_key == NULL) {
        snprintf(s->err, sizeof(s->err),
                 "youtube: CREST_TRENDING_YOUTUBE_API_KEY is not set");
        return CREST_TRENDING_FINAL;
    }

    key = curl_easy_escape(NULL, conf->youtube_key, 0);
    q = tsc_query(s, "|");
    if (s->language) {
        lang = curl_easy_escape(NULL, s->language, 0);
    }

    crest_buf_init(&url, &crest_malloc_allocator);
    crest_buf_init(&ids, &crest_malloc_allocator);

    /* with filters, whole pages: some of the videos will be dropped */
    n = (s->min_views > 0 || s->days) ? TSC_YT_PAGE
        : s->limit < TSC_YT_PAGE ? s->limit : TSC_YT_PAGE;

    for (pages = 0; pages < 2 && tsc_passing(s, items) < s->limit; pages++) {
        crest_buf_reset(&url);
        crest_buf_appendf(&url, "%s/youtube/v3/search?part=snippet&type=video"
                          "&order=viewCount&maxResults=%ld&q=%s",
                          conf->youtube_base, n, q ? q : "");
        if (s->days) {
            crest_buf_appendf(&url, "&publishedAfter=%s", s->since);
        }
        if (lang) {
            crest_buf_appendf(&url, "&relevanceLanguage=%s", lang);
        }
        if (page) {
            crest_buf_appendf(&url, "&pageToken=%s", page);
        }
        crest_buf_appendf(&url, "&key=%s", key ? key : "");
        crest_buf_appendc(&url, '\0');

        rc = crest_trending_call(s->run, url.data, "search.list", NULL, NULL,
                                 "search", conf->timeout_ms, &resp);
        if (rc != CREST_TRENDING_OK) {
            break;
        }

        if (!json_is_array(json_object_get(resp, "items"))) {
            snprintf(s->err, sizeof(s->err), "youtube search.list: the "
                     "answer has no items array");
            rc = CREST_TRENDING_RETRY;
            break;
        }

        crest_buf_reset(&ids);

        json_array_foreach(json_object_get(resp, "items"), i, it) {
            id = json_string_value(json_object_get(json_object_get(it, "id"),
                                                   "videoId"));
            if (id && i < TSC_YT_PAGE && strlen(id) <= 64
                && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                          "tuvwxyz0123456789_-") == strlen(id))
            {
                crest_buf_appendf(&ids, "%s%s", ids.len ? "," : "", id);
            }
        }

        curl_free(page);
        tok = json_string_value(json_object_get(resp, "nextPageToken"));
        page = tok ? curl_easy_escape(NULL, tok, 0) : NULL;
        json_decref(resp);
        resp = NULL;

        if (ids.len == 0) {
            break;
        }

        crest_buf_appendc(&ids, '\0');
        crest_buf_reset(&url);
        crest_buf_appendf(&url, "%s/youtube/v3/videos?part=snippet,statistics,"
                          "contentDetails&id=%s&maxResults=%d&key=%s",
                          conf->youtube_base, ids.data, TSC_YT_PAGE,
                          key ? key : "");
        crest_buf_appendc(&url, '\0');

        rc = crest_trending_call(s->run, url.data, "videos.list?id", NULL,
                                 NULL, "videos", conf->timeout_ms, &resp);
        if (rc != CREST_TRENDING_OK) {
            break;
        }

        if (crest_trending_norm_youtube(resp, "", "",
                                        (int) json_array_size(items) + 1,
                                        items) < 0)
        {
            snprintf(s->err, sizeof(s->err), "youtube videos.list: the "
                     "answer has no items array");
            rc = CREST_TRENDING_RETRY;
            break;
        }

        json_decref(resp);
        resp = NULL;

        if (page == NULL) {
            break;
        }
    }

    if (rc == CREST_TRENDING_QUOTA) {
        snprintf(s->err, sizeof(s->err), "%s",
                 crest_trending_run_error(s->run));
    }

    json_decref(resp);
    curl_free(page);
    curl_free(lang);
    curl_free(q);
    curl_free(key);
    crest_buf_free(&url);
    crest_buf_free(&ids);

    return rc;
}


/*
 * The actor's input: CREST_TRENDING_APIFY_<TIKTOK|X>_SCRAPE_INPUT, a JSON
 * object whose string values "{keywords}" (the array), "{query}" (the
 * keywords joined by " OR "), "{limit}", "{since}" (YYYY-MM-DD) and
 * "{language}" are filled in (members whose value is missing are left
 * out); else the input the default actors take.
 */
static json_t *
tsc_apify_input(tsc_t *s, int x)
{
    json_t        *in, *v;
    const char    *tmpl, *k, *str;
    const json_t  *kw;
    void          *tmp;
    size_t         i;
    crest_buf_t    q;
    char           day[16];

    tmpl = getenv(x ? "CREST_TRENDING_APIFY_X_SCRAPE_INPUT"
                    : "CREST_TRENDING_APIFY_TIKTOK_SCRAPE_INPUT");

    snprintf(day, sizeof(day), "%.10s", s->since);

    in = tmpl && tmpl[0] ? json_loads(tmpl, 0, NULL) : NULL;

    if (!json_is_object(in)) {
        if (in || (tmpl && tmpl[0])) {
            crest_log(CREST_LOG_WARN, "trend-scrape: the Apify input setting "
                      "is not a JSON object, the default is used",
                      CREST_LS("platform", s->platform));
        }
        json_decref(in);

        if (x) {
            in = json_pack("{s:O, s:I, s:s}", "searchTerms", s->keywords,
                           "maxItems", (json_int_t) s->limit, "sort", "Top");
            if (s->days) {
                json_object_set_new(in, "start", json_string(day));
            }
            if (s->language) {
                json_object_set_new(in, "tweetLanguage",
                                    json_string(s->language));
            }
        } else {
            in = json_pack("{s:O, s:I, s:s}", "searchQueries", s->keywords,
                           "resultsPerPage", (json_int_t) s->limit,
                           "searchSection", "/video");
        }

        return in;
    }

    json_object_foreach_safe(in, tmp, k, v) {
        str = json_string_value(v);
        if (str == NULL) {
            continue;
        }

        if (strcmp(str, "{keywords}") == 0) {
            json_object_set(in, k, (json_t *) s->keywords);
        } else if (strcmp(str, "{query}") == 0) {
            crest_buf_init(&q, &crest_malloc_allocator);
            json_array_foreach(s->keywords, i, kw) {
                crest_buf_appendf(&q, "%s%s", i ? " OR " : "",
                                  json_string_value(kw));
            }
            crest_buf_appendc(&q, '\0');
            json_object_set_new(in, k, json_string(crest_buf_failed(&q)
                                                   ? "" : q.data));
            crest_buf_free(&q);
        } else if (strcmp(str, "{limit}") == 0) {
            json_object_set_new(in, k, json_integer(s->limit));
        } else if (strcmp(str, "{since}") == 0) {
            if (s->days) {
                json_object_set_new(in, k, json_string(day));
            } else {
                json_object_del(in, k);
            }
        } else if (strcmp(str, "{language}") == 0) {
            if (s->language) {
                json_object_set_new(in, k, json_string(s->language));
            } else {
                json_object_del(in, k);
            }
        }
    }

    return in;
}


static crest_trending_rc_t
tsc_apify(tsc_t *s, json_t *items, int x)
{
    const crest_trending_conf_t  *conf = crest_trending_conf();
    crest_trending_rc_t           rc;
    crest_buf_t                   url;
    json_t                       *in, *resp = NULL;
    const char                   *actor, *hdrs[2];
    char                         *body, auth[600], log_url[200];
    int                           n;

    if (conf->apify_token == NULL) {
        snprintf(s->err, sizeof(s->err),
                 "%s: CREST_TRENDING_APIFY_TOKEN is not set", s->platform);
        return CREST_TRENDING_FINAL;
    }

    actor = x ? conf->apify_x_actor : conf->apify_tiktok_actor;

    if (strlen(actor) > 150 || strspn(actor, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "abcdefghijklmnopqrstuvwxyz0123456789_.-~") != strlen(actor))
    {
        snprintf(s->err, sizeof(s->err), "%s: the Apify actor id must be "
                 "owner~name", s->platform);
        return CREST_TRENDING_FINAL;
    }

    in = tsc_apify_input(s, x);
    body = in ? json_dumps(in, JSON_COMPACT) : NULL;
    json_decref(in);

    if (body == NULL) {
        snprintf(s->err, sizeof(s->err), "out of memory");
        return CREST_TRENDING_RETRY;
    }

    crest_buf_init(&url, &crest_malloc_allocator);
    crest_buf_appendf(&url, "%s/v2/acts/%s/run-sync-get-dataset-items"
                      "?format=json&clean=true&maxItems=%ld&timeout=%ld",
                      conf->apify_base, actor, s->limit,
                      conf->apify_timeout_ms / 1000 > 5
                      ? conf->apify_timeout_ms / 1000 - 5 : 1);
    crest_buf_appendc(&url, '\0');
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             conf->apify_token);
    hdrs[0] = auth;
    hdrs[1] = NULL;
    snprintf(log_url, sizeof(log_url), "apify %s", actor);

    rc = crest_trending_call(s->run, url.data, log_url, hdrs, body, NULL,
                             conf->apify_timeout_ms, &resp);
    free(body);
    crest_buf_free(&url);

    if (rc != CREST_TRENDING_OK) {
        return rc;
    }

    n = x ? crest_trending_norm_x(resp, "", "", 1, items)
          : crest_trending_norm_tiktok(resp, "", "", 1, items);
    json_decref(resp);

    if (n < 0) {
        snprintf(s->err, sizeof(s->err), "%s: apify answered no items "
                 "array", s->platform);
        return CREST_TRENDING_RETRY;
    }

    return CREST_TRENDING_OK;
}


static crest_trending_rc_t
tsc_reddit(tsc_t *s, json_t *items)
{
    const crest_trending_conf_t  *conf = crest_trending_conf();
    crest_trending_rc_t           rc;
    crest_buf_t                   url;
    json_t                       *resp = NULL;
    const char                   *hdrs[2], *t;
    char                         *q, ua[600];

    t = s->days == 1 ? "day" : s->days == 7 ? "week"
        : s->days == 30 ? "month" : "all";
    q = tsc_query(s, " OR ");

    crest_buf_init(&url, &crest_malloc_allocator);
    crest_buf_appendf(&url, "%s/search.json?q=%s&sort=top&t=%s&type=link"
                      "&limit=%ld&raw_json=1", conf->reddit_base,
                      q ? q : "", t,
                      s->min_views > 0 ? (long) TSC_LIMIT_MAX : s->limit);
    crest_buf_appendc(&url, '\0');
    curl_free(q);

    snprintf(ua, sizeof(ua), "User-Agent: %s", conf->reddit_user_agent);
    hdrs[0] = ua;
    hdrs[1] = NULL;

    rc = crest_trending_call(s->run, url.data, "/search.json", hdrs, NULL,
                             NULL, conf->timeout_ms, &resp);
    crest_buf_free(&url);

    if (rc != CREST_TRENDING_OK) {
        return rc;
    }

    if (crest_trending_norm_reddit(resp, "", "", 1, items) < 0) {
        json_decref(resp);
        snprintf(s->err, sizeof(s->err), "reddit: the answer is not a "
                 "Listing");
        return CREST_TRENDING_RETRY;
    }

    json_decref(resp);

    return CREST_TRENDING_OK;
}


/* ---- filters and the row ----------------------------------------------- */

/* The records that pass the filters, at most limit, ranked 1 to n. */
static json_t *
tsc_filter(tsc_t *s, json_t *items)
{
    json_t  *kept, *rec;
    size_t   i;

    kept = json_array();
    if (kept == NULL) {
        return NULL;
    }

    json_array_foreach(items, i, rec) {
        if ((long) json_array_size(kept) >= s->limit) {
            break;
        }

        if (!tsc_passes(s, rec)) {
            continue;
        }

        json_object_set_new(rec, "rank",
                            json_integer((json_int_t) json_array_size(kept)
                                         + 1));
        json_array_append(kept, rec);
    }

    return kept;
}


/* Runs one statement on the thread's connection; the rows, or -1. */
static int
tsc_exec(tsc_t *s, const char *sql, int n, const char *const *params)
{
    crest_pg_conn_t  *pg = crest_trending_run_pg(s->run);
    PGresult         *res;
    int               rows;

    if (!crest_pg_conn_tick(pg, crest_mono_ms())) {
        snprintf(s->err, sizeof(s->err), "postgres is down");
        return -1;
    }

    res = crest_pg_conn_exec_params(pg, sql, n, params);

    if (res == NULL || (PQresultStatus(res) != PGRES_TUPLES_OK
                        && PQresultStatus(res) != PGRES_COMMAND_OK))
    {
        snprintf(s->err, sizeof(s->err), "postgres: %s",
                 res ? PQresultErrorMessage(res) : "no answer");
        if (res) {
            PQclear(res);
        }
        return -1;
    }

    rows = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res)
           : atoi(PQcmdTuples(res));

    if (rows > 0 && PQresultStatus(res) == PGRES_TUPLES_OK
        && strcmp(PQgetvalue(res, 0, 0), "cancelled") == 0)
    {
        rows = 0;       /* the claim found the job cancelled */
    }

    PQclear(res);

    return rows;
}


static crest_job_result_t
tsc_skipped(tsc_t *s, crest_buf_t *out, const char *why)
{
    crest_log(CREST_LOG_INFO, "trend-scrape: row left alone",
              CREST_LS("scrape", s->id), CREST_LS("why", why));
    crest_buf_appendf(out, "{\"scrapeId\":\"%s\",\"skipped\":\"%s\"}", s->id,
                      why);
    return CREST_JOB_DONE;
}


static crest_job_result_t
tsc_fail(tsc_t *s, crest_buf_t *out, int final)
{
    const char  *p[2];
    char         why[sizeof(s->err)];

    /* tsc_exec writes its own error into s->err: the reason is kept */
    memcpy(why, s->err, sizeof(why));
    p[0] = s->id;
    p[1] = why;

    if (s->id && tsc_exec(s, final ? tsc_failed_sql : tsc_retry_sql, 2, p)
                 < 0)
    {
        crest_log(CREST_LOG_WARN, "trend-scrape: cannot record the failure",
                  CREST_LS("scrape", s->id), CREST_LS("error", s->err));
    }
    memcpy(s->err, why, sizeof(why));

    crest_log(CREST_LOG_WARN, "trend-scrape: failed",
              CREST_LS("scrape", s->id ? s->id : "-"),
              CREST_LS("error", s->err));

    crest_buf_appends(out, s->err);

    return final ? CREST_JOB_FAIL_FINAL : CREST_JOB_FAIL;
}


crest_job_result_t
crest_trend_scrape_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    tsc_t                 s;
    crest_trending_rc_t   rc;
    crest_job_result_t    res;
    json_t               *items, *kept;
    const json_t         *a;
    const char           *p[3];
    char                 *text, count[24], err[256];
    int64_t               attempts;
    int                   n, last, bad;

    memset(&s, 0, sizeof(s));

    a = json_object_get(job->opts, "attempts");
    attempts = json_is_number(a) ? (int64_t) json_number_value(a) : 1;
    last = job->attempts_made + 1 >= attempts;

    bad = tsc_parse(&s, job->data_json) != 0;

    if (bad && s.id == NULL) {
        /* data no run can mend, and no row to tell */
        crest_buf_appends(out, s.err);
        return CREST_JOB_FAIL_FINAL;
    }

    s.run = crest_trending_run_new(ctx, s.platform ? s.platform : "youtube",
                                   err, sizeof(err));
    if (s.run == NULL) {
        crest_buf_appends(out, err);
        return CREST_JOB_FAIL;
    }

    if (bad) {
        res = tsc_fail(&s, out, 1);
        goto done;
    }

    p[0] = s.id;
    n = tsc_exec(&s, tsc_claim_sql, 1, p);

    if (n < 0) {
        res = tsc_fail(&s, out, 0);
        goto done;
    }

    if (n == 0) {
        res = tsc_skipped(&s, out, "the scrape was deleted or cancelled");
        goto done;
    }

    items = json_array();

    switch (s.platform[0]) {
    case 'y':
        rc = tsc_youtube(&s, items);
        break;
    case 't':
        rc = tsc_apify(&s, items, 0);
        break;
    case 'x':
        rc = tsc_apify(&s, items, 1);
        break;
    default:
        rc = tsc_reddit(&s, items);
        break;
    }

    if (rc != CREST_TRENDING_OK) {
        json_decref(items);

        if (rc == CREST_TRENDING_ABORT) {
            /* the row stays running: stalled-job recovery runs it again */
            res = CREST_JOB_ABORTED;
            goto done;
        }

        if (s.err[0] == '\0') {
            snprintf(s.err, sizeof(s.err), "%s",
                     crest_trending_run_error(s.run));
        }

        /* a refusal (a key, YouTube's daily quota) will not change soon */
        res = tsc_fail(&s, out, rc != CREST_TRENDING_RETRY || last);
        goto done;
    }

    kept = tsc_filter(&s, items);
    json_decref(items);
    text = kept ? json_dumps(kept, JSON_COMPACT) : NULL;
    n = kept ? (int) json_array_size(kept) : 0;
    json_decref(kept);

    if (text == NULL) {
        snprintf(s.err, sizeof(s.err), "out of memory");
        res = tsc_fail(&s, out, last);
        goto done;
    }

    snprintf(count, sizeof(count), "%d", n);
    p[1] = text;
    p[2] = count;
    n = tsc_exec(&s, tsc_done_sql, 3, p);
    free(text);

    if (n < 0) {
        res = tsc_fail(&s, out, last);
        goto done;
    }

    if (n == 0) {
        res = tsc_skipped(&s, out, "the scrape was deleted or cancelled "
                          "while it ran");
        goto done;
    }

    crest_buf_appendf(out, "{\"scrapeId\":\"%s\",\"platform\":\"%s\","
                      "\"resultCount\":%s}", s.id, s.platform, count);
    res = CREST_JOB_DONE;

done:

    crest_trending_run_free(s.run);

    return res;
}
