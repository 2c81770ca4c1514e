/*
 * ngx_http_crest_redis_module: a per-worker pool of Redis connections on
 * hiredis' async API, with hiredis' event hooks mapped onto nginx events.
 *
 * hiredis 0.14 has no timeouts of its own, so every command carries an nginx
 * timer.  A command cannot be withdrawn once written, so a command past its
 * deadline costs its connection: every command queued on it fails at once
 * and the connection is reopened with backoff.
 */

#include <openssl/sha.h>

#include "ngx_crest_redis.h"


typedef enum {
    NGX_CREST_REDIS_DOWN = 0,
    NGX_CREST_REDIS_BACKOFF,
    NGX_CREST_REDIS_CONNECTING,
    NGX_CREST_REDIS_UP
} ngx_crest_redis_state_e;


typedef struct {
    ngx_str_t                  server;
    char                      *host;        /* numeric address or path */
    int                        port;        /* 0 for a unix socket */
    ngx_int_t                  db;
    ngx_str_t                  password;
    ngx_uint_t                 pool_size;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 command_timeout;
    ngx_msec_t                 backoff_min;
    ngx_msec_t                 backoff_max;
} ngx_http_crest_redis_main_conf_t;


typedef struct {
    redisAsyncContext             *ac;
    ngx_connection_t              *c;
    ngx_crest_redis_state_e        state;
    ngx_uint_t                     pending;
    ngx_event_t                    timer;   /* connect deadline or backoff */
    ngx_msec_t                     backoff;
    ngx_log_t                     *log;
    ngx_crest_redis_dedicated_t   *dedicated;   /* NULL in the pool */
} ngx_crest_redis_conn_t;


/* a connection outside the pool (ngx_crest_redis_dedicated_open) */
struct ngx_crest_redis_dedicated_s {
    ngx_crest_redis_conn_t         conn;
    ngx_crest_redis_dedicated_pt   handler;
    void                          *data;
    ngx_queue_t                    queue;       /* in the pool's list */
    unsigned                       closing:1;
};


struct ngx_crest_redis_cmd_s {
    ngx_crest_redis_handler_pt   handler;
    void                        *data;
    ngx_crest_redis_cmd_t      **slot;
    ngx_crest_redis_conn_t      *conn;
    ngx_event_t                  timer;
};


/* an EVALSHA in flight: what EVAL needs should Redis not know the script */
typedef struct {
    const ngx_crest_redis_script_t  *script;
    ngx_crest_redis_handler_pt       handler;
    void                            *data;
    ngx_crest_redis_cmd_t           *cmd;       /* the command in flight */
    ngx_msec_t                       timeout;
    ngx_log_t                       *log;
    int                              argc;
    const char                     **argv;
    size_t                          *argvlen;
} ngx_crest_redis_eval_t;


typedef struct {
    ngx_http_crest_redis_main_conf_t  *conf;
    ngx_crest_redis_conn_t            *conns;
    ngx_uint_t                         nconns;
    ngx_uint_t                         next;
    ngx_queue_t                        dedicated;
    unsigned                           reported_down:1;
} ngx_crest_redis_pool_t;


