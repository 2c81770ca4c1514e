/*
 * ngx_http_crest_api_module: what every Crest endpoint shares.
 *
 * Responses in the envelope, JSON request bodies (content type, size and
 * syntax checked before an endpoint sees them), and JSON error pages for the
 * errors nginx itself produces under /api/ (crest_error_page), so a client
 * never gets an HTML page from the API.
 */

#include "ngx_crest.h"
#include "crest_json.h"


typedef struct {
    ngx_int_t                 request_id_index;
} ngx_http_crest_api_main_conf_t;


typedef struct {
    ngx_crest_json_body_pt    handler;
    ngx_uint_t                require_object;
} ngx_http_crest_api_ctx_t;


static ngx_int_t ngx_http_crest_api_init(ngx_conf_t *cf);
static void *ngx_http_crest_api_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_crest_error_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_crest_echo(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_crest_error_page_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_echo_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_crest_echo_body(ngx_http_request_t *r, json_t *body);
static void ngx_http_crest_json_body_read(ngx_http_request_t *r);
static void ngx_http_crest_json_cleanup(void *data);


static ngx_command_t  ngx_http_crest_api_commands[] = {

    { ngx_string("crest_error_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_crest_error_page,
      0,
      0,
      NULL },

    { ngx_string("crest_echo"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_crest_echo,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_crest_api_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_crest_api_init,               /* postconfiguration */

    ngx_http_crest_api_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_crest_api_module = {
    NGX_MODULE_V1,
    &ngx_http_crest_api_module_ctx,        /* module context */
    ngx_http_crest_api_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_crest_json_type = ngx_string(NGX_CREST_JSON_TYPE);


static void *
ngx_http_crest_api_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_crest_api_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_crest_api_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    amcf->request_id_index = NGX_ERROR;

    return amcf;
}


static ngx_int_t
ngx_http_crest_api_init(ngx_conf_t *cf)
{
    ngx_str_t                        name = ngx_string("request_id");
    ngx_http_crest_api_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_crest_api_module);

    amcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (amcf->request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* allocation from a request pool for shared/ code */

static void *
ngx_crest_pool_alloc(void *ctx, size_t size)
{
    return ngx_palloc(ctx, size);
}


static void
ngx_crest_pool_free(void *ctx, void *p)
{
    /* gives back only large blocks; the rest goes with the pool */
    (void) ngx_pfree(ctx, p);
}


void
ngx_crest_pool_allocator(crest_allocator_t *a, ngx_pool_t *pool)
{
    a->alloc = ngx_crest_pool_alloc;
    a->free = ngx_crest_pool_free;
    a->ctx = pool;
}


void
ngx_crest_meta(ngx_http_request_t *r, crest_meta_t *meta)
{
    ngx_time_t                      *tp;
    ngx_http_variable_value_t       *vv;
    ngx_http_crest_api_main_conf_t  *amcf;

    ngx_memzero(meta, sizeof(crest_meta_t));

    tp = ngx_timeofday();
    meta->now_ms = (int64_t) tp->sec * 1000 + tp->msec;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_crest_api_module);

    vv = ngx_http_get_indexed_variable(r, amcf->request_id_index);

    if (vv && !vv->not_found && vv->len) {
        meta->request_id = (const char *) vv->data;
        meta->request_id_len = vv->len;
    }
}


ngx_int_t
ngx_crest_send_json(ngx_http_request_t *r, ngx_uint_t status,
    crest_buf_t *body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    static u_char  oom[] = "{\"success\":false,\"error\":{\"code\":"
                           "\"INTERNAL_SERVER_ERROR\",\"message\":"
                           "\"out of memory\"}}";

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_http_crest_json_type;
    r->headers_out.content_type_len = ngx_http_crest_json_type.len;
    r->headers_out.content_type_lowcase = NULL;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (crest_buf_failed(body) || body->data == NULL) {
        r->headers_out.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        b->pos = oom;
        b->last = oom + sizeof(oom) - 1;

    } else {
        b->pos = (u_char *) body->data;
        b->last = (u_char *) body->data + body->len;
    }

    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.content_length_n = b->last - b->pos;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_crest_send_ok(ngx_http_request_t *r, ngx_uint_t status, crest_buf_t *data,
    ngx_str_t *meta_extra)
{
    crest_buf_t        b;
    crest_meta_t       meta;
    crest_allocator_t  a;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&b, &a);
    ngx_crest_meta(r, &meta);

    if (meta_extra) {
        meta.extra = (const char *) meta_extra->data;
        meta.extra_len = meta_extra->len;
    }

    if (data && crest_buf_failed(data)) {
        b.failed = 1;

    } else {
        crest_envelope_ok(&b, data ? data->data : NULL, data ? data->len : 0,
                          &meta);
    }

    return ngx_crest_send_json(r, status, &b);
}


ngx_int_t
ngx_crest_send_error(ngx_http_request_t *r, ngx_uint_t status,
    crest_error_code_t code, const char *message, crest_buf_t *details)
{
    return ngx_crest_send_error_meta(r, status, code, message, details, NULL);
}


ngx_int_t
ngx_crest_send_error_meta(ngx_http_request_t *r, ngx_uint_t status,
    crest_error_code_t code, const char *message, crest_buf_t *details,
    ngx_str_t *meta_extra)
{
    crest_buf_t        b;
    crest_meta_t       meta;
    crest_allocator_t  a;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&b, &a);
    ngx_crest_meta(r, &meta);

    if (meta_extra) {
        meta.extra = (const char *) meta_extra->data;
        meta.extra_len = meta_extra->len;
    }

    if (status == 0) {
        status = crest_error_code_status(code);
    }

    crest_envelope_error(&b, code, message, ngx_strlen(message),
                         details && !crest_buf_failed(details)
                         ? details->data : NULL,
                         details ? details->len : 0, &meta);

    return ngx_crest_send_json(r, status, &b);
}

ngx_int_t
ngx_crest_send_invalid(ngx_http_request_t *r, const char *field,
    const char *message)
{
    crest_jw_t         w;
    crest_buf_t        details;
    crest_allocator_t  a;

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&details, &a);
    crest_jw_init(&w, &details);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "field");
    crest_jw_str(&w, field);
    crest_jw_obj_end(&w);

    return ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                CREST_ERR_VALIDATION_ERROR, message, &details);
}


ngx_int_t
ngx_crest_arg(ngx_http_request_t *r, const char *name, ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    value->data = dst;
    src = raw.data;
    ngx_unescape_uri(&dst, &src, raw.len, NGX_UNESCAPE_URI);
    value->len = dst - value->data;
    *dst = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_crest_arg_number(ngx_http_request_t *r, const char *name,
    ngx_uint_t dflt, ngx_uint_t max, ngx_uint_t *out)
{
    ngx_int_t  rc, n;
    ngx_str_t  v;

    rc = ngx_crest_arg(r, name, &v);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        *out = dflt;
        return NGX_OK;
    }

    /* 6 digits: no overflow, and more than any page or limit needs */
    n = (v.len && v.len <= 6) ? ngx_atoi(v.data, v.len) : NGX_ERROR;

    if (n == NGX_ERROR || n < 1 || (ngx_uint_t) n > max) {
        return NGX_DECLINED;
    }

    *out = n;

    return NGX_OK;
}

ngx_int_t
ngx_crest_page_args(ngx_http_request_t *r, ngx_uint_t *page,
    ngx_uint_t *limit, ngx_int_t *rc)
{
    ngx_int_t  n;

    n = ngx_crest_arg_number(r, "page", 1, NGX_CREST_PAGE_MAX, page);

    if (n == NGX_OK) {
        n = ngx_crest_arg_number(r, "limit", NGX_CREST_LIMIT_DEFAULT,
                                 NGX_CREST_LIMIT_MAX, limit);
        if (n == NGX_OK) {
            return NGX_OK;
        }

        *rc = (n == NGX_ERROR)
              ? NGX_HTTP_INTERNAL_SERVER_ERROR
              : ngx_crest_send_invalid(r, "limit",
                                       "limit must be an integer from 1 to "
                                       ngx_value(NGX_CREST_LIMIT_MAX));
        return NGX_DECLINED;
    }

    *rc = (n == NGX_ERROR)
          ? NGX_HTTP_INTERNAL_SERVER_ERROR
          : ngx_crest_send_invalid(r, "page",
                                   "page must be an integer from 1 to "
                                   ngx_value(NGX_CREST_PAGE_MAX));
    return NGX_DECLINED;
}

ngx_int_t
ngx_crest_page_sql(ngx_pool_t *pool, ngx_uint_t page, ngx_uint_t limit,
    const char **limit_text, const char **offset_text)
{
    u_char  *p, *q;

    p = ngx_pnalloc(pool, 2 * NGX_INT_T_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    q = ngx_sprintf(p, "%ui%Z", limit);
    ngx_sprintf(q, "%ui%Z", (page - 1) * limit);

    *limit_text = (const char *) p;
    *offset_text = (const char *) q;

    return NGX_OK;
}


void
ngx_crest_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    /* finalizing may free r: keep its connection for the posted requests */
    c = r->connection;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


const char *
ngx_crest_status_text(ngx_crest_status_e status)
{
    switch (status) {
    case NGX_CREST_OK:
        return "ok";
    case NGX_CREST_FAILED:
        return "failed";
    case NGX_CREST_TIMEOUT:
        return "timed out";
    default:
        return "unavailable";
    }
}


ngx_int_t
ngx_crest_read_conf_file(ngx_conf_t *cf, ngx_str_t *name, size_t max,
    ngx_str_t *content)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = *name;
    file.log = cf->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || (size_t) ngx_file_size(&fi) > max)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a regular file of at most %uz bytes",
                           name, max);
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    content->data = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (content->data == NULL) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, content->data, ngx_file_size(&fi), 0);
    ngx_close_file(fd);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    while (n > 0
           && (content->data[n - 1] == '\n' || content->data[n - 1] == '\r'))
    {
        n--;
    }

    content->len = n;
    content->data[n] = '\0';

    return NGX_OK;
}


