#include <string.h>

#include "crest_duration.h"
#include "tap.h"


typedef struct {
    const char  *in;
    int64_t      secs;
} dur_case_t;


static const dur_case_t  good[] = {
    { "PT4M13S", 253 },
    { "PT0S", 0 },
    { "P0D", 0 },
    { "PT1H", 3600 },
    { "PT1H2M3S", 3723 },
    { "PT15M", 900 },
    { "PT59S", 59 },
    { "P1DT2H3M4S", 93784 },
    { "P1D", 86400 },
    { "P2W", 1209600 },
    { "P1W1DT1S", 691201 },
    { "PT90M", 5400 },
    { "PT36H", 129600 },
    { "PT1.5S", 1 },
    { "PT2M0,999S", 120 },
    { "PT0001M", 60 },
    { "P115740DT17H46M40S", INT64_C(10000000000) },
};

static const char  *bad[] = {
    "", "P", "PT", "T1S", "pt1s", "PT1s", "P1Y", "P1M", "P1Y2M3D", "PT1H1H",
    "PT1S1M", "PT1M1H", "P1DT", "PTS", "PT-1S", "PT+1S", "PT 1S", "PT1.S",
    "PT.5S", "PT1.5M", "P1.5D", "PT1", "P1", "P1DT1D", "PT1HT1M", "1S",
    "PT4M13SX", "P1D1W", "P115740DT17H46M41S", "PT99999999999999999999S",
    "P99999999999W",
};


int
main(void)
{
    size_t   i;
    int64_t  secs;
    char     buf[64];

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        secs = -1;
        ok(crest_duration_parse(good[i].in, strlen(good[i].in), &secs) == 0
           && secs == good[i].secs, "%s = %lld (got %lld)", good[i].in,
           (long long) good[i].secs, (long long) secs);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        secs = 42;
        ok(crest_duration_parse(bad[i], strlen(bad[i]), &secs) == -1
           && secs == 42, "\"%s\" is refused, *secs untouched", bad[i]);
    }

    /* the length bounds the parse: no NUL needed, none read past */
    memcpy(buf, "PT4M13S9999", 11);
    ok(crest_duration_parse(buf, 7, &secs) == 0 && secs == 253,
       "only len bytes are read");
    ok(crest_duration_parse(buf, 6, &secs) == -1, "a cut designator fails");
    ok(crest_duration_parse(NULL, 0, &secs) == -1, "NULL");
    ok(crest_duration_parse("PT1S\0", 5, &secs) == -1, "an embedded NUL");

    return done_testing();
}
