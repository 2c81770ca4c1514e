/*
 * ngx_http_crest_pg_module: a per-worker pool of PostgreSQL connections.
 *
 * Every connection is driven by nginx events through libpq's non-blocking
 * API, so a slow or stopped server never holds the worker: a query waits on
 * its socket, and its deadline is an nginx timer.  libpq cannot cancel one
 * query without a blocking round trip (PQcancel), so a query past its
 * deadline costs its connection, which is reopened with backoff.
 */

#include "ngx_crest_pg.h"


typedef enum {
    NGX_CREST_PG_DOWN = 0,
    NGX_CREST_PG_BACKOFF,
    NGX_CREST_PG_CONNECTING,
    NGX_CREST_PG_IDLE,
    NGX_CREST_PG_BUSY
} ngx_crest_pg_state_e;


typedef struct {
    ngx_str_t                  conninfo;
    char                      *conninfo_final;
    ngx_uint_t                 pool_size;
    ngx_uint_t                 queue_size;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 query_timeout;
    ngx_msec_t                 backoff_min;
    ngx_msec_t                 backoff_max;
} ngx_http_crest_pg_main_conf_t;


typedef struct {
    PGconn                    *pg;
    ngx_connection_t          *c;
    ngx_crest_pg_state_e       state;
    ngx_crest_pg_query_t      *query;
    PGresult                  *result;
    ngx_event_t                timer;       /* connect deadline or backoff */
    ngx_msec_t                 backoff;
    ngx_log_t                 *log;
} ngx_crest_pg_conn_t;


struct ngx_crest_pg_query_s {
    ngx_queue_t                queue;
    ngx_crest_pg_handler_pt    handler;
    void                      *data;
    ngx_crest_pg_query_t     **slot;
    ngx_crest_pg_conn_t       *conn;
    ngx_event_t                timer;
    ngx_log_t                 *log;
    char                      *sql;
    int                        nparams;
    char                     **values;
    int                       *lengths;
    unsigned                   waiting:1;
};


typedef struct {
    ngx_http_crest_pg_main_conf_t  *conf;
    ngx_crest_pg_conn_t            *conns;
    ngx_uint_t                      nconns;
    ngx_queue_t                     waiting;
    ngx_uint_t                      nwaiting;
    ngx_uint_t                      up;         /* connections usable now */
    unsigned                        reported_down:1;
    ngx_log_t                      *log;
} ngx_crest_pg_pool_t;


