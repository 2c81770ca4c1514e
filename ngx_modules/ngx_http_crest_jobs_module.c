/*
 * ngx_http_crest_jobs_module: jobs from the edge, and the caller's own jobs.
 *
 *   location /api/jobs { crest_auth on; crest_jobs; }
 *
 *   POST /api/jobs/ping               enqueues a ping job (an end-to-end check)
 *   GET  /api/jobs                    the caller's jobs, a page at a time
 *   GET  /api/jobs/{id}               one job, with live progress
 *   POST /api/jobs/{id}/cancel        removes it from its queue, row cancelled
 *   GET  /api/jobs/{id}/events        Server-Sent Events until it finishes
 *
 * Enqueueing (ngx_crest_job_enqueue, see ngx_crest_jobs.h) writes the row,
 * then runs BullMQ's addStandardJob with the row's id as the job id, then
 * marks the row queued.  Every step is a callback of the PostgreSQL or Redis
 * pool: nothing blocks the event loop.
 *
 * Events come from BullMQ's stream <prefix>:<queue>:events.  Each nginx
 * worker reads the streams of the queues someone watches with one XREAD
 * BLOCK on a dedicated Redis connection (a blocking command would hold up
 * the pool's pipelined connections) and hands each entry to the streams
 * watching its job, found by id in a tree.  A new stream first reads the
 * job's state and the stream's last entry id in one script, so nothing
 * that happens between the state and the first entry is lost or repeated.
 */

#include "ngx_crest_pg.h"
#include "ngx_crest_redis.h"
#include "ngx_crest_auth.h"
#include "ngx_crest_jobs.h"
#include "crest_json.h"
#include "crest_validate.h"
#include "crest_bullmq.h"


#define NGX_CREST_JOBS_QUEUE_MAX     64
#define NGX_CREST_JOBS_PREFIX_MAX    64
#define NGX_CREST_JOBS_XREAD_COUNT   "256"
/* a client this far behind the events it is sent is let go */
#define NGX_CREST_JOBS_SSE_BACKLOG   (256 * 1024)
#define NGX_CREST_JOBS_PING_DELAY    30000
#define NGX_CREST_JOBS_TEXT_MAX      1000

#define NGX_CREST_JOB_TS(col)                                                 \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* the columns every job answer is made of, in ngx_http_crest_jobs_view_t's
 * order */
#define NGX_CREST_JOB_COLUMNS                                                 \
    "id::text, queue, name, status, progress::text, result::text, error, "    \
    "attempts, max_attempts, data::text, "                                    \
    NGX_CREST_JOB_TS("created_at") ", " NGX_CREST_JOB_TS("updated_at") ", "   \
    NGX_CREST_JOB_TS("enqueued_at") ", " NGX_CREST_JOB_TS("started_at") ", "  \
    NGX_CREST_JOB_TS("finished_at")

#define NGX_CREST_JOB_NCOLUMNS       15


/*
 * KEYS[1] the job's hash, KEYS[2] its queue's events stream.  The state
 * and the stream's position are read at one instant: what happens to the
 * job later is exactly what the stream holds after that id.
 */
static char  ngx_http_crest_jobs_state_lua[] =
    "local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)\n"
    "local id = '0-0'\n"
    "if last[1] then id = last[1][1] end\n"
    "return {id, redis.call('HMGET', KEYS[1], 'name', 'progress', "
    "'returnvalue', 'failedReason', 'finishedOn', 'processedOn', 'ats')}\n";


typedef enum {
    NGX_CREST_JOBS_HASH_NAME = 0,
    NGX_CREST_JOBS_HASH_PROGRESS,
    NGX_CREST_JOBS_HASH_RETURNVALUE,
    NGX_CREST_JOBS_HASH_FAILED_REASON,
    NGX_CREST_JOBS_HASH_FINISHED_ON,
    NGX_CREST_JOBS_HASH_PROCESSED_ON,
    NGX_CREST_JOBS_HASH_ATS,
    NGX_CREST_JOBS_HASH_N
} ngx_http_crest_jobs_hash_e;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  events;      /* <prefix>:<queue>:events */
} ngx_http_crest_jobs_queue_t;


/* a queue some directive will enqueue on, checked once all is parsed */
typedef struct {
    ngx_str_t                 *queue;       /* read once all is parsed */
    const char                *who;
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_http_crest_jobs_need_t;


typedef struct {
    ngx_str_t                  prefix;
    ngx_array_t               *queues;      /* ngx_http_crest_jobs_queue_t */
    ngx_array_t               *needs;       /* ngx_http_crest_jobs_need_t */
    ngx_uint_t                 attempts;
    ngx_msec_t                 keepalive;
    ngx_msec_t                 block;
} ngx_http_crest_jobs_main_conf_t;


typedef struct {
    ngx_flag_t                 enabled;
} ngx_http_crest_jobs_loc_conf_t;


/* a stream entry's id */
typedef struct {
    uint64_t                   ms;
    uint64_t                   seq;
} ngx_http_crest_jobs_sid_t;


/* a job as answered: the row, with what Redis knows that the row does not
 * yet (the workers write rows asynchronously) */
typedef struct {
    ngx_str_t                  col[NGX_CREST_JOB_NCOLUMNS];
    unsigned                   null[NGX_CREST_JOB_NCOLUMNS];
} ngx_http_crest_jobs_view_t;

enum {
    NGX_CREST_JOB_COL_ID = 0, NGX_CREST_JOB_COL_QUEUE, NGX_CREST_JOB_COL_NAME,
    NGX_CREST_JOB_COL_STATUS, NGX_CREST_JOB_COL_PROGRESS,
    NGX_CREST_JOB_COL_RESULT, NGX_CREST_JOB_COL_ERROR,
    NGX_CREST_JOB_COL_ATTEMPTS, NGX_CREST_JOB_COL_MAX_ATTEMPTS,
    NGX_CREST_JOB_COL_DATA, NGX_CREST_JOB_COL_CREATED,
    NGX_CREST_JOB_COL_UPDATED, NGX_CREST_JOB_COL_ENQUEUED,
    NGX_CREST_JOB_COL_STARTED, NGX_CREST_JOB_COL_FINISHED
};


typedef enum {
    NGX_CREST_JOBS_SSE_NONE = 0,
    NGX_CREST_JOBS_SSE_WAIT_FEED,   /* the queue's stream position first */
    NGX_CREST_JOBS_SSE_ATTACHING,   /* the state script is in flight */
    NGX_CREST_JOBS_SSE_LIVE,        /* headers sent, events flowing */
    NGX_CREST_JOBS_SSE_DONE
} ngx_http_crest_jobs_sse_state_e;


typedef struct ngx_http_crest_jobs_watch_s  ngx_http_crest_jobs_watch_t;


/* an entry that came while the stream's initial state was being read */
typedef struct {
    ngx_http_crest_jobs_sid_t  sid;
    ngx_str_t                  text;
    unsigned                   terminal:1;
} ngx_http_crest_jobs_held_t;


typedef struct {
    ngx_http_request_t               *request;
    ngx_crest_identity_t             *identity;
    ngx_http_crest_jobs_main_conf_t  *jmcf;
    ngx_http_crest_jobs_view_t        view;
    u_char                            id[37];
    ngx_uint_t                        queue;    /* index in jmcf->queues */
    ngx_uint_t                        page;
    ngx_uint_t                        limit;
    ngx_uint_t                        removed;  /* cancel: BullMQ's answer */

    /* events */
    ngx_http_crest_jobs_sse_state_e   sse;
    ngx_http_crest_jobs_watch_t      *watch;
    ngx_queue_t                       link;     /* in the watch */
    ngx_queue_t                       wait;     /* in a feed's waiting list
                                                   or the hub's ending list */
    ngx_http_crest_jobs_sid_t         since;    /* the state covers this */
    ngx_array_t                      *held;     /* ..._held_t */
    ngx_event_t                       keepalive;
    ngx_chain_t                      *free;
    ngx_chain_t                      *busy;
    ngx_int_t                         end_rc;
    unsigned                          in_wait:1;
    unsigned                          ending:1;
} ngx_http_crest_jobs_ctx_t;


/* the streams watching one job */
struct ngx_http_crest_jobs_watch_s {
    ngx_str_node_t             sn;
    ngx_queue_t                subs;
    u_char                     id[36];
};


typedef enum {
    NGX_CREST_JOBS_FEED_IDLE = 0,
    NGX_CREST_JOBS_FEED_FETCHING,   /* XREVRANGE for the position in flight */
    NGX_CREST_JOBS_FEED_FOLLOWED    /* in the XREAD */
} ngx_http_crest_jobs_feed_state_e;


/* one queue's events stream, in this worker */
typedef struct {
    ngx_http_crest_jobs_feed_state_e  state;
    ngx_uint_t                 nsubs;
    unsigned                   fetching:1;  /* its XREVRANGE in flight */
    unsigned                   in_read:1;   /* in the XREAD in flight */
    ngx_http_crest_jobs_sid_t  cursor;      /* the last entry read */
    u_char                     cursor_text[2 * NGX_INT64_LEN + 2];
    size_t                     cursor_len;
    ngx_queue_t                waiting;     /* streams waiting for cursor */
} ngx_http_crest_jobs_feed_t;


typedef struct {
    ngx_http_crest_jobs_main_conf_t  *conf;
    ngx_http_crest_jobs_feed_t       *feeds;
    ngx_rbtree_t                      watches;
    ngx_rbtree_node_t                 sentinel;
    ngx_crest_redis_dedicated_t      *conn;
    ngx_crest_redis_cmd_t            *xread;
    const char                      **argv;
    size_t                           *argvlen;
    u_char                            block_text[NGX_INT_T_LEN];
    ngx_queue_t                       ending;       /* streams to end */
    ngx_event_t                       retry;
    crest_buf_t                       text;
    ngx_str_t                         client_id;
    u_char                            client_id_buf[NGX_INT64_LEN];
    unsigned                          up:1;
    unsigned                          reported:1;
} ngx_http_crest_jobs_hub_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_crest_job_t            job;
    ngx_str_t                  data;
    ngx_uint_t                 attempts;
    ngx_crest_job_handler_pt   handler;
    void                      *handler_data;
} ngx_http_crest_jobs_enqueue_t;


static ngx_int_t ngx_http_crest_jobs_init(ngx_conf_t *cf);
static ngx_http_crest_jobs_queue_t *ngx_http_crest_jobs_queue_find(
    ngx_http_crest_jobs_main_conf_t *jmcf, u_char *name, size_t len,
    ngx_uint_t *index);
