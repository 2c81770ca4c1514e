/*
 * Unit tests for workers/config.c.  The unit build links only shared/, so
 * the worker sources this needs are included directly.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../workers/config.c"
#include "../../workers/log.c"
#include "tap.h"


static const char  *fake_env[32];


static char *
fake_getenv(const char *name)
{
    size_t  i, n;

    n = strlen(name);

    for (i = 0; fake_env[i]; i++) {
        if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=') {
            return (char *) fake_env[i] + n + 1;
        }
    }

    return NULL;
}


static int
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}


static void
test_defaults(void)
{
    crest_config_t  c;

    crest_config_defaults(&c);

    is_str(c.redis_url, "redis://127.0.0.1:6379/0", "default REDIS_URL");
    is_str(c.redis.host, "127.0.0.1", "default Redis host parsed");
    is_int(c.redis.port, 6379, "default Redis port parsed");
    is_str(c.database_url, "postgresql:///crest", "default DATABASE_URL");
    is_str(c.name, "", "no name before finish");
    is_int(c.log_level, CREST_LOG_INFO, "default log level");
    is_int(c.shutdown_grace_ms, 10000, "default grace");
    is_str(c.queue_prefix, "bull", "default queue prefix");
    is_int(c.connect_timeout_ms, 5000, "default connect timeout");
    is_int(c.command_timeout_ms, 5000, "default command timeout");
    is_int(c.probe_interval_ms, 5000, "default probe interval");
}


static void
set_ok(crest_config_t *c, const char *key, const char *value)
{
    char  err[512];

    err[0] = '\0';
    if (!ok(crest_config_set(c, key, value, err, sizeof(err)) == 0,
            "%s = %s accepted", key, value))
    {
        diag("error: %s", err);
    }
}


static void
set_bad(crest_config_t *c, const char *key, const char *value)
{
    char    err[512], prefix[80], shown[41];
    size_t  i;

    err[0] = '\0';
    snprintf(prefix, sizeof(prefix), "%s: ", key);

    /* keep the TAP line one line */
    for (i = 0; value[i] && i < sizeof(shown) - 1; i++) {
        shown[i] = (unsigned char) value[i] < 0x20 ? '?' : value[i];
    }
    shown[i] = '\0';

    ok(crest_config_set(c, key, value, err, sizeof(err)) == -1
       && starts_with(err, prefix) && strstr(err, "s3cret") == NULL,
       "%s = %s rejected (%s)", key, shown, err);
}


