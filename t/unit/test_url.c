#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "crest_url.h"
#include "tap.h"


#define LONG16  "aaaaaaaaaaaaaaaa"
#define LONG64  LONG16 LONG16 LONG16 LONG16
#define LONG256 LONG64 LONG64 LONG64 LONG64


typedef struct {
    const char  *url;
    int          unix_socket;
    int          tls;
    const char  *host;
    unsigned     port;
    const char  *path;
    const char  *user;
    const char  *password;
    unsigned     db;
} redis_case_t;


static const redis_case_t  redis_ok[] = {
    { "redis://127.0.0.1", 0, 0, "127.0.0.1", 6379, "", "", "", 0 },
    { "redis://localhost:6380/2", 0, 0, "localhost", 6380, "", "", "", 2 },
    { "REDIS://Host.Example_1:1/0", 0, 0, "Host.Example_1", 1, "", "", "", 0 },
    { "redis://:s3cret@10.0.0.1:6379/1", 0, 0, "10.0.0.1", 6379, "", "",
      "s3cret", 1 },
    { "redis://alice:p%40ss%3Aw%2Frd@h", 0, 0, "h", 6379, "", "alice",
      "p@ss:w/rd", 0 },
    { "redis://al%69ce:x@h", 0, 0, "h", 6379, "", "alice", "x", 0 },
    { "redis://u:p@ss@h", 0, 0, "h", 6379, "", "u", "p@ss", 0 },
    { "redis://u:a:b@h", 0, 0, "h", 6379, "", "u", "a:b", 0 },
    { "redis://[::1]:6379/3", 0, 0, "::1", 6379, "", "", "", 3 },
    { "redis://[::1]", 0, 0, "::1", 6379, "", "", "", 0 },
    { "redis://[2001:db8::1]:7000", 0, 0, "2001:db8::1", 7000, "", "", "", 0 },
    { "redis://[::ffff:127.0.0.1]:1", 0, 0, "::ffff:127.0.0.1", 1, "", "", "",
      0 },
    { "rediss://h:6380", 0, 1, "h", 6380, "", "", "", 0 },
    { "redis://h:65535/1048576", 0, 0, "h", 65535, "", "", "", 1048576 },
    { "redis://h:00080/007", 0, 0, "h", 80, "", "", "", 7 },
    { "redis://h/", 0, 0, "h", 6379, "", "", "", 0 },
    { "redis://:@h", 0, 0, "h", 6379, "", "", "", 0 },
    { "redis://u:@h", 0, 0, "h", 6379, "", "u", "", 0 },
    { "unix:///run/redis.sock", 1, 0, "", 0, "/run/redis.sock", "", "", 0 },
    { "unix:///tmp/r%20s.sock?db=5", 1, 0, "", 0, "/tmp/r s.sock", "", "",
      5 },
    { "unix://:pw@/tmp/r.sock?db=1048576", 1, 0, "", 0, "/tmp/r.sock", "",
      "pw", 1048576 },
    { "unix://u:p@/s", 1, 0, "", 0, "/s", "u", "p", 0 },
    { "unix:///tmp/r.sock?", 1, 0, "", 0, "/tmp/r.sock", "", "", 0 },
    { "unix:///tmp/r.sock?&db=2&", 1, 0, "", 0, "/tmp/r.sock", "", "", 2 },
    { "UNIX:///s", 1, 0, "", 0, "/s", "", "", 0 },
};