static void *ngx_http_crest_jobs_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_jobs_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_crest_jobs_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_crest_jobs_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_crest_jobs(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_jobs_queues(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_jobs_init_process(ngx_cycle_t *cycle);
static void ngx_http_crest_jobs_exit_process(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_crest_jobs_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_jobs_sse_subscribe(
    ngx_http_crest_jobs_ctx_t *ctx);
static void ngx_http_crest_jobs_sse_end(ngx_http_crest_jobs_ctx_t *ctx,
    ngx_int_t rc);
static void ngx_http_crest_jobs_hub_read(void);
static void ngx_http_crest_jobs_hub_unblock(ngx_http_crest_jobs_feed_t *feed);
static ngx_int_t ngx_http_crest_jobs_sse_flush(ngx_http_crest_jobs_ctx_t *ctx,
    ngx_chain_t *out);


static ngx_command_t  ngx_http_crest_jobs_commands[] = {

    { ngx_string("crest_jobs"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_crest_jobs,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_jobs_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_jobs_main_conf_t, prefix),
      NULL },

    { ngx_string("crest_jobs_queues"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_crest_jobs_queues,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("crest_jobs_attempts"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_jobs_main_conf_t, attempts),
      NULL },

    { ngx_string("crest_jobs_events_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_jobs_main_conf_t, keepalive),
      NULL },

    { ngx_string("crest_jobs_events_block"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_crest_jobs_main_conf_t, block),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_jobs_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_crest_jobs_init,              /* postconfiguration */

    ngx_http_crest_jobs_create_main_conf,  /* create main configuration */
    ngx_http_crest_jobs_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_crest_jobs_create_loc_conf,   /* create location configuration */
    ngx_http_crest_jobs_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_crest_jobs_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_jobs_module_ctx,       /* module context */
    ngx_http_crest_jobs_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_crest_jobs_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_crest_jobs_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_crest_redis_script_t   ngx_http_crest_jobs_add_script;
static ngx_crest_redis_script_t   ngx_http_crest_jobs_remove_script;
static ngx_crest_redis_script_t   ngx_http_crest_jobs_state_script;

static ngx_http_crest_jobs_hub_t  ngx_http_crest_jobs_hub;

static ngx_str_t  ngx_http_crest_jobs_statuses[] = {
    ngx_string("pending"), ngx_string("queued"), ngx_string("active"),
    ngx_string("completed"), ngx_string("failed"), ngx_string("cancelled")
};


/* configuration */

static void *
ngx_http_crest_jobs_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_jobs_main_conf_t  *jmcf;

    jmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_jobs_main_conf_t));
    if (jmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     jmcf->prefix = { 0, NULL };
     *     jmcf->queues = NULL;
     *     jmcf->needs = NULL;
     */

    jmcf->attempts = NGX_CONF_UNSET_UINT;
    jmcf->keepalive = NGX_CONF_UNSET_MSEC;
    jmcf->block = NGX_CONF_UNSET_MSEC;

    return jmcf;
}


static ngx_int_t
ngx_http_crest_jobs_queue_add(ngx_conf_t *cf,
    ngx_http_crest_jobs_main_conf_t *jmcf, ngx_str_t *name)
{
    u_char                        c;
    ngx_uint_t                    i;
    ngx_http_crest_jobs_queue_t  *q;

    if (name->len == 0 || name->len > NGX_CREST_JOBS_QUEUE_MAX) {
        goto invalid;
    }

    /* a queue name goes into Redis keys: nothing that could split one */
    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
        {
            goto invalid;
        }
    }

    q = jmcf->queues->elts;

    for (i = 0; i < jmcf->queues->nelts; i++) {
        if (q[i].name.len == name->len
            && ngx_strncmp(q[i].name.data, name->data, name->len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate queue \"%V\"", name);
            return NGX_ERROR;
        }
    }

    q = ngx_array_push(jmcf->queues);
    if (q == NULL) {
        return NGX_ERROR;
    }

    q->name.data = ngx_pnalloc(cf->pool, name->len + 1);
    if (q->name.data == NULL) {
        return NGX_ERROR;
    }

    q->name.len = name->len;
    *ngx_cpymem(q->name.data, name->data, name->len) = '\0';

    /* the prefix is known by now: crest_jobs_queues comes after it, or
     * the default is applied in init_main_conf */
    ngx_str_null(&q->events);

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid queue name \"%V\": 1 to 64 letters, digits, "
                       "\"-\", \"_\" or \".\"", name);

    return NGX_ERROR;
}


static char *
ngx_http_crest_jobs_queues(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_jobs_main_conf_t  *jmcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (jmcf->queues) {
        return "is duplicate";
    }

    jmcf->queues = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ngx_http_crest_jobs_queue_t));
    if (jmcf->queues == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_crest_jobs_queue_add(cf, jmcf, &value[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_jobs_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_crest_jobs_main_conf_t  *jmcf = conf;

    u_char                       *p;
    ngx_str_t                     ping = ngx_string("ping");
    ngx_uint_t                    i;
    ngx_http_crest_jobs_queue_t  *q;

    if (jmcf->prefix.data == NULL) {
        ngx_str_set(&jmcf->prefix, CREST_BULLMQ_DEFAULT_PREFIX);
    }

    if (jmcf->prefix.len == 0 || jmcf->prefix.len > NGX_CREST_JOBS_PREFIX_MAX)
    {
        goto bad_prefix;
    }

    for (i = 0; i < jmcf->prefix.len; i++) {
        if (jmcf->prefix.data[i] <= ' ' || jmcf->prefix.data[i] == 0x7f) {
            goto bad_prefix;
        }
    }

    /* NUL-terminated for shared/crest_bullmq.c */
    p = ngx_pnalloc(cf->pool, jmcf->prefix.len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_cpymem(p, jmcf->prefix.data, jmcf->prefix.len) = '\0';
    jmcf->prefix.data = p;

    if (jmcf->queues == NULL) {
        jmcf->queues = ngx_array_create(cf->pool, 1,
                                        sizeof(ngx_http_crest_jobs_queue_t));
        if (jmcf->queues == NULL
            || ngx_http_crest_jobs_queue_add(cf, jmcf, &ping) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    q = jmcf->queues->elts;

    for (i = 0; i < jmcf->queues->nelts; i++) {
        q[i].events.len = jmcf->prefix.len + 1 + q[i].name.len
                          + sizeof(":events") - 1;
        q[i].events.data = ngx_pnalloc(cf->pool, q[i].events.len + 1);
        if (q[i].events.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(q[i].events.data, "%V:%V:events%Z", &jmcf->prefix,
                    &q[i].name);
    }

    ngx_conf_init_uint_value(jmcf->attempts, 3);
    ngx_conf_init_msec_value(jmcf->keepalive, 15000);
    ngx_conf_init_msec_value(jmcf->block, 5000);

    if (jmcf->attempts == 0 || jmcf->attempts > NGX_CREST_JOB_ATTEMPTS_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_jobs_attempts must be 1 to 100");
        return NGX_CONF_ERROR;
    }

    if (jmcf->keepalive < 1000 || jmcf->block < 100 || jmcf->block > 60000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest_jobs_events_keepalive must be at least 1s "
                           "and crest_jobs_events_block 100ms to 60s");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

bad_prefix:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid crest_jobs_prefix \"%V\"", &jmcf->prefix);
    return NGX_CONF_ERROR;
}


static void *
ngx_http_crest_jobs_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_crest_jobs_loc_conf_t  *jlcf;

    jlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_jobs_loc_conf_t));
    if (jlcf == NULL) {
        return NULL;
    }

    jlcf->enabled = NGX_CONF_UNSET;

    return jlcf;
}


static char *
ngx_http_crest_jobs_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_crest_jobs_loc_conf_t  *prev = parent;
    ngx_http_crest_jobs_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->enabled, prev->enabled, 0);

    return NGX_CONF_OK;
}


static char *
ngx_http_crest_jobs(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_crest_jobs_loc_conf_t  *jlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (jlcf->enabled != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    jlcf->enabled = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_jobs_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_jobs_script(ngx_conf_t *cf, ngx_crest_redis_script_t *script,
    const char *name, unsigned numkeys)
{
    const crest_bullmq_script_t  *s;

    s = crest_bullmq_script_find(name);

    /* the generated table is checked against tools/bullmq-scripts.expected
     * at build time; this catches a mismatch with what this file expects */
    if (s == NULL || s->numkeys != numkeys) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest jobs: BullMQ %s has no script \"%s\" "
                           "with %ud keys", crest_bullmq_scripts_version(),
                           name, numkeys);
        return NGX_ERROR;
    }

    ngx_crest_redis_script_init(script, s->lua, s->len);

    if (ngx_strncmp(script->sha, s->sha1, 40) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "crest jobs: the SHA1 of BullMQ's \"%s\" differs "
                           "from the generated table's", name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_crest_jobs_need_queue(ngx_conf_t *cf, ngx_str_t *queue, const char *who)
{
    ngx_http_crest_jobs_need_t       *need;
    ngx_http_crest_jobs_main_conf_t  *jmcf;

    jmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_crest_jobs_module);

    if (jmcf->needs == NULL) {
        jmcf->needs = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_crest_jobs_need_t));
        if (jmcf->needs == NULL) {
            return NGX_ERROR;
        }
    }

    need = ngx_array_push(jmcf->needs);
    if (need == NULL) {
        return NGX_ERROR;
    }

    need->queue = queue;
    need->who = who;
    need->file = cf->conf_file->file.name.data;
    need->line = cf->conf_file->line;

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_jobs_init(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    crest_bullmq_opts_t               o;
    ngx_http_crest_jobs_need_t       *need;
    ngx_http_crest_jobs_main_conf_t  *jmcf;

    jmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_crest_jobs_module);

    /*
     * A warning, not a refusal: configurations that serve a module's other
     * endpoints without its jobs stay valid, and every enqueue on a queue
     * not listed is still refused (500, logged) at run time.
     */
    if (jmcf->needs) {
        need = jmcf->needs->elts;

        for (i = 0; i < jmcf->needs->nelts; i++) {
            if (ngx_http_crest_jobs_queue_find(jmcf, need[i].queue->data,
                                               need[i].queue->len, NULL))
            {
                continue;
            }

            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "%s in %s:%ui enqueues on \"%V\", which is not "
                          "in crest_jobs_queues: those requests will fail",
                          need[i].who, need[i].file, need[i].line,
                          need[i].queue);
        }
    }

    crest_bullmq_opts_init(&o);

    if (ngx_http_crest_jobs_script(cf, &ngx_http_crest_jobs_add_script,
                                   crest_bullmq_add_script(&o),
                                   crest_bullmq_op_numkeys(
                                       crest_bullmq_add_op(&o)))
        != NGX_OK
        || ngx_http_crest_jobs_script(cf, &ngx_http_crest_jobs_remove_script,
                                      crest_bullmq_op_script(
                                          CREST_BQ_REMOVE_JOB),
                                      crest_bullmq_op_numkeys(
                                          CREST_BQ_REMOVE_JOB))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_crest_redis_script_init(&ngx_http_crest_jobs_state_script,
                                ngx_http_crest_jobs_state_lua,
                                sizeof(ngx_http_crest_jobs_state_lua) - 1);

    return NGX_OK;
}


static ngx_http_crest_jobs_queue_t *
ngx_http_crest_jobs_queue_find(ngx_http_crest_jobs_main_conf_t *jmcf,
    u_char *name, size_t len, ngx_uint_t *index)
{
    ngx_uint_t                    i;
    ngx_http_crest_jobs_queue_t  *q;

    q = jmcf->queues->elts;

    for (i = 0; i < jmcf->queues->nelts; i++) {
        if (q[i].name.len == len && ngx_strncmp(q[i].name.data, name, len) == 0)
        {
            if (index) {
                *index = i;
            }

            return &q[i];
        }
    }

    return NULL;
}


/* shared helpers */

static u_char *
ngx_http_crest_jobs_copy(ngx_pool_t *pool, const char *s, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s, len) = '\0';

    return p;
}


/*
 * JSON text from Redis is written by whoever runs the job (a Node worker
 * too): parsed and written again, compact, so that an answer is valid JSON
 * and an event's data holds no line break.  Text that is not JSON becomes
 * a JSON string.
 */
static ngx_int_t
ngx_http_crest_jobs_json_text(ngx_pool_t *pool, const char *s, size_t len,
    ngx_str_t *out)
{
    char              *dump;
    json_t            *v;
    crest_buf_t        b;
    crest_allocator_t  a;

    v = json_loadb(s, len, JSON_DECODE_ANY, NULL);

    if (v) {
        dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(v);

        if (dump == NULL) {
            return NGX_ERROR;
        }

        out->len = ngx_strlen(dump);
        out->data = ngx_http_crest_jobs_copy(pool, dump, out->len);
        free(dump);

        return out->data ? NGX_OK : NGX_ERROR;
    }

    ngx_crest_pool_allocator(&a, pool);
    crest_buf_init(&b, &a);
    crest_json_escape(&b, s, len);

    if (crest_buf_failed(&b)) {
        return NGX_ERROR;
    }

    out->data = (u_char *) b.data;
    out->len = b.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_jobs_sid_parse(const char *s, size_t len,
    ngx_http_crest_jobs_sid_t *sid)
{
    size_t      i;
    uint64_t    v[2];
    ngx_uint_t  part, digits;

    v[0] = 0;
    v[1] = 0;
    part = 0;
    digits = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '-' && part == 0 && digits) {
            part = 1;
            digits = 0;
            continue;
        }

        if (s[i] < '0' || s[i] > '9' || digits == 20
            || v[part] > (UINT64_MAX - 9) / 10)
        {
            return NGX_ERROR;
        }

        v[part] = v[part] * 10 + (s[i] - '0');
        digits++;
    }

    if (part != 1 || digits == 0) {
        return NGX_ERROR;
    }

    sid->ms = v[0];
    sid->seq = v[1];

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_jobs_sid_cmp(ngx_http_crest_jobs_sid_t *a,
    ngx_http_crest_jobs_sid_t *b)
{
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }

    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }

    return 0;
}


static ngx_uint_t
ngx_http_crest_jobs_is(ngx_str_t *s, const char *what)
{
    size_t  len;

    len = ngx_strlen(what);

    return s->len == len && ngx_strncmp(s->data, what, len) == 0;
}


static ngx_uint_t
ngx_http_crest_jobs_terminal(ngx_str_t *status)
{
    return ngx_http_crest_jobs_is(status, "completed")
           || ngx_http_crest_jobs_is(status, "failed")
           || ngx_http_crest_jobs_is(status, "cancelled");
}


/* the enqueue API */

static void ngx_http_crest_jobs_inserted(void *data, ngx_crest_status_e status,
    PGresult *res);
static void ngx_http_crest_jobs_added(void *data, ngx_crest_status_e status,
    redisReply *reply);
static void ngx_http_crest_jobs_marked(void *data, ngx_crest_status_e status,
    PGresult *res);


