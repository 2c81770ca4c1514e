-- 0005 media downloads: one row per download a user asked for.  The edge
-- creates the row ('pending') and enqueues a `download` job with its id;
-- crest-worker's download processor moves it through downloading ->
-- processing -> completed (or failed / cancelled) and keeps progress, speed,
-- eta and byte counts current while it runs (throttled).  Setting status to
-- 'cancelled' while a download runs stops it: the worker kills yt-dlp and
-- removes partial files.

CREATE TABLE media_downloads (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    job_id        text,                 -- the BullMQ job id
    original_url  text NOT NULL,
    format        text,                 -- a yt-dlp format selector / format_id
    audio_only    boolean NOT NULL DEFAULT false,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'downloading', 'processing',
                                    'completed', 'failed', 'cancelled')),
    progress      smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    speed         double precision,     -- bytes per second, last reported
    eta           integer,              -- seconds, last reported
    bytes         bigint,               -- downloaded so far
    total_bytes   bigint,               -- expected (or estimated) size
    error         text,
    storage_key   text,                 -- the media file in storage
    file_size     bigint,
    duration      double precision,     -- seconds, from ffprobe
    width         integer,
    height        integer,
    vcodec        text,
    acodec        text,
    thumbnail_key text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

CREATE INDEX media_downloads_user_status_idx
    ON media_downloads (user_id, status, created_at DESC);

CREATE TRIGGER media_downloads_touch_updated_at
    BEFORE UPDATE ON media_downloads
    FOR EACH ROW EXECUTE FUNCTION crest_touch_updated_at();
