/*
 * crest-worker: the process around Crest's background jobs.  It reads its
 * configuration, starts the job runtime (runtime.h: BullMQ-compatible
 * workers for the queues of CREST_QUEUES) and the PostgreSQL side (jobrows.h:
 * job rows and the outbox reconciler), keeps its own Redis and PostgreSQL
 * probes to report readiness, and on SIGTERM/SIGINT stops fetching, lets
 * the jobs in flight finish within CREST_SHUTDOWN_GRACE_MS and leaves the
 * rest to stalled-job recovery.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "pg_conn.h"
#include "jobrows.h"
#include "processor.h"
#include "redis_conn.h"
#include "runtime.h"
#include "signals.h"

#ifndef CREST_WORKER_VERSION
#define CREST_WORKER_VERSION  "0.1.0"
#endif

#define CREST_EXIT_CONFIG  1
#define CREST_EXIT_USAGE   2

/* the longest the loop sleeps even with nothing due, as a safety net */
#define CREST_MAX_WAIT_MS  1000


static void
crest_usage(FILE *out)
{
    fprintf(out,
        "Usage: crest-worker [--config FILE] [--name NAME]\n"
        "       crest-worker --help | --version\n"
        "\n"
        "Runs Crest's background jobs: serves the BullMQ queues named in\n"
        "CREST_QUEUES with their processors, keeps job rows in PostgreSQL\n"
        "up to date, and logs JSON lines to stderr.\n"
        "\n"
        "  -c, --config FILE  read settings from FILE: \"key = value\" lines,\n"
        "                     '#' starts a comment line\n"
        "  -n, --name NAME    worker name (wins over CREST_WORKER_NAME)\n"
        "  -h, --help         show this help\n"
        "  -V, --version      show the version\n"
        "\n");
    crest_config_usage(out);
    fprintf(out, "\nProcessors (queue: what it does):\n");
    for (const crest_processor_t *p = crest_processors; p->queue; p++) {
        fprintf(out, "  %-20s %s\n", p->queue, p->about);
    }
    fprintf(out,
        "\n"
        "Exit status: 0 after SIGTERM/SIGINT, 1 on a configuration or\n"
        "startup error, 2 on bad usage.\n");
}


static int
crest_load_config(crest_config_t *cfg, const char *path, const char *name)
{
    char  err[1024];

    crest_config_defaults(cfg);
    err[0] = '\0';

    /* the message names the key; for --name that is "--name" */
    if (name && crest_config_set(cfg, "worker_name", name, err, sizeof(err))
        != 0)
    {
        crest_log(CREST_LOG_ERROR, "invalid configuration",
                  CREST_LS("error", err), CREST_LS("option", "--name"));
        return -1;
    }

    /* the file and environment come first, --name wins over both */
    if ((path && crest_config_load_file(cfg, path, err, sizeof(err)) != 0)
        || crest_config_apply_env(cfg, getenv, err, sizeof(err)) != 0
        || (name && crest_config_set(cfg, "worker_name", name, err,
                                     sizeof(err)) != 0)
        || crest_config_finish(cfg, err, sizeof(err)) != 0)
    {
        crest_log(CREST_LOG_ERROR, "invalid configuration",
                  CREST_LS("error", err));
        return -1;
    }

    return 0;
}