static void
test_set(void)
{
    crest_config_t  c;

    crest_config_defaults(&c);

    set_ok(&c, "redis_url", "redis://:pw@[::1]:6380/4");
    ok(strcmp(c.redis.host, "::1") == 0 && c.redis.port == 6380
       && c.redis.db == 4 && strcmp(c.redis.password, "pw") == 0,
       "redis_url parsed into the struct");
    set_ok(&c, "REDIS_URL", "unix:///run/redis.sock?db=2");
    ok(c.redis.unix_socket && c.redis.db == 2, "unix socket URL");
    set_bad(&c, "REDIS_URL", "rediss://h");
    set_bad(&c, "REDIS_URL", "redis://:s3cret@h:0");
    set_bad(&c, "redis_url", "");
    is_str(c.redis_url, "unix:///run/redis.sock?db=2",
           "a rejected value leaves the old one");

    set_ok(&c, "DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/crest");
    set_ok(&c, "database_url", "host=/tmp dbname=crest");
    set_ok(&c, "database_url", "");
    set_bad(&c, "DATABASE_URL", "postgresql://h/db?nonsense=1");
    set_bad(&c, "DATABASE_URL", "host='unterminated");
    set_bad(&c, "DATABASE_URL", "bogus=1");

    set_ok(&c, "worker_name", "host-1.example:123@x_y");
    is_str(c.name, "host-1.example:123@x_y", "worker_name stored");
    set_bad(&c, "CREST_WORKER_NAME", "");
    set_bad(&c, "CREST_WORKER_NAME", "a b");
    set_bad(&c, "CREST_WORKER_NAME", "a\nb");
    set_bad(&c, "CREST_WORKER_NAME",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "a");

    set_ok(&c, "log_level", "DEBUG");
    is_int(c.log_level, CREST_LOG_DEBUG, "log level is case-insensitive");
    set_ok(&c, "CREST_LOG_LEVEL", "warn");
    is_int(c.log_level, CREST_LOG_WARN, "warn");
    set_ok(&c, "CREST_LOG_LEVEL", "error");
    set_bad(&c, "CREST_LOG_LEVEL", "verbose");
    set_bad(&c, "CREST_LOG_LEVEL", "");

    set_ok(&c, "shutdown_grace_ms", "0");
    set_ok(&c, "shutdown_grace_ms", "3600000");
    is_int(c.shutdown_grace_ms, 3600000, "grace stored");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "3600001");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "-1");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "+1");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "1.5");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "10s");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", " 10");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "");
    set_bad(&c, "CREST_SHUTDOWN_GRACE_MS", "99999999999999999999999");

    set_ok(&c, "queue_prefix", "{crest}");
    is_str(c.queue_prefix, "{crest}", "hash-tag prefix");
    set_bad(&c, "CREST_QUEUE_PREFIX", "");
    set_bad(&c, "CREST_QUEUE_PREFIX", "a b");
    set_bad(&c, "CREST_QUEUE_PREFIX", "a*");
    set_bad(&c, "CREST_QUEUE_PREFIX",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

    set_ok(&c, "connect_timeout_ms", "100");
    set_bad(&c, "CREST_CONNECT_TIMEOUT_MS", "99");
    set_ok(&c, "command_timeout_ms", "600000");
    set_bad(&c, "CREST_COMMAND_TIMEOUT_MS", "600001");
    set_ok(&c, "probe_interval_ms", "250");
    set_bad(&c, "CREST_PROBE_INTERVAL_MS", "0");

    set_bad(&c, "no_such_key", "1");
    set_bad(&c, "redis_URL", "redis://h");
}


static void
test_lines(void)
{
    crest_config_t  c;
    char            err[512];

    crest_config_defaults(&c);

    is_int(crest_config_parse_line(&c, "", err, sizeof(err)), 0, "blank");
    is_int(crest_config_parse_line(&c, "   \t\n", err, sizeof(err)), 0,
           "whitespace");
    is_int(crest_config_parse_line(&c, "# log_level = bogus\n", err,
                                   sizeof(err)), 0, "comment");
    is_int(crest_config_parse_line(&c, "   # indented comment", err,
                                   sizeof(err)), 0, "indented comment");

    is_int(crest_config_parse_line(&c, "  log_level   =  debug  \n", err,
                                   sizeof(err)), 0, "spaces around");
    is_int(c.log_level, CREST_LOG_DEBUG, "value trimmed");

    is_int(crest_config_parse_line(&c, "queue_prefix=\"q1\"", err,
                                   sizeof(err)), 0, "quoted value");
    is_str(c.queue_prefix, "q1", "quotes stripped");

    is_int(crest_config_parse_line(&c,
               "database_url = host=/tmp password='a=b#c' dbname=x", err,
               sizeof(err)), 0, "value keeps '=' and '#'");
    is_str(c.database_url, "host=/tmp password='a=b#c' dbname=x",
           "only the first '=' splits");

    is_int(crest_config_parse_line(&c, "REDIS_URL = redis://h:1/2", err,
                                   sizeof(err)), 0, "variable names work too");
    is_int(c.redis.db, 2, "and apply");

    is_int(crest_config_parse_line(&c, "log_level debug", err, sizeof(err)),
           -1, "missing '='");
    is_str(err, "expected \"key = value\"", "says what it expected");
    is_int(crest_config_parse_line(&c, " = debug", err, sizeof(err)), -1,
           "missing key");
    is_int(crest_config_parse_line(&c, "log_level =", err, sizeof(err)), -1,
           "empty value for a level");
    ok(starts_with(err, "log_level: "), "error names the key: %s", err);
    is_int(crest_config_parse_line(&c, "colour = blue", err, sizeof(err)),
           -1, "unknown key");
    is_str(err, "colour: unknown setting", "unknown key message");
}


