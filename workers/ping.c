/*
 * The ping processor, for checking the path end to end.  Its data is
 * echoed back as the return value; these optional keys change what it does:
 *
 *   progress   any JSON value: reported with Job.updateProgress first
 *   log        a string: added to the job's log
 *   delayMs    sleeps that long (cut short when the worker must stop)
 *   fail       a string: the job fails with that message
 *   failTimes  with fail, fail only the first N attempts (default: all)
 *
 * t/node/ping-worker.js is the same processor for Node's Worker, so that
 * tests can compare what each leaves behind.
 */
#include <stdlib.h>
#include <string.h>

#include "processor.h"


crest_job_result_t
crest_ping_process(crest_job_ctx_t *ctx, const crest_job_t *job,
    crest_buf_t *out)
{
    const json_t  *d, *v;
    char          *s;
    json_int_t     times;

    d = job->data_json;

    if (json_is_object(d)) {
        v = json_object_get(d, "progress");
        if (v) {
            s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (s == NULL || crest_job_progress(ctx, s) != 0) {
                free(s);
                crest_buf_appends(out, "cannot report progress");
                return CREST_JOB_FAIL;
            }
            free(s);
        }

        v = json_object_get(d, "log");
        if (json_is_string(v) && crest_job_log(ctx, json_string_value(v)) != 0)
        {
            crest_buf_appends(out, "cannot add to the job's log");
            return CREST_JOB_FAIL;
        }

        v = json_object_get(d, "delayMs");
        if (json_is_number(v) && json_number_value(v) > 0) {
            if (crest_job_sleep(ctx, (int64_t) json_number_value(v)) != 0) {
                return CREST_JOB_ABORTED;
            }
        }

        v = json_object_get(d, "fail");
        if (json_is_string(v)) {
            times = json_is_integer(json_object_get(d, "failTimes"))
                    ? json_integer_value(json_object_get(d, "failTimes"))
                    : -1;

            if (times < 0 || job->attempts_made < times) {
                crest_buf_appends(out, json_string_value(v));
                return CREST_JOB_FAIL;
            }
        }
    }

    crest_buf_append(out, job->data, job->data_len);

    return CREST_JOB_DONE;
}
