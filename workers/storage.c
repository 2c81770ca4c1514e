/*
 * The local directory backend and what all backends share: see storage.h.
 * S3 is in storage_s3.c, the choice between them in storage_env.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage.h"


#define ERR(...)  do { if (errlen) snprintf(err, errlen, __VA_ARGS__); \
                       return -1; } while (0)

typedef struct {
    crest_storage_t  base;
    char             root[1024];
} crest_storage_local_t;


int
crest_storage_key_valid(const char *key)
{
    const char  *p, *seg;
    size_t       n;

    if (key == NULL || *key == '\0' || strlen(key) > 512) {
        return 0;
    }

    for (seg = p = key; ; p++) {
        if (*p == '/' || *p == '\0') {
            n = (size_t) (p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.')
                || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            {
                return 0;
            }
            if (*p == '\0') {
                return 1;
            }
            seg = p + 1;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '-'))
        {
            return 0;
        }
    }
}


/* mkdir -p of path's directories; with last, path itself too. */
static int
mkdirs(const char *path, int last)
{
    char    buf[1200];
    char   *p;
    size_t  n = strlen(path);

    if (n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);

    for (p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }

    if (last && mkdir(buf, 0755) != 0 && errno != EEXIST) {
        return -1;
    }

    return 0;
}


static int
copy_file(const char *src, const char *dst)
{
    char     buf[65536];
    ssize_t  n, w, off;
    int      in, out, rc = -1;

    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return -1;
    }
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }

    for ( ;; ) {
        n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n == 0 ? 0 : -1;
            break;
        }
        for (off = 0; off < n; off += w) {
            w = write(out, buf + off, (size_t) (n - off));
            if (w < 0) {
                if (errno == EINTR) {
                    w = 0;
                    continue;
                }
                goto done;
            }
        }
    }

    if (rc == 0 && fsync(out) != 0) {
        rc = -1;
    }

done:
    close(in);
    if (close(out) != 0) {
        rc = -1;
    }
    return rc;
}


static int
local_path(crest_storage_local_t *l, const char *key, char *path, size_t len)
{
    if (!crest_storage_key_valid(key)) {
        return -1;
    }
    return (size_t) snprintf(path, len, "%s/%s", l->root, key) < len ? 0 : -1;
}


static int
local_put_file(crest_storage_t *st, const char *key, const char *src,
    char *err, size_t errlen)
{
    crest_storage_local_t  *l = (crest_storage_local_t *) st;
    char                    dst[1200], tmp[1300];

    if (local_path(l, key, dst, sizeof(dst)) != 0) {
        ERR("invalid storage key \"%s\"", key);
    }
    if (mkdirs(dst, 0) != 0) {
        ERR("cannot create the directory of %s: %s", dst, strerror(errno));
    }
    if (rename(src, dst) == 0) {
        return 0;
    }
    if (errno != EXDEV) {
        ERR("cannot move %s to %s: %s", src, dst, strerror(errno));
    }

    /* another file system: copy next to the target, then rename */
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", dst, (long) getpid());
    if (copy_file(src, tmp) != 0 || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        ERR("cannot copy %s to %s: %s", src, dst, strerror(e));
    }
    unlink(src);

    return 0;
}


static int
local_stat(crest_storage_t *st, const char *key, int64_t *size, char *err,
    size_t errlen)
{
    crest_storage_local_t  *l = (crest_storage_local_t *) st;
    char                    path[1200];
    struct stat             sb;

    if (local_path(l, key, path, sizeof(path)) != 0) {
        ERR("invalid storage key \"%s\"", key);
    }
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) {
            return 1;
        }
        ERR("stat %s: %s", path, strerror(errno));
    }
    *size = (int64_t) sb.st_size;

    return 0;
}


static int
local_remove(crest_storage_t *st, const char *key, char *err, size_t errlen)
{
    crest_storage_local_t  *l = (crest_storage_local_t *) st;
    char                    path[1200];

    if (local_path(l, key, path, sizeof(path)) != 0) {
        ERR("invalid storage key \"%s\"", key);
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        ERR("unlink %s: %s", path, strerror(errno));
    }

    return 0;
}


static int
local_scratch(crest_storage_t *st, const char *name, char *dir, size_t dirlen,
    char *err, size_t errlen)
{
    crest_storage_local_t  *l = (crest_storage_local_t *) st;

    if (!crest_storage_key_valid(name) || strchr(name, '/')) {
        ERR("invalid scratch name \"%s\"", name);
    }
    if ((size_t) snprintf(dir, dirlen, "%s/.scratch/%s", l->root, name)
        >= dirlen)
    {
        ERR("scratch path too long");
    }
    if (crest_storage_rmtree(dir) != 0) {
        ERR("cannot empty %s: %s", dir, strerror(errno));
    }
    if (mkdirs(dir, 1) != 0) {
        ERR("cannot create %s: %s", dir, strerror(errno));
    }

    return 0;
}


static void
local_close(crest_storage_t *st)
{
    free(st);
}


crest_storage_t *
crest_storage_local_open(const char *root, char *err, size_t errlen)
{
    crest_storage_local_t  *l;
    size_t                  n;

    n = strlen(root);
    while (n > 1 && root[n - 1] == '/') {
        n--;
    }
    if (n == 0 || n >= sizeof(l->root)) {
        snprintf(err, errlen, "CREST_STORAGE_DIR: bad directory");
        return NULL;
    }

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(l->root, root, n);
    l->root[n] = '\0';

    if (mkdirs(l->root, 1) != 0) {
        snprintf(err, errlen, "CREST_STORAGE_DIR: cannot create %s: %s",
                 l->root, strerror(errno));
        free(l);
        return NULL;
    }

    l->base.kind = "local";
    l->base.put_file = local_put_file;
    l->base.stat = local_stat;
    l->base.remove = local_remove;
    l->base.scratch = local_scratch;
    l->base.close = local_close;

    return &l->base;
}


static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) ftw;

    if (flag == FTW_DP || flag == FTW_D) {
        return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
    }

    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}


int
crest_storage_rmtree(const char *path)
{
    struct stat  sb;

    if (lstat(path, &sb) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        return unlink(path);
    }

    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
