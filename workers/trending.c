/*
 * The trending-refresh processor: fetches one platform's trending videos
 * for a region (and category), normalises them (trending_norm.c), upserts
 * them into trending_videos and writes the serving cache in Redis.
 *
 * Job data: {"platform": "youtube"|"tiktok"|"x"|"reddit", "region": "US",
 * "category": "10", "query": "..." (YouTube keyword discovery),
 * "maxResults": 50}.
 *
 * Each slot thread keeps its own Redis and PostgreSQL connections.  Per
 * platform, every HTTP call is guarded by:
 *
 *  - a circuit breaker shared by every worker process through Redis
 *    (crest:trending:breaker:<platform>): each failed attempt (no answer,
 *    timeout, 429, 5xx, malformed JSON) counts, a success resets; at
 *    CREST_TRENDING_BREAKER_FAILURES in a row it opens for
 *    CREST_TRENDING_BREAKER_OPEN_MS, then one probe call (half-open) closes
 *    or reopens it;
 *  - retries with exponential backoff and jitter, or the server's
 *    Retry-After;
 *  - X-Ratelimit-Remaining/Reset (Reddit): when nothing remains, calls wait
 *    for the reset (crest:trending:ratelimit:<platform>);
 *  - for YouTube, the daily quota of the API key, counted in Redis per
 *    Pacific day before each call.
 */
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/sha.h>

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "processor.h"
#include "redis_conn.h"
#include "scraper_http.h"
#include "trending.h"
#include "tz.h"


/* ---- settings (environment, read once) --------------------------------- */

typedef struct {
    const char  *yt_base, *yt_key;
    long         yt_quota_daily, yt_cost_videos, yt_cost_search;
    long         yt_search_daily;       /* >0: search.list's own bucket */
    long         yt_max_results, yt_pages;
    const char  *apify_base, *apify_token, *apify_tiktok_actor,
                *apify_x_actor, *apify_tiktok_input, *apify_x_input;
    long         apify_max_items, apify_timeout_ms;
    const char  *reddit_base, *reddit_ua;
    long         reddit_limit;
    long         timeout_ms, retries, backoff_ms, backoff_cap_ms,
                 retry_after_max_ms;
    long         breaker_failures, breaker_open_ms;
    long         ttl_youtube, ttl_tiktok, ttl_x, ttl_reddit;
    long         now_s;                 /* CREST_TRENDING_NOW, 0 = real */
} tr_settings_t;

static tr_settings_t   tr_set;
static crest_trending_conf_t  tr_conf;     /* what trend_scrape.c reads */
static pthread_once_t  tr_once = PTHREAD_ONCE_INIT;
static pthread_key_t   tr_thr_key;

static void tr_thread_end(void *p);
static void tr_conf_fill(void);


static const char *
tr_env(const char *name, const char *def)
{
    const char  *v = getenv(name);

    return v && v[0] ? v : def;
}


static long
tr_env_long(const char *name, long def, long min, long max)
{
    const char  *v = getenv(name);
    char        *end;
    long         n;

    if (v == NULL || v[0] == '\0') {
        return def;
    }

    n = strtol(v, &end, 10);

    if (*end != '\0' || n < min || n > max) {
        crest_log(CREST_LOG_WARN, "trending: bad setting, default used",
                  CREST_LS("name", name), CREST_LS("value", v));
        return def;
    }

    return n;
}


static void
tr_settings_load(void)
{
    tr_settings_t  *s = &tr_set;

    crest_http_global_init();
    pthread_key_create(&tr_thr_key, tr_thread_end);

    s->yt_base = tr_env("CREST_TRENDING_YOUTUBE_BASE_URL",
                        "https://www.googleapis.com");
    s->yt_key = tr_env("CREST_TRENDING_YOUTUBE_API_KEY", NULL);
    s->yt_quota_daily = tr_env_long("CREST_TRENDING_YOUTUBE_QUOTA_DAILY",
                                    10000, 1, 1000000000);
    s->yt_cost_videos = tr_env_long("CREST_TRENDING_YOUTUBE_COST_VIDEOS",
                                    1, 0, 1000000);
    s->yt_cost_search = tr_env_long("CREST_TRENDING_YOUTUBE_COST_SEARCH",
                                    100, 0, 1000000);
    s->yt_search_daily = tr_env_long("CREST_TRENDING_YOUTUBE_SEARCH_DAILY",
                                     0, 0, 1000000000);
    s->yt_max_results = tr_env_long("CREST_TRENDING_YOUTUBE_MAX_RESULTS",
                                    50, 1, 50);
    s->yt_pages = tr_env_long("CREST_TRENDING_YOUTUBE_PAGES", 1, 1, 10);
    s->apify_base = tr_env("CREST_TRENDING_APIFY_BASE_URL",
                           "https://api.apify.com");
    s->apify_token = tr_env("CREST_TRENDING_APIFY_TOKEN", NULL);
    s->apify_tiktok_actor = tr_env("CREST_TRENDING_APIFY_TIKTOK_ACTOR",
                                   "clockworks~tiktok-scraper");
    s->apify_x_actor = tr_env("CREST_TRENDING_APIFY_X_ACTOR",
                              "apidojo~tweet-scraper");
    s->apify_tiktok_input = tr_env("CREST_TRENDING_APIFY_TIKTOK_INPUT", NULL);
    s->apify_x_input = tr_env("CREST_TRENDING_APIFY_X_INPUT", NULL);
    s->apify_max_items = tr_env_long("CREST_TRENDING_APIFY_MAX_ITEMS", 50, 1,
                                     1000);
    s->apify_timeout_ms = tr_env_long("CREST_TRENDING_APIFY_TIMEOUT_MS",
                                      120000, 1000, 600000);
    s->reddit_base = tr_env("CREST_TRENDING_REDDIT_BASE_URL",
                            "https://www.reddit.com");
    s->reddit_ua = tr_env("CREST_TRENDING_REDDIT_USER_AGENT",
                          "linux:crest-trending:1.0 (by /u/crest-dev)");
    s->reddit_limit = tr_env_long("CREST_TRENDING_REDDIT_LIMIT", 50, 1, 100);
    s->timeout_ms = tr_env_long("CREST_TRENDING_TIMEOUT_MS", 15000, 100,
                                600000);
    s->retries = tr_env_long("CREST_TRENDING_RETRIES", 2, 0, 10);
    s->backoff_ms = tr_env_long("CREST_TRENDING_BACKOFF_MS", 500, 1, 600000);
    s->backoff_cap_ms = tr_env_long("CREST_TRENDING_BACKOFF_CAP_MS", 10000, 1,
                                    3600000);
    s->retry_after_max_ms = tr_env_long("CREST_TRENDING_RETRY_AFTER_MAX_MS",
                                        60000, 0, 3600000);
    s->breaker_failures = tr_env_long("CREST_TRENDING_BREAKER_FAILURES", 5,
                                      1, 1000);
    s->breaker_open_ms = tr_env_long("CREST_TRENDING_BREAKER_OPEN_MS", 60000,
                                     1, 86400000);
    s->ttl_youtube = tr_env_long("CREST_TRENDING_TTL_YOUTUBE", 1800, 1,
                                 604800);
    s->ttl_tiktok = tr_env_long("CREST_TRENDING_TTL_TIKTOK", 900, 1, 604800);
    s->ttl_x = tr_env_long("CREST_TRENDING_TTL_X", 900, 1, 604800);
    s->ttl_reddit = tr_env_long("CREST_TRENDING_TTL_REDDIT", 900, 1, 604800);
    s->now_s = tr_env_long("CREST_TRENDING_NOW", 0, 0, 32503680000L);

    tr_conf_fill();
}


