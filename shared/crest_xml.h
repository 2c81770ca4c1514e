/*
 * The text of one element of a small XML document, for the answers of
 * S3-compatible servers (UploadId of CreateMultipartUpload, Code and
 * Message of an Error).  Not an XML parser: it finds the first element
 * named exactly `name` outside comments, CDATA sections, processing
 * instructions and declarations, and takes its text, which must be plain
 * character data (no child element) closed by </name>.  The five
 * predefined entities and ASCII character references are decoded; any
 * other reference is refused, so what comes out is exactly what was meant
 * or nothing.  Pure: no allocation, no I/O.
 */
#ifndef CREST_XML_H
#define CREST_XML_H

#include <stddef.h>

/*
 * Copies the decoded text of the first <name> element of xml[0..n) into
 * out (NUL-terminated).  Returns its length, -1 if there is no such
 * element, -2 if the element is malformed or its text does not fit outlen.
 */
long crest_xml_text(const char *xml, size_t n, const char *name, char *out,
    size_t outlen);

#endif /* CREST_XML_H */
