#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "crest_envelope.h"
#include "tap.h"


static json_t *
parse(const crest_buf_t *b)
{
    json_t        *j;
    json_error_t   e;

    if (b->data == NULL) {
        diag("nothing to parse");
        return NULL;
    }

    j = json_loadb(b->data, b->len, 0, &e);

    if (j == NULL) {
        diag("jansson: %s in <%s>", e.text, b->data);
    }

    return j;
}


static const char *
jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}


static void
test_codes(void)
{
    static const struct {
        crest_error_code_t  code;
        const char         *name;
        int                 status;
    } want[] = {
        { CREST_ERR_UNAUTHORIZED, "UNAUTHORIZED", 401 },
        { CREST_ERR_FORBIDDEN, "FORBIDDEN", 403 },
        { CREST_ERR_NOT_FOUND, "NOT_FOUND", 404 },
        { CREST_ERR_VALIDATION_ERROR, "VALIDATION_ERROR", 400 },
        { CREST_ERR_CONFLICT, "CONFLICT", 409 },
        { CREST_ERR_RATE_LIMITED, "RATE_LIMITED", 429 },
        { CREST_ERR_USAGE_EXCEEDED, "USAGE_EXCEEDED", 403 },
        { CREST_ERR_EXTERNAL_SERVICE_ERROR, "EXTERNAL_SERVICE_ERROR", 502 },
        { CREST_ERR_SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", 503 },
        { CREST_ERR_INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", 500 },
    };
    size_t  i;

    is_int(sizeof(want) / sizeof(want[0]), CREST_ERR_COUNT,
           "every error code is covered here");

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        is_str(crest_error_code_name(want[i].code), want[i].name,
               "name of code %d", (int) want[i].code);
        is_int(crest_error_code_status(want[i].code), want[i].status,
               "status of %s", want[i].name);
    }

    is_str(crest_error_code_name(CREST_ERR_COUNT), "INTERNAL_SERVER_ERROR",
           "out-of-range code names INTERNAL_SERVER_ERROR");
    is_int(crest_error_code_status((crest_error_code_t) 1000), 500,
           "out-of-range code answers 500");
    is_str(crest_error_code_name((crest_error_code_t) -1),
           "INTERNAL_SERVER_ERROR", "negative code too");
}


static void
test_for_status(void)
{
    static const struct {
        int                 status;
        crest_error_code_t  code;
    } want[] = {
        { 400, CREST_ERR_VALIDATION_ERROR },
        { 401, CREST_ERR_UNAUTHORIZED },
        { 403, CREST_ERR_FORBIDDEN },
        { 404, CREST_ERR_NOT_FOUND },
        { 405, CREST_ERR_VALIDATION_ERROR },
        { 409, CREST_ERR_CONFLICT },
        { 410, CREST_ERR_NOT_FOUND },
        { 413, CREST_ERR_VALIDATION_ERROR },
        { 422, CREST_ERR_VALIDATION_ERROR },
        { 429, CREST_ERR_RATE_LIMITED },
        { 499, CREST_ERR_VALIDATION_ERROR },
        { 500, CREST_ERR_INTERNAL_SERVER_ERROR },
        { 501, CREST_ERR_INTERNAL_SERVER_ERROR },
        { 502, CREST_ERR_EXTERNAL_SERVICE_ERROR },
        { 503, CREST_ERR_SERVICE_UNAVAILABLE },
        { 504, CREST_ERR_SERVICE_UNAVAILABLE },
        { 507, CREST_ERR_INTERNAL_SERVER_ERROR },
        { 200, CREST_ERR_INTERNAL_SERVER_ERROR },
        { 0, CREST_ERR_INTERNAL_SERVER_ERROR },
    };
    size_t  i;

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        is_str(crest_error_code_name(crest_error_code_for_status(
                   want[i].status)),
               crest_error_code_name(want[i].code),
               "status %d maps to %s", want[i].status,
               crest_error_code_name(want[i].code));
    }

    is_str(crest_status_message(404), "not found", "message for 404");
    is_str(crest_status_message(413), "request body too large",
           "message for 413");
    is_str(crest_status_message(496), "TLS client certificate problem",
           "message for 496");
    is_str(crest_status_message(418), "bad request", "unknown 4xx");
    is_str(crest_status_message(599), "internal server error", "unknown 5xx");
}