/* ---- per-thread state -------------------------------------------------- */

typedef struct {
    int                 ready;
    crest_redis_conn_t  redis;
    crest_pg_conn_t     pg;
    crest_backoff_t     backoff;
} tr_thread_t;

/* Each slot thread's connections, closed when the thread ends. */
static void
tr_thread_end(void *p)
{
    tr_thread_t  *t = p;

    crest_redis_conn_close(&t->redis);
    crest_pg_conn_close(&t->pg);
    free(t);
}


typedef enum { TR_OK = 0, TR_RETRY, TR_FINAL, TR_QUOTA, TR_ABORT } tr_rc_t;

typedef struct {
    crest_job_ctx_t  *ctx;
    tr_thread_t      *t;
    const char       *platform;
    char              region[16];
    char              category[80];
    char              query[256];
    long              max_results;
    char              err[768];
    /* YouTube quota */
    char              quota_day[16];
    long              quota_used;
    long              quota_limit;
    const char       *quota_bucket;
    int64_t           quota_reset_ms;
} tr_run_t;


/* "Now" in wall-clock milliseconds: CREST_TRENDING_NOW for tests. */
static int64_t
tr_now_ms(void)
{
    return tr_set.now_s ? (int64_t) tr_set.now_s * 1000 : crest_wall_ms();
}


/* ---- YouTube quota, per key and Pacific day ---------------------------- */

static const char  tr_quota_lua[] =
    "local used = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local cost, limit = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "if ARGV[4] == 'spend' then\n"
    "  if used < limit then redis.call('SET', KEYS[1], limit) end\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "  return {0, math.max(used, limit)}\n"
    "end\n"
    "if used + cost > limit then return {0, used} end\n"
    "used = redis.call('INCRBY', KEYS[1], cost)\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return {1, used}\n";


/* The Pacific calendar day of now, and when the next one starts (UTC). */
static int
tr_pacific_day(tr_run_t *r)
{
    const crest_tz_t  *tz;
    char               err[256];
    int64_t            now, off, local, day, next_local;
    time_t             t;
    struct tm          tm;

    tz = crest_tz_get("America/Los_Angeles", err, sizeof(err));
    if (tz == NULL) {
        snprintf(r->err, sizeof(r->err), "youtube quota: %s", err);
        return -1;
    }

    now = tr_now_ms();
    off = crest_tz_offset((void *) tz, now);
    local = now + off;
    day = local >= 0 ? local / 86400000 : -((-local + 86399999) / 86400000);
    t = (time_t) (day * 86400);
    gmtime_r(&t, &tm);
    strftime(r->quota_day, sizeof(r->quota_day), "%Y-%m-%d", &tm);

    next_local = (day + 1) * 86400000;
    r->quota_reset_ms = next_local
                        - crest_tz_offset((void *) tz, next_local - off);

    return 0;
}


