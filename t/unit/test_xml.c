/*
 * shared/crest_xml.c: the element text extractor on the answers S3-compatible
 * servers give, and on inputs meant to fool it.
 */
#include <string.h>

#include "crest_xml.h"
#include "tap.h"


static const char *
text(const char *xml, const char *name, long *rc)
{
    static char  out[64];

    out[0] = '\0';
    *rc = crest_xml_text(xml, strlen(xml), name, out, sizeof(out));
    return out;
}


int
main(void)
{
    long         rc;
    const char  *s;
    char         small[4];

    s = text("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/"
             "doc/2006-03-01/\"><Bucket>b</Bucket><Key>k/media.mp4</Key>"
             "<UploadId>VXBsb2FkIElE+/=</UploadId>"
             "</InitiateMultipartUploadResult>", "UploadId", &rc);
    is_str(s, "VXBsb2FkIElE+/=", "UploadId of CreateMultipartUpload");
    is_int(rc, 15, "its length");

    s = text("<Error><Code>NoSuchUpload</Code><Message>The upload &amp; "
             "&lt;x&gt; &quot;q&quot; &apos;a&apos; &#65;&#x42;</Message>"
             "</Error>", "Message", &rc);
    is_str(s, "The upload & <x> \"q\" 'a' AB", "entities and references");
    text("<Error><Code>NoSuchUpload</Code></Error>", "Code", &rc);
    is_int(rc, 12, "Code of an Error");

    text("<Result><Bucket>b</Bucket></Result>", "UploadId", &rc);
    is_int(rc, -1, "missing element: -1");
    text("", "UploadId", &rc);
    is_int(rc, -1, "empty input: -1");

    s = text("<A><UploadIdX>no</UploadIdX><UploadId>yes</UploadId></A>",
             "UploadId", &rc);
    is_str(s, "yes", "a longer name is not a match");
    s = text("<A><!-- <UploadId>comment</UploadId> --><UploadId>real"
             "</UploadId></A>", "UploadId", &rc);
    is_str(s, "real", "comments are skipped");
    s = text("<A><![CDATA[<UploadId>cdata</UploadId>]]><UploadId>real"
             "</UploadId></A>", "UploadId", &rc);
    is_str(s, "real", "CDATA is skipped");
    s = text("<A><UploadId a=\"x>y\" b='1'>id</UploadId></A>", "UploadId",
             &rc);
    is_str(s, "id", "attributes, with '>' in a quoted value");
    s = text("<A><UploadId/></A>", "UploadId", &rc);
    ok(rc == 0 && s[0] == '\0', "an empty element");
    s = text("<A><UploadId>id</UploadId  ></A>", "UploadId", &rc);
    is_str(s, "id", "space before the end of the closing tag");

    text("<A><UploadId><B>x</B></UploadId></A>", "UploadId", &rc);
    is_int(rc, -2, "a child element: refused");
    text("<A><UploadId>x</Other></A>", "UploadId", &rc);
    is_int(rc, -2, "the wrong closing tag: refused");
    text("<A><UploadId>x", "UploadId", &rc);
    is_int(rc, -2, "cut off in the text: refused");
    text("<A><UploadId", "UploadId", &rc);
    is_int(rc, -1, "cut off in the name: no such element");
    text("<A><UploadId ", "UploadId", &rc);
    is_int(rc, -2, "cut off in the tag: refused");
    text("<A><UploadId a=\"x>", "UploadId", &rc);
    is_int(rc, -2, "cut off in an attribute: refused");
    text("<A><UploadId>&nbsp;</UploadId></A>", "UploadId", &rc);
    is_int(rc, -2, "an unknown entity: refused");
    text("<A><UploadId>&#233;</UploadId></A>", "UploadId", &rc);
    is_int(rc, -2, "a non-ASCII reference: refused");
    text("<A><UploadId>&#0;</UploadId></A>", "UploadId", &rc);
    is_int(rc, -2, "a NUL reference: refused");
    text("<A><UploadId>&#x41</UploadId></A>", "UploadId", &rc);
    is_int(rc, -2, "an unterminated reference: refused");
    text("<!-- <UploadId>x</UploadId>", "UploadId", &rc);
    is_int(rc, -1, "an unterminated comment hides everything");

    rc = crest_xml_text("<U>a\0c</U>", 10, "U", small, sizeof(small));
    is_int(rc, -2, "a NUL byte in the text: refused");
    rc = crest_xml_text("<U>abcd</U>", 11, "U", small, sizeof(small));
    is_int(rc, -2, "too long for out: refused");
    rc = crest_xml_text("<U>abc</U>", 10, "U", small, sizeof(small));
    ok(rc == 3 && strcmp(small, "abc") == 0, "exactly fits");
    rc = crest_xml_text("<U>abc</U>trailing", 7, "U", small, sizeof(small));
    is_int(rc, -2, "n bounds the input");

    return done_testing();
}
