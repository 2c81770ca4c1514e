-- 0009: a download follows its job into 'cancelled'.  A job can be
-- cancelled without the downloads endpoint (POST /api/jobs/{id}/cancel, an
-- operator's UPDATE); its download must not then stay 'pending' for ever,
-- shown as such and counted against crest_downloads_concurrent by
-- crest_download_create.  A running download whose row turns 'cancelled'
-- is stopped by the worker (it watches its row).

CREATE INDEX media_downloads_job_idx ON media_downloads (job_id);

CREATE FUNCTION crest_download_follow_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE media_downloads
       SET status = 'cancelled'
     WHERE job_id = NEW.id::text
       AND status IN ('pending', 'downloading', 'processing');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_cancel_follows_download
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled')
    EXECUTE FUNCTION crest_download_follow_job();