static const char  *redis_bad[] = {
    "",
    "http://h",
    "redis:/h",
    "redis://",
    "redis://:6379",
    "redis://:s3cret@",
    "redis://h:",
    "redis://h:0",
    "redis://h:65536",
    "redis://h:99999999999999999999",
    "redis://h:-1",
    "redis://h:+1",
    "redis://h:63 79",
    "redis://h:6379x",
    "redis://h/1048577",
    "redis://h/-1",
    "redis://h/1/2",
    "redis://h/x",
    "redis://h/99999999999999999999",
    "redis://h?db=1",
    "redis://h/1?db=1",
    "redis://h#frag",
    "redis://:s3cr#et@h",
    "redis://::1:6379",
    "redis://2001:db8::1",
    "redis://[::1",
    "redis://[::g]:1",
    "redis://[127.0.0.1]",
    "redis://[]",
    "redis://[::1]x",
    "redis://[::1]:",
    "redis://s3cret@h",
    "redis://:s3cret%4@h",
    "redis://:s3cret%zz@h",
    "redis://:s3cret%00@h",
    "redis://%00:s3cret@h",
    "redis://h\x01",
    "redis://h\x7f",
    "redis://h\xc3\xa9",
    "redis://h st",
    "redis://h_st$",
    "redis://h%41",
    "redis://" LONG256,
    "redis://:" LONG256 "@h",
    "redis://" LONG64 LONG64 ":s3cret@h",
    "unix://",
    "unix://host/path",
    "unix://s3cret@/path",
    "unix:///p?db=x",
    "unix:///p?db=1048577",
    "unix:///p?db=",
    "unix:///p?foo=1",
    "unix:///p?db",
    "unix:///p?DB=1",
    "unix:///" LONG64 LONG64,
    "unix:///p%2",
    "unix:///p%00",
    "unix:///p#x",
};


static void
test_redis_ok(void)
{
    crest_redis_url_t  u, u2;
    char               err[256], out[1024];
    size_t             i, n;
    int                rc;

    for (i = 0; i < sizeof(redis_ok) / sizeof(redis_ok[0]); i++) {
        const redis_case_t  *c = &redis_ok[i];

        err[0] = '\0';
        rc = crest_redis_url_parse(&u, c->url, strlen(c->url), err,
                                   sizeof(err));

        if (!ok(rc == 0, "parses: %s", c->url)) {
            diag("error: %s", err);
            continue;
        }

        ok(u.unix_socket == c->unix_socket && u.tls == c->tls
           && strcmp(u.host, c->host) == 0 && u.port == c->port
           && strcmp(u.path, c->path) == 0 && strcmp(u.user, c->user) == 0
           && strcmp(u.password, c->password) == 0 && u.db == c->db,
           "fields of %s", c->url);

        if (strcmp(u.host, c->host) || u.port != c->port || u.db != c->db
            || strcmp(u.path, c->path) || strcmp(u.user, c->user)
            || strcmp(u.password, c->password))
        {
            diag("got host=%s port=%u path=%s user=%s password=%s db=%u",
                 u.host, u.port, u.path, u.user, u.password, u.db);
        }

        n = crest_redis_url_format(&u, 0, out, sizeof(out));
        rc = crest_redis_url_parse(&u2, out, n, err, sizeof(err));
        ok(rc == 0 && memcmp(&u, &u2, sizeof(u)) == 0,
           "round trip through %s", out);
    }
}


static void
test_redis_bad(void)
{
    crest_redis_url_t  u;
    char               err[256];
    size_t             i;
    int                rc;

    for (i = 0; i < sizeof(redis_bad) / sizeof(redis_bad[0]); i++) {
        err[0] = '\0';
        rc = crest_redis_url_parse(&u, redis_bad[i], strlen(redis_bad[i]),
                                   err, sizeof(err));

        ok(rc == -1 && err[0] != '\0' && strstr(err, "s3cret") == NULL,
           "rejected: %.60s (%s)", redis_bad[i], err);
    }

    /* a NUL inside the given length is not a terminator */
    rc = crest_redis_url_parse(&u, "redis://h\0x", 11, err, sizeof(err));
    is_int(rc, -1, "embedded NUL rejected");

    /* err may be NULL */
    rc = crest_redis_url_parse(&u, "nope", 4, NULL, 0);
    is_int(rc, -1, "rejected without an error buffer");

    rc = crest_redis_url_parse(&u, "redis://h:0", 11, err, 8);
    ok(rc == -1 && strlen(err) == 7, "error message truncated to errlen");
}


