#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"


typedef int (*crest_config_setter_t)(crest_config_t *c, const char *value,
    char *err, size_t errlen);

typedef struct {
    const char             *key;
    const char             *env;
    const char             *def;      /* for --help */
    crest_config_setter_t   set;
} crest_config_key_t;


static int
crest_config_number(const char *value, unsigned min, unsigned max,
    unsigned *out, char *err, size_t errlen)
{
    const char  *p;
    unsigned     v;

    v = 0;

    for (p = value; *p; p++) {
        if (*p < '0' || *p > '9') {
            break;
        }

        v = v * 10 + (unsigned) (*p - '0');

        /* max is far below UINT_MAX / 10, so this also stops overflow */
        if (v > max) {
            break;
        }
    }

    if (p == value || *p != '\0' || v < min || v > max) {
        snprintf(err, errlen, "\"%.32s\" is not a whole number from %u to %u",
                 value, min, max);
        return -1;
    }

    *out = v;

    return 0;
}


static int
crest_config_copy(char *out, size_t size, const char *value, char *err,
    size_t errlen)
{
    size_t  len;

    len = strlen(value);

    if (len >= size) {
        snprintf(err, errlen, "longer than %zu bytes", size - 1);
        return -1;
    }

    memcpy(out, value, len + 1);

    return 0;
}


static int
crest_config_set_redis_url(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    crest_redis_url_t  u;

    if (crest_redis_url_parse(&u, value, strlen(value), err, errlen) != 0) {
        return -1;
    }

    if (u.tls) {
        snprintf(err, errlen, "rediss:// (TLS) is not supported yet");
        return -1;
    }

    if (crest_config_copy(c->redis_url, sizeof(c->redis_url), value, err,
                          errlen) != 0)
    {
        return -1;
    }

    c->redis = u;

    return 0;
}


static int
crest_config_set_database_url(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    PQconninfoOption  *opts;
    char              *msg;
    size_t             len;

    /* libpq is the authority on its own syntax; ask it now rather than
     * find out at the first connect */
    msg = NULL;
    opts = PQconninfoParse(value, &msg);

    if (opts == NULL) {
        if (msg == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }

        len = strlen(msg);
        while (len && isspace((unsigned char) msg[len - 1])) {
            msg[--len] = '\0';
        }

        snprintf(err, errlen, "%s", msg);
        PQfreemem(msg);
        return -1;
    }

    PQconninfoFree(opts);

    return crest_config_copy(c->database_url, sizeof(c->database_url), value,
                             err, errlen);
}


static int
crest_config_set_name(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    const char  *p;

    /* it becomes part of CLIENT SETNAME and of Redis keys: no spaces */
    for (p = value; *p; p++) {
        if (!isalnum((unsigned char) *p) && !strchr("-_.:@", *p)) {
            snprintf(err, errlen,
                     "may only hold letters, digits and - _ . : @");
            return -1;
        }
    }

    if (p == value) {
        snprintf(err, errlen, "must not be empty");
        return -1;
    }

    return crest_config_copy(c->name, sizeof(c->name), value, err, errlen);
}


static int
crest_config_set_log_level(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    if (crest_log_level_parse(value, &c->log_level) != 0) {
        snprintf(err, errlen,
                 "\"%.32s\" is not one of debug, info, warn, error", value);
        return -1;
    }

    return 0;
}


static int
crest_config_set_grace(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    return crest_config_number(value, 0, 3600000, &c->shutdown_grace_ms, err,
                               errlen);
}


static int
crest_config_set_prefix(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    const char  *p;

    /* BullMQ joins prefix:queue:id with ':'; braces allow a cluster hash tag */
    for (p = value; *p; p++) {
        if (!isalnum((unsigned char) *p) && !strchr("-_.:{}", *p)) {
            snprintf(err, errlen,
                     "may only hold letters, digits and - _ . : { }");
            return -1;
        }
    }

    if (p == value) {
        snprintf(err, errlen, "must not be empty");
        return -1;
    }

    return crest_config_copy(c->queue_prefix, sizeof(c->queue_prefix), value,
                             err, errlen);
}