static void
test_file_env(void)
{
    crest_config_t  c;
    char            path[] = "/tmp/crest-test-config-XXXXXX";
    char            err[1024], want[128];
    FILE           *f;
    int             fd;
    char            pid[32];

    fd = mkstemp(path);
    ok(fd >= 0, "temp file");
    f = fdopen(fd, "w");
    fputs("# worker settings\n"
          "\n"
          "redis_url = redis://10.0.0.1:6380/1\n"
          "log_level = warn\n"
          "queue_prefix = fromfile\n"
          "shutdown_grace_ms = 2500\n", f);
    fclose(f);

    crest_config_defaults(&c);
    is_int(crest_config_load_file(&c, path, err, sizeof(err)), 0, "file loads");
    is_str(c.redis.host, "10.0.0.1", "file: redis host");
    is_int(c.log_level, CREST_LOG_WARN, "file: log level");
    is_int(c.shutdown_grace_ms, 2500, "file: grace");

    fake_env[0] = "CREST_QUEUE_PREFIX=fromenv";
    fake_env[1] = "CREST_LOG_LEVEL=";
    fake_env[2] = "REDIS_URL=redis://:pw@127.0.0.1:7000/9";
    fake_env[3] = "UNRELATED=1";
    fake_env[4] = NULL;

    is_int(crest_config_apply_env(&c, fake_getenv, err, sizeof(err)), 0,
           "env applies");
    is_str(c.queue_prefix, "fromenv", "env wins over the file");
    is_int(c.log_level, CREST_LOG_WARN, "an empty variable counts as unset");
    is_int(c.redis.db, 9, "env REDIS_URL");
    is_int(c.shutdown_grace_ms, 2500, "file value kept when env is unset");

    fake_env[0] = "CREST_SHUTDOWN_GRACE_MS=soon";
    fake_env[1] = NULL;
    is_int(crest_config_apply_env(&c, fake_getenv, err, sizeof(err)), -1,
           "bad env value");
    ok(starts_with(err, "CREST_SHUTDOWN_GRACE_MS: "),
       "error names the variable: %s", err);

    f = fopen(path, "w");
    fputs("log_level = info\n# fine\nshutdown_grace_ms = 1O\n", f);
    fclose(f);
    is_int(crest_config_load_file(&c, path, err, sizeof(err)), -1,
           "bad file value");
    snprintf(want, sizeof(want), "%s:3: shutdown_grace_ms: ", path);
    ok(starts_with(err, want), "error names file, line and key: %s", err);

    f = fopen(path, "w");
    fprintf(f, "log_level = %03000d\n", 0);
    fclose(f);
    is_int(crest_config_load_file(&c, path, err, sizeof(err)), -1,
           "overlong line");
    ok(strstr(err, ":1: line too long") != NULL, "says so: %s", err);

    unlink(path);
    is_int(crest_config_load_file(&c, path, err, sizeof(err)), -1,
           "missing file");
    ok(starts_with(err, path) && strstr(err, "No such file") != NULL,
       "names the file: %s", err);

    crest_config_defaults(&c);
    is_int(crest_config_finish(&c, err, sizeof(err)), 0, "finish");
    snprintf(pid, sizeof(pid), ":%ld", (long) getpid());
    ok(strlen(c.name) > strlen(pid)
       && strcmp(c.name + strlen(c.name) - strlen(pid), pid) == 0,
       "default name is hostname:pid (%s)", c.name);

    crest_config_set(&c, "worker_name", "explicit", err, sizeof(err));
    crest_config_finish(&c, err, sizeof(err));
    is_str(c.name, "explicit", "finish keeps a given name");
}


int
main(void)
{
    test_defaults();
    test_set();
    test_lines();
    test_file_env();

    return done_testing();
}