static void *ngx_http_crest_redis_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_redis_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_crest_redis_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_redis_backoff(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_redis_init_process(ngx_cycle_t *cycle);
static void ngx_http_crest_redis_exit_process(ngx_cycle_t *cycle);

static void ngx_crest_redis_connect(ngx_crest_redis_conn_t *rc);
static void ngx_crest_redis_schedule(ngx_crest_redis_conn_t *rc);
static void ngx_crest_redis_drop(ngx_crest_redis_conn_t *rc);
static void ngx_crest_redis_timer_handler(ngx_event_t *ev);
static void ngx_crest_redis_read_handler(ngx_event_t *rev);
static void ngx_crest_redis_write_handler(ngx_event_t *wev);
static void ngx_crest_redis_add_read(void *privdata);
static void ngx_crest_redis_del_read(void *privdata);
static void ngx_crest_redis_add_write(void *privdata);
static void ngx_crest_redis_del_write(void *privdata);
static void ngx_crest_redis_cleanup(void *privdata);
static void ngx_crest_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_crest_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_crest_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_crest_redis_cmd_timeout(ngx_event_t *ev);
static void ngx_crest_redis_eval_done(void *data, ngx_crest_status_e status,
    redisReply *reply);
static void ngx_crest_redis_request_cleanup(void *data);
static void ngx_crest_redis_dedicated_closed(ngx_crest_redis_dedicated_t *d);


static ngx_command_t  ngx_http_crest_redis_commands[] = {

    { ngx_string("crest_redis_server"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_crest_redis_server,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_redis_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_redis_main_conf_t, pool_size),
      NULL },

    { ngx_string("crest_redis_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_redis_main_conf_t, connect_timeout),
      NULL },

    { ngx_string("crest_redis_command_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_redis_main_conf_t, command_timeout),
      NULL },

    { ngx_string("crest_redis_reconnect_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_crest_redis_backoff,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_crest_redis_create_main_conf, /* create main configuration */
    ngx_http_crest_redis_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_crest_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_redis_module_ctx,      /* module context */
    ngx_http_crest_redis_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_crest_redis_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_crest_redis_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_crest_redis_pool_t  ngx_crest_redis_pool;


static void *
ngx_http_crest_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_redis_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_redis_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmcf->server = { 0, NULL };
     *     rmcf->host = NULL;
     *     rmcf->port = 0;
     *     rmcf->db = 0;
     *     rmcf->password = { 0, NULL };
     */

    rmcf->pool_size = NGX_CONF_UNSET_UINT;
    rmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->command_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->backoff_min = NGX_CONF_UNSET_MSEC;
    rmcf->backoff_max = NGX_CONF_UNSET_MSEC;

    return rmcf;
}


static char *
ngx_http_crest_redis_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_redis_main_conf_t  *rmcf = conf;

    /* one pipelined connection carries a lot; two spread the parsing */
    ngx_conf_init_uint_value(rmcf->pool_size, 2);
    ngx_conf_init_msec_value(rmcf->connect_timeout, 1000);
    ngx_conf_init_msec_value(rmcf->command_timeout, 1000);
    ngx_conf_init_msec_value(rmcf->backoff_min, 100);
    ngx_conf_init_msec_value(rmcf->backoff_max, 1000);

    if (rmcf->pool_size == 0 || rmcf->pool_size > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_redis_pool_size must be 1 to 64");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * crest_redis_server address [db=N] [password_file=path];
 * The address is resolved here, at configuration time: hiredis would
 * resolve a name with a blocking call on the event loop.
 */
static char *
ngx_http_crest_redis_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_redis_main_conf_t  *rmcf = conf;

    size_t                len;
    ngx_str_t            *value, file;
    ngx_url_t             u;
    ngx_uint_t            i;
    struct sockaddr_un   *sun;

    if (rmcf->server.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    rmcf->server = value[1];

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s in crest_redis_server \"%V\"",
                           u.err ? u.err : "host not found", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (u.family == AF_UNIX) {
        sun = (struct sockaddr_un *) u.addrs[0].sockaddr;
        len = ngx_strlen(sun->sun_path);
        rmcf->host = ngx_pnalloc(cf->pool, len + 1);
        if (rmcf->host == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_cpystrn((u_char *) rmcf->host, (u_char *) sun->sun_path, len + 1);
        rmcf->port = 0;

    } else {
        rmcf->host = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (rmcf->host == NULL) {
            return NGX_CONF_ERROR;
        }
        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                            (u_char *) rmcf->host, NGX_SOCKADDR_STRLEN, 0);
        rmcf->host[len] = '\0';
        rmcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            rmcf->db = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (rmcf->db == NGX_ERROR || rmcf->db > 1048576) {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            file.data = value[i].data + 14;
            file.len = value[i].len - 14;

            if (file.len == 0) {
                goto invalid;
            }

            if (ngx_crest_read_conf_file(cf, &file, 4096, &rmcf->password)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_crest_redis_backoff(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_redis_main_conf_t  *rmcf = conf;

    ngx_str_t  *value;

    if (rmcf->backoff_min != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rmcf->backoff_min = ngx_parse_time(&value[1], 0);
    rmcf->backoff_max = ngx_parse_time(&value[2], 0);

    if (rmcf->backoff_min == (ngx_msec_t) NGX_ERROR
        || rmcf->backoff_max == (ngx_msec_t) NGX_ERROR
        || rmcf->backoff_min == 0
        || rmcf->backoff_max < rmcf->backoff_min)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid crest_redis_reconnect_backoff \"%V %V\"",
                           &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_crest_redis_conn_t            *rc;
    ngx_http_crest_redis_main_conf_t  *rmcf;

    ngx_memzero(&ngx_crest_redis_pool, sizeof(ngx_crest_redis_pool_t));
    ngx_queue_init(&ngx_crest_redis_pool.dedicated);

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_crest_redis_module);

    if (rmcf == NULL || rmcf->host == NULL) {
        return NGX_OK;
    }

    ngx_crest_redis_pool.conf = rmcf;
    ngx_crest_redis_pool.nconns = rmcf->pool_size;
    ngx_crest_redis_pool.conns = ngx_pcalloc(cycle->pool,
                              rmcf->pool_size * sizeof(ngx_crest_redis_conn_t));
    if (ngx_crest_redis_pool.conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < rmcf->pool_size; i++) {
        rc = &ngx_crest_redis_pool.conns[i];
        rc->log = cycle->log;
        rc->timer.handler = ngx_crest_redis_timer_handler;
        rc->timer.data = rc;
        rc->timer.log = cycle->log;
        rc->timer.cancelable = 1;
        rc->backoff = rmcf->backoff_min;

        ngx_crest_redis_connect(rc);
    }

    return NGX_OK;
}


static void
ngx_http_crest_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_queue_t                  *q;
    ngx_crest_redis_conn_t       *rc;
    ngx_crest_redis_dedicated_t  *d;

    /* dedicated connections first: their owners forget them */
    while (!ngx_queue_empty(&ngx_crest_redis_pool.dedicated)) {
        q = ngx_queue_head(&ngx_crest_redis_pool.dedicated);
        d = ngx_queue_data(q, ngx_crest_redis_dedicated_t, queue);
        ngx_crest_redis_dedicated_closed(d);
    }

    /* nothing may be called back into requests that are being abandoned */
    ngx_crest_redis_pool.conf = NULL;

    for (i = 0; i < ngx_crest_redis_pool.nconns; i++) {
        rc = &ngx_crest_redis_pool.conns[i];

        if (rc->timer.timer_set) {
            ngx_del_timer(&rc->timer);
        }

        ngx_crest_redis_drop(rc);
    }

    ngx_crest_redis_pool.nconns = 0;
}


/* connection life cycle */

static void
ngx_crest_redis_connect(ngx_crest_redis_conn_t *rc)
{
    const char                        *argv[2];
    redisAsyncContext                 *ac;
    ngx_http_crest_redis_main_conf_t  *rmcf;

    rmcf = ngx_crest_redis_pool.conf;

    if (rmcf->port) {
        /* a numeric address (resolved at configuration time): hiredis
         * parses it without any lookup on the event loop */
        ac = redisAsyncConnect(rmcf->host, rmcf->port);

    } else {
        ac = redisAsyncConnectUnix(rmcf->host);
    }

    if (ac == NULL || ac->err) {
        if (!ngx_crest_redis_pool.reported_down) {
            ngx_crest_redis_pool.reported_down = 1;
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "crest redis: connect to redis failed: %s",
                          ac ? ac->errstr : "out of memory");
        }

        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_crest_redis_schedule(rc);
        return;
    }

    rc->c = ngx_crest_wrap_socket(ac->c.fd, rc->log,
                                  ngx_crest_redis_read_handler,
                                  ngx_crest_redis_write_handler, rc);
    if (rc->c == NULL) {
        redisAsyncFree(ac);
        ngx_crest_redis_schedule(rc);
        return;
    }

    rc->ac = ac;
    rc->state = NGX_CREST_REDIS_CONNECTING;
    ac->data = rc;
    ac->ev.data = rc;
    ac->ev.addRead = ngx_crest_redis_add_read;
    ac->ev.delRead = ngx_crest_redis_del_read;
    ac->ev.addWrite = ngx_crest_redis_add_write;
    ac->ev.delWrite = ngx_crest_redis_del_write;
    ac->ev.cleanup = ngx_crest_redis_cleanup;

    /* hiredis learns of the connection on the first write event */
    redisAsyncSetConnectCallback(ac, ngx_crest_redis_on_connect);

    /* queued ahead of every command, so they run first on the wire */
    if (rmcf->password.len) {
        argv[0] = "AUTH";
        argv[1] = (const char *) rmcf->password.data;
        (void) redisAsyncCommandArgv(ac, ngx_crest_redis_setup_reply, NULL, 2,
                                     argv, (size_t[]) { 4, rmcf->password.len });
    }

    if (rmcf->db) {
        (void) redisAsyncCommand(ac, ngx_crest_redis_setup_reply, NULL,
                                 "SELECT %d", (int) rmcf->db);
    }

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    ngx_add_timer(&rc->timer, rmcf->connect_timeout);
}


static void
ngx_crest_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_crest_redis_conn_t  *rc = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context next; cleanup reschedules */
        if (!ngx_crest_redis_pool.reported_down) {
            ngx_crest_redis_pool.reported_down = 1;
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "crest redis: connect to redis failed: %s",
                          ac->errstr);
        }
        return;
    }

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    rc->state = NGX_CREST_REDIS_UP;
    rc->backoff = ngx_crest_redis_pool.conf->backoff_min;

    if (ngx_crest_redis_pool.reported_down) {
        ngx_crest_redis_pool.reported_down = 0;
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "crest redis: connection to redis restored");
    }

    if (rc->dedicated) {
        rc->dedicated->handler(rc->dedicated->data,
                               NGX_CREST_REDIS_DEDICATED_UP);
    }
}


static void
ngx_crest_redis_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply              *reply = r;
    ngx_crest_redis_conn_t  *rc = ac->data;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        /* a wrong password or database: no command on this link may run */
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "crest redis: connection setup refused: %*s",
                      (size_t) reply->len, reply->str);
        ngx_crest_redis_pool.reported_down = 1;
        redisAsyncDisconnect(ac);
    }
}


static void
ngx_crest_redis_schedule(ngx_crest_redis_conn_t *rc)
{
    ngx_msec_t  delay;

    rc->state = NGX_CREST_REDIS_DOWN;

    if (ngx_exiting || ngx_terminate || ngx_crest_redis_pool.conf == NULL
        || (rc->dedicated && rc->dedicated->closing))
    {
        return;
    }

    delay = rc->backoff + (ngx_msec_t) ngx_random() % (rc->backoff / 4 + 1);

    rc->backoff *= 2;
    if (rc->backoff > ngx_crest_redis_pool.conf->backoff_max) {
        rc->backoff = ngx_crest_redis_pool.conf->backoff_max;
    }

    rc->state = NGX_CREST_REDIS_BACKOFF;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    ngx_add_timer(&rc->timer, delay);
}


/*
 * Frees the hiredis context: its pending commands are called back with no
 * reply, then ngx_crest_redis_cleanup() forgets the socket and reschedules.
 */
static void
ngx_crest_redis_drop(ngx_crest_redis_conn_t *rc)
{
    redisAsyncContext  *ac;

    ac = rc->ac;

    if (ac == NULL) {
        return;
    }

    rc->state = NGX_CREST_REDIS_DOWN;
    redisAsyncFree(ac);
}


static void
ngx_crest_redis_cleanup(void *privdata)
{
    ngx_crest_redis_conn_t  *rc = privdata;

    if (rc->state == NGX_CREST_REDIS_UP && !ngx_crest_redis_pool.reported_down
        && ngx_crest_redis_pool.conf && !ngx_exiting)
    {
        ngx_crest_redis_pool.reported_down = 1;
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "crest redis: lost the connection to redis: %s",
                      rc->ac && rc->ac->errstr[0] ? rc->ac->errstr
                                                  : "closed");
    }

    if (rc->c) {
        ngx_crest_unwrap_socket(rc->c);
        rc->c = NULL;
    }

    rc->ac = NULL;
    rc->pending = 0;

    ngx_crest_redis_schedule(rc);
}