static int
crest_config_set_connect_timeout(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    return crest_config_number(value, 100, 600000, &c->connect_timeout_ms,
                               err, errlen);
}


static int
crest_config_set_command_timeout(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    return crest_config_number(value, 100, 600000, &c->command_timeout_ms,
                               err, errlen);
}


static int
crest_config_set_probe_interval(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    return crest_config_number(value, 100, 3600000, &c->probe_interval_ms,
                               err, errlen);
}


/* A queue or processor name: letters, digits and - _ . */
static int
crest_config_queue_name(const char *name, char *err, size_t errlen)
{
    const char  *p;

    if (name[0] == '\0') {
        snprintf(err, errlen, "empty queue name");
        return -1;
    }

    for (p = name; *p; p++) {
        if (!isalnum((unsigned char) *p) && !strchr("-_.", *p)) {
            snprintf(err, errlen, "queue \"%s\": names may only hold "
                     "letters, digits and - _ .", name);
            return -1;
        }
    }

    return 0;
}


/* "ping, media" or "ping,tests=ping": queue[=processor] */
static int
crest_config_set_queues(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    const char  *p, *end;
    char         name[CREST_CONFIG_QUEUE_LEN], *eq, *proc;
    unsigned     n, i;
    size_t       len;

    n = 0;
    p = value;

    for ( ;; ) {
        end = strchr(p, ',');
        len = end ? (size_t) (end - p) : strlen(p);

        /* blanks around names are allowed: "ping, media" */
        while (len && isspace((unsigned char) *p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char) p[len - 1])) {
            len--;
        }

        if (len == 0) {
            snprintf(err, errlen, "empty queue name");
            return -1;
        }

        if (len >= sizeof(name)) {
            snprintf(err, errlen, "queue name longer than %zu bytes",
                     sizeof(name) - 1);
            return -1;
        }

        memcpy(name, p, len);
        name[len] = '\0';

        eq = strchr(name, '=');
        proc = name;

        if (eq) {
            *eq = '\0';
            proc = eq + 1;
            while (eq > name && isspace((unsigned char) eq[-1])) {
                *--eq = '\0';
            }
            while (isspace((unsigned char) *proc)) {
                proc++;
            }
        }

        if (crest_config_queue_name(name, err, errlen) != 0
            || crest_config_queue_name(proc, err, errlen) != 0)
        {
            return -1;
        }

        for (i = 0; i < n; i++) {
            if (strcmp(c->queues[i], name) == 0) {
                snprintf(err, errlen, "queue \"%s\" listed twice", name);
                return -1;
            }
        }

        if (n == CREST_CONFIG_MAX_QUEUES) {
            snprintf(err, errlen, "more than %d queues",
                     CREST_CONFIG_MAX_QUEUES);
            return -1;
        }

        snprintf(c->queues[n], sizeof(c->queues[n]), "%s", name);
        snprintf(c->processors[n], sizeof(c->processors[n]), "%s", proc);
        n++;

        if (end == NULL) {
            break;
        }

        p = end + 1;
    }

    c->nqueues = n;

    return 0;
}


static int
crest_config_set_concurrency(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    return crest_config_number(value, 1, 256, &c->concurrency, err, errlen);
}


static int
crest_config_set_lock_duration(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    return crest_config_number(value, 1000, 3600000, &c->lock_duration_ms,
                               err, errlen);
}


static int
crest_config_set_stalled_interval(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    return crest_config_number(value, 100, 3600000, &c->stalled_interval_ms,
                               err, errlen);
}


static int
crest_config_set_max_stalled(crest_config_t *c, const char *value, char *err,
    size_t errlen)
{
    return crest_config_number(value, 0, 1000, &c->max_stalled_count, err,
                               errlen);
}


