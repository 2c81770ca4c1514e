#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "crest_json.h"
#include "tap.h"


#define FFFD  "\xef\xbf\xbd"


static json_t *
parse(const crest_buf_t *b)
{
    json_t        *j;
    json_error_t   e;

    if (b->data == NULL) {
        diag("nothing to parse");
        return NULL;
    }

    j = json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

    if (j == NULL) {
        diag("jansson: %s in <%s>", e.text, b->data);
    }

    return j;
}


/* Escapes in[0..n) and checks that it decodes to want[0..wn). */
static void
escape_is(const char *in, size_t n, const char *want, size_t wn,
    const char *name)
{
    crest_buf_t  b;
    json_t      *j;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_json_escape(&b, in, n);

    j = parse(&b);

    ok(j && json_is_string(j) && json_string_length(j) == wn
       && memcmp(json_string_value(j), want, wn) == 0,
       "escape: %s", name);

    json_decref(j);
    crest_buf_free(&b);
}


/* Escapes s and compares the encoded text itself. */
static void
escape_text_is(const char *s, size_t n, const char *want, const char *name)
{
    crest_buf_t  b;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_json_escape(&b, s, n);
    is_str(b.data, want, "escape text: %s", name);
    crest_buf_free(&b);
}


static void
test_nesting(void)
{
    crest_buf_t  b;
    crest_jw_t   w;
    json_t      *j, *arr;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_jw_init(&w, &b);

    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "a");
    crest_jw_int(&w, 1);
    crest_jw_key(&w, "b");
    crest_jw_arr_begin(&w);
    crest_jw_int(&w, 1);
    crest_jw_str(&w, "two");
    crest_jw_obj_begin(&w);
    crest_jw_key(&w, "c");
    crest_jw_null(&w);
    crest_jw_obj_end(&w);
    crest_jw_arr_begin(&w);
    crest_jw_arr_end(&w);
    crest_jw_arr_end(&w);
    crest_jw_key(&w, "d");
    crest_jw_obj_begin(&w);
    crest_jw_obj_end(&w);
    crest_jw_key(&w, "e");
    crest_jw_bool(&w, 1);
    crest_jw_key(&w, "f");
    crest_jw_bool(&w, 0);
    crest_jw_key(&w, "g");
    crest_jw_str(&w, NULL);
    crest_jw_key(&w, "h");
    crest_jw_raw(&w, "{\"x\":[1]}", 9);
    crest_jw_obj_end(&w);

    is_str(b.data,
           "{\"a\":1,\"b\":[1,\"two\",{\"c\":null},[]],\"d\":{},"
           "\"e\":true,\"f\":false,\"g\":null,\"h\":{\"x\":[1]}}",
           "commas and colons in nested containers");
    ok(!crest_buf_failed(&b) && w.depth == 0, "writer balanced");

    j = parse(&b);
    ok(j && json_is_object(j), "parses as an object");
    is_int(json_integer_value(json_object_get(j, "a")), 1, "a == 1");
    arr = json_object_get(j, "b");
    ok(json_is_array(arr) && json_array_size(arr) == 4, "b has 4 items");
    is_str(json_string_value(json_array_get(arr, 1)), "two", "b[1]");
    ok(json_is_null(json_object_get(json_array_get(arr, 2), "c")),
       "b[2].c is null");
    ok(json_is_object(json_object_get(j, "d"))
       && json_object_size(json_object_get(j, "d")) == 0, "d is {}");
    ok(json_is_true(json_object_get(j, "e"))
       && json_is_false(json_object_get(j, "f")), "booleans");
    ok(json_is_null(json_object_get(j, "g")), "NULL string is null");
    is_int(json_integer_value(
               json_array_get(json_object_get(json_object_get(j, "h"), "x"),
                              0)),
           1, "raw JSON spliced as a value");
    json_decref(j);

    /* top-level array of arrays */
    crest_buf_reset(&b);
    crest_jw_init(&w, &b);
    crest_jw_arr_begin(&w);
    crest_jw_arr_begin(&w);
    crest_jw_arr_end(&w);
    crest_jw_arr_begin(&w);
    crest_jw_arr_begin(&w);
    crest_jw_int(&w, -3);
    crest_jw_arr_end(&w);
    crest_jw_int(&w, 4);
    crest_jw_arr_end(&w);
    crest_jw_arr_end(&w);
    is_str(b.data, "[[],[[-3],4]]", "arrays of arrays");

    /* keys with escapes and explicit lengths */
    crest_buf_reset(&b);
    crest_jw_init(&w, &b);
    crest_jw_obj_begin(&w);
    crest_jw_keyn(&w, "k\"\n1ignored", 3);
    crest_jw_strn(&w, "v\0w", 3);
    crest_jw_obj_end(&w);
    is_str(b.data, "{\"k\\\"\\n\":\"v\\u0000w\"}", "keyn and strn honour n");

    j = parse(&b);
    ok(j && json_string_length(json_object_get(j, "k\"\n")) == 3,
       "embedded NUL survives as \\u0000");
    json_decref(j);

    crest_buf_free(&b);
}