static void
ngx_crest_redis_timer_handler(ngx_event_t *ev)
{
    ngx_crest_redis_conn_t  *rc = ev->data;

    switch (rc->state) {

    case NGX_CREST_REDIS_BACKOFF:
        ngx_crest_redis_connect(rc);
        break;

    case NGX_CREST_REDIS_CONNECTING:
        if (!ngx_crest_redis_pool.reported_down) {
            ngx_crest_redis_pool.reported_down = 1;
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "crest redis: connect to redis timed out");
        }
        ngx_crest_redis_drop(rc);
        break;

    default:
        break;
    }
}


static void
ngx_crest_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t        *c = rev->data;
    ngx_crest_redis_conn_t  *rc = c->data;

    if (c->close) {
        c->close = 0;

        /*
         * Graceful shutdown.  A dedicated connection is kept idle on
         * purpose, so that its owner learns of the shutdown now and can
         * end what it serves.
         */
        if (rc->dedicated) {
            ngx_crest_redis_dedicated_closed(rc->dedicated);
            return;
        }

        /* only a pool connection with nothing in flight goes now */
        if (rc->pending == 0) {
            ngx_crest_redis_drop(rc);
            return;
        }
    }

    /* may free the context and c with it: nothing is touched after */
    redisAsyncHandleRead(rc->ac);
}