static void
tr_key_id(char *out, size_t len)
{
    unsigned char  md[SHA256_DIGEST_LENGTH];
    const char    *k = tr_set.yt_key ? tr_set.yt_key : "";
    size_t         i;

    SHA256((const unsigned char *) k, strlen(k), md);

    for (i = 0; i < 8 && 2 * i + 2 < len; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}


/* 1: charged, 0: spent (r->err says so), -1: Redis failed. */
static int
tr_quota_charge(tr_run_t *r, const char *method, int spend)
{
    crest_redis_conn_t  *c = &r->t->redis;
    redisReply          *rep;
    char                 key[160], kid[20], cost[24], limit[24];
    const char          *bucket;
    long                 lim, cst;
    int                  rc;
    time_t               rt;
    struct tm            tm;
    char                 when[32];

    if (tr_pacific_day(r) != 0) {
        return -1;
    }

    tr_key_id(kid, sizeof(kid));

    if (strcmp(method, "search") == 0 && tr_set.yt_search_daily > 0) {
        bucket = "search";
        lim = tr_set.yt_search_daily;
    } else {
        bucket = "units";
        lim = tr_set.yt_quota_daily;
    }

    cst = strcmp(method, "search") == 0 ? tr_set.yt_cost_search
                                        : tr_set.yt_cost_videos;

    snprintf(key, sizeof(key), "crest:trending:quota:youtube:%s:%s:%s", kid,
             r->quota_day, bucket);
    snprintf(cost, sizeof(cost), "%ld", cst);
    snprintf(limit, sizeof(limit), "%ld", lim);

    rep = crest_redis_conn_command(c, "EVAL %s 1 %s %s %s %s %s",
                                   tr_quota_lua, key, cost, limit, "172800",
                                   spend ? "spend" : "charge");

    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        snprintf(r->err, sizeof(r->err), "youtube quota: redis: %s",
                 rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                       : "no answer");
        if (rep) {
            freeReplyObject(rep);
        }
        return -1;
    }

    rc = (int) rep->element[0]->integer;
    r->quota_used = (long) rep->element[1]->integer;
    r->quota_limit = lim;
    r->quota_bucket = bucket;
    freeReplyObject(rep);

    if (rc == 0) {
        rt = (time_t) (r->quota_reset_ms / 1000);
        gmtime_r(&rt, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(r->err, sizeof(r->err),
                 "youtube quota spent: %ld of %ld %s used on %s (Pacific); "
                 "resets at %s", r->quota_used, lim, bucket, r->quota_day,
                 when);
    }

    return rc;
}


/* ---- circuit breaker and rate limit, shared through Redis -------------- */

static const char  tr_allow_lua[] =
    "local u = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')\n"
    "if u == 0 then return 0 end\n"
    "if tonumber(ARGV[1]) < u then return u end\n"
    "if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then\n"
    "  return 0 end\n"
    "return -1\n";

static const char  tr_fail_lua[] =
    "local f = redis.call('HINCRBY', KEYS[1], 'failures', 1)\n"
    "local was = redis.call('HGET', KEYS[1], 'open_until')\n"
    "local opened = 0\n"
    "if f >= tonumber(ARGV[2]) or was then\n"
    "  redis.call('HSET', KEYS[1], 'open_until',\n"
    "    string.format('%.0f', tonumber(ARGV[1]) + tonumber(ARGV[3])))\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  opened = 1\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], 86400000)\n"
    "return {f, opened}\n";


static void
tr_breaker_keys(tr_run_t *r, char *k1, char *k2, size_t len)
{
    snprintf(k1, len, "crest:trending:breaker:%s", r->platform);
    snprintf(k2, len, "crest:trending:breaker:%s:probe", r->platform);
}


/* 0: go, 1: open (r->err says until when), -1: Redis failed. */
static int
tr_breaker_allow(tr_run_t *r)
{
    redisReply  *rep;
    char         k1[96], k2[96], now[24], open[24];
    long long    v;

    tr_breaker_keys(r, k1, k2, sizeof(k1));
    snprintf(now, sizeof(now), "%" PRId64, crest_wall_ms());
    snprintf(open, sizeof(open), "%ld", tr_set.breaker_open_ms);

    rep = crest_redis_conn_command(&r->t->redis, "EVAL %s 2 %s %s %s %s",
                                   tr_allow_lua, k1, k2, now, open);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        snprintf(r->err, sizeof(r->err), "%s: circuit breaker: redis: %s",
                 r->platform, rep && rep->type == REDIS_REPLY_ERROR
                              ? rep->str : "no answer");
        if (rep) {
            freeReplyObject(rep);
        }
        return -1;
    }

    v = rep->integer;
    freeReplyObject(rep);

    if (v == 0) {
        return 0;
    }

    if (v < 0) {
        snprintf(r->err, sizeof(r->err), "%s: circuit half-open, a probe "
                 "call is in flight", r->platform);
    } else {
        snprintf(r->err, sizeof(r->err), "%s: circuit open for %lld ms more "
                 "after repeated failures", r->platform,
                 v - (long long) crest_wall_ms());
    }

    return 1;
}


static void
tr_breaker_result(tr_run_t *r, int ok)
{
    redisReply  *rep;
    char         k1[96], k2[96], now[24], thr[24], open[24];

    tr_breaker_keys(r, k1, k2, sizeof(k1));

    if (ok) {
        rep = crest_redis_conn_command(&r->t->redis, "DEL %s %s", k1, k2);
        if (rep) {
            freeReplyObject(rep);
        }
        return;
    }

    snprintf(now, sizeof(now), "%" PRId64, crest_wall_ms());
    snprintf(thr, sizeof(thr), "%ld", tr_set.breaker_failures);
    snprintf(open, sizeof(open), "%ld", tr_set.breaker_open_ms);

    rep = crest_redis_conn_command(&r->t->redis, "EVAL %s 2 %s %s %s %s %s",
                                   tr_fail_lua, k1, k2, now, thr, open);

    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2
        && rep->element[1]->integer == 1)
    {
        crest_log(CREST_LOG_WARN, "trending: circuit open",
                  CREST_LS("platform", r->platform),
                  CREST_LI("failures", rep->element[0]->integer),
                  CREST_LI("open_ms", tr_set.breaker_open_ms));
    }

    if (rep) {
        freeReplyObject(rep);
    }
}


/* Waits while the platform said no calls remain; TR_OK, or why not. */
static tr_rc_t
tr_ratelimit_wait(tr_run_t *r)
{
    redisReply  *rep;
    long long    ms;

    rep = crest_redis_conn_command(&r->t->redis,
                                   "PTTL crest:trending:ratelimit:%s",
                                   r->platform);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        if (rep) {
            freeReplyObject(rep);
        }
        snprintf(r->err, sizeof(r->err), "%s: rate limit: redis failed",
                 r->platform);
        return TR_RETRY;
    }

    ms = rep->integer;
    freeReplyObject(rep);

    if (ms <= 0) {
        return TR_OK;
    }

    if (ms > tr_set.retry_after_max_ms) {
        snprintf(r->err, sizeof(r->err), "%s: rate limited for %lld ms more",
                 r->platform, ms);
        return TR_RETRY;
    }

    return crest_job_sleep(r->ctx, ms) == 0 ? TR_OK : TR_ABORT;
}


