/*
 * The media download processors, on yt-dlp and ffmpeg:
 *
 *   download  data {downloadId, userId, url, format, audioOnly}: downloads
 *             the URL into storage, probes it (ffprobe), makes a thumbnail
 *             (ffmpeg) and keeps the media_downloads row current;
 *   formats   data {url}: returns the formats yt-dlp -J lists.
 *
 * Child processes are started with fork + execve (never a shell) in a
 * process group of their own, with a minimal environment (no database or
 * Redis URLs) and PR_SET_PDEATHSIG, so that a worker killed outright takes
 * yt-dlp with it; cancel, timeout and shutdown kill the whole group.
 *
 * The URL is checked (shared/crest_urlsafe.h) and its host resolved once
 * here, every address checked, and its redirects followed hop by hop under
 * the same checks (preflight.c) before yt-dlp may run, from where they
 * end; then yt-dlp -J says
 * which URLs media will come from, those are checked the same way, and the
 * download runs on that info (--load-info-json).  yt-dlp resolves names
 * again (2023.03.04 has no option to pin an address) and follows the HTTP
 * redirects it meets itself without a hook: a DNS answer that changes
 * between the two resolutions, or a redirect that only yt-dlp's requests
 * get, is the residual risk
 * (README, "Media downloads (worker)").  URLs that are IP literals have no
 * rebinding window.
 *
 * Failures: permanent ones (refused URL, unsupported URL, private or
 * missing video, HTTP 401/403/404/410, too large, not a media file) fail
 * the job at once (CREST_JOB_FAIL_FINAL: BullMQ's UnrecoverableError);
 * anything else fails it for a retry under the job's attempts and backoff.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "crest_urlsafe.h"
#include "download_cleanup.h"
#include "preflight.h"
#include "jobrows.h"
#include "log.h"
#include "processor.h"
#include "storage.h"


#define DL_TAIL        4096          /* bytes of stderr/stdout kept */
#define DL_JSON_MAX    (64 << 20)    /* yt-dlp -J output limit */

typedef struct {
    const char  *ytdlp;
    const char  *ffmpeg;
    const char  *ffprobe;
    const char  *allow;
    int64_t      timeout_ms;
    int64_t      formats_timeout_ms;
    int64_t      max_bytes;
    int64_t      progress_ms;
    int64_t      socket_timeout_s;
    int64_t      max_redirects;
} dl_settings_t;

typedef enum {
    RUN_EXITED = 0,     /* status holds the exit status */
    RUN_TIMEOUT,
    RUN_ABORTED,        /* the worker must stop at once */
    RUN_STOPPED,        /* the line callback asked to stop (cancel, size) */
    RUN_ERROR           /* could not start */
} run_result_t;

typedef struct run_s  run_t;

struct run_s {
    pid_t             pid;
    int               status;
    crest_buf_t       out;          /* all of stdout if keep_out */
    int               keep_out;
    char              tail[DL_TAIL];  /* the end of stderr (and stray stdout) */
    size_t            tail_len;
    /* called per stdout line (NUL-terminated) and about every 200 ms with
     * line NULL; non-zero stops the child */
    int             (*on_line)(run_t *r, char *line, void *data);
    void             *data;
};


static int64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static int64_t
env_int(const char *name, int64_t def)
{
    const char  *v = getenv(name);
    char        *end;
    long long    n;

    if (v == NULL || *v == '\0') {
        return def;
    }
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || *end != '\0' || n < 0) {
        crest_log(CREST_LOG_WARN, "ignoring an invalid setting",
                  CREST_LS("variable", name), CREST_LS("value", v));
        return def;
    }
    return n;
}


static const char *
env_str(const char *name, const char *def)
{
    const char  *v = getenv(name);

    return v && *v ? v : def;
}


static void
dl_settings(dl_settings_t *s)
{
    s->ytdlp = env_str("CREST_YTDLP", "/usr/bin/yt-dlp");
    s->ffmpeg = env_str("CREST_FFMPEG", "/usr/bin/ffmpeg");
    s->ffprobe = env_str("CREST_FFPROBE", "/usr/bin/ffprobe");
    s->allow = env_str("CREST_DOWNLOAD_ALLOW", "");
    s->timeout_ms = env_int("CREST_DOWNLOAD_TIMEOUT_MS", 3600000);
    s->formats_timeout_ms = env_int("CREST_FORMATS_TIMEOUT_MS", 60000);
    s->max_bytes = env_int("CREST_DOWNLOAD_MAX_BYTES", 2147483648LL);
    s->progress_ms = env_int("CREST_DOWNLOAD_PROGRESS_MS", 500);
    s->socket_timeout_s = env_int("CREST_DOWNLOAD_SOCKET_TIMEOUT", 30);
    s->max_redirects = env_int("CREST_DOWNLOAD_MAX_REDIRECTS", 5);
}


/* The URL's redirects followed and checked hop by hop (preflight.h); yt-dlp
 * then starts from where they end.  0, -1 refused, -2 retry. */
static int
dl_preflight(const dl_settings_t *s, const char *url, char *final,
    size_t finallen, char *err, size_t errlen)
{
    return crest_preflight(url, s->allow, (unsigned) s->max_redirects,
                           (long) (s->socket_timeout_s > 0
                                   ? s->socket_timeout_s : 30) * 1000,
                           final, finallen, err, errlen);
}


/* ---- child processes ---------------------------------------------------- */

static void
tail_add(run_t *r, const char *p, size_t n)
{
    if (n >= DL_TAIL) {
        p += n - DL_TAIL + 1;
        n = DL_TAIL - 1;
    }
    if (r->tail_len + n >= DL_TAIL) {
        size_t drop = r->tail_len + n - (DL_TAIL - 1);
        memmove(r->tail, r->tail + drop, r->tail_len - drop);
        r->tail_len -= drop;
    }
    memcpy(r->tail + r->tail_len, p, n);
    r->tail_len += n;
    r->tail[r->tail_len] = '\0';
}


static void
kill_group(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}


/*
 * Runs argv[0] with argv until it exits, the deadline passes, the worker
 * must stop or on_line says stop.  The child and all it starts are killed
 * (whole process group) in every case but a normal exit.
 */
