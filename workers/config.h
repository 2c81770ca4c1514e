/*
 * Worker settings: built-in defaults, overridden by a "key = value" file
 * (--config), overridden by the environment, overridden by --name.
 *
 * Everything here is plain parsing and validation without side effects
 * beyond the struct (and gethostname/getpid for the default name), so the
 * unit tests include this file directly.  Every error message starts with
 * the key or variable it is about.
 */
#ifndef CREST_CONFIG_H
#define CREST_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "crest_url.h"
#include "log.h"

#define CREST_CONFIG_URL_LEN     1024
#define CREST_CONFIG_NAME_LEN    129
#define CREST_CONFIG_PREFIX_LEN  65
#define CREST_CONFIG_MAX_QUEUES  16
#define CREST_CONFIG_QUEUE_LEN   65

typedef struct {
    char               redis_url[CREST_CONFIG_URL_LEN];
    crest_redis_url_t  redis;
    /* handed to libpq as is: a postgresql:// URI or key=value conninfo */
    char               database_url[CREST_CONFIG_URL_LEN];
    char               name[CREST_CONFIG_NAME_LEN];    /* "" until finish */
    crest_log_level_t  log_level;
    unsigned           shutdown_grace_ms;
    char               queue_prefix[CREST_CONFIG_PREFIX_LEN];
    unsigned           connect_timeout_ms;
    unsigned           command_timeout_ms;
    unsigned           probe_interval_ms;
    /* the queues this worker serves (CREST_QUEUES, a comma list) */
    unsigned           nqueues;
    char               queues[CREST_CONFIG_MAX_QUEUES][CREST_CONFIG_QUEUE_LEN];
    /* the processor of each ("queue=processor"; else the queue's name) */
    char               processors[CREST_CONFIG_MAX_QUEUES][CREST_CONFIG_QUEUE_LEN];
    unsigned           concurrency;             /* per queue */
    unsigned           lock_duration_ms;
    unsigned           stalled_interval_ms;
    unsigned           max_stalled_count;
    unsigned           outbox_interval_ms;      /* 0 = no reconciler */
} crest_config_t;

typedef char *(*crest_getenv_t)(const char *name);

void crest_config_defaults(crest_config_t *c);
/* key is a file key (redis_url) or its variable (REDIS_URL). */
int crest_config_set(crest_config_t *c, const char *key, const char *value,
    char *err, size_t errlen);
/* One line of a config file: blank, "# comment" or "key = value". */
int crest_config_parse_line(crest_config_t *c, const char *line, char *err,
    size_t errlen);
/* Errors come as "FILE:LINE: key: problem". */
int crest_config_load_file(crest_config_t *c, const char *path, char *err,
    size_t errlen);
/* Applies every variable that is set and not empty; getenv in production. */
int crest_config_apply_env(crest_config_t *c, crest_getenv_t get, char *err,
    size_t errlen);
/* Fills in the default worker name (hostname:pid). */
int crest_config_finish(crest_config_t *c, char *err, size_t errlen);
/* The settings table for --help. */
void crest_config_usage(FILE *out);

#endif /* CREST_CONFIG_H */