static void *ngx_http_crest_pg_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_pg_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_crest_pg_conninfo(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_pg_backoff(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_pg_init_process(ngx_cycle_t *cycle);
static void ngx_http_crest_pg_exit_process(ngx_cycle_t *cycle);

static void ngx_crest_pg_connect(ngx_crest_pg_conn_t *pc);
static void ngx_crest_pg_connect_poll(ngx_crest_pg_conn_t *pc);
static void ngx_crest_pg_read_handler(ngx_event_t *rev);
static void ngx_crest_pg_write_handler(ngx_event_t *wev);
static void ngx_crest_pg_timer_handler(ngx_event_t *ev);
static void ngx_crest_pg_query_timeout(ngx_event_t *ev);
static void ngx_crest_pg_fail(ngx_crest_pg_conn_t *pc,
    ngx_crest_status_e status, const char *reason);
static void ngx_crest_pg_close(ngx_crest_pg_conn_t *pc);
static void ngx_crest_pg_schedule(ngx_crest_pg_conn_t *pc);
static ngx_int_t ngx_crest_pg_send(ngx_crest_pg_conn_t *pc,
    ngx_crest_pg_query_t *q);
static void ngx_crest_pg_dispatch(void);
static void ngx_crest_pg_deliver(ngx_crest_pg_query_t *q,
    ngx_crest_status_e status, PGresult *res);
static void ngx_crest_pg_free_query(ngx_crest_pg_query_t *q);
static void ngx_crest_pg_fail_waiting(void);
static void ngx_crest_pg_request_cleanup(void *data);


static ngx_command_t  ngx_http_crest_pg_commands[] = {

    { ngx_string("crest_pg_conninfo"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_crest_pg_conninfo,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_pg_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_pg_main_conf_t, pool_size),
      NULL },

    { ngx_string("crest_pg_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_pg_main_conf_t, queue_size),
      NULL },

    { ngx_string("crest_pg_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_pg_main_conf_t, connect_timeout),
      NULL },

    { ngx_string("crest_pg_query_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_pg_main_conf_t, query_timeout),
      NULL },

    { ngx_string("crest_pg_reconnect_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_crest_pg_backoff,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_pg_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_crest_pg_create_main_conf,    /* create main configuration */
    ngx_http_crest_pg_init_main_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_crest_pg_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_pg_module_ctx,         /* module context */
    ngx_http_crest_pg_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_crest_pg_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_crest_pg_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* one pool per worker process */
static ngx_crest_pg_pool_t  ngx_crest_pg_pool;


static void *
ngx_http_crest_pg_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_pg_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_pg_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pmcf->conninfo = { 0, NULL };
     *     pmcf->conninfo_final = NULL;
     */

    pmcf->pool_size = NGX_CONF_UNSET_UINT;
    pmcf->queue_size = NGX_CONF_UNSET_UINT;
    pmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->query_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->backoff_min = NGX_CONF_UNSET_MSEC;
    pmcf->backoff_max = NGX_CONF_UNSET_MSEC;

    return pmcf;
}


static char *
ngx_http_crest_pg_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_pg_main_conf_t  *pmcf = conf;

    ngx_conf_init_uint_value(pmcf->pool_size, 4);
    ngx_conf_init_uint_value(pmcf->queue_size, 1024);
    ngx_conf_init_msec_value(pmcf->connect_timeout, 3000);
    ngx_conf_init_msec_value(pmcf->query_timeout, 5000);
    ngx_conf_init_msec_value(pmcf->backoff_min, 100);
    ngx_conf_init_msec_value(pmcf->backoff_max, 1000);

    if (pmcf->pool_size == 0 || pmcf->pool_size > 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_pg_pool_size must be 1 to 256");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* Quotes a conninfo value: single quotes, with ' and \ escaped. */
static u_char *
ngx_http_crest_pg_quote(u_char *p, const char *s)
{
    *p++ = '\'';

    while (*s) {
        if (*s == '\'' || *s == '\\') {
            *p++ = '\\';
        }
        *p++ = *s++;
    }

    *p++ = '\'';

    return p;
}


/*
 * Parses the conninfo once at configuration time and rebuilds it in keyword
 * form: a host name is resolved here (libpq would resolve it with a blocking
 * call inside the event loop), and GSS encryption negotiation is disabled
 * unless asked for, since its credential lookup can block too.
 */
static char *
ngx_http_crest_pg_conninfo(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_pg_main_conf_t  *pmcf = conf;

    char                *err, *host, *hostaddr, addr[NGX_SOCKADDR_STRLEN + 1];
    size_t               len, n;
    u_char              *p;
    ngx_str_t           *value;
    ngx_url_t            u;
    ngx_uint_t           gss, appname;
    PQconninfoOption    *opts, *o;

    if (pmcf->conninfo.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    pmcf->conninfo = value[1];

    p = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(p, value[1].data, value[1].len + 1);

    err = NULL;
    opts = PQconninfoParse((char *) p, &err);

    if (opts == NULL) {
        /* libpq's message may quote the conninfo, password included */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid crest_pg_conninfo: cannot be parsed");
        if (err) {
            PQfreemem(err);
        }
        return NGX_CONF_ERROR;
    }

    host = NULL;
    hostaddr = NULL;
    gss = 0;
    appname = 0;
    len = sizeof("hostaddr='' gssencmode=disable application_name=crest-nginx")
          + NGX_SOCKADDR_STRLEN;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (ngx_strcmp(o->keyword, "host") == 0 && o->val[0]) {
            host = o->val;
        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0 && o->val[0]) {
            hostaddr = o->val;
        } else if (ngx_strcmp(o->keyword, "gssencmode") == 0) {
            gss = 1;
        } else if (ngx_strcmp(o->keyword, "application_name") == 0) {
            appname = 1;
        }

        len += ngx_strlen(o->keyword) + 2 * ngx_strlen(o->val) + 4;
    }

    addr[0] = '\0';

    if (host && hostaddr == NULL && host[0] != '/' && host[0] != '@') {

        if (ngx_strchr(host, ',')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "crest_pg_conninfo: several hosts need "
                               "\"hostaddr\" for each");
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url.data = (u_char *) host;
        u.url.len = ngx_strlen(host);
        u.host = u.url;
        u.default_port = 5432;
        u.no_port = 1;

        if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "crest_pg_conninfo: host \"%s\" not found",
                               host);
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        n = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                          (u_char *) addr, NGX_SOCKADDR_STRLEN, 0);
        addr[n] = '\0';
    }

    pmcf->conninfo_final = ngx_pnalloc(cf->pool, len);
    if (pmcf->conninfo_final == NULL) {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    p = (u_char *) pmcf->conninfo_final;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        p = ngx_sprintf(p, "%s=", o->keyword);
        p = ngx_http_crest_pg_quote(p, o->val);
        *p++ = ' ';
    }

    if (addr[0]) {
        p = ngx_sprintf(p, "hostaddr='%s' ", addr);
    }

    if (!gss) {
        p = ngx_sprintf(p, "gssencmode=disable ");
    }

    if (!appname) {
        p = ngx_sprintf(p, "application_name=crest-nginx ");
    }

    *p = '\0';

    PQconninfoFree(opts);

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_pg_backoff(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_pg_main_conf_t  *pmcf = conf;

    ngx_str_t  *value;

    if (pmcf->backoff_min != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pmcf->backoff_min = ngx_parse_time(&value[1], 0);
    pmcf->backoff_max = ngx_parse_time(&value[2], 0);

    if (pmcf->backoff_min == (ngx_msec_t) NGX_ERROR
        || pmcf->backoff_max == (ngx_msec_t) NGX_ERROR
        || pmcf->backoff_min == 0
        || pmcf->backoff_max < pmcf->backoff_min)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid crest_pg_reconnect_backoff \"%V %V\"",
                           &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_pg_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_crest_pg_conn_t            *pc;
    ngx_http_crest_pg_main_conf_t  *pmcf;

    ngx_memzero(&ngx_crest_pg_pool, sizeof(ngx_crest_pg_pool_t));
    ngx_queue_init(&ngx_crest_pg_pool.waiting);

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_crest_pg_module);

    if (pmcf == NULL || pmcf->conninfo_final == NULL) {
        return NGX_OK;
    }

    ngx_crest_pg_pool.conf = pmcf;
    ngx_crest_pg_pool.log = cycle->log;
    ngx_crest_pg_pool.nconns = pmcf->pool_size;
    ngx_crest_pg_pool.conns = ngx_pcalloc(cycle->pool,
                                  pmcf->pool_size * sizeof(ngx_crest_pg_conn_t));
    if (ngx_crest_pg_pool.conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < pmcf->pool_size; i++) {
        pc = &ngx_crest_pg_pool.conns[i];
        pc->log = cycle->log;
        pc->timer.handler = ngx_crest_pg_timer_handler;
        pc->timer.data = pc;
        pc->timer.log = cycle->log;
        pc->timer.cancelable = 1;
        pc->backoff = pmcf->backoff_min;

        ngx_crest_pg_connect(pc);
    }

    return NGX_OK;
}


static void
ngx_http_crest_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t             i;
    ngx_queue_t           *qu;
    ngx_crest_pg_query_t  *q;

    /* requests are being abandoned: free queries without calling back */

    while (!ngx_queue_empty(&ngx_crest_pg_pool.waiting)) {
        qu = ngx_queue_head(&ngx_crest_pg_pool.waiting);
        q = ngx_queue_data(qu, ngx_crest_pg_query_t, queue);
        ngx_queue_remove(qu);
        q->waiting = 0;
        ngx_crest_pg_free_query(q);
    }

    for (i = 0; i < ngx_crest_pg_pool.nconns; i++) {
        q = ngx_crest_pg_pool.conns[i].query;

        if (q) {
            ngx_crest_pg_pool.conns[i].query = NULL;
            ngx_crest_pg_free_query(q);
        }

        ngx_crest_pg_close(&ngx_crest_pg_pool.conns[i]);

        if (ngx_crest_pg_pool.conns[i].timer.timer_set) {
            ngx_del_timer(&ngx_crest_pg_pool.conns[i].timer);
        }
    }

    ngx_crest_pg_pool.nconns = 0;
    ngx_crest_pg_pool.conf = NULL;
}


/* connection life cycle */

static void
ngx_crest_pg_connect(ngx_crest_pg_conn_t *pc)
{
    pc->pg = PQconnectStart(ngx_crest_pg_pool.conf->conninfo_final);

    if (pc->pg == NULL || PQstatus(pc->pg) == CONNECTION_BAD) {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE,
                          pc->pg ? PQerrorMessage(pc->pg) : "out of memory");
        return;
    }

    pc->state = NGX_CREST_PG_CONNECTING;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    ngx_add_timer(&pc->timer, ngx_crest_pg_pool.conf->connect_timeout);

    ngx_crest_pg_connect_poll(pc);
}


/*
 * One step of libpq's connection state machine.  libpq may close the socket
 * and open another while connecting (a refused SSL or GSS attempt), even
 * under the same number, so the socket is unwatched before every step and
 * watched afresh after it.
 */
static void
ngx_crest_pg_connect_poll(ngx_crest_pg_conn_t *pc)
{
    ngx_int_t                    write;
    ngx_socket_t                 fd;
    PostgresPollingStatusType    st;

    if (pc->c) {
        if (pc->c->read->active) {
            ngx_del_event(pc->c->read, NGX_READ_EVENT, 0);
        }
        if (pc->c->write->active) {
            ngx_del_event(pc->c->write, NGX_WRITE_EVENT, 0);
        }
        ngx_crest_unwrap_socket(pc->c);
        pc->c = NULL;
    }

    st = PQconnectPoll(pc->pg);

    if (st == PGRES_POLLING_FAILED) {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, PQerrorMessage(pc->pg));
        return;
    }

    fd = PQsocket(pc->pg);

    pc->c = ngx_crest_wrap_socket(fd, pc->log, ngx_crest_pg_read_handler,
                                  ngx_crest_pg_write_handler, pc);
    if (pc->c == NULL) {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, "no free connection");
        return;
    }

    if (st == PGRES_POLLING_OK) {

        if (PQsetnonblocking(pc->pg, 1) != 0) {
            ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE,
                              PQerrorMessage(pc->pg));
            return;
        }

        if (pc->timer.timer_set) {
            ngx_del_timer(&pc->timer);
        }

        pc->state = NGX_CREST_PG_IDLE;
        pc->backoff = ngx_crest_pg_pool.conf->backoff_min;
        ngx_crest_pg_pool.up++;

        if (ngx_crest_pg_pool.reported_down) {
            ngx_crest_pg_pool.reported_down = 0;
            ngx_log_error(NGX_LOG_NOTICE, pc->log, 0,
                          "crest pg: connection to postgres restored");
        }

        /* watch reads while idle too: that is how a server exit is seen */
        if (ngx_crest_watch(pc->c->read, 1) != NGX_OK) {
            ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, "epoll failed");
            return;
        }

        ngx_crest_pg_dispatch();
        return;
    }

    write = (st == PGRES_POLLING_WRITING);

    if (ngx_crest_watch(write ? pc->c->write : pc->c->read, 1) != NGX_OK) {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, "epoll failed");
    }
}