static run_result_t
run_child(crest_job_ctx_t *ctx, char *const argv[], int64_t timeout_ms,
    run_t *r)
{
    static char *const  envp[] = {
        "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
        "HOME=/nonexistent", "PYTHONDONTWRITEBYTECODE=1", NULL
    };
    int            outp[2], errp[2], devnull, open_fds, i, st;
    pid_t          parent, pid, w;
    struct pollfd  pfd[2];
    char           buf[16384], line[65536];
    size_t         line_len = 0;
    ssize_t        n;
    int64_t        deadline, next_tick, t;
    run_result_t   res = RUN_EXITED;
    struct sigaction  dfl;
    sigset_t       none;

    r->pid = -1;
    r->status = -1;
    r->tail_len = 0;
    r->tail[0] = '\0';

    if (access(argv[0], X_OK) != 0) {
        tail_add(r, "cannot run ", 11);
        tail_add(r, argv[0], strlen(argv[0]));
        return RUN_ERROR;
    }

    if (pipe2(outp, O_CLOEXEC) != 0) {
        return RUN_ERROR;
    }
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(outp[0]);
        close(outp[1]);
        return RUN_ERROR;
    }
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigemptyset(&none);

    parent = getpid();
    pid = fork();

    if (pid == 0) {
        /* only async-signal-safe calls from here on */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        if (devnull >= 0) {
            dup2(devnull, 0);
        }
        dup2(outp[1], 1);
        dup2(errp[1], 2);
        /* nothing of the worker's: not its Redis or PostgreSQL sockets
         * (opened without O_CLOEXEC by the libraries), not its ignored
         * SIGPIPE, not the signal mask of this thread */
        if (close_range(3, ~0U, 0) != 0) {
            for (i = 3; i < 4096; i++) {
                close(i);
            }
        }
        sigaction(SIGPIPE, &dfl, NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(argv[0], argv, envp);
        _exit(127);
    }

    close(outp[1]);
    close(errp[1]);
    if (devnull >= 0) {
        close(devnull);
    }

    if (pid < 0) {
        close(outp[0]);
        close(errp[0]);
        return RUN_ERROR;
    }

    setpgid(pid, pid);      /* the child does it too: no window either way */
    r->pid = pid;

    deadline = now_ms() + timeout_ms;
    next_tick = now_ms() + 200;
    pfd[0].fd = outp[0];
    pfd[0].events = POLLIN;
    pfd[1].fd = errp[0];
    pfd[1].events = POLLIN;
    open_fds = 2;

    while (open_fds > 0) {
        t = now_ms();

        if (t >= deadline) {
            res = RUN_TIMEOUT;
            break;
        }
        if (crest_job_aborted(ctx)) {
            res = RUN_ABORTED;
            break;
        }
        if (t >= next_tick) {
            next_tick = t + 200;
            if (r->on_line && r->on_line(r, NULL, r->data) != 0) {
                res = RUN_STOPPED;
                break;
            }
        }

        if (poll(pfd, 2, 200) < 0 && errno != EINTR) {
            res = RUN_ERROR;
            break;
        }

        for (i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP
                                                     | POLLERR)))
            {
                continue;
            }

            n = read(pfd[i].fd, buf, sizeof(buf));
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            if (n <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                open_fds--;
                continue;
            }

            if (i == 1) {
                tail_add(r, buf, (size_t) n);
                continue;
            }

            if (r->keep_out) {
                if (r->out.len + (size_t) n > DL_JSON_MAX) {
                    tail_add(r, "output too large", 16);
                    res = RUN_STOPPED;
                    goto stop;
                }
                crest_buf_append(&r->out, buf, (size_t) n);
                continue;
            }

            /* line by line; over-long lines are cut */
            for (ssize_t k = 0; k < n; k++) {
                if (buf[k] != '\n') {
                    if (line_len < sizeof(line) - 1) {
                        line[line_len++] = buf[k];
                    }
                    continue;
                }
                line[line_len] = '\0';
                if (line_len && line[0] != '{') {
                    tail_add(r, line, line_len);
                    tail_add(r, "\n", 1);
                }
                if (r->on_line && r->on_line(r, line, r->data) != 0) {
                    res = RUN_STOPPED;
                    goto stop;
                }
                line_len = 0;
            }
        }
    }

stop:

    for (i = 0; i < 2; i++) {
        if (pfd[i].fd >= 0) {
            close(pfd[i].fd);
        }
    }

    if (res != RUN_EXITED) {
        kill_group(pid);
    }

    /* both pipes are closed: the child has exited or is about to */
    for (t = now_ms(); ; ) {
        w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            st = -1;
            break;
        }
        if (now_ms() - t > 5000 || (res == RUN_EXITED && now_ms() >= deadline))
        {
            kill_group(pid);
            waitpid(pid, &st, 0);
            if (res == RUN_EXITED) {
                res = RUN_TIMEOUT;
            }
            break;
        }
        usleep(20000);
    }

    /* grandchildren (ffmpeg under yt-dlp) share the group */
    if (res != RUN_EXITED) {
        kill(-pid, SIGKILL);
    }

    r->status = st;

    return res;
}


/* ---- URL safety ------------------------------------------------------------ */

/* 0 if url may be fetched; else -1 (refused) or -2 (a temporary DNS
 * failure: retry) and why in err. */
static int
url_check(const char *url, const char *allow, char *err, size_t errlen)
{
    return crest_url_resolve_check(url, allow, NULL, 0, err, errlen);
}


/* 1 if yt-dlp's complaint means retrying cannot help. */
static int
permanent_error(const char *s)
{
    static const char  *pats[] = {
        "Unsupported URL", "is not a valid URL", "Private video",
        "This video is private", "Video unavailable",
        "This video is unavailable", "HTTP Error 401", "HTTP Error 403",
        "HTTP Error 404", "HTTP Error 410", "larger than max-filesize",
        "Requested format is not available", "No video formats found",
        "Sign in to confirm your age", "members-only", "has been removed",
        "copyright", NULL
    };
    const char  **p;

    for (p = pats; *p; p++) {
        if (strcasestr(s, *p)) {
            return 1;
        }
    }

    return 0;
}