static void
test_redis_format(void)
{
    crest_redis_url_t  u;
    char               out[256], small[12];
    size_t             n;

    crest_redis_url_parse(&u, "redis://alice:p%40ss%20@[::1]:7000/3", 36,
                          NULL, 0);
    crest_redis_url_format(&u, 0, out, sizeof(out));
    is_str(out, "redis://alice:p%40ss%20@[::1]:7000/3", "canonical TCP URL");
    crest_redis_url_format(&u, 1, out, sizeof(out));
    is_str(out, "redis://alice:***@[::1]:7000/3", "redacted TCP URL");

    crest_redis_url_parse(&u, "rediss://h", 10, NULL, 0);
    crest_redis_url_format(&u, 1, out, sizeof(out));
    is_str(out, "rediss://h:6379/0", "defaults are spelled out");

    crest_redis_url_parse(&u, "unix://:pw@/tmp/r%20s.sock?db=1", 31, NULL, 0);
    crest_redis_url_format(&u, 0, out, sizeof(out));
    is_str(out, "unix://:pw@/tmp/r%20s.sock?db=1", "canonical unix URL");
    crest_redis_url_format(&u, 1, out, sizeof(out));
    is_str(out, "unix://:***@/tmp/r%20s.sock?db=1", "redacted unix URL");

    crest_redis_url_parse(&u, "unix:///s", 9, NULL, 0);
    crest_redis_url_format(&u, 0, out, sizeof(out));
    is_str(out, "unix:///s", "db 0 is left out of unix URLs");

    crest_redis_url_parse(&u, "redis://localhost:6379/0", 24, NULL, 0);
    n = crest_redis_url_format(&u, 0, small, sizeof(small));
    is_int(n, 24, "format returns the full length");
    is_str(small, "redis://loc", "and truncates with a NUL");
    n = crest_redis_url_format(&u, 0, NULL, 0);
    is_int(n, 24, "size 0 only measures");
}


typedef struct {
    const char  *url;
    const char  *host;
    unsigned     port;
    const char  *user;
    const char  *password;
    const char  *dbname;
    const char  *params;    /* "k=v k=v" */
} pg_case_t;


static const pg_case_t  pg_ok[] = {
    { "postgresql:///crest", "", 0, "", "", "crest", "" },
    { "postgres://u:p@127.0.0.1:5433/db?sslmode=disable&application_name=x%20y",
      "127.0.0.1", 5433, "u", "p", "db",
      "sslmode=disable application_name=x y" },
    { "postgresql://[::1]:5432/db", "::1", 5432, "", "", "db", "" },
    { "postgresql://%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql", 0,
      "", "", "db", "" },
    { "postgresql:///db?host=/tmp&port=5433", "/tmp", 5433, "", "", "db", "" },
    { "postgresql://user@localhost", "localhost", 0, "user", "", "", "" },
    { "postgresql://", "", 0, "", "", "", "" },
    { "postgresql://h/db?hostaddr=10.1.2.3&connect_timeout=5", "h", 0, "", "",
      "db", "hostaddr=10.1.2.3 connect_timeout=5" },
    { "postgresql://u@h/db?password=qs", "h", 0, "u", "qs", "db", "" },
    { "postgresql://u:a%40b@h/d%20b", "h", 0, "u", "a@b", "d b", "" },
    { "postgresql://:pw@h", "h", 0, "", "pw", "", "" },
    { "postgresql://h:/db", "h", 0, "", "", "db", "" },
    { "postgresql://h/db?sslmode=a&sslmode=b", "h", 0, "", "", "db",
      "sslmode=b" },
    { "host=/tmp port=5432 dbname=crest user=crest", "/tmp", 5432, "crest",
      "", "crest", "" },
    { "  dbname = 'my db'   password='a\\'b c' ", "", 0, "", "a'b c",
      "my db", "" },
    { "password=a\\ b", "", 0, "", "a b", "", "" },
    { "host=::1 dbname=x", "::1", 0, "", "", "x", "" },
    { "", "", 0, "", "", "", "" },
    { "sslmode=require sslmode=disable", "", 0, "", "", "", "sslmode=disable" },
    { "host='' port=''", "", 0, "", "", "", "" },
    { "dbname=caf\xc3\xa9", "", 0, "", "", "caf\xc3\xa9", "" },
    { "options='-c statement_timeout=5000'", "", 0, "", "", "",
      "options=-c statement_timeout=5000" },
};


