/* Unit tests for workers/trending_norm.c, included directly. */
#include "../../workers/trending_norm.c"
#include "tap.h"


static json_t *
load(const char *s)
{
    json_error_t  e;
    json_t       *j = json_loads(s, 0, &e);

    if (j == NULL) {
        diag("bad test JSON: %s", e.text);
    }
    return j;
}


static const char *
str(const json_t *rec, const char *k)
{
    const char  *s = json_string_value(json_object_get(rec, k));

    return s ? s : "(null)";
}


static long long
num(const json_t *rec, const char *k)
{
    const json_t  *v = json_object_get(rec, k);

    return json_is_integer(v) ? (long long) json_integer_value(v) : -1;
}


static char *
tags(const json_t *rec)
{
    return json_dumps(json_object_get(rec, "hashtags"), JSON_COMPACT);
}


int
main(void)
{
    json_t  *in, *out, *r;
    char    *t;

    /* YouTube: string counts, duration, thumbnails, ids, hashtags */
    in = load("{\"items\":[{\"id\":\"abc\",\"snippet\":{\"title\":\"Hi #One "
              "#one x#no #Two_2\",\"description\":\"d #three\","
              "\"publishedAt\":\"2026-11-20T10:00:00Z\",\"channelId\":\"UC1\","
              "\"channelTitle\":\"C\",\"thumbnails\":{\"medium\":{\"url\":"
              "\"m\"},\"default\":{\"url\":\"d\"}}},\"contentDetails\":"
              "{\"duration\":\"P1DT1S\"},\"statistics\":{\"viewCount\":"
              "\"12345678901\",\"likeCount\":\"7\"}},{\"snippet\":{}},"
              "{\"id\":\"live\",\"contentDetails\":{\"duration\":\"P0D\"},"
              "\"statistics\":{\"viewCount\":\"x\"}}]}");
    out = json_array();
    is_int(crest_trending_norm_youtube(in, "US", "", 5, out), 2,
           "youtube: two items (one without id skipped)");
    r = json_array_get(out, 0);
    is_str(str(r, "platformId"), "abc", "id");
    is_int(num(r, "rank"), 5, "rank from first_rank");
    is_int(num(r, "viewCount") == 12345678901LL, 1, "a count over 2^32");
    is_int(num(r, "likeCount"), 7, "likes");
    ok(json_is_null(json_object_get(r, "commentCount")), "missing: null");
    is_int(num(r, "durationSeconds"), 86401, "P1DT1S");
    is_str(str(r, "thumbnailUrl"), "m", "the best thumbnail there is");
    is_str(str(r, "url"), "https://www.youtube.com/watch?v=abc", "url");
    is_str(str(r, "creatorUrl"), "https://www.youtube.com/channel/UC1",
           "channel url");
    is_str(str(r, "publishedAt"), "2026-11-20T10:00:00Z", "published");
    t = tags(r);
    is_str(t, "[\"one\",\"two_2\",\"three\"]", "hashtags: lower, unique");
    free(t);
    r = json_array_get(out, 1);
    is_int(num(r, "durationSeconds"), 0, "P0D (live) = 0");
    ok(json_is_null(json_object_get(r, "viewCount")), "a bad count: null");
    is_str(str(r, "title"), "", "a missing title: empty");
    json_decref(in);
    json_decref(out);

    in = load("{\"kind\":\"youtube#videoListResponse\"}");
    out = json_array();
    is_int(crest_trending_norm_youtube(in, "US", "", 1, out), -1,
           "no items array: -1");
    json_decref(in);
    json_decref(out);

    /* TikTok via Apify: numeric id, alternative fields */
    in = load("[{\"id\":7300000000000000001,\"desc\":\"hey\",\"author\":"
              "{\"uniqueId\":\"bob\",\"nickname\":\"Bob\"},\"stats\":"
              "{\"playCount\":10,\"diggCount\":2.0},\"createTime\":1763726400,"
              "\"video\":{\"duration\":12},\"hashtags\":[\"#Tag\",{\"name\":"
              "\"x\"}]}, 5, {\"id\":\"\"}]");
    out = json_array();
    is_int(crest_trending_norm_tiktok(in, "GB", "", 1, out), 1, "tiktok: one");
    r = json_array_get(out, 0);
    is_str(str(r, "platformId"), "7300000000000000001", "a numeric id kept");
    is_str(str(r, "url"), "https://www.tiktok.com/@bob/video/7300000000000000001",
           "url built from the author");
    is_str(str(r, "creatorName"), "Bob", "nickname");
    is_int(num(r, "viewCount"), 10, "stats.playCount");
    is_int(num(r, "likeCount"), 2, "a real count");
    is_int(num(r, "durationSeconds"), 12, "video.duration");
    is_str(str(r, "publishedAt"), "2025-11-21T12:00:00Z", "epoch seconds");
    t = tags(r);
    is_str(t, "[\"tag\",\"x\"]", "hashtag list of strings and objects");
    free(t);
    json_decref(in);
    json_decref(out);

    /* X via Apify: Twitter's date, media thumbnail, ms duration */
    in = load("[{\"id_str\":\"99\",\"full_text\":\"t #A\",\"user\":"
              "{\"screen_name\":\"ann\",\"name\":\"Ann\"},\"created_at\":"
              "\"Wed Oct 10 20:19:24 +0200 2018\",\"extendedEntities\":"
              "{\"media\":[{\"media_url_https\":\"https://p/1.jpg\"}]},"
              "\"video\":{\"duration_millis\":30500}}]");
    out = json_array();
    is_int(crest_trending_norm_x(in, "US", "", 1, out), 1, "x: one");
    r = json_array_get(out, 0);
    is_str(str(r, "url"), "https://x.com/ann/status/99", "url");
    is_str(str(r, "publishedAt"), "2018-10-10T18:19:24Z", "Twitter date, UTC");
    is_str(str(r, "thumbnailUrl"), "https://p/1.jpg", "media thumbnail");
    is_int(num(r, "durationSeconds"), 30, "duration_millis");
    json_decref(in);
    json_decref(out);

    /* Reddit */
    in = load("{\"kind\":\"Listing\",\"data\":{\"children\":[{\"kind\":\"t3\","
              "\"data\":{\"id\":\"p1\",\"title\":\"T\",\"score\":3,"
              "\"num_comments\":4,\"author\":\"u\",\"permalink\":\"/r/v/1/\","
              "\"created_utc\":1763600000.0,\"thumbnail\":\"self\"}}]}}");
    out = json_array();
    is_int(crest_trending_norm_reddit(in, "US", "videos", 1, out), 1,
           "reddit: one");
    r = json_array_get(out, 0);
    is_str(str(r, "url"), "https://www.reddit.com/r/v/1/", "permalink url");
    ok(json_is_null(json_object_get(r, "thumbnailUrl")), "\"self\" is no "
       "thumbnail");
    is_str(str(r, "category"), "videos", "category");
    json_decref(in);
    json_decref(out);

    /* ISO times with offsets and fractions */
    in = load("{\"a\":\"2026-01-01T01:00:00.123+01:30\",\"b\":\"2026-01-01T"
              "00:00:00-0500\",\"c\":\"yesterday\"}");
    r = tv_time(in, TV_KEYS("a"));
    is_str(json_string_value(r), "2025-12-31T23:30:00Z", "+01:30");
    json_decref(r);
    r = tv_time(in, TV_KEYS("b"));
    is_str(json_string_value(r), "2026-01-01T05:00:00Z", "-0500");
    json_decref(r);
    r = tv_time(in, TV_KEYS("c"));
    ok(json_is_null(r), "not a time: null");
    json_decref(r);
    json_decref(in);

    return done_testing();
}
