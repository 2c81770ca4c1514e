/*
 * Unit tests for workers/log.c and workers/conn_state.c, included directly:
 * stderr is pointed at a temp file and every line read back as JSON.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../workers/backoff.c"
#include "../../workers/conn_state.c"
#include "../../workers/log.c"
#include "tap.h"


static FILE  *capture;
static int    saved_stderr;
static long   read_pos;


static void
capture_start(void)
{
    capture = tmpfile();
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fileno(capture), STDERR_FILENO);
    read_pos = 0;
}


static void
capture_stop(void)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    fclose(capture);
}


/* The lines logged since the last call, as a JSON array of objects. */
static json_t *
captured(void)
{
    json_t        *lines, *j;
    json_error_t   e;
    char           line[4096];

    lines = json_array();
    fseek(capture, read_pos, SEEK_SET);

    while (fgets(line, sizeof(line), capture)) {
        j = json_loads(line, 0, &e);

        if (j == NULL) {
            diag("not JSON: %s (%s)", line, e.text);
            j = json_string(line);
        }

        json_array_append_new(lines, j);
    }

    read_pos = ftell(capture);

    return lines;
}


static const char *
field(json_t *lines, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(lines, i), key));
}


static void
test_log(void)
{
    json_t  *l;
    int      e;

    capture_start();

    crest_log_init(CREST_LOG_INFO, NULL);
    crest_log(CREST_LOG_INFO, "before config");
    l = captured();
    is_int(json_array_size(l), 1, "one line");
    ok(json_is_null(json_object_get(json_array_get(l, 0), "worker")),
       "worker is null before init with a name");
    json_decref(l);

    crest_log_init(CREST_LOG_INFO, "w:1");
    crest_log(CREST_LOG_INFO, "hello \"world\"\nsecond line",
              CREST_LS("s", "v"), CREST_LI("n", -42),
              CREST_LURL("url", "redis://u:secret@h:1/0"),
              CREST_LURL("dsn", "host=h password=secret"),
              CREST_LS("nul", NULL));
    l = captured();
    is_int(json_array_size(l), 1, "a message with a newline is one line");
    is_str(field(l, 0, "msg"), "hello \"world\"\nsecond line", "msg");
    is_str(field(l, 0, "level"), "info", "level");
    is_str(field(l, 0, "worker"), "w:1", "worker");
    is_int(json_integer_value(json_object_get(json_array_get(l, 0), "pid")),
           getpid(), "pid");
    is_int(field(l, 0, "ts") ? strlen(field(l, 0, "ts")) : 0, 24,
           "ts is ISO-8601 with ms");
    ok(field(l, 0, "ts") && field(l, 0, "ts")[10] == 'T'
       && field(l, 0, "ts")[23] == 'Z', "ts shape: %s", field(l, 0, "ts"));
    is_str(field(l, 0, "s"), "v", "string field");
    is_int(json_integer_value(json_object_get(json_array_get(l, 0), "n")),
           -42, "integer field stays a number");
    is_str(field(l, 0, "url"), "redis://u:***@h:1/0", "URL field redacted");
    is_str(field(l, 0, "dsn"), "host=h password=***", "conninfo redacted");
    ok(json_is_null(json_object_get(json_array_get(l, 0), "nul")),
       "NULL string is null");
    json_decref(l);

    crest_log(CREST_LOG_DEBUG, "hidden");
    crest_log_init(CREST_LOG_ERROR, "w:1");
    crest_log(CREST_LOG_WARN, "hidden too");
    crest_log(CREST_LOG_ERROR, "shown");
    l = captured();
    is_int(json_array_size(l), 1, "levels below the threshold are dropped");
    is_str(field(l, 0, "level"), "error", "error level");
    json_decref(l);

    errno = ENOENT;
    crest_log(CREST_LOG_ERROR, "keeps errno");
    e = errno;
    is_int(e, ENOENT, "logging does not clobber errno");
    json_decref(captured());

    capture_stop();

    is_str(crest_log_level_name(CREST_LOG_WARN), "warn", "level name");
    is_str(crest_log_level_name((crest_log_level_t) 99), "error",
           "bad level name");
}


static void
test_conn_state(void)
{
    crest_conn_state_t  s;
    json_t             *l;
    int64_t             t;
    int                 i;

    capture_start();
    crest_log_init(CREST_LOG_INFO, "w");

    crest_conn_state_init(&s, "redis", "redis://:secret@h:1/0", 5000, 9);
    ok(crest_conn_state_due(&s, 0), "a new connection is due at once");

    t = 1000;
    for (i = 0; i < 5; i++) {
        crest_conn_state_failed(&s, t, "Connection refused", 0);
        ok(!crest_conn_state_due(&s, t), "not due right after a failure");
        t = crest_conn_state_next(&s);
    }

    l = captured();
    is_int(json_array_size(l), 1, "five failed attempts log one line");
    is_str(field(l, 0, "msg"), "redis unavailable, retrying", "warn message");
    is_str(field(l, 0, "level"), "warn", "at warn");
    is_str(field(l, 0, "target"), "redis://:***@h:1/0", "target redacted");
    is_str(field(l, 0, "error"), "Connection refused", "error");
    json_decref(l);

    crest_conn_state_connected(&s, t);
    l = captured();
    is_str(field(l, 0, "msg"), "redis connected", "then connected");
    is_int(json_integer_value(json_object_get(json_array_get(l, 0),
                                              "attempts")), 6, "attempts");
    is_int(json_integer_value(json_object_get(json_array_get(l, 0),
                                              "down_ms")), t - 1000,
           "down_ms");
    json_decref(l);

    ok(!crest_conn_state_due(&s, t + 4999) && crest_conn_state_due(&s, t + 5000),
       "probe due after the interval");
    crest_conn_state_probed(&s, t + 5000);
    ok(!crest_conn_state_due(&s, t + 9999), "probe rescheduled");

    t += 20000;
    crest_conn_state_lost(&s, t, "Server closed the connection", 0);
    crest_conn_state_failed(&s, t + 100, "Connection refused", 0);
    crest_conn_state_failed(&s, t + 300, "Connection refused", 0);
    l = captured();
    is_int(json_array_size(l), 1, "a lost connection logs once");
    is_str(field(l, 0, "msg"), "redis connection lost", "lost message");
    json_decref(l);

    crest_conn_state_connected(&s, t + 700);
    l = captured();
    is_str(field(l, 0, "msg"), "redis reconnected", "reconnected");
    is_int(json_integer_value(json_object_get(json_array_get(l, 0),
                                              "attempts")), 3, "attempts");
    is_int(json_integer_value(json_object_get(json_array_get(l, 0),
                                              "down_ms")), 700, "down_ms");
    json_decref(l);

    crest_conn_state_lost(&s, t + 1000, "x", 1);
    crest_conn_state_failed(&s, t + 1100, "x", 1);
    l = captured();
    is_int(json_array_size(l), 0, "quiet failures (shutdown) log nothing");
    json_decref(l);

    capture_stop();
}


int
main(void)
{
    test_log();
    test_conn_state();

    return done_testing();
}