static void
tr_ratelimit_note(tr_run_t *r, const crest_http_resp_t *h)
{
    redisReply  *rep;
    long long    ms;

    if (h->rl_remaining < 0 || h->rl_remaining >= 1 || h->rl_reset_s <= 0) {
        return;
    }

    ms = (long long) (h->rl_reset_s * 1000);
    if (ms > 3600000) {
        ms = 3600000;
    }

    rep = crest_redis_conn_command(&r->t->redis,
                                   "SET crest:trending:ratelimit:%s 1 PX %lld",
                                   r->platform, ms);
    if (rep) {
        freeReplyObject(rep);
    }
}


/* ---- one call, with the guards ----------------------------------------- */

static int
tr_youtube_quota_error(const json_t *body)
{
    const json_t  *errs, *e;
    const char    *reason;
    size_t         i;

    errs = json_object_get(json_object_get(body, "error"), "errors");

    json_array_foreach(errs, i, e) {
        reason = json_string_value(json_object_get(e, "reason"));
        if (reason && (strcmp(reason, "quotaExceeded") == 0
                       || strcmp(reason, "dailyLimitExceeded") == 0))
        {
            return 1;
        }
    }

    return 0;
}


static void
tr_error_text(const json_t *body, const crest_http_resp_t *h, char *out,
    size_t len)
{
    const json_t  *e = json_object_get(body, "error");
    const char    *m = NULL;

    if (json_is_object(e)) {
        m = json_string_value(json_object_get(e, "message"));
    } else if (json_is_string(e)) {
        m = json_string_value(e);
    }
    if (m == NULL) {
        m = json_string_value(json_object_get(body, "message"));
    }

    if (m) {
        snprintf(out, len, "%s", m);
    } else {
        snprintf(out, len, "%.120s", h->body.data ? h->body.data : "");
    }
}


/*
 * GET (or POST body) url; *out is the parsed JSON answer.  yt_method:
 * "videos" or "search" to charge YouTube's quota first, NULL otherwise.
 * log_url is what error messages show (no key or token in it).
 */
static tr_rc_t
tr_call(tr_run_t *r, const char *url, const char *log_url,
    const char *const *headers, const char *body, const char *yt_method,
    long timeout_ms, json_t **out)
{
    crest_http_resp_t  h;
    json_t            *j;
    json_error_t       je;
    long               attempt;
    int64_t            delay;
    int                rc, retryable;
    tr_rc_t            wait;
    char               what[300];

    *out = NULL;

    crest_backoff_reset(&r->t->backoff);

    for (attempt = 0; ; attempt++) {
        rc = tr_breaker_allow(r);
        if (rc != 0) {
            return TR_RETRY;
        }

        wait = tr_ratelimit_wait(r);
        if (wait != TR_OK) {
            return wait;
        }

        if (yt_method) {
            rc = tr_quota_charge(r, yt_method, 0);
            if (rc <= 0) {
                return rc == 0 ? TR_QUOTA : TR_RETRY;
            }
        }

        crest_http_request(url, headers, body, (unsigned) timeout_ms, &h);

        j = NULL;
        retryable = 0;

        if (h.status == 0) {
            snprintf(what, sizeof(what), "%s", h.err);
            retryable = 1;
        } else {
            j = json_loadb(h.body.data ? h.body.data : "", h.body.len, 0, &je);
            tr_ratelimit_note(r, &h);

            if (h.status >= 200 && h.status < 300) {
                if (j != NULL) {
                    tr_breaker_result(r, 1);
                    crest_http_resp_free(&h);
                    *out = j;
                    return TR_OK;
                }
                snprintf(what, sizeof(what), "malformed JSON (%s)", je.text);
                retryable = 1;
            } else if (h.status == 408 || h.status == 429
                       || h.status >= 500)
            {
                tr_error_text(j, &h, what + 0, sizeof(what));
                retryable = 1;
            } else if (yt_method && h.status == 403
                       && tr_youtube_quota_error(j))
            {
                tr_quota_charge(r, yt_method, 1);
                json_decref(j);
                crest_http_resp_free(&h);
                tr_breaker_result(r, 1);
                return TR_QUOTA;
            } else {
                tr_error_text(j, &h, what, sizeof(what));
            }
        }

        snprintf(r->err, sizeof(r->err), "%s %s: %s%ld: %s", r->platform,
                 log_url, h.status ? "HTTP " : "", h.status, what);
        json_decref(j);

        delay = h.retry_after_ms;
        crest_http_resp_free(&h);

        if (!retryable) {
            /* the service answered: a client error, not an outage */
            tr_breaker_result(r, 1);
            return TR_FINAL;
        }

        tr_breaker_result(r, 0);

        crest_log(CREST_LOG_INFO, "trending: call failed",
                  CREST_LS("platform", r->platform), CREST_LS("error", r->err),
                  CREST_LI("attempt", attempt + 1));

        if (attempt >= tr_set.retries) {
            return TR_RETRY;
        }

        if (delay > tr_set.retry_after_max_ms) {
            return TR_RETRY;            /* too long to wait inside the job */
        }

        if (delay < 0) {
            delay = crest_backoff_next(&r->t->backoff);
        }

        if (crest_job_sleep(r->ctx, delay) != 0) {
            return TR_ABORT;
        }
    }
}


/* ---- adapters ---------------------------------------------------------- */

static char *
tr_escape(const char *s)
{
    return curl_easy_escape(NULL, s, 0);
}