static void
ngx_crest_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t        *c = wev->data;
    ngx_crest_redis_conn_t  *rc = c->data;

    redisAsyncHandleWrite(rc->ac);
}


static void
ngx_crest_redis_add_read(void *privdata)
{
    ngx_crest_redis_conn_t  *rc = privdata;

    if (rc->c && ngx_crest_watch(rc->c->read, 1) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "crest redis: cannot watch a redis socket");
    }
}


static void
ngx_crest_redis_del_read(void *privdata)
{
    ngx_crest_redis_conn_t  *rc = privdata;

    if (rc->c) {
        (void) ngx_crest_watch(rc->c->read, 0);
    }
}


static void
ngx_crest_redis_add_write(void *privdata)
{
    ngx_crest_redis_conn_t  *rc = privdata;

    if (rc->c && ngx_crest_watch(rc->c->write, 1) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "crest redis: cannot watch a redis socket");
    }
}


static void
ngx_crest_redis_del_write(void *privdata)
{
    ngx_crest_redis_conn_t  *rc = privdata;

    if (rc->c) {
        (void) ngx_crest_watch(rc->c->write, 0);
    }
}


/* commands */

static ngx_int_t
ngx_crest_redis_send(ngx_crest_redis_conn_t *rc, ngx_crest_redis_cmd_t *cmd,
    int argc, const char **argv, const size_t *argvlen, ngx_msec_t timeout)
{
    if (redisAsyncCommandArgv(rc->ac, ngx_crest_redis_reply, cmd, argc, argv,
                              argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    cmd->conn = rc;
    rc->pending++;

    ngx_add_timer(&cmd->timer, timeout ? timeout
                          : ngx_crest_redis_pool.conf->command_timeout);

    return NGX_OK;
}


ngx_crest_redis_cmd_t *
ngx_crest_redis_command(int argc, const char **argv, const size_t *argvlen,
    ngx_msec_t timeout, ngx_crest_redis_handler_pt handler, void *data,
    ngx_log_t *log)
{
    ngx_uint_t               i, n, pass;
    ngx_crest_redis_cmd_t   *cmd;
    ngx_crest_redis_conn_t  *rc;

    if (ngx_crest_redis_pool.conf == NULL) {
        return NULL;
    }

    cmd = ngx_calloc(sizeof(ngx_crest_redis_cmd_t), log);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->timer.handler = ngx_crest_redis_cmd_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = log;

    n = ngx_crest_redis_pool.nconns;

    if (ngx_exiting) {
        /* graceful shutdown closed idle links; a request still running may
         * need one, so reopen it */
        for (i = 0; i < n; i++) {
            if (ngx_crest_redis_pool.conns[i].state >= NGX_CREST_REDIS_CONNECTING) {
                break;
            }
        }

        for (pass = 0; i == n && pass < n; pass++) {
            if (ngx_crest_redis_pool.conns[pass].state == NGX_CREST_REDIS_DOWN) {
                ngx_crest_redis_connect(&ngx_crest_redis_pool.conns[pass]);
                break;
            }
        }
    }

    /* round robin over live links first, then links still connecting */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < n; i++) {
            rc = &ngx_crest_redis_pool.conns[(ngx_crest_redis_pool.next + i) % n];

            if (rc->state != (pass ? NGX_CREST_REDIS_CONNECTING
                                   : NGX_CREST_REDIS_UP))
            {
                continue;
            }

            if (ngx_crest_redis_send(rc, cmd, argc, argv, argvlen, timeout)
                != NGX_OK)
            {
                continue;
            }

            ngx_crest_redis_pool.next++;
            rc->c->idle = 0;

            return cmd;
        }
    }

    ngx_free(cmd);

    return NULL;
}