static void
test_iso8601(void)
{
    static const struct {
        int64_t      ms;
        const char  *want;
    } want[] = {
        { 0, "1970-01-01T00:00:00.000Z" },
        { 1, "1970-01-01T00:00:00.001Z" },
        { 999, "1970-01-01T00:00:00.999Z" },
        { 1700000000123LL, "2023-11-14T22:13:20.123Z" },
        { 951782400000LL, "2000-02-29T00:00:00.000Z" },
        { 4102444799999LL, "2099-12-31T23:59:59.999Z" },
        { 253402300799999LL, "9999-12-31T23:59:59.999Z" },
        /* out of range clamps instead of printing garbage */
        { -1, "1970-01-01T00:00:00.000Z" },
        { INT64_MIN, "1970-01-01T00:00:00.000Z" },
        { 253402300800000LL, "9999-12-31T23:59:59.999Z" },
        { INT64_MAX, "9999-12-31T23:59:59.999Z" },
    };
    char    out[25];
    size_t  i;

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        memset(out, 'x', sizeof(out));
        crest_iso8601_ms(out, want[i].ms);
        is_str(out, want[i].want, "iso8601 of %lld", (long long) want[i].ms);
    }
}


static void
test_ok(void)
{
    crest_buf_t   b;
    crest_meta_t  meta;
    json_t       *j, *m, *d;

    crest_buf_init(&b, &crest_malloc_allocator);

    memset(&meta, 0, sizeof(meta));
    meta.now_ms = 1700000000123LL;
    meta.request_id = "req-\"1\"xyz";
    meta.request_id_len = 7;
    meta.extra = "\"page\":2,\"more\":true";
    meta.extra_len = strlen(meta.extra);

    crest_envelope_ok(&b, "{\"id\":7,\"tags\":[\"a\"]}", 21, &meta);
    ok(!crest_buf_failed(&b), "ok envelope built");

    j = parse(&b);
    ok(j && json_is_object(j), "ok envelope parses");
    ok(json_is_true(json_object_get(j, "success")), "success is true");
    ok(json_object_get(j, "error") == NULL, "no error member");
    is_int(json_object_size(j), 3, "exactly success, data, meta");

    d = json_object_get(j, "data");
    is_int(json_integer_value(json_object_get(d, "id")), 7, "data.id");
    is_str(json_string_value(json_array_get(json_object_get(d, "tags"), 0)),
           "a", "data.tags[0]");

    m = json_object_get(j, "meta");
    is_str(jstr(m, "timestamp"), "2023-11-14T22:13:20.123Z", "meta.timestamp");
    is_str(jstr(m, "requestId"), "req-\"1\"", "meta.requestId honours len");
    is_int(json_integer_value(json_object_get(m, "page")), 2,
           "meta extra spliced: page");
    ok(json_is_true(json_object_get(m, "more")), "meta extra spliced: more");
    is_int(json_object_size(m), 4, "meta has 4 members");
    json_decref(j);

    /* no data, no request id, no extra */
    crest_buf_reset(&b);
    memset(&meta, 0, sizeof(meta));
    crest_envelope_ok(&b, NULL, 0, &meta);

    j = parse(&b);
    ok(j && json_is_null(json_object_get(j, "data")), "NULL data is null");
    m = json_object_get(j, "meta");
    is_int(json_object_size(m), 1, "bare meta has only timestamp");
    is_str(jstr(m, "timestamp"), "1970-01-01T00:00:00.000Z", "epoch");
    json_decref(j);

    crest_buf_reset(&b);
    meta.request_id = "abc";
    meta.request_id_len = 0;
    meta.extra = "\"x\":1";
    meta.extra_len = 0;
    crest_envelope_ok(&b, "[]", 2, &meta);
    j = parse(&b);
    ok(j && json_object_size(json_object_get(j, "meta")) == 1,
       "zero lengths leave requestId and extra out");
    ok(json_is_array(json_object_get(j, "data")), "data []");
    json_decref(j);

    crest_buf_free(&b);
}