static tr_rc_t
tr_youtube(tr_run_t *r, json_t *items, const char **stopped)
{
    crest_buf_t    url, ids;
    json_t        *resp = NULL;
    const json_t  *it, *list;
    const char    *tok, *id;
    char          *key, *q = NULL, *t = NULL, log_url[64];
    tr_rc_t        rc = TR_OK;
    long           page;
    size_t         i;

    if (tr_set.yt_key == NULL) {
        snprintf(r->err, sizeof(r->err),
                 "youtube: CREST_TRENDING_YOUTUBE_API_KEY is not set");
        return TR_FINAL;
    }

    key = tr_escape(tr_set.yt_key);
    crest_buf_init(&url, &crest_malloc_allocator);
    crest_buf_init(&ids, &crest_malloc_allocator);

    if (r->query[0]) {
        /* keyword discovery: search.list, then videos.list?id= */
        q = tr_escape(r->query);
        crest_buf_appendf(&url, "%s/youtube/v3/search?part=snippet&type=video"
                          "&order=viewCount&maxResults=%ld&q=%s&regionCode=%s",
                          tr_set.yt_base, r->max_results, q ? q : "",
                          r->region);
        if (r->category[0] && strncmp(r->category, "q:", 2) != 0) {
            crest_buf_appendf(&url, "&videoCategoryId=%s", r->category);
        }
        crest_buf_appendf(&url, "&key=%s", key ? key : "");
        crest_buf_appendc(&url, '\0');

        rc = tr_call(r, url.data, "search.list", NULL, NULL, "search",
                     tr_set.timeout_ms, &resp);
        if (rc != TR_OK) {
            goto done;
        }

        list = json_object_get(resp, "items");
        json_array_foreach(list, i, it) {
            id = json_string_value(json_object_get(json_object_get(it, "id"),
                                                   "videoId"));
            if (id && strlen(id) <= 64 && strspn(id, "ABCDEFGHIJKLMNOPQRSTUV"
                "WXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(id)
                && i < 50)
            {
                crest_buf_appendf(&ids, "%s%s", ids.len ? "," : "", id);
            }
        }
        json_decref(resp);
        resp = NULL;

        if (ids.len == 0) {
            goto done;
        }

        crest_buf_appendc(&ids, '\0');
        crest_buf_reset(&url);
        crest_buf_appendf(&url, "%s/youtube/v3/videos?part=snippet,statistics,"
                          "contentDetails&id=%s&key=%s", tr_set.yt_base,
                          ids.data, key ? key : "");
        crest_buf_appendc(&url, '\0');

        rc = tr_call(r, url.data, "videos.list?id", NULL, NULL, "videos",
                     tr_set.timeout_ms, &resp);
        if (rc == TR_OK
            && crest_trending_norm_youtube(resp, r->region, r->category, 1,
                                           items) < 0)
        {
            snprintf(r->err, sizeof(r->err), "youtube videos.list: no items");
            rc = TR_RETRY;
        } else if (rc == TR_QUOTA) {
            *stopped = "quota";
        }
        goto done;
    }

    for (page = 0; page < tr_set.yt_pages; page++) {
        crest_buf_reset(&url);
        crest_buf_appendf(&url, "%s/youtube/v3/videos?part=snippet,statistics,"
                          "contentDetails&chart=mostPopular&regionCode=%s"
                          "&maxResults=%ld", tr_set.yt_base, r->region,
                          r->max_results);
        if (r->category[0]) {
            crest_buf_appendf(&url, "&videoCategoryId=%s", r->category);
        }
        if (t) {
            crest_buf_appendf(&url, "&pageToken=%s", t);
        }
        crest_buf_appendf(&url, "&key=%s", key ? key : "");
        crest_buf_appendc(&url, '\0');
        snprintf(log_url, sizeof(log_url), "videos.list page %ld", page + 1);

        rc = tr_call(r, url.data, log_url, NULL, NULL, "videos",
                     tr_set.timeout_ms, &resp);

        if (rc == TR_QUOTA && json_array_size(items) > 0) {
            *stopped = "quota";     /* keep what the earlier pages gave */
            rc = TR_OK;
            break;
        }

        if (rc != TR_OK) {
            break;
        }

        if (crest_trending_norm_youtube(resp, r->region, r->category,
                                        (int) json_array_size(items) + 1,
                                        items) < 0)
        {
            snprintf(r->err, sizeof(r->err), "youtube videos.list: the "
                     "answer has no items array");
            rc = TR_RETRY;
            break;
        }

        tok = json_string_value(json_object_get(resp, "nextPageToken"));
        curl_free(t);
        t = tok ? tr_escape(tok) : NULL;
        json_decref(resp);
        resp = NULL;

        if (t == NULL) {
            break;
        }
    }

done:

    json_decref(resp);
    curl_free(t);
    curl_free(q);
    curl_free(key);
    crest_buf_free(&url);
    crest_buf_free(&ids);

    return rc;
}


/* The actor's input: the configured JSON object with "{region}",
 * "{category}" and "{maxItems}" string values filled in, or a default. */
static json_t *
tr_apify_input(tr_run_t *r, const char *tmpl)
{
    json_t       *in, *v;
    const char   *k, *s;
    void         *tmp;
    json_error_t  je;

    in = tmpl ? json_loads(tmpl, 0, &je) : NULL;

    if (!json_is_object(in)) {
        json_decref(in);
        in = json_pack("{s:s, s:i}", "region", r->region, "maxItems",
                       (json_int_t) tr_set.apify_max_items);
        if (r->category[0]) {
            json_object_set_new(in, "category", json_string(r->category));
        }
        return in;
    }

    json_object_foreach_safe(in, tmp, k, v) {
        s = json_string_value(v);
        if (s == NULL) {
            continue;
        }
        if (strcmp(s, "{region}") == 0) {
            json_object_set_new(in, k, json_string(r->region));
        } else if (strcmp(s, "{category}") == 0) {
            json_object_set_new(in, k, json_string(r->category));
        } else if (strcmp(s, "{maxItems}") == 0) {
            json_object_set_new(in, k,
                                json_integer(tr_set.apify_max_items));
        }
    }

    return in;
}


static tr_rc_t
tr_apify(tr_run_t *r, json_t *items, int x)
{
    crest_buf_t   url;
    json_t       *in, *resp = NULL;
    char         *body, auth[600], log_url[200];
    const char   *actor, *hdrs[2];
    tr_rc_t       rc;
    int           n;

    if (tr_set.apify_token == NULL) {
        snprintf(r->err, sizeof(r->err),
                 "%s: CREST_TRENDING_APIFY_TOKEN is not set", r->platform);
        return TR_FINAL;
    }

    actor = x ? tr_set.apify_x_actor : tr_set.apify_tiktok_actor;

    if (strlen(actor) > 150 || strspn(actor, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "abcdefghijklmnopqrstuvwxyz0123456789_.-~") != strlen(actor))
    {
        snprintf(r->err, sizeof(r->err), "%s: the Apify actor id must be "
                 "owner~name", r->platform);
        return TR_FINAL;
    }

    in = tr_apify_input(r, x ? tr_set.apify_x_input
                             : tr_set.apify_tiktok_input);
    body = json_dumps(in, JSON_COMPACT);
    json_decref(in);

    crest_buf_init(&url, &crest_malloc_allocator);
    crest_buf_appendf(&url, "%s/v2/acts/%s/run-sync-get-dataset-items"
                      "?format=json&clean=true&maxItems=%ld&timeout=%ld",
                      tr_set.apify_base, actor, tr_set.apify_max_items,
                      tr_set.apify_timeout_ms / 1000 > 5
                      ? tr_set.apify_timeout_ms / 1000 - 5 : 1);
    crest_buf_appendc(&url, '\0');
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             tr_set.apify_token);
    hdrs[0] = auth;
    hdrs[1] = NULL;
    snprintf(log_url, sizeof(log_url), "apify %s", actor);

    rc = tr_call(r, url.data, log_url, hdrs, body ? body : "{}", NULL,
                 tr_set.apify_timeout_ms, &resp);
    free(body);
    crest_buf_free(&url);

    if (rc != TR_OK) {
        return rc;
    }

    n = x ? crest_trending_norm_x(resp, r->region, r->category, 1, items)
          : crest_trending_norm_tiktok(resp, r->region, r->category, 1,
                                       items);
    json_decref(resp);

    if (n < 0) {
        snprintf(r->err, sizeof(r->err), "%s: apify answered no items "
                 "array", r->platform);
        return TR_RETRY;
    }

    return TR_OK;
}