static void
ngx_crest_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply              *reply = r;
    ngx_crest_redis_cmd_t   *cmd = privdata;
    ngx_crest_redis_conn_t  *rc;

    ngx_crest_status_e           status;
    ngx_crest_redis_handler_pt   handler;

    rc = cmd->conn;

    if (rc->pending) {
        rc->pending--;
    }

    if (rc->pending == 0 && rc->c) {
        rc->c->idle = 1;
    }

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    if (cmd->slot) {
        *cmd->slot = NULL;
    }

    handler = cmd->handler;

    /* the script wrapper always runs: it owns state to free */
    if (handler
        && (ngx_crest_redis_pool.conf || handler == ngx_crest_redis_eval_done))
    {
        if (reply == NULL) {
            status = NGX_CREST_UNAVAILABLE;

        } else if (reply->type == REDIS_REPLY_ERROR) {
            status = NGX_CREST_FAILED;

        } else {
            status = NGX_CREST_OK;
        }

        handler(cmd->data, status, reply);
    }

    ngx_free(cmd);
}


static void
ngx_crest_redis_cmd_timeout(ngx_event_t *ev)
{
    ngx_crest_redis_cmd_t   *cmd = ev->data;
    ngx_crest_redis_conn_t  *rc;

    ngx_crest_redis_handler_pt   handler;

    rc = cmd->conn;
    handler = cmd->handler;
    cmd->handler = NULL;

    if (cmd->slot) {
        *cmd->slot = NULL;
        cmd->slot = NULL;
    }

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "crest redis: command timed out, dropping its connection");

    if (handler) {
        handler(cmd->data, NGX_CREST_TIMEOUT, NULL);
    }

    /* frees cmd with every other command on the link */
    ngx_crest_redis_drop(rc);
}