ngx_int_t
ngx_crest_job_enqueue(ngx_http_request_t *r, ngx_str_t *queue,
    ngx_str_t *name, ngx_str_t *data_json, ngx_crest_job_opts_t *opts,
    ngx_crest_job_handler_pt handler, void *data)
{
    u_char                           attempts[NGX_INT_T_LEN + 1];
    json_t                          *v;
    ngx_uint_t                       i, n;
    const char                      *values[5 + NGX_CREST_JOB_SQL_VALUES];
    const char                      *sql, *why;
    ngx_crest_pg_query_t            *q;
    ngx_crest_identity_t            *identity;
    ngx_http_crest_jobs_enqueue_t   *e;
    ngx_http_crest_jobs_main_conf_t *jmcf;

    jmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_jobs_module);

    e = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_jobs_enqueue_t));
    if (e == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    e->attempts = (opts && opts->attempts) ? opts->attempts : jmcf->attempts;

    if (ngx_http_crest_jobs_queue_find(jmcf, queue->data, queue->len, NULL)
        == NULL)
    {
        why = "the queue is not in crest_jobs_queues";
        goto invalid;
    }

    if (name->len == 0 || name->len > NGX_CREST_JOB_NAME_MAX
        || !crest_is_clean_text((const char *) name->data, name->len))
    {
        why = "the name is not 1 to 100 bytes of text";
        goto invalid;
    }

    if (e->attempts > NGX_CREST_JOB_ATTEMPTS_MAX) {
        why = "attempts is over 100";
        goto invalid;
    }

    if (opts && opts->sql && opts->nvalues > NGX_CREST_JOB_SQL_VALUES) {
        why = "the statement has more than 8 values of its own";
        goto invalid;
    }

    /* a row whose data no worker can read would fail only there */
    v = NULL;

    if (data_json->len <= NGX_CREST_JOB_DATA_MAX) {
        v = json_loadb((const char *) data_json->data, data_json->len, 0,
                       NULL);
    }

    if (!json_is_object(v)) {
        json_decref(v);
        why = "the data is not a JSON object of at most 512k";
        goto invalid;
    }

    json_decref(v);

    e->request = r;
    e->handler = handler;
    e->handler_data = data;

    e->job.queue.len = queue->len;
    e->job.queue.data = ngx_http_crest_jobs_copy(r->pool,
                                                 (char *) queue->data,
                                                 queue->len);
    e->job.name.len = name->len;
    e->job.name.data = ngx_http_crest_jobs_copy(r->pool, (char *) name->data,
                                                name->len);
    e->data.len = data_json->len;
    e->data.data = ngx_http_crest_jobs_copy(r->pool,
                                            (char *) data_json->data,
                                            data_json->len);

    if (e->job.queue.data == NULL || e->job.name.data == NULL
        || e->data.data == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    identity = ngx_crest_auth_identity(r);

    ngx_sprintf(attempts, "%ui%Z", e->attempts);

    values[0] = (identity && !(opts && opts->system))
                ? (const char *) identity->user_id.data : NULL;
    values[1] = (const char *) e->job.queue.data;
    values[2] = (const char *) e->job.name.data;
    values[3] = (const char *) e->data.data;
    values[4] = (const char *) attempts;

    sql = "INSERT INTO jobs (user_id, queue, name, data, max_attempts) "
          "VALUES ($1::uuid, $2, $3, $4::jsonb, $5::integer) "
          "RETURNING id::text";
    n = 5;

    if (opts && opts->sql) {
        sql = opts->sql;

        for (i = 0; i < opts->nvalues; i++) {
            values[n++] = opts->values[i];
        }
    }

    q = ngx_crest_pg_query(sql, n, values, NULL, 0,
                           ngx_http_crest_jobs_inserted, e,
                           r->connection->log);

    if (q == NULL) {
        if (opts && opts->quiet) {
            return NGX_DECLINED;
        }

        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "the database is unavailable: "
                                    "the job was not created", NULL);
    }

    if (ngx_crest_pg_bind(r, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;

invalid:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "crest jobs: refused to enqueue on \"%V\": %s", queue, why);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static void
ngx_http_crest_jobs_inserted(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_jobs_enqueue_t  *e = data;

    int                               argc;
    u_char                           *p;
    size_t                            argvlen[CREST_BULLMQ_MAX_KEYS + 4];
    int64_t                           now;
    ngx_uint_t                        i;
    const char                       *argv[CREST_BULLMQ_MAX_KEYS + 4];
    ngx_time_t                       *tp;
    crest_buf_t                       keys, args, opts;
    crest_allocator_t                 a;
    crest_bullmq_opts_t               o;
    crest_bullmq_keys_t               k;
    ngx_uint_t                        level;
    ngx_http_request_t               *r;
    ngx_crest_redis_cmd_t            *cmd;
    ngx_http_crest_jobs_main_conf_t  *jmcf;

    r = e->request;

    if (status == NGX_CREST_OK
        && (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)))
    {
        /* the caller's statement did not hold its condition */
        e->job.result = NGX_CREST_JOB_REFUSED;
        e->job.status = NGX_CREST_OK;
        e->handler(r, &e->job, e->handler_data);
        return;
    }

    if (status != NGX_CREST_OK || PQntuples(res) < 1 || PQnfields(res) < 1) {
        /* the macro does not parenthesize its level argument */
        level = (status == NGX_CREST_FAILED) ? NGX_LOG_ERR : NGX_LOG_WARN;

        ngx_log_error(level, r->connection->log, 0,
                      "crest jobs: the row of a \"%V\" job was not written: "
                      "%s", &e->job.queue, ngx_crest_pg_error(status, res));

        e->job.result = NGX_CREST_JOB_NOT_CREATED;
        e->job.status = status == NGX_CREST_OK ? NGX_CREST_FAILED : status;
        e->handler(r, &e->job, e->handler_data);
        return;
    }

    e->job.id.len = PQgetlength(res, 0, 0);
    e->job.id.data = ngx_http_crest_jobs_copy(r->pool, PQgetvalue(res, 0, 0),
                                              e->job.id.len);
    if (e->job.id.data == NULL) {
        e->job.id.len = 0;
        goto pending;
    }

    /* from here on the row exists: whatever fails, the job stays pending
     * and the reconciler adds it */
    e->job.result = NGX_CREST_JOB_PENDING;
    e->job.status = NGX_CREST_UNAVAILABLE;

    jmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_jobs_module);

    /* the options the outbox reconciler gives a row: see jobrows.c */
    crest_bullmq_opts_init(&o);
    o.job_id = (const char *) e->job.id.data;
    o.attempts = e->attempts;
    o.backoff.type = CREST_BQ_BACKOFF_EXPONENTIAL;
    o.backoff.delay = 1000;

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&keys, &a);
    crest_buf_init(&args, &a);
    crest_buf_init(&opts, &a);

    if (crest_bullmq_add_keys(&k, &keys, (const char *) jmcf->prefix.data,
                              (const char *) e->job.queue.data, &o) < 0
        || crest_bullmq_pack_add_args(&args, (const char *) jmcf->prefix.data,
                                      (const char *) e->job.queue.data,
                                      o.job_id,
                                      (const char *) e->job.name.data, now,
                                      NULL) != 0
        || crest_bullmq_pack_opts(&opts, &o) != 0
        || crest_buf_failed(&keys))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "crest jobs: cannot build the arguments of job %V",
                      &e->job.id);
        goto pending;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        goto pending;
    }

    argc = 0;
    argv[argc] = (const char *) p;
    argvlen[argc++] = ngx_sprintf(p, "%ui", (ngx_uint_t) k.n) - p;

    for (i = 0; i < k.n; i++) {
        argv[argc] = k.key[i];
        argvlen[argc++] = k.len[i];
    }

    argv[argc] = args.data;
    argvlen[argc++] = args.len;
    argv[argc] = (const char *) e->data.data;
    argvlen[argc++] = e->data.len;
    argv[argc] = opts.data;
    argvlen[argc++] = opts.len;

    cmd = ngx_crest_redis_script(&ngx_http_crest_jobs_add_script, argc, argv,
                                 argvlen, 0, ngx_http_crest_jobs_added, e,
                                 r->connection->log);

    if (cmd == NULL) {
        goto pending;
    }

    if (ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        goto pending;
    }

    return;

pending:

    if (e->job.id.len) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "crest jobs: job %V left pending for the outbox: "
                      "redis unavailable", &e->job.id);
    }

    e->job.result = e->job.id.len ? NGX_CREST_JOB_PENDING
                                  : NGX_CREST_JOB_NOT_CREATED;
    e->handler(r, &e->job, e->handler_data);
}


static void
ngx_http_crest_jobs_added(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_jobs_enqueue_t  *e = data;

    const char          *values[1];
    ngx_http_request_t  *r;

    r = e->request;

    /* a custom id is answered with itself, also when it existed already;
     * BullMQ's errors are negative integers */
    if (status != NGX_CREST_OK || reply->type != REDIS_REPLY_STRING
        || reply->len != e->job.id.len
        || ngx_strncmp(reply->str, e->job.id.data, e->job.id.len) != 0)
    {
        if (reply && reply->type == REDIS_REPLY_INTEGER) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "crest jobs: job %V left pending for the outbox: "
                          "addStandardJob answered %L", &e->job.id,
                          (int64_t) reply->integer);

        } else {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "crest jobs: job %V left pending for the outbox: "
                          "addStandardJob %s%s%*s", &e->job.id,
                          ngx_crest_status_text(status),
                          reply ? ": " : "",
                          (size_t) (reply && reply->type == REDIS_REPLY_ERROR
                                    ? reply->len : 0),
                          reply && reply->type == REDIS_REPLY_ERROR
                          ? reply->str : "");
        }

        e->job.result = NGX_CREST_JOB_PENDING;
        e->job.status = status == NGX_CREST_OK ? NGX_CREST_FAILED : status;
        e->handler(r, &e->job, e->handler_data);
        return;
    }

    e->job.result = NGX_CREST_JOB_QUEUED;
    e->job.status = NGX_CREST_OK;

    /*
     * The row follows, unbound: the job is queued whether or not the client
     * stays to hear it, and the answer need not wait.  Only a pending row
     * becomes queued: a fast worker may have moved it on already (its row
     * updates run on a thread of their own), and then only enqueued_at is
     * filled in.  Should this fail, the reconciler's no-op add marks the
     * row.
     */
    values[0] = (const char *) e->job.id.data;

    if (ngx_crest_pg_query("UPDATE jobs SET "
                           "status = CASE status WHEN 'pending' THEN 'queued' "
                           "ELSE status END, "
                           "enqueued_at = coalesce(enqueued_at, now()) "
                           "WHERE id = $1::uuid "
                           "AND (status = 'pending' OR enqueued_at IS NULL)",
                           1, values, NULL, 0, ngx_http_crest_jobs_marked,
                           NULL, ngx_cycle->log)
        == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "crest jobs: job %V queued, its row left pending: "
                      "the database is unavailable", &e->job.id);
    }

    e->handler(r, &e->job, e->handler_data);
}


static void
ngx_http_crest_jobs_marked(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    if (status != NGX_CREST_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "crest jobs: a queued job's row left pending: %s",
                      ngx_crest_pg_error(status, res));
    }
}


ngx_int_t
ngx_crest_job_send(ngx_http_request_t *r, ngx_crest_job_t *job)
{
    crest_jw_t         w;
    crest_buf_t        out;
    crest_allocator_t  a;

    if (job->result == NGX_CREST_JOB_REFUSED) {
        return ngx_crest_send_error(r, NGX_HTTP_CONFLICT, CREST_ERR_CONFLICT,
                                    "the request was refused", NULL);
    }

    if (job->result == NGX_CREST_JOB_NOT_CREATED) {
        if (job->status == NGX_CREST_FAILED) {
            return ngx_crest_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                        CREST_ERR_INTERNAL_SERVER_ERROR,
                                        "the job could not be created", NULL);
        }

        /*
         * An INSERT past its deadline may still commit, and a row that
         * exists is enqueued by the reconciler: say so rather than claim
         * that nothing happened.
         */
        if (job->status == NGX_CREST_TIMEOUT) {
            return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        CREST_ERR_SERVICE_UNAVAILABLE,
                                        "the database did not answer in "
                                        "time: the job may still have been "
                                        "created, see GET /api/jobs before "
                                        "retrying", NULL);
        }

        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "the database is unavailable: "
                                    "the job was not created", NULL);
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "job");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "id");
    crest_jw_strn(&w, (const char *) job->id.data, job->id.len);
    crest_jw_key(&w, "queue");
    crest_jw_strn(&w, (const char *) job->queue.data, job->queue.len);
    crest_jw_key(&w, "name");
    crest_jw_strn(&w, (const char *) job->name.data, job->name.len);
    crest_jw_key(&w, "status");
    crest_jw_str(&w, job->result == NGX_CREST_JOB_QUEUED ? "queued"
                                                         : "pending");
    crest_jw_obj_end(&w);
    crest_jw_obj_end(&w);

    return ngx_crest_send_ok(r, NGX_HTTP_ACCEPTED, &out, NULL);
}


ngx_int_t
ngx_crest_job_key(ngx_http_request_t *r, ngx_str_t *queue, ngx_str_t *id,
    ngx_str_t *key)
{
    u_char                           *p;
    ngx_http_crest_jobs_main_conf_t  *jmcf;

    jmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_jobs_module);

    p = ngx_pnalloc(r->pool, jmcf->prefix.len + queue->len + id->len + 3);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;
    key->len = ngx_sprintf(p, "%V:%V:%V", &jmcf->prefix, queue, id) - p;
    p[key->len] = '\0';

    return NGX_OK;
}


/* a job's view: the row, then what Redis adds */

