#include <string.h>

#include "crest_validate.h"
#include "tap.h"


static void
email_ok(const char *in, const char *want)
{
    char  out[CREST_EMAIL_MAX + 1];
    int   n;

    n = crest_email_normalize(in, strlen(in), out);
    ok(n == (int) strlen(want) && strcmp(out, want) == 0,
       "email \"%s\" normalizes to \"%s\"", in, want);
}


static void
email_bad(const char *in)
{
    char  out[CREST_EMAIL_MAX + 1];

    is_int(crest_email_normalize(in, strlen(in), out), -1,
           "email \"%s\" is refused", in);
}


int
main(void)
{
    char  long_local[80], long_label[80], big[300];

    email_ok("Alice@Example.COM", "alice@example.com");
    email_ok("  bob.smith+tag@mail.example.org\t", "bob.smith+tag@mail.example.org");
    email_ok("o'neil@ex-ample.io", "o'neil@ex-ample.io");
    email_ok("a@b.co", "a@b.co");
    email_ok("x@xn--bcher-kva.example", "x@xn--bcher-kva.example");

    email_bad("");
    email_bad("plainaddress");
    email_bad("@example.com");
    email_bad("a@");
    email_bad("a@@example.com");
    email_bad("a@b@example.com");
    email_bad("a@localhost");
    email_bad(".a@example.com");
    email_bad("a.@example.com");
    email_bad("a..b@example.com");
    email_bad("a b@example.com");
    email_bad("a@exa mple.com");
    email_bad("a@-example.com");
    email_bad("a@example-.com");
    email_bad("a@example..com");
    email_bad("a@example.com.");
    email_bad("\"quoted\"@example.com");
    email_bad("a@ex_ample.com");
    email_bad("caf\xc3\xa9@example.com");

    memset(long_local, 'a', 65);
    strcpy(long_local + 65, "@example.com");
    email_bad(long_local);

    memset(long_label, 'a', 64);
    long_label[0] = 'x';
    memcpy(long_label, "x@", 2);
    memset(long_label + 2, 'b', 64);
    strcpy(long_label + 66, ".com");
    email_bad(long_label);

    memset(big, 'c', sizeof(big));
    memcpy(big, "x@", 2);
    for (size_t i = 10; i < 280; i += 10) {
        big[i] = '.';
    }
    strcpy(big + 280, ".com");
    email_bad(big);

    ok(crest_is_uuid("0b5e6f0e-3c4a-4c3e-9a1d-2f6b8e7a9c10", 36), "uuid");
    ok(!crest_is_uuid("0B5E6F0E-3C4A-4C3E-9A1D-2F6B8E7A9C10", 36), "upper-case uuid refused");
    ok(!crest_is_uuid("0b5e6f0e3c4a4c3e9a1d2f6b8e7a9c10", 32), "uuid without dashes refused");
    ok(!crest_is_uuid("0b5e6f0e-3c4a-4c3e-9a1d-2f6b8e7a9c1g", 36), "non-hex uuid refused");
    ok(!crest_is_uuid("../../etc/passwd", 16), "path refused");

    ok(crest_is_clean_text("Hello, w\xc3\xb6rld \xf0\x9f\x8e\xac\tok", 21), "clean text");
    ok(!crest_is_clean_text("a\0b", 3), "NUL refused");
    ok(!crest_is_clean_text("a\nb", 3), "newline refused");
    ok(!crest_is_clean_text("\xc0\xaf", 2), "overlong refused");
    ok(!crest_is_clean_text("\xed\xa0\x80", 3), "surrogate refused");
    ok(!crest_is_clean_text("\xe2\x82", 2), "truncated sequence refused");
    ok(!crest_is_clean_text("\xf4\x90\x80\x80", 4), "past U+10FFFF refused");

    return done_testing();
}