/* JSON request bodies */

/*
 * application/json, or any application/...+json, with parameters; a charset
 * other than UTF-8 is refused, since JSON text is UTF-8 (RFC 8259).
 */
static ngx_uint_t
ngx_http_crest_is_json_type(ngx_str_t *v)
{
    u_char  *p, *end, *semi, *sub;

    p = v->data;
    end = v->data + v->len;

    semi = ngx_strlchr(p, end, ';');
    if (semi == NULL) {
        semi = end;
    }

    while (semi > p && (semi[-1] == ' ' || semi[-1] == '\t')) {
        semi--;
    }

    if ((size_t) (semi - p) == sizeof("application/json") - 1
        && ngx_strncasecmp(p, (u_char *) "application/json",
                           sizeof("application/json") - 1) == 0)
    {
        goto params;
    }

    sub = p + sizeof("application/") - 1;

    if (semi - p > (ssize_t) (sizeof("application/+json") - 1)
        && ngx_strncasecmp(p, (u_char *) "application/",
                           sizeof("application/") - 1) == 0
        && ngx_strncasecmp(semi - 5, (u_char *) "+json", 5) == 0
        && ngx_strlchr(sub, semi, '/') == NULL)
    {
        goto params;
    }

    return 0;

params:

    p = ngx_strlcasestrn(semi, end, (u_char *) "charset=", 8 - 1);

    if (p == NULL) {
        return 1;
    }

    p += 8;

    if (p < end && *p == '"') {
        p++;
    }

    return (end - p >= 5 && ngx_strncasecmp(p, (u_char *) "utf-8", 5) == 0)
           || (end - p >= 4 && ngx_strncasecmp(p, (u_char *) "utf8", 4) == 0);
}