static void
ngx_crest_pg_close(ngx_crest_pg_conn_t *pc)
{
    if (pc->state == NGX_CREST_PG_IDLE || pc->state == NGX_CREST_PG_BUSY) {
        ngx_crest_pg_pool.up--;
    }

    if (pc->c) {
        ngx_crest_unwrap_socket(pc->c);
        pc->c = NULL;
    }

    if (pc->result) {
        PQclear(pc->result);
        pc->result = NULL;
    }

    if (pc->pg) {
        /* non-blocking: the goodbye message is sent if it can be, no wait */
        PQfinish(pc->pg);
        pc->pg = NULL;
    }

    pc->state = NGX_CREST_PG_DOWN;
}


/*
 * A connection failed: its query (if any) fails with status, the connection
 * is reopened after a backoff, and if no connection is left to carry the
 * waiting queries they fail now instead of at their deadline.
 */
static void
ngx_crest_pg_fail(ngx_crest_pg_conn_t *pc, ngx_crest_status_e status,
    const char *reason)
{
    size_t                 len;
    ngx_crest_pg_query_t  *q;

    q = pc->query;
    pc->query = NULL;

    if (q) {
        q->conn = NULL;
    }

    len = ngx_strlen(reason);
    while (len && (reason[len - 1] == '\n' || reason[len - 1] == ' ')) {
        len--;
    }

    if (!ngx_crest_pg_pool.reported_down) {
        ngx_crest_pg_pool.reported_down = 1;
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "crest pg: postgres connection failed: %*s",
                      len, reason);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "crest pg: connection failed: %*s", len, reason);
    }

    ngx_crest_pg_close(pc);
    ngx_crest_pg_schedule(pc);

    if (q) {
        ngx_crest_pg_deliver(q, status, NULL);
    }

    ngx_crest_pg_fail_waiting();
}


