/*
 * A minimal TAP producer for the C unit tests, read by t/00-unit.t.
 *
 *     plan(3);                 optional: otherwise done_testing() prints it
 *     ok(x > 0, "x is %d", x);
 *     is_str(got, "want", "name");
 *     is_int(got, 42, "name");
 *     return done_testing();   exit status 1 on any failure or miscount
 *
 * Diagnostics go to stdout as '#' lines, so that they stay in order with the
 * results whatever the harness does with stderr.
 */
#ifndef CREST_TAP_H
#define CREST_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int  tap_planned = -1;
static int  tap_run;
static int  tap_failed;


static inline void
plan(int n)
{
    tap_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}


static inline void
diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline void
diag(const char *fmt, ...)
{
    va_list  ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}


static inline int
tap_vresult(int pass, const char *file, int line, const char *fmt,
    va_list ap)
{
    tap_run++;

    printf("%sok %d - ", pass ? "" : "not ", tap_run);
    vprintf(fmt, ap);
    printf("\n");

    if (!pass) {
        tap_failed++;
        printf("#   Failed test at %s line %d.\n", file, line);
    }

    fflush(stdout);

    return pass;
}


static inline int
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline int
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    pass = tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);

    return pass;
}


static inline int
tap_is_str(const char *got, const char *want, const char *file, int line,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static inline int
tap_is_str(const char *got, const char *want, const char *file, int line,
    const char *fmt, ...)
{
    va_list  ap;
    int      pass;

    pass = (got == NULL || want == NULL) ? got == want
                                         : strcmp(got, want) == 0;

    va_start(ap, fmt);
    tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);

    if (!pass) {
        printf("#          got: %s%s%s\n", got ? "'" : "",
               got ? got : "NULL", got ? "'" : "");
        printf("#     expected: %s%s%s\n", want ? "'" : "",
               want ? want : "NULL", want ? "'" : "");
        fflush(stdout);
    }

    return pass;
}


static inline int
tap_is_int(long long got, long long want, const char *file, int line,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static inline int
tap_is_int(long long got, long long want, const char *file, int line,
    const char *fmt, ...)
{
    va_list  ap;
    int      pass;

    pass = got == want;

    va_start(ap, fmt);
    tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);

    if (!pass) {
        printf("#          got: %lld\n#     expected: %lld\n", got, want);
        fflush(stdout);
    }

    return pass;
}


static inline int
done_testing(void)
{
    if (tap_planned < 0) {
        printf("1..%d\n", tap_run);

    } else if (tap_run != tap_planned) {
        printf("# Looks like you planned %d tests but ran %d.\n",
               tap_planned, tap_run);
        fflush(stdout);
        return 1;
    }

    if (tap_failed) {
        printf("# Looks like you failed %d test%s of %d.\n", tap_failed,
               tap_failed == 1 ? "" : "s", tap_run);
    }

    fflush(stdout);

    return tap_failed ? 1 : 0;
}


#define ok(cond, ...)  tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...)                                               \
    tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                               \
    tap_is_int((long long) (got), (long long) (want), __FILE__, __LINE__,    \
               __VA_ARGS__)

#endif /* CREST_TAP_H */
