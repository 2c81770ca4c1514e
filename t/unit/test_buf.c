#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crest_buf.h"
#include "tap.h"


/*
 * An allocator that fails on demand and remembers every block, so that a
 * test can free them all at the end (like a pool) and count what happened.
 */
typedef struct {
    int      fail_after;    /* allocations that succeed; -1: all */
    int      allocs;
    int      frees;
    void    *blocks[64];
    int      nblocks;
} test_alloc_t;


static void *
test_alloc(void *ctx, size_t size)
{
    test_alloc_t  *t = ctx;
    void          *p;

    if (t->fail_after >= 0 && t->allocs >= t->fail_after) {
        return NULL;
    }

    if (t->nblocks == 64) {
        return NULL;
    }

    p = malloc(size);
    if (p == NULL) {
        return NULL;
    }

    t->allocs++;
    t->blocks[t->nblocks++] = p;

    return p;
}


static void
test_free(void *ctx, void *p)
{
    test_alloc_t  *t = ctx;
    int            i;

    for (i = 0; i < t->nblocks; i++) {
        if (t->blocks[i] == p) {
            t->blocks[i] = t->blocks[--t->nblocks];
            t->frees++;
            free(p);
            return;
        }
    }
}


static void
test_alloc_release(test_alloc_t *t)
{
    while (t->nblocks) {
        free(t->blocks[--t->nblocks]);
    }
}


static void
test_growth(void)
{
    crest_buf_t  b;
    size_t       i, cap;
    int          intact;

    crest_buf_init(&b, &crest_malloc_allocator);
    ok(b.data == NULL && b.len == 0 && b.cap == 0, "init allocates nothing");

    crest_buf_append(&b, "", 0);
    ok(b.data == NULL, "an empty append allocates nothing");

    crest_buf_appendc(&b, 'x');
    is_int(b.len, 1, "appendc");
    is_int(b.cap, 256, "first block is 256 bytes");
    is_str(b.data, "x", "data is NUL-terminated");

    for (i = 1; i < 1000; i++) {
        crest_buf_appendc(&b, (char) ('a' + i % 26));
    }

    intact = 1;
    for (i = 1; i < 1000; i++) {
        intact &= b.data[i] == (char) ('a' + i % 26);
    }

    is_int(b.len, 1000, "1000 bytes appended one at a time");
    ok(intact && b.data[0] == 'x', "content survives reallocation");
    ok(b.cap >= 1001, "capacity keeps room for the NUL");
    ok(b.data[1000] == '\0', "still NUL-terminated after growth");
    is_int(b.cap, 1024, "capacity doubles");

    cap = b.cap;
    crest_buf_reset(&b);
    ok(b.len == 0 && b.cap == cap && b.data[0] == '\0',
       "reset empties but keeps the block");

    crest_buf_appends(&b, "hello, ");
    crest_buf_append(&b, "world!!", 5);
    is_str(b.data, "hello, world", "appends + append with a length");

    crest_buf_free(&b);
    ok(b.data == NULL && b.len == 0 && b.cap == 0, "free clears the buffer");

    crest_buf_appends(&b, "again");
    is_str(b.data, "again", "a freed buffer can be reused");
    crest_buf_free(&b);
}


static void
test_reserve(void)
{
    crest_buf_t  b;

    crest_buf_init(&b, &crest_malloc_allocator);

    is_int(crest_buf_reserve(&b, 5000), 0, "reserve 5000");
    ok(b.cap >= 5001 && b.len == 0, "reserve grows capacity, not length");

    crest_buf_appends(&b, "ab");
    is_int(crest_buf_reserve(&b, SIZE_MAX - 1), -1,
           "reserving more than size_t can hold fails");
    ok(crest_buf_failed(&b), "and the failure sticks");
    crest_buf_appends(&b, "cd");
    is_str(b.data, "ab", "appends after a failure are no-ops");

    crest_buf_free(&b);
}