static const char  *pg_bad[] = {
    "postgresql://h1,h2/db",
    "postgresql://h1:5432,h2:5432/db",
    "host=a,b",
    "postgresql://h:0/db",
    "postgresql://h:x/db",
    "postgresql://h:65536/db",
    "postgresql://h/db?sslmode",
    "postgresql://h/db?bad-key=1",
    "postgresql://h/db?a=1&&b=2",
    "postgresql://h/db?hostaddr=example.com",
    "hostaddr=1.2.3.4,5.6.7.8",
    "postgresql://[::1/db",
    "postgresql://[::1]x/db",
    "postgresql://[db]/db",
    "postgresql://::1/db",
    "postgresql://h/d%zz",
    "postgresql://h/db\x01",
    "postgresql://h/d b",
    "postgresql://h$/db",
    "postgresql://h/" LONG64 LONG64,
    "host",
    "host x",
    "=x",
    "bad-key=1",
    "password='s3cret",
    "dbname=a\x01",
    "host=bad$host",
    "port=0",
    "port=5432x",
    "user=" LONG64 LONG64,
    "k1=1 k2=2 k3=3 k4=4 k5=5 k6=6 k7=7 k8=8 k9=9 k10=10 k11=11 k12=12 "
    "k13=13 k14=14 k15=15 k16=16 k17=17",
    "a" LONG64 "=1",
};


static int
pg_params_are(const crest_pg_url_t *u, const char *want)
{
    char      got[1024];
    size_t    len;
    unsigned  i;

    len = 0;
    got[0] = '\0';

    for (i = 0; i < u->nparams; i++) {
        len += (size_t) snprintf(got + len, sizeof(got) - len, "%s%s=%s",
                                 i ? " " : "", u->params[i].key,
                                 u->params[i].value);
    }

    if (strcmp(got, want) != 0) {
        diag("params: got '%s', want '%s'", got, want);
        return 0;
    }

    return 1;
}


static void
test_pg(void)
{
    crest_pg_url_t  u, u2;
    char            err[256], out[2048];
    size_t          i, n;
    int             rc;

    for (i = 0; i < sizeof(pg_ok) / sizeof(pg_ok[0]); i++) {
        const pg_case_t  *c = &pg_ok[i];

        err[0] = '\0';
        rc = crest_pg_url_parse(&u, c->url, strlen(c->url), err, sizeof(err));

        if (!ok(rc == 0, "pg parses: %s", c->url)) {
            diag("error: %s", err);
            continue;
        }

        ok(strcmp(u.host, c->host) == 0 && u.port == c->port
           && strcmp(u.user, c->user) == 0
           && strcmp(u.password, c->password) == 0
           && strcmp(u.dbname, c->dbname) == 0 && pg_params_are(&u, c->params),
           "pg fields of %s", c->url);

        n = crest_pg_url_format(&u, 0, out, sizeof(out));
        rc = crest_pg_url_parse(&u2, out, n, err, sizeof(err));
        ok(rc == 0 && memcmp(&u, &u2, sizeof(u)) == 0,
           "pg round trip through %s", out);
    }

    for (i = 0; i < sizeof(pg_bad) / sizeof(pg_bad[0]); i++) {
        err[0] = '\0';
        rc = crest_pg_url_parse(&u, pg_bad[i], strlen(pg_bad[i]), err,
                                sizeof(err));
        ok(rc == -1 && err[0] != '\0' && strstr(err, "s3cret") == NULL,
           "pg rejected: %.60s (%s)", pg_bad[i], err);
    }

    rc = crest_pg_url_parse(&u, "dbname=a\0b", 10, err, sizeof(err));
    is_int(rc, -1, "pg: embedded NUL rejected");

    crest_pg_url_parse(&u, "postgresql://u:p%20w@[::1]:5433/d?host=/s", 41,
                       NULL, 0);
    crest_pg_url_format(&u, 0, out, sizeof(out));
    is_str(out, "postgresql://u:p%20w@:5433/d?host=/s",
           "socket dir goes to the query (later host wins)");
    crest_pg_url_format(&u, 1, out, sizeof(out));
    is_str(out, "postgresql://u:***@:5433/d?host=/s", "pg redacted");

    crest_pg_url_parse(&u, "host=h sslmode=require connect_timeout=3", 40,
                       NULL, 0);
    is_str(crest_pg_url_param(&u, "sslmode"), "require", "param lookup");
    is_str(crest_pg_url_param(&u, "connect_timeout"), "3", "param lookup 2");
    ok(crest_pg_url_param(&u, "host") == NULL, "host is a field, not a param");
    ok(crest_pg_url_param(&u, "nope") == NULL, "missing param is NULL");
}


