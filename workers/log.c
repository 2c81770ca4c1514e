#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "crest_buf.h"
#include "crest_envelope.h"
#include "crest_json.h"
#include "crest_url.h"
#include "log.h"


static const char  *crest_log_names[] = { "debug", "info", "warn", "error" };

static crest_log_level_t  crest_log_level = CREST_LOG_INFO;
static char               crest_log_name[256];
static int                crest_log_has_name;


void
crest_log_init(crest_log_level_t level, const char *name)
{
    crest_log_level = level;
    crest_log_has_name = name != NULL;

    if (name) {
        strncpy(crest_log_name, name, sizeof(crest_log_name) - 1);
        crest_log_name[sizeof(crest_log_name) - 1] = '\0';
    }
}


int
crest_log_enabled(crest_log_level_t level)
{
    return level >= crest_log_level;
}


const char *
crest_log_level_name(crest_log_level_t level)
{
    if ((unsigned) level > CREST_LOG_ERROR) {
        return "error";
    }

    return crest_log_names[level];
}


int
crest_log_level_parse(const char *s, crest_log_level_t *level)
{
    unsigned  i;

    for (i = 0; i <= CREST_LOG_ERROR; i++) {
        if (strcasecmp(s, crest_log_names[i]) == 0) {
            *level = (crest_log_level_t) i;
            return 0;
        }
    }

    return -1;
}


/* One write(2) per line, so lines from concurrent processes do not mix. */
static void
crest_log_out(const char *p, size_t n)
{
    ssize_t  w;

    while (n) {
        w = write(STDERR_FILENO, p, n);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }

        p += w;
        n -= (size_t) w;
    }
}


void
crest_log_write(crest_log_level_t level, const char *msg, ...)
{
    static const char   fallback[] =
        "{\"level\":\"error\",\"msg\":\"log line lost: out of memory\"}\n";
    crest_buf_t         b;
    crest_jw_t          w;
    crest_log_field_t   f;
    struct timespec     ts;
    va_list             ap;
    char                iso[25], url[1024];
    int                 saved_errno;

    if (!crest_log_enabled(level)) {
        return;
    }

    /* callers log right after a failed call and may still read errno */
    saved_errno = errno;

    clock_gettime(CLOCK_REALTIME, &ts);
    crest_iso8601_ms(iso, (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);

    crest_buf_init(&b, &crest_malloc_allocator);
    crest_jw_init(&w, &b);
    crest_jw_obj_begin(&w);

    crest_jw_key(&w, "ts");
    crest_jw_str(&w, iso);
    crest_jw_key(&w, "level");
    crest_jw_str(&w, crest_log_level_name(level));
    crest_jw_key(&w, "msg");
    crest_jw_str(&w, msg);
    crest_jw_key(&w, "worker");
    crest_jw_str(&w, crest_log_has_name ? crest_log_name : NULL);
    crest_jw_key(&w, "pid");
    crest_jw_int(&w, (int64_t) getpid());

    va_start(ap, msg);

    for ( ;; ) {
        f = va_arg(ap, crest_log_field_t);

        if (f.type == CREST_LF_END || f.key == NULL) {
            break;
        }

        crest_jw_key(&w, f.key);

        switch (f.type) {
        case CREST_LF_INT:
            crest_jw_int(&w, (int64_t) f.i);
            break;

        case CREST_LF_URL:
            if (f.s == NULL) {
                crest_jw_null(&w);
                break;
            }
            crest_url_redact(f.s, strlen(f.s), url, sizeof(url));
            crest_jw_str(&w, url);
            break;

        default:
            crest_jw_str(&w, f.s);
        }
    }

    va_end(ap);

    crest_jw_obj_end(&w);
    crest_buf_appendc(&b, '\n');

    if (crest_buf_failed(&b)) {
        crest_log_out(fallback, sizeof(fallback) - 1);

    } else {
        crest_log_out(b.data, b.len);
    }

    crest_buf_free(&b);
    errno = saved_errno;
}
