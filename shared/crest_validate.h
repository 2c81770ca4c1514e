/*
 * Input checks every endpoint shares.  Pure functions over caller buffers.
 */
#ifndef CREST_VALIDATE_H
#define CREST_VALIDATE_H

#include <stddef.h>

#define CREST_EMAIL_MAX  254

/*
 * Normalizes an email address for storage and lookup: surrounding ASCII
 * blanks cut, lower-cased, then checked (dot-atom local part of at most 64
 * bytes, a domain of at least two DNS labels).  Writes it with a NUL into
 * out (CREST_EMAIL_MAX + 1 bytes) and returns its length, or -1.
 */
int crest_email_normalize(const char *in, size_t len, char *out);

/* Whether s is a canonical lower-case UUID (8-4-4-4-12 hex). */
int crest_is_uuid(const char *s, size_t len);

/* Whether s is well-formed UTF-8 without NUL or other C0 controls but tab. */
int crest_is_clean_text(const char *s, size_t len);

#endif /* CREST_VALIDATE_H */
