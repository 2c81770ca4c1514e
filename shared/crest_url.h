/*
 * Parsing of the Redis and PostgreSQL connection strings Crest is configured
 * with.
 *
 * Results go into fixed-size arrays inside a struct the caller provides:
 * parsing never allocates, a parsed URL can be copied by assignment, and no
 * field points back into the input, which the caller may free right after
 * (an nginx config token, an environment string).  The limits are far above
 * any sane deployment; a component that does not fit is an error, never
 * silently truncated.
 *
 * Parsers return 0 on success and -1 on error, with a one-line English
 * message in err (when err is not NULL and errlen > 0).  Messages never
 * contain the password.
 *
 * Formatting functions follow snprintf: they return the length the full
 * output needs and write at most size - 1 bytes plus a NUL.
 */
#ifndef CREST_URL_H
#define CREST_URL_H

#include <stddef.h>

#define CREST_URL_HOST_LEN   256    /* DNS names are at most 253 bytes */
#define CREST_URL_USER_LEN   128
#define CREST_URL_PASS_LEN   256
#define CREST_URL_PATH_LEN   108    /* sizeof(sun_path) on Linux */
#define CREST_URL_DB_LEN     128
#define CREST_REDIS_DB_MAX   (1 << 20)

#define CREST_PG_PARAMS_MAX  16
#define CREST_PG_KEY_LEN     32
#define CREST_PG_VALUE_LEN   256

/*
 * redis://[[user]:password@]host[:port][/db]
 * rediss://...                 (same, tls = 1)
 * unix://[[user]:password@]/path/to.sock[?db=N]
 */
typedef struct {
    int       unix_socket;                  /* 1: path is set, host is "" */
    int       tls;                          /* rediss:// */
    char      host[CREST_URL_HOST_LEN];     /* IPv6 without brackets */
    unsigned  port;                         /* 6379 unless given */
    char      path[CREST_URL_PATH_LEN];
    char      user[CREST_URL_USER_LEN];     /* "" = the default user */
    char      password[CREST_URL_PASS_LEN]; /* "" = send no AUTH */
    unsigned  db;                           /* 0 .. CREST_REDIS_DB_MAX */
} crest_redis_url_t;

typedef struct {
    char      key[CREST_PG_KEY_LEN];
    char      value[CREST_PG_VALUE_LEN];
} crest_pg_param_t;

/*
 * A libpq connection string with a single host, in either of libpq's forms:
 *   postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]
 *   host=... port=... dbname=... key='quoted value' ...
 * Keywords other than host, port, user, password and dbname are kept, in
 * order, in params for the caller to pass on to libpq.
 */
typedef struct {
    char              host[CREST_URL_HOST_LEN]; /* "" = libpq's default;
                                                   "/..." = socket dir */
    unsigned          port;                     /* 0 = libpq's default */
    char              user[CREST_URL_USER_LEN];
    char              password[CREST_URL_PASS_LEN];
    char              dbname[CREST_URL_DB_LEN];
    unsigned          nparams;
    crest_pg_param_t  params[CREST_PG_PARAMS_MAX];
} crest_pg_url_t;

int crest_redis_url_parse(crest_redis_url_t *u, const char *s, size_t n,
    char *err, size_t errlen);
/* A canonical URL that parses back to *u; the password as *** if redact. */
size_t crest_redis_url_format(const crest_redis_url_t *u, int redact,
    char *out, size_t size);

int crest_pg_url_parse(crest_pg_url_t *u, const char *s, size_t n,
    char *err, size_t errlen);
/* A postgresql:// URI that parses back to *u; the password as *** if redact. */
size_t crest_pg_url_format(const crest_pg_url_t *u, int redact,
    char *out, size_t size);
/* The value of a keyword kept in params, or NULL. */
const char *crest_pg_url_param(const crest_pg_url_t *u, const char *key);

/*
 * AF_INET or AF_INET6 if host (without brackets) is a numeric address
 * literal, else 0.  The nginx side connects only to such literals (or unix
 * sockets): resolving a name would block its event loop.
 */
int crest_host_numeric(const char *host);

/*
 * Copies a connection string for logging with passwords replaced by ***:
 * the userinfo password of a URL and the value of any password=... keyword
 * or query parameter.  Works on strings that do not parse, and errs towards
 * hiding too much.
 */
size_t crest_url_redact(const char *s, size_t n, char *out, size_t size);

#endif /* CREST_URL_H */