static ngx_int_t
ngx_http_crest_jobs_view_row(ngx_pool_t *pool, PGresult *res, int row,
    int col0, ngx_http_crest_jobs_view_t *v)
{
    int  i;

    for (i = 0; i < NGX_CREST_JOB_NCOLUMNS; i++) {
        v->null[i] = PQgetisnull(res, row, col0 + i);

        if (v->null[i]) {
            ngx_str_null(&v->col[i]);
            continue;
        }

        v->col[i].len = PQgetlength(res, row, col0 + i);
        v->col[i].data = ngx_http_crest_jobs_copy(pool,
                                             PQgetvalue(res, row, col0 + i),
                                             v->col[i].len);
        if (v->col[i].data == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_jobs_view_set(ngx_pool_t *pool, ngx_http_crest_jobs_view_t *v,
    ngx_uint_t col, const char *s, size_t len, ngx_uint_t json)
{
    if (json) {
        if (ngx_http_crest_jobs_json_text(pool, s, len, &v->col[col])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        v->col[col].len = len;
        v->col[col].data = ngx_http_crest_jobs_copy(pool, s, len);
        if (v->col[col].data == NULL) {
            return NGX_ERROR;
        }
    }

    v->null[col] = 0;

    return NGX_OK;
}


/*
 * Merges the state script's answer, [last stream id, [name, progress,
 * returnvalue, failedReason, finishedOn, processedOn, ats]], into a view of
 * a row that is not final yet.  The workers update rows on a thread of
 * their own, so Redis may be ahead: a job finished there is reported
 * finished.  Returns the stream id, or NGX_DECLINED for an answer of
 * another shape.
 */
static ngx_int_t
ngx_http_crest_jobs_view_live(ngx_pool_t *pool, ngx_http_crest_jobs_view_t *v,
    redisReply *reply, ngx_http_crest_jobs_sid_t *sid)
{
    ngx_int_t    ats, attempts;
    ngx_uint_t   i;
    redisReply  *h, *f[NGX_CREST_JOBS_HASH_N];

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_ARRAY
        || reply->element[1]->elements != NGX_CREST_JOBS_HASH_N
        || ngx_http_crest_jobs_sid_parse(reply->element[0]->str,
                                         reply->element[0]->len, sid)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    h = reply->element[1];

    for (i = 0; i < NGX_CREST_JOBS_HASH_N; i++) {
        f[i] = h->element[i]->type == REDIS_REPLY_STRING ? h->element[i]
                                                         : NULL;
    }

    if (f[NGX_CREST_JOBS_HASH_NAME] == NULL) {
        /* not added yet (a pending row), or Redis lost it: the row says */
        return NGX_OK;
    }

    if (f[NGX_CREST_JOBS_HASH_PROGRESS]
        && ngx_http_crest_jobs_view_set(pool, v, NGX_CREST_JOB_COL_PROGRESS,
                                        f[NGX_CREST_JOBS_HASH_PROGRESS]->str,
                                        f[NGX_CREST_JOBS_HASH_PROGRESS]->len,
                                        1)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (f[NGX_CREST_JOBS_HASH_ATS]) {
        ats = ngx_atoi((u_char *) f[NGX_CREST_JOBS_HASH_ATS]->str,
                       f[NGX_CREST_JOBS_HASH_ATS]->len);
        attempts = ngx_atoi(v->col[NGX_CREST_JOB_COL_ATTEMPTS].data,
                            v->col[NGX_CREST_JOB_COL_ATTEMPTS].len);

        if (ats != NGX_ERROR && ats > attempts
            && ngx_http_crest_jobs_view_set(pool, v, NGX_CREST_JOB_COL_ATTEMPTS,
                                            f[NGX_CREST_JOBS_HASH_ATS]->str,
                                            f[NGX_CREST_JOBS_HASH_ATS]->len, 0)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* finishedOn is set by moveToFinished only: a retried job has none */
    if (f[NGX_CREST_JOBS_HASH_FINISHED_ON]) {

        if (f[NGX_CREST_JOBS_HASH_RETURNVALUE]) {
            ngx_str_set(&v->col[NGX_CREST_JOB_COL_STATUS], "completed");

            if (ngx_http_crest_jobs_view_set(pool, v, NGX_CREST_JOB_COL_RESULT,
                                        f[NGX_CREST_JOBS_HASH_RETURNVALUE]->str,
                                        f[NGX_CREST_JOBS_HASH_RETURNVALUE]->len,
                                        1)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        ngx_str_set(&v->col[NGX_CREST_JOB_COL_STATUS], "failed");

        if (f[NGX_CREST_JOBS_HASH_FAILED_REASON]
            && ngx_http_crest_jobs_view_set(pool, v, NGX_CREST_JOB_COL_ERROR,
                                    f[NGX_CREST_JOBS_HASH_FAILED_REASON]->str,
                                    f[NGX_CREST_JOBS_HASH_FAILED_REASON]->len,
                                    0)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (f[NGX_CREST_JOBS_HASH_PROCESSED_ON]) {
        ngx_str_set(&v->col[NGX_CREST_JOB_COL_STATUS], "active");

    } else if (ngx_http_crest_jobs_is(&v->col[NGX_CREST_JOB_COL_STATUS],
                                      "pending"))
    {
        /* in its queue, the row not marked yet */
        ngx_str_set(&v->col[NGX_CREST_JOB_COL_STATUS], "queued");
    }

    return NGX_OK;
}


/* what besides the summary a job's JSON holds */
#define NGX_CREST_JOBS_VIEW_RESULT  1
#define NGX_CREST_JOBS_VIEW_DATA    2
#define NGX_CREST_JOBS_VIEW_ALL     3

static void
ngx_http_crest_jobs_view_json(crest_jw_t *w, ngx_http_crest_jobs_view_t *v,
    ngx_uint_t detail)
{
    ngx_uint_t  i;

    static const struct {
        const char  *name;
        ngx_uint_t   col;
        ngx_uint_t   kind;      /* 0 string, 1 JSON, 2 number */
        ngx_uint_t   detail;
    } fields[] = {
        { "id", NGX_CREST_JOB_COL_ID, 0, 0 },
        { "queue", NGX_CREST_JOB_COL_QUEUE, 0, 0 },
        { "name", NGX_CREST_JOB_COL_NAME, 0, 0 },
        { "status", NGX_CREST_JOB_COL_STATUS, 0, 0 },
        { "progress", NGX_CREST_JOB_COL_PROGRESS, 1, 0 },
        { "result", NGX_CREST_JOB_COL_RESULT, 1, NGX_CREST_JOBS_VIEW_RESULT },
        { "error", NGX_CREST_JOB_COL_ERROR, 0, 0 },
        { "attempts", NGX_CREST_JOB_COL_ATTEMPTS, 2, 0 },
        { "maxAttempts", NGX_CREST_JOB_COL_MAX_ATTEMPTS, 2, 0 },
        { "data", NGX_CREST_JOB_COL_DATA, 1, NGX_CREST_JOBS_VIEW_DATA },
        { "createdAt", NGX_CREST_JOB_COL_CREATED, 0, 0 },
        { "updatedAt", NGX_CREST_JOB_COL_UPDATED, 0, 0 },
        { "enqueuedAt", NGX_CREST_JOB_COL_ENQUEUED, 0, 0 },
        { "startedAt", NGX_CREST_JOB_COL_STARTED, 0, 0 },
        { "finishedAt", NGX_CREST_JOB_COL_FINISHED, 0, 0 }
    };

    crest_jw_obj_begin(w);

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].detail && !(fields[i].detail & detail)) {
            continue;
        }

        crest_jw_key(w, fields[i].name);

        if (v->null[fields[i].col]) {
            crest_jw_null(w);

        } else if (fields[i].kind == 0) {
            crest_jw_strn(w, (const char *) v->col[fields[i].col].data,
                          v->col[fields[i].col].len);

        } else {
            /* jsonb and integer columns, and JSON that view_live checked */
            crest_jw_raw(w, (const char *) v->col[fields[i].col].data,
                         v->col[fields[i].col].len);
        }
    }

    crest_jw_obj_end(w);
}


static ngx_int_t
ngx_http_crest_jobs_send_view(ngx_http_crest_jobs_ctx_t *ctx, ngx_uint_t status,
    const char *extra)
{
    crest_jw_t           w;
    crest_buf_t          out;
    crest_allocator_t    a;
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "job");
    ngx_http_crest_jobs_view_json(&w, &ctx->view, NGX_CREST_JOBS_VIEW_ALL);

    if (extra) {
        crest_jw_key(&w, extra);
        crest_jw_bool(&w, ctx->removed == 1);
    }

    crest_jw_obj_end(&w);

    return ngx_crest_send_ok(r, status, &out, NULL);
}


static ngx_int_t
ngx_http_crest_jobs_not_found(ngx_http_request_t *r)
{
    return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                "no such job", NULL);
}


/* the job's hash and its queue's events stream, for the state script */
static ngx_crest_redis_cmd_t *
ngx_http_crest_jobs_state(ngx_http_crest_jobs_ctx_t *ctx,
    ngx_crest_redis_handler_pt handler)
{
    u_char                       *job;
    size_t                        argvlen[3];
    const char                   *argv[3];
    ngx_http_request_t           *r;
    ngx_crest_redis_cmd_t        *cmd;
    ngx_http_crest_jobs_queue_t  *q;

    r = ctx->request;
    q = ctx->jmcf->queues->elts;
    q = &q[ctx->queue];

    job = ngx_pnalloc(r->pool, ctx->jmcf->prefix.len + q->name.len + 38);
    if (job == NULL) {
        return NULL;
    }

    argv[0] = "2";
    argvlen[0] = 1;
    argv[1] = (const char *) job;
    argvlen[1] = ngx_sprintf(job, "%V:%V:%s", &ctx->jmcf->prefix, &q->name,
                             ctx->id)
                 - job;
    argv[2] = (const char *) q->events.data;
    argvlen[2] = q->events.len;

    cmd = ngx_crest_redis_script(&ngx_http_crest_jobs_state_script, 3, argv,
                                 argvlen, 0, handler, ctx, r->connection->log);

    if (cmd && ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        return NULL;
    }

    return cmd;
}


/* GET /api/jobs/{id} */

static void
ngx_http_crest_jobs_got_live(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    ngx_int_t                  rc;
    ngx_http_request_t        *r;
    ngx_http_crest_jobs_sid_t  sid;

    r = ctx->request;

    /* Redis away: the row is the answer, a little behind at worst */
    if (status == NGX_CREST_OK) {
        rc = ngx_http_crest_jobs_view_live(r->pool, &ctx->view, reply, &sid);

        if (rc == NGX_ERROR) {
            ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest jobs: job %s answered from its row: redis %s",
                      ctx->id, ngx_crest_status_text(status));
    }

    ngx_crest_finalize(r, ngx_http_crest_jobs_send_view(ctx, NGX_HTTP_OK,
                                                        NULL));
}


/*
 * The caller's job row arrived: its view, or the request is answered (a
 * backend error, 404 for a job that is not the caller's) and NGX_DONE.
 */
static ngx_int_t
ngx_http_crest_jobs_fetched(ngx_http_crest_jobs_ctx_t *ctx,
    ngx_crest_status_e status, PGresult *res)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return NGX_DONE;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r, ngx_http_crest_jobs_not_found(r));
        return NGX_DONE;
    }

    if (ngx_http_crest_jobs_view_row(r->pool, res, 0, 0, &ctx->view)
        != NGX_OK)
    {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_crest_jobs_got(void *data, ngx_crest_status_e status, PGresult *res)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_http_crest_jobs_fetched(ctx, status, res) != NGX_OK) {
        return;
    }

    if (ngx_http_crest_jobs_terminal(&ctx->view.col[NGX_CREST_JOB_COL_STATUS])
        || ngx_http_crest_jobs_queue_find(ctx->jmcf,
                                ctx->view.col[NGX_CREST_JOB_COL_QUEUE].data,
                                ctx->view.col[NGX_CREST_JOB_COL_QUEUE].len,
                                &ctx->queue)
           == NULL
        || ngx_http_crest_jobs_state(ctx, ngx_http_crest_jobs_got_live)
           == NULL)
    {
        /* final, on a queue no longer served here, or Redis away */
        ngx_crest_finalize(r, ngx_http_crest_jobs_send_view(ctx, NGX_HTTP_OK,
                                                            NULL));
    }
}


/* GET /api/jobs */

static void
ngx_http_crest_jobs_listed(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    int                         i, n;
    ngx_int_t                   total;
    crest_jw_t                  w;
    crest_buf_t                 out;
    crest_allocator_t           a;
    ngx_http_request_t         *r;
    ngx_http_crest_jobs_view_t  v;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    n = PQntuples(res);
    total = n ? ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                         PQgetlength(res, 0, 0))
              : 0;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&out, &a);
    crest_jw_init(&w, &out);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "jobs");
    crest_jw_arr_begin(&w);

    for (i = 0; i < n; i++) {
        /* the count comes with one row of nulls past the last page */
        if (PQgetisnull(res, i, 1)) {
            continue;
        }

        if (ngx_http_crest_jobs_view_row(r->pool, res, i, 1, &v) != NGX_OK) {
            ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_crest_jobs_view_json(&w, &v, 0);
    }

    crest_jw_arr_end(&w);

    crest_envelope_pagination(&w, ctx->page, ctx->limit, total);

    crest_jw_obj_end(&w);

    ngx_crest_finalize(r, ngx_crest_send_ok(r, NGX_HTTP_OK, &out, NULL));
}


static ngx_int_t
ngx_http_crest_jobs_list(ngx_http_crest_jobs_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_str_t            queue, status;
    ngx_uint_t           i, n;
    const char          *values[5];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_crest_page_args(r, &ctx->page, &ctx->limit, &rc) != NGX_OK) {
        return rc;
    }

    values[0] = (const char *) ctx->identity->user_id.data;
    values[1] = NULL;
    values[2] = NULL;

    rc = ngx_crest_arg(r, "queue", &queue);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (ngx_http_crest_jobs_queue_find(ctx->jmcf, queue.data, queue.len,
                                           NULL)
            == NULL)
        {
            return ngx_crest_send_invalid(r, "queue", "no such queue");
        }

        values[1] = (const char *) queue.data;
    }

    rc = ngx_crest_arg(r, "status", &status);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        n = sizeof(ngx_http_crest_jobs_statuses) / sizeof(ngx_str_t);

        for (i = 0; i < n; i++) {
            if (status.len == ngx_http_crest_jobs_statuses[i].len
                && ngx_strncmp(status.data,
                               ngx_http_crest_jobs_statuses[i].data,
                               status.len) == 0)
            {
                break;
            }
        }

        if (i == n) {
            return ngx_crest_send_invalid(r, "status",
                                          "status must be pending, queued, "
                                          "active, completed, failed or "
                                          "cancelled");
        }

        values[2] = (const char *) status.data;
    }

    if (ngx_crest_page_sql(r->pool, ctx->page, ctx->limit, &values[3],
                           &values[4])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the count and the page in one statement; a page past the last one
     * is the count with a row of nulls */
    rc = ngx_crest_pg_request(r,
        "WITH f AS (SELECT * FROM jobs WHERE user_id = $1::uuid "
        "AND ($2::text IS NULL OR queue = $2) "
        "AND ($3::text IS NULL OR status = $3)) "
        "SELECT c.total, p.* FROM (SELECT count(*) AS total FROM f) c "
        "LEFT JOIN LATERAL (SELECT " NGX_CREST_JOB_COLUMNS " FROM f "
        "ORDER BY created_at DESC, id DESC "
        "LIMIT $4::integer OFFSET $5::integer) p ON true",
        5, values, ngx_http_crest_jobs_listed, ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* POST /api/jobs/{id}/cancel */

static void
ngx_http_crest_jobs_removed(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    ngx_http_request_t  *r;

    r = ctx->request;

    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_INTEGER) {
        /* 1: removed (or never added); 0: locked, a worker runs it */
        ctx->removed = reply->integer == 1;

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "crest jobs: cancelled job %s not removed from its "
                      "queue: removeJob %s", ctx->id,
                      ngx_crest_status_text(status));
    }

    ngx_crest_finalize(r, ngx_http_crest_jobs_send_view(ctx, NGX_HTTP_OK,
                                                        "removedFromQueue"));
}


