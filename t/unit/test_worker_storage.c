/*
 * workers/storage.c: key validation and the local backend (put, stat,
 * remove, scratch, rmtree) in a temporary directory.  The unit build links
 * only shared/, so the worker source is included directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../workers/storage.c"
#include "tap.h"


static void
write_file(const char *path, const char *text)
{
    FILE  *f = fopen(path, "w");

    if (f) {
        fputs(text, f);
        fclose(f);
    }
}


int
main(void)
{
    static const char  *good[] = {
        "a", "downloads/u/id/media.mp4", "x_y-z.1/2", "..a/b..", NULL
    };
    static const char  *bad[] = {
        "", "/abs", "a//b", "a/", "./a", "a/./b", "../a", "a/..", "a b",
        "a/\\b", "caf\xc3\xa9", "a\tb", NULL
    };
    char              root[] = "/tmp/crest-storage-XXXXXX";
    char              err[512], dir[1200], path[1400], src[1400];
    crest_storage_t  *st;
    int64_t           size = -1;
    struct stat       sb;
    const char      **k;

    for (k = good; *k; k++) {
        ok(crest_storage_key_valid(*k), "valid key \"%s\"", *k);
    }
    for (k = bad; *k; k++) {
        ok(!crest_storage_key_valid(*k), "invalid key \"%s\"", *k);
    }

    if (mkdtemp(root) == NULL) {
        ok(0, "mkdtemp");
        return done_testing();
    }

    snprintf(dir, sizeof(dir), "%s/media", root);
    st = crest_storage_local_open(dir, err, sizeof(err));
    ok(st != NULL, "local backend opens (and creates) %s", dir);
    if (st == NULL) {
        return done_testing();
    }
    is_str(st->kind, "local", "kind");

    ok(st->scratch(st, "dl-1", dir, sizeof(dir), err, sizeof(err)) == 0,
       "scratch directory");
    snprintf(src, sizeof(src), "%s/media.mp4", dir);
    write_file(src, "hello");
    snprintf(path, sizeof(path), "%s/leftover.part", dir);
    write_file(path, "partial");

    ok(st->put_file(st, "downloads/u/1/media.mp4", src, err, sizeof(err))
       == 0, "put_file: %s", err);
    ok(access(src, F_OK) != 0, "the source is consumed");
    ok(st->stat(st, "downloads/u/1/media.mp4", &size, err, sizeof(err)) == 0,
       "stat");
    is_int(size, 5, "size");
    is_int(st->stat(st, "downloads/u/1/other", &size, err, sizeof(err)), 1,
           "stat of a missing key");
    is_int(st->put_file(st, "../escape", src, err, sizeof(err)), -1,
           "put_file refuses an invalid key: %s", err);

    ok(st->scratch(st, "dl-1", dir, sizeof(dir), err, sizeof(err)) == 0,
       "scratch again");
    ok(access(path, F_OK) != 0, "scratch empties what an earlier attempt left");
    is_int(st->scratch(st, "a/b", dir, sizeof(dir), err, sizeof(err)), -1,
           "scratch names are one segment");

    ok(st->remove(st, "downloads/u/1/media.mp4", err, sizeof(err)) == 0,
       "remove");
    ok(st->remove(st, "downloads/u/1/media.mp4", err, sizeof(err)) == 0,
       "remove of a missing key is not an error");
    is_int(st->stat(st, "downloads/u/1/media.mp4", &size, err, sizeof(err)), 1,
           "gone");

    st->close(st);

    ok(crest_storage_rmtree(root) == 0, "rmtree");
    ok(stat(root, &sb) != 0, "the tree is gone");
    ok(crest_storage_rmtree(root) == 0, "rmtree of a missing path");

    return done_testing();
}