static int
crest_config_set_outbox_interval(crest_config_t *c, const char *value,
    char *err, size_t errlen)
{
    if (crest_config_number(value, 0, 3600000, &c->outbox_interval_ms, err,
                            errlen) != 0)
    {
        return -1;
    }

    if (c->outbox_interval_ms != 0 && c->outbox_interval_ms < 100) {
        snprintf(err, errlen, "must be 0 (off) or at least 100");
        return -1;
    }

    return 0;
}


static const crest_config_key_t  crest_config_keys[] = {
    { "redis_url", "REDIS_URL", "redis://127.0.0.1:6379/0",
      crest_config_set_redis_url },
    { "database_url", "DATABASE_URL", "postgresql:///crest",
      crest_config_set_database_url },
    { "worker_name", "CREST_WORKER_NAME", "<hostname>:<pid>",
      crest_config_set_name },
    { "log_level", "CREST_LOG_LEVEL", "info (debug|info|warn|error)",
      crest_config_set_log_level },
    { "shutdown_grace_ms", "CREST_SHUTDOWN_GRACE_MS", "10000",
      crest_config_set_grace },
    { "queue_prefix", "CREST_QUEUE_PREFIX", "bull",
      crest_config_set_prefix },
    { "connect_timeout_ms", "CREST_CONNECT_TIMEOUT_MS", "5000",
      crest_config_set_connect_timeout },
    { "command_timeout_ms", "CREST_COMMAND_TIMEOUT_MS", "5000",
      crest_config_set_command_timeout },
    { "probe_interval_ms", "CREST_PROBE_INTERVAL_MS", "5000",
      crest_config_set_probe_interval },
    { "queues", "CREST_QUEUES", "ping (queue[=processor],...)",
      crest_config_set_queues },
    { "concurrency", "CREST_CONCURRENCY", "1 (jobs at once per queue, 1-256)",
      crest_config_set_concurrency },
    { "lock_duration_ms", "CREST_LOCK_DURATION_MS", "30000",
      crest_config_set_lock_duration },
    { "stalled_interval_ms", "CREST_STALLED_INTERVAL_MS", "30000",
      crest_config_set_stalled_interval },
    { "max_stalled_count", "CREST_MAX_STALLED_COUNT", "1",
      crest_config_set_max_stalled },
    { "outbox_interval_ms", "CREST_OUTBOX_INTERVAL_MS", "3000 (0 = off)",
      crest_config_set_outbox_interval },
};

#define CREST_CONFIG_NKEYS                                                   \
    (sizeof(crest_config_keys) / sizeof(crest_config_keys[0]))


void
crest_config_defaults(crest_config_t *c)
{
    char  err[256];

    memset(c, 0, sizeof(*c));

    /* the defaults go through the same setters, so they are valid too */
    crest_config_set_redis_url(c, "redis://127.0.0.1:6379/0", err,
                               sizeof(err));
    strcpy(c->database_url, "postgresql:///crest");
    c->log_level = CREST_LOG_INFO;
    c->shutdown_grace_ms = 10000;
    strcpy(c->queue_prefix, "bull");
    c->connect_timeout_ms = 5000;
    c->command_timeout_ms = 5000;
    c->probe_interval_ms = 5000;
    c->nqueues = 1;
    strcpy(c->queues[0], "ping");
    strcpy(c->processors[0], "ping");
    c->concurrency = 1;
    c->lock_duration_ms = 30000;
    c->stalled_interval_ms = 30000;
    c->max_stalled_count = 1;
    c->outbox_interval_ms = 3000;
}