static void
ngx_http_crest_jobs_cancelled(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    size_t                        argvlen[7];
    ngx_str_t                     prev;
    const char                   *argv[7];
    crest_buf_t                   keys, base;
    crest_allocator_t             a;
    crest_bullmq_keys_t           k;
    ngx_http_request_t           *r;
    ngx_crest_redis_cmd_t        *cmd;
    ngx_http_crest_jobs_queue_t  *q;

    r = ctx->request;

    if (status != NGX_CREST_OK) {
        ngx_crest_finalize(r, ngx_crest_pg_send_error(r, status, res));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_crest_finalize(r, ngx_http_crest_jobs_not_found(r));
        return;
    }

    prev.data = (u_char *) PQgetvalue(res, 0, 0);
    prev.len = PQgetlength(res, 0, 0);

    if (PQgetisnull(res, 0, 1)) {
        /* completed or failed: nothing left to cancel */
        ngx_crest_finalize(r,
            ngx_crest_send_error(r, NGX_HTTP_CONFLICT, CREST_ERR_CONFLICT,
                                 ngx_http_crest_jobs_is(&prev, "completed")
                                 ? "the job has completed"
                                 : "the job has failed", NULL));
        return;
    }

    if (ngx_http_crest_jobs_view_row(r->pool, res, 0, 1, &ctx->view)
        != NGX_OK)
    {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_crest_jobs_is(&prev, "cancelled")
        || ngx_http_crest_jobs_queue_find(ctx->jmcf,
                                ctx->view.col[NGX_CREST_JOB_COL_QUEUE].data,
                                ctx->view.col[NGX_CREST_JOB_COL_QUEUE].len,
                                &ctx->queue)
           == NULL)
    {
        /* cancelled before: the same answer again */
        ctx->removed = ngx_http_crest_jobs_is(&prev, "cancelled");
        ngx_crest_finalize(r, ngx_http_crest_jobs_send_view(ctx, NGX_HTTP_OK,
                                                        "removedFromQueue"));
        return;
    }

    q = ctx->jmcf->queues->elts;
    q = &q[ctx->queue];

    /*
     * Streams watching the job end on this entry, on every nginx: BullMQ
     * itself says "removed" only for a job it removed, not for one a worker
     * runs or one never added.  QueueEvents passes it on as "cancelled".
     * Unbound: it must go out even if the client leaves now.
     */
    argv[0] = "XADD";
    argvlen[0] = 4;
    argv[1] = (const char *) q->events.data;
    argvlen[1] = q->events.len;
    argv[2] = "*";
    argvlen[2] = 1;
    argv[3] = "event";
    argvlen[3] = 5;
    argv[4] = "cancelled";
    argvlen[4] = 9;
    argv[5] = "jobId";
    argvlen[5] = 5;
    argv[6] = (const char *) ctx->id;
    argvlen[6] = 36;

    (void) ngx_crest_redis_command(7, argv, argvlen, 0, NULL, NULL,
                                   ngx_cycle->log);

    /* removeJob: KEYS job, repeat; ARGV id, removeChildren, "prefix:queue:" */
    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&keys, &a);
    crest_buf_init(&base, &a);

    crest_bullmq_key(&base, (const char *) ctx->jmcf->prefix.data,
                     (const char *) q->name.data, "");

    if (crest_bullmq_keys(&k, &keys, (const char *) ctx->jmcf->prefix.data,
                          (const char *) q->name.data, CREST_BQ_REMOVE_JOB,
                          (const char *) ctx->id, NULL) != 2
        || crest_buf_failed(&base))
    {
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[0] = "2";
    argvlen[0] = 1;
    argv[1] = k.key[0];
    argvlen[1] = k.len[0];
    argv[2] = k.key[1];
    argvlen[2] = k.len[1];
    argv[3] = (const char *) ctx->id;
    argvlen[3] = 36;
    argv[4] = "1";
    argvlen[4] = 1;
    argv[5] = base.data;
    argvlen[5] = base.len;

    cmd = ngx_crest_redis_script(&ngx_http_crest_jobs_remove_script, 6, argv,
                                 argvlen, 0, ngx_http_crest_jobs_removed, ctx,
                                 r->connection->log);

    if (cmd == NULL || ngx_crest_redis_bind(r, cmd) != NGX_OK) {
        ngx_http_crest_jobs_removed(ctx, NGX_CREST_UNAVAILABLE, NULL);
    }
}


/* GET /api/jobs/{id}/events: Server-Sent Events */

static ngx_int_t
ngx_http_crest_jobs_sse_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


static void
ngx_http_crest_jobs_sse_writer(ngx_http_request_t *r)
{
    ngx_http_crest_jobs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_jobs_module);

    if (r->connection->write->timedout) {
        r->connection->timedout = 1;
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "client timed out");
        ngx_http_crest_jobs_sse_end(ctx, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    /* nothing new: only what the client has not taken yet */
    if (ngx_http_crest_jobs_sse_flush(ctx, NULL) != NGX_OK) {
        ngx_http_crest_jobs_sse_end(ctx, NGX_ERROR);
    }
}


/*
 * Sends out (or what is still buffered) without holding anything back:
 * each event is flushed.  Buffers go back to ctx->free once sent, so a
 * long stream does not grow its pool.
 */
static ngx_int_t
ngx_http_crest_jobs_sse_flush(ngx_http_crest_jobs_ctx_t *ctx, ngx_chain_t *out)
{
    size_t                     backlog;
    ngx_int_t                  rc;
    ngx_chain_t               *cl;
    ngx_event_t               *wev;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    wev = r->connection->write;

    rc = ngx_http_output_filter(r, out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_crest_jobs_module);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ctx->busy == NULL) {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        return NGX_OK;
    }

    backlog = 0;

    for (cl = ctx->busy; cl; cl = cl->next) {
        backlog += ngx_buf_size(cl->buf);
    }

    /* one big event may take its time; a queue of them is a dead client */
    if (backlog > NGX_CREST_JOBS_SSE_BACKLOG && ctx->busy->next) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "crest jobs: an events client fell %uz bytes behind",
                      backlog);
        return NGX_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    r->write_event_handler = ngx_http_crest_jobs_sse_writer;

    if (!wev->timer_set) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_crest_jobs_sse_send(ngx_http_crest_jobs_ctx_t *ctx, u_char *text,
    size_t len)
{
    u_char       *start, *end;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(ctx->request->pool, &ctx->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;

    /* a reused buffer keeps its memory; everything else starts afresh */
    start = b->start;
    end = b->end;

    if (start == NULL || (size_t) (end - start) < len) {
        start = ngx_palloc(ctx->request->pool, ngx_max(len, 256));
        if (start == NULL) {
            return NGX_ERROR;
        }

        end = start + ngx_max(len, 256);
    }

    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = start;
    b->end = end;
    b->pos = start;
    b->last = ngx_cpymem(start, text, len);
    b->temporary = 1;
    b->flush = 1;
    b->tag = (ngx_buf_tag_t) &ngx_http_crest_jobs_module;

    cl->next = NULL;

    return ngx_http_crest_jobs_sse_flush(ctx, cl);
}


static void
ngx_http_crest_jobs_sse_keepalive(ngx_event_t *ev)
{
    ngx_http_crest_jobs_ctx_t  *ctx = ev->data;

    static u_char  comment[] = ": keepalive\n\n";

    /* the backstop of a shutdown when the events connection was down */
    if (ngx_exiting || ngx_terminate) {
        ngx_http_crest_jobs_sse_end(ctx, NGX_OK);
        return;
    }

    if (ngx_http_crest_jobs_sse_send(ctx, comment, sizeof(comment) - 1)
        != NGX_OK)
    {
        ngx_http_crest_jobs_sse_end(ctx, NGX_ERROR);
        return;
    }

    ngx_add_timer(ev, ctx->jmcf->keepalive);
}


/* Appends JSON from Redis, checked and compact (see json_text). */
static void
ngx_http_crest_jobs_json_append(crest_buf_t *b, const char *s, size_t len)
{
    char    *dump;
    json_t  *v;

    v = json_loadb(s, len, JSON_DECODE_ANY, NULL);

    if (v == NULL) {
        crest_json_escape(b, s, len);
        return;
    }

    dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);

    if (dump == NULL) {
        b->failed = 1;
        return;
    }

    crest_buf_appends(b, dump);
    free(dump);
}


/*
 * "event: EVENT\ndata: {"jobId":ID[,"status":STATUS][,KEY:VALUE]}\n\n":
 * VALUE is JSON (checked) when json is set, else a string; null if NULL.
 */
static void
ngx_http_crest_jobs_sse_text(crest_buf_t *b, const char *event, u_char *id,
    const char *status, const char *key, ngx_str_t *value, ngx_uint_t json)
{
    crest_buf_appends(b, "event: ");
    crest_buf_appends(b, event);
    crest_buf_appends(b, "\ndata: {\"jobId\":\"");
    crest_buf_append(b, id, 36);
    crest_buf_appendc(b, '"');

    if (status) {
        crest_buf_appends(b, ",\"status\":\"");
        crest_buf_appends(b, status);
        crest_buf_appendc(b, '"');
    }

    if (key) {
        crest_buf_appends(b, ",\"");
        crest_buf_appends(b, key);
        crest_buf_appends(b, "\":");

        if (value == NULL) {
            crest_buf_appends(b, "null");

        } else if (json) {
            ngx_http_crest_jobs_json_append(b, (const char *) value->data,
                                            value->len);

        } else {
            crest_json_escape(b, (const char *) value->data, value->len);
        }
    }

    crest_buf_appends(b, "}\n\n");
}


/* The first event, the job as GET /api/jobs/{id} answers it, and for a
 * job that is over, its last event. */