void
ngx_crest_redis_cancel(ngx_crest_redis_cmd_t *cmd)
{
    ngx_crest_redis_eval_t  *ev;

    /*
     * The reply still arrives and frees cmd, and the deadline stays armed;
     * both outlive the request, so they must not log through its log.
     * A script's wrapper keeps running (it frees its state), silenced.
     */
    if (cmd->handler == ngx_crest_redis_eval_done) {
        ev = cmd->data;
        ev->handler = NULL;
        ev->log = ngx_cycle->log;

    } else {
        cmd->handler = NULL;
    }

    cmd->timer.log = ngx_cycle->log;

    if (cmd->slot) {
        *cmd->slot = NULL;
        cmd->slot = NULL;
    }
}


static void
ngx_crest_redis_request_cleanup(void *data)
{
    ngx_crest_redis_cmd_t  **slot = data;

    if (*slot) {
        ngx_crest_redis_cancel(*slot);
    }
}


ngx_int_t
ngx_crest_redis_bind(ngx_http_request_t *r, ngx_crest_redis_cmd_t *cmd)
{
    ngx_http_cleanup_t      *cln;
    ngx_crest_redis_cmd_t  **slot;

    cln = ngx_http_cleanup_add(r, sizeof(ngx_crest_redis_cmd_t *));
    if (cln == NULL) {
        ngx_crest_redis_cancel(cmd);
        return NGX_ERROR;
    }

    slot = cln->data;
    *slot = cmd;
    cmd->slot = slot;
    cln->handler = ngx_crest_redis_request_cleanup;

    return NGX_OK;
}


