/*
 * Normalising YouTube, Apify (TikTok, X) and Reddit items into trending
 * video records.  Pure JSON in, JSON out: no I/O here.  Apify actors differ
 * in their field names, so several common spellings are tried for each.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crest_duration.h"
#include "trending.h"


/* The first of keys (a "a.b" path each) that is present and not null. */
static const json_t *
tv_get(const json_t *o, const char *const *keys)
{
    const json_t  *v;
    const char    *k, *dot;
    char           part[64];
    size_t         n;

    for ( ; *keys; keys++) {
        v = o;
        for (k = *keys; v && *k; k = dot ? dot + 1 : k + strlen(k)) {
            dot = strchr(k, '.');
            n = dot ? (size_t) (dot - k) : strlen(k);
            if (n >= sizeof(part)) {
                v = NULL;
                break;
            }
            memcpy(part, k, n);
            part[n] = '\0';
            if (json_is_array(v) && part[0] >= '0' && part[0] <= '9') {
                v = json_array_get(v, strtoul(part, NULL, 10));
            } else {
                v = json_is_object(v) ? json_object_get(v, part) : NULL;
            }
        }
        if (v && !json_is_null(v)) {
            return v;
        }
    }

    return NULL;
}


#define TV_KEYS(...)  ((const char *const []) { __VA_ARGS__, NULL })


static const char *
tv_str(const json_t *o, const char *const *keys)
{
    const json_t  *v = tv_get(o, keys);

    return json_is_string(v) && json_string_length(v) ? json_string_value(v)
                                                      : NULL;
}


/* A count: a JSON integer, a real, or a string of digits (YouTube). */
static json_t *
tv_count(const json_t *o, const char *const *keys)
{
    const json_t  *v = tv_get(o, keys);
    const char    *s;
    char          *end;
    long long      n;

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        return json_integer(json_integer_value(v));
    }

    if (json_is_real(v) && json_real_value(v) >= 0
        && json_real_value(v) < 9e18)
    {
        return json_integer((json_int_t) json_real_value(v));
    }

    if (json_is_string(v)) {
        s = json_string_value(v);
        if (*s >= '0' && *s <= '9') {
            n = strtoll(s, &end, 10);
            if (*end == '\0' && n >= 0) {
                return json_integer(n);
            }
        }
    }

    return json_null();
}


static json_t *
tv_strv(const char *s)
{
    return s ? json_string(s) : json_null();
}


/* Seconds since the epoch as ISO-8601 UTC. */
static json_t *
tv_time_epoch(double secs)
{
    char       buf[32];
    time_t     t = (time_t) secs;
    struct tm  tm;

    if (secs < 0 || secs > 32503680000.0 || gmtime_r(&t, &tm) == NULL) {
        return json_null();
    }

    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);

    return json_string(buf);
}


/* ISO-8601 (kept if it looks like one), epoch seconds or milliseconds, or
 * Twitter's "Wed Oct 10 20:19:24 +0000 2018". */
static json_t *
tv_time(const json_t *o, const char *const *keys)
{
    const json_t  *v = tv_get(o, keys);
    const char    *s, *end, *q;
    struct tm      tm;
    double         d;
    int            off;

    if (json_is_number(v)) {
        d = json_number_value(v);
        return tv_time_epoch(d > 1e11 ? d / 1000 : d);
    }

    if (!json_is_string(v)) {
        return json_null();
    }

    s = json_string_value(v);

    if (strlen(s) >= 19 && isdigit((unsigned char) s[0]) && s[4] == '-'
        && s[7] == '-' && s[10] == 'T')
    {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (end == NULL) {
            return json_null();
        }
        if (*end == '.') {
            for (end++; isdigit((unsigned char) *end); end++) { /* void */ }
        }
        d = (double) timegm(&tm);
        if ((*end == '+' || *end == '-') && isdigit((unsigned char) end[1])
            && isdigit((unsigned char) end[2]))
        {
            /* +hh:mm, +hhmm or +hh: local time ahead of UTC */
            off = ((end[1] - '0') * 10 + (end[2] - '0')) * 3600;
            q = end + 3 + (end[3] == ':');
            if (isdigit((unsigned char) q[0]) && isdigit((unsigned char) q[1]))
            {
                off += ((q[0] - '0') * 10 + (q[1] - '0')) * 60;
            }
            d -= *end == '+' ? off : -off;
        }
        return tv_time_epoch(d);
    }

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%a %b %d %H:%M:%S %z %Y", &tm);
    if (end && *end == '\0') {
        off = (int) tm.tm_gmtoff;       /* timegm() resets it */
        return tv_time_epoch((double) timegm(&tm) - off);
    }

    return json_null();
}