static void
test_host_numeric(void)
{
    is_int(crest_host_numeric("127.0.0.1"), AF_INET, "127.0.0.1");
    is_int(crest_host_numeric("10.255.0.1"), AF_INET, "10.255.0.1");
    is_int(crest_host_numeric("::1"), AF_INET6, "::1");
    is_int(crest_host_numeric("2001:db8::8:800:200c:417a"), AF_INET6,
           "2001:db8::8:800:200c:417a");
    is_int(crest_host_numeric("::ffff:1.2.3.4"), AF_INET6, "v4-mapped");
    is_int(crest_host_numeric("localhost"), 0, "localhost is a name");
    is_int(crest_host_numeric("redis"), 0, "redis is a name");
    is_int(crest_host_numeric("127.1"), 0, "127.1 is not dotted-quad");
    is_int(crest_host_numeric("1.2.3.256"), 0, "1.2.3.256");
    is_int(crest_host_numeric("1.2.3.4."), 0, "trailing dot");
    is_int(crest_host_numeric(""), 0, "empty");
    is_int(crest_host_numeric("[::1]"), 0, "brackets are not part of it");
    is_int(crest_host_numeric("fe80::1%eth0"), 0, "zone ids are refused");
    is_int(crest_host_numeric(" 1.2.3.4"), 0, "leading space");
    is_int(crest_host_numeric("0x7f.0.0.1"), 0, "hex octet");
}


static void
redact_is(const char *in, const char *want)
{
    char    out[512];
    size_t  n;

    n = crest_url_redact(in, strlen(in), out, sizeof(out));
    is_str(out, want, "redact %s", in);
    ok(n == strlen(want) && strstr(out, "secret") == NULL,
       "no secret left in %s", out);
}


static void
test_redact(void)
{
    char    out[16];
    size_t  n;

    redact_is("redis://:secret@h:6379/0", "redis://:***@h:6379/0");
    redact_is("redis://alice:secret@h", "redis://alice:***@h");
    redact_is("redis://h:6379/0", "redis://h:6379/0");
    redact_is("redis://[::1]:6379/0", "redis://[::1]:6379/0");
    redact_is("unix://:secret@/tmp/s", "unix://:***@/tmp/s");
    redact_is("unix:///tmp/s?db=1", "unix:///tmp/s?db=1");
    redact_is("postgresql://u:secret@h/db?sslmode=require",
              "postgresql://u:***@h/db?sslmode=require");
    redact_is("postgresql://u@h/db", "postgresql://u@h/db");
    redact_is("postgresql://u@h/db?password=secret&sslmode=y",
              "postgresql://u@h/db?password=***&sslmode=y");
    redact_is("host=h password=secret dbname=d",
              "host=h password=*** dbname=d");
    redact_is("host=h password = 'se cret\\' x' dbname=d",
              "host=h password = *** dbname=d");
    redact_is("password='unterminated secret", "password=***");
    redact_is("redis://u:p@secret@h", "redis://u:***@h");
    redact_is("redis://u:se/cret@h/0", "redis://u:***@h/0");
    redact_is("redis://u:se?cret@h", "redis://u:***@h");
    redact_is("sslpassword=secret", "sslpassword=***");
    redact_is("PASSWORD=secret", "PASSWORD=***");
    redact_is("x://password=a:se&cret@h", "x://password=***@h");
    redact_is("password", "password");
    redact_is("", "");

    n = crest_url_redact("redis://:secret@localhost/0", 27, out, sizeof(out));
    is_int(n, 24, "redact returns the full length");
    is_str(out, "redis://:***@lo", "and truncates with a NUL");
}


int
main(void)
{
    test_redis_ok();
    test_redis_bad();
    test_redis_format();
    test_pg();
    test_host_numeric();
    test_redact();

    return done_testing();
}
