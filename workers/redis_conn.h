/*
 * A blocking Redis connection that keeps itself healthy: connects (with
 * AUTH, SELECT and CLIENT SETNAME crest:worker:<name>) when a retry is due,
 * PINGs when a probe is due, and on any I/O error drops the socket and
 * retries with backoff.  Blocking is fine in a worker process; every call is
 * bounded by the connect or command timeout.
 */
#ifndef CREST_REDIS_CONN_H
#define CREST_REDIS_CONN_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "conn_state.h"

typedef struct {
    const crest_config_t  *cfg;
    redisContext          *ctx;         /* NULL while down */
    crest_conn_state_t     st;
    char                   target[512]; /* redacted URL */
    char                   client_name[512]; /* "" = crest:worker:<name> */
} crest_redis_conn_t;

void crest_redis_conn_init(crest_redis_conn_t *c, const crest_config_t *cfg);
/* The CLIENT SETNAME of later connects (BullMQ's worker name, say). */
void crest_redis_conn_set_client_name(crest_redis_conn_t *c,
    const char *name);
/* Connects or probes if that is due; returns 1 if the connection is up. */
int crest_redis_conn_tick(crest_redis_conn_t *c, int64_t now);
/* When the next tick has work to do (monotonic ms). */
int64_t crest_redis_conn_next(const crest_redis_conn_t *c);
/*
 * Runs a command; NULL if down or on an I/O error (the connection is then
 * dropped for a reconnect).  The caller frees the reply with
 * freeReplyObject(); an error reply is returned, not treated as I/O error.
 */
redisReply *crest_redis_conn_command(crest_redis_conn_t *c, const char *fmt,
    ...);
/* The same with binary-safe arguments (redisCommandArgv). */
redisReply *crest_redis_conn_argv(crest_redis_conn_t *c, int argc,
    const char **argv, const size_t *argvlen);
/*
 * The socket timeout of the commands that follow, e.g. a blocking BZPOPMIN
 * longer than the command timeout; 0 restores the command timeout.
 */
void crest_redis_conn_set_timeout(crest_redis_conn_t *c, unsigned ms);
/* Drops the connection (it reconnects at the next tick). */
void crest_redis_conn_fail(crest_redis_conn_t *c, const char *why);
void crest_redis_conn_close(crest_redis_conn_t *c);

#endif /* CREST_REDIS_CONN_H */
