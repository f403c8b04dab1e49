-- pgjobs 6: a cheaper consume and ack.
--
-- consume locked its jobs in the pending order, then updated them through the primary key: one
-- index descent per job to find again a row it had just locked. It now updates them by their row
-- address (ctid), which the lock returns. A locked row cannot move, so the address stays right
-- until the update. One race differs: a pending job changed and committed by someone else after
-- consume's snapshot (a priority edited by hand, say) is locked in its new version, which the
-- update, reading with the same snapshot, does not see. That job is then left pending for the next
-- call, neither taken nor lost, and the counts stay exact because they count what was taken.
--
-- jobs.job.finished_xid defaults to pg_current_xact_id()::text::bigint, an expression that
-- PostgreSQL evaluates for every inserted row: a function call and a round trip through text per
-- job. An ack moves up to thousands of jobs in one transaction, so they all get the same value;
-- ack now computes it once and inserts it. The default stays for every other insert.
--
-- The update-counting trigger of migration 5 now tests the session flag first. On the hot path
-- (consume and fail_attempts, which count their own moves) that one test decides, and the
-- comparisons of the old and new rows are skipped. The delete trigger already starts with
-- OLD.status = 'pending', which ack's rows never match.

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

-- As in migration 5, updating through the row address (see the top of this file).
CREATE OR REPLACE FUNCTION jobs.consume(num integer, i_tasks varchar[] DEFAULT NULL,
                                        i_worker_id bigint DEFAULT NULL)
RETURNS TABLE (job_id bigint, task varchar, arguments jsonb, attempts integer,
               max_retries integer, timeout numeric(7,2), scheduled_at timestamptz,
               published_at timestamptz, started_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET pgjobs.pending_counted = on AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
BEGIN
    IF num IS NULL OR num < 1 THEN
        RAISE EXCEPTION 'jobs.consume: num must be at least 1, got %', coalesce(num::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM jobs.job_queue q
               WHERE q.status = 'running' AND q.expires_at < clock_timestamp()) THEN
        PERFORM jobs.expire();
    END IF;
    v_now := clock_timestamp();
    RETURN QUERY
    WITH taken AS (
        UPDATE jobs.job_queue q
        SET status = 'running', attempts = q.attempts + 1, started_at = v_now,
            expires_at = v_now + make_interval(secs => q.timeout), worker_id = i_worker_id
        WHERE q.ctid = ANY (ARRAY(
            SELECT p.ctid
            FROM jobs.job_queue p
            WHERE p.status = 'pending' AND p.scheduled_at <= v_now
              AND (i_tasks IS NULL OR p.task = ANY (i_tasks))
            ORDER BY p.priority DESC, p.scheduled_at
            LIMIT num
            FOR NO KEY UPDATE SKIP LOCKED))
          AND q.status = 'pending'
        RETURNING q.job_id, q.task, q.arguments, q.attempts, q.max_retries, q.timeout,
                  q.scheduled_at, q.published_at, q.started_at
    ), counted AS (
        INSERT INTO jobs.pending_count AS c (task, shard, n)
        SELECT t.task, pg_backend_pid() % 16, -count(*)
        FROM taken t GROUP BY t.task ORDER BY t.task  -- lock order: see add_pending_counts
        ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT * FROM taken;
END $$;
