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

#endif /* _NGX_CREST_REDIS_H_INCLUDED_ */
