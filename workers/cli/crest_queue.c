/*
 * crest-queue: BullMQ queues from the command line, through the same client
 * code as crest-worker (workers/bq.c): add jobs, read them, pause a queue...
 * Settings come from the environment (REDIS_URL, CREST_QUEUE_PREFIX) or
 * --config FILE, like crest-worker.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bq.h"
#include "clock.h"
#include "config.h"
#include "crest_bullmq.h"
#include "log.h"
#include "redis_conn.h"
#include "trending_sched.h"

#define EXIT_USAGE  2


static void
usage(FILE *out)
{
    fprintf(out,
        "Usage: crest-queue [--config FILE] COMMAND ARGS...\n"
        "\n"
        "  add QUEUE NAME DATA [--opts JSON]  add a job (DATA is JSON); prints\n"
        "                                     its id\n"
        "  get QUEUE ID                       the job as JSON (exit 1 if none)\n"
        "  state QUEUE ID                     completed, failed, delayed, active,\n"
        "                                     waiting, prioritized, ... unknown\n"
        "  logs QUEUE ID                      the job's log: {logs, count}\n"
        "  log QUEUE ID ROW                   add a row to the job's log\n"
        "  progress QUEUE ID JSON             set the job's progress\n"
        "  counts QUEUE [TYPE...]             job counts by state, as JSON\n"
        "  pause QUEUE | resume QUEUE         pause or resume the queue\n"
        "  remove QUEUE ID                    remove a job (not an active one)\n"
        "  schedule-trending QUEUE            upsert the trending-refresh job\n"
        "                                     schedulers of CREST_TRENDING_SCHEDULE\n"
        "                                     every CREST_TRENDING_EVERY_MS\n"
        "  schedule-downloads-cleanup QUEUE   upsert the downloads-cleanup job\n"
        "                                     scheduler (every\n"
        "                                     CREST_DOWNLOAD_CLEANUP_EVERY_MS)\n"
        "  opts JSON                          the opts object Crest stores for\n"
        "                                     these options (no Redis needed)\n"
        "\n"
        "Options for add (BullMQ's names): attempts, delay, priority, lifo,\n"
        "jobId, backoff (ms or {type: fixed|exponential, delay, jitter}),\n"
        "removeOnComplete / removeOnFail (true, false, a count or {age, count,\n"
        "limit}), keepLogs, stackTraceLimit, timestamp.\n"
        "\n"
        "Settings: REDIS_URL, CREST_QUEUE_PREFIX (default bull), or a --config\n"
        "file with the same keys as crest-worker's.\n"
        "Exit status: 0 ok, 1 failure, 2 bad usage.\n");
}


static int
fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "crest-queue: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}


static int
print_buf(crest_buf_t *b)
{
    if (crest_buf_failed(b)) {
        return fail("%s%s", "out of memory", "");
    }

    fwrite(b->data, 1, b->len, stdout);
    fputc('\n', stdout);

    return 0;
}


static int
parse_opts(const char *text, json_t **json, crest_bullmq_opts_t *o)
{
    json_error_t  e;
    char          err[256];

    *json = json_loads(text, JSON_REJECT_DUPLICATES, &e);

    if (*json == NULL) {
        return fail("--opts: %s%s", e.text, "");
    }

    if (crest_bullmq_opts_from_json(o, *json, err, sizeof(err)) != 0) {
        return fail("--opts: %s%s", err, "");
    }

    return 0;
}


int
main(int argc, char **argv)
{
    static const struct option  longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "opts", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    crest_config_t       cfg;
    crest_redis_conn_t   conn;
    crest_bullmq_opts_t  o;
    crest_bq_t           q;
    crest_bq_job_t       job;
    crest_buf_t          out;
    json_t              *optjson, *data;
    json_error_t         e;
    const char          *path, *opts, *cmd, *queue;
    char                 err[1024], id[512], state[32];
    int                  ch, n, rc;

    path = NULL;
    opts = NULL;

    while ((ch = getopt_long(argc, argv, "+c:o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'o':
            opts = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }

    /* --opts may also come after the command's arguments */
    n = argc - optind;
    argv += optind;

    if (n >= 2 && strcmp(argv[n - 2], "--opts") == 0) {
        opts = argv[n - 1];
        n -= 2;
    }

    if (n < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }

    cmd = argv[0];
    crest_buf_init(&out, &crest_malloc_allocator);
    optjson = NULL;
    crest_bullmq_opts_init(&o);

    if (strcmp(cmd, "opts") == 0) {
        if (n != 2) {
            usage(stderr);
            return EXIT_USAGE;
        }

        if (parse_opts(argv[1], &optjson, &o) != 0) {
            return 1;
        }

        crest_bullmq_opts_json(&out, &o);
        rc = print_buf(&out);
        json_decref(optjson);
        crest_buf_free(&out);
        return rc;
    }

    if (n < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }

    queue = argv[1];

    if (strchr(queue, ':') || queue[0] == '\0') {
        return fail("bad queue name \"%s\"%s", queue, "");
    }

    /* only errors: connection warnings are for daemons */
    crest_log_init(CREST_LOG_ERROR, NULL);
    crest_config_defaults(&cfg);
    err[0] = '\0';

    if ((path && crest_config_load_file(&cfg, path, err, sizeof(err)) != 0)
        || crest_config_apply_env(&cfg, getenv, err, sizeof(err)) != 0
        || crest_config_finish(&cfg, err, sizeof(err)) != 0)
    {
        return fail("%s%s", err, "");
    }

    crest_redis_conn_init(&conn, &cfg);
    crest_redis_conn_set_client_name(&conn, "crest:queue-cli");

    if (!crest_redis_conn_tick(&conn, crest_mono_ms())) {
        return fail("cannot connect to Redis at %s%s", conn.target, "");
    }

    crest_bq_init(&q, &conn, cfg.queue_prefix, queue);
    rc = 0;

    if (strcmp(cmd, "add") == 0 && n == 4) {
        data = json_loads(argv[3], JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                          &e);
        if (data == NULL) {
            rc = fail("DATA is not JSON: %s%s", e.text, "");
        } else if (opts && parse_opts(opts, &optjson, &o) != 0) {
            rc = 1;
        } else if (crest_bq_add(&q, argv[2], argv[3], strlen(argv[3]), &o, id,
                                sizeof(id)) != 0)
        {
            rc = fail("%s%s", q.err, "");
        } else {
            printf("%s\n", id);
        }
        json_decref(data);

    } else if (strcmp(cmd, "get") == 0 && n == 3) {
        switch (crest_bq_get(&q, argv[2], &job)) {
        case 1:
            crest_bq_job_json(&job, &out);
            rc = print_buf(&out);
            crest_bq_job_free(&job);
            break;
        case 0:
            rc = fail("no job %s in queue %s", argv[2], queue);
            break;
        default:
            rc = fail("%s%s", q.err, "");
        }

    } else if (strcmp(cmd, "state") == 0 && n == 3) {
        if (crest_bq_state(&q, argv[2], state, sizeof(state)) != 0) {
            rc = fail("%s%s", q.err, "");
        } else {
            printf("%s\n", state);
        }

    } else if (strcmp(cmd, "logs") == 0 && n == 3) {
        rc = crest_bq_logs(&q, argv[2], &out) == 0 ? print_buf(&out)
                                                   : fail("%s%s", q.err, "");

    } else if (strcmp(cmd, "log") == 0 && n == 4) {
        if (crest_bq_log(&q, argv[2], argv[3], 0) < 0) {
            rc = fail("%s%s", q.err, "");
        }

    } else if (strcmp(cmd, "progress") == 0 && n == 4) {
        data = json_loads(argv[3], JSON_DECODE_ANY, &e);
        if (data == NULL) {
            rc = fail("progress is not JSON: %s%s", e.text, "");
        } else if (crest_bq_progress(&q, argv[2], argv[3]) != 0) {
            rc = fail("%s%s", q.err, "");
        }
        json_decref(data);

    } else if (strcmp(cmd, "counts") == 0) {
        rc = crest_bq_counts(&q, (const char *const *) argv + 2,
                             (unsigned) (n - 2), &out) == 0
             ? print_buf(&out) : fail("%s%s", q.err, "");

    } else if ((strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0)
               && n == 2)
    {
        if (crest_bq_pause(&q, cmd[0] == 'p') != 0) {
            rc = fail("%s%s", q.err, "");
        }

    } else if (strcmp(cmd, "remove") == 0 && n == 3) {
        if (crest_bq_remove(&q, argv[2]) != 0) {
            rc = fail("%s%s", q.err, "");
        }

    } else if (strcmp(cmd, "schedule-trending") == 0 && n == 2) {
        const char  *spec = getenv("CREST_TRENDING_SCHEDULE");
        const char  *every = getenv("CREST_TRENDING_EVERY_MS");

        if (crest_trending_schedule(&q, spec ? spec : "youtube:US,tiktok:US",
                                    every && every[0] ? atol(every) : 1800000,
                                    stdout, err, sizeof(err)) < 0)
        {
            rc = fail("%s%s", err, "");
        }

    } else if (strcmp(cmd, "schedule-downloads-cleanup") == 0 && n == 2) {
        const char  *every = getenv("CREST_DOWNLOAD_CLEANUP_EVERY_MS");
        long         ms = every && every[0] ? atol(every) : 3600000;

        data = json_object();
        if (ms < 1000) {
            rc = fail("CREST_DOWNLOAD_CLEANUP_EVERY_MS: at least 1000%s%s",
                      "", "");
        } else if (crest_sched_upsert(&q, "downloads-cleanup",
                                      "downloads-cleanup", data, ms, err,
                                      sizeof(err)) != 0)
        {
            rc = fail("%s%s", err, "");
        } else {
            printf("downloads-cleanup\n");
        }
        json_decref(data);

    } else {
        usage(stderr);
        rc = EXIT_USAGE;
    }

    json_decref(optjson);
    crest_buf_free(&out);
    crest_bq_free(&q);
    crest_redis_conn_close(&conn);

    return rc;
}
