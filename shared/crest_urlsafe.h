/*
 * URL safety for fetching user-supplied URLs (the download worker): pure
 * functions, no I/O; the caller resolves the host (getaddrinfo) and checks
 * every address it got with crest_urlsafe_addr_check.
 *
 * Rules:
 *  - only http:// and https://, no userinfo (user@), no control characters,
 *    spaces or backslashes anywhere, at most CREST_URLSAFE_MAX_URL bytes;
 *  - the host is a DNS name (letters, digits, '-', '_', '.') whose last label
 *    is not numeric, a dotted-quad IPv4 literal, or a bracketed IPv6
 *    literal; shorthand numeric forms (127.1, 0x7f.0.0.1, 2130706433) are
 *    refused rather than interpreted, so that every parser agrees;
 *  - an address is refused when it is unspecified, loopback, private
 *    (RFC 1918, IPv6 ULA), link-local (incl. 169.254.169.254 and the other
 *    cloud metadata addresses), CGNAT (100.64/10), multicast, broadcast,
 *    reserved (240/4), documentation, benchmarking, IETF protocol
 *    assignments, discard-only or deprecated site-local; IPv6 forms that
 *    carry an IPv4 address (v4-mapped, v4-compatible, NAT64 64:ff9b::/96,
 *    6to4 2002::/16) are judged by that IPv4 address; Teredo is refused;
 *  - an allow-list ("127.0.0.1/32, ::1, 10.0.0.0/8", CIDRs or plain
 *    addresses) admits addresses that would otherwise be refused.
 */
#ifndef CREST_URLSAFE_H
#define CREST_URLSAFE_H

#include <stddef.h>
#include <stdint.h>

#define CREST_URLSAFE_MAX_URL   4096
#define CREST_URLSAFE_HOST_LEN  256

typedef struct {
    int       https;                            /* 0: http */
    char      host[CREST_URLSAFE_HOST_LEN];     /* without brackets */
    unsigned  port;                             /* 80 / 443 by default */
    int       family;                           /* AF_INET(6) if a literal */
} crest_urlsafe_t;

/* 0, or -1 with the reason in err. */
int crest_urlsafe_parse(crest_urlsafe_t *u, const char *s, size_t n,
    char *err, size_t errlen);

/*
 * addr: 4 bytes (AF_INET) or 16 bytes (AF_INET6), network order.  Returns
 * NULL if the address may be fetched from, else what it is ("loopback",
 * "private", ...).  allow is the allow-list (NULL or "" for none).
 */
const char *crest_urlsafe_addr_check(int family, const uint8_t *addr,
    const char *allow);

/* The class of an address regardless of any allow-list; NULL if public. */
const char *crest_urlsafe_addr_class(int family, const uint8_t *addr);

/* 1 if addr is in the allow-list, 0 if not, -1 if the list is malformed. */
int crest_urlsafe_allowed(const char *allow, int family, const uint8_t *addr);

/* 0 if the allow-list parses, else -1 with the reason in err. */
int crest_urlsafe_allow_valid(const char *allow, char *err, size_t errlen);

#endif /* CREST_URLSAFE_H */
