-- pgjobs 5: a leaner consume, ack and nack.
--
-- Measured on a busy queue, the statement-level counting triggers of migration 2 cost more than
-- the work they count: every UPDATE and DELETE of jobs.job_queue copied all its rows into
-- transition tables, and a PL/pgSQL function then aggregated them, even for ack, which only ever
-- deletes running jobs and so never changes a pending count. Here:
--
-- * consume and fail_attempts, which know exactly which jobs they move into or out of 'pending',
--   add their per-task deltas themselves, in the same statement.
-- * Row-level triggers keep every other change counted (an operator's UPDATE or DELETE by hand).
--   Their WHEN clauses are evaluated by the executor without calling any function body, so they
--   cost next to nothing when they do not fire: they fire only for rows that enter or leave
--   'pending', and not inside the functions above, which run with pgjobs.pending_counted = on.
-- * consume finds its jobs through the primary key instead of hash-joining the whole queue, and
--   ack and nack look their jobs up by primary key too (see jobs.ack below).

DROP TRIGGER job_queue_count_update ON jobs.job_queue;
DROP TRIGGER job_queue_count_delete ON jobs.job_queue;

CREATE FUNCTION jobs.count_pending_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM jobs.add_pending_counts(ARRAY[OLD.task], ARRAY[-1::bigint]);
    ELSIF OLD.status = 'pending' AND NEW.status = 'pending' THEN  -- the task changed
        PERFORM jobs.add_pending_counts(ARRAY[OLD.task, NEW.task], ARRAY[-1::bigint, 1]);
    ELSE
        PERFORM jobs.add_pending_counts(ARRAY[NEW.task],
                                        ARRAY[CASE WHEN NEW.status = 'pending' THEN 1 ELSE -1 END]);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER job_queue_count_update_row AFTER UPDATE ON jobs.job_queue FOR EACH ROW
    WHEN ((OLD.status = 'pending' OR NEW.status = 'pending')
          AND (OLD.status <> NEW.status OR OLD.task <> NEW.task)
          AND current_setting('pgjobs.pending_counted', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION jobs.count_pending_row();
CREATE TRIGGER job_queue_count_delete_row AFTER DELETE ON jobs.job_queue FOR EACH ROW
    WHEN (OLD.status = 'pending'
          AND current_setting('pgjobs.pending_counted', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION jobs.count_pending_row();

-- As in migration 1, plus: counts the retried jobs back into 'pending' itself, and looks its jobs
-- up by primary key with a plan made once (see jobs.ack below).
CREATE OR REPLACE FUNCTION jobs.fail_attempts(i_job_ids bigint[], i_attempts integer[],
                                              i_errors text[], i_retry_at timestamptz,
                                              i_final_status text)
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp SET pgjobs.pending_counted = on
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    RETURN QUERY
    WITH target AS (
        SELECT q.job_id, q.attempts, q.max_retries,
               coalesce(q.tracebacks, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                   'attempt', q.attempts, 'at', v_now, 'error', a.error)) AS tracebacks
        FROM unnest(i_job_ids, i_attempts, i_errors) AS a(job_id, attempt, error)
        JOIN jobs.job_queue q ON q.job_id = a.job_id
        WHERE q.status <> 'pending'  -- that is, 'running': see jobs.ack
          AND (a.attempt IS NULL OR q.attempts = a.attempt)
        FOR UPDATE OF q
    ), retried AS (
        UPDATE jobs.job_queue q
        SET status = 'pending', started_at = NULL, expires_at = NULL, tracebacks = t.tracebacks,
            scheduled_at = coalesce(i_retry_at, v_now + jobs.retry_delay(t.attempts))
        FROM target t
        WHERE q.job_id = t.job_id AND t.attempts <= t.max_retries
        RETURNING q.job_id, q.task
    ), counted AS (
        INSERT INTO jobs.pending_count AS c (task, shard, n)
        SELECT r.task, pg_backend_pid() % 16, count(*)
        FROM retried r GROUP BY r.task ORDER BY r.task  -- lock order: see add_pending_counts
        ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n
    ), dead AS (
        DELETE FROM jobs.job_queue q
        USING target t
        WHERE q.job_id = t.job_id AND t.attempts > t.max_retries
        RETURNING q.*, t.tracebacks AS new_tracebacks
    ), moved AS (
        INSERT INTO jobs.job (job_id, task, arguments, status, priority, attempts, max_retries,
                              timeout, published_at, scheduled_at, started_at, finished_at,
                              tracebacks)
        SELECT d.job_id, d.task, d.arguments, i_final_status, d.priority, d.attempts,
               d.max_retries, d.timeout, d.published_at, d.scheduled_at, d.started_at, v_now,
               d.new_tracebacks
        FROM dead d
        RETURNING jobs.job.job_id
    )
    SELECT r.job_id FROM retried r
    UNION ALL
    SELECT m.job_id FROM moved m;
END $$;

-- As in migration 3, leaner: the jobs are locked through the pending-order index and updated
-- through the primary key, and the pending counts drop in the same statement.
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
        WHERE q.job_id = ANY (ARRAY(
            SELECT p.job_id
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

-- As in migration 1, with one change that matters at scale: the running test is written as
-- "status <> 'pending'" (the only other status). Written as "status = 'running'", it matches the
-- running-jobs index's predicate, and with statistics gathered while few jobs ran, the planner
-- walked that whole index (dead entries included) for every call instead of probing the primary
-- key once per job. And its plan is the generic one: the custom plans PL/pgSQL preferred for
-- one-element arrays were no better, but were planned again on every call. Together these took a
-- single-job ack from 0.2 ms to 0.04 ms of server time.
CREATE OR REPLACE FUNCTION jobs.ack(i_job_ids bigint[], i_attempts integer[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
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
                          tracebacks)
    SELECT d.job_id, d.task, d.arguments, 'success', d.priority, d.attempts, d.max_retries,
           d.timeout, d.published_at, d.scheduled_at, d.started_at, v_now, d.tracebacks
    FROM done d
    RETURNING jobs.job.job_id;
END $$;
