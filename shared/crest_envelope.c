#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crest_envelope.h"
#include "crest_json.h"


static const struct {
    const char  *name;
    int          status;
} crest_error_codes[CREST_ERR_COUNT] = {
    { "UNAUTHORIZED", 401 },
    { "FORBIDDEN", 403 },
    { "NOT_FOUND", 404 },
    { "VALIDATION_ERROR", 400 },
    { "CONFLICT", 409 },
    { "RATE_LIMITED", 429 },
    { "USAGE_EXCEEDED", 403 },
    { "EXTERNAL_SERVICE_ERROR", 502 },
    { "SERVICE_UNAVAILABLE", 503 },
    { "INTERNAL_SERVER_ERROR", 500 },
};


const char *
crest_error_code_name(crest_error_code_t code)
{
    if ((unsigned) code >= CREST_ERR_COUNT) {
        code = CREST_ERR_INTERNAL_SERVER_ERROR;
    }

    return crest_error_codes[code].name;
}


int
crest_error_code_status(crest_error_code_t code)
{
    if ((unsigned) code >= CREST_ERR_COUNT) {
        code = CREST_ERR_INTERNAL_SERVER_ERROR;
    }

    return crest_error_codes[code].status;
}


crest_error_code_t
crest_error_code_for_status(int status)
{
    switch (status) {
    case 401:
        return CREST_ERR_UNAUTHORIZED;
    case 403:
        return CREST_ERR_FORBIDDEN;
    case 404:
    case 410:
        return CREST_ERR_NOT_FOUND;
    case 409:
        return CREST_ERR_CONFLICT;
    case 429:
        return CREST_ERR_RATE_LIMITED;
    case 502:
        return CREST_ERR_EXTERNAL_SERVICE_ERROR;
    case 503:
    case 504:
        return CREST_ERR_SERVICE_UNAVAILABLE;
    }

    if (status >= 400 && status < 500) {
        return CREST_ERR_VALIDATION_ERROR;
    }

    return CREST_ERR_INTERNAL_SERVER_ERROR;
}


const char *
crest_status_message(int status)
{
    switch (status) {
    case 400: return "bad request";
    case 401: return "authentication required";
    case 403: return "forbidden";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 408: return "request timed out";
    case 409: return "conflict";
    case 411: return "length required";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 415: return "unsupported media type";
    case 416: return "range not satisfiable";
    case 429: return "too many requests";
    case 494: return "request header too large";
    case 495:
    case 496:
    case 497: return "TLS client certificate problem";
    case 500: return "internal server error";
    case 501: return "not implemented";
    case 502: return "bad gateway";
    case 503: return "service unavailable";
    case 504: return "gateway timed out";
    }

    return status < 500 ? "bad request" : "internal server error";
}


/* 9999-12-31T23:59:59.999Z, the last instant four year digits can show */
#define CREST_ISO8601_MAX_MS  INT64_C(253402300799999)


static void
crest_put_digits(char *p, unsigned v, int width)
{
    while (width--) {
        p[width] = (char) ('0' + v % 10);
        v /= 10;
    }
}


void
crest_iso8601_ms(char out[25], int64_t ms)
{
    time_t     sec;
    struct tm  tm;

    /*
     * Clamping keeps the output exactly 24 characters and gmtime_r in range:
     * a negative or absurd clock must not yield "...:00.-01Z" or read an
     * unset struct tm.
     */
    if (ms < 0) {
        ms = 0;

    } else if (ms > CREST_ISO8601_MAX_MS) {
        ms = CREST_ISO8601_MAX_MS;
    }

    sec = (time_t) (ms / 1000);

    if (gmtime_r(&sec, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }

    /* digits by hand: snprintf here trips -Wformat-truncation */
    memcpy(out, "0000-00-00T00:00:00.000Z", 25);
    crest_put_digits(out, (unsigned) (tm.tm_year + 1900), 4);
    crest_put_digits(out + 5, (unsigned) (tm.tm_mon + 1), 2);
    crest_put_digits(out + 8, (unsigned) tm.tm_mday, 2);
    crest_put_digits(out + 11, (unsigned) tm.tm_hour, 2);
    crest_put_digits(out + 14, (unsigned) tm.tm_min, 2);
    crest_put_digits(out + 17, (unsigned) tm.tm_sec, 2);
    crest_put_digits(out + 20, (unsigned) (ms % 1000), 3);
}


static void
crest_envelope_meta(crest_jw_t *w, const crest_meta_t *meta)
{
    char  ts[25];

    crest_jw_key(w, "meta");
    crest_jw_obj_begin(w);

    crest_iso8601_ms(ts, meta->now_ms);
    crest_jw_key(w, "timestamp");
    crest_jw_str(w, ts);

    if (meta->request_id && meta->request_id_len) {
        crest_jw_key(w, "requestId");
        crest_jw_strn(w, meta->request_id, meta->request_id_len);
    }

    if (meta->extra && meta->extra_len) {
        /* already "k":v pairs: splice them in after a separator */
        crest_buf_appendc(w->b, ',');
        crest_buf_append(w->b, meta->extra, meta->extra_len);
    }

    crest_jw_obj_end(w);
}


void
crest_envelope_ok(crest_buf_t *b, const char *data_json, size_t data_len,
    const crest_meta_t *meta)
{
    crest_jw_t  w;

    crest_jw_init(&w, b);
    crest_jw_obj_begin(&w);

    crest_jw_key(&w, "success");
    crest_jw_bool(&w, 1);

    crest_jw_key(&w, "data");

    if (data_json && data_len) {
        crest_jw_raw(&w, data_json, data_len);

    } else {
        crest_jw_null(&w);
    }

    crest_envelope_meta(&w, meta);
    crest_jw_obj_end(&w);
}


void
crest_envelope_error(crest_buf_t *b, crest_error_code_t code,
    const char *message, size_t message_len, const char *details_json,
    size_t details_len, const crest_meta_t *meta)
{
    crest_jw_t  w;

    crest_jw_init(&w, b);
    crest_jw_obj_begin(&w);

    crest_jw_key(&w, "success");
    crest_jw_bool(&w, 0);

    crest_jw_key(&w, "error");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "code");
    crest_jw_str(&w, crest_error_code_name(code));
    crest_jw_key(&w, "message");
    crest_jw_strn(&w, message, message_len);

    if (details_json && details_len) {
        crest_jw_key(&w, "details");
        crest_jw_raw(&w, details_json, details_len);
    }

    crest_jw_obj_end(&w);

    crest_envelope_meta(&w, meta);
    crest_jw_obj_end(&w);
}


void
crest_envelope_pagination(crest_jw_t *w, int64_t page, int64_t limit,
    int64_t total)
{
    int64_t  pages;

    if (total < 0) {
        total = 0;
    }

    if (limit < 1) {
        limit = 1;
    }

    pages = total / limit + (total % limit != 0);

    crest_jw_key(w, "pagination");
    crest_jw_obj_begin(w);
    crest_jw_key(w, "page");
    crest_jw_int(w, page);
    crest_jw_key(w, "limit");
    crest_jw_int(w, limit);
    crest_jw_key(w, "total");
    crest_jw_int(w, total);
    crest_jw_key(w, "totalPages");
    crest_jw_int(w, pages);
    crest_jw_key(w, "hasMore");
    crest_jw_bool(w, page < pages);
    crest_jw_obj_end(w);
}
