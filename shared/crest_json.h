/*
 * A streaming JSON writer into a crest_buf_t.
 *
 * Responses are built front to back in one buffer instead of as a tree
 * because the edge serves them on the hot path; the writer keeps only the
 * comma state of each open container.  Strings are escaped and invalid UTF-8
 * is replaced by U+FFFD, so whatever a caller passes, the output is valid JSON.
 */
#ifndef CREST_JSON_H
#define CREST_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "crest_buf.h"

#define CREST_JW_MAX_DEPTH  64

typedef struct {
    crest_buf_t  *b;
    unsigned      depth;
    int           after_key;
    uint64_t      has_items;    /* bit n: container at depth n has a member */
} crest_jw_t;

void crest_jw_init(crest_jw_t *w, crest_buf_t *b);
void crest_jw_obj_begin(crest_jw_t *w);
void crest_jw_obj_end(crest_jw_t *w);
void crest_jw_arr_begin(crest_jw_t *w);
void crest_jw_arr_end(crest_jw_t *w);
void crest_jw_key(crest_jw_t *w, const char *key);
void crest_jw_keyn(crest_jw_t *w, const char *key, size_t n);
void crest_jw_str(crest_jw_t *w, const char *s);
void crest_jw_strn(crest_jw_t *w, const char *s, size_t n);
void crest_jw_int(crest_jw_t *w, int64_t v);
void crest_jw_double(crest_jw_t *w, double v, int decimals);
void crest_jw_bool(crest_jw_t *w, int v);
void crest_jw_null(crest_jw_t *w);
/* Inserts already-encoded JSON as one value; the caller vouches for it. */
void crest_jw_raw(crest_jw_t *w, const char *json, size_t n);

/* Appends s as a quoted, escaped JSON string. */
void crest_json_escape(crest_buf_t *b, const char *s, size_t n);

#endif /* CREST_JSON_H */
