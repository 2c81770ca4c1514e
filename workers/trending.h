/*
 * Trend discovery: turning each platform's answer into trending video
 * records (trending_norm.c) and the trending-refresh processor
 * (trending.c).  A record is a JSON object with these keys, null where the
 * platform does not say:
 *
 *   platform, platformId, region, category, rank, title, description,
 *   thumbnailUrl, viewCount, likeCount, commentCount, creatorName,
 *   creatorUrl, durationSeconds, url, publishedAt (ISO-8601 UTC), hashtags
 */
#ifndef CREST_TRENDING_H
#define CREST_TRENDING_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pg_conn.h"
#include "processor.h"

/*
 * Each appends the records of one answer to out (a JSON array), ranks
 * numbered from first_rank; items without an id are skipped.  Returns how
 * many were added, or -1 if the answer has not the expected shape.
 */
int crest_trending_norm_youtube(const json_t *resp, const char *region,
    const char *category, int first_rank, json_t *out);
int crest_trending_norm_tiktok(const json_t *items, const char *region,
    const char *category, int first_rank, json_t *out);
int crest_trending_norm_x(const json_t *items, const char *region,
    const char *category, int first_rank, json_t *out);
int crest_trending_norm_reddit(const json_t *resp, const char *region,
    const char *category, int first_rank, json_t *out);


/*
 * The guarded calls of trending.c, for other processors of the platforms
 * (trend_scrape.c): the same circuit breaker, Retry-After and
 * X-Ratelimit handling, retries with backoff and YouTube quota as
 * trending-refresh, on the slot thread's own Redis and PostgreSQL
 * connections.
 */

/* in the order of trending.c's own codes */
typedef enum {
    CREST_TRENDING_OK = 0,
    CREST_TRENDING_RETRY,       /* an outage: another attempt may work */
    CREST_TRENDING_FINAL,       /* the service refused: retrying cannot help */
    CREST_TRENDING_QUOTA,       /* YouTube's daily quota is spent */
    CREST_TRENDING_ABORT        /* the worker must stop at once */
} crest_trending_rc_t;

/* The CREST_TRENDING_* settings the calls' URLs are made of. */
typedef struct {
    const char  *youtube_base, *youtube_key;    /* key NULL: not set */
    const char  *apify_base, *apify_token;      /* token NULL: not set */
    const char  *apify_tiktok_actor, *apify_x_actor;
    const char  *reddit_base, *reddit_user_agent;
    long         timeout_ms, apify_timeout_ms;
} crest_trending_conf_t;

typedef struct crest_trending_run_s  crest_trending_run_t;

const crest_trending_conf_t *crest_trending_conf(void);
/* Wall-clock now, or CREST_TRENDING_NOW (tests). */
int64_t crest_trending_now_ms(void);
/* One job's calls to platform ("youtube", "tiktok", "x", "reddit", a
 * static string); NULL with err set when Redis is down or out of memory. */
crest_trending_run_t *crest_trending_run_new(crest_job_ctx_t *ctx,
    const char *platform, char *err, size_t errlen);
void crest_trending_run_free(crest_trending_run_t *run);
/*
 * GET url (POST body as JSON when body is set); *out is the parsed JSON
 * answer on CREST_TRENDING_OK.  yt_method "search" or "videos" charges
 * YouTube's quota first; log_url is what errors show (no key in it).
 * Anything but OK leaves the reason in crest_trending_run_error().
 */
crest_trending_rc_t crest_trending_call(crest_trending_run_t *run,
    const char *url, const char *log_url, const char *const *headers,
    const char *body, const char *yt_method, long timeout_ms, json_t **out);
const char *crest_trending_run_error(const crest_trending_run_t *run);
/* The slot thread's PostgreSQL connection (tick it before use). */
crest_pg_conn_t *crest_trending_run_pg(crest_trending_run_t *run);

#endif /* CREST_TRENDING_H */
