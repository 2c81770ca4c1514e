/*
 * A growable byte buffer whose memory comes from the caller.
 *
 * Code in shared/ is linked into nginx modules and into the workers, so it
 * never picks an allocator itself: nginx passes one backed by a request pool,
 * the workers one backed by malloc.  A failed allocation is sticky: every
 * later append is a no-op and crest_buf_failed() reports it once at the end,
 * which keeps call sites free of per-append error checks.
 */
#ifndef CREST_BUF_H
#define CREST_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* Returns a block of at least size bytes, or NULL. */
    void  *(*alloc)(void *ctx, size_t size);
    /* May be NULL when the allocator frees in bulk (nginx pools). */
    void   (*free)(void *ctx, void *p);
    void    *ctx;
} crest_allocator_t;

typedef struct {
    char                     *data;
    size_t                    len;
    size_t                    cap;
    const crest_allocator_t  *a;
    int                       failed;
} crest_buf_t;

extern const crest_allocator_t  crest_malloc_allocator;

void crest_buf_init(crest_buf_t *b, const crest_allocator_t *a);
int crest_buf_reserve(crest_buf_t *b, size_t extra);
void crest_buf_append(crest_buf_t *b, const void *p, size_t n);
void crest_buf_appends(crest_buf_t *b, const char *s);
void crest_buf_appendc(crest_buf_t *b, char c);
void crest_buf_appendf(crest_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void crest_buf_reset(crest_buf_t *b);
void crest_buf_free(crest_buf_t *b);

static inline int
crest_buf_failed(const crest_buf_t *b)
{
    return b->failed;
}

#endif /* CREST_BUF_H */
