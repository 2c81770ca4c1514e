/*
 * Removing what downloads left in storage, as jobs on the `download` queue
 * (download.c hands them over by job name), so that no storage call ever
 * runs in nginx:
 *
 *   download-delete    data {storageKeys: [...]}: removes those objects
 *                      (media and thumbnail of a row the edge deleted);
 *   downloads-cleanup  data {} (optional retentionSeconds): removes media
 *                      and thumbnail of completed downloads whose
 *                      completed_at is older than CREST_DOWNLOAD_RETENTION
 *                      and marks their rows (storage_key and thumbnail_key
 *                      NULL, expired_at set; sql/0007).
 *
 * Objects go first, the row is marked after: a crash in between leaves a
 * row pointing at a missing object, which the next run marks (removing a
 * missing key is not an error); the other order would leave objects no row
 * knows of.  A key some row still names is never removed by
 * download-delete: a job enqueued too early, or naming someone else's
 * file, cannot take a live download's file away.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "crest_duration.h"
#include "download_cleanup.h"
#include "log.h"
#include "storage.h"


#define CLEANUP_BATCH     100
#define CLEANUP_MAX_ROWS  10000       /* per job: the next run does the rest */
#define DELETE_MAX_KEYS   64


static crest_job_result_t
dc_fail(crest_buf_t *out, crest_job_result_t rc, const char *msg)
{
    crest_buf_appends(out, msg);
    return rc;
}


int
crest_download_retention(const char *s, int64_t *secs)
{
    char       *end;
    long long   n;
    int64_t     unit = 1;

    if (s == NULL || *s == '\0') {
        *secs = 7 * 86400;
        return 0;
    }

    if (s[0] == 'P') {
        return crest_duration_parse(s, strlen(s), secs);
    }

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    n = strtoll(s, &end, 10);
    if (errno) {
        return -1;
    }

    switch (*end) {
    case '\0': case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return -1;
    }
    if (*end && end[1] != '\0') {
        return -1;
    }
    if (n > CREST_DURATION_MAX / unit) {
        return -1;
    }

    *secs = (int64_t) n * unit;

    return 0;
}


static PGresult *
dc_exec(PGconn *pg, const char *sql, int n, const char *const *p)
{
    PGresult       *res = PQexecParams(pg, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType  st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        crest_log(CREST_LOG_WARN, "media_downloads cleanup query failed",
                  CREST_LS("error", PQerrorMessage(pg)));
        PQclear(res);
        return NULL;
    }

    return res;
}


/* Removes key, adding its size (if it could be had) to *bytes; 0 or -1.
 * The size is only for the report: a stat that fails (an S3 key allowed
 * to delete but not to read answers HEAD with 403) does not keep the
 * object. */
static int
dc_remove(crest_storage_t *st, const char *key, int64_t *bytes,
    int64_t *objects)
{
    char     err[1024];
    int64_t  size = 0;
    int      rc;

    rc = st->stat(st, key, &size, err, sizeof(err));
    if (rc < 0) {
        crest_log(CREST_LOG_WARN, "storage stat failed, removing all the "
                  "same", CREST_LS("key", key), CREST_LS("error", err));
    }
    if (st->remove(st, key, err, sizeof(err)) != 0) {
        crest_log(CREST_LOG_WARN, "storage remove failed",
                  CREST_LS("key", key), CREST_LS("error", err));
        return -1;
    }
    if (rc == 0) {
        *bytes += size;
    }
    if (rc <= 0) {
        (*objects)++;
    }

    return 0;
}


crest_job_result_t
crest_download_delete_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    const json_t     *keys, *k;
    const char       *key, *p[1];
    crest_storage_t  *st;
    PGconn           *pg;
    PGresult         *res;
    char              err[1024];
    size_t            i;
    int64_t           bytes = 0, objects = 0, kept = 0, failed = 0;

    keys = json_object_get(job->data_json, "storageKeys");
    if (!json_is_array(keys) || json_array_size(keys) == 0
        || json_array_size(keys) > DELETE_MAX_KEYS)
    {
        return dc_fail(out, CREST_JOB_FAIL_FINAL, "storageKeys must be an "
                       "array of 1 to 64 storage keys");
    }
    json_array_foreach(keys, i, k) {
        key = json_string_value(k);
        if (key == NULL || !crest_storage_key_valid(key)
            || strncmp(key, "downloads/", 10) != 0)
        {
            return dc_fail(out, CREST_JOB_FAIL_FINAL, "storageKeys: each "
                           "must be a storage key under downloads/");
        }
    }

    pg = PQconnectdb(crest_job_config(ctx)->database_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        PQfinish(pg);
        return dc_fail(out, CREST_JOB_FAIL, "cannot connect to PostgreSQL");
    }

    st = crest_storage_open_env(err, sizeof(err));
    if (st == NULL) {
        PQfinish(pg);
        return dc_fail(out, CREST_JOB_FAIL, err);
    }

    json_array_foreach(keys, i, k) {
        key = json_string_value(k);
        p[0] = key;
        res = dc_exec(pg, "SELECT 1 FROM media_downloads WHERE "
                      "storage_key = $1 OR thumbnail_key = $1 LIMIT 1", 1, p);
        if (res == NULL) {
            failed++;
            continue;
        }
        if (PQntuples(res) > 0) {
            PQclear(res);
            crest_log(CREST_LOG_WARN, "download-delete: key still in use, "
                      "kept", CREST_LS("key", key), CREST_LS("job", job->id));
            kept++;
            continue;
        }
        PQclear(res);
        if (dc_remove(st, key, &bytes, &objects) != 0) {
            failed++;
        }
    }

    st->close(st);
    PQfinish(pg);

    if (failed) {
        crest_buf_appendf(out, "%lld of %zu objects could not be removed",
                          (long long) failed, json_array_size(keys));
        return CREST_JOB_FAIL;          /* removing again is harmless */
    }

    crest_buf_appendf(out, "{\"removed\":%lld,\"bytes\":%lld,\"kept\":%lld}",
                      (long long) objects, (long long) bytes,
                      (long long) kept);

    return CREST_JOB_DONE;
}