/* "#word" tokens of text, lower-cased, without duplicates, at most 30. */
static void
tv_hashtags_from_text(const char *text, json_t *tags)
{
    const unsigned char  *p, *q;
    char                  tag[101];
    size_t                n, i;
    const json_t         *v;
    int                   dup;

    for (p = (const unsigned char *) text; p && *p; p++) {
        if (*p != '#' || json_array_size(tags) >= 30) {
            continue;
        }
        if (p > (const unsigned char *) text
            && (isalnum(p[-1]) || p[-1] == '_' || p[-1] == '&'))
        {
            continue;
        }
        for (q = p + 1; *q && (isalnum(*q) || *q == '_' || *q >= 0x80); q++) {
            /* letters of any script: UTF-8 bytes are all >= 0x80 */
        }
        n = (size_t) (q - p - 1);
        if (n == 0 || n >= sizeof(tag)) {
            continue;
        }
        for (i = 0; i < n; i++) {
            tag[i] = (char) tolower(p[1 + i]);
        }
        tag[n] = '\0';
        dup = 0;
        json_array_foreach(tags, i, v) {
            if (strcmp(json_string_value(v), tag) == 0) {
                dup = 1;
                break;
            }
        }
        if (!dup) {
            json_array_append_new(tags, json_string(tag));
        }
        p = q - 1;
    }
}


/* A list of tag strings or of objects with a name/text field. */
static void
tv_hashtags_from_list(const json_t *list, json_t *tags)
{
    size_t         i;
    const json_t  *t;
    const char    *s;
    char           buf[110];

    json_array_foreach(list, i, t) {
        s = json_is_string(t) ? json_string_value(t)
                              : tv_str(t, TV_KEYS("name", "text", "tag"));
        if (s && strlen(s) < 100) {
            snprintf(buf, sizeof(buf), "#%s", s[0] == '#' ? s + 1 : s);
            tv_hashtags_from_text(buf, tags);
        }
    }
}


static json_t *
tv_record(const char *platform, const char *id, const char *region,
    const char *category, int rank)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:i}", "platform", platform,
                     "platformId", id, "region", region,
                     "category", category ? category : "", "rank", rank);
}


static int
tv_finish(json_t *out, json_t *rec)
{
    const json_t  *url = json_object_get(rec, "url");

    if (!json_is_string(url)) {
        json_decref(rec);
        return 0;
    }

    if (!json_is_string(json_object_get(rec, "title"))) {
        json_object_set_new(rec, "title", json_string(""));
    }

    return json_array_append_new(out, rec) == 0;
}


