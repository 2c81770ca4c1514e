/*
 * Crest's response envelope:
 *   {"success":true,"data":...,"meta":{...}}
 *   {"success":false,"error":{"code","message","details"},"meta":{...}}
 * Every endpoint, at the edge and in tools, answers in this shape.
 */
#ifndef CREST_ENVELOPE_H
#define CREST_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crest_buf.h"
#include "crest_json.h"

typedef enum {
    CREST_ERR_UNAUTHORIZED = 0,
    CREST_ERR_FORBIDDEN,
    CREST_ERR_NOT_FOUND,
    CREST_ERR_VALIDATION_ERROR,
    CREST_ERR_CONFLICT,
    CREST_ERR_RATE_LIMITED,
    CREST_ERR_USAGE_EXCEEDED,
    CREST_ERR_EXTERNAL_SERVICE_ERROR,
    CREST_ERR_SERVICE_UNAVAILABLE,
    CREST_ERR_INTERNAL_SERVER_ERROR,
    CREST_ERR_COUNT
} crest_error_code_t;

typedef struct {
    const char  *request_id;    /* may be NULL */
    size_t       request_id_len;
    int64_t      now_ms;        /* Unix time in milliseconds */
    /* Further meta members, already encoded, without braces: "a":1,"b":2 */
    const char  *extra;
    size_t       extra_len;
} crest_meta_t;

const char *crest_error_code_name(crest_error_code_t code);
/* The HTTP status an error code answers with unless an endpoint says else. */
int crest_error_code_status(crest_error_code_t code);
/* The error code for a bare HTTP error status (nginx's own error pages). */
crest_error_code_t crest_error_code_for_status(int status);
/* A short English reason for a bare HTTP error status. */
const char *crest_status_message(int status);

/* data_json is encoded JSON (NULL means null). */
void crest_envelope_ok(crest_buf_t *b, const char *data_json, size_t data_len,
    const crest_meta_t *meta);
/* details_json is encoded JSON or NULL to leave details out. */
void crest_envelope_error(crest_buf_t *b, crest_error_code_t code,
    const char *message, size_t message_len, const char *details_json,
    size_t details_len, const crest_meta_t *meta);

/*
 * The "pagination" member of a page of a list, the same on every list
 * endpoint: {"page","limit","total","totalPages","hasMore"}; page and limit
 * are 1-based and positive, total < 0 counts as 0.
 */
void crest_envelope_pagination(crest_jw_t *w, int64_t page, int64_t limit,
    int64_t total);

/* Writes "2026-11-22T10:00:00.123Z" and a NUL into out (25 bytes). */
void crest_iso8601_ms(char out[25], int64_t ms);

#endif /* CREST_ENVELOPE_H */