/* The last "ERROR: ..." line of the tail, else its last line. */
static void
error_line(const char *tail, char *out, size_t len)
{
    const char  *p, *e, *best = NULL;
    size_t       n;

    for (p = tail; (p = strstr(p, "ERROR:")) != NULL; p++) {
        best = p;
    }

    if (best == NULL) {
        e = tail + strlen(tail);
        while (e > tail && (e[-1] == '\n' || e[-1] == '\r')) {
            e--;
        }
        for (best = e; best > tail && best[-1] != '\n'; best--) { }
        n = (size_t) (e - best);
    } else {
        e = strchr(best, '\n');
        n = e ? (size_t) (e - best) : strlen(best);
    }

    if (n == 0) {
        snprintf(out, len, "yt-dlp failed without a message");
        return;
    }
    if (n >= len) {
        n = len - 1;
    }
    memcpy(out, best, n);
    out[n] = '\0';
}


/* ---- the media_downloads row --------------------------------------------- */

typedef struct {
    crest_job_ctx_t     *ctx;
    const crest_job_t   *job;
    const dl_settings_t *set;
    PGconn              *pg;
    const char          *id;
    int64_t              last_db;
    int64_t              last_report;
    int64_t              bytes, total;
    double               speed;
    int64_t              eta;
    int                  dirty;
    int                  cancelled;
    int                  too_large;
} dl_t;


/* Runs a statement with text parameters; the result or NULL (logged). */
static PGresult *
dl_exec(dl_t *d, const char *sql, int n, const char *const *params)
{
    PGresult       *res;
    ExecStatusType  st;

    if (PQstatus(d->pg) != CONNECTION_OK) {
        PQreset(d->pg);
    }

    res = PQexecParams(d->pg, sql, n, NULL, params, NULL, NULL, 0);
    st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        crest_log(CREST_LOG_WARN, "media_downloads update failed",
                  CREST_LS("id", d->id),
                  CREST_LS("error", PQerrorMessage(d->pg)));
        PQclear(res);
        return NULL;
    }

    return res;
}


static void
dl_command(dl_t *d, const char *sql, int n, const char *const *params)
{
    PQclear(dl_exec(d, sql, n, params));
}


/* Progress to the job and the row; and the row's status for cancel. */
static void
dl_sync(dl_t *d, int force)
{
    char         pct[16], bytes[32], total[32], speed[48], eta[32], json[256];
    const char  *p[6];
    PGresult    *res;
    int64_t      t = now_ms();
    int          percent = 0;

    if (!force && t - d->last_db < d->set->progress_ms) {
        return;
    }
    d->last_db = t;

    if (d->total > 0) {
        percent = (int) (d->bytes * 100 / d->total);
        percent = percent > 99 ? 99 : percent < 0 ? 0 : percent;
    }

    if (d->dirty) {
        d->dirty = 0;
        snprintf(json, sizeof(json), "{\"status\":\"downloading\","
                 "\"percent\":%d,\"bytes\":%lld,\"totalBytes\":%lld,"
                 "\"speed\":%.0f,\"eta\":%lld}", percent,
                 (long long) d->bytes, (long long) d->total, d->speed,
                 (long long) d->eta);
        crest_job_progress(d->ctx, json);

        snprintf(pct, sizeof(pct), "%d", percent);
        snprintf(bytes, sizeof(bytes), "%lld", (long long) d->bytes);
        snprintf(total, sizeof(total), "%lld", (long long) d->total);
        snprintf(speed, sizeof(speed), "%.0f", d->speed);
        snprintf(eta, sizeof(eta), "%lld", (long long) d->eta);
        p[0] = d->id;
        p[1] = pct;
        p[2] = bytes;
        p[3] = d->total > 0 ? total : NULL;
        p[4] = d->speed > 0 ? speed : NULL;
        p[5] = d->eta >= 0 ? eta : NULL;

        res = dl_exec(d, "UPDATE media_downloads SET progress = $2, "
                      "bytes = $3, total_bytes = $4, speed = $5, eta = $6 "
                      "WHERE id = $1 AND status = 'downloading' RETURNING id",
                      6, p);
        if (res && PQntuples(res) == 1) {
            PQclear(res);
            return;
        }
        PQclear(res);
    }

    p[0] = d->id;
    res = dl_exec(d, "SELECT status FROM media_downloads WHERE id = $1", 1, p);
    if (res && (PQntuples(res) == 0
                || strcmp(PQgetvalue(res, 0, 0), "cancelled") == 0))
    {
        d->cancelled = 1;
    }
    PQclear(res);
}


static int
dl_on_line(run_t *r, char *line, void *data)
{
    dl_t          *d = data;
    json_t        *j, *v;
    json_error_t   je;

    (void) r;

    if (line && line[0] == '{') {
        j = json_loads(line, 0, &je);
        if (json_is_object(j)) {
            v = json_object_get(j, "downloaded_bytes");
            if (json_is_number(v)) {
                d->bytes = (int64_t) json_number_value(v);
            }
            v = json_object_get(j, "total_bytes");
            if (!json_is_number(v)) {
                v = json_object_get(j, "total_bytes_estimate");
            }
            if (json_is_number(v)) {
                d->total = (int64_t) json_number_value(v);
            }
            v = json_object_get(j, "speed");
            d->speed = json_is_number(v) ? json_number_value(v) : 0;
            v = json_object_get(j, "eta");
            d->eta = json_is_number(v) ? (int64_t) json_number_value(v) : -1;
            d->dirty = 1;
        }
        json_decref(j);

        if (d->set->max_bytes > 0 && d->bytes > d->set->max_bytes) {
            d->too_large = 1;
            return 1;
        }
    }

    dl_sync(d, 0);

    return d->cancelled;
}


static void
dl_fail_row(dl_t *d, const char *error, int final)
{
    const char  *p[3];

    p[0] = d->id;
    p[1] = error;
    p[2] = final ? "failed" : "pending";
    dl_command(d, "UPDATE media_downloads SET status = $3, error = $2 "
               "WHERE id = $1 AND status NOT IN ('cancelled', 'completed')",
               3, p);
}


/* ---- probing --------------------------------------------------------------- */

