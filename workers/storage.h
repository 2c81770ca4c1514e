/*
 * Where the workers keep files (downloaded media, thumbnails): one
 * interface, one implementation per backend.
 *
 *     crest_storage_t *st = crest_storage_open_env(err, sizeof(err));
 *     st->put_file(st, "downloads/<user>/<id>/media.mp4", "/tmp/x.mp4", err,
 *                  sizeof(err));
 *
 * Keys are relative paths of safe characters ([A-Za-z0-9._-] segments
 * joined by '/', no "." or ".." segment, no leading '/'); a backend maps
 * them to a path (local) or an object name (S3).  put_file moves or copies
 * the source so that a reader never sees a partial object: local storage
 * renames (or copies to a temporary name in the same directory, then
 * renames), S3 would upload (multipart above a threshold) and only then is
 * the object visible.
 *
 * Backends: "local" (CREST_STORAGE_DIR, default ./var/media) and "s3"
 * (storage_s3.c: CREST_S3_ENDPOINT, _BUCKET, _REGION and keys; SigV4
 * through libcurl's CURLOPT_AWS_SIGV4; multipart above a threshold);
 * CREST_STORAGE selects one.
 */
#ifndef CREST_STORAGE_H
#define CREST_STORAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct crest_storage_s  crest_storage_t;

struct crest_storage_s {
    const char  *kind;                          /* "local", "s3" */
    /* stores the file at src under key (src is consumed); 0 or -1 */
    int        (*put_file)(crest_storage_t *st, const char *key,
                           const char *src, char *err, size_t errlen);
    /* 0 and *size if the key exists, 1 if it does not, -1 on error */
    int        (*stat)(crest_storage_t *st, const char *key, int64_t *size,
                       char *err, size_t errlen);
    /* removes key; a missing key is not an error */
    int        (*remove)(crest_storage_t *st, const char *key, char *err,
                         size_t errlen);
    /* a scratch directory for work on key's behalf, created empty (what
     * was there before is removed); its path in dir */
    int        (*scratch)(crest_storage_t *st, const char *name, char *dir,
                          size_t dirlen, char *err, size_t errlen);
    void       (*close)(crest_storage_t *st);
};

/* 1 if key is a valid storage key. */
int crest_storage_key_valid(const char *key);

/* The local directory backend rooted at root (created if missing). */
crest_storage_t *crest_storage_local_open(const char *root, char *err,
    size_t errlen);

/* The S3 backend the CREST_S3_* variables describe (storage_s3.c); its
 * scratch directories are local, under CREST_STORAGE_SCRATCH. */
crest_storage_t *crest_storage_s3_open_env(char *err, size_t errlen);

/* The backend the environment names (storage_env.c): CREST_STORAGE
 * "local" (the default, CREST_STORAGE_DIR) or "s3". */
crest_storage_t *crest_storage_open_env(char *err, size_t errlen);

/* rm -rf of a directory the workers made (no symlinks followed); 0 or -1 */
int crest_storage_rmtree(const char *path);

#endif /* CREST_STORAGE_H */
