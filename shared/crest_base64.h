/*
 * base64url (RFC 4648 section 5) without padding, as JWS uses it.
 *
 * Decoding is strict because a token that decodes is about to be trusted:
 * only the 64 alphabet characters, no '=' padding, no whitespace, no length
 * of the form 4k + 1, and the unused low bits of the last character must be
 * zero.  So every byte string has exactly one accepted encoding, and
 * encode(decode(s)) == s for every s that decodes.
 *
 * Nothing here allocates except crest_b64url_append(), which grows the
 * caller's buffer.
 */
#ifndef CREST_BASE64_H
#define CREST_BASE64_H

#include <stddef.h>

#include "crest_buf.h"

/* Characters in the encoding of n bytes. */
size_t crest_b64url_encoded_len(size_t n);

/*
 * Bytes that n characters decode to, or (size_t) -1 when no valid encoding
 * has n characters (n % 4 == 1).
 */
size_t crest_b64url_decoded_len(size_t n);

/*
 * Encodes src[0..n) into dst, which has room for crest_b64url_encoded_len(n)
 * characters; writes no NUL.  Returns the number of characters written.
 */
size_t crest_b64url_encode(char *dst, const void *src, size_t n);

/* Appends the encoding of src[0..n) to b (sticky failure as crest_buf). */
void crest_b64url_append(crest_buf_t *b, const void *src, size_t n);

/*
 * Decodes src[0..n) into dst[0..cap).  Returns 0 and sets *out_len, or -1
 * when the input is not canonical unpadded base64url or does not fit.
 * dst is left in an unspecified state on failure.
 */
int crest_b64url_decode(void *dst, size_t cap, const char *src, size_t n,
    size_t *out_len);

#endif /* CREST_BASE64_H */