static void
ngx_crest_pg_schedule(ngx_crest_pg_conn_t *pc)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_terminate || ngx_crest_pg_pool.conf == NULL) {
        return;
    }

    /* up to a quarter of jitter keeps workers from reconnecting in step */
    delay = pc->backoff + (ngx_msec_t) ngx_random() % (pc->backoff / 4 + 1);

    pc->backoff *= 2;
    if (pc->backoff > ngx_crest_pg_pool.conf->backoff_max) {
        pc->backoff = ngx_crest_pg_pool.conf->backoff_max;
    }

    pc->state = NGX_CREST_PG_BACKOFF;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    ngx_add_timer(&pc->timer, delay);
}


static void
ngx_crest_pg_timer_handler(ngx_event_t *ev)
{
    ngx_crest_pg_conn_t  *pc = ev->data;

    switch (pc->state) {

    case NGX_CREST_PG_BACKOFF:
        ngx_crest_pg_connect(pc);
        break;

    case NGX_CREST_PG_CONNECTING:
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, "connect timed out");
        break;

    default:
        break;
    }
}


static void
ngx_crest_pg_read_handler(ngx_event_t *rev)
{
    ngx_connection_t     *c = rev->data;
    ngx_crest_pg_conn_t  *pc = c->data;

    PGresult              *res;
    ngx_crest_pg_query_t  *q;

    if (c->close) {
        /* graceful shutdown closes idle connections through this flag */
        c->close = 0;

        if (pc->state == NGX_CREST_PG_IDLE) {
            ngx_crest_pg_close(pc);
            return;
        }
    }

    if (pc->state == NGX_CREST_PG_CONNECTING) {
        ngx_crest_pg_connect_poll(pc);
        return;
    }

    if (!PQconsumeInput(pc->pg)) {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, PQerrorMessage(pc->pg));
        return;
    }

    if (pc->state != NGX_CREST_PG_BUSY) {
        return;
    }

    while (!PQisBusy(pc->pg)) {
        res = PQgetResult(pc->pg);

        if (res != NULL) {
            /* several statements answer several results: keep the last */
            if (pc->result) {
                PQclear(pc->result);
            }
            pc->result = res;
            continue;
        }

        q = pc->query;
        res = pc->result;
        pc->query = NULL;
        pc->result = NULL;
        pc->state = NGX_CREST_PG_IDLE;
        c->idle = 1;

        if (q) {
            q->conn = NULL;
            ngx_crest_pg_deliver(q,
                (res && (PQresultStatus(res) == PGRES_TUPLES_OK
                         || PQresultStatus(res) == PGRES_COMMAND_OK))
                ? NGX_CREST_OK : NGX_CREST_FAILED, res);
        }

        if (res) {
            PQclear(res);
        }

        if (ngx_exiting && pc->state == NGX_CREST_PG_IDLE
            && ngx_queue_empty(&ngx_crest_pg_pool.waiting))
        {
            ngx_crest_pg_close(pc);
            return;
        }

        ngx_crest_pg_dispatch();
        return;
    }
}


