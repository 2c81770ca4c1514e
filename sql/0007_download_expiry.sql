-- 0007 download expiry: the downloads-cleanup job (crest-worker) removes the
-- files of completed downloads older than CREST_DOWNLOAD_RETENTION from
-- storage and marks their rows: status stays 'completed' (the download did
-- complete), storage_key and thumbnail_key become NULL and expired_at says
-- when the files went.  A row with expired_at set has no file to serve.

ALTER TABLE media_downloads ADD COLUMN expired_at timestamptz;

-- what the cleanup looks for: completed rows that still hold a file
CREATE INDEX media_downloads_expiry_idx
    ON media_downloads (completed_at)
    WHERE status = 'completed' AND storage_key IS NOT NULL;
