/* Unit tests for workers/backoff.c, included directly. */
#include "../../workers/backoff.c"
#include "tap.h"


static void
test_growth(void)
{
    crest_backoff_t  b;
    unsigned         d, want, i, lo_ok, hi_ok;

    crest_backoff_init(&b, 100, 5000, 42);

    want = 100;
    for (i = 0; i < 6; i++) {
        d = crest_backoff_next(&b);
        ok(d >= want / 2 && d <= want, "retry %u waits %u, in [%u, %u]",
           i + 1, d, want / 2, want);
        want *= 2;
    }

    lo_ok = hi_ok = 1;
    for (i = 0; i < 1000; i++) {
        d = crest_backoff_next(&b);
        lo_ok &= d >= 2500;
        hi_ok &= d <= 5000;
    }
    ok(lo_ok && hi_ok, "capped at 5 s (with jitter down to 2.5 s)");

    crest_backoff_reset(&b);
    d = crest_backoff_next(&b);
    ok(d >= 50 && d <= 100, "reset starts over (%u)", d);
}


static void
test_jitter(void)
{
    crest_backoff_t  a, b;
    unsigned         i, same, seen_lo, seen_hi, d;

    crest_backoff_init(&a, 100, 5000, 1);
    crest_backoff_init(&b, 100, 5000, 1);
    same = 1;
    for (i = 0; i < 20; i++) {
        same &= crest_backoff_next(&a) == crest_backoff_next(&b);
    }
    ok(same, "same seed, same delays");

    crest_backoff_init(&a, 100, 5000, 1);
    crest_backoff_init(&b, 100, 5000, 2);
    same = 1;
    for (i = 0; i < 20; i++) {
        same &= crest_backoff_next(&a) == crest_backoff_next(&b);
    }
    ok(!same, "different seeds spread out");

    /* at the cap the delays should cover the whole jitter range */
    crest_backoff_init(&a, 100, 5000, 7);
    seen_lo = seen_hi = 0;
    for (i = 0; i < 2000; i++) {
        d = crest_backoff_next(&a);
        seen_lo |= d < 3000;
        seen_hi |= d > 4500;
    }
    ok(seen_lo && seen_hi, "jitter spans the range");
}


static void
test_edges(void)
{
    crest_backoff_t  b;
    unsigned         i, d, max;

    crest_backoff_init(&b, 0, 0, 3);
    d = crest_backoff_next(&b);
    ok(d <= 1, "base 0 is treated as 1 ms");

    crest_backoff_init(&b, 1000, 10, 3);
    d = crest_backoff_next(&b);
    ok(d >= 500 && d <= 1000, "a cap below base is raised to base (%u)", d);

    crest_backoff_init(&b, 1, 4000000000u, 3);
    max = 0;
    for (i = 0; i < 100; i++) {
        d = crest_backoff_next(&b);
        max = d > max ? d : max;
    }
    ok(max <= 4000000000u && max >= 2000000000u,
       "no overflow with a huge cap (%u)", max);
}


int
main(void)
{
    test_growth();
    test_jitter();
    test_edges();

    return done_testing();
}
