/*
 * The processors crest-worker knows, one per queue.  CREST_QUEUES picks
 * which of them a process serves; a queue without an entry here is a
 * configuration error.  To add one: write crest_job_result_t fn(ctx, job,
 * out) (see processor.h), declare it in processor.h and list it below.
 */
#include <string.h>

#include "processor.h"


const crest_processor_t  crest_processors[] = {
    { "ping", crest_ping_process,
      "echoes its data; optional delayMs, fail, failTimes, progress, log" },
    { "trending-refresh", crest_trending_refresh_process,
      "trending videos of {platform, region, category?, query?} into "
      "trending_videos and crest:trending:* (see README)" },
    { "download", crest_download_process,
      "downloads {downloadId, userId, url, format, audioOnly} with yt-dlp" },
    { "formats", crest_formats_process,
      "lists the formats yt-dlp -J finds for {url}" },
    { "trend-scrape", crest_trend_scrape_process,
      "a user's keyword scrape {scrapeId, platform, keywords, limit, "
      "filters} into trend_scrapes (see README)" },
    { NULL, NULL, NULL }
};


const crest_processor_t *
crest_processor_find(const char *queue)
{
    const crest_processor_t  *p;

    for (p = crest_processors; p->queue; p++) {
        if (strcmp(p->queue, queue) == 0) {
            return p;
        }
    }

    return NULL;
}