static void
test_alloc_failure(void)
{
    test_alloc_t       t;
    crest_allocator_t  a;
    crest_buf_t        b;
    char               big[600];

    memset(&t, 0, sizeof(t));
    t.fail_after = 1;
    a.alloc = test_alloc;
    a.free = test_free;
    a.ctx = &t;

    crest_buf_init(&b, &a);
    crest_buf_appends(&b, "first");
    ok(!crest_buf_failed(&b), "first allocation succeeds");

    memset(big, 'z', sizeof(big));
    crest_buf_append(&b, big, sizeof(big));
    ok(crest_buf_failed(&b), "growing past the failing allocator fails");
    is_str(b.data, "first", "old contents are kept");
    is_int(b.len, 5, "length unchanged");

    crest_buf_appends(&b, "x");
    crest_buf_appendc(&b, 'y');
    crest_buf_appendf(&b, "%d", 42);
    is_int(b.len, 5, "append, appendc, appendf do nothing once failed");
    ok(crest_buf_failed(&b), "failure is sticky");
    is_int(crest_buf_reserve(&b, 1), -1, "reserve reports the failure");
    is_int(t.allocs, 1, "no allocation attempted after the failure");

    crest_buf_reset(&b);
    ok(!crest_buf_failed(&b), "reset clears the failure");
    crest_buf_appends(&b, "ok");
    is_str(b.data, "ok", "and the buffer works again");

    crest_buf_free(&b);
    is_int(t.frees, 1, "free hands the block back");
    is_int(t.nblocks, 0, "nothing leaked");

    /* an allocator that never succeeds */
    memset(&t, 0, sizeof(t));
    t.fail_after = 0;
    crest_buf_init(&b, &a);
    crest_buf_appendf(&b, "%s", "x");
    ok(crest_buf_failed(&b) && b.data == NULL && b.len == 0,
       "appendf with no memory at all fails cleanly");
    crest_buf_free(&b);
}


static void
test_pool_allocator(void)
{
    test_alloc_t       t;
    crest_allocator_t  a;
    crest_buf_t        b;
    int                i;

    /* free == NULL: the pool frees in bulk, the buffer must not try to */
    memset(&t, 0, sizeof(t));
    t.fail_after = -1;
    a.alloc = test_alloc;
    a.free = NULL;
    a.ctx = &t;

    crest_buf_init(&b, &a);

    for (i = 0; i < 2000; i++) {
        crest_buf_appendc(&b, 'p');
    }

    ok(!crest_buf_failed(&b) && b.len == 2000, "pool-backed buffer grows");
    is_int(t.allocs, 4, "256 -> 512 -> 1024 -> 2048");
    is_int(t.frees, 0, "and never frees");

    crest_buf_free(&b);
    ok(b.data == NULL, "crest_buf_free forgets the block");
    test_alloc_release(&t);
}


static void
test_appendf(void)
{
    crest_buf_t  b;
    char         big[1001];

    crest_buf_init(&b, &crest_malloc_allocator);

    crest_buf_appendf(&b, "%d-%s-%c", 7, "seven", '7');
    is_str(b.data, "7-seven-7", "appendf formats");

    crest_buf_appendf(&b, "%s", "");
    is_int(b.len, 9, "empty format result appends nothing");

    memset(big, 'q', 1000);
    big[1000] = '\0';
    crest_buf_appendf(&b, "[%s]", big);
    is_int(b.len, 9 + 1002, "appendf grows the buffer as needed");
    ok(b.data[9] == '[' && b.data[1010] == ']' && b.data[1011] == '\0',
       "formatted output lands in place, NUL-terminated");

    crest_buf_reset(&b);
    crest_buf_appendf(&b, "%lld", (long long) INT64_MIN);
    is_str(b.data, "-9223372036854775808", "appendf of INT64_MIN");

    crest_buf_free(&b);
}


int
main(void)
{
    test_growth();
    test_reserve();
    test_alloc_failure();
    test_pool_allocator();
    test_appendf();

    return done_testing();
}