typedef struct {
    double   duration;
    int64_t  width, height;
    char     vcodec[64], acodec[64];
} probe_t;


static int
probe_file(crest_job_ctx_t *ctx, const dl_settings_t *s, const char *path,
    probe_t *pr, char *err, size_t errlen)
{
    char *const  argv[] = {
        (char *) s->ffprobe, "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", "--", (char *) path, NULL
    };
    run_t         r;
    run_result_t  rr;
    json_t       *j, *st, *v;
    json_error_t  je;
    size_t        i;
    const char   *type;

    memset(pr, 0, sizeof(*pr));
    memset(&r, 0, sizeof(r));
    crest_buf_init(&r.out, &crest_malloc_allocator);
    r.keep_out = 1;

    rr = run_child(ctx, argv, 60000, &r);
    if (rr != RUN_EXITED || !WIFEXITED(r.status) || WEXITSTATUS(r.status)) {
        snprintf(err, errlen, "ffprobe failed: %.900s", r.tail);
        crest_buf_free(&r.out);
        return rr == RUN_ABORTED ? -2 : -1;
    }

    j = json_loadb(r.out.data, r.out.len, 0, &je);
    crest_buf_free(&r.out);
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "ffprobe: unreadable output");
        return -1;
    }

    v = json_object_get(json_object_get(j, "format"), "duration");
    if (json_is_string(v)) {
        pr->duration = atof(json_string_value(v));
    }

    json_array_foreach(json_object_get(j, "streams"), i, st) {
        type = json_string_value(json_object_get(st, "codec_type"));
        v = json_object_get(st, "codec_name");
        if (type == NULL || !json_is_string(v)) {
            continue;
        }
        if (strcmp(type, "video") == 0 && pr->vcodec[0] == '\0') {
            /* cover art is a video stream too; skip attached pictures */
            if (json_integer_value(json_object_get(
                    json_object_get(st, "disposition"), "attached_pic")))
            {
                continue;
            }
            snprintf(pr->vcodec, sizeof(pr->vcodec), "%s",
                     json_string_value(v));
            pr->width = json_integer_value(json_object_get(st, "width"));
            pr->height = json_integer_value(json_object_get(st, "height"));
        } else if (strcmp(type, "audio") == 0 && pr->acodec[0] == '\0') {
            snprintf(pr->acodec, sizeof(pr->acodec), "%s",
                     json_string_value(v));
        }
    }

    json_decref(j);

    if (pr->vcodec[0] == '\0' && pr->acodec[0] == '\0') {
        snprintf(err, errlen, "not a media file (no audio or video stream)");
        return -1;
    }

    return 0;
}


static int
thumbnail(crest_job_ctx_t *ctx, const dl_settings_t *s, const char *in,
    double duration, const char *out)
{
    char          at[32];
    run_t         r;
    run_result_t  rr;
    struct stat   sb;

    snprintf(at, sizeof(at), "%.3f", duration > 2 ? 1.0 : 0.0);

    char *const  argv[] = {
        (char *) s->ffmpeg, "-nostdin", "-v", "error", "-ss", at, "-i",
        (char *) in, "-frames:v", "1", "-vf", "scale=320:-2", "-y",
        (char *) out, NULL
    };

    memset(&r, 0, sizeof(r));
    rr = run_child(ctx, argv, 60000, &r);

    return rr == RUN_EXITED && WIFEXITED(r.status) && !WEXITSTATUS(r.status)
           && stat(out, &sb) == 0 && sb.st_size > 0 ? 0 : -1;
}


/* The finished file yt-dlp left in dir ("media.<ext>"), else "". */
static void
find_media(const char *dir, char *name, size_t len)
{
    DIR            *dh;
    struct dirent  *e;
    const char     *ext;

    name[0] = '\0';
    dh = opendir(dir);
    if (dh == NULL) {
        return;
    }

    while ((e = readdir(dh)) != NULL) {
        if (strncmp(e->d_name, "media.", 6) != 0) {
            continue;
        }
        ext = strrchr(e->d_name, '.');
        if (strcmp(ext, ".part") == 0 || strcmp(ext, ".ytdl") == 0
            || strstr(e->d_name, ".temp.") || strstr(e->d_name, ".part-")
            || !crest_storage_key_valid(e->d_name))
        {
            continue;
        }
        snprintf(name, len, "%s", e->d_name);
        break;
    }

    closedir(dh);
}



/* ---- extraction: what yt-dlp will fetch, checked first ------------------ */

#define DL_MAX_HOSTS  32

typedef struct {
    const char  *allow;
    char         hosts[DL_MAX_HOSTS][CREST_URLSAFE_HOST_LEN];
    unsigned     nhosts;
    unsigned     checked;
} url_set_t;


/* Checks one URL the info says yt-dlp will fetch; hosts checked once. */
static int
media_url_check(url_set_t *us, const char *url, char *err, size_t errlen)
{
    crest_urlsafe_t  u;
    char             e[256];
    unsigned         i;
    int              n;

    if (crest_urlsafe_parse(&u, url, strlen(url), e, sizeof(e)) != 0) {
        snprintf(err, errlen, "media URL refused: %s", e);
        return -1;
    }

    for (i = 0; i < us->nhosts; i++) {
        if (strcmp(us->hosts[i], u.host) == 0) {
            return 0;
        }
    }

    n = url_check(url, us->allow, e, sizeof(e));
    if (n != 0) {
        snprintf(err, errlen, "media %s", e);
        return n;
    }

    if (us->nhosts < DL_MAX_HOSTS) {
        snprintf(us->hosts[us->nhosts++], CREST_URLSAFE_HOST_LEN, "%s",
                 u.host);
    }
    us->checked++;

    return 0;
}


static int
format_urls_check(url_set_t *us, const json_t *f, char *err, size_t errlen)
{
    static const char  *keys[] = { "url", "manifest_url",
                                   "fragment_base_url", NULL };
    const char         **k, *v;
    const json_t        *frag;
    size_t               i;
    int                  rc;

    for (k = keys; *k; k++) {
        v = json_string_value(json_object_get(f, *k));
        if (v && (rc = media_url_check(us, v, err, errlen)) != 0) {
            return rc;
        }
    }

    json_array_foreach(json_object_get(f, "fragments"), i, frag) {
        v = json_string_value(json_object_get(frag, "url"));
        if (v && (rc = media_url_check(us, v, err, errlen)) != 0) {
            return rc;
        }
    }

    return 0;
}