int
crest_config_set(crest_config_t *c, const char *key, const char *value,
    char *err, size_t errlen)
{
    const crest_config_key_t  *k;
    char                       why[512];
    size_t                     i;

    for (i = 0; i < CREST_CONFIG_NKEYS; i++) {
        k = &crest_config_keys[i];

        if (strcmp(key, k->key) != 0 && strcmp(key, k->env) != 0) {
            continue;
        }

        why[0] = '\0';

        if (k->set(c, value, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: %s", key, why);
            return -1;
        }

        return 0;
    }

    snprintf(err, errlen, "%.64s: unknown setting", key);

    return -1;
}


int
crest_config_parse_line(crest_config_t *c, const char *line, char *err,
    size_t errlen)
{
    char         key[64], value[CREST_CONFIG_URL_LEN];
    const char  *p, *eq, *end;
    size_t       n;

    p = line;
    while (isspace((unsigned char) *p)) {
        p++;
    }

    if (*p == '\0' || *p == '#') {
        return 0;
    }

    eq = strchr(p, '=');

    if (eq == NULL) {
        snprintf(err, errlen, "expected \"key = value\"");
        return -1;
    }

    end = eq;
    while (end > p && isspace((unsigned char) end[-1])) {
        end--;
    }

    n = (size_t) (end - p);

    if (n == 0 || n >= sizeof(key)) {
        snprintf(err, errlen, "expected \"key = value\"");
        return -1;
    }

    memcpy(key, p, n);
    key[n] = '\0';

    p = eq + 1;
    while (isspace((unsigned char) *p)) {
        p++;
    }

    end = p + strlen(p);
    while (end > p && isspace((unsigned char) end[-1])) {
        end--;
    }

    /* optional double quotes, no escapes: only to keep a value's edges */
    if (end - p >= 2 && *p == '"' && end[-1] == '"') {
        p++;
        end--;
    }

    n = (size_t) (end - p);

    if (n >= sizeof(value)) {
        snprintf(err, errlen, "%s: longer than %zu bytes", key,
                 sizeof(value) - 1);
        return -1;
    }

    memcpy(value, p, n);
    value[n] = '\0';

    return crest_config_set(c, key, value, err, errlen);
}


int
crest_config_load_file(crest_config_t *c, const char *path, char *err,
    size_t errlen)
{
    FILE      *f;
    char       line[2048], why[512];
    unsigned   lineno;
    size_t     len;
    int        rc;

    f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }

    rc = 0;
    lineno = 0;

    while (fgets(line, sizeof(line), f)) {
        lineno++;
        len = strlen(line);

        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            rc = -1;
            break;
        }

        if (crest_config_parse_line(c, line, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }

    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -1;
    }

    fclose(f);

    return rc;
}


int
crest_config_apply_env(crest_config_t *c, crest_getenv_t get, char *err,
    size_t errlen)
{
    const char  *value;
    size_t       i;

    for (i = 0; i < CREST_CONFIG_NKEYS; i++) {
        value = get(crest_config_keys[i].env);

        /* compose files often pass FOO= for "unset" */
        if (value == NULL || value[0] == '\0') {
            continue;
        }

        if (crest_config_set(c, crest_config_keys[i].env, value, err, errlen)
            != 0)
        {
            return -1;
        }
    }

    return 0;
}


int
crest_config_finish(crest_config_t *c, char *err, size_t errlen)
{
    char  host[100], name[CREST_CONFIG_NAME_LEN];
    char  *p;

    if (c->name[0]) {
        return 0;
    }

    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "localhost");
    }

    host[sizeof(host) - 1] = '\0';

    /* keep only characters a name may hold */
    for (p = host; *p; p++) {
        if (!isalnum((unsigned char) *p) && !strchr("-_.", *p)) {
            *p = '-';
        }
    }

    snprintf(name, sizeof(name), "%s:%ld", host[0] ? host : "localhost",
             (long) getpid());

    if (crest_config_set_name(c, name, err, errlen) != 0) {
        return -1;
    }

    return 0;
}


void
crest_config_usage(FILE *out)
{
    size_t  i;

    fprintf(out, "Settings (file key, environment variable, default); "
                 "the environment wins over the file:\n");

    for (i = 0; i < CREST_CONFIG_NKEYS; i++) {
        fprintf(out, "  %-20s %-26s %s\n", crest_config_keys[i].key,
                crest_config_keys[i].env, crest_config_keys[i].def);
    }
}
