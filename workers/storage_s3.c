/*
 * The S3 storage backend (AWS S3, R2, MinIO and other S3-compatible
 * servers): objects under bucket/key, requests signed with SigV4 by libcurl
 * itself (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3").
 *
 * Bodies are sent from memory (one PUT below the multipart threshold, one
 * part at a time above it) so that each request carries the SHA-256 of its
 * payload in x-amz-content-sha256 (the server checks it against what it
 * received) and so that a retry resends the same bytes without seeking.
 * Query strings are written in SigV4's canonical form (sorted, every
 * parameter with '=', values percent-encoded) so that the string libcurl
 * signs and the one the server rebuilds agree whatever libcurl version
 * normalizes or not.
 *
 * Failures: a transport error, 5xx or 429 is retried with exponential
 * backoff; anything else is final.  A multipart upload that fails is
 * aborted so that no parts are left billed.  Secrets never appear in an
 * error message.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "crest_buf.h"
#include "crest_xml.h"
#include "storage.h"


#define S3_BODY_MAX     (1 << 20)       /* an answer's body we keep */
#define S3_MAX_PARTS    10000
#define S3_MIN_PART     1024

#define ERR(...)  do { if (errlen) snprintf(err, errlen, __VA_ARGS__); \
                       return -1; } while (0)

typedef struct {
    crest_storage_t   base;
    crest_storage_t  *local;            /* scratch directories */
    CURL             *curl;
    char              base_url[1200];   /* up to the key, no trailing '/' */
    char              sigv4[128];
    char              key_id[256];
    char              secret[256];
    int64_t           threshold;
    int64_t           part_size;
    long              timeout_ms;
    long              connect_timeout_ms;
    unsigned          retries;
} crest_storage_s3_t;

typedef struct {
    long         status;
    crest_buf_t  body;
    char         etag[256];
    int64_t      length;                /* Content-Length, -1 if none */
} s3_resp_t;


static pthread_once_t  s3_once = PTHREAD_ONCE_INIT;


static void
s3_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}


