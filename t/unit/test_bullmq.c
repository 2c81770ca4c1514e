/*
 * Unit tests for shared/crest_bullmq.c.  The expected msgpack bytes were
 * produced by msgpackr 2.1.3 (BullMQ 6.7.0's packer, {useRecords: false,
 * encodeUndefinedAsNil: true}) from the same values.
 */
#include <stdlib.h>
#include <string.h>

#include "crest_bullmq.h"
#include "tap.h"


static char  hexbuf[4096];


static const char *
hex(const crest_buf_t *b)
{
    static const char  digits[] = "0123456789abcdef";
    size_t             i;

    for (i = 0; i < b->len && 2 * i + 2 < sizeof(hexbuf); i++) {
        hexbuf[2 * i] = digits[(unsigned char) b->data[i] >> 4];
        hexbuf[2 * i + 1] = digits[(unsigned char) b->data[i] & 15];
    }

    hexbuf[2 * i] = '\0';

    return hexbuf;
}


static void
test_keys(void)
{
    crest_bullmq_keys_t  k;
    crest_buf_t          b;
    int                  op, n;

    crest_buf_init(&b, &crest_malloc_allocator);

    n = crest_bullmq_keys(&k, &b, "bull", "ping", CREST_BQ_ADD_STANDARD, NULL,
                          NULL);
    is_int(n, 9, "addStandardJob has 9 keys");
    is_str(k.key[0], "bull:ping:wait", "first key");
    is_str(k.key[8], "bull:ping:marker", "last key");
    is_int(k.len[3], strlen("bull:ping:id"), "length of a key");

    n = crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_MOVE_TO_FINISHED,
                          "42", "failed");
    is_int(n, 14, "moveToFinished has 14 keys");
    is_str(k.key[10], "bull:q:failed", "target set");
    is_str(k.key[11], "bull:q:42", "job key");
    is_str(k.key[12], "bull:q:metrics:failed", "metrics key");
    is_str(k.key[13], "bull:q:marker", "marker");

    n = crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_MOVE_TO_FINISHED,
                          NULL, "completed");
    is_int(n, -1, "moveToFinished needs a job id");

    n = crest_bullmq_keys(&k, &b, "{crest}", "q", CREST_BQ_EXTEND_LOCK, "7",
                          NULL);
    is_str(k.key[0], "{crest}:q:7:lock", "lock key with a hash-tag prefix");

    n = crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_ADD_LOG, "7", NULL);
    is_str(k.key[1], "bull:q:7:logs", "logs key");

    n = crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_GET_COUNTS, NULL,
                          NULL);
    is_str(k.key[0], "bull:q:", "getCounts takes the base key");

    n = crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_UPDATE_SCHEDULER,
                          NULL, NULL);
    is_int(n, 12, "updateJobScheduler has 12 keys");
    is_str(k.key[10], "", "no producer: empty key");
    crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_UPDATE_SCHEDULER, NULL,
                      "repeat:s:100");
    is_str(k.key[10], "bull:q:repeat:s:100", "producer key");

    crest_bullmq_keys(&k, &b, "bull", "q", CREST_BQ_RESUME, NULL, NULL);
    is_str(k.key[0], "bull:q:paused", "resume moves paused to wait");
    is_str(crest_bullmq_op_script(CREST_BQ_RESUME), "pause",
           "resume runs the pause script");

    /* every op's key count matches the count in BullMQ's file names */
    for (op = 0; op < CREST_BQ_NOPS; op++) {
        ok(crest_bullmq_op_numkeys(op) >= 1
           && crest_bullmq_op_numkeys(op) <= CREST_BULLMQ_MAX_KEYS,
           "%s has a sane key count", crest_bullmq_op_script(op));
    }

    is_int(crest_bullmq_op_numkeys(CREST_BQ_MOVE_TO_DELAYED), 11,
           "moveToDelayed-11 (12 before 6.7)");
    is_int(crest_bullmq_op_numkeys(CREST_BQ_MOVE_STALLED), 9,
           "moveStalledJobsToWait-9");
    is_int(crest_bullmq_op_numkeys(CREST_BQ_GET_STATE), 8, "getStateV2-8");

    crest_buf_free(&b);
}


static void
test_client_name(void)
{
    crest_buf_t  b;

    crest_buf_init(&b, &crest_malloc_allocator);

    crest_bullmq_client_name(&b, "bull", "ping", "host:1");
    is_str(b.data, "bull:cGluZw==:w:host:1", "worker connection name");

    crest_buf_reset(&b);
    crest_bullmq_client_name(&b, "bull", "ab", NULL);
    is_str(b.data, "bull:YWI=", "one pad character");

    crest_buf_reset(&b);
    crest_bullmq_client_name(&b, "p", "abcd", NULL);
    is_str(b.data, "p:YWJjZA==", "two pad characters");

    crest_buf_free(&b);
}


