#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "clock.h"
#include "redis_conn.h"
#include "signals.h"


static struct timeval
crest_redis_tv(unsigned ms)
{
    struct timeval  tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;

    return tv;
}


void
crest_redis_conn_init(crest_redis_conn_t *c, const crest_config_t *cfg)
{
    c->cfg = cfg;
    c->ctx = NULL;
    c->client_name[0] = '\0';
    crest_redis_url_format(&cfg->redis, 1, c->target, sizeof(c->target));
    crest_conn_state_init(&c->st, "redis", c->target, cfg->probe_interval_ms,
                          (uint64_t) crest_wall_ms() ^ (uint64_t) getpid());
}


/*
 * Checks a setup command's reply; on failure writes why into err.  Server
 * error replies (WRONGPASS, NOAUTH...) never echo the password back.
 */
/* hiredis reports a socket timeout as strerror(EAGAIN); say what it means. */
static const char *
crest_redis_errstr(const crest_config_t *cfg, redisContext *ctx, char *buf,
    size_t size)
{
    if (ctx->err == REDIS_ERR_IO && strcmp(ctx->errstr, strerror(EAGAIN)) == 0)
    {
        snprintf(buf, size, "timed out after %u ms", cfg->command_timeout_ms);
        return buf;
    }

    return ctx->errstr[0] ? ctx->errstr : "no reply";
}


static int
crest_redis_expect_ok(const crest_config_t *cfg, redisContext *ctx,
    redisReply *r, const char *what, char *err, size_t errlen)
{
    char  buf[64];
    int   rc;

    if (r == NULL) {
        snprintf(err, errlen, "%s: %s", what,
                 crest_redis_errstr(cfg, ctx, buf, sizeof(buf)));
        return -1;
    }

    rc = 0;

    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %.*s", what, (int) r->len, r->str);
        rc = -1;
    }

    freeReplyObject(r);

    return rc;
}


static int
crest_redis_conn_open(crest_redis_conn_t *c, char *err, size_t errlen)
{
    const crest_redis_url_t  *u;
    redisContext             *ctx;
    redisReply               *r;
    struct timeval            tv;

    u = &c->cfg->redis;
    tv = crest_redis_tv(c->cfg->connect_timeout_ms);

    ctx = u->unix_socket ? redisConnectUnixWithTimeout(u->path, tv)
                         : redisConnectWithTimeout(u->host, (int) u->port, tv);

    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    if (ctx->err) {
        snprintf(err, errlen, "%s", ctx->errstr);
        redisFree(ctx);
        return -1;
    }

    if (redisSetTimeout(ctx, crest_redis_tv(c->cfg->command_timeout_ms))
        != REDIS_OK)
    {
        snprintf(err, errlen, "setting timeouts: %s", ctx->errstr);
        redisFree(ctx);
        return -1;
    }

    if (u->password[0]) {
        r = u->user[0] ? redisCommand(ctx, "AUTH %s %s", u->user, u->password)
                       : redisCommand(ctx, "AUTH %s", u->password);

        if (crest_redis_expect_ok(c->cfg, ctx, r, "AUTH", err, errlen) != 0)
        {
            redisFree(ctx);
            return -1;
        }
    }

    if (u->db) {
        r = redisCommand(ctx, "SELECT %u", u->db);

        if (crest_redis_expect_ok(c->cfg, ctx, r, "SELECT", err, errlen)
            != 0)
        {
            redisFree(ctx);
            return -1;
        }
    }

    r = c->client_name[0]
        ? redisCommand(ctx, "CLIENT SETNAME %s", c->client_name)
        : redisCommand(ctx, "CLIENT SETNAME crest:worker:%s", c->cfg->name);

    if (crest_redis_expect_ok(c->cfg, ctx, r, "CLIENT SETNAME", err, errlen)
        != 0)
    {
        redisFree(ctx);
        return -1;
    }

    c->ctx = ctx;

    return 0;
}


static void
crest_redis_conn_drop(crest_redis_conn_t *c, const char *why)
{
    char  error[256];

    /* why may point into the context we are about to free */
    snprintf(error, sizeof(error), "%s", why);

    redisFree(c->ctx);
    c->ctx = NULL;

    crest_conn_state_lost(&c->st, crest_mono_ms(), error,
                          crest_stop_requested());
}


static void
crest_redis_conn_probe(crest_redis_conn_t *c, int64_t now)
{
    redisReply  *r;
    char         error[256];

    r = redisCommand(c->ctx, "PING");

    if (r == NULL) {
        crest_redis_conn_drop(c, crest_redis_errstr(c->cfg, c->ctx, error,
                                                    sizeof(error)));
        return;
    }

    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "PONG") != 0) {
        /* LOADING, a replica gone read-only...: the server is not usable */
        snprintf(error, sizeof(error), "PING: %.*s", (int) r->len,
                 r->str ? r->str : "unexpected reply");
        freeReplyObject(r);
        crest_redis_conn_drop(c, error);
        return;
    }

    freeReplyObject(r);
    crest_conn_state_probed(&c->st, now);
}


int
crest_redis_conn_tick(crest_redis_conn_t *c, int64_t now)
{
    char  err[512];

    if (!crest_conn_state_due(&c->st, now)) {
        return c->ctx != NULL;
    }

    if (c->ctx) {
        crest_redis_conn_probe(c, now);
        return c->ctx != NULL;
    }

    err[0] = '\0';

    if (crest_redis_conn_open(c, err, sizeof(err)) != 0) {
        crest_conn_state_failed(&c->st, crest_mono_ms(), err,
                                crest_stop_requested());
        return 0;
    }

    crest_conn_state_connected(&c->st, crest_mono_ms());

    return 1;
}


int64_t
crest_redis_conn_next(const crest_redis_conn_t *c)
{
    return crest_conn_state_next(&c->st);
}


redisReply *
crest_redis_conn_command(crest_redis_conn_t *c, const char *fmt, ...)
{
    redisReply  *r;
    va_list      ap;
    char         error[64];

    if (c->ctx == NULL) {
        return NULL;
    }

    va_start(ap, fmt);
    r = redisvCommand(c->ctx, fmt, ap);
    va_end(ap);

    if (r == NULL) {
        crest_redis_conn_drop(c, crest_redis_errstr(c->cfg, c->ctx, error,
                                                    sizeof(error)));
    }

    return r;
}


redisReply *
crest_redis_conn_argv(crest_redis_conn_t *c, int argc, const char **argv,
    const size_t *argvlen)
{
    redisReply  *r;
    char         error[64];

    if (c->ctx == NULL) {
        return NULL;
    }

    r = redisCommandArgv(c->ctx, argc, argv, argvlen);

    if (r == NULL) {
        crest_redis_conn_drop(c, crest_redis_errstr(c->cfg, c->ctx, error,
                                                    sizeof(error)));
    }

    return r;
}


void
crest_redis_conn_set_client_name(crest_redis_conn_t *c, const char *name)
{
    snprintf(c->client_name, sizeof(c->client_name), "%s", name);
}


void
crest_redis_conn_set_timeout(crest_redis_conn_t *c, unsigned ms)
{
    if (c->ctx) {
        redisSetTimeout(c->ctx, crest_redis_tv(ms ? ms
                                                  : c->cfg->command_timeout_ms));
    }
}


void
crest_redis_conn_fail(crest_redis_conn_t *c, const char *why)
{
    if (c->ctx) {
        crest_redis_conn_drop(c, why);
    }
}


void
crest_redis_conn_close(crest_redis_conn_t *c)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }

    c->st.up = 0;
}