static void
s3_sha256_hex(const char *p, size_t n, char hex[65])
{
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned int   len = 0, i;

    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    for (i = 0; i < len && i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    hex[64] = '\0';
}


/* SigV4's URI encoding of a query value: only unreserved characters stay. */
static void
s3_query_escape(const char *s, char *out, size_t len)
{
    static const char  hex[] = "0123456789ABCDEF";
    size_t             o = 0;
    unsigned char      c;

    for ( ; *s && o + 4 < len; s++) {
        c = (unsigned char) *s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~')
        {
            out[o++] = (char) c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}


static size_t
s3_body_cb(char *p, size_t size, size_t n, void *ud)
{
    s3_resp_t  *r = ud;

    if (r->body.len + size * n > S3_BODY_MAX) {
        return size * n;                /* keep the start; errors are short */
    }
    crest_buf_append(&r->body, p, size * n);

    return size * n;
}


static size_t
s3_header_cb(char *p, size_t size, size_t n, void *ud)
{
    s3_resp_t  *r = ud;
    size_t      len = size * n, v;

    if (len > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        for (v = 5; v < len && (p[v] == ' ' || p[v] == '\t'); v++) { }
        while (len > v && (p[len - 1] == '\r' || p[len - 1] == '\n'
                           || p[len - 1] == ' '))
        {
            len--;
        }
        if (len - v < sizeof(r->etag)) {
            memcpy(r->etag, p + v, len - v);
            r->etag[len - v] = '\0';
        }
    }

    return size * n;
}


static void
s3_sleep_ms(long ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}


/* "HTTP 403 AccessDenied: Access Denied" from an S3 error answer. */
static void
s3_describe(const s3_resp_t *r, char *out, size_t len)
{
    char  code[64], msg[256];

    if (crest_xml_text(r->body.data ? r->body.data : "", r->body.len, "Code",
                       code, sizeof(code)) < 0)
    {
        code[0] = '\0';
    }
    if (crest_xml_text(r->body.data ? r->body.data : "", r->body.len,
                       "Message", msg, sizeof(msg)) < 0)
    {
        msg[0] = '\0';
    }

    snprintf(out, len, "HTTP %ld%s%s%s%s", r->status, code[0] ? " " : "",
             code, msg[0] ? ": " : "", msg);
}


/*
 * One S3 request, retried on transport errors, 5xx and 429.  method is
 * HEAD, GET, PUT, POST or DELETE; query "" or "?a=b" in canonical form;
 * body (may be NULL for none) is sent from memory.  0 with r filled once an
 * answer came that is not worth retrying (any status), -1 with err if none
 * did.  r->body must be initialized by the caller and is reset per try.
 */
static int
s3_request(crest_storage_s3_t *s, const char *method, const char *key,
    const char *query, const char *body, size_t body_len, s3_resp_t *r,
    char *err, size_t errlen)
{
    struct curl_slist  *h = NULL;
    char                url[2400], hdr[128], hash[65];
    CURLcode            cc;
    unsigned            attempt;
    long                delay = 200;
    curl_off_t          cl;
    int                 has_body = strcmp(method, "PUT") == 0
                                   || strcmp(method, "POST") == 0;

    if ((size_t) snprintf(url, sizeof(url), "%s/%s%s", s->base_url, key,
                          query) >= sizeof(url))
    {
        ERR("S3 %s: URL too long", method);
    }

    s3_sha256_hex(has_body && body ? body : "", has_body ? body_len : 0,
                  hash);
    snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", hash);
    h = curl_slist_append(h, hdr);
    /* libcurl 7.88 signs a header that the list removes ("Name:") as if
     * it were sent empty, which S3 would not verify: replace, never
     * remove; its own Expect: 100-continue is added unsigned, as S3 allows */
    if (has_body && h) {
        h = curl_slist_append(h, "Content-Type: application/octet-stream");
    }
    if (h == NULL) {
        ERR("S3 %s: out of memory", method);
    }

    for (attempt = 0; ; attempt++) {
        curl_easy_reset(s->curl);
        r->status = 0;
        r->etag[0] = '\0';
        r->length = -1;
        r->body.len = 0;

        curl_easy_setopt(s->curl, CURLOPT_URL, url);
        curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(s->curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS,
                         s->connect_timeout_ms);
        curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, s->timeout_ms);
        curl_easy_setopt(s->curl, CURLOPT_AWS_SIGV4, s->sigv4);
        curl_easy_setopt(s->curl, CURLOPT_USERNAME, s->key_id);
        curl_easy_setopt(s->curl, CURLOPT_PASSWORD, s->secret);
        curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, s3_body_cb);
        curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(s->curl, CURLOPT_HEADERFUNCTION, s3_header_cb);
        curl_easy_setopt(s->curl, CURLOPT_HEADERDATA, r);

        if (strcmp(method, "HEAD") == 0) {
            curl_easy_setopt(s->curl, CURLOPT_NOBODY, 1L);
        } else if (has_body) {
            curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) body_len);
            curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(s->curl, CURLOPT_CUSTOMREQUEST, method);
        } else if (strcmp(method, "GET") != 0) {
            curl_easy_setopt(s->curl, CURLOPT_CUSTOMREQUEST, method);
        }

        cc = curl_easy_perform(s->curl);

        if (cc == CURLE_OK) {
            curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &r->status);
            if (curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
                                  &cl) == CURLE_OK)
            {
                r->length = (int64_t) cl;
            }
            crest_buf_append(&r->body, "", 1);      /* NUL-terminated */
            r->body.len--;
            if (r->status < 500 && r->status != 429) {
                break;
            }
        }

        if (attempt >= s->retries) {
            if (cc != CURLE_OK) {
                curl_slist_free_all(h);
                ERR("S3 %s %s: %s", method, key, curl_easy_strerror(cc));
            }
            break;                          /* the last 5xx is the answer */
        }

        s3_sleep_ms(delay);
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }

    curl_slist_free_all(h);

    if (r->body.failed) {
        ERR("S3 %s %s: out of memory", method, key);
    }

    return 0;
}