int
crest_trending_norm_youtube(const json_t *resp, const char *region,
    const char *category, int first_rank, json_t *out)
{
    const json_t  *items, *it, *sn;
    const char    *id, *s, *ch;
    json_t        *rec, *tags;
    size_t         i;
    int            added = 0;
    int64_t        secs;
    char           buf[256];

    items = json_object_get(resp, "items");

    if (!json_is_array(items)) {
        return -1;
    }

    json_array_foreach(items, i, it) {
        id = tv_str(it, TV_KEYS("id"));
        if (id == NULL || strlen(id) > 64) {
            continue;
        }
        sn = json_object_get(it, "snippet");
        rec = tv_record("youtube", id, region, category,
                        first_rank + (int) i);
        json_object_set_new(rec, "title", tv_strv(tv_str(sn, TV_KEYS("title"))));
        json_object_set_new(rec, "description",
                            tv_strv(tv_str(sn, TV_KEYS("description"))));
        json_object_set_new(rec, "thumbnailUrl", tv_strv(tv_str(sn,
            TV_KEYS("thumbnails.maxres.url", "thumbnails.standard.url",
                    "thumbnails.high.url", "thumbnails.medium.url",
                    "thumbnails.default.url"))));
        json_object_set_new(rec, "viewCount",
                            tv_count(it, TV_KEYS("statistics.viewCount")));
        json_object_set_new(rec, "likeCount",
                            tv_count(it, TV_KEYS("statistics.likeCount")));
        json_object_set_new(rec, "commentCount",
                            tv_count(it, TV_KEYS("statistics.commentCount")));
        json_object_set_new(rec, "creatorName",
                            tv_strv(tv_str(sn, TV_KEYS("channelTitle"))));
        ch = tv_str(sn, TV_KEYS("channelId"));
        if (ch && strlen(ch) < 128) {
            snprintf(buf, sizeof(buf), "https://www.youtube.com/channel/%s", ch);
            json_object_set_new(rec, "creatorUrl", json_string(buf));
        } else {
            json_object_set_new(rec, "creatorUrl", json_null());
        }
        s = tv_str(it, TV_KEYS("contentDetails.duration"));
        json_object_set_new(rec, "durationSeconds",
            s && crest_duration_parse(s, strlen(s), &secs) == 0
            && secs <= INT32_MAX ? json_integer(secs) : json_null());
        snprintf(buf, sizeof(buf), "https://www.youtube.com/watch?v=%s", id);
        json_object_set_new(rec, "url", json_string(buf));
        json_object_set_new(rec, "publishedAt",
                            tv_time(sn, TV_KEYS("publishedAt")));
        tags = json_array();
        tv_hashtags_from_text(tv_str(sn, TV_KEYS("title")), tags);
        tv_hashtags_from_text(tv_str(sn, TV_KEYS("description")), tags);
        json_object_set_new(rec, "hashtags", tags);
        added += tv_finish(out, rec);
    }

    return added;
}


static json_t *
tv_duration_field(const json_t *o, const char *const *secs_keys,
    const char *const *ms_keys)
{
    const json_t  *v = tv_get(o, secs_keys);

    if (json_is_number(v) && json_number_value(v) >= 0
        && json_number_value(v) < 1e9)
    {
        return json_integer((json_int_t) json_number_value(v));
    }

    v = tv_get(o, ms_keys);
    if (json_is_number(v) && json_number_value(v) >= 0
        && json_number_value(v) < 1e12)
    {
        return json_integer((json_int_t) (json_number_value(v) / 1000));
    }

    return json_null();
}


/* The id as text: actors give strings or (unsafe) numbers. */
static const char *
tv_id(const json_t *it, const char *const *keys, char *buf, size_t len)
{
    const json_t  *v = tv_get(it, keys);

    if (json_is_string(v) && json_string_length(v) > 0
        && json_string_length(v) <= 64)
    {
        return json_string_value(v);
    }

    if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }

    return NULL;
}


