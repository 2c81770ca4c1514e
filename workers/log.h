/*
 * Structured logging for the workers: one JSON object per line on stderr,
 *
 *   {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"ready",
 *    "worker":"host:123","pid":123, ...fields}
 *
 * Fields are typed so numbers stay numbers:
 *
 *   crest_log(CREST_LOG_WARN, "redis connection lost",
 *             CREST_LS("error", ctx->errstr), CREST_LI("attempt", n));
 *
 * CREST_LURL fields are passed through crest_url_redact(): anything that may
 * hold a connection string goes in as CREST_LURL, never CREST_LS.
 */
#ifndef CREST_LOG_H
#define CREST_LOG_H

typedef enum {
    CREST_LOG_DEBUG = 0,
    CREST_LOG_INFO,
    CREST_LOG_WARN,
    CREST_LOG_ERROR
} crest_log_level_t;

typedef enum {
    CREST_LF_END = 0,
    CREST_LF_STR,
    CREST_LF_INT,
    CREST_LF_URL
} crest_log_type_t;

typedef struct {
    const char        *key;
    crest_log_type_t   type;
    const char        *s;
    long long          i;
} crest_log_field_t;

#define CREST_LS(k, v)    ((crest_log_field_t) { (k), CREST_LF_STR, (v), 0 })
#define CREST_LI(k, v)                                                       \
    ((crest_log_field_t) { (k), CREST_LF_INT, NULL, (long long) (v) })
#define CREST_LURL(k, v)  ((crest_log_field_t) { (k), CREST_LF_URL, (v), 0 })
#define CREST_LEND        ((crest_log_field_t) { NULL, CREST_LF_END, NULL, 0 })

/* The sentinel is appended here so that a call site cannot forget it. */
#define crest_log(level, ...)  crest_log_write((level), __VA_ARGS__, CREST_LEND)

/* name is copied; NULL logs "worker":null (before the config is read). */
void crest_log_init(crest_log_level_t level, const char *name);
int crest_log_enabled(crest_log_level_t level);
void crest_log_write(crest_log_level_t level, const char *msg, ...);

const char *crest_log_level_name(crest_log_level_t level);
/* Returns 0 and sets *level for debug|info|warn|error (any case), else -1. */
int crest_log_level_parse(const char *s, crest_log_level_t *level);

#endif /* CREST_LOG_H */