/* Reads exactly n bytes of fd into buf; 0 or -1. */
static int
s3_read_full(int fd, char *buf, size_t n)
{
    ssize_t  got;
    size_t   off = 0;

    while (off < n) {
        got = read(fd, buf + off, n - off);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            if (got == 0) {
                errno = EIO;                /* shorter than it was */
            }
            return -1;
        }
        off += (size_t) got;
    }

    return 0;
}


static void
s3_xml_escape_append(crest_buf_t *b, const char *s)
{
    for ( ; *s; s++) {
        switch (*s) {
        case '&': crest_buf_appends(b, "&amp;"); break;
        case '<': crest_buf_appends(b, "&lt;"); break;
        case '>': crest_buf_appends(b, "&gt;"); break;
        case '"': crest_buf_appends(b, "&quot;"); break;
        default:  crest_buf_append(b, s, 1);
        }
    }
}


static void
s3_abort(crest_storage_s3_t *s, const char *key, const char *upload_q,
    s3_resp_t *r)
{
    char  q[1700], e[256];

    snprintf(q, sizeof(q), "?uploadId=%s", upload_q);
    /* best effort: a bucket lifecycle rule is the backstop */
    s3_request(s, "DELETE", key, q, NULL, 0, r, e, sizeof(e));
}


static int
s3_multipart(crest_storage_s3_t *s, const char *key, int fd, int64_t size,
    char *buf, int64_t part, s3_resp_t *r, char *err, size_t errlen)
{
    char          upload[512], upload_q[1600], q[1700], why[400];
    crest_buf_t   xml;
    int64_t       off, n;
    unsigned      num;
    int           rc = -1;

    if (s3_request(s, "POST", key, "?uploads=", "", 0, r, err, errlen) != 0)
    {
        return -1;
    }
    if (r->status != 200
        || crest_xml_text(r->body.data, r->body.len, "UploadId", upload,
                          sizeof(upload)) <= 0)
    {
        s3_describe(r, why, sizeof(why));
        ERR("S3 CreateMultipartUpload %s: %s", key,
            r->status == 200 ? "no UploadId in the answer" : why);
    }
    s3_query_escape(upload, upload_q, sizeof(upload_q));

    crest_buf_init(&xml, &crest_malloc_allocator);
    crest_buf_appends(&xml, "<CompleteMultipartUpload xmlns=\"http://s3."
                      "amazonaws.com/doc/2006-03-01/\">");

    for (off = 0, num = 1; off < size; off += n, num++) {
        n = size - off < part ? size - off : part;
        if (s3_read_full(fd, buf, (size_t) n) != 0) {
            snprintf(err, errlen, "S3 upload %s: read: %s", key,
                     strerror(errno));
            goto abort;
        }
        snprintf(q, sizeof(q), "?partNumber=%u&uploadId=%s", num, upload_q);
        if (s3_request(s, "PUT", key, q, buf, (size_t) n, r, err, errlen)
            != 0)
        {
            goto abort;
        }
        if (r->status != 200 || r->etag[0] == '\0') {
            s3_describe(r, why, sizeof(why));
            snprintf(err, errlen, "S3 UploadPart %u of %s: %s", num, key,
                     r->status == 200 ? "no ETag in the answer" : why);
            goto abort;
        }
        crest_buf_appendf(&xml, "<Part><PartNumber>%u</PartNumber><ETag>",
                          num);
        s3_xml_escape_append(&xml, r->etag);
        crest_buf_appends(&xml, "</ETag></Part>");
    }
    crest_buf_appends(&xml, "</CompleteMultipartUpload>");
    if (xml.failed) {
        snprintf(err, errlen, "S3 upload %s: out of memory", key);
        goto abort;
    }

    snprintf(q, sizeof(q), "?uploadId=%s", upload_q);
    if (s3_request(s, "POST", key, q, xml.data, xml.len, r, err, errlen)
        != 0)
    {
        goto abort;
    }
    /* CompleteMultipartUpload may answer 200 with an <Error> body */
    if (r->status != 200
        || crest_xml_text(r->body.data, r->body.len, "Code", why,
                          sizeof(why)) != -1)
    {
        s3_describe(r, why, sizeof(why));
        snprintf(err, errlen, "S3 CompleteMultipartUpload %s: %s", key, why);
        goto abort;
    }

    rc = 0;
    goto done;

abort:
    s3_abort(s, key, upload_q, r);

done:
    crest_buf_free(&xml);
    return rc;
}