ngx_int_t
ngx_crest_read_json_body(ngx_http_request_t *r, ngx_uint_t require_object,
    ngx_crest_json_body_pt handler)
{
    ngx_int_t                  rc;
    ngx_http_crest_api_ctx_t  *ctx;

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "a JSON request body is required", NULL);
    }

    if (r->headers_in.content_type == NULL
        || !ngx_http_crest_is_json_type(&r->headers_in.content_type->value))
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_crest_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "Content-Type must be application/json",
                                    NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_crest_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->handler = handler;
    ctx->require_object = require_object;
    ngx_http_set_ctx(r, ctx, ngx_http_crest_api_module);

    rc = ngx_http_read_client_request_body(r, ngx_http_crest_json_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* 413 and the like: nginx's page, turned to JSON by error_page */
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_crest_json_body_read(ngx_http_request_t *r)
{
    size_t                     len;
    u_char                    *data, *p;
    ssize_t                    n;
    json_t                    *body;
    crest_buf_t                details;
    ngx_chain_t               *cl;
    json_error_t               err;
    ngx_pool_cleanup_t        *cln;
    crest_allocator_t          a;
    ngx_http_crest_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_crest_api_module);

    if (r->request_body == NULL || ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (r->request_body->temp_file) {
        len = (size_t) r->request_body->temp_file->file.offset;
        data = ngx_pnalloc(r->pool, len + 1);
        if (data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        n = ngx_read_file(&r->request_body->temp_file->file, data, len, 0);
        if (n != (ssize_t) len) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

    } else {
        len = 0;
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += cl->buf->last - cl->buf->pos;
        }

        data = ngx_pnalloc(r->pool, len + 1);
        if (data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        p = data;
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    body = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES, &err);

    if (body == NULL) {
        ngx_crest_pool_allocator(&a, r->pool);
        crest_buf_init(&details, &a);
        crest_buf_appendf(&details, "{\"line\":%d,\"column\":%d,"
                          "\"position\":%d,\"reason\":", err.line, err.column,
                          err.position);
        crest_json_escape(&details, err.text, ngx_strlen(err.text));
        crest_buf_appendc(&details, '}');

        ngx_http_finalize_request(r,
            ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                 CREST_ERR_VALIDATION_ERROR,
                                 "the request body is not valid JSON",
                                 &details));
        return;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(body);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_crest_json_cleanup;
    cln->data = body;

    if (ctx->require_object && !json_is_object(body)) {
        ngx_http_finalize_request(r,
            ngx_crest_send_error(r, NGX_HTTP_BAD_REQUEST,
                                 CREST_ERR_VALIDATION_ERROR,
                                 "the request body must be a JSON object",
                                 NULL));
        return;
    }

    ngx_http_finalize_request(r, ctx->handler(r, body));
}


static void
ngx_http_crest_json_cleanup(void *data)
{
    json_decref(data);
}


/* crest_error_page: nginx's own errors as the envelope */

static char *
ngx_http_crest_error_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_error_page_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_error_page_handler(ngx_http_request_t *r)
{
    ngx_uint_t  status;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    /* error_page without "=" keeps the original status here */
    status = r->err_status ? r->err_status : NGX_HTTP_NOT_FOUND;

    return ngx_crest_send_error(r, status, crest_error_code_for_status(status),
                                crest_status_message(status), NULL);
}


/* crest_echo: answers a JSON body back; checks the body path end to end */

static char *
ngx_http_crest_echo(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_crest_echo_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_crest_echo_handler(ngx_http_request_t *r)
{
    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))) {
        return ngx_crest_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    CREST_ERR_VALIDATION_ERROR,
                                    "method not allowed", NULL);
    }

    return ngx_crest_read_json_body(r, 0, ngx_http_crest_echo_body);
}


static ngx_int_t
ngx_http_crest_echo_body(ngx_http_request_t *r, json_t *body)
{
    char               *s;
    crest_buf_t         data;
    crest_allocator_t   a;

    s = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_crest_pool_allocator(&a, r->pool);
    crest_buf_init(&data, &a);
    crest_buf_appends(&data, s);
    free(s);

    return ngx_crest_send_ok(r, NGX_HTTP_OK, &data, NULL);
}
