/*
 * Monthly usage quotas: shared by ngx_http_crest_quota_module (the check on
 * a location) and ngx_http_crest_billing_module (the usage and plan
 * endpoints).  See ngx_http_crest_quota_module.c.
 */
#ifndef _NGX_CREST_QUOTA_H_INCLUDED_
#define _NGX_CREST_QUOTA_H_INCLUDED_

#include "ngx_crest_pg.h"


/* the usage types, in the order of ngx_crest_quota_types[] */
#define NGX_CREST_QUOTA_NTYPES     5

#define NGX_CREST_QUOTA_UNLIMITED  -1

/* "crest:usage:{" uuid "}:" type ":" YYYY-MM, 72 bytes, and a NUL */
#define NGX_CREST_QUOTA_KEY_LEN    96

#define NGX_CREST_QUOTA_PLAN_LEN   32


/*
 * One row per usage type: plan, usage_type, monthly_limit (0 when the plan
 * names no limit for the type), the count recorded for the period starting
 * at $2, for the user $1; no rows when the user does not exist.
 */
#define NGX_CREST_QUOTA_SQL                                                   \
    "SELECT p.plan, t.usage_type, COALESCE(l.monthly_limit, 0), "            \
    "COALESCE(uu.count, 0) "                                                  \
    "FROM users u "                                                           \
    "CROSS JOIN LATERAL (SELECT COALESCE((SELECT s.plan_id "                  \
    "FROM subscriptions s WHERE s.user_id = u.id "                            \
    "AND s.status IN ('active', 'trialing', 'past_due') LIMIT 1), 'free') "   \
    "AS plan) p "                                                             \
    "CROSS JOIN unnest(ARRAY['scrape', 'download', 'ai_generation', "         \
    "'upload', 'clip']) AS t(usage_type) "                                    \
    "LEFT JOIN plan_limits l ON l.plan_id = p.plan "                          \
    "AND l.usage_type = t.usage_type "                                        \
    "LEFT JOIN user_usage uu ON uu.user_id = u.id "                           \
    "AND uu.usage_type = t.usage_type AND uu.period_start = $2 "              \
    "WHERE u.id = $1"


/* a calendar month, UTC */
typedef struct {
    time_t                     now;
    time_t                     start;
    time_t                     end;
    u_char                     key[sizeof("YYYY-MM")];
    char                       start_iso[25];     /* ...T00:00:00.000Z */
    char                       end_iso[25];
} ngx_crest_quota_period_t;


/* what NGX_CREST_QUOTA_SQL says about a user */
typedef struct {
    u_char                     plan[NGX_CREST_QUOTA_PLAN_LEN];
    ngx_int_t                  limits[NGX_CREST_QUOTA_NTYPES];
    ngx_int_t                  counts[NGX_CREST_QUOTA_NTYPES];
} ngx_crest_quota_user_t;


extern ngx_str_t  ngx_crest_quota_types[NGX_CREST_QUOTA_NTYPES];


/*
 * The month the request falls in: now, or the X-Crest-Test-Now header
 * (Unix seconds) where crest_quota_test_clock is on.
 */
void ngx_crest_quota_period(ngx_http_request_t *r,
    ngx_crest_quota_period_t *period);

/* Writes the counter's Redis key (NUL-terminated) and returns its length. */
size_t ngx_crest_quota_key(u_char *buf, ngx_str_t *user_id, ngx_uint_t type,
    ngx_crest_quota_period_t *period);

/*
 * Reads the rows of NGX_CREST_QUOTA_SQL.  NGX_DECLINED: no such user;
 * NGX_ERROR: a result of another shape.
 */
ngx_int_t ngx_crest_quota_parse_user(PGresult *res,
    ngx_crest_quota_user_t *user);

/* Remembers a user's plan and limits in this worker (crest_quota_cache). */
void ngx_crest_quota_remember(ngx_http_request_t *r, ngx_str_t *user_id,
    ngx_crest_quota_user_t *user);

/* Forgets them, after the plan changed. */
void ngx_crest_quota_forget_user(ngx_str_t *user_id);

/*
 * Gives back a unit this request took, now (from the Redis counter and from
 * PostgreSQL), for an endpoint that knows it failed while answering with a
 * success status.  Requests that end with a status of 400 or more give it
 * back by themselves.
 */
void ngx_crest_quota_refund(ngx_http_request_t *r);

#endif /* _NGX_CREST_QUOTA_H_INCLUDED_ */