static int
s3_put_file(crest_storage_t *st, const char *key, const char *src,
    char *err, size_t errlen)
{
    crest_storage_s3_t  *s = (crest_storage_s3_t *) st;
    struct stat          sb;
    s3_resp_t            r;
    char                *buf = NULL, why[400];
    int64_t              part;
    int                  fd, rc = -1;

    if (!crest_storage_key_valid(key)) {
        ERR("invalid storage key \"%s\"", key);
    }

    fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        ERR("cannot read %s: %s", src, strerror(e));
    }

    /* S3 allows at most 10000 parts: bigger files get bigger parts */
    part = s->part_size;
    if (sb.st_size / part >= S3_MAX_PARTS) {
        part = sb.st_size / (S3_MAX_PARTS - 1) + 1;
    }

    buf = malloc((size_t) (sb.st_size > s->threshold
                           ? part : sb.st_size > 0 ? sb.st_size : 1));
    if (buf == NULL) {
        close(fd);
        ERR("S3 upload %s: out of memory", key);
    }

    memset(&r, 0, sizeof(r));
    crest_buf_init(&r.body, &crest_malloc_allocator);

    if (sb.st_size > s->threshold) {
        rc = s3_multipart(s, key, fd, sb.st_size, buf, part, &r, err,
                          errlen);

    } else if (s3_read_full(fd, buf, (size_t) sb.st_size) != 0) {
        snprintf(err, errlen, "S3 upload %s: read: %s", key, strerror(errno));

    } else if (s3_request(s, "PUT", key, "", buf, (size_t) sb.st_size, &r,
                          err, errlen) == 0)
    {
        if (r.status == 200) {
            rc = 0;
        } else {
            s3_describe(&r, why, sizeof(why));
            snprintf(err, errlen, "S3 PUT %s: %s", key, why);
        }
    }

    crest_buf_free(&r.body);
    free(buf);
    close(fd);

    if (rc == 0) {
        unlink(src);                        /* put_file consumes src */
    }

    return rc;
}


static int
s3_stat(crest_storage_t *st, const char *key, int64_t *size, char *err,
    size_t errlen)
{
    crest_storage_s3_t  *s = (crest_storage_s3_t *) st;
    s3_resp_t            r;
    int                  rc = -1;

    if (!crest_storage_key_valid(key)) {
        ERR("invalid storage key \"%s\"", key);
    }

    memset(&r, 0, sizeof(r));
    crest_buf_init(&r.body, &crest_malloc_allocator);

    if (s3_request(s, "HEAD", key, "", NULL, 0, &r, err, errlen) == 0) {
        if (r.status == 200 && r.length >= 0) {
            *size = r.length;
            rc = 0;
        } else if (r.status == 404) {
            rc = 1;
        } else {
            snprintf(err, errlen, "S3 HEAD %s: HTTP %ld", key, r.status);
        }
    }

    crest_buf_free(&r.body);
    return rc;
}