/* scripts */

void
ngx_crest_redis_script_init(ngx_crest_redis_script_t *script, const char *lua,
    size_t len)
{
    u_char  digest[SHA_DIGEST_LENGTH];

    script->lua = lua;
    script->len = len;

    SHA1((const u_char *) lua, len, digest);
    ngx_hex_dump((u_char *) script->sha, digest, sizeof(digest));
    script->sha[40] = '\0';
}


static ngx_crest_redis_cmd_t *
ngx_crest_redis_eval_send(ngx_crest_redis_eval_t *ev, ngx_uint_t whole);


static void
ngx_crest_redis_eval_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_crest_redis_eval_t  *ev = data;

    ngx_crest_redis_cmd_t   *cmd, **slot;

    if (status == NGX_CREST_FAILED && ev->argv && ngx_crest_redis_pool.conf
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* the request's binding, which the reply has just cleared */
        slot = ev->cmd->slot;

        /* Redis does not know it (yet, or any more): send it whole once */
        cmd = ngx_crest_redis_eval_send(ev, 1);

        if (cmd) {
            ev->cmd = cmd;

            if (slot && ev->handler) {
                cmd->slot = slot;
                *slot = cmd;
            }

            return;
        }

        status = NGX_CREST_UNAVAILABLE;
        reply = NULL;
    }

    if (ev->handler && ngx_crest_redis_pool.conf) {
        ev->handler(ev->data, status, reply);
    }

    ngx_free(ev);
}


static ngx_crest_redis_cmd_t *
ngx_crest_redis_eval_send(ngx_crest_redis_eval_t *ev, ngx_uint_t whole)
{
    int                     i;
    const char             *argv[32];
    size_t                  argvlen[32];
    ngx_crest_redis_cmd_t  *cmd;

    argv[0] = whole ? "EVAL" : "EVALSHA";
    argvlen[0] = whole ? 4 : 7;
    argv[1] = whole ? ev->script->lua : ev->script->sha;
    argvlen[1] = whole ? ev->script->len : 40;

    for (i = 0; i < ev->argc; i++) {
        argv[i + 2] = ev->argv[i];
        argvlen[i + 2] = ev->argvlen[i];
    }

    cmd = ngx_crest_redis_command(ev->argc + 2, argv, argvlen, ev->timeout,
                                  ngx_crest_redis_eval_done, ev, ev->log);

    if (whole) {
        /* one retry only: the arguments are not needed again */
        ev->argv = NULL;
    }

    return cmd;
}


