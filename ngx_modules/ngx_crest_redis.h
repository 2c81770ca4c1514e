/*
 * The per-worker Redis pool: hiredis' async API on nginx events.
 * See ngx_http_crest_redis_module.c.
 */
#ifndef _NGX_CREST_REDIS_H_INCLUDED_
#define _NGX_CREST_REDIS_H_INCLUDED_

#include "ngx_crest.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef struct ngx_crest_redis_cmd_s  ngx_crest_redis_cmd_t;

/*
 * Called exactly once per accepted command, never from inside
 * ngx_crest_redis_command().  reply is owned by hiredis and valid only during
 * the call; it is NULL unless status is NGX_CREST_OK or NGX_CREST_FAILED
 * (an error reply).
 */
typedef void (*ngx_crest_redis_handler_pt)(void *data,
    ngx_crest_status_e status, redisReply *reply);

/*
 * timeout 0 means crest_redis_command_timeout; NULL: no connection now.
 * log must live as long as the command unless it is bound to a request.
 */
ngx_crest_redis_cmd_t *ngx_crest_redis_command(int argc, const char **argv,
    const size_t *argvlen, ngx_msec_t timeout,
    ngx_crest_redis_handler_pt handler, void *data, ngx_log_t *log);

/* A Lua script known by its SHA1, computed once by ngx_crest_redis_script_init. */
typedef struct {
    const char                  *lua;
    size_t                       len;
    char                         sha[41];
} ngx_crest_redis_script_t;

void ngx_crest_redis_script_init(ngx_crest_redis_script_t *script,
    const char *lua, size_t len);

/*
 * Runs a script with EVALSHA; when Redis answers NOSCRIPT (restarted, or
 * its scripts flushed) it is sent once more with EVAL, unseen by handler.
 * args are "numkeys, keys..., argv..." as after the script in EVAL.
 */
ngx_crest_redis_cmd_t *ngx_crest_redis_script(
    const ngx_crest_redis_script_t *script, int argc, const char **argv,
    const size_t *argvlen, ngx_msec_t timeout,
    ngx_crest_redis_handler_pt handler, void *data, ngx_log_t *log);

void ngx_crest_redis_cancel(ngx_crest_redis_cmd_t *cmd);
ngx_int_t ngx_crest_redis_bind(ngx_http_request_t *r,
    ngx_crest_redis_cmd_t *cmd);


/*
 * A dedicated connection: one of its own, outside the pool, for a command
 * that blocks on the server (XREAD BLOCK), which on a pipelined pool
 * connection would hold up every command queued behind it.  It connects as
 * the pool does (AUTH, SELECT) and reconnects with the same backoff.
 *
 * The handler is told NGX_CREST_REDIS_DEDICATED_UP each time it connects
 * (commands may be sent from the handler), and NGX_CREST_REDIS_DEDICATED_CLOSED
 * when nginx shuts down: at once on a graceful shutdown, so that long-lived
 * work can end before the worker exits, and at the latest when the worker
 * exits.  After CLOSED the connection is freed: forget it.
 */
typedef struct ngx_crest_redis_dedicated_s  ngx_crest_redis_dedicated_t;

typedef enum {
    NGX_CREST_REDIS_DEDICATED_UP = 0,
    NGX_CREST_REDIS_DEDICATED_CLOSED
} ngx_crest_redis_dedicated_event_e;

typedef void (*ngx_crest_redis_dedicated_pt)(void *data,
    ngx_crest_redis_dedicated_event_e event);

/* NULL without crest_redis_server, while exiting, or out of memory. */
ngx_crest_redis_dedicated_t *ngx_crest_redis_dedicated_open(
    ngx_crest_redis_dedicated_pt handler, void *data, ngx_log_t *log);
/* As ngx_crest_redis_command, on that connection; NULL while it is down. */
ngx_crest_redis_cmd_t *ngx_crest_redis_dedicated_command(
    ngx_crest_redis_dedicated_t *d, int argc, const char **argv,
    const size_t *argvlen, ngx_msec_t timeout,
    ngx_crest_redis_handler_pt handler, void *data, ngx_log_t *log);
/* Commands in flight are called back (NGX_CREST_UNAVAILABLE) from inside. */
void ngx_crest_redis_dedicated_close(ngx_crest_redis_dedicated_t *d);

#endif /* _NGX_CREST_REDIS_H_INCLUDED_ */