static void
ngx_crest_pg_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c = wev->data;
    ngx_crest_pg_conn_t  *pc = c->data;

    int  rc;

    if (pc->state == NGX_CREST_PG_CONNECTING) {
        ngx_crest_pg_connect_poll(pc);
        return;
    }

    rc = PQflush(pc->pg);

    if (rc == -1) {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, PQerrorMessage(pc->pg));
        return;
    }

    if (rc == 0) {
        (void) ngx_crest_watch(wev, 0);
    }
}


/* queries */

ngx_crest_pg_query_t *
ngx_crest_pg_query(const char *sql, int nparams, const char *const *values,
    const int *lengths, ngx_msec_t timeout, ngx_crest_pg_handler_pt handler,
    void *data, ngx_log_t *log)
{
    int                    i;
    size_t                 size, len;
    u_char                *p;
    ngx_uint_t             n, connecting;
    ngx_crest_pg_conn_t   *pc;
    ngx_crest_pg_query_t  *q;

    if (ngx_crest_pg_pool.conf == NULL || nparams < 0) {
        return NULL;
    }

    connecting = 0;
    pc = NULL;

    for (n = 0; n < ngx_crest_pg_pool.nconns; n++) {
        if (ngx_crest_pg_pool.conns[n].state == NGX_CREST_PG_IDLE) {
            pc = &ngx_crest_pg_pool.conns[n];
            break;
        }

        if (ngx_crest_pg_pool.conns[n].state == NGX_CREST_PG_CONNECTING
            || ngx_crest_pg_pool.conns[n].state == NGX_CREST_PG_BUSY)
        {
            connecting = 1;
        }
    }

    if (pc == NULL && ngx_exiting) {
        /* graceful shutdown closed idle connections; reopen one */
        for (n = 0; n < ngx_crest_pg_pool.nconns; n++) {
            if (ngx_crest_pg_pool.conns[n].state == NGX_CREST_PG_DOWN) {
                ngx_crest_pg_connect(&ngx_crest_pg_pool.conns[n]);
                connecting = 1;
                break;
            }
        }
    }

    if (pc == NULL
        && (!connecting
            || ngx_crest_pg_pool.nwaiting >= ngx_crest_pg_pool.conf->queue_size))
    {
        return NULL;
    }

    /* one block: the query, the parameter vectors, then the strings */

    size = sizeof(ngx_crest_pg_query_t)
           + nparams * (sizeof(char *) + sizeof(int))
           + ngx_strlen(sql) + 1;

    for (i = 0; i < nparams; i++) {
        if (values[i]) {
            size += (lengths ? (size_t) lengths[i] : ngx_strlen(values[i])) + 1;
        }
    }

    q = ngx_alloc(size, log);
    if (q == NULL) {
        return NULL;
    }

    ngx_memzero(q, sizeof(ngx_crest_pg_query_t));

    p = (u_char *) (q + 1);
    q->values = (char **) p;
    p += nparams * sizeof(char *);
    q->lengths = (int *) p;
    p += nparams * sizeof(int);

    for (i = 0; i < nparams; i++) {
        if (values[i] == NULL) {
            q->values[i] = NULL;
            q->lengths[i] = 0;
            continue;
        }

        len = lengths ? (size_t) lengths[i] : ngx_strlen(values[i]);
        q->values[i] = (char *) p;
        q->lengths[i] = (int) len;
        p = ngx_cpymem(p, values[i], len);
        *p++ = '\0';
    }

    q->sql = (char *) p;
    len = ngx_strlen(sql);
    p = ngx_cpymem(p, sql, len);
    *p = '\0';

    q->nparams = nparams;
    q->handler = handler;
    q->data = data;
    q->log = log;

    q->timer.handler = ngx_crest_pg_query_timeout;
    q->timer.data = q;
    q->timer.log = log;

    ngx_add_timer(&q->timer,
                  timeout ? timeout : ngx_crest_pg_pool.conf->query_timeout);

    if (pc && ngx_crest_pg_send(pc, q) == NGX_OK) {
        return q;
    }

    if (ngx_crest_pg_pool.conf == NULL
        || ngx_crest_pg_pool.nwaiting >= ngx_crest_pg_pool.conf->queue_size)
    {
        ngx_crest_pg_free_query(q);
        return NULL;
    }

    /* a failed send may have left nothing that can ever carry the query */
    connecting = 0;
    for (n = 0; n < ngx_crest_pg_pool.nconns; n++) {
        if (ngx_crest_pg_pool.conns[n].state >= NGX_CREST_PG_CONNECTING) {
            connecting = 1;
        }
    }

    if (!connecting) {
        ngx_crest_pg_free_query(q);
        return NULL;
    }

    q->waiting = 1;
    ngx_queue_insert_tail(&ngx_crest_pg_pool.waiting, &q->queue);
    ngx_crest_pg_pool.nwaiting++;

    ngx_crest_pg_dispatch();

    return q;
}


