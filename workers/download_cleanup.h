/* Storage cleanup for downloads (download_cleanup.c): jobs on the download
 * queue, told apart by name. */
#ifndef CREST_DOWNLOAD_CLEANUP_H
#define CREST_DOWNLOAD_CLEANUP_H

#include <stdint.h>

#include "processor.h"

#define CREST_DOWNLOAD_DELETE_JOB   "download-delete"
#define CREST_DOWNLOADS_CLEANUP_JOB "downloads-cleanup"

/* data {storageKeys: [...]}: removes those objects (not one a row names). */
crest_job_result_t crest_download_delete_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

/* Expires completed downloads older than CREST_DOWNLOAD_RETENTION. */
crest_job_result_t crest_downloads_cleanup_process(crest_job_ctx_t *ctx,
    const crest_job_t *job, crest_buf_t *out);

/* CREST_DOWNLOAD_RETENTION: "3600", "90s", "30m", "12h", "7d" or ISO-8601
 * "P7D"; NULL or "" is 7 days.  0 or -1. */
int crest_download_retention(const char *s, int64_t *secs);

#endif /* CREST_DOWNLOAD_CLEANUP_H */