static void
test_pack(void)
{
    crest_bullmq_opts_t    o;
    crest_bullmq_finish_t  f;
    crest_buf_t            b;
    json_t                *j;
    json_error_t           je;
    const char            *s[] = { "failedReason", "boom", "stacktrace",
                                   "[]" };

    crest_buf_init(&b, &crest_malloc_allocator);

    crest_bullmq_pack_add_args(&b, "bull", "q", NULL, "ping",
                               INT64_C(1700000000123), NULL);
    is_str(hex(&b), "9aa762756c6c3a713aa0a470696e67cb4278bcfe5687b000"
                    "c0c0c0c0c0c0", "add ARGV[1], timestamp as float64");

    crest_bullmq_pack_add_args(&b, "bull", "q", "abc", "n", 42, "sch");
    is_str(hex(&b), "9aa762756c6c3a713aa3616263a16e2ac0c0c0a3736368c0c0",
           "add ARGV[1] with custom id and repeat key");

    crest_bullmq_opts_init(&o);
    crest_bullmq_pack_opts(&b, &o);
    is_str(hex(&b), "de0001a8617474656d70747300", "default opts");

    o.attempts = 3;
    o.delay = 5000;
    o.priority = 7;
    o.lifo = 1;
    o.job_id = "j-1";
    o.backoff.type = CREST_BQ_BACKOFF_EXPONENTIAL;
    o.backoff.delay = 500;
    o.backoff.jitter = 0.5;
    o.backoff.has_jitter = 1;
    o.remove_on_complete.kind = CREST_BQ_KEEP_AGE;
    o.remove_on_complete.age = 3600;
    o.remove_on_complete.count = 5;
    o.remove_on_fail.kind = CREST_BQ_KEEP_COUNT;
    o.remove_on_fail.count = 10;
    o.keep_logs = 5;
    o.stack_trace_limit = 3;
    o.timestamp = INT64_C(1700000000000);

    crest_bullmq_pack_opts(&b, &o);
    is_str(hex(&b),
           "de000ba8617474656d70747303a564656c6179cd1388a87072696f7269747907"
           "a46c69666fc3a56a6f624964a36a2d31a76261636b6f6666de0003a474797065"
           "ab6578706f6e656e7469616ca564656c6179cd01f4a66a6974746572cb3fe000"
           "0000000000b072656d6f76654f6e436f6d706c657465de0002a3616765cd0e10"
           "a5636f756e7405ac72656d6f76654f6e4661696c0aa26b6c05af737461636b54"
           "726163654c696d697403a974696d657374616d70cb4278bcfe56800000",
           "every option, in Node's order");

    crest_bullmq_opts_json(&b, &o);
    is_str(b.data,
           "{\"attempts\":3,\"delay\":5000,\"priority\":7,\"lifo\":true,"
           "\"jobId\":\"j-1\",\"backoff\":{\"type\":\"exponential\","
           "\"delay\":500,\"jitter\":0.5},\"removeOnComplete\":{\"age\":3600,"
           "\"count\":5},\"removeOnFail\":10,\"kl\":5,\"stackTraceLimit\":3,"
           "\"timestamp\":1700000000000}", "the same as JSON.stringify");

    is_int(crest_bullmq_add_op(&o), CREST_BQ_ADD_DELAYED, "delay wins");
    is_str(crest_bullmq_add_script(&o), "addDelayedJob", "addDelayedJob");
    {
        crest_bullmq_keys_t  k;
        crest_buf_t          kb;

        crest_buf_init(&kb, &crest_malloc_allocator);
        is_int(crest_bullmq_add_keys(&k, &kb, "bull", "q", &o), 6,
               "addDelayedJob takes 6 keys");
        is_str(k.key[3], "bull:q:delayed", "the delayed set");
        crest_buf_free(&kb);
    }
    o.delay = 0;
    is_int(crest_bullmq_add_op(&o), CREST_BQ_ADD_PRIORITIZED, "then priority");
    o.priority = 0;
    is_int(crest_bullmq_add_op(&o), CREST_BQ_ADD_STANDARD, "else standard");

    crest_bullmq_pack_fetch_opts(&b, "tok:1", 30000, NULL);
    is_str(hex(&b), "de0004a5746f6b656ea5746f6b3a31ac6c6f636b4475726174696f6e"
                    "cd7530a76c696d69746572c0a46e616d65c0",
           "moveToActive opts, undefined as nil");

    memset(&f, 0, sizeof(f));
    f.token = "t";
    f.worker = "w";
    f.lock_duration = 30000;
    f.attempts = 2;
    crest_bullmq_pack_finish_opts(&b, &f);
    is_str(hex(&b), "de000ba5746f6b656ea174a46e616d65a177a86b6565704a6f6273de"
                    "0001a5636f756e74ffa76c696d69746572c0ac6c6f636b4475726174"
                    "696f6ecd7530a8617474656d70747302ae6d61784d65747269637353"
                    "697a65a0a466706f66c2a463706f66c2a469646f66c2a472646f66c2",
           "moveToFinished opts");

    crest_bullmq_pack_strings(&b, s, 4);
    is_str(hex(&b), "94ac6661696c6564526561736f6ea4626f6f6daa737461636b74726163"
                    "65a25b5d", "field list");

    j = json_loads("[0, 127, 128, 255, 256, 65535, 65536, 4294967295,"
                   " 4294967296, -1, -32, -33, -128, -129, -32768, -32769,"
                   " -2147483648, -2147483649, 0.5, 1e300]", 0, &je);
    crest_bullmq_pack_json(&b, j);
    is_str(hex(&b), "dc0014007fcc80ccffcd0100cdffffce00010000ceffffffffcb41f0"
                    "000000000000ffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000"
                    "cbc1e0000000200000cb3fe0000000000000cb7e37e43c8800759c",
           "numbers the way msgpackr packs them");
    json_decref(j);

    j = json_loads("{\"a\":[1,2.5,\"x\",null,true,false,{}],\"b\":{\"c\":-7}}",
                   0, &je);
    crest_bullmq_pack_json(&b, j);
    is_str(hex(&b), "de0002a1619701cb4004000000000000a178c0c3c2de0000a162de"
                    "0001a163f9", "objects as map16, key order kept");
    json_decref(j);

    crest_buf_free(&b);
}