static tr_rc_t
tr_reddit(tr_run_t *r, json_t *items)
{
    char     url[1024], ua[600], log_url[128];
    const char *hdrs[2];
    json_t  *resp = NULL;
    tr_rc_t  rc;

    snprintf(url, sizeof(url), "%s/r/%s/hot.json?limit=%ld&raw_json=1",
             tr_set.reddit_base, r->category, r->max_results);
    snprintf(ua, sizeof(ua), "User-Agent: %s", tr_set.reddit_ua);
    snprintf(log_url, sizeof(log_url), "/r/%s/hot.json", r->category);
    hdrs[0] = ua;
    hdrs[1] = NULL;

    rc = tr_call(r, url, log_url, hdrs, NULL, NULL, tr_set.timeout_ms, &resp);
    if (rc != TR_OK) {
        return rc;
    }

    if (crest_trending_norm_reddit(resp, r->region, r->category, 1, items)
        < 0)
    {
        json_decref(resp);
        snprintf(r->err, sizeof(r->err), "reddit: the answer is not a "
                 "Listing");
        return TR_RETRY;
    }

    json_decref(resp);

    return TR_OK;
}


/* ---- storing ----------------------------------------------------------- */

static const char  tr_upsert_sql[] =
    "WITH r AS (SELECT DISTINCT ON (x.\"platformId\") x.* "
    "FROM json_to_recordset($1::json) AS x(platform text, \"platformId\" text,"
    " region text, category text, rank int, title text, description text,"
    " \"thumbnailUrl\" text, \"viewCount\" bigint, \"likeCount\" bigint,"
    " \"commentCount\" bigint, \"creatorName\" text, \"creatorUrl\" text,"
    " \"durationSeconds\" int, url text, \"publishedAt\" timestamptz,"
    " hashtags text[]) ORDER BY x.\"platformId\", x.rank) "
    "INSERT INTO trending_videos AS t (platform, platform_id, region,"
    " category, rank, title, description, thumbnail_url, view_count,"
    " like_count, comment_count, creator_name, creator_url, duration_s, url,"
    " published_at, hashtags, fetched_at) "
    "SELECT platform, \"platformId\", region, category, rank,"
    " coalesce(title, ''), description, \"thumbnailUrl\", \"viewCount\","
    " \"likeCount\", \"commentCount\", \"creatorName\", \"creatorUrl\","
    " \"durationSeconds\", url, \"publishedAt\", coalesce(hashtags, '{}'),"
    " now() FROM r "
    "ON CONFLICT (platform, platform_id, region) DO UPDATE SET"
    " category = EXCLUDED.category, rank = EXCLUDED.rank,"
    " title = EXCLUDED.title, description = EXCLUDED.description,"
    " thumbnail_url = EXCLUDED.thumbnail_url,"
    " view_count = EXCLUDED.view_count, like_count = EXCLUDED.like_count,"
    " comment_count = EXCLUDED.comment_count,"
    " creator_name = EXCLUDED.creator_name,"
    " creator_url = EXCLUDED.creator_url, duration_s = EXCLUDED.duration_s,"
    " url = EXCLUDED.url, published_at = EXCLUDED.published_at,"
    " hashtags = EXCLUDED.hashtags, fetched_at = now() "
    "RETURNING (xmax = 0)";


static long
tr_ttl(const char *platform)
{
    return strcmp(platform, "youtube") == 0 ? tr_set.ttl_youtube
           : strcmp(platform, "tiktok") == 0 ? tr_set.ttl_tiktok
           : strcmp(platform, "x") == 0 ? tr_set.ttl_x
           : tr_set.ttl_reddit;
}