static ngx_int_t
ngx_http_crest_jobs_sse_begin(ngx_http_crest_jobs_ctx_t *ctx)
{
    ngx_int_t                    rc;
    crest_jw_t                   w;
    ngx_str_t                   *status;
    crest_buf_t                  b;
    ngx_uint_t                   i;
    crest_allocator_t            a;
    ngx_http_request_t          *r;
    ngx_http_crest_jobs_held_t  *held;
    ngx_http_crest_jobs_view_t  *v;

    r = ctx->request;
    v = &ctx->view;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

#if (NGX_HTTP_GZIP)
    /* compression would hold events back */
    r->gzip_tested = 1;
    r->gzip_ok = 0;
#endif

    /* X-Accel-Buffering: a proxy in front must not buffer either */
    if (ngx_http_crest_jobs_sse_header(r, "Cache-Control", "no-cache")
        != NGX_OK
        || ngx_http_crest_jobs_sse_header(r, "X-Accel-Buffering", "no")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    ctx->sse = NGX_CREST_JOBS_SSE_LIVE;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&b, &a);
    crest_jw_init(&w, &b);

    /* not the data: the client sent it, and it may be big */
    crest_buf_appends(&b, "event: state\ndata: ");
    ngx_http_crest_jobs_view_json(&w, v, NGX_CREST_JOBS_VIEW_RESULT);
    crest_buf_appends(&b, "\n\n");

    status = &v->col[NGX_CREST_JOB_COL_STATUS];

    if (ngx_http_crest_jobs_is(status, "completed")) {
        ngx_http_crest_jobs_sse_text(&b, "completed", ctx->id, "completed",
                                     "result",
                                     v->null[NGX_CREST_JOB_COL_RESULT]
                                     ? NULL : &v->col[NGX_CREST_JOB_COL_RESULT],
                                     1);
        ctx->ending = 1;

    } else if (ngx_http_crest_jobs_is(status, "failed")) {
        ngx_http_crest_jobs_sse_text(&b, "failed", ctx->id, "failed", "error",
                                     v->null[NGX_CREST_JOB_COL_ERROR]
                                     ? NULL : &v->col[NGX_CREST_JOB_COL_ERROR],
                                     0);
        ctx->ending = 1;

    } else if (ngx_http_crest_jobs_is(status, "cancelled")) {
        ngx_http_crest_jobs_sse_text(&b, "cancelled", ctx->id, "cancelled",
                                     NULL, NULL, 0);
        ctx->ending = 1;

    } else if (ctx->held) {
        /* what came meanwhile and the state does not cover yet */
        held = ctx->held->elts;

        for (i = 0; i < ctx->held->nelts && !ctx->ending; i++) {
            if (ngx_http_crest_jobs_sid_cmp(&held[i].sid, &ctx->since) <= 0) {
                continue;
            }

            crest_buf_append(&b, held[i].text.data, held[i].text.len);

            if (held[i].terminal) {
                ctx->ending = 1;
            }
        }
    }

    ctx->held = NULL;

    if (crest_buf_failed(&b)) {
        return NGX_ERROR;
    }

    if (ngx_http_crest_jobs_sse_send(ctx, (u_char *) b.data, b.len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ctx->ending) {
        ctx->keepalive.handler = ngx_http_crest_jobs_sse_keepalive;
        ctx->keepalive.data = ctx;
        ctx->keepalive.log = r->connection->log;

        /* not cancelable: a worker shutting down waits for the stream,
         * which ends when it sees ngx_exiting */
        ngx_add_timer(&ctx->keepalive, ctx->jmcf->keepalive);
    }

    return NGX_OK;
}


/* the hub: one XREAD for the worker, entries to the streams of their job */

static void
ngx_http_crest_jobs_unsubscribe(ngx_http_crest_jobs_ctx_t *ctx)
{
    ngx_http_crest_jobs_feed_t  *feed;
    ngx_http_crest_jobs_hub_t   *hub;

    hub = &ngx_http_crest_jobs_hub;

    if (ctx->keepalive.timer_set) {
        ngx_del_timer(&ctx->keepalive);
    }

    if (ctx->in_wait) {
        ngx_queue_remove(&ctx->wait);
        ctx->in_wait = 0;
    }

    if (ctx->watch == NULL) {
        return;
    }

    ngx_queue_remove(&ctx->link);

    if (ngx_queue_empty(&ctx->watch->subs)) {
        ngx_rbtree_delete(&hub->watches, &ctx->watch->sn.node);
        ngx_free(ctx->watch);
    }

    ctx->watch = NULL;

    feed = &hub->feeds[ctx->queue];

    if (--feed->nsubs == 0 && feed->state == NGX_CREST_JOBS_FEED_FOLLOWED) {
        /* dropped from the next XREAD */
        feed->state = NGX_CREST_JOBS_FEED_IDLE;
    }
}


static void
ngx_http_crest_jobs_sse_cleanup(void *data)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    ngx_http_crest_jobs_unsubscribe(ctx);
    ctx->sse = NGX_CREST_JOBS_SSE_DONE;
}


static void
ngx_http_crest_jobs_sse_end(ngx_http_crest_jobs_ctx_t *ctx, ngx_int_t rc)
{
    ngx_http_request_t  *r;

    if (ctx->sse == NGX_CREST_JOBS_SSE_DONE) {
        return;
    }

    r = ctx->request;

    ngx_http_crest_jobs_unsubscribe(ctx);

    if (ctx->sse == NGX_CREST_JOBS_SSE_LIVE) {
        if (rc == NGX_OK) {
            rc = ngx_http_send_special(r, NGX_HTTP_LAST);
        }

    } else if (rc == NGX_OK || rc == NGX_HTTP_SERVICE_UNAVAILABLE) {
        /* before the headers: an ordinary answer */
        rc = ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  CREST_ERR_SERVICE_UNAVAILABLE,
                                  ngx_exiting
                                  ? "the server is shutting down: retry"
                                  : "job events are unavailable", NULL);
    }

    ctx->sse = NGX_CREST_JOBS_SSE_DONE;

    ngx_crest_finalize(r, rc);
}


/* Ends the streams marked while an XREAD answer was handed out. */
static void
ngx_http_crest_jobs_hub_end_marked(void)
{
    ngx_queue_t                *q;
    ngx_http_crest_jobs_ctx_t  *ctx;

    while (!ngx_queue_empty(&ngx_http_crest_jobs_hub.ending)) {
        q = ngx_queue_head(&ngx_http_crest_jobs_hub.ending);
        ctx = ngx_queue_data(q, ngx_http_crest_jobs_ctx_t, wait);
        ngx_queue_remove(q);
        ctx->in_wait = 0;

        ngx_http_crest_jobs_sse_end(ctx, ctx->end_rc);
    }
}


static void
ngx_http_crest_jobs_mark_ending(ngx_http_crest_jobs_ctx_t *ctx, ngx_int_t rc)
{
    if (ctx->in_wait) {
        /* the waiting lists of feeds are left before any entry arrives */
        ngx_queue_remove(&ctx->wait);
    }

    ctx->ending = 1;
    ctx->end_rc = rc;
    ctx->in_wait = 1;
    ngx_queue_insert_tail(&ngx_http_crest_jobs_hub.ending, &ctx->wait);
}


static void
ngx_http_crest_jobs_attached(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    ngx_int_t   rc;

    /* ended meanwhile (shutdown), its answer still going out */
    if (ctx->sse != NGX_CREST_JOBS_SSE_ATTACHING) {
        return;
    }

    if (status == NGX_CREST_OK) {
        rc = ngx_http_crest_jobs_view_live(ctx->request->pool, &ctx->view,
                                           reply, &ctx->since);
        if (rc == NGX_ERROR) {
            ngx_http_crest_jobs_sse_end(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

    } else {
        /* the row's state; events since the feed's cursor all count */
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "crest jobs: events of job %s start from its row: "
                      "redis %s", ctx->id, ngx_crest_status_text(status));
    }

    if (ngx_http_crest_jobs_sse_begin(ctx) != NGX_OK) {
        ngx_http_crest_jobs_sse_end(ctx, NGX_ERROR);
        return;
    }

    if (ctx->ending) {
        ngx_http_crest_jobs_sse_end(ctx, NGX_OK);
    }
}


static void
ngx_http_crest_jobs_attach(ngx_http_crest_jobs_ctx_t *ctx)
{
    ctx->sse = NGX_CREST_JOBS_SSE_ATTACHING;

    ctx->held = ngx_array_create(ctx->request->pool, 4,
                                 sizeof(ngx_http_crest_jobs_held_t));

    if (ctx->held == NULL
        || ngx_http_crest_jobs_state(ctx, ngx_http_crest_jobs_attached)
           == NULL)
    {
        ngx_http_crest_jobs_mark_ending(ctx, NGX_HTTP_SERVICE_UNAVAILABLE);
    }
}


static void
ngx_http_crest_jobs_feed_fetched(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_jobs_feed_t  *feed = data;

    ngx_int_t                   ok;
    ngx_queue_t                *q;
    redisReply                 *e;
    ngx_http_crest_jobs_ctx_t  *ctx;
    ngx_http_crest_jobs_sid_t   sid;

    if (ngx_http_crest_jobs_hub.feeds == NULL) {
        return;
    }

    feed->fetching = 0;

    sid.ms = 0;
    sid.seq = 0;
    ok = 0;

    /* XREVRANGE ... COUNT 1: [] for a stream not made yet, or [[id, ...]] */
    if (status == NGX_CREST_OK && reply->type == REDIS_REPLY_ARRAY) {
        ok = 1;

        if (reply->elements) {
            e = reply->element[0];
            ok = e->type == REDIS_REPLY_ARRAY && e->elements >= 1
                 && e->element[0]->type == REDIS_REPLY_STRING
                 && ngx_http_crest_jobs_sid_parse(e->element[0]->str,
                                                  e->element[0]->len, &sid)
                    == NGX_OK;
        }
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "crest jobs: cannot read an events stream's position: "
                      "redis %s", ngx_crest_status_text(status));

        feed->state = NGX_CREST_JOBS_FEED_IDLE;

        while (!ngx_queue_empty(&feed->waiting)) {
            q = ngx_queue_head(&feed->waiting);
            ctx = ngx_queue_data(q, ngx_http_crest_jobs_ctx_t, wait);
            ngx_http_crest_jobs_mark_ending(ctx, NGX_HTTP_SERVICE_UNAVAILABLE);
        }

        ngx_http_crest_jobs_hub_end_marked();
        return;
    }

    if (feed->nsubs == 0) {
        feed->state = NGX_CREST_JOBS_FEED_IDLE;
        return;
    }

    feed->cursor = sid;
    feed->cursor_len = ngx_sprintf(feed->cursor_text, "%uL-%uL", sid.ms,
                                   sid.seq)
                       - feed->cursor_text;
    feed->state = NGX_CREST_JOBS_FEED_FOLLOWED;
    ngx_http_crest_jobs_hub_unblock(feed);

    while (!ngx_queue_empty(&feed->waiting)) {
        q = ngx_queue_head(&feed->waiting);
        ctx = ngx_queue_data(q, ngx_http_crest_jobs_ctx_t, wait);
        ngx_queue_remove(q);
        ctx->in_wait = 0;

        ngx_http_crest_jobs_attach(ctx);
    }

    ngx_http_crest_jobs_hub_end_marked();
    ngx_http_crest_jobs_hub_read();
}


static ngx_int_t
ngx_http_crest_jobs_feed_fetch(ngx_http_crest_jobs_feed_t *feed,
    ngx_str_t *events)
{
    size_t       argvlen[6];
    const char  *argv[6];

    argv[0] = "XREVRANGE";
    argv[1] = (const char *) events->data;
    argv[2] = "+";
    argv[3] = "-";
    argv[4] = "COUNT";
    argv[5] = "1";

    argvlen[0] = 9;
    argvlen[1] = events->len;
    argvlen[2] = 1;
    argvlen[3] = 1;
    argvlen[4] = 5;
    argvlen[5] = 1;

    /* the feed outlives any one stream: the command is bound to none */
    if (ngx_crest_redis_command(6, argv, argvlen, 0,
                                ngx_http_crest_jobs_feed_fetched, feed,
                                ngx_cycle->log)
        == NULL)
    {
        return NGX_ERROR;
    }

    feed->fetching = 1;

    return NGX_OK;
}


static void ngx_http_crest_jobs_hub_event(void *data,
    ngx_crest_redis_dedicated_event_e event);


