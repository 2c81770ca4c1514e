#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "crest_urlsafe.h"
#include "tap.h"


/* The class of a textual address, "public" for NULL. */
static const char *
cls(const char *ip, const char *allow)
{
    uint8_t      a[16];
    const char  *c;

    if (inet_pton(AF_INET, ip, a) == 1) {
        c = crest_urlsafe_addr_check(AF_INET, a, allow);
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        c = crest_urlsafe_addr_check(AF_INET6, a, allow);
    } else {
        return "BAD TEST ADDRESS";
    }

    return c ? c : "public";
}


int
main(void)
{
    static const struct { const char *ip, *want; } addrs[] = {
        { "8.8.8.8", "public" },
        { "93.184.216.34", "public" },
        { "0.0.0.0", "unspecified" },
        { "0.1.2.3", "unspecified" },
        { "10.1.2.3", "private" },
        { "100.64.0.1", "cgnat" },
        { "100.100.100.200", "cgnat" },
        { "100.128.0.1", "public" },
        { "127.0.0.1", "loopback" },
        { "127.255.255.254", "loopback" },
        { "169.254.169.254", "link-local" },
        { "172.16.0.1", "private" },
        { "172.31.255.255", "private" },
        { "172.32.0.1", "public" },
        { "192.168.1.1", "private" },
        { "192.0.0.170", "reserved" },
        { "198.18.0.1", "benchmarking" },
        { "224.0.0.1", "multicast" },
        { "239.255.255.250", "multicast" },
        { "255.255.255.255", "reserved" },
        { "::", "unspecified" },
        { "::1", "loopback" },
        { "::ffff:127.0.0.1", "loopback" },
        { "::ffff:169.254.169.254", "link-local" },
        { "::ffff:8.8.8.8", "public" },
        { "::127.0.0.1", "loopback" },
        { "::8.8.8.8", "reserved" },
        { "64:ff9b::10.0.0.1", "private" },
        { "64:ff9b::8.8.8.8", "public" },
        { "2002:7f00:1::", "loopback" },
        { "2002:0808:0808::1", "public" },
        { "fc00::1", "private" },
        { "fd00:ec2::254", "private" },
        { "fe80::1", "link-local" },
        { "fec0::1", "site-local" },
        { "ff02::1", "multicast" },
        { "2001:db8::1", "documentation" },
        { "2001:0::1", "teredo" },
        { "100::1", "discard" },
        { "2606:4700::1111", "public" },
    };
    static const struct { const char *url, *host; unsigned port; int https; }
    good[] = {
        { "http://example.com/a.mp4", "example.com", 80, 0 },
        { "HTTPS://Example.COM:8443?x=1", "Example.COM", 8443, 1 },
        { "http://127.0.0.1:8080/v", "127.0.0.1", 8080, 0 },
        { "http://[::1]:81/", "::1", 81, 0 },
        { "https://[2606:4700::1111]", "2606:4700::1111", 443, 1 },
        { "http://a-b_c.example.org.#f", "a-b_c.example.org.", 80, 0 },
        { "http://cafe.deadbeef/", "cafe.deadbeef", 80, 0 },
    };
    static const char  *bad[] = {
        "", "file:///etc/passwd", "ftp://example.com/", "gopher://x/",
        "http://", "http:///x", "http://user:pw@example.com/",
        "http://example.com@169.254.169.254/", "http://exa mple.com/",
        "http://example.com\\@evil/", "http://ex\nample.com/",
        "http://127.1/", "http://0x7f.0.0.1/", "http://2130706433/",
        "http://017700000001/", "http://[::1/", "http://[::1]x/",
        "http://[fe80::1%eth0]/", "http://example.com:0/",
        "http://example.com:65536/", "http://example.com:80a/",
        "http://example.com:/", "http://.example.com/", "http://a..b/",
        "http://-a.com/", "http://exa%6dple.com/", "javascript:alert(1)",
        "http:example.com", "//example.com/",
    };
    crest_urlsafe_t  u;
    char             err[256];
    uint8_t          a[16];
    size_t           i;

    for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        is_str(cls(addrs[i].ip, NULL), addrs[i].want, "%s", addrs[i].ip);
    }

    is_str(cls("127.0.0.1", "127.0.0.1/32"), "public", "allow-list: exact");
    is_str(cls("127.0.0.2", "127.0.0.1/32"), "loopback", "allow-list: /32");
    is_str(cls("10.9.8.7", " 192.168.0.0/16 , 10.0.0.0/8"), "public",
           "allow-list: second CIDR, spaces");
    is_str(cls("::ffff:127.0.0.1", "127.0.0.0/8"), "public",
           "allow-list: IPv4 entry admits the v4-mapped form");
    is_str(cls("::1", "127.0.0.0/8"), "loopback", "but not ::1");
    is_str(cls("::1", "::1"), "public", "allow-list: IPv6");
    is_str(cls("fe80::1", "fe80::/10"), "public", "allow-list: IPv6 CIDR");
    is_str(cls("127.0.0.1", "127.0.0.1/33"), "refused (malformed allow-list)",
           "a malformed allow-list admits nothing");
    is_int(crest_urlsafe_allow_valid("127.0.0.1/32,::1,10.0.0.0/8,", err,
                                     sizeof(err)), 0, "valid allow-list");
    is_int(crest_urlsafe_allow_valid("localhost", err, sizeof(err)), -1,
           "names are not allowed in the allow-list: %s", err);
    is_int(crest_urlsafe_allow_valid("10.0.0.0/", err, sizeof(err)), -1,
           "empty prefix length: %s", err);
    inet_pton(AF_INET, "8.8.8.8", a);
    is_int(crest_urlsafe_allowed("", AF_INET, a), 0, "empty list");

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int rc = crest_urlsafe_parse(&u, good[i].url, strlen(good[i].url),
                                     err, sizeof(err));
        ok(rc == 0, "parses %s", good[i].url);
        if (rc != 0) {
            diag("%s", err);
            continue;
        }
        is_str(u.host, good[i].host, "host of %s", good[i].url);
        is_int(u.port, good[i].port, "port of %s", good[i].url);
        is_int(u.https, good[i].https, "scheme of %s", good[i].url);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ok(crest_urlsafe_parse(&u, bad[i], strlen(bad[i]), err, sizeof(err))
           == -1 && err[0] != '\0', "refuses \"%s\": %s", bad[i], err);
    }

    return done_testing();
}
