-- 0004 trending: videos the scraper worker found on each platform's chart
-- (crest-worker, queue trending-refresh).  One row per video per region;
-- a refresh updates counts and rank in place (upsert on the unique key).
-- category is '' for a platform's whole chart, so that it can be part of
-- the key and of the paging index without NULL handling.
CREATE TABLE trending_videos (
    id             bigserial PRIMARY KEY,
    platform       text NOT NULL
                   CHECK (platform IN ('youtube', 'tiktok', 'x', 'reddit')),
    platform_id    text NOT NULL CHECK (length(platform_id) BETWEEN 1 AND 200),
    region         text NOT NULL,           -- ISO 3166 alpha-2, or a subreddit
    category       text NOT NULL DEFAULT '',
    rank           integer NOT NULL,        -- 1-based position at the last refresh
    title          text NOT NULL DEFAULT '',
    description    text,
    thumbnail_url  text,
    view_count     bigint,                  -- NULL: the platform did not say
    like_count     bigint,
    comment_count  bigint,
    creator_name   text,
    creator_url    text,
    duration_s     integer,
    url            text NOT NULL,
    published_at   timestamptz,
    hashtags       text[] NOT NULL DEFAULT '{}',
    fetched_at     timestamptz NOT NULL DEFAULT now(),   -- last refresh that saw it
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (platform, platform_id, region)
);

-- The edge pages by (platform, region, category) ordered by views or by
-- rank, with id as the tie-breaker for keyset paging.
CREATE INDEX trending_videos_views_idx
    ON trending_videos (platform, region, category, view_count DESC NULLS LAST, id);
CREATE INDEX trending_videos_rank_idx
    ON trending_videos (platform, region, category, rank, id);
-- Pruning rows no refresh has seen for a while.
CREATE INDEX trending_videos_fetched_idx ON trending_videos (fetched_at);