static void
test_error(void)
{
    crest_buf_t   b;
    crest_meta_t  meta;
    json_t       *j, *e;
    const char   *msg;
    int           code;

    crest_buf_init(&b, &crest_malloc_allocator);

    memset(&meta, 0, sizeof(meta));
    meta.now_ms = 1000;
    meta.request_id = "r1";
    meta.request_id_len = 2;

    msg = "bad \"email\"\n\xff";
    crest_envelope_error(&b, CREST_ERR_VALIDATION_ERROR, msg, strlen(msg),
                         "{\"field\":\"email\"}", 17, &meta);

    j = parse(&b);
    ok(j != NULL, "error envelope parses");
    ok(json_is_false(json_object_get(j, "success")), "success is false");
    ok(json_object_get(j, "data") == NULL, "no data member");
    is_int(json_object_size(j), 3, "exactly success, error, meta");

    e = json_object_get(j, "error");
    is_str(jstr(e, "code"), "VALIDATION_ERROR", "error.code");
    is_str(jstr(e, "message"), "bad \"email\"\n\xef\xbf\xbd",
           "error.message escaped, invalid UTF-8 replaced");
    is_str(jstr(json_object_get(e, "details"), "field"), "email",
           "error.details");
    is_str(jstr(json_object_get(j, "meta"), "requestId"), "r1",
           "meta.requestId");
    is_str(jstr(json_object_get(j, "meta"), "timestamp"),
           "1970-01-01T00:00:01.000Z", "meta.timestamp");
    json_decref(j);

    for (code = 0; code < CREST_ERR_COUNT; code++) {
        crest_buf_reset(&b);
        crest_envelope_error(&b, (crest_error_code_t) code, "m", 1, NULL, 0,
                             &meta);
        j = parse(&b);
        e = json_object_get(j, "error");
        ok(j && json_object_get(e, "details") == NULL
           && json_object_size(e) == 2
           && strcmp(jstr(e, "code"),
                     crest_error_code_name((crest_error_code_t) code)) == 0,
           "error envelope for %s without details",
           crest_error_code_name((crest_error_code_t) code));
        json_decref(j);
    }

    crest_buf_reset(&b);
    crest_envelope_error(&b, CREST_ERR_NOT_FOUND, NULL, 0, NULL, 0, &meta);
    j = parse(&b);
    is_str(jstr(json_object_get(j, "error"), "message"), "",
           "NULL message is an empty string");
    json_decref(j);

    crest_buf_free(&b);
}


static void
test_pagination(void)
{
    char    want[200];
    size_t  i;
    struct {
        int64_t      page, limit, total;
        const char  *want;
    } cases[] = {
        { 1, 20, 0, "{\"page\":1,\"limit\":20,\"total\":0,\"totalPages\":0,"
                    "\"hasMore\":false}" },
        { 1, 20, 20, "{\"page\":1,\"limit\":20,\"total\":20,\"totalPages\":1,"
                     "\"hasMore\":false}" },
        { 1, 20, 21, "{\"page\":1,\"limit\":20,\"total\":21,\"totalPages\":2,"
                     "\"hasMore\":true}" },
        { 2, 20, 21, "{\"page\":2,\"limit\":20,\"total\":21,\"totalPages\":2,"
                     "\"hasMore\":false}" },
        { 9, 10, 25, "{\"page\":9,\"limit\":10,\"total\":25,\"totalPages\":3,"
                     "\"hasMore\":false}" },
        { 1, 10, -1, "{\"page\":1,\"limit\":10,\"total\":0,\"totalPages\":0,"
                     "\"hasMore\":false}" },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        crest_buf_t  b;
        crest_jw_t   w;

        crest_buf_init(&b, &crest_malloc_allocator);
        crest_jw_init(&w, &b);
        crest_jw_obj_begin(&w);
        crest_envelope_pagination(&w, cases[i].page, cases[i].limit,
                                  cases[i].total);
        crest_jw_obj_end(&w);
        crest_buf_appendc(&b, '\0');

        snprintf(want, sizeof(want), "{\"pagination\":%s}", cases[i].want);

        ok(!crest_buf_failed(&b), "pagination %zu built", i);
        is_str((const char *) b.data, want,
               "page %lld, limit %lld, total %lld", (long long) cases[i].page,
               (long long) cases[i].limit, (long long) cases[i].total);
        crest_buf_free(&b);
    }
}


int
main(void)
{
    test_codes();
    test_for_status();
    test_iso8601();
    test_ok();
    test_error();
    test_pagination();

    return done_testing();
}