static void
test_numbers(void)
{
    crest_buf_t  b;
    crest_jw_t   w;
    json_t      *j;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_jw_init(&w, &b);

    crest_jw_arr_begin(&w);
    crest_jw_int(&w, INT64_MAX);
    crest_jw_int(&w, INT64_MIN);
    crest_jw_int(&w, 0);
    crest_jw_double(&w, 1.5, 2);
    crest_jw_double(&w, -0.125, 3);
    crest_jw_double(&w, 2.5, 0);
    crest_jw_double(&w, NAN, 2);
    crest_jw_double(&w, INFINITY, 2);
    crest_jw_double(&w, -INFINITY, 2);
    crest_jw_double(&w, 1e300, 1);
    crest_jw_arr_end(&w);

    j = parse(&b);
    ok(j && json_array_size(j) == 10, "numbers parse back");
    is_int(json_integer_value(json_array_get(j, 0)), INT64_MAX, "INT64_MAX");
    is_int(json_integer_value(json_array_get(j, 1)), INT64_MIN, "INT64_MIN");
    ok(strstr(b.data, ",1.50,") != NULL, "1.5 with 2 decimals is 1.50");
    ok(json_real_value(json_array_get(j, 4)) == -0.125, "-0.125");
    ok(strstr(b.data, ",2,") != NULL, "0 decimals prints no point");
    ok(json_is_null(json_array_get(j, 6)), "NaN is null");
    ok(json_is_null(json_array_get(j, 7)), "+Inf is null");
    ok(json_is_null(json_array_get(j, 8)), "-Inf is null");
    ok(json_real_value(json_array_get(j, 9)) == 1e300, "1e300 survives");
    json_decref(j);

    crest_buf_free(&b);
}


static void
test_depth(void)
{
    crest_buf_t  b;
    crest_jw_t   w;
    json_t      *j;
    int          i;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_jw_init(&w, &b);

    for (i = 0; i < CREST_JW_MAX_DEPTH; i++) {
        crest_jw_arr_begin(&w);
    }
    crest_jw_int(&w, 1);
    for (i = 0; i < CREST_JW_MAX_DEPTH; i++) {
        crest_jw_arr_end(&w);
    }

    ok(!crest_buf_failed(&b), "nesting %d deep is fine", CREST_JW_MAX_DEPTH);
    j = parse(&b);
    ok(j != NULL, "and parses");
    json_decref(j);

    crest_buf_reset(&b);
    crest_jw_init(&w, &b);

    for (i = 0; i <= CREST_JW_MAX_DEPTH; i++) {
        crest_jw_obj_begin(&w);
        crest_jw_key(&w, "k");
    }

    ok(crest_buf_failed(&b), "nesting %d deep fails the buffer",
       CREST_JW_MAX_DEPTH + 1);

    crest_buf_reset(&b);
    crest_jw_init(&w, &b);
    crest_jw_arr_end(&w);
    ok(crest_buf_failed(&b), "closing at depth 0 fails the buffer");

    /* the comma state of each level is its own, up to the deepest */
    crest_buf_reset(&b);
    crest_jw_init(&w, &b);

    for (i = 0; i < CREST_JW_MAX_DEPTH; i++) {
        crest_jw_arr_begin(&w);
        crest_jw_int(&w, i);
    }
    crest_jw_int(&w, 99);
    for (i = 0; i < CREST_JW_MAX_DEPTH; i++) {
        crest_jw_arr_end(&w);
        if (i < CREST_JW_MAX_DEPTH - 1) {
            crest_jw_int(&w, i);
        }
    }

    j = parse(&b);
    ok(j != NULL && !crest_buf_failed(&b), "values after inner closes");
    json_decref(j);
    ok(strstr(b.data, "]0]1]") == NULL && strstr(b.data, "],0],1],") != NULL,
       "comma after each closed container");
    ok(strncmp(b.data, "[0,[1,[2,", 9) == 0, "commas at every level");
    ok(strstr(b.data, "[63,99]") != NULL, "commas at the deepest level");

    crest_buf_free(&b);
}