static int
s3_remove(crest_storage_t *st, const char *key, char *err, size_t errlen)
{
    crest_storage_s3_t  *s = (crest_storage_s3_t *) st;
    s3_resp_t            r;
    char                 why[400];
    int                  rc = -1;

    if (!crest_storage_key_valid(key)) {
        ERR("invalid storage key \"%s\"", key);
    }

    memset(&r, 0, sizeof(r));
    crest_buf_init(&r.body, &crest_malloc_allocator);

    if (s3_request(s, "DELETE", key, "", NULL, 0, &r, err, errlen) == 0) {
        if (r.status == 204 || r.status == 200 || r.status == 404) {
            rc = 0;
        } else {
            s3_describe(&r, why, sizeof(why));
            snprintf(err, errlen, "S3 DELETE %s: %s", key, why);
        }
    }

    crest_buf_free(&r.body);
    return rc;
}


static int
s3_scratch(crest_storage_t *st, const char *name, char *dir, size_t dirlen,
    char *err, size_t errlen)
{
    crest_storage_s3_t  *s = (crest_storage_s3_t *) st;

    return s->local->scratch(s->local, name, dir, dirlen, err, errlen);
}


static void
s3_close(crest_storage_t *st)
{
    crest_storage_s3_t  *s = (crest_storage_s3_t *) st;

    if (s->curl) {
        curl_easy_cleanup(s->curl);
    }
    if (s->local) {
        s->local->close(s->local);
    }
    explicit_bzero(s->secret, sizeof(s->secret));
    free(s);
}


/* NAME, else the first line of the file NAME_FILE names; 0, 1 if neither
 * is set, -1 on error. */
static int
s3_env_secret(const char *name, char *out, size_t len, char *err,
    size_t errlen)
{
    char         fname[128];
    const char  *v = getenv(name), *path;
    FILE        *f;
    size_t       n;

    if (v && *v) {
        if (strlen(v) >= len) {
            ERR("%s: too long", name);
        }
        snprintf(out, len, "%s", v);
        return 0;
    }

    snprintf(fname, sizeof(fname), "%s_FILE", name);
    path = getenv(fname);
    if (path == NULL || *path == '\0') {
        return 1;
    }

    f = fopen(path, "re");
    if (f == NULL) {
        ERR("%s: cannot open %s: %s", fname, path, strerror(errno));
    }
    if (fgets(out, (int) len, f) == NULL) {
        fclose(f);
        ERR("%s: %s is empty", fname, path);
    }
    fclose(f);

    n = strcspn(out, "\r\n");
    out[n] = '\0';
    if (n == 0 || n >= len - 1) {
        explicit_bzero(out, len);
        ERR("%s: %s holds no usable value", fname, path);
    }

    return 0;
}


static int
s3_env_size(const char *name, int64_t def, int64_t min, int64_t *out,
    char *err, size_t errlen)
{
    const char  *v = getenv(name);
    char        *end;
    long long    n;

    if (v == NULL || *v == '\0') {
        *out = def;
        return 0;
    }
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || *end != '\0' || n < min) {
        ERR("%s: a whole number of at least %lld", name, (long long) min);
    }
    *out = n;

    return 0;
}