static ngx_int_t
ngx_http_crest_jobs_sse_subscribe(ngx_http_crest_jobs_ctx_t *ctx)
{
    uint32_t                      hash;
    ngx_str_t                     id;
    ngx_http_cleanup_t           *cln;
    ngx_http_request_t           *r;
    ngx_http_crest_jobs_hub_t    *hub;
    ngx_http_crest_jobs_feed_t   *feed;
    ngx_http_crest_jobs_queue_t  *q;
    ngx_http_crest_jobs_watch_t  *watch;

    r = ctx->request;
    hub = &ngx_http_crest_jobs_hub;

    if (hub->feeds == NULL) {
        return NGX_DECLINED;
    }

    if (hub->conn == NULL) {
        hub->conn = ngx_crest_redis_dedicated_open(
                                          ngx_http_crest_jobs_hub_event, NULL,
                                          r->connection->log);
        if (hub->conn == NULL) {
            return NGX_DECLINED;
        }
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_crest_jobs_sse_cleanup;
    cln->data = ctx;

    id.data = ctx->id;
    id.len = 36;
    hash = ngx_crc32_short(id.data, id.len);

    watch = (ngx_http_crest_jobs_watch_t *)
                ngx_str_rbtree_lookup(&hub->watches, &id, hash);

    if (watch == NULL) {
        watch = ngx_alloc(sizeof(ngx_http_crest_jobs_watch_t),
                          r->connection->log);
        if (watch == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(watch->id, id.data, 36);
        watch->sn.node.key = hash;
        watch->sn.str.data = watch->id;
        watch->sn.str.len = 36;
        ngx_queue_init(&watch->subs);

        ngx_rbtree_insert(&hub->watches, &watch->sn.node);
    }

    ngx_queue_insert_tail(&watch->subs, &ctx->link);
    ctx->watch = watch;

    feed = &hub->feeds[ctx->queue];
    feed->nsubs++;

    /* from now on no event of the job goes by unseen */
    r->read_event_handler = ngx_http_test_reading;

    if (feed->state == NGX_CREST_JOBS_FEED_FOLLOWED) {
        ngx_http_crest_jobs_attach(ctx);
        ngx_http_crest_jobs_hub_end_marked();
        return NGX_OK;
    }

    ctx->sse = NGX_CREST_JOBS_SSE_WAIT_FEED;
    ngx_queue_insert_tail(&feed->waiting, &ctx->wait);
    ctx->in_wait = 1;

    if (feed->state == NGX_CREST_JOBS_FEED_IDLE) {
        q = hub->conf->queues->elts;

        if (!feed->fetching
            && ngx_http_crest_jobs_feed_fetch(feed, &q[ctx->queue].events)
               != NGX_OK)
        {
            return NGX_DECLINED;
        }

        feed->state = NGX_CREST_JOBS_FEED_FETCHING;
    }

    return NGX_OK;
}


static void
ngx_http_crest_jobs_sse_got(void *data, ngx_crest_status_e status,
    PGresult *res)
{
    ngx_http_crest_jobs_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_http_crest_jobs_fetched(ctx, status, res) != NGX_OK) {
        return;
    }

    /* a job that is over: its state, its last event, the end */
    if (ngx_http_crest_jobs_terminal(&ctx->view.col[NGX_CREST_JOB_COL_STATUS])
        || ngx_http_crest_jobs_queue_find(ctx->jmcf,
                                ctx->view.col[NGX_CREST_JOB_COL_QUEUE].data,
                                ctx->view.col[NGX_CREST_JOB_COL_QUEUE].len,
                                &ctx->queue)
           == NULL)
    {
        if (ngx_http_crest_jobs_sse_begin(ctx) != NGX_OK) {
            ngx_crest_finalize(r, NGX_ERROR);
            return;
        }

        ctx->sse = NGX_CREST_JOBS_SSE_DONE;
        ngx_crest_finalize(r, ngx_http_send_special(r, NGX_HTTP_LAST));
        return;
    }

    rc = ngx_http_crest_jobs_sse_subscribe(ctx);

    if (rc == NGX_ERROR) {
        ngx_http_crest_jobs_unsubscribe(ctx);
        ctx->sse = NGX_CREST_JOBS_SSE_DONE;
        ngx_crest_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_crest_jobs_sse_end(ctx, NGX_HTTP_SERVICE_UNAVAILABLE);
    }
}


static ngx_http_crest_jobs_feed_t *
ngx_http_crest_jobs_hub_feed(redisReply *key, ngx_uint_t *index)
{
    ngx_uint_t                    i;
    ngx_http_crest_jobs_queue_t  *q;

    q = ngx_http_crest_jobs_hub.conf->queues->elts;

    for (i = 0; i < ngx_http_crest_jobs_hub.conf->queues->nelts; i++) {
        if (q[i].events.len == key->len
            && ngx_strncmp(q[i].events.data, key->str, key->len) == 0)
        {
            *index = i;
            return &ngx_http_crest_jobs_hub.feeds[i];
        }
    }

    return NULL;
}


/* One entry of a followed queue's stream: to the streams of its job. */
static void
ngx_http_crest_jobs_hub_entry(ngx_uint_t index, ngx_http_crest_jobs_sid_t *sid,
    redisReply *fields)
{
    size_t                        i;
    uint32_t                      hash;
    ngx_str_t                     id, value, event;
    ngx_uint_t                    terminal, json;
    redisReply                   *f, *v;
    crest_buf_t                  *b;
    ngx_queue_t                  *q;
    const char                   *name, *status, *key;
    ngx_http_crest_jobs_ctx_t    *ctx;
    ngx_http_crest_jobs_held_t   *held;
    ngx_http_crest_jobs_watch_t  *watch;

    ngx_str_null(&event);
    ngx_str_null(&id);
    ngx_str_null(&value);

    /* BullMQ's fields: event, jobId, and data | returnvalue |
     * failedReason | attemptsMade with the event */
    for (i = 0; i + 1 < fields->elements; i += 2) {
        f = fields->element[i];
        v = fields->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }

        if (f->len == 5 && ngx_strncmp(f->str, "event", 5) == 0) {
            event.data = (u_char *) v->str;
            event.len = v->len;

        } else if (f->len == 5 && ngx_strncmp(f->str, "jobId", 5) == 0) {
            id.data = (u_char *) v->str;
            id.len = v->len;

        } else if ((f->len == 4 && ngx_strncmp(f->str, "data", 4) == 0)
                   || (f->len == 11
                       && ngx_strncmp(f->str, "returnvalue", 11) == 0)
                   || (f->len == 12
                       && ngx_strncmp(f->str, "failedReason", 12) == 0)
                   || (f->len == 12
                       && ngx_strncmp(f->str, "attemptsMade", 12) == 0))
        {
            value.data = (u_char *) v->str;
            value.len = v->len;
        }
    }

    if (id.len != 36) {
        return;
    }

    hash = ngx_crc32_short(id.data, id.len);
    watch = (ngx_http_crest_jobs_watch_t *)
                ngx_str_rbtree_lookup(&ngx_http_crest_jobs_hub.watches, &id,
                                      hash);
    if (watch == NULL) {
        return;
    }

    terminal = 1;
    json = 0;
    status = NULL;
    key = NULL;

    if (ngx_http_crest_jobs_is(&event, "completed")) {
        name = "completed";
        status = name;
        key = "result";
        json = 1;

    } else if (ngx_http_crest_jobs_is(&event, "failed")) {
        name = "failed";
        status = name;
        key = "error";

    } else if (ngx_http_crest_jobs_is(&event, "removed")
               || ngx_http_crest_jobs_is(&event, "cancelled"))
    {
        name = "cancelled";
        status = name;

    } else {
        terminal = 0;

        if (ngx_http_crest_jobs_is(&event, "progress")) {
            name = "progress";
            key = "progress";
            json = 1;

        } else if (ngx_http_crest_jobs_is(&event, "active")) {
            name = "active";
            status = name;

        } else if (ngx_http_crest_jobs_is(&event, "retries-exhausted")) {
            name = "retries-exhausted";
            key = "attemptsMade";
            json = 1;

        } else {
            return;
        }
    }

    b = &ngx_http_crest_jobs_hub.text;
    crest_buf_reset(b);

    ngx_http_crest_jobs_sse_text(b, name, id.data, status, key,
                                 value.data ? &value : NULL, json);

    if (crest_buf_failed(b)) {
        crest_buf_free(b);
        crest_buf_init(b, &crest_malloc_allocator);
        return;
    }

    for (q = ngx_queue_head(&watch->subs);
         q != ngx_queue_sentinel(&watch->subs);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_crest_jobs_ctx_t, link);

        if (ctx->queue != index) {
            continue;
        }

        if (ctx->sse == NGX_CREST_JOBS_SSE_ATTACHING && ctx->held) {
            /* the state, once known, tells which of these it covers */
            held = ngx_array_push(ctx->held);
            if (held == NULL) {
                ngx_http_crest_jobs_mark_ending(ctx, NGX_ERROR);
                continue;
            }

            held->sid = *sid;
            held->terminal = terminal;
            held->text.len = b->len;
            held->text.data = (u_char *) ngx_http_crest_jobs_copy(
                                                       ctx->request->pool,
                                                       b->data, b->len);
            if (held->text.data == NULL) {
                ngx_http_crest_jobs_mark_ending(ctx, NGX_ERROR);
            }

            continue;
        }

        if (ctx->sse != NGX_CREST_JOBS_SSE_LIVE
            || ngx_http_crest_jobs_sid_cmp(sid, &ctx->since) <= 0
            || (ctx->ending && !ngx_http_crest_jobs_is(&event,
                                                       "retries-exhausted")))
        {
            continue;
        }

        if (ngx_http_crest_jobs_sse_send(ctx, (u_char *) b->data, b->len)
            != NGX_OK)
        {
            ngx_http_crest_jobs_mark_ending(ctx, NGX_ERROR);
            continue;
        }

        if (terminal) {
            /* retries-exhausted follows failed in the same answer */
            ngx_http_crest_jobs_mark_ending(ctx, NGX_OK);
        }
    }
}


static void
ngx_http_crest_jobs_hub_dispatch(redisReply *reply)
{
    size_t                       i, j;
    ngx_uint_t                   index;
    redisReply                  *s, *e;
    ngx_http_crest_jobs_sid_t    sid;
    ngx_http_crest_jobs_feed_t  *feed;

    /* [[key, [[id, [field, value, ...]], ...]], ...] */
    for (i = 0; i < reply->elements; i++) {
        s = reply->element[i];

        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2
            || s->element[0]->type != REDIS_REPLY_STRING
            || s->element[1]->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        feed = ngx_http_crest_jobs_hub_feed(s->element[0], &index);

        /* a queue nobody watches any more: its entries go unread */
        if (feed == NULL || feed->state != NGX_CREST_JOBS_FEED_FOLLOWED) {
            continue;
        }

        for (j = 0; j < s->element[1]->elements; j++) {
            e = s->element[1]->element[j];

            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
                || e->element[0]->type != REDIS_REPLY_STRING
                || ngx_http_crest_jobs_sid_parse(e->element[0]->str,
                                                 e->element[0]->len, &sid)
                   != NGX_OK
                || ngx_http_crest_jobs_sid_cmp(&sid, &feed->cursor) <= 0)
            {
                continue;
            }

            feed->cursor = sid;

            if (e->element[1]->type == REDIS_REPLY_ARRAY) {
                ngx_http_crest_jobs_hub_entry(index, &sid, e->element[1]);
            }
        }

        feed->cursor_len = ngx_sprintf(feed->cursor_text, "%uL-%uL",
                                       feed->cursor.ms, feed->cursor.seq)
                           - feed->cursor_text;
    }
}


static void
ngx_http_crest_jobs_hub_read_done(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_uint_t                  i;
    ngx_http_crest_jobs_hub_t  *hub;

    hub = &ngx_http_crest_jobs_hub;
    hub->xread = NULL;

    if (hub->feeds == NULL || hub->conn == NULL) {
        return;
    }

    for (i = 0; i < hub->conf->queues->nelts; i++) {
        hub->feeds[i].in_read = 0;
    }

    switch (status) {

    case NGX_CREST_OK:
        hub->reported = 0;

        /* nil: the block time passed, or CLIENT UNBLOCK */
        if (reply->type == REDIS_REPLY_ARRAY) {
            ngx_http_crest_jobs_hub_dispatch(reply);
            ngx_http_crest_jobs_hub_end_marked();
        }

        ngx_http_crest_jobs_hub_read();
        return;

    case NGX_CREST_FAILED:
        if (!hub->reported) {
            hub->reported = 1;
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "crest jobs: XREAD of the events streams refused: "
                          "%*s", (size_t) reply->len, reply->str);
        }

        ngx_add_timer(&hub->retry, 1000);
        return;

    default:
        /* the connection is lost and comes back: UP reads again */
        hub->up = 0;
        return;
    }
}


/* The XREAD of every followed feed, if none is in flight. */
static void
ngx_http_crest_jobs_hub_read(void)
{
    u_char                       *p;
    ngx_uint_t                    i, n, argc;
    ngx_http_crest_jobs_hub_t    *hub;
    ngx_http_crest_jobs_feed_t   *feed;
    ngx_http_crest_jobs_queue_t  *q;

    hub = &ngx_http_crest_jobs_hub;

    if (hub->feeds == NULL || hub->conn == NULL || !hub->up || hub->xread
        || hub->retry.timer_set)
    {
        return;
    }

    q = hub->conf->queues->elts;
    n = hub->conf->queues->nelts;

    argc = 6;

    for (i = 0; i < n; i++) {
        if (hub->feeds[i].state == NGX_CREST_JOBS_FEED_FOLLOWED) {
            hub->argv[argc] = (const char *) q[i].events.data;
            hub->argvlen[argc++] = q[i].events.len;
        }
    }

    if (argc == 6) {
        return;
    }

    for (i = 0; i < n; i++) {
        feed = &hub->feeds[i];

        if (feed->state == NGX_CREST_JOBS_FEED_FOLLOWED) {
            hub->argv[argc] = (const char *) feed->cursor_text;
            hub->argvlen[argc++] = feed->cursor_len;
            feed->in_read = 1;
        }
    }

    p = hub->block_text;

    hub->argv[0] = "XREAD";
    hub->argvlen[0] = 5;
    hub->argv[1] = "BLOCK";
    hub->argvlen[1] = 5;
    hub->argv[2] = (const char *) p;
    hub->argvlen[2] = ngx_sprintf(p, "%M", hub->conf->block) - p;
    hub->argv[3] = "COUNT";
    hub->argvlen[3] = 5;
    hub->argv[4] = NGX_CREST_JOBS_XREAD_COUNT;
    hub->argvlen[4] = sizeof(NGX_CREST_JOBS_XREAD_COUNT) - 1;
    hub->argv[5] = "STREAMS";
    hub->argvlen[5] = 7;

    /* the deadline: the block time and a round trip */
    hub->xread = ngx_crest_redis_dedicated_command(hub->conn, argc, hub->argv,
                                             hub->argvlen,
                                             hub->conf->block + 2000,
                                             ngx_http_crest_jobs_hub_read_done,
                                             NULL, ngx_cycle->log);

    if (hub->xread == NULL) {
        for (i = 0; i < n; i++) {
            hub->feeds[i].in_read = 0;
        }

        ngx_add_timer(&hub->retry, 1000);
    }
}


static void
ngx_http_crest_jobs_hub_retry(ngx_event_t *ev)
{
    ngx_http_crest_jobs_hub_read();
}


static void
ngx_http_crest_jobs_hub_client_id(void *data, ngx_crest_status_e status,
    redisReply *reply)
{
    ngx_http_crest_jobs_hub_t  *hub;

    hub = &ngx_http_crest_jobs_hub;

    if (hub->feeds && status == NGX_CREST_OK
        && reply->type == REDIS_REPLY_INTEGER)
    {
        hub->client_id.data = hub->client_id_buf;
        hub->client_id.len = ngx_sprintf(hub->client_id_buf, "%L",
                                         (int64_t) reply->integer)
                             - hub->client_id_buf;
    }
}


/*
 * A feed joined while an XREAD blocks without it: CLIENT UNBLOCK ends that
 * XREAD now (as if its time had passed), and the next one includes it.
 * Should it arrive before the XREAD blocks, the block time is the bound.
 */
static void
ngx_http_crest_jobs_hub_unblock(ngx_http_crest_jobs_feed_t *feed)
{
    size_t                      argvlen[3];
    const char                 *argv[3];
    ngx_http_crest_jobs_hub_t  *hub;

    hub = &ngx_http_crest_jobs_hub;

    if (hub->xread == NULL || feed->in_read || hub->client_id.len == 0)
    {
        return;
    }

    argv[0] = "CLIENT";
    argvlen[0] = 6;
    argv[1] = "UNBLOCK";
    argvlen[1] = 7;
    argv[2] = (const char *) hub->client_id.data;
    argvlen[2] = hub->client_id.len;

    (void) ngx_crest_redis_command(3, argv, argvlen, 0, NULL, NULL,
                                   ngx_cycle->log);
}


