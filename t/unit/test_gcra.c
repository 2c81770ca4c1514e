#include "crest_gcra.h"
#include "tap.h"


int
main(void)
{
    int                  i, passed;
    int64_t              tat, now;
    crest_gcra_result_t  res;

    /* 10 a minute, burst 10: ten at once pass, counting down, then no */
    tat = 0;
    now = 1000000;
    passed = 0;

    for (i = 1; i <= 10; i++) {
        crest_gcra(now, &tat, 6000, 10, 1, &res);
        passed += res.allowed;
        is_int(res.remaining, 10 - i, "request %d: remaining %d", i, 10 - i);
    }

    is_int(passed, 10, "exactly ten pass");
    is_int(res.reset, 60000, "the bucket is full again in a minute");

    crest_gcra(now, &tat, 6000, 10, 1, &res);
    ok(!res.allowed, "the eleventh is refused");
    is_int(res.remaining, 0, "nothing remains");
    is_int(res.retry_after, 6000, "retry after one interval");
    is_int(tat, now + 60000, "a refusal does not move the TAT");

    crest_gcra(now + 5999, &tat, 6000, 10, 1, &res);
    ok(!res.allowed, "still refused just before the interval");
    crest_gcra(now + 6000, &tat, 6000, 10, 1, &res);
    ok(res.allowed, "one passes after the interval");
    is_int(res.remaining, 0, "and takes the one token");

    /* idle for long: the bucket is full, never more than full */
    crest_gcra(now + 10000000, &tat, 6000, 10, 1, &res);
    ok(res.allowed, "after a long idle time it passes");
    is_int(res.remaining, 9, "with a full bucket less one");

    /* weights */
    tat = 0;
    crest_gcra(now, &tat, 1000, 5, 3, &res);
    ok(res.allowed && res.remaining == 2, "cost 3 of 5 leaves 2");
    crest_gcra(now, &tat, 1000, 5, 3, &res);
    ok(!res.allowed, "another cost 3 does not fit");
    is_int(res.retry_after, 1000, "until one more token drains");
    crest_gcra(now, &tat, 1000, 5, 2, &res);
    ok(res.allowed && res.remaining == 0, "cost 2 fits exactly");

    /* burst 1: strictly spaced */
    tat = 0;
    crest_gcra(now, &tat, 100, 1, 1, &res);
    ok(res.allowed, "burst 1: first passes");
    crest_gcra(now + 50, &tat, 100, 1, 1, &res);
    ok(!res.allowed, "burst 1: one 50 ms later is refused");
    is_int(res.retry_after, 50, "retry in 50 ms");

    /* from_used agrees with the local computation */
    crest_gcra_from_used(1, 18000, 6000, 10, 1, &res);
    is_int(res.remaining, 7, "used 3 intervals of 10: 7 remain");
    crest_gcra_from_used(0, 60000, 6000, 10, 1, &res);
    is_int(res.retry_after, 6000, "full bucket: retry after an interval");

    return done_testing();
}
