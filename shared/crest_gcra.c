#include "crest_gcra.h"


void
crest_gcra_from_used(int allowed, int64_t used, int64_t interval,
    int64_t burst, int64_t cost, crest_gcra_result_t *res)
{
    int64_t  cap;

    cap = interval * burst;

    if (used < 0) {
        used = 0;
    }

    res->allowed = allowed;
    res->remaining = used >= cap ? 0 : (cap - used) / interval;
    res->reset = used;
    res->retry_after = 0;

    if (!allowed) {
        /* until enough has drained for this request to fit */
        res->retry_after = used + interval * cost - cap;

        if (res->retry_after < 0) {
            res->retry_after = 0;
        }
    }
}


void
crest_gcra(int64_t now, int64_t *tat, int64_t interval, int64_t burst,
    int64_t cost, crest_gcra_result_t *res)
{
    int64_t  t, next;

    if (interval < 1) {
        interval = 1;
    }

    t = *tat > now ? *tat : now;
    next = t + interval * cost;

    if (next - now <= interval * burst) {
        *tat = next;
        crest_gcra_from_used(1, next - now, interval, burst, cost, res);
        return;
    }

    crest_gcra_from_used(0, t - now, interval, burst, cost, res);
}