crest_storage_t *
crest_storage_s3_open_env(char *err, size_t errlen)
{
    crest_storage_s3_t  *s;
    const char          *endpoint, *bucket, *region, *ps, *scratch, *p;
    const char          *host;
    int64_t              v;
    size_t               n, i;
    int                  path_style, rc;

    pthread_once(&s3_once, s3_global_init);

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    region = getenv("CREST_S3_REGION");
    region = region && *region ? region : "us-east-1";
    bucket = getenv("CREST_S3_BUCKET");
    endpoint = getenv("CREST_S3_ENDPOINT");
    ps = getenv("CREST_S3_PATH_STYLE");
    path_style = !(ps && (strcmp(ps, "0") == 0 || strcmp(ps, "false") == 0));

    for (p = region; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '-'))
        {
            snprintf(err, errlen, "CREST_S3_REGION: letters, digits, '-'");
            goto failed;
        }
    }

    n = bucket ? strlen(bucket) : 0;
    if (n == 0 || n > 63) {
        snprintf(err, errlen, "CREST_S3_BUCKET: required (1-63 characters)");
        goto failed;
    }
    for (i = 0; i < n; i++) {
        if (!((bucket[i] >= 'a' && bucket[i] <= 'z')
              || (bucket[i] >= '0' && bucket[i] <= '9')
              || bucket[i] == '-' || bucket[i] == '.'))
        {
            snprintf(err, errlen, "CREST_S3_BUCKET: lower-case letters, "
                     "digits, '-' and '.'");
            goto failed;
        }
    }

    if (endpoint == NULL || *endpoint == '\0') {
        snprintf(s->base_url, sizeof(s->base_url),
                 "https://s3.%s.amazonaws.com", region);
    } else {
        n = strlen(endpoint);
        while (n && endpoint[n - 1] == '/') {
            n--;
        }
        if (n >= 512 || (strncmp(endpoint, "http://", 7) != 0
                         && strncmp(endpoint, "https://", 8) != 0))
        {
            snprintf(err, errlen, "CREST_S3_ENDPOINT: an http(s):// URL");
            goto failed;
        }
        snprintf(s->base_url, sizeof(s->base_url), "%.*s", (int) n, endpoint);
    }

    if (path_style) {
        n = strlen(s->base_url);
        snprintf(s->base_url + n, sizeof(s->base_url) - n, "/%s", bucket);
    } else {
        /* virtual-hosted: scheme://bucket.host[:port][/path] */
        char  tmp[sizeof(s->base_url)];

        host = strstr(s->base_url, "://") + 3;
        snprintf(tmp, sizeof(tmp), "%.*s%s.%s",
                 (int) (host - s->base_url), s->base_url, bucket, host);
        memcpy(s->base_url, tmp, sizeof(tmp));
    }

    snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", region);

    rc = s3_env_secret("CREST_S3_ACCESS_KEY_ID", s->key_id,
                       sizeof(s->key_id), err, errlen);
    if (rc == 0) {
        rc = s3_env_secret("CREST_S3_SECRET_ACCESS_KEY", s->secret,
                           sizeof(s->secret), err, errlen);
    }
    if (rc == 1) {
        snprintf(err, errlen, "CREST_S3_ACCESS_KEY_ID and "
                 "CREST_S3_SECRET_ACCESS_KEY (or their _FILE variants) are "
                 "required");
    }
    if (rc != 0) {
        goto failed;
    }

    if (s3_env_size("CREST_S3_MULTIPART_THRESHOLD", 16 << 20, 0,
                    &s->threshold, err, errlen) != 0
        || s3_env_size("CREST_S3_PART_SIZE", 8 << 20, S3_MIN_PART,
                       &s->part_size, err, errlen) != 0
        || s3_env_size("CREST_S3_TIMEOUT_MS", 300000, 1000, &v, err,
                       errlen) != 0)
    {
        goto failed;
    }
    s->timeout_ms = (long) v;
    if (s3_env_size("CREST_S3_RETRIES", 3, 0, &v, err, errlen) != 0) {
        goto failed;
    }
    s->retries = v > 10 ? 10 : (unsigned) v;
    s->connect_timeout_ms = 10000;
    if (s->threshold > (int64_t) 1 << 30 || s->part_size > (int64_t) 1 << 30)
    {
        snprintf(err, errlen, "CREST_S3_MULTIPART_THRESHOLD and "
                 "CREST_S3_PART_SIZE: at most 1 GiB (parts are held in "
                 "memory)");
        goto failed;
    }

    scratch = getenv("CREST_STORAGE_SCRATCH");
    s->local = crest_storage_local_open(scratch && *scratch ? scratch
                                        : "var/tmp", err, errlen);
    if (s->local == NULL) {
        goto failed;
    }

    s->curl = curl_easy_init();
    if (s->curl == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        goto failed;
    }

    s->base.kind = "s3";
    s->base.put_file = s3_put_file;
    s->base.stat = s3_stat;
    s->base.remove = s3_remove;
    s->base.scratch = s3_scratch;
    s->base.close = s3_close;

    return &s->base;

failed:
    s3_close(&s->base);
    return NULL;
}