int
crest_trending_norm_tiktok(const json_t *items, const char *region,
    const char *category, int first_rank, json_t *out)
{
    const json_t  *it;
    const char    *id, *s, *user;
    json_t        *rec, *tags;
    size_t         i;
    int            added = 0;
    char           idbuf[32], buf[512];

    if (!json_is_array(items)) {
        return -1;
    }

    json_array_foreach(items, i, it) {
        id = tv_id(it, TV_KEYS("id", "aweme_id", "videoId"), idbuf,
                   sizeof(idbuf));
        if (id == NULL) {
            continue;
        }
        rec = tv_record("tiktok", id, region, category, first_rank + (int) i);
        s = tv_str(it, TV_KEYS("text", "desc", "description", "title"));
        json_object_set_new(rec, "title", json_string(s ? s : ""));
        json_object_set_new(rec, "description", tv_strv(s));
        json_object_set_new(rec, "thumbnailUrl", tv_strv(tv_str(it,
            TV_KEYS("videoMeta.coverUrl", "covers.default", "cover",
                    "thumbnail"))));
        json_object_set_new(rec, "viewCount",
            tv_count(it, TV_KEYS("playCount", "stats.playCount", "views")));
        json_object_set_new(rec, "likeCount",
            tv_count(it, TV_KEYS("diggCount", "stats.diggCount", "likes")));
        json_object_set_new(rec, "commentCount",
            tv_count(it, TV_KEYS("commentCount", "stats.commentCount",
                                 "comments")));
        user = tv_str(it, TV_KEYS("authorMeta.name", "author.uniqueId",
                                  "author", "authorName"));
        json_object_set_new(rec, "creatorName", tv_strv(tv_str(it,
            TV_KEYS("authorMeta.nickName", "author.nickname", "authorMeta.name",
                    "author.uniqueId", "author", "authorName"))));
        s = tv_str(it, TV_KEYS("authorMeta.profileUrl", "author.url"));
        if (s == NULL && user && strlen(user) < 200) {
            snprintf(buf, sizeof(buf), "https://www.tiktok.com/@%s", user);
            s = buf;
        }
        json_object_set_new(rec, "creatorUrl", tv_strv(s));
        json_object_set_new(rec, "durationSeconds", tv_duration_field(it,
            TV_KEYS("videoMeta.duration", "video.duration", "duration"),
            TV_KEYS("durationMs")));
        s = tv_str(it, TV_KEYS("webVideoUrl", "url", "videoUrl"));
        if (s == NULL && user && strlen(user) < 200) {
            snprintf(buf, sizeof(buf), "https://www.tiktok.com/@%s/video/%s",
                     user, id);
            s = buf;
        }
        json_object_set_new(rec, "url", tv_strv(s));
        json_object_set_new(rec, "publishedAt",
            tv_time(it, TV_KEYS("createTimeISO", "createTime", "createdAt")));
        tags = json_array();
        tv_hashtags_from_list(json_object_get(it, "hashtags"), tags);
        tv_hashtags_from_text(tv_str(it, TV_KEYS("text", "desc")), tags);
        json_object_set_new(rec, "hashtags", tags);
        added += tv_finish(out, rec);
    }

    return added;
}


int
crest_trending_norm_x(const json_t *items, const char *region,
    const char *category, int first_rank, json_t *out)
{
    const json_t  *it;
    const char    *id, *s, *user;
    json_t        *rec, *tags;
    size_t         i;
    int            added = 0;
    char           idbuf[32], buf[512];

    if (!json_is_array(items)) {
        return -1;
    }

    json_array_foreach(items, i, it) {
        id = tv_id(it, TV_KEYS("id", "id_str", "tweetId"), idbuf,
                   sizeof(idbuf));
        if (id == NULL) {
            continue;
        }
        rec = tv_record("x", id, region, category, first_rank + (int) i);
        s = tv_str(it, TV_KEYS("fullText", "full_text", "text"));
        json_object_set_new(rec, "title", json_string(s ? s : ""));
        json_object_set_new(rec, "description", tv_strv(s));
        json_object_set_new(rec, "thumbnailUrl", tv_strv(tv_str(it,
            TV_KEYS("extendedEntities.media.0.media_url_https",
                    "media.0.media_url_https", "thumbnail"))));
        json_object_set_new(rec, "viewCount",
                            tv_count(it, TV_KEYS("viewCount", "views")));
        json_object_set_new(rec, "likeCount",
            tv_count(it, TV_KEYS("likeCount", "favorite_count", "likes")));
        json_object_set_new(rec, "commentCount",
            tv_count(it, TV_KEYS("replyCount", "reply_count", "replies")));
        user = tv_str(it, TV_KEYS("author.userName", "user.screen_name",
                                  "username"));
        json_object_set_new(rec, "creatorName", tv_strv(tv_str(it,
            TV_KEYS("author.name", "user.name", "author.userName",
                    "username"))));
        s = tv_str(it, TV_KEYS("author.url"));
        if (s == NULL && user && strlen(user) < 200) {
            snprintf(buf, sizeof(buf), "https://x.com/%s", user);
            s = buf;
        }
        json_object_set_new(rec, "creatorUrl", tv_strv(s));
        json_object_set_new(rec, "durationSeconds", tv_duration_field(it,
            TV_KEYS("videoDuration", "duration"),
            TV_KEYS("video.duration_millis", "durationMs")));
        s = tv_str(it, TV_KEYS("url", "twitterUrl"));
        if (s == NULL && user && strlen(user) < 200) {
            snprintf(buf, sizeof(buf), "https://x.com/%s/status/%s", user, id);
            s = buf;
        }
        json_object_set_new(rec, "url", tv_strv(s));
        json_object_set_new(rec, "publishedAt",
                            tv_time(it, TV_KEYS("createdAt", "created_at")));
        tags = json_array();
        tv_hashtags_from_list(tv_get(it, TV_KEYS("entities.hashtags",
                                                 "hashtags")), tags);
        tv_hashtags_from_text(tv_str(it, TV_KEYS("fullText", "text")), tags);
        json_object_set_new(rec, "hashtags", tags);
        added += tv_finish(out, rec);
    }

    return added;
}


