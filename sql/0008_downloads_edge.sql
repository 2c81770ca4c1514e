-- 0008 downloads from the edge: the media_downloads row and its job's row
-- are written by one call, under a per-user lock, so that the cap on a
-- user's unfinished downloads holds however many requests race.
--
-- The lock is transaction-scoped and keyed on the user: two requests of the
-- same user queue up here, requests of different users never wait for each
-- other.  Under READ COMMITTED each statement of a (volatile) function takes
-- a new snapshot, so the count below, taken after the lock, sees the rows
-- of every transaction that held the lock before.
--
-- Returns the job's id, or NULL when the user already has p_limit
-- unfinished downloads (nothing is written then).

CREATE FUNCTION crest_download_create(p_user uuid, p_queue text, p_name text,
                                      p_data jsonb, p_max_attempts integer,
                                      p_id uuid, p_url text, p_format text,
                                      p_audio_only boolean, p_limit integer)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    active  integer;
    job     uuid;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('crest_download_create'),
                                  hashtext(p_user::text));

    SELECT count(*) INTO active FROM media_downloads
     WHERE user_id = p_user
       AND status IN ('pending', 'downloading', 'processing');

    IF active >= p_limit THEN
        RETURN NULL;
    END IF;

    INSERT INTO jobs (user_id, queue, name, data, max_attempts)
    VALUES (p_user, p_queue, p_name, p_data, p_max_attempts)
    RETURNING id INTO job;

    INSERT INTO media_downloads (id, user_id, job_id, original_url, format,
                                 audio_only)
    VALUES (p_id, p_user, job::text, p_url, p_format, p_audio_only);

    RETURN job;
END
$$;