static tr_rc_t
tr_store(tr_run_t *r, json_t *items, long *inserted, char *cache_key,
    size_t keylen)
{
    PGresult     *res;
    redisReply   *rep;
    char         *text;
    const char   *params[1];
    json_t       *page;
    int           i, n;
    long          ttl = tr_ttl(r->platform);
    char          when[32];
    time_t        now = time(NULL);
    struct tm     tm;

    *inserted = 0;

    text = json_dumps(items, JSON_COMPACT);
    if (text == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return TR_RETRY;
    }

    if (json_array_size(items) > 0) {
        if (!crest_pg_conn_tick(&r->t->pg, crest_mono_ms())) {
            free(text);
            snprintf(r->err, sizeof(r->err), "postgres is down");
            return TR_RETRY;
        }

        params[0] = text;
        res = crest_pg_conn_exec_params(&r->t->pg, tr_upsert_sql, 1, params);

        if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(r->err, sizeof(r->err), "postgres: %s",
                     res ? PQresultErrorMessage(res) : "no answer");
            if (res) {
                PQclear(res);
            }
            free(text);
            return TR_RETRY;
        }

        n = PQntuples(res);
        for (i = 0; i < n; i++) {
            *inserted += PQgetvalue(res, i, 0)[0] == 't';
        }
        PQclear(res);
    }

    free(text);

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

    page = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:O}",
                     "platform", r->platform, "region", r->region,
                     "category", r->category, "fetchedAt", when,
                     "ttl", (int) ttl, "count",
                     (json_int_t) json_array_size(items), "items", items);
    text = page ? json_dumps(page, JSON_COMPACT) : NULL;
    json_decref(page);

    if (text == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return TR_RETRY;
    }

    snprintf(cache_key, keylen, "crest:trending:%s:%s:%s", r->platform,
             r->region, r->category[0] ? r->category : "all");

    rep = crest_redis_conn_command(&r->t->redis, "SET %s %s EX %ld",
                                   cache_key, text, ttl);
    free(text);

    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        snprintf(r->err, sizeof(r->err), "redis: cannot write the cache");
        if (rep) {
            freeReplyObject(rep);
        }
        return TR_RETRY;
    }

    freeReplyObject(rep);

    return TR_OK;
}


/* ---- the processor ----------------------------------------------------- */

/* This slot thread's connections, made on its first job; NULL: no memory. */
static tr_thread_t *
tr_thread_get(crest_job_ctx_t *ctx)
{
    tr_thread_t  *t;

    pthread_once(&tr_once, tr_settings_load);

    t = pthread_getspecific(tr_thr_key);

    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL || pthread_setspecific(tr_thr_key, t) != 0) {
            free(t);
            return NULL;
        }
    }

    if (!t->ready) {
        crest_redis_conn_init(&t->redis, crest_job_config(ctx));
        crest_pg_conn_init(&t->pg, crest_job_config(ctx));
        crest_backoff_init(&t->backoff, (unsigned) tr_set.backoff_ms,
                           (unsigned) tr_set.backoff_cap_ms,
                           (uint64_t) crest_wall_ms() ^ (uint64_t) pthread_self());
        t->ready = 1;
    }

    return t;
}


static int
tr_word(const char *s, size_t max, const char *allowed)
{
    size_t  n = strlen(s);

    return n <= max && strspn(s, allowed) == n;
}

#define TR_ALNUM  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
                  "0123456789"


static int
tr_parse(tr_run_t *r, const json_t *d)
{
    const char  *p, *region, *cat, *q;
    json_int_t   mr;
    size_t       i;

    p = json_string_value(json_object_get(d, "platform"));

    if (p == NULL) {
        snprintf(r->err, sizeof(r->err), "data.platform is required");
        return -1;
    }

    if (strcmp(p, "youtube") == 0) {
        r->platform = "youtube";
    } else if (strcmp(p, "tiktok") == 0) {
        r->platform = "tiktok";
    } else if (strcmp(p, "x") == 0) {
        r->platform = "x";
    } else if (strcmp(p, "reddit") == 0) {
        r->platform = "reddit";
    } else {
        snprintf(r->err, sizeof(r->err), "data.platform must be youtube, "
                 "tiktok, x or reddit");
        return -1;
    }

    region = json_string_value(json_object_get(d, "region"));
    region = region ? region : "US";

    if (strlen(region) != 2 || !isalpha((unsigned char) region[0])
        || !isalpha((unsigned char) region[1]))
    {
        snprintf(r->err, sizeof(r->err), "data.region must be a two-letter "
                 "country code");
        return -1;
    }

    for (i = 0; i < 2; i++) {
        r->region[i] = (char) toupper((unsigned char) region[i]);
    }
    r->region[2] = '\0';

    cat = json_string_value(json_object_get(d, "category"));
    if (cat == NULL && r->platform[0] == 'r') {
        cat = "videos";
    }
    cat = cat ? cat : "";

    if (!(r->platform[0] == 'y' ? tr_word(cat, 10, "0123456789")
          : r->platform[0] == 'r' ? tr_word(cat, 21, TR_ALNUM "_") && cat[0]
          : tr_word(cat, 64, TR_ALNUM "_-")))
    {
        snprintf(r->err, sizeof(r->err), "data.category: %s",
                 r->platform[0] == 'y' ? "a YouTube videoCategoryId (digits)"
                 : r->platform[0] == 'r' ? "a subreddit name"
                 : "letters, digits, _ and - only");
        return -1;
    }

    q = json_string_value(json_object_get(d, "query"));
    if (q && (r->platform[0] != 'y' || strlen(q) == 0
              || strlen(q) >= sizeof(r->query)))
    {
        snprintf(r->err, sizeof(r->err), "data.query: a YouTube search, "
                 "1-255 bytes");
        return -1;
    }
    snprintf(r->query, sizeof(r->query), "%s", q ? q : "");

    if (q && cat[0] == '\0') {
        /* keep keyword results apart from the chart in the cache */
        snprintf(r->category, sizeof(r->category), "q:%.60s", q);
        for (i = 2; r->category[i]; i++) {
            if (!isalnum((unsigned char) r->category[i])) {
                r->category[i] = '_';
            }
        }
    } else {
        snprintf(r->category, sizeof(r->category), "%s", cat);
    }

    mr = json_integer_value(json_object_get(d, "maxResults"));
    r->max_results = r->platform[0] == 'r' ? tr_set.reddit_limit
                                           : tr_set.yt_max_results;
    if (mr > 0 && mr <= (r->platform[0] == 'r' ? 100 : 50)) {
        r->max_results = (long) mr;
    }

    return 0;
}


