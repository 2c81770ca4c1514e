/*
 * Declarations shared by the Crest modules, which are all linked into one
 * shared object (see ../config).  Anything not static is prefixed ngx_crest_
 * because nginx loads modules with RTLD_GLOBAL.
 */
#ifndef _NGX_CREST_H_INCLUDED_
#define _NGX_CREST_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "crest_buf.h"
#include "crest_envelope.h"


#define NGX_CREST_JSON_TYPE  "application/json; charset=utf-8"


/* why a backend call ended; passed to every pool callback */
typedef enum {
    NGX_CREST_OK = 0,
    NGX_CREST_FAILED,           /* the server answered with an error */
    NGX_CREST_TIMEOUT,          /* no answer in time; connection dropped */
    NGX_CREST_UNAVAILABLE       /* no connection could carry it */
} ngx_crest_status_e;


/*
 * Gets the parsed body (owned by the request pool) and returns what a content
 * handler returns: a status, or NGX_DONE after r->main->count++ when it goes
 * on asynchronously and finalizes the request itself.
 */
typedef ngx_int_t (*ngx_crest_json_body_pt)(ngx_http_request_t *r,
    json_t *body);


/* ngx_http_crest_api_module.c: the envelope and request bodies */

void ngx_crest_pool_allocator(crest_allocator_t *a, ngx_pool_t *pool);
void ngx_crest_meta(ngx_http_request_t *r, crest_meta_t *meta);
ngx_int_t ngx_crest_send_ok(ngx_http_request_t *r, ngx_uint_t status,
    crest_buf_t *data, ngx_str_t *meta_extra);
ngx_int_t ngx_crest_send_error(ngx_http_request_t *r, ngx_uint_t status,
    crest_error_code_t code, const char *message, crest_buf_t *details);
/* As ngx_crest_send_error, with members added to "meta" (as for _ok). */
ngx_int_t ngx_crest_send_error_meta(ngx_http_request_t *r, ngx_uint_t status,
    crest_error_code_t code, const char *message, crest_buf_t *details,
    ngx_str_t *meta_extra);
ngx_int_t ngx_crest_send_json(ngx_http_request_t *r, ngx_uint_t status,
    crest_buf_t *body);
/* 400 VALIDATION_ERROR with details {"field": field} (field: a literal) */
ngx_int_t ngx_crest_send_invalid(ngx_http_request_t *r, const char *field,
    const char *message);
/*
 * A query string argument, unescaped and NUL-terminated in r->pool:
 * NGX_OK, NGX_DECLINED when absent, NGX_ERROR when out of memory.
 */
ngx_int_t ngx_crest_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
/*
 * A query string argument that must be a number from 1 to max (dflt when
 * absent): NGX_OK, NGX_DECLINED when it is not, NGX_ERROR (memory).
 */
ngx_int_t ngx_crest_arg_number(ngx_http_request_t *r, const char *name,
    ngx_uint_t dflt, ngx_uint_t max, ngx_uint_t *out);

#define NGX_CREST_PAGE_MAX        100000
#define NGX_CREST_LIMIT_MAX       100
#define NGX_CREST_LIMIT_DEFAULT   20

/*
 * ?page= (1 to NGX_CREST_PAGE_MAX, default 1) and ?limit= (1 to
 * NGX_CREST_LIMIT_MAX, default NGX_CREST_LIMIT_DEFAULT) of a list endpoint:
 * NGX_OK, or NGX_DECLINED with *rc what the content handler returns (the
 * 400 naming the field already sent, or a 500 to send).
 */
ngx_int_t ngx_crest_page_args(ngx_http_request_t *r, ngx_uint_t *page,
    ngx_uint_t *limit, ngx_int_t *rc);
/*
 * The LIMIT and OFFSET parameters of a page as text in pool, for
 * ngx_crest_pg_* values: NGX_OK or NGX_ERROR (memory).
 */
ngx_int_t ngx_crest_page_sql(ngx_pool_t *pool, ngx_uint_t page,
    ngx_uint_t limit, const char **limit_text, const char **offset_text);
/*
 * Reads a JSON request body and calls handler with it (an object when
 * require_object is set).  A missing or malformed body, a wrong content type
 * or an oversized body is answered here with the envelope; the handler then
 * never runs.  Returns what a content handler returns.
 */
ngx_int_t ngx_crest_read_json_body(ngx_http_request_t *r,
    ngx_uint_t require_object, ngx_crest_json_body_pt handler);

const char *ngx_crest_status_text(ngx_crest_status_e status);

/*
 * Finalizes a request that went asynchronous (from a backend callback or
 * a thread's completion) and runs the requests that posted meanwhile.
 */
void ngx_crest_finalize(ngx_http_request_t *r, ngx_int_t rc);

/*
 * Reads a small file at configuration time (a secret, a key) into the
 * configuration pool, trailing newlines cut.  name is resolved against the
 * prefix like any nginx path.
 */
ngx_int_t ngx_crest_read_conf_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *content);


/* ngx_crest_event.c: connections whose socket a client library owns */

ngx_connection_t *ngx_crest_wrap_socket(ngx_socket_t fd, ngx_log_t *log,
    ngx_event_handler_pt read, ngx_event_handler_pt write, void *data);
ngx_int_t ngx_crest_watch(ngx_event_t *ev, ngx_uint_t on);
void ngx_crest_unwrap_socket(ngx_connection_t *c);
double ngx_crest_now_ms(void);


#endif /* _NGX_CREST_H_INCLUDED_ */
