#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crest_base64.h"
#include "tap.h"


typedef struct {
    const char  *raw;
    size_t       raw_len;
    const char  *enc;
} b64_vector_t;

/* RFC 4648 section 10, unpadded, plus bytes that use '-' and '_'. */
static const b64_vector_t  vectors[] = {
    { "", 0, "" },
    { "f", 1, "Zg" },
    { "fo", 2, "Zm8" },
    { "foo", 3, "Zm9v" },
    { "foob", 4, "Zm9vYg" },
    { "fooba", 5, "Zm9vYmE" },
    { "foobar", 6, "Zm9vYmFy" },
    { "\xfb\xff\xbf", 3, "-_-_" },
    { "\xfb\xff", 2, "-_8" },
    { "\x00", 1, "AA" },
    { "\x00\x00\x00", 3, "AAAA" },
    { "\xff\xff\xff\xff", 4, "_____w" },
};

/* Each is refused: padding, other alphabets, stray bytes, bad lengths, and
 * non-zero bits after the last whole byte. */
static const char  *rejects[] = {
    "Zg==", "Zg=", "Zm8=", "=", "====", "Z", "Zm9vY", "Zm9v=",
    "Zm+v", "Zm/v", "Zm9 v", "Zm9v\n", " Zm9v", "Zm\r\n9v", "Zm.v", "Zm9v%",
    "Zh", "Zm9", "Zm9vYh", "_____x", "AB", "AAB",
};


static void
test_vectors(void)
{
    char           enc[64];
    unsigned char  dec[64];
    size_t         i, n, len;
    crest_buf_t    b;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const b64_vector_t  *v = &vectors[i];

        n = crest_b64url_encode(enc, v->raw, v->raw_len);
        enc[n] = '\0';
        is_str(enc, v->enc, "encode vector %zu", i);
        is_int(crest_b64url_encoded_len(v->raw_len), strlen(v->enc),
               "encoded_len vector %zu", i);
        is_int(crest_b64url_decoded_len(strlen(v->enc)), v->raw_len,
               "decoded_len vector %zu", i);

        len = 99;
        ok(crest_b64url_decode(dec, sizeof(dec), v->enc, strlen(v->enc),
                               &len) == 0
           && len == v->raw_len && memcmp(dec, v->raw, len) == 0,
           "decode vector %zu (%s)", i, v->enc);

        crest_buf_init(&b, &crest_malloc_allocator);
        crest_buf_appends(&b, "x.");
        crest_b64url_append(&b, v->raw, v->raw_len);
        ok(!crest_buf_failed(&b) && b.len == 2 + strlen(v->enc)
           && memcmp(b.data + 2, v->enc, strlen(v->enc)) == 0
           && b.data[b.len] == '\0', "append vector %zu", i);
        crest_buf_free(&b);
    }
}


/* s with control characters shown as \xNN, so test names stay one line. */
static const char *
printable(const char *s)
{
    static char  out[64];
    size_t       n;

    for (n = 0; *s && n < sizeof(out) - 5; s++) {
        if ((unsigned char) *s < 0x20) {
            n += (size_t) snprintf(out + n, sizeof(out) - n, "\\x%02x",
                                   (unsigned char) *s);
        } else {
            out[n++] = *s;
        }
    }

    out[n] = '\0';

    return out;
}


static void
test_rejects(void)
{
    unsigned char  dec[64];
    size_t         i, len;

    for (i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
        ok(crest_b64url_decode(dec, sizeof(dec), rejects[i],
                               strlen(rejects[i]), &len) == -1,
           "refuses \"%s\"", printable(rejects[i]));
    }

    ok(crest_b64url_decode(dec, sizeof(dec), "Zm\0v", 4, &len) == -1,
       "refuses a NUL byte");
    ok(crest_b64url_decode(dec, sizeof(dec), "Zm\xc3\xa9", 4, &len) == -1,
       "refuses non-ASCII bytes");
    is_int(crest_b64url_decoded_len(5), (size_t) -1, "4k+1 characters: no "
           "decoded length");

    /* "Zm9vYmFy" is 6 bytes: a 5-byte buffer is too small, 6 is enough */
    ok(crest_b64url_decode(dec, 5, "Zm9vYmFy", 8, &len) == -1,
       "refuses output that does not fit");
    ok(crest_b64url_decode(dec, 6, "Zm9vYmFy", 8, &len) == 0 && len == 6,
       "output that fits exactly");
}


/* Every 2- and 3-character string over all bytes decodes iff canonical,
 * and a decoded one re-encodes to itself. */
static void
test_exhaustive_tails(void)
{
    char           in[3], enc[4];
    unsigned char  dec[4];
    size_t         len, n;
    unsigned       a, b, accepted2, accepted3, bad;

    accepted2 = accepted3 = bad = 0;

    for (a = 0; a < 256; a++) {
        for (b = 0; b < 256; b++) {
            in[0] = (char) a;
            in[1] = (char) b;

            if (crest_b64url_decode(dec, sizeof(dec), in, 2, &len) == 0) {
                accepted2++;
                n = crest_b64url_encode(enc, dec, len);
                bad += n != 2 || memcmp(enc, in, 2) != 0;
            }

            /* the third character over all bytes, with 'Q' first */
            in[0] = 'Q';
            in[1] = (char) a;
            in[2] = (char) b;

            if (crest_b64url_decode(dec, sizeof(dec), in, 3, &len) == 0) {
                accepted3++;
                n = crest_b64url_encode(enc, dec, len);
                bad += n != 3 || memcmp(enc, in, 3) != 0;
            }
        }
    }

    /* 64 first characters x 4 second ones whose low 4 bits are zero */
    is_int(accepted2, 64 * 4, "2 characters: exactly the canonical "
           "encodings of 1 byte are accepted");
    /* 64 second characters x 16 third ones whose low 2 bits are zero */
    is_int(accepted3, 64 * 16, "3 characters: exactly the canonical "
           "encodings are accepted");
    is_int(bad, 0, "accepted tails re-encode to themselves");
}


static void
test_round_trips(void)
{
    unsigned char  raw[300], dec[300];
    char           enc[400];
    size_t         n, i, elen, dlen, fails;
    uint32_t       x;

    fails = 0;
    x = 2463534242u;

    for (n = 0; n <= sizeof(raw); n++) {
        for (i = 0; i < n; i++) {
            /* xorshift: deterministic bytes of every value */
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            raw[i] = (unsigned char) x;
        }

        elen = crest_b64url_encode(enc, raw, n);

        if (elen != crest_b64url_encoded_len(n)
            || crest_b64url_decode(dec, sizeof(dec), enc, elen, &dlen) != 0
            || dlen != n || memcmp(dec, raw, n) != 0)
        {
            fails++;
        }

        for (i = 0; i < elen; i++) {
            if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789-_", enc[i]) == NULL)
            {
                fails++;
            }
        }
    }

    is_int(fails, 0, "301 random lengths round-trip, url alphabet only");
}


int
main(void)
{
    test_vectors();
    test_rejects();
    test_exhaustive_tails();
    test_round_trips();

    return done_testing();
}
