#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crest_buf.h"


static void *
crest_malloc_alloc(void *ctx, size_t size)
{
    (void) ctx;
    return malloc(size);
}


static void
crest_malloc_free(void *ctx, void *p)
{
    (void) ctx;
    free(p);
}


const crest_allocator_t  crest_malloc_allocator = {
    crest_malloc_alloc, crest_malloc_free, NULL
};


void
crest_buf_init(crest_buf_t *b, const crest_allocator_t *a)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->a = a;
    b->failed = 0;
}


int
crest_buf_reserve(crest_buf_t *b, size_t extra)
{
    size_t  need, cap;
    char   *p;

    if (b->failed) {
        return -1;
    }

    if (extra > SIZE_MAX - b->len - 1) {
        b->failed = 1;
        return -1;
    }

    /* one spare byte keeps data NUL-terminated for printf-style callers */
    need = b->len + extra + 1;

    if (need <= b->cap) {
        return 0;
    }

    cap = b->cap ? b->cap : 256;

    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }

    p = b->a->alloc(b->a->ctx, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }

    if (b->len) {
        memcpy(p, b->data, b->len);
    }

    if (b->data && b->a->free) {
        b->a->free(b->a->ctx, b->data);
    }

    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';

    return 0;
}


void
crest_buf_append(crest_buf_t *b, const void *p, size_t n)
{
    if (n == 0 || crest_buf_reserve(b, n) != 0) {
        return;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}


void
crest_buf_appends(crest_buf_t *b, const char *s)
{
    crest_buf_append(b, s, strlen(s));
}


void
crest_buf_appendc(crest_buf_t *b, char c)
{
    crest_buf_append(b, &c, 1);
}


void
crest_buf_appendf(crest_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    if (b->failed) {
        return;
    }

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);

    if (n < 0) {
        b->failed = 1;
        return;
    }

    if (crest_buf_reserve(b, (size_t) n) != 0) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);

    b->len += (size_t) n;
}


void
crest_buf_reset(crest_buf_t *b)
{
    b->len = 0;
    b->failed = 0;

    if (b->data) {
        b->data[0] = '\0';
    }
}


void
crest_buf_free(crest_buf_t *b)
{
    if (b->data && b->a->free) {
        b->a->free(b->a->ctx, b->data);
    }

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