/*
 * Step 1 of a download: yt-dlp -J with the format selection, then every
 * URL media will come from (the selected format's, or each of
 * requested_formats', with manifests and fragments) goes through the same
 * checks as the page URL; the info is written to info_path for step 2
 * (--load-info-json), so that yt-dlp downloads exactly what was checked
 * instead of extracting again.  Returns the run result; on RUN_EXITED with
 * a non-zero exit or a refused URL, -1 in *bad and the reason in err
 * (*perm set when retrying cannot help).
 */
static run_result_t
extract_checked(crest_job_ctx_t *ctx, const dl_settings_t *set, dl_t *d,
    const char *url, const char *fmt, const char *info_path, char *sock,
    int *bad, int *perm, char *err, size_t errlen)
{
    run_t         r;
    run_result_t  rr;
    json_t       *j, *f;
    json_error_t  je;
    url_set_t     us;
    size_t        i;
    FILE         *fp;
    int           n = 0, ok;
    char         *argv[20];

    *bad = 0;
    *perm = 0;

    argv[n++] = (char *) set->ytdlp;
    argv[n++] = "--ignore-config";
    argv[n++] = "--no-cache-dir";
    argv[n++] = "--no-colors";
    argv[n++] = "--no-playlist";
    argv[n++] = "--socket-timeout";
    argv[n++] = sock;
    if (fmt) {
        argv[n++] = "-f";
        argv[n++] = (char *) fmt;
    }
    argv[n++] = "-J";
    argv[n++] = "--";
    argv[n++] = (char *) url;
    argv[n] = NULL;

    memset(&r, 0, sizeof(r));
    crest_buf_init(&r.out, &crest_malloc_allocator);
    r.keep_out = 1;
    r.on_line = dl_on_line;         /* ticks: the cancel check */
    r.data = d;

    rr = run_child(ctx, argv, set->formats_timeout_ms, &r);

    if (rr == RUN_TIMEOUT) {
        snprintf(err, errlen, "yt-dlp -J timed out");
    } else if (rr == RUN_ERROR) {
        snprintf(err, errlen, "cannot run yt-dlp: %.900s", r.tail);
    }

    if (rr != RUN_EXITED) {
        crest_buf_free(&r.out);
        return rr;
    }

    *bad = 1;

    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status)) {
        error_line(r.tail, err, errlen);
        *perm = permanent_error(r.tail);
        crest_buf_free(&r.out);
        return rr;
    }

    j = json_loadb(r.out.data, r.out.len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        crest_buf_free(&r.out);
        snprintf(err, errlen, "yt-dlp -J: unreadable output");
        return rr;
    }

    memset(&us, 0, sizeof(us));
    us.allow = set->allow;

    ok = 0;
    if (json_array_size(json_object_get(j, "requested_formats"))) {
        json_array_foreach(json_object_get(j, "requested_formats"), i, f) {
            ok = format_urls_check(&us, f, err, errlen);
            if (ok != 0) {
                break;
            }
        }
    } else {
        ok = format_urls_check(&us, j, err, errlen);
    }

    if (ok == 0 && us.checked == 0) {
        snprintf(err, errlen, "yt-dlp found no media URL to check");
        ok = -1;
    }

    json_decref(j);

    if (ok != 0) {
        *perm = ok == -1;           /* -2: a temporary DNS failure */
        crest_buf_free(&r.out);
        return rr;
    }

    fp = fopen(info_path, "w");
    if (fp == NULL || fwrite(r.out.data, 1, r.out.len, fp) != r.out.len) {
        snprintf(err, errlen, "cannot write info.json: %s",
                 strerror(errno));
        if (fp) {
            fclose(fp);
        }
        crest_buf_free(&r.out);
        return rr;
    }
    crest_buf_free(&r.out);

    if (fclose(fp) != 0) {
        snprintf(err, errlen, "cannot write info.json");
        return rr;
    }

    *bad = 0;

    return rr;
}


static crest_job_result_t
fail(crest_buf_t *out, crest_job_result_t rc, const char *msg)
{
    crest_buf_appends(out, msg);
    return rc;
}


/* ---- download --------------------------------------------------------------- */

