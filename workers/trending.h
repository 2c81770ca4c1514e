/*
 * Trend discovery: turning each platform's answer into trending video
 * records (trending_norm.c) and the trending-refresh processor
 * (trending.c).  A record is a JSON object with these keys, null where the
 * platform does not say:
 *
 *   platform, platformId, region, category, rank, title, description,
 *   thumbnailUrl, viewCount, likeCount, commentCount, creatorName,
 *   creatorUrl, durationSeconds, url, publishedAt (ISO-8601 UTC), hashtags
 */
#ifndef CREST_TRENDING_H
#define CREST_TRENDING_H

#include <jansson.h>

/*
 * Each appends the records of one answer to out (a JSON array), ranks
 * numbered from first_rank; items without an id are skipped.  Returns how
 * many were added, or -1 if the answer has not the expected shape.
 */
int crest_trending_norm_youtube(const json_t *resp, const char *region,
    const char *category, int first_rank, json_t *out);
int crest_trending_norm_tiktok(const json_t *items, const char *region,
    const char *category, int first_rank, json_t *out);
int crest_trending_norm_x(const json_t *items, const char *region,
    const char *category, int first_rank, json_t *out);
int crest_trending_norm_reddit(const json_t *resp, const char *region,
    const char *category, int first_rank, json_t *out);

#endif /* CREST_TRENDING_H */