crest_job_result_t
crest_downloads_cleanup_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    const json_t     *v;
    const char       *p[3];
    crest_storage_t  *st;
    PGconn           *pg;
    PGresult         *res, *upd;
    char              err[1024], secs[32], limit[16];
    int64_t           retention, bytes = 0, objects = 0, rows = 0, failed = 0;
    int               i, n, ok;

    if (crest_download_retention(getenv("CREST_DOWNLOAD_RETENTION"),
                                 &retention) != 0)
    {
        return dc_fail(out, CREST_JOB_FAIL_FINAL, "CREST_DOWNLOAD_RETENTION: "
                       "seconds, or a number with s, m, h or d, or P...");
    }
    v = json_object_get(job->data_json, "retentionSeconds");
    if (v) {
        /* the bound keeps now() - retention inside PostgreSQL's range:
         * past it every attempt would fail the same query */
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > CREST_DURATION_MAX)
        {
            return dc_fail(out, CREST_JOB_FAIL_FINAL,
                           "retentionSeconds must be a whole number from 0 "
                           "to 10000000000");
        }
        retention = (int64_t) json_integer_value(v);
    }
    snprintf(secs, sizeof(secs), "%lld", (long long) retention);
    snprintf(limit, sizeof(limit), "%d", CLEANUP_BATCH);

    pg = PQconnectdb(crest_job_config(ctx)->database_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        PQfinish(pg);
        return dc_fail(out, CREST_JOB_FAIL, "cannot connect to PostgreSQL");
    }

    st = crest_storage_open_env(err, sizeof(err));
    if (st == NULL) {
        PQfinish(pg);
        return dc_fail(out, CREST_JOB_FAIL, err);
    }

    /* rows whose objects could not be removed stay as they are and are
     * skipped in this run (id > the last one seen), tried again next run */
    {
        char  after[64] = "00000000-0000-0000-0000-000000000000";

        while (rows + failed < CLEANUP_MAX_ROWS && !crest_job_aborted(ctx)) {
            p[0] = secs;
            p[1] = limit;
            p[2] = after;
            res = dc_exec(pg, "SELECT id, storage_key, "
                          "coalesce(thumbnail_key, '') FROM media_downloads "
                          "WHERE status = 'completed' AND storage_key IS NOT "
                          "NULL AND completed_at < now() - make_interval("
                          "secs => $1::double precision) AND id > $3::uuid "
                          "ORDER BY id LIMIT $2::int", 3, p);
            if (res == NULL) {
                failed++;
                break;
            }
            n = PQntuples(res);

            for (i = 0; i < n && !crest_job_aborted(ctx); i++) {
                snprintf(after, sizeof(after), "%s", PQgetvalue(res, i, 0));
                ok = dc_remove(st, PQgetvalue(res, i, 1), &bytes, &objects)
                     == 0;
                if (ok && PQgetvalue(res, i, 2)[0]) {
                    ok = dc_remove(st, PQgetvalue(res, i, 2), &bytes,
                                   &objects) == 0;
                }
                if (!ok) {
                    failed++;
                    continue;
                }
                p[0] = PQgetvalue(res, i, 0);
                p[1] = PQgetvalue(res, i, 1);
                upd = dc_exec(pg, "UPDATE media_downloads SET storage_key = "
                              "NULL, thumbnail_key = NULL, expired_at = now() "
                              "WHERE id = $1 AND storage_key = $2", 2, p);
                if (upd == NULL) {
                    failed++;
                    continue;
                }
                PQclear(upd);
                rows++;
            }

            PQclear(res);
            if (n < CLEANUP_BATCH) {
                break;
            }
        }
    }

    st->close(st);
    PQfinish(pg);

    if (crest_job_aborted(ctx)) {
        return CREST_JOB_ABORTED;
    }

    crest_log(CREST_LOG_INFO, "downloads cleanup", CREST_LI("expired", rows),
              CREST_LI("objects", objects), CREST_LI("bytes", bytes),
              CREST_LI("failed", failed), CREST_LS("job", job->id));

    if (failed) {
        crest_buf_appendf(out, "%lld downloads could not be cleaned up "
                          "(%lld were)", (long long) failed,
                          (long long) rows);
        return CREST_JOB_FAIL;
    }

    crest_buf_appendf(out, "{\"expired\":%lld,\"removed\":%lld,"
                      "\"bytes\":%lld,\"retentionSeconds\":%s}",
                      (long long) rows, (long long) objects,
                      (long long) bytes, secs);

    return CREST_JOB_DONE;
}