crest_job_result_t
crest_download_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    dl_settings_t        set;
    dl_t                 d;
    const json_t        *data = job->data_json, *a;
    const char          *id, *url, *fmt, *user, *p[14];
    int                  audio, final, n;
    crest_storage_t     *st = NULL;
    crest_job_result_t   rc;
    run_result_t         rr;
    run_t                r;
    probe_t              pr;
    PGresult            *res;
    struct stat          sb;
    char                 err[1024], scratch[1200], media[256], path[1500];
    char                 thumb[1500], key[600], tkey[600], maxb[32];
    char                 sock[32], dur[32], size[32], w[32], h[32];
    char                 info[1300];
    char                 row_user[64];
    char                 target[CREST_URLSAFE_MAX_URL + 1];
    const char          *fsel;
    int                  bad, perm;
    char                *argv[40];
    int64_t              attempts;

    if (!json_is_object(data)) {
        return fail(out, CREST_JOB_FAIL_FINAL, "data must be an object");
    }

    /* storage upkeep shares the queue (and its workers) with downloads */
    if (job->name && strcmp(job->name, CREST_DOWNLOAD_DELETE_JOB) == 0) {
        return crest_download_delete_process(ctx, job, out);
    }
    if (job->name && strcmp(job->name, CREST_DOWNLOADS_CLEANUP_JOB) == 0) {
        return crest_downloads_cleanup_process(ctx, job, out);
    }

    id = json_string_value(json_object_get(data, "downloadId"));
    url = json_string_value(json_object_get(data, "url"));
    fmt = json_string_value(json_object_get(data, "format"));
    user = json_string_value(json_object_get(data, "userId"));
    audio = json_is_true(json_object_get(data, "audioOnly"));

    if (id == NULL || !crest_job_id_is_uuid(id)) {
        return fail(out, CREST_JOB_FAIL_FINAL, "downloadId must be a uuid");
    }
    if (url == NULL) {
        return fail(out, CREST_JOB_FAIL_FINAL, "url must be a string");
    }
    if (user && !crest_job_id_is_uuid(user)) {
        return fail(out, CREST_JOB_FAIL_FINAL, "userId must be a uuid");
    }
    if (fmt && (strlen(fmt) > 200 || fmt[0] == '-')) {
        return fail(out, CREST_JOB_FAIL_FINAL, "invalid format");
    }

    a = json_object_get(job->opts, "attempts");
    attempts = json_is_number(a) ? (int64_t) json_number_value(a) : 1;

    dl_settings(&set);
    memset(&d, 0, sizeof(d));
    d.ctx = ctx;
    d.job = job;
    d.set = &set;
    d.id = id;
    d.eta = -1;

    d.pg = PQconnectdb(crest_job_config(ctx)->database_url);
    if (PQstatus(d.pg) != CONNECTION_OK) {
        PQfinish(d.pg);
        return fail(out, CREST_JOB_FAIL, "cannot connect to PostgreSQL");
    }

    p[0] = id;
    res = dl_exec(&d, "SELECT status, coalesce(user_id::text, '') "
                  "FROM media_downloads WHERE id = $1", 1, p);
    if (res == NULL) {
        rc = fail(out, CREST_JOB_FAIL, "cannot read the media_downloads row");
        goto done;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        rc = fail(out, CREST_JOB_FAIL_FINAL, "no such media_downloads row");
        goto done;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "cancelled") == 0) {
        PQclear(res);
        rc = fail(out, CREST_JOB_FAIL_FINAL, "cancelled");
        goto done;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "completed") == 0) {
        crest_buf_appendf(out, "{\"downloadId\":\"%s\",\"already\":true}",
                          id);
        PQclear(res);
        rc = CREST_JOB_DONE;
        goto done;
    }
    /* the row is the source of truth for whose download this is: files
     * go under its user, and a job that says otherwise is refused */
    snprintf(row_user, sizeof(row_user), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    if (user && row_user[0] && strcmp(user, row_user) != 0) {
        rc = fail(out, CREST_JOB_FAIL_FINAL,
                  "userId does not match the media_downloads row");
        goto done;
    }
    if (row_user[0]) {
        user = row_user;
    }

    n = url_check(url, set.allow, err, sizeof(err));
    if (n == 0) {
        n = dl_preflight(&set, url, target, sizeof(target), err, sizeof(err));
        url = target;
    }
    if (n != 0) {
        final = n == -1 || job->attempts_made + 1 >= attempts;
        dl_fail_row(&d, err, final);
        rc = fail(out, n == -1 ? CREST_JOB_FAIL_FINAL : CREST_JOB_FAIL, err);
        goto done;
    }

    st = crest_storage_open_env(err, sizeof(err));
    if (st == NULL) {
        rc = fail(out, CREST_JOB_FAIL, err);
        goto done;
    }

    /* a fresh scratch directory: what an earlier attempt (perhaps by a
     * worker that was killed) left there is removed */
    snprintf(key, sizeof(key), "dl-%s", id);
    if (st->scratch(st, key, scratch, sizeof(scratch), err, sizeof(err))
        != 0)
    {
        rc = fail(out, CREST_JOB_FAIL, err);
        goto done;
    }

    p[0] = id;
    p[1] = job->id;
    dl_command(&d, "UPDATE media_downloads SET status = 'downloading', "
               "job_id = $2, progress = 0, bytes = NULL, total_bytes = NULL, "
               "speed = NULL, eta = NULL, error = NULL WHERE id = $1 "
               "AND status NOT IN ('cancelled', 'completed')", 2, p);
    crest_job_progress(ctx, "{\"status\":\"downloading\",\"percent\":0}");

    snprintf(maxb, sizeof(maxb), "%lld", (long long) set.max_bytes);
    snprintf(sock, sizeof(sock), "%lld", (long long) set.socket_timeout_s);
    fsel = audio ? (fmt && *fmt ? fmt : "bestaudio/best")
                 : (fmt && *fmt ? fmt : NULL);
    snprintf(info, sizeof(info), "%s/info.json", scratch);

    final = job->attempts_made + 1 >= attempts;

    rr = extract_checked(ctx, &set, &d, url, fsel, info, sock, &bad, &perm,
                         err, sizeof(err));
    if (rr == RUN_ABORTED) {
        crest_storage_rmtree(scratch);
        rc = CREST_JOB_ABORTED;
        goto done;
    }
    if (rr == RUN_STOPPED && d.cancelled) {
        crest_storage_rmtree(scratch);
        rc = fail(out, CREST_JOB_FAIL_FINAL, "cancelled");
        goto done;
    }
    if (rr != RUN_EXITED || bad) {
        crest_storage_rmtree(scratch);
        if (rr == RUN_STOPPED) {
            snprintf(err, sizeof(err), "yt-dlp -J output too large");
        }
        dl_fail_row(&d, err, final || perm);
        rc = fail(out, perm ? CREST_JOB_FAIL_FINAL : CREST_JOB_FAIL, err);
        goto done;
    }

    /* step 2: download exactly what was checked */
    n = 0;
    argv[n++] = (char *) set.ytdlp;
    argv[n++] = "--ignore-config";
    argv[n++] = "--no-cache-dir";
    argv[n++] = "--newline";
    argv[n++] = "--no-colors";
    argv[n++] = "--no-playlist";
    argv[n++] = "--no-mtime";
    argv[n++] = "--restrict-filenames";
    argv[n++] = "--progress-template";
    argv[n++] = "download:%(progress)j";
    argv[n++] = "--socket-timeout";
    argv[n++] = sock;
    argv[n++] = "--retries";
    argv[n++] = "2";
    if (set.max_bytes > 0) {
        argv[n++] = "--max-filesize";
        argv[n++] = maxb;
    }
    argv[n++] = "--ffmpeg-location";
    argv[n++] = (char *) set.ffmpeg;
    argv[n++] = "-P";
    argv[n++] = scratch;
    argv[n++] = "-o";
    argv[n++] = "media.%(ext)s";
    if (fsel) {
        argv[n++] = "-f";
        argv[n++] = (char *) fsel;
    }
    if (audio) {
        argv[n++] = "-x";
    }
    argv[n++] = "--load-info-json";
    argv[n++] = info;
    argv[n] = NULL;

    memset(&r, 0, sizeof(r));
    r.on_line = dl_on_line;
    r.data = &d;

    rr = run_child(ctx, argv, set.timeout_ms, &r);

    if (rr == RUN_STOPPED && !d.too_large) {
        dl_sync(&d, 1);
    }

    if (rr == RUN_ABORTED) {
        /* shutting down: the job is left to stalled-job recovery, the next
         * attempt starts from a fresh scratch directory */
        crest_storage_rmtree(scratch);
        rc = CREST_JOB_ABORTED;
        goto done;
    }

    if (rr == RUN_STOPPED && d.cancelled) {
        crest_storage_rmtree(scratch);
        crest_log(CREST_LOG_INFO, "download cancelled", CREST_LS("id", id),
                  CREST_LS("job", job->id));
        rc = fail(out, CREST_JOB_FAIL_FINAL, "cancelled");
        goto done;
    }

    if (rr == RUN_STOPPED && d.too_large) {
        crest_storage_rmtree(scratch);
        snprintf(err, sizeof(err), "file larger than %lld bytes",
                 (long long) set.max_bytes);
        dl_fail_row(&d, err, 1);
        rc = fail(out, CREST_JOB_FAIL_FINAL, err);
        goto done;
    }

    if (rr != RUN_EXITED || !WIFEXITED(r.status) || WEXITSTATUS(r.status)) {
        crest_storage_rmtree(scratch);
        if (rr == RUN_TIMEOUT) {
            snprintf(err, sizeof(err), "download timed out after %lld ms",
                     (long long) set.timeout_ms);
        } else if (rr == RUN_ERROR) {
            snprintf(err, sizeof(err), "cannot run yt-dlp: %.900s", r.tail);
        } else {
            error_line(r.tail, err, sizeof(err));
        }
        if (rr == RUN_EXITED && permanent_error(r.tail)) {
            final = 1;
        }
        dl_fail_row(&d, err, final);
        rc = fail(out, final && rr == RUN_EXITED && permanent_error(r.tail)
                       ? CREST_JOB_FAIL_FINAL : CREST_JOB_FAIL, err);
        goto done;
    }

    find_media(scratch, media, sizeof(media));
    if (media[0] == '\0') {
        crest_storage_rmtree(scratch);
        if (strstr(r.tail, "max-filesize")) {
            snprintf(err, sizeof(err), "file larger than %lld bytes",
                     (long long) set.max_bytes);
            dl_fail_row(&d, err, 1);
            rc = fail(out, CREST_JOB_FAIL_FINAL, err);
        } else {
            snprintf(err, sizeof(err), "yt-dlp left no file");
            dl_fail_row(&d, err, final);
            rc = fail(out, CREST_JOB_FAIL, err);
        }
        goto done;
    }

    snprintf(path, sizeof(path), "%s/%s", scratch, media);
    if (stat(path, &sb) != 0) {
        crest_storage_rmtree(scratch);
        rc = fail(out, CREST_JOB_FAIL, "the downloaded file vanished");
        goto done;
    }
    if (set.max_bytes > 0 && sb.st_size > set.max_bytes) {
        crest_storage_rmtree(scratch);
        snprintf(err, sizeof(err), "file larger than %lld bytes",
                 (long long) set.max_bytes);
        dl_fail_row(&d, err, 1);
        rc = fail(out, CREST_JOB_FAIL_FINAL, err);
        goto done;
    }

    snprintf(size, sizeof(size), "%lld", (long long) sb.st_size);
    p[0] = id;
    p[1] = size;
    dl_command(&d, "UPDATE media_downloads SET status = 'processing', "
               "progress = 100, bytes = $2, total_bytes = $2, eta = 0 "
               "WHERE id = $1 AND status = 'downloading'", 2, p);
    crest_job_progress(ctx, "{\"status\":\"processing\",\"percent\":100}");

    n = probe_file(ctx, &set, path, &pr, err, sizeof(err));
    if (n != 0) {
        crest_storage_rmtree(scratch);
        if (n == -2) {
            rc = CREST_JOB_ABORTED;
            goto done;
        }
        dl_fail_row(&d, err, 1);
        rc = fail(out, CREST_JOB_FAIL_FINAL, err);
        goto done;
    }

    tkey[0] = '\0';
    snprintf(thumb, sizeof(thumb), "%s/thumb.jpg", scratch);
    if (pr.vcodec[0] && thumbnail(ctx, &set, path, pr.duration, thumb) == 0) {
        snprintf(tkey, sizeof(tkey), "downloads/%s/%s/thumb.jpg",
                 user ? user : "anonymous", id);
    }

    snprintf(key, sizeof(key), "downloads/%s/%s/%s", user ? user : "anonymous",
             id, media);

    n = st->put_file(st, key, path, err, sizeof(err)) != 0 ? 1
        : tkey[0] && st->put_file(st, tkey, thumb, err, sizeof(err)) != 0
        ? 2 : 0;
    if (n != 0) {
        char  rerr[256];

        /* the media is stored but no row will name it: neither the cleanup
         * nor a delete would ever find it */
        if (n == 2 && st->remove(st, key, rerr, sizeof(rerr)) != 0) {
            crest_log(CREST_LOG_WARN, "download: cannot remove an orphan "
                      "object", CREST_LS("key", key), CREST_LS("error", rerr));
        }
        crest_storage_rmtree(scratch);
        dl_fail_row(&d, err, final);
        rc = fail(out, CREST_JOB_FAIL, err);
        goto done;
    }
    crest_storage_rmtree(scratch);

    snprintf(size, sizeof(size), "%lld", (long long) sb.st_size);
    snprintf(dur, sizeof(dur), "%.3f", pr.duration);
    snprintf(w, sizeof(w), "%lld", (long long) pr.width);
    snprintf(h, sizeof(h), "%lld", (long long) pr.height);
    p[0] = id;
    p[1] = key;
    p[2] = size;
    p[3] = pr.duration > 0 ? dur : NULL;
    p[4] = pr.vcodec[0] ? w : NULL;
    p[5] = pr.vcodec[0] ? h : NULL;
    p[6] = pr.vcodec[0] ? pr.vcodec : NULL;
    p[7] = pr.acodec[0] ? pr.acodec : NULL;
    p[8] = tkey[0] ? tkey : NULL;

    res = dl_exec(&d, "UPDATE media_downloads SET status = 'completed', "
                  "progress = 100, storage_key = $2, file_size = $3, "
                  "duration = $4, width = $5, height = $6, vcodec = $7, "
                  "acodec = $8, thumbnail_key = $9, error = NULL, eta = 0, "
                  "completed_at = now() WHERE id = $1 AND status <> "
                  "'cancelled' RETURNING id", 9, p);
    if (res == NULL || PQntuples(res) != 1) {
        int cancelled = res != NULL;
        PQclear(res);
        if (cancelled) {
            /* cancelled while it was being probed: nothing is kept */
            st->remove(st, key, err, sizeof(err));
            if (tkey[0]) {
                st->remove(st, tkey, err, sizeof(err));
            }
            rc = fail(out, CREST_JOB_FAIL_FINAL, "cancelled");
        } else {
            rc = fail(out, CREST_JOB_FAIL, "cannot update media_downloads");
        }
        goto done;
    }
    PQclear(res);

    {
        json_t  *o = json_pack("{s:s, s:s, s:I, s:f}", "downloadId", id,
                               "storageKey", key,
                               "fileSize", (json_int_t) sb.st_size,
                               "duration", pr.duration);
        char    *s;

        if (tkey[0]) {
            json_object_set_new(o, "thumbnailKey", json_string(tkey));
        }
        if (pr.vcodec[0]) {
            json_object_set_new(o, "vcodec", json_string(pr.vcodec));
            json_object_set_new(o, "width", json_integer(pr.width));
            json_object_set_new(o, "height", json_integer(pr.height));
        }
        if (pr.acodec[0]) {
            json_object_set_new(o, "acodec", json_string(pr.acodec));
        }
        s = json_dumps(o, JSON_COMPACT);
        crest_buf_appends(out, s ? s : "null");
        free(s);
        json_decref(o);
    }

    crest_log(CREST_LOG_INFO, "download completed", CREST_LS("id", id),
              CREST_LS("job", job->id), CREST_LS("key", key),
              CREST_LI("bytes", sb.st_size));
    rc = CREST_JOB_DONE;

done:
    if (st) {
        st->close(st);
    }
    PQfinish(d.pg);

    return rc;
}