static void
test_escape(void)
{
    char    all[32];
    char    want[32 * 6 + 3];
    size_t  i, n;

    escape_text_is("", 0, "\"\"", "empty");
    escape_text_is(NULL, 0, "\"\"", "NULL with length 0");
    escape_text_is("plain text", 10, "\"plain text\"", "plain");
    escape_text_is("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"", "quote, backslash");
    escape_text_is("\n\r\t\b\f", 5, "\"\\n\\r\\t\\u0008\\u000c\"",
                   "short escapes and \\u00XX");
    escape_text_is("\x7f", 1, "\"\x7f\"", "DEL is passed through");

    for (i = 0; i < 32; i++) {
        all[i] = (char) i;
    }

    n = 0;
    want[n++] = '"';
    for (i = 0; i < 32; i++) {
        switch (i) {
        case '\n': memcpy(want + n, "\\n", 2); n += 2; break;
        case '\r': memcpy(want + n, "\\r", 2); n += 2; break;
        case '\t': memcpy(want + n, "\\t", 2); n += 2; break;
        default:
            n += (size_t) snprintf(want + n, 7, "\\u%04zx", i);
        }
    }
    want[n++] = '"';
    want[n] = '\0';
    escape_text_is(all, 32, want, "every control character");
    escape_is(all, 32, all, 32, "control characters decode back");

    escape_is("\"\\", 2, "\"\\", 2, "quote and backslash decode back");
}


static void
test_utf8(void)
{
    escape_text_is("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"", "2-byte passthrough");
    escape_text_is("\xe2\x82\xac", 3, "\"\xe2\x82\xac\"", "3-byte passthrough");
    escape_text_is("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"",
                   "4-byte passthrough");
    escape_is("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf", 4, "U+10FFFF");
    escape_is("\xef\xbf\xbf", 3, "\xef\xbf\xbf", 3, "U+FFFF");
    escape_is("\xc2\x80", 2, "\xc2\x80", 2, "U+0080");
    escape_is("\xe0\xa0\x80", 3, "\xe0\xa0\x80", 3, "U+0800");
    escape_is("\xf0\x90\x80\x80", 4, "\xf0\x90\x80\x80", 4, "U+10000");
    escape_is("\xed\x9f\xbf", 3, "\xed\x9f\xbf", 3, "U+D7FF");
    escape_is("\xee\x80\x80", 3, "\xee\x80\x80", 3, "U+E000");

    escape_is("\x80", 1, FFFD, 3, "lone continuation byte");
    escape_is("a\xffz", 3, "a" FFFD "z", 5, "0xff");
    escape_is("\xe2\x82", 2, FFFD FFFD, 6, "truncated 3-byte sequence");
    escape_is("\xe2\x82z", 3, FFFD FFFD "z", 7,
              "3-byte sequence cut short by ASCII");
    escape_is("\xf0\x9f\x98", 3, FFFD FFFD FFFD, 9, "truncated 4-byte");

    escape_is("\xc0\xaf", 2, FFFD FFFD, 6, "overlong '/' (2 bytes)");
    escape_is("\xc1\xbf", 2, FFFD FFFD, 6, "overlong 2-byte C1");
    escape_is("\xe0\x80\xaf", 3, FFFD FFFD FFFD, 9, "overlong '/' (3 bytes)");
    escape_is("\xe0\x9f\xbf", 3, FFFD FFFD FFFD, 9, "overlong U+07FF");
    escape_is("\xf0\x80\x80\xaf", 4, FFFD FFFD FFFD FFFD, 12,
              "overlong '/' (4 bytes)");
    escape_is("\xf0\x8f\xbf\xbf", 4, FFFD FFFD FFFD FFFD, 12,
              "overlong U+FFFF");
    escape_is("\xed\xa0\x80", 3, FFFD FFFD FFFD, 9, "surrogate U+D800");
    escape_is("\xed\xbf\xbf", 3, FFFD FFFD FFFD, 9, "surrogate U+DFFF");
    escape_is("\xed\xa0\xbd\xed\xb8\x80", 6,
              FFFD FFFD FFFD FFFD FFFD FFFD, 18, "CESU-8 surrogate pair");
    escape_is("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD, 12,
              "above U+10FFFF");
    escape_is("\xf5\x80\x80\x80", 4, FFFD FFFD FFFD FFFD, 12, "0xf5 lead");
    escape_is("ok\xc3\xa9\xc3ok", 7, "ok\xc3\xa9" FFFD "ok", 9,
              "valid then truncated then ASCII");
}


static void
test_failure(void)
{
    crest_buf_t  b;
    crest_jw_t   w;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_jw_init(&w, &b);
    crest_jw_obj_begin(&w);
    b.failed = 1;
    crest_jw_key(&w, "k");
    crest_jw_str(&w, "v");
    crest_jw_obj_end(&w);
    is_str(b.data, "{", "a failed buffer takes no more output");
    ok(crest_buf_failed(&b), "and stays failed");
    crest_buf_free(&b);
}


int
main(void)
{
    test_nesting();
    test_numbers();
    test_depth();
    test_escape();
    test_utf8();
    test_failure();

    return done_testing();
}