int
crest_trending_norm_reddit(const json_t *resp, const char *region,
    const char *category, int first_rank, json_t *out)
{
    const json_t  *children, *c, *d;
    const char    *id, *s;
    json_t        *rec, *tags;
    size_t         i;
    int            added = 0, rank = first_rank;
    char           buf[1024];

    children = tv_get(resp, TV_KEYS("data.children"));

    if (!json_is_array(children)) {
        return -1;
    }

    json_array_foreach(children, i, c) {
        d = json_object_get(c, "data");
        id = tv_str(d, TV_KEYS("id"));
        if (id == NULL || strlen(id) > 32) {
            continue;
        }
        rec = tv_record("reddit", id, region, category, rank++);
        json_object_set_new(rec, "title", tv_strv(tv_str(d, TV_KEYS("title"))));
        json_object_set_new(rec, "description",
                            tv_strv(tv_str(d, TV_KEYS("selftext"))));
        s = tv_str(d, TV_KEYS("thumbnail"));
        json_object_set_new(rec, "thumbnailUrl",
            tv_strv(s && strncmp(s, "http", 4) == 0 ? s : NULL));
        json_object_set_new(rec, "viewCount",
                            tv_count(d, TV_KEYS("view_count")));
        json_object_set_new(rec, "likeCount", tv_count(d, TV_KEYS("score")));
        json_object_set_new(rec, "commentCount",
                            tv_count(d, TV_KEYS("num_comments")));
        s = tv_str(d, TV_KEYS("author"));
        json_object_set_new(rec, "creatorName", tv_strv(s));
        if (s && strlen(s) < 100) {
            snprintf(buf, sizeof(buf), "https://www.reddit.com/user/%s", s);
            json_object_set_new(rec, "creatorUrl", json_string(buf));
        } else {
            json_object_set_new(rec, "creatorUrl", json_null());
        }
        json_object_set_new(rec, "durationSeconds", tv_duration_field(d,
            TV_KEYS("media.reddit_video.duration",
                    "secure_media.reddit_video.duration"), TV_KEYS("-")));
        s = tv_str(d, TV_KEYS("permalink"));
        if (s && s[0] == '/' && strlen(s) < 900) {
            snprintf(buf, sizeof(buf), "https://www.reddit.com%s", s);
            json_object_set_new(rec, "url", json_string(buf));
        } else {
            json_object_set_new(rec, "url",
                                tv_strv(tv_str(d, TV_KEYS("url"))));
        }
        json_object_set_new(rec, "publishedAt",
                            tv_time(d, TV_KEYS("created_utc")));
        tags = json_array();
        tv_hashtags_from_text(tv_str(d, TV_KEYS("title")), tags);
        json_object_set_new(rec, "hashtags", tags);
        added += tv_finish(out, rec);
    }

    return added;
}