/* ---- formats ------------------------------------------------------------ */

crest_job_result_t
crest_formats_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    static const char  *keys[] = {
        "format_id", "format_note", "ext", "vcodec", "acodec", "width",
        "height", "fps", "tbr", "filesize", "filesize_approx", NULL
    };
    dl_settings_t  set;
    const char    *url, **k;
    char           err[1024], sock[32];
    char           target[CREST_URLSAFE_MAX_URL + 1];
    run_t          r;
    run_result_t   rr;
    json_t        *j, *o, *list, *f, *g, *v;
    json_error_t   je;
    size_t         i;
    char          *s;
    int            n;

    url = json_is_object(job->data_json)
          ? json_string_value(json_object_get(job->data_json, "url")) : NULL;
    if (url == NULL) {
        return fail(out, CREST_JOB_FAIL_FINAL, "url must be a string");
    }

    dl_settings(&set);

    n = url_check(url, set.allow, err, sizeof(err));
    if (n == 0) {
        n = dl_preflight(&set, url, target, sizeof(target), err, sizeof(err));
        url = target;
    }
    if (n != 0) {
        return fail(out, n == -1 ? CREST_JOB_FAIL_FINAL : CREST_JOB_FAIL, err);
    }

    snprintf(sock, sizeof(sock), "%lld", (long long) set.socket_timeout_s);

    char *const  argv[] = {
        (char *) set.ytdlp, "--ignore-config", "--no-cache-dir",
        "--no-colors", "--no-playlist", "--socket-timeout", sock, "-J",
        "--", (char *) url, NULL
    };

    memset(&r, 0, sizeof(r));
    crest_buf_init(&r.out, &crest_malloc_allocator);
    r.keep_out = 1;

    rr = run_child(ctx, argv, set.formats_timeout_ms, &r);

    if (rr == RUN_ABORTED) {
        crest_buf_free(&r.out);
        return CREST_JOB_ABORTED;
    }
    if (rr != RUN_EXITED || !WIFEXITED(r.status) || WEXITSTATUS(r.status)) {
        if (rr == RUN_TIMEOUT) {
            snprintf(err, sizeof(err), "yt-dlp -J timed out");
        } else {
            error_line(r.tail, err, sizeof(err));
        }
        crest_buf_free(&r.out);
        return fail(out, rr == RUN_EXITED && permanent_error(r.tail)
                         ? CREST_JOB_FAIL_FINAL : CREST_JOB_FAIL, err);
    }

    j = json_loadb(r.out.data, r.out.len, 0, &je);
    crest_buf_free(&r.out);
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(out, CREST_JOB_FAIL, "yt-dlp -J: unreadable output");
    }

    list = json_array();
    json_array_foreach(json_object_get(j, "formats"), i, f) {
        g = json_object();
        for (k = keys; *k; k++) {
            v = json_object_get(f, *k);
            if (v && !json_is_null(v)) {
                json_object_set(g, *k, v);
            }
        }
        json_array_append_new(list, g);
    }

    o = json_object();
    v = json_object_get(j, "title");
    if (json_is_string(v)) {
        json_object_set(o, "title", v);
    }
    v = json_object_get(j, "duration");
    if (json_is_number(v)) {
        json_object_set(o, "duration", v);
    }
    json_object_set_new(o, "formats", list);

    s = json_dumps(o, JSON_COMPACT);
    crest_buf_appends(out, s ? s : "null");
    free(s);
    json_decref(o);
    json_decref(j);

    return CREST_JOB_DONE;
}