static void
ngx_http_crest_jobs_hub_end_all(void)
{
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_crest_jobs_ctx_t    *ctx;
    ngx_http_crest_jobs_watch_t  *watch;

    sentinel = ngx_http_crest_jobs_hub.watches.sentinel;
    root = ngx_http_crest_jobs_hub.watches.root;

    if (root == sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&ngx_http_crest_jobs_hub.watches, node))
    {
        watch = (ngx_http_crest_jobs_watch_t *) node;

        for (q = ngx_queue_head(&watch->subs);
             q != ngx_queue_sentinel(&watch->subs);
             q = ngx_queue_next(q))
        {
            ctx = ngx_queue_data(q, ngx_http_crest_jobs_ctx_t, link);
            ngx_http_crest_jobs_mark_ending(ctx, NGX_OK);
        }
    }

    ngx_http_crest_jobs_hub_end_marked();
}


static void
ngx_http_crest_jobs_hub_event(void *data,
    ngx_crest_redis_dedicated_event_e event)
{
    size_t                      argvlen[2];
    const char                 *argv[2];
    ngx_http_crest_jobs_hub_t  *hub;

    hub = &ngx_http_crest_jobs_hub;

    if (event == NGX_CREST_REDIS_DEDICATED_CLOSED) {
        /*
         * nginx is shutting down: every stream ends now, cleanly, rather
         * than be cut when the worker exits.  Clients reconnect to the
         * workers that carry on.
         */
        hub->conn = NULL;
        hub->up = 0;

        if (!ngx_terminate && hub->feeds) {
            ngx_http_crest_jobs_hub_end_all();
        }

        return;
    }

    hub->up = 1;
    hub->client_id.len = 0;

    argv[0] = "CLIENT";
    argvlen[0] = 6;
    argv[1] = "ID";
    argvlen[1] = 2;

    /* ahead of the XREAD on the same connection */
    (void) ngx_crest_redis_dedicated_command(hub->conn, 2, argv, argvlen, 0,
                                             ngx_http_crest_jobs_hub_client_id,
                                             NULL, ngx_cycle->log);

    ngx_http_crest_jobs_hub_read();
}


/* process */

static ngx_int_t
ngx_http_crest_jobs_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i, n;
    ngx_http_crest_jobs_hub_t        *hub;
    ngx_http_crest_jobs_main_conf_t  *jmcf;

    hub = &ngx_http_crest_jobs_hub;
    ngx_memzero(hub, sizeof(ngx_http_crest_jobs_hub_t));

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    jmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_crest_jobs_module);
    if (jmcf == NULL) {
        return NGX_OK;
    }

    n = jmcf->queues->nelts;

    hub->conf = jmcf;
    hub->feeds = ngx_pcalloc(cycle->pool,
                             n * sizeof(ngx_http_crest_jobs_feed_t));
    hub->argv = ngx_palloc(cycle->pool, (6 + 2 * n) * sizeof(char *));
    hub->argvlen = ngx_palloc(cycle->pool, (6 + 2 * n) * sizeof(size_t));

    if (hub->feeds == NULL || hub->argv == NULL || hub->argvlen == NULL) {
        hub->feeds = NULL;
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        ngx_queue_init(&hub->feeds[i].waiting);
    }

    ngx_rbtree_init(&hub->watches, &hub->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&hub->ending);

    hub->retry.handler = ngx_http_crest_jobs_hub_retry;
    hub->retry.log = cycle->log;
    hub->retry.cancelable = 1;

    crest_buf_init(&hub->text, &crest_malloc_allocator);

    return NGX_OK;
}


static void
ngx_http_crest_jobs_exit_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_node_t            *node;
    ngx_http_crest_jobs_hub_t    *hub;
    ngx_http_crest_jobs_watch_t  *watch;

    hub = &ngx_http_crest_jobs_hub;

    if (hub->feeds == NULL) {
        return;
    }

    if (hub->retry.timer_set) {
        ngx_del_timer(&hub->retry);
    }

    if (hub->conn) {
        ngx_crest_redis_dedicated_close(hub->conn);
        hub->conn = NULL;
    }

    /* streams left by a fast shutdown: their requests are abandoned */
    while (hub->watches.root != hub->watches.sentinel) {
        node = ngx_rbtree_min(hub->watches.root, hub->watches.sentinel);
        watch = (ngx_http_crest_jobs_watch_t *) node;
        ngx_rbtree_delete(&hub->watches, node);
        ngx_free(watch);
    }

    crest_buf_free(&hub->text);
    hub->feeds = NULL;
}


/* POST /api/jobs/ping */

static void
ngx_http_crest_jobs_ping_enqueued(ngx_http_request_t *r, ngx_crest_job_t *job,
    void *data)
{
    ngx_crest_finalize(r, ngx_crest_job_send(r, job));
}


static ngx_int_t
ngx_http_crest_jobs_ping_body(ngx_http_request_t *r, json_t *body)
{
    char                       *dump;
    json_t                     *v, *data;
    ngx_int_t                   rc;
    ngx_str_t                   queue, name, text;
    const char                 *key;
    json_int_t                  n;
    ngx_crest_job_opts_t        opts;
    ngx_http_crest_jobs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_jobs_module);

    ngx_str_set(&queue, "ping");
    ngx_str_set(&name, "ping");

    if (ngx_http_crest_jobs_queue_find(ctx->jmcf, queue.data, queue.len, NULL)
        == NULL)
    {
        return ngx_crest_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    CREST_ERR_SERVICE_UNAVAILABLE,
                                    "no ping queue is configured "
                                    "(crest_jobs_queues)", NULL);
    }

    ngx_memzero(&opts, sizeof(ngx_crest_job_opts_t));
    opts.attempts = 1;

    /* what the ping processor reads (see workers/ping.c), and attempts */
    json_object_foreach(body, key, v) {

        if (ngx_strcmp(key, "data") == 0 || ngx_strcmp(key, "progress") == 0) {
            continue;
        }

        if (ngx_strcmp(key, "delayMs") == 0) {
            n = json_is_integer(v) ? json_integer_value(v) : -1;

            if (n < 0 || n > NGX_CREST_JOBS_PING_DELAY) {
                return ngx_crest_send_invalid(r, "delayMs",
                                       "delayMs must be an integer from 0 to "
                                       ngx_value(NGX_CREST_JOBS_PING_DELAY));
            }

            continue;
        }

        if (ngx_strcmp(key, "fail") == 0 || ngx_strcmp(key, "log") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0
                || json_string_length(v) > NGX_CREST_JOBS_TEXT_MAX
                || !crest_is_clean_text(json_string_value(v),
                                        json_string_length(v)))
            {
                return ngx_crest_send_invalid(r, key,
                                              "fail and log must be 1 to 1000 "
                                              "characters of text");
            }

            continue;
        }

        if (ngx_strcmp(key, "failTimes") == 0) {
            n = json_is_integer(v) ? json_integer_value(v) : -1;

            if (n < 0 || n > NGX_CREST_JOB_ATTEMPTS_MAX) {
                return ngx_crest_send_invalid(r, key,
                                              "failTimes must be an integer "
                                              "from 0 to 100");
            }

            continue;
        }

        if (ngx_strcmp(key, "attempts") == 0) {
            n = json_is_integer(v) ? json_integer_value(v) : -1;

            if (n < 1 || n > 10) {
                return ngx_crest_send_invalid(r, key,
                                              "attempts must be an integer "
                                              "from 1 to 10");
            }

            opts.attempts = n;
            continue;
        }

        return ngx_crest_send_invalid(r, key,
                                      "unknown field: ping takes data, "
                                      "progress, delayMs, fail, failTimes, "
                                      "log and attempts");
    }

    /* the job's data: the body but attempts, which is an option */
    data = json_deep_copy(body);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) json_object_del(data, "attempts");

    dump = json_dumps(data, JSON_COMPACT);
    json_decref(data);

    if (dump == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = ngx_strlen(dump);
    text.data = ngx_http_crest_jobs_copy(r->pool, dump, text.len);
    free(dump);

    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (text.len > NGX_CREST_JOB_DATA_MAX) {
        return ngx_crest_send_invalid(r, "data",
                                      "a ping's data is at most 512k");
    }

    rc = ngx_crest_job_enqueue(r, &queue, &name, &text, &opts,
                               ngx_http_crest_jobs_ping_enqueued, ctx);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


/* routing */

/* The path segment that ends at *end, and *end moved before its '/'. */
static ngx_uint_t
ngx_http_crest_jobs_segment(u_char *start, u_char **end, ngx_str_t *seg)
{
    u_char  *p;

    p = *end;

    if (p == start) {
        ngx_str_null(seg);
        return 0;
    }

    while (p > start && p[-1] != '/') {
        p--;
    }

    seg->data = p;
    seg->len = *end - p;

    *end = (p > start) ? p - 1 : p;

    return 1;
}


static ngx_int_t
ngx_http_crest_jobs_handler(ngx_http_request_t *r)
{
    u_char                     *end;
    ngx_int_t                   rc;
    ngx_str_t                   seg[3], *id, *action;
    ngx_uint_t                  methods;
    const char                 *values[2];
    ngx_http_crest_jobs_ctx_t  *ctx;
    ngx_crest_pg_handler_pt     handler;

    enum { LIST, PING, GET, CANCEL, EVENTS } what;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_jobs_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->identity = ngx_crest_auth_identity(r);
    ctx->jmcf = ngx_http_get_module_main_conf(r, ngx_http_crest_jobs_module);
    ngx_http_set_ctx(r, ctx, ngx_http_crest_jobs_module);

    if (ctx->identity == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                    CREST_ERR_UNAUTHORIZED,
                                    "authentication required", NULL);
    }

    /* .../jobs, .../jobs/ping, .../jobs/{id}, .../jobs/{id}/{action} */
    end = r->uri.data + r->uri.len;

    if (end > r->uri.data && end[-1] == '/') {
        end--;
    }

    ngx_http_crest_jobs_segment(r->uri.data, &end, &seg[2]);
    ngx_http_crest_jobs_segment(r->uri.data, &end, &seg[1]);
    ngx_http_crest_jobs_segment(r->uri.data, &end, &seg[0]);

    id = NULL;
    action = NULL;

    if (ngx_http_crest_jobs_is(&seg[2], "jobs")) {
        what = LIST;
        methods = NGX_HTTP_GET|NGX_HTTP_HEAD;

    } else if (ngx_http_crest_jobs_is(&seg[1], "jobs")) {
        if (ngx_http_crest_jobs_is(&seg[2], "ping")) {
            what = PING;
            methods = NGX_HTTP_POST;

        } else {
            what = GET;
            methods = NGX_HTTP_GET|NGX_HTTP_HEAD;
            id = &seg[2];
        }

    } else if (ngx_http_crest_jobs_is(&seg[0], "jobs")
               && (ngx_http_crest_jobs_is(&seg[2], "cancel")
                   || ngx_http_crest_jobs_is(&seg[2], "events")))
    {
        id = &seg[1];
        action = &seg[2];

        if (action->data[0] == 'c') {
            what = CANCEL;
            methods = NGX_HTTP_POST;

        } else {
            what = EVENTS;
            methods = NGX_HTTP_GET;
        }

    } else {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_NOT_FOUND, CREST_ERR_NOT_FOUND,
                                    "no such endpoint", NULL);
    }

    if (!(r->method & methods)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    if (what == PING) {
        return ngx_crest_read_json_body(r, 1, ngx_http_crest_jobs_ping_body);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (what == LIST) {
        return ngx_http_crest_jobs_list(ctx);
    }

    /* a malformed id is a job that does not exist */
    if (!crest_is_uuid((const char *) id->data, id->len)) {
        return ngx_http_crest_jobs_not_found(r);
    }

    ngx_memcpy(ctx->id, id->data, 36);
    ctx->id[36] = '\0';

    values[0] = (const char *) ctx->id;
    values[1] = (const char *) ctx->identity->user_id.data;

    if (what == CANCEL) {
        /*
         * The previous status and the cancelled row in one statement.  The
         * row lock makes it wait for the outbox reconciler, which holds
         * pending rows while it adds them, so a job it is adding is seen
         * queued and removed.  Completed and failed jobs stay as they are.
         */
        rc = ngx_crest_pg_request(r,
            "WITH cur AS (SELECT id AS cur_id, status AS prev FROM jobs "
            "WHERE id = $1::uuid AND user_id = $2::uuid FOR UPDATE), "
            "upd AS (UPDATE jobs j SET status = 'cancelled', "
            "finished_at = coalesce(j.finished_at, now()) FROM cur "
            "WHERE j.id = cur.cur_id AND cur.prev IN "
            "('pending', 'queued', 'active', 'cancelled') RETURNING j.*) "
            "SELECT cur.prev, " NGX_CREST_JOB_COLUMNS " "
            "FROM cur LEFT JOIN upd ON true",
            2, values, ngx_http_crest_jobs_cancelled, ctx);

    } else {
        handler = (what == GET) ? ngx_http_crest_jobs_got
                                : ngx_http_crest_jobs_sse_got;

        rc = ngx_crest_pg_request(r,
            "SELECT " NGX_CREST_JOB_COLUMNS " FROM jobs "
            "WHERE id = $1::uuid AND user_id = $2::uuid",
            2, values, handler, ctx);
    }

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}