static int
crest_run(const crest_config_t *cfg)
{
    crest_redis_conn_t  redis;
    crest_pg_conn_t     pg;
    crest_jobrows_t    *rows;
    crest_rt_t         *rt;
    int64_t             now, next, wait, started, deadline;
    unsigned            left;
    int                 redis_up, pg_up, ready;
    char                err[512];

    rows = crest_jobrows_start(cfg, err, sizeof(err));
    if (rows == NULL) {
        crest_log(CREST_LOG_ERROR, "cannot start", CREST_LS("error", err));
        return CREST_EXIT_CONFIG;
    }

    rt = crest_rt_start(cfg, rows, err, sizeof(err));
    if (rt == NULL) {
        crest_log(CREST_LOG_ERROR, "cannot start", CREST_LS("error", err));
        crest_jobrows_stop(rows, crest_mono_ms());
        return CREST_EXIT_CONFIG;
    }

    crest_redis_conn_init(&redis, cfg);
    crest_pg_conn_init(&pg, cfg);
    ready = 0;

    while (!crest_stop_requested()) {
        redis_up = crest_redis_conn_tick(&redis, crest_mono_ms());

        if (crest_stop_requested()) {
            break;
        }

        pg_up = crest_pg_conn_tick(&pg, crest_mono_ms());

        /* a probe cut short by the signal says nothing about readiness */
        if (crest_stop_requested()) {
            break;
        }

        if (redis_up && pg_up && !ready) {
            crest_log(CREST_LOG_INFO, "ready");
            ready = 1;

        } else if (ready && !(redis_up && pg_up)) {
            crest_log(CREST_LOG_WARN, "not ready",
                      CREST_LS("waiting_for", !redis_up ? "redis"
                                              : "postgres"));
            ready = 0;
        }

        now = crest_mono_ms();
        next = crest_redis_conn_next(&redis);

        if (crest_pg_conn_next(&pg) < next) {
            next = crest_pg_conn_next(&pg);
        }

        wait = next - now;

        if (wait > CREST_MAX_WAIT_MS) {
            wait = CREST_MAX_WAIT_MS;
        }

        if (wait > 0) {
            crest_signals_wait((int) wait);
        }
    }

    started = crest_mono_ms();

    crest_log(CREST_LOG_INFO, "shutting down",
              CREST_LS("signal", strsignal(crest_stop_signal())),
              CREST_LI("grace_ms", cfg->shutdown_grace_ms));

    /* stop fetching; the jobs in flight finish within the grace period */
    crest_rt_stop(rt);
    deadline = started + cfg->shutdown_grace_ms;
    left = crest_rt_wait(rt, deadline);

    if (left) {
        /* the rest stay active with their locks; once those expire, the
         * stalled-job check of any worker puts them back in wait */
        crest_log(CREST_LOG_WARN, "grace period over, leaving jobs to "
                  "stalled-job recovery", CREST_LI("jobs", left));
        crest_rt_abort(rt);
        crest_rt_wait(rt, crest_mono_ms() + 1000);
    }

    if (crest_rt_destroy(rt, crest_mono_ms() + 2000) == 0) {
        /* job rows last, so that the final updates get written */
        crest_jobrows_stop(rows, crest_mono_ms() + 3000);
    } else {
        crest_log(CREST_LOG_WARN, "a processor did not return; exiting "
                  "without it");
    }

    crest_redis_conn_close(&redis);
    crest_pg_conn_close(&pg);

    crest_log(CREST_LOG_INFO, "stopped",
              CREST_LI("shutdown_ms", crest_mono_ms() - started));

    return 0;
}


int
main(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "name", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    crest_config_t  cfg;
    const char     *path, *name;
    char            err[256];
    int             ch;

    path = NULL;
    name = NULL;

    while ((ch = getopt_long(argc, argv, "c:n:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'h':
            crest_usage(stdout);
            return 0;
        case 'V':
            printf("crest-worker %s\n", CREST_WORKER_VERSION);
            return 0;
        default:
            crest_usage(stderr);
            return CREST_EXIT_USAGE;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "crest-worker: unexpected argument \"%s\"\n\n",
                argv[optind]);
        crest_usage(stderr);
        return CREST_EXIT_USAGE;
    }

    crest_log_init(CREST_LOG_INFO, NULL);

    if (crest_load_config(&cfg, path, name) != 0) {
        return CREST_EXIT_CONFIG;
    }

    crest_log_init(cfg.log_level, cfg.name);

    if (crest_signals_init(err, sizeof(err)) != 0) {
        crest_log(CREST_LOG_ERROR, "cannot set up signals",
                  CREST_LS("error", err));
        return CREST_EXIT_CONFIG;
    }

    crest_log(CREST_LOG_INFO, "starting",
              CREST_LS("version", CREST_WORKER_VERSION),
              CREST_LURL("redis", cfg.redis_url),
              CREST_LURL("database", cfg.database_url),
              CREST_LS("queue_prefix", cfg.queue_prefix),
              CREST_LI("queues", cfg.nqueues),
              CREST_LI("concurrency", cfg.concurrency),
              CREST_LS("log_level", crest_log_level_name(cfg.log_level)));

    return crest_run(&cfg);
}