/*
 * Hands q to an idle connection.  On a send failure the connection fails
 * (without q, which the caller still owns) and NGX_ERROR is returned.
 */
static ngx_int_t
ngx_crest_pg_send(ngx_crest_pg_conn_t *pc, ngx_crest_pg_query_t *q)
{
    int  rc;

    if (!PQsendQueryParams(pc->pg, q->sql, q->nparams, NULL,
                           (const char *const *) q->values, q->lengths,
                           NULL, 0))
    {
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    pc->query = q;
    pc->state = NGX_CREST_PG_BUSY;
    pc->c->idle = 0;
    q->conn = pc;

    rc = PQflush(pc->pg);

    if (rc == -1) {
        pc->query = NULL;
        q->conn = NULL;
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    if (rc == 1 && ngx_crest_watch(pc->c->write, 1) != NGX_OK) {
        pc->query = NULL;
        q->conn = NULL;
        ngx_crest_pg_fail(pc, NGX_CREST_UNAVAILABLE, "epoll failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_crest_pg_dispatch(void)
{
    ngx_uint_t             n;
    ngx_queue_t           *qu;
    ngx_crest_pg_conn_t   *pc;
    ngx_crest_pg_query_t  *q;

    for (n = 0; n < ngx_crest_pg_pool.nconns; n++) {

        if (ngx_queue_empty(&ngx_crest_pg_pool.waiting)) {
            return;
        }

        pc = &ngx_crest_pg_pool.conns[n];

        if (pc->state != NGX_CREST_PG_IDLE) {
            continue;
        }

        qu = ngx_queue_head(&ngx_crest_pg_pool.waiting);
        q = ngx_queue_data(qu, ngx_crest_pg_query_t, queue);
        ngx_queue_remove(qu);
        ngx_crest_pg_pool.nwaiting--;
        q->waiting = 0;

        if (ngx_crest_pg_send(pc, q) != NGX_OK) {
            /* the connection failed; put q back for the next one */
            q->waiting = 1;
            ngx_queue_insert_head(&ngx_crest_pg_pool.waiting, &q->queue);
            ngx_crest_pg_pool.nwaiting++;
        }
    }
}


static void
ngx_crest_pg_fail_waiting(void)
{
    ngx_uint_t             n;
    ngx_queue_t           *qu;
    ngx_crest_pg_query_t  *q;

    for (n = 0; n < ngx_crest_pg_pool.nconns; n++) {
        if (ngx_crest_pg_pool.conns[n].state >= NGX_CREST_PG_CONNECTING) {
            return;
        }
    }

    while (!ngx_queue_empty(&ngx_crest_pg_pool.waiting)) {
        qu = ngx_queue_head(&ngx_crest_pg_pool.waiting);
        q = ngx_queue_data(qu, ngx_crest_pg_query_t, queue);
        ngx_queue_remove(qu);
        ngx_crest_pg_pool.nwaiting--;
        q->waiting = 0;

        ngx_crest_pg_deliver(q, NGX_CREST_UNAVAILABLE, NULL);
    }
}


static void
ngx_crest_pg_query_timeout(ngx_event_t *ev)
{
    ngx_crest_pg_query_t  *q = ev->data;

    ngx_crest_pg_conn_t  *pc;

    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        ngx_crest_pg_pool.nwaiting--;
        q->waiting = 0;
        ngx_crest_pg_deliver(q, NGX_CREST_TIMEOUT, NULL);
        return;
    }

    pc = q->conn;

    if (pc) {
        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "crest pg: query timed out, dropping its connection");
        ngx_crest_pg_fail(pc, NGX_CREST_TIMEOUT, "query timed out");
    }
}


/* Calls the handler (unless cancelled) and frees the query. */
static void
ngx_crest_pg_deliver(ngx_crest_pg_query_t *q, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_crest_pg_handler_pt   handler;

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->slot) {
        *q->slot = NULL;
        q->slot = NULL;
    }

    handler = q->handler;
    q->handler = NULL;

    if (handler) {
        handler(q->data, status, res);
    }

    ngx_crest_pg_free_query(q);
}


static void
ngx_crest_pg_free_query(ngx_crest_pg_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    ngx_free(q);
}


void
ngx_crest_pg_cancel(ngx_crest_pg_query_t *q)
{
    q->handler = NULL;

    /* the query may outlive the request whose log it was given */
    q->log = ngx_cycle->log;
    q->timer.log = ngx_cycle->log;

    if (q->slot) {
        *q->slot = NULL;
        q->slot = NULL;
    }

    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        ngx_crest_pg_pool.nwaiting--;
        q->waiting = 0;
        ngx_crest_pg_free_query(q);
    }

    /*
     * A query on the wire keeps its deadline: it ends the query's
     * connection if the server never answers.
     */
}


static void
ngx_crest_pg_request_cleanup(void *data)
{
    ngx_crest_pg_query_t  **slot = data;

    if (*slot) {
        ngx_crest_pg_cancel(*slot);
    }
}


ngx_int_t
ngx_crest_pg_bind(ngx_http_request_t *r, ngx_crest_pg_query_t *q)
{
    ngx_http_cleanup_t     *cln;
    ngx_crest_pg_query_t  **slot;

    cln = ngx_http_cleanup_add(r, sizeof(ngx_crest_pg_query_t *));
    if (cln == NULL) {
        ngx_crest_pg_cancel(q);
        return NGX_ERROR;
    }

    slot = cln->data;
    *slot = q;
    q->slot = slot;
    cln->handler = ngx_crest_pg_request_cleanup;

    return NGX_OK;
}


const char *
ngx_crest_pg_error(ngx_crest_status_e status, PGresult *res)
{
    if (res && status == NGX_CREST_FAILED) {
        return PQresultErrorMessage(res);
    }

    return ngx_crest_status_text(status);
}


ngx_int_t
ngx_crest_pg_request(ngx_http_request_t *r, const char *sql, int nparams,
    const char **values, ngx_crest_pg_handler_pt handler, void *data)
{
    ngx_crest_pg_query_t  *q;

    q = ngx_crest_pg_query(sql, nparams, values, NULL, 0, handler, data,
                           r->connection->log);
    if (q == NULL) {
        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "the database is unavailable", NULL);
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a client that leaves is noticed, and the query detached */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


ngx_int_t
ngx_crest_pg_send_error(ngx_http_request_t *r, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_uint_t  level;

    /* the macro does not parenthesize its level argument */
    level = (status == NGX_CREST_FAILED) ? NGX_LOG_ERR : NGX_LOG_WARN;

    ngx_log_error(level, r->connection->log, 0, "crest pg: query %s: %s",
                  ngx_crest_status_text(status),
                  ngx_crest_pg_error(status, res));

    if (status == NGX_CREST_FAILED) {
        return ngx_crest_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                    CREST_ERR_INTERNAL_SERVER_ERROR,
                                    "the request could not be completed",
                                    NULL);
    }

    return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                CREST_ERR_SERVICE_UNAVAILABLE,
                                status == NGX_CREST_TIMEOUT
                                ? "the database timed out"
                                : "the database is unavailable", NULL);
}
