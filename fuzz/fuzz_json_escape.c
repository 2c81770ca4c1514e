/*
 * libFuzzer target for crest_json_escape(): for any bytes the output is one
 * JSON string that jansson accepts; valid UTF-8 decodes back to exactly the
 * input, and anything else decodes to the input with each byte that does
 * not start a well-formed sequence replaced by U+FFFD.  The well-formedness
 * check here is written independently of the one in crest_json.c.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crest_json.h"


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


/* Length of the well-formed sequence at s, by decoding it, or 0. */
static size_t
utf8_decode_len(const uint8_t *s, size_t n)
{
    uint32_t  cp, min;
    size_t    len, k;

    if (s[0] < 0x80) {
        return 1;
    }

    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    for (k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[k] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return len;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crest_buf_t    b, want;
    crest_jw_t     w;
    json_t        *j;
    json_error_t   e;
    size_t         i, k;
    int            valid, has_nul;

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_buf_init(&want, &crest_malloc_allocator);

    crest_json_escape(&b, (const char *) data, size);
    CHECK(!crest_buf_failed(&b));

    /* what the string must decode to */
    valid = 1;
    has_nul = 0;

    for (i = 0; i < size; i += k) {
        k = utf8_decode_len(data + i, size - i);

        if (k == 0) {
            crest_buf_append(&want, "\xef\xbf\xbd", 3);
            valid = 0;
            k = 1;

        } else {
            crest_buf_append(&want, data + i, k);
            has_nul |= data[i] == 0;
        }
    }

    j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    CHECK(j != NULL && json_is_string(j));
    CHECK(json_string_length(j) == want.len);
    CHECK(want.len == 0
          || memcmp(json_string_value(j), want.data, want.len) == 0);

    if (valid) {
        CHECK(json_string_length(j) == size);
    }

    json_decref(j);

    /* without NULs it is a plain JSON string, no jansson extension needed */
    if (!has_nul) {
        j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &e);
        CHECK(j != NULL && json_is_string(j));
        json_decref(j);
    }

    /* the same bytes as a key and as a value inside the writer (jansson
     * cannot hold a NUL in a key, so those inputs get a fixed key) */
    crest_buf_reset(&b);
    crest_jw_init(&w, &b);
    crest_jw_obj_begin(&w);
    crest_jw_keyn(&w, has_nul ? "k" : (const char *) data, has_nul ? 1 : size);
    crest_jw_arr_begin(&w);
    crest_jw_strn(&w, (const char *) data, size);
    crest_jw_strn(&w, (const char *) data, size);
    crest_jw_arr_end(&w);
    crest_jw_obj_end(&w);
    CHECK(!crest_buf_failed(&b) && w.depth == 0);

    j = json_loadb(b.data, b.len, JSON_ALLOW_NUL, &e);
    CHECK(j != NULL && json_is_object(j) && json_object_size(j) == 1);
    CHECK(json_array_size(json_object_iter_value(json_object_iter(j))) == 2);
    json_decref(j);

    crest_buf_free(&b);
    crest_buf_free(&want);

    return 0;
}