crest_job_result_t
crest_trending_refresh_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    tr_thread_t   *t;
    tr_run_t       r;
    tr_rc_t        rc;
    json_t        *items, *res;
    const char    *stopped = NULL;
    long           inserted = 0;
    char           cache_key[256], *text;

    t = tr_thread_get(ctx);
    if (t == NULL) {
        crest_buf_appends(out, "out of memory");
        return CREST_JOB_FAIL;
    }

    memset(&r, 0, sizeof(r));
    r.ctx = ctx;
    r.t = t;

    if (!json_is_object(job->data_json) || tr_parse(&r, job->data_json) != 0)
    {
        crest_buf_appends(out, r.err[0] ? r.err : "data must be an object");
        return CREST_JOB_FAIL_FINAL;
    }

    if (!crest_redis_conn_tick(&t->redis, crest_mono_ms())) {
        crest_buf_appends(out, "redis is down");
        return CREST_JOB_FAIL;
    }

    items = json_array();

    switch (r.platform[0]) {
    case 'y':
        rc = tr_youtube(&r, items, &stopped);
        break;
    case 't':
        rc = tr_apify(&r, items, 0);
        break;
    case 'x':
        rc = tr_apify(&r, items, 1);
        break;
    default:
        rc = tr_reddit(&r, items);
        break;
    }

    if (rc == TR_OK) {
        rc = tr_store(&r, items, &inserted, cache_key, sizeof(cache_key));
    }

    if (rc != TR_OK) {
        json_decref(items);
        if (rc == TR_ABORT) {
            return CREST_JOB_ABORTED;
        }
        crest_log(CREST_LOG_WARN, "trending: refresh failed",
                  CREST_LS("platform", r.platform), CREST_LS("error", r.err));
        crest_buf_appends(out, r.err);
        /* quota: retrying before the Pacific midnight cannot help */
        return rc == TR_RETRY ? CREST_JOB_FAIL : CREST_JOB_FAIL_FINAL;
    }

    res = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:i}",
                    "platform", r.platform, "region", r.region,
                    "category", r.category,
                    "items", (json_int_t) json_array_size(items),
                    "inserted", (json_int_t) inserted,
                    "updated", (json_int_t) json_array_size(items) - inserted,
                    "cacheKey", cache_key, "ttl", (int) tr_ttl(r.platform));
    if (stopped) {
        json_object_set_new(res, "stopped", json_string(stopped));
        json_object_set_new(res, "reason", json_string(r.err));
    }
    if (r.quota_bucket) {
        json_object_set_new(res, "quota", json_pack("{s:s, s:s, s:i, s:i}",
            "day", r.quota_day, "bucket", r.quota_bucket,
            "used", (int) r.quota_used, "limit", (int) r.quota_limit));
    }

    json_decref(items);
    text = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    crest_buf_appends(out, text ? text : "");
    free(text);

    return CREST_JOB_DONE;
}


/* ---- the guarded calls, for the trend-scrape processor ----------------- */

struct crest_trending_run_s {
    tr_run_t  r;
};


static void
tr_conf_fill(void)
{
    tr_conf.youtube_base = tr_set.yt_base;
    tr_conf.youtube_key = tr_set.yt_key;
    tr_conf.apify_base = tr_set.apify_base;
    tr_conf.apify_token = tr_set.apify_token;
    tr_conf.apify_tiktok_actor = tr_set.apify_tiktok_actor;
    tr_conf.apify_x_actor = tr_set.apify_x_actor;
    tr_conf.reddit_base = tr_set.reddit_base;
    tr_conf.reddit_user_agent = tr_set.reddit_ua;
    tr_conf.timeout_ms = tr_set.timeout_ms;
    tr_conf.apify_timeout_ms = tr_set.apify_timeout_ms;
}


const crest_trending_conf_t *
crest_trending_conf(void)
{
    pthread_once(&tr_once, tr_settings_load);

    return &tr_conf;
}


int64_t
crest_trending_now_ms(void)
{
    pthread_once(&tr_once, tr_settings_load);

    return tr_now_ms();
}


crest_trending_run_t *
crest_trending_run_new(crest_job_ctx_t *ctx, const char *platform,
    char *err, size_t errlen)
{
    tr_thread_t           *t;
    crest_trending_run_t  *run;

    t = tr_thread_get(ctx);
    run = t ? calloc(1, sizeof(*run)) : NULL;

    if (run == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    if (!crest_redis_conn_tick(&t->redis, crest_mono_ms())) {
        snprintf(err, errlen, "redis is down");
        free(run);
        return NULL;
    }

    run->r.ctx = ctx;
    run->r.t = t;
    run->r.platform = platform;

    return run;
}


void
crest_trending_run_free(crest_trending_run_t *run)
{
    free(run);
}


crest_trending_rc_t
crest_trending_call(crest_trending_run_t *run, const char *url,
    const char *log_url, const char *const *headers, const char *body,
    const char *yt_method, long timeout_ms, json_t **out)
{
    return (crest_trending_rc_t) tr_call(&run->r, url, log_url, headers, body,
                                         yt_method, timeout_ms, out);
}


const char *
crest_trending_run_error(const crest_trending_run_t *run)
{
    return run->r.err;
}


crest_pg_conn_t *
crest_trending_run_pg(crest_trending_run_t *run)
{
    return &run->r.t->pg;
}