static void
test_opts_from_json(void)
{
    static const struct {
        const char  *json;
        const char  *want;      /* JSON of the parsed options, or NULL */
    } cases[] = {
        { "{}", "{\"attempts\":0}" },
        { "{\"backoff\":300,\"attempts\":2}",
          "{\"attempts\":2,\"backoff\":{\"type\":\"fixed\",\"delay\":300}}" },
        { "{\"removeOnComplete\":true,\"removeOnFail\":false}",
          "{\"attempts\":0,\"removeOnComplete\":true,\"removeOnFail\":false}" },
        { "{\"removeOnComplete\":{\"count\":3,\"age\":60}}",
          "{\"attempts\":0,\"removeOnComplete\":{\"age\":60,\"count\":3}}" },
        { "{\"keepLogs\":2,\"lifo\":true,\"priority\":0}",
          "{\"attempts\":0,\"lifo\":true,\"kl\":2}" },
        { "{\"jobId\":\"a:b:c\"}", "{\"attempts\":0,\"jobId\":\"a:b:c\"}" },
        { "{\"backoff\":{\"type\":\"fixed\",\"delay\":5},\"stackTraceLimit\":1,"
          "\"timestamp\":9}",
          "{\"attempts\":0,\"backoff\":{\"type\":\"fixed\",\"delay\":5},"
          "\"stackTraceLimit\":1,\"timestamp\":9}" },
        { "{\"delay\":1.0}", "{\"attempts\":0,\"delay\":1}" },
        { "{\"jobId\":\"12\"}", NULL },
        { "{\"jobId\":\"0:x\"}", NULL },
        { "{\"jobId\":\"a:b\"}", NULL },
        { "{\"priority\":1.5}", NULL },
        { "{\"priority\":2097152}", NULL },
        { "{\"backoff\":{\"type\":\"fixed\",\"delay\":1,\"jitter\":2}}", NULL },
        { "{\"backoff\":{\"type\":\"mine\"}}", NULL },
        { "{\"removeOnComplete\":{\"count\":1}}", NULL },
        { "{\"repeat\":{\"every\":5}}", NULL },
        { "{\"attempts\":-1}", NULL },
        { "[]", NULL },
    };
    crest_bullmq_opts_t  o;
    crest_buf_t          b;
    json_t              *j;
    json_error_t         je;
    char                 err[256];
    size_t               i;
    int                  rc;

    crest_buf_init(&b, &crest_malloc_allocator);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        j = json_loads(cases[i].json, 0, &je);
        err[0] = '\0';
        rc = crest_bullmq_opts_from_json(&o, j, err, sizeof(err));

        if (cases[i].want) {
            ok(rc == 0, "%s parses (%s)", cases[i].json, err);
            crest_bullmq_opts_json(&b, &o);
            is_str(b.data, cases[i].want, "%s as stored", cases[i].json);

        } else {
            ok(rc == -1 && err[0], "%s is refused: %s", cases[i].json, err);
        }

        json_decref(j);
    }

    crest_buf_free(&b);
}


