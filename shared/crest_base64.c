#include <stdint.h>
#include <string.h>

#include "crest_base64.h"


static const char  crest_b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/*
 * Decoding table holding value + 1, so that the zero the compiler fills in
 * for every other byte means "not in the alphabet".
 */
#define B(c, v)  [c] = (v) + 1

static const uint8_t  crest_b64url_value[256] = {
    B('A', 0),  B('B', 1),  B('C', 2),  B('D', 3),  B('E', 4),  B('F', 5),
    B('G', 6),  B('H', 7),  B('I', 8),  B('J', 9),  B('K', 10), B('L', 11),
    B('M', 12), B('N', 13), B('O', 14), B('P', 15), B('Q', 16), B('R', 17),
    B('S', 18), B('T', 19), B('U', 20), B('V', 21), B('W', 22), B('X', 23),
    B('Y', 24), B('Z', 25),
    B('a', 26), B('b', 27), B('c', 28), B('d', 29), B('e', 30), B('f', 31),
    B('g', 32), B('h', 33), B('i', 34), B('j', 35), B('k', 36), B('l', 37),
    B('m', 38), B('n', 39), B('o', 40), B('p', 41), B('q', 42), B('r', 43),
    B('s', 44), B('t', 45), B('u', 46), B('v', 47), B('w', 48), B('x', 49),
    B('y', 50), B('z', 51),
    B('0', 52), B('1', 53), B('2', 54), B('3', 55), B('4', 56), B('5', 57),
    B('6', 58), B('7', 59), B('8', 60), B('9', 61),
    B('-', 62), B('_', 63),
};

#undef B


size_t
crest_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}


size_t
crest_b64url_decoded_len(size_t n)
{
    if (n % 4 == 1) {
        return (size_t) -1;
    }

    return n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}


size_t
crest_b64url_encode(char *dst, const void *src, size_t n)
{
    const uint8_t  *s = src;
    char           *d = dst;
    uint32_t        v;

    for ( /* void */ ; n >= 3; n -= 3, s += 3) {
        v = (uint32_t) s[0] << 16 | (uint32_t) s[1] << 8 | s[2];
        *d++ = crest_b64url_alphabet[v >> 18];
        *d++ = crest_b64url_alphabet[(v >> 12) & 63];
        *d++ = crest_b64url_alphabet[(v >> 6) & 63];
        *d++ = crest_b64url_alphabet[v & 63];
    }

    if (n == 2) {
        v = (uint32_t) s[0] << 16 | (uint32_t) s[1] << 8;
        *d++ = crest_b64url_alphabet[v >> 18];
        *d++ = crest_b64url_alphabet[(v >> 12) & 63];
        *d++ = crest_b64url_alphabet[(v >> 6) & 63];

    } else if (n == 1) {
        v = (uint32_t) s[0] << 16;
        *d++ = crest_b64url_alphabet[v >> 18];
        *d++ = crest_b64url_alphabet[(v >> 12) & 63];
    }

    return (size_t) (d - dst);
}


void
crest_b64url_append(crest_buf_t *b, const void *src, size_t n)
{
    size_t  len;

    if (n > (SIZE_MAX - 4) / 4 * 3) {
        b->failed = 1;
        return;
    }

    len = crest_b64url_encoded_len(n);

    if (len == 0 || crest_buf_reserve(b, len) != 0) {
        return;
    }

    b->len += crest_b64url_encode(b->data + b->len, src, n);
    b->data[b->len] = '\0';
}


int
crest_b64url_decode(void *dst, size_t cap, const char *src, size_t n,
    size_t *out_len)
{
    const uint8_t  *s = (const uint8_t *) src;
    uint8_t        *d = dst;
    uint32_t        v, c0, c1, c2, c3;
    size_t          len, rest;

    len = crest_b64url_decoded_len(n);

    if (len == (size_t) -1 || len > cap) {
        return -1;
    }

    for (rest = n; rest >= 4; rest -= 4, s += 4) {
        c0 = crest_b64url_value[s[0]];
        c1 = crest_b64url_value[s[1]];
        c2 = crest_b64url_value[s[2]];
        c3 = crest_b64url_value[s[3]];

        if (c0 == 0 || c1 == 0 || c2 == 0 || c3 == 0) {
            return -1;
        }

        v = (c0 - 1) << 18 | (c1 - 1) << 12 | (c2 - 1) << 6 | (c3 - 1);
        *d++ = (uint8_t) (v >> 16);
        *d++ = (uint8_t) (v >> 8);
        *d++ = (uint8_t) v;
    }

    if (rest) {
        c0 = crest_b64url_value[s[0]];
        c1 = crest_b64url_value[s[1]];
        c2 = rest == 3 ? crest_b64url_value[s[2]] : 1;

        if (c0 == 0 || c1 == 0 || c2 == 0) {
            return -1;
        }

        v = (c0 - 1) << 18 | (c1 - 1) << 12 | (c2 - 1) << 6;

        /*
         * The bits past the last whole byte must be zero, or several
         * encodings would decode to the same bytes.
         */
        if (rest == 2 ? (v & 0xffff) != 0 : (v & 0xff) != 0) {
            return -1;
        }

        *d++ = (uint8_t) (v >> 16);

        if (rest == 3) {
            *d++ = (uint8_t) (v >> 8);
        }
    }

    *out_len = len;

    return 0;
}
