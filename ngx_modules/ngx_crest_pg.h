/*
 * The per-worker PostgreSQL pool, driven by nginx events through libpq's
 * non-blocking API.  See ngx_http_crest_pg_module.c.
 */
#ifndef _NGX_CREST_PG_H_INCLUDED_
#define _NGX_CREST_PG_H_INCLUDED_

#include "ngx_crest.h"

#include <libpq-fe.h>


typedef struct ngx_crest_pg_query_s  ngx_crest_pg_query_t;

/*
 * Called exactly once per accepted query, never from inside
 * ngx_crest_pg_query().  res is the last result (NGX_CREST_OK and
 * NGX_CREST_FAILED) or NULL; the pool frees it when the callback returns.
 */
typedef void (*ngx_crest_pg_handler_pt)(void *data, ngx_crest_status_e status,
    PGresult *res);

/*
 * Queues a parameterized query (text parameters; lengths may be NULL).  The
 * SQL and parameters are copied.  timeout 0 means crest_pg_query_timeout.
 * Returns NULL when no connection can carry it now (the server is down, the
 * wait queue is full): answer 503 at once rather than wait.  log must live
 * as long as the query unless the query is bound to a request, whose cleanup
 * switches it to the cycle's log.
 */
ngx_crest_pg_query_t *ngx_crest_pg_query(const char *sql, int nparams,
    const char *const *values, const int *lengths, ngx_msec_t timeout,
    ngx_crest_pg_handler_pt handler, void *data, ngx_log_t *log);

/* Detaches the callback; the query itself may still run to its end. */
void ngx_crest_pg_cancel(ngx_crest_pg_query_t *q);

/*
 * Ties a query to a request: if the request ends first (the client went
 * away), the query is cancelled so its callback never touches the request.
 */
ngx_int_t ngx_crest_pg_bind(ngx_http_request_t *r, ngx_crest_pg_query_t *q);

/* The error text of a failed result or of the pool, for logs. */
const char *ngx_crest_pg_error(ngx_crest_status_e status, PGresult *res);

/*
 * A query for a content handler: queued, bound to r, and r watched for its
 * client leaving.  Returns NGX_DONE (the handler will be called; the caller
 * still owns r->main->count), or what sending the 503 answer returned when
 * no connection can carry it, or an HTTP error.
 */
ngx_int_t ngx_crest_pg_request(ngx_http_request_t *r, const char *sql,
    int nparams, const char **values, ngx_crest_pg_handler_pt handler,
    void *data);

/* Logs a failed query and answers 500 (the query failed) or 503. */
ngx_int_t ngx_crest_pg_send_error(ngx_http_request_t *r,
    ngx_crest_status_e status, PGresult *res);

#endif /* _NGX_CREST_PG_H_INCLUDED_ */