ngx_crest_redis_cmd_t *
ngx_crest_redis_script(const ngx_crest_redis_script_t *script, int argc,
    const char **argv, const size_t *argvlen, ngx_msec_t timeout,
    ngx_crest_redis_handler_pt handler, void *data, ngx_log_t *log)
{
    int                      i;
    u_char                  *p;
    size_t                   size;
    ngx_crest_redis_eval_t  *ev;

    if (argc > 30) {
        return NULL;
    }

    /* one block: the state, the vectors, then copies of the arguments */
    size = sizeof(ngx_crest_redis_eval_t)
           + argc * (sizeof(char *) + sizeof(size_t));

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    ev = ngx_alloc(size, log);
    if (ev == NULL) {
        return NULL;
    }

    ev->script = script;
    ev->handler = handler;
    ev->data = data;
    ev->timeout = timeout;
    ev->log = log;
    ev->argc = argc;

    p = (u_char *) (ev + 1);
    ev->argv = (const char **) p;
    p += argc * sizeof(char *);
    ev->argvlen = (size_t *) p;
    p += argc * sizeof(size_t);

    for (i = 0; i < argc; i++) {
        ev->argv[i] = (const char *) p;
        ev->argvlen[i] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    ev->cmd = ngx_crest_redis_eval_send(ev, 0);

    if (ev->cmd == NULL) {
        ngx_free(ev);
        return NULL;
    }

    return ev->cmd;
}


/* dedicated connections */

ngx_crest_redis_dedicated_t *
ngx_crest_redis_dedicated_open(ngx_crest_redis_dedicated_pt handler,
    void *data, ngx_log_t *log)
{
    ngx_crest_redis_conn_t       *rc;
    ngx_crest_redis_dedicated_t  *d;

    if (ngx_crest_redis_pool.conf == NULL || ngx_exiting) {
        return NULL;
    }

    d = ngx_calloc(sizeof(ngx_crest_redis_dedicated_t), log);
    if (d == NULL) {
        return NULL;
    }

    d->handler = handler;
    d->data = data;
    ngx_queue_insert_tail(&ngx_crest_redis_pool.dedicated, &d->queue);

    rc = &d->conn;
    rc->dedicated = d;
    rc->log = ngx_cycle->log;
    rc->timer.handler = ngx_crest_redis_timer_handler;
    rc->timer.data = rc;
    rc->timer.log = ngx_cycle->log;
    rc->timer.cancelable = 1;
    rc->backoff = ngx_crest_redis_pool.conf->backoff_min;

    /* UP comes from the connect callback, never from in here */
    ngx_crest_redis_connect(rc);

    return d;
}


ngx_crest_redis_cmd_t *
ngx_crest_redis_dedicated_command(ngx_crest_redis_dedicated_t *d, int argc,
    const char **argv, const size_t *argvlen, ngx_msec_t timeout,
    ngx_crest_redis_handler_pt handler, void *data, ngx_log_t *log)
{
    ngx_crest_redis_cmd_t  *cmd;

    if (ngx_crest_redis_pool.conf == NULL
        || d->conn.state < NGX_CREST_REDIS_CONNECTING)
    {
        return NULL;
    }

    cmd = ngx_calloc(sizeof(ngx_crest_redis_cmd_t), log);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->timer.handler = ngx_crest_redis_cmd_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = log;

    /*
     * The connection stays idle for nginx even with a command in flight:
     * a graceful shutdown then tells the owner at once (the CLOSED event)
     * rather than waiting for a blocking command to return.
     */
    if (ngx_crest_redis_send(&d->conn, cmd, argc, argv, argvlen, timeout)
        != NGX_OK)
    {
        ngx_free(cmd);
        return NULL;
    }

    return cmd;
}


/*
 * The commands in flight are called back (NGX_CREST_UNAVAILABLE) before
 * this returns; the handler is not called.
 */
void
ngx_crest_redis_dedicated_close(ngx_crest_redis_dedicated_t *d)
{
    d->closing = 1;
    ngx_queue_remove(&d->queue);

    if (d->conn.timer.timer_set) {
        ngx_del_timer(&d->conn.timer);
    }

    ngx_crest_redis_drop(&d->conn);

    ngx_free(d);
}


/* nginx is shutting down: the owner forgets d, then it is closed */
static void
ngx_crest_redis_dedicated_closed(ngx_crest_redis_dedicated_t *d)
{
    d->handler(d->data, NGX_CREST_REDIS_DEDICATED_CLOSED);

    ngx_crest_redis_dedicated_close(d);
}