static void
test_keep_and_backoff(void)
{
    crest_bullmq_keep_t     k;
    crest_bullmq_backoff_t  bo;
    crest_buf_t             b;
    json_t                 *j;
    json_error_t            je;

    crest_buf_init(&b, &crest_malloc_allocator);

    crest_bullmq_keep_from_json(&k, NULL);
    crest_bullmq_pack_keep(&b, &k);
    is_str(hex(&b), "de0001a5636f756e74ff", "unset: {count: -1}");

    j = json_true();
    crest_bullmq_keep_from_json(&k, j);
    crest_bullmq_pack_keep(&b, &k);
    is_str(hex(&b), "de0001a5636f756e7400", "true: {count: 0}");

    j = json_integer(7);
    crest_bullmq_keep_from_json(&k, j);
    crest_bullmq_pack_keep(&b, &k);
    is_str(hex(&b), "de0001a5636f756e7407", "7: {count: 7}");
    json_decref(j);

    j = json_loads("{\"age\":10}", 0, &je);
    crest_bullmq_keep_from_json(&k, j);
    crest_bullmq_pack_keep(&b, &k);
    is_str(hex(&b), "de0001a36167650a", "{age} as given");
    json_decref(j);

    j = json_integer(250);
    crest_bullmq_backoff_from_json(&bo, j);
    is_int(bo.type, CREST_BQ_BACKOFF_FIXED, "a number is fixed");
    is_int(crest_bullmq_backoff_delay(&bo, 1, 0.3), 250, "fixed delay");
    is_int(crest_bullmq_backoff_delay(&bo, 5, 0.3), 250, "fixed stays");
    json_decref(j);

    j = json_loads("{\"type\":\"exponential\",\"delay\":1000}", 0, &je);
    crest_bullmq_backoff_from_json(&bo, j);
    is_int(crest_bullmq_backoff_delay(&bo, 1, 0), 1000, "exponential 1st");
    is_int(crest_bullmq_backoff_delay(&bo, 2, 0), 2000, "exponential 2nd");
    is_int(crest_bullmq_backoff_delay(&bo, 4, 0), 8000, "exponential 4th");
    json_decref(j);

    j = json_loads("{\"type\":\"exponential\",\"delay\":3,\"jitter\":0.5}", 0,
                   &je);
    crest_bullmq_backoff_from_json(&bo, j);
    /* max = round(2^1 * 3) = 6; floor(rnd * 6 * 0.5 + 3) */
    is_int(crest_bullmq_backoff_delay(&bo, 2, 0), 3, "jitter low end");
    is_int(crest_bullmq_backoff_delay(&bo, 2, 0.999), 5, "jitter high end");
    json_decref(j);

    j = json_loads("{\"type\":\"exponential\",\"delay\":5}", 0, &je);
    crest_bullmq_backoff_from_json(&bo, j);
    /* Math.round(2^0 * 5) = 5, Math.round(0.5 * ...) not reached */
    is_int(crest_bullmq_backoff_delay(&bo, 1, 0), 5, "round");
    json_decref(j);

    j = json_loads("{\"type\":\"custom\",\"delay\":5}", 0, &je);
    crest_bullmq_backoff_from_json(&bo, j);
    is_int(crest_bullmq_backoff_delay(&bo, 1, 0), -1, "custom: unknown");
    json_decref(j);

    crest_bullmq_backoff_from_json(&bo, NULL);
    is_int(crest_bullmq_backoff_delay(&bo, 1, 0), 0, "none: 0");

    ok(crest_bullmq_should_retry(0, 3, 0), "1st failure of 3 retries");
    ok(crest_bullmq_should_retry(1, 3, 0), "2nd failure of 3 retries");
    ok(!crest_bullmq_should_retry(2, 3, 0), "3rd failure of 3 is final");
    ok(!crest_bullmq_should_retry(0, 0, 0), "attempts 0: no retry");
    ok(!crest_bullmq_should_retry(0, 3, 1), "unrecoverable: no retry");

    crest_buf_free(&b);
}


int
main(void)
{
    test_keys();
    test_client_name();
    test_pack();
    test_opts_from_json();
    test_keep_and_backoff();

    return done_testing();
}
