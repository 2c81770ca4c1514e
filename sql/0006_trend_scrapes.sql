-- 0006 trend scrapes: a user's own keyword scrapes (POST /api/trends/scrape).
-- The edge writes the row ('pending') and its `trend-scrape` job's row in
-- one statement; crest-worker's trend-scrape processor moves it to
-- 'running', then 'completed' with the results, or 'failed' with the error.
-- DELETE removes the row and cancels a job still to run; the worker leaves
-- alone a row that is gone or no longer pending/running.
--
-- results holds the trending-video records as workers/trending_norm.c
-- makes them (see workers/trending.h): a scrape is read whole, never
-- queried inside, so a jsonb array beats a child table.

CREATE TABLE trend_scrapes (
    id            uuid PRIMARY KEY,          -- generated at the edge
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id        uuid REFERENCES jobs (id) ON DELETE SET NULL,
    platform      text NOT NULL
                  CHECK (platform IN ('youtube', 'tiktok', 'x', 'reddit')),
    keywords      text[] NOT NULL
                  CHECK (cardinality(keywords) BETWEEN 1 AND 10),
    result_limit  integer NOT NULL CHECK (result_limit BETWEEN 1 AND 100),
    filters       jsonb NOT NULL DEFAULT '{}'
                  CHECK (jsonb_typeof(filters) = 'object'),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                    'cancelled')),
    error         text,
    results       jsonb NOT NULL DEFAULT '[]'
                  CHECK (jsonb_typeof(results) = 'array'),
    result_count  integer NOT NULL DEFAULT 0 CHECK (result_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

-- The owner's listing, newest first, optionally by status or platform.
CREATE INDEX trend_scrapes_user_created_idx
    ON trend_scrapes (user_id, created_at DESC, id DESC);
CREATE INDEX trend_scrapes_user_status_idx
    ON trend_scrapes (user_id, status, created_at DESC);
CREATE INDEX trend_scrapes_user_platform_idx
    ON trend_scrapes (user_id, platform, created_at DESC);
-- ON DELETE SET NULL from jobs.
CREATE INDEX trend_scrapes_job_idx ON trend_scrapes (job_id);

CREATE TRIGGER trend_scrapes_touch_updated_at
    BEFORE UPDATE ON trend_scrapes
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();
