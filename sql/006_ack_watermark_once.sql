-- pgjobs 6: a cheaper ack.
--
-- jobs.job.finished_xid defaults to pg_current_xact_id()::text::bigint, an expression that
-- PostgreSQL evaluates for every inserted row: a function call and a round trip through text per
-- job. An ack moves up to thousands of jobs in one transaction, so they all get the same value;
-- ack now computes it once and inserts it. The default stays for every other insert.
--
-- The counting triggers of migration 5 now test the session flag first. On the hot path (consume
-- and fail_attempts, which count their own moves) that one test decides, and the comparisons of
-- the old and new rows are skipped.

DROP TRIGGER job_queue_count_update_row ON jobs.job_queue;
CREATE TRIGGER job_queue_count_update_row AFTER UPDATE ON jobs.job_queue FOR EACH ROW
    WHEN (current_setting('pgjobs.pending_counted', true) IS DISTINCT FROM 'on'
          AND (OLD.status = 'pending' OR NEW.status = 'pending')
          AND (OLD.status <> NEW.status OR OLD.task <> NEW.task))
    EXECUTE FUNCTION jobs.count_pending_row();

-- As in migration 5, with finished_xid computed once.
CREATE OR REPLACE FUNCTION jobs.ack(i_job_ids bigint[], i_attempts integer[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_xid bigint := pg_current_xact_id()::text::bigint;
BEGIN
    PERFORM jobs.check_batch('jobs.ack', i_job_ids, i_attempts, 'attempts');
    RETURN QUERY
    WITH done AS (
        DELETE FROM jobs.job_queue q
        USING unnest(i_job_ids, i_attempts) AS a(job_id, attempt)
        WHERE q.job_id = a.job_id AND q.status <> 'pending'
          AND (a.attempt IS NULL OR q.attempts = a.attempt)
        RETURNING q.*
    )
    INSERT INTO jobs.job (job_id, task, arguments, status, priority, attempts, max_retries,
                          timeout, published_at, scheduled_at, started_at, finished_at,
                          tracebacks, finished_xid)
    SELECT d.job_id, d.task, d.arguments, 'success', d.priority, d.attempts, d.max_retries,
           d.timeout, d.published_at, d.scheduled_at, d.started_at, v_now, d.tracebacks, v_xid
    FROM done d
    RETURNING jobs.job.job_id;
END $$;
