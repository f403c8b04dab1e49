-- pgjobs 12: day-2 operations. Finished jobs are kept for a retention per status and pruned;
-- operators cancel, retry and reschedule jobs and pause tasks; one call does the maintenance.
--
-- * Retention. jobs.retention holds how long finished jobs of each status are kept (success
--   7 days; failure, expired and cancelled 30 days; NULL keeps them for ever), set with
--   jobs.set_retention. jobs.prune deletes what is past it, oldest first, in index order
--   (status, finished_at), at most i_limit rows per call so that a caller can commit between
--   calls; the space is reused by the jobs finished next. A job finished less than 5 minutes
--   ago is never pruned, whatever the retention: the exporter counts a finished job once, from
--   its row, on its next scrape after the job finished, and the counters stay exact only if the
--   row is still there then. Pruned jobs are counted per status in jobs.pruned_count.
-- * Cancel. Pending jobs move to jobs.job as 'cancelled' (never started: started_at is NULL, and
--   they add nothing to the wait and run histograms). Running jobs are marked
--   (cancel_requested_at); their worker sees the mark with jobs.cancel_requested, stops the
--   handler and nacks the job, which then ends as 'cancelled', without a retry. A marked job that
--   expires ends as 'cancelled' too; one whose handler succeeded before it saw the mark is acked
--   and ends as 'success' (its work was done).
-- * Retry. Finished failure, expired and cancelled jobs go back to the queue, runnable now, with
--   their attempts and tracebacks; max_retries is raised to the attempts made, so the job gets
--   one more attempt (and its retries, if max_retries was higher).
-- * Pause. consume and seconds_until_next_due skip the jobs of a task in jobs.paused_task. The
--   list is read once per call, not once per row.
-- * A role jobs_operator for these functions, and jobs.job_overview for jobs_monitor: the
--   metadata and tracebacks of queued and finished jobs without their arguments (which may hold
--   personal data).
--
-- The index on jobs.job (status, finished_at) is built in this migration's transaction: on a
-- large jobs.job, acks wait for it (about 1 s per million finished jobs on a small machine).

ALTER TABLE jobs.job DROP CONSTRAINT job_status_known,
    ADD CONSTRAINT job_status_known
        CHECK (status IN ('success', 'failure', 'expired', 'cancelled')),
    ALTER COLUMN started_at DROP NOT NULL,
    ADD CONSTRAINT job_started_unless_cancelled
        CHECK (started_at IS NOT NULL OR status = 'cancelled');
CREATE INDEX job_status_finished_at ON jobs.job (status, finished_at);

ALTER TABLE jobs.job_queue ADD COLUMN cancel_requested_at timestamptz;

-- Retention -----------------------------------------------------------------------------------

CREATE TABLE jobs.retention (
    status text PRIMARY KEY
        CONSTRAINT retention_status_known
            CHECK (status IN ('success', 'failure', 'expired', 'cancelled')),
    keep interval CONSTRAINT retention_keep_not_negative CHECK (keep >= interval '0')
);
COMMENT ON TABLE jobs.retention IS
    'How long finished jobs of each status are kept; NULL keeps them for ever. Set with jobs.set_retention.';
INSERT INTO jobs.retention (status, keep)
VALUES ('success', '7 days'), ('failure', '30 days'), ('expired', '30 days'),
       ('cancelled', '30 days');

CREATE TABLE jobs.pruned_count (
    status text PRIMARY KEY,
    n bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE jobs.pruned_count IS 'Finished jobs deleted by jobs.prune, per status, ever.';

CREATE FUNCTION jobs.set_retention(i_status text, i_keep interval) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF i_status IS NULL OR i_status NOT IN ('success', 'failure', 'expired', 'cancelled') THEN
        RAISE EXCEPTION 'jobs.set_retention: i_status must be success, failure, expired or cancelled, got %',
            coalesce(quote_literal(i_status), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF i_keep < interval '0' THEN
        RAISE EXCEPTION 'jobs.set_retention: i_keep must not be negative, got %', i_keep
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE jobs.retention SET keep = i_keep WHERE status = i_status;
END $$;
COMMENT ON FUNCTION jobs.set_retention(text, interval) IS
    'Keeps finished jobs of i_status (success, failure, expired, cancelled) for i_keep; NULL keeps them for ever. Raises 22023 for an unknown status or a negative interval. Role: jobs_operator.';

CREATE FUNCTION jobs.prune(i_limit integer DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_left bigint := i_limit;
    v_total bigint := 0;
    v_n bigint;
    r record;
BEGIN
    IF i_limit < 1 THEN
        RAISE EXCEPTION 'jobs.prune: i_limit must be at least 1 (or NULL for no limit), got %',
            i_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR r IN SELECT t.status, t.keep FROM jobs.retention t WHERE t.keep IS NOT NULL
             ORDER BY t.status LOOP
        EXIT WHEN v_left IS NOT NULL AND v_left <= 0;
        WITH gone AS (
            DELETE FROM jobs.job j
            WHERE j.ctid = ANY (ARRAY(
                SELECT o.ctid FROM jobs.job o
                WHERE o.status = r.status
                  AND o.finished_at < v_now - greatest(r.keep, interval '5 minutes')
                ORDER BY o.finished_at
                LIMIT v_left))
            RETURNING 1
        )
        SELECT count(*) INTO v_n FROM gone;
        IF v_n > 0 THEN
            INSERT INTO jobs.pruned_count AS c (status, n) VALUES (r.status, v_n)
            ON CONFLICT (status) DO UPDATE SET n = c.n + excluded.n;
        END IF;
        v_total := v_total + v_n;
        v_left := v_left - v_n;
    END LOOP;
    RETURN v_total;
END $$;
COMMENT ON FUNCTION jobs.prune(integer) IS
    'Deletes finished jobs past their status''s retention (never one finished in the last 5 minutes), oldest first, at most i_limit (NULL: all); returns how many. Raises 22023 for i_limit < 1. Role: jobs_operator.';

CREATE VIEW jobs.stats_retention AS
SELECT t.status, t.keep,
       date_part('epoch', t.keep) AS keep_seconds,
       coalesce(p.n, 0) AS pruned_total,
       coalesce(date_part('epoch', clock_timestamp() - o.oldest), 0) AS oldest_age_seconds
FROM jobs.retention t
LEFT JOIN jobs.pruned_count p ON p.status = t.status
CROSS JOIN LATERAL (
    SELECT min(j.finished_at) AS oldest FROM jobs.job j WHERE j.status = t.status
) AS o;
COMMENT ON VIEW jobs.stats_retention IS
    'Per finished status: retention (NULL keeps for ever), jobs pruned ever, and the age of the oldest finished job kept (0 when none). Role: jobs_monitor.';

-- Cancel, retry, reschedule -------------------------------------------------------------------

CREATE FUNCTION jobs.check_ids(i_call text, i_ids bigint[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF i_ids IS NULL OR array_position(i_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION '%: i_ids must be an array of job ids without NULLs', i_call
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION jobs.check_ids(text, bigint[]) IS
    'Internal: raises 22023 naming i_call when i_ids is NULL or holds a NULL.';

CREATE FUNCTION jobs.cancel(i_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    PERFORM jobs.check_ids('jobs.cancel', i_ids);
    RETURN QUERY
    WITH pending AS (
        DELETE FROM jobs.job_queue q
        WHERE q.job_id = ANY (i_ids) AND q.status = 'pending'
        RETURNING q.*
    ), moved AS (
        INSERT INTO jobs.job (job_id, task, arguments, status, priority, attempts, max_retries,
                              timeout, published_at, scheduled_at, started_at, finished_at,
                              tracebacks)
        SELECT p.job_id, p.task, p.arguments, 'cancelled', p.priority, p.attempts,
               p.max_retries, p.timeout, p.published_at, p.scheduled_at, NULL, v_now,
               coalesce(p.tracebacks, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                   'attempt', p.attempts, 'at', v_now, 'error', 'cancelled while pending'))
        FROM pending p
        RETURNING jobs.job.job_id
    ), running AS (
        UPDATE jobs.job_queue q SET cancel_requested_at = v_now
        WHERE q.job_id = ANY (i_ids) AND q.status = 'running' AND q.cancel_requested_at IS NULL
        RETURNING q.job_id
    )
    SELECT m.job_id FROM moved m
    UNION ALL
    SELECT r.job_id FROM running r;
END $$;
COMMENT ON FUNCTION jobs.cancel(bigint[]) IS
    'Cancels jobs: pending ones end now as cancelled; running ones are marked, and their worker stops them and ends them as cancelled (see jobs.cancel_requested). Returns the ids cancelled or marked; finished, unknown and already marked ids are left out. Role: jobs_operator.';

CREATE FUNCTION jobs.cancel_requested(i_worker_id bigint) RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT q.job_id FROM jobs.job_queue q
    WHERE q.worker_id = i_worker_id AND q.status = 'running'
      AND q.cancel_requested_at IS NOT NULL;
END;
COMMENT ON FUNCTION jobs.cancel_requested(bigint) IS
    'The running jobs of worker i_worker_id that jobs.cancel marked: the worker stops their handlers and nacks them, and they end as cancelled. Role: jobs_consumer.';

CREATE FUNCTION jobs.retry(i_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_ids bigint[];
    v_tasks varchar[];
BEGIN
    PERFORM jobs.check_ids('jobs.retry', i_ids);
    -- The queue's insert trigger counts the jobs as pending.
    WITH gone AS (
        DELETE FROM jobs.job j
        WHERE j.job_id = ANY (i_ids) AND j.status IN ('failure', 'expired', 'cancelled')
        RETURNING j.*
    ), queued AS (
        INSERT INTO jobs.job_queue (job_id, task, arguments, status, priority, attempts,
                                    max_retries, timeout, published_at, scheduled_at, tracebacks)
        SELECT g.job_id, g.task, g.arguments, 'pending', g.priority, g.attempts,
               greatest(g.max_retries, g.attempts), g.timeout, g.published_at, v_now,
               g.tracebacks
        FROM gone g
        RETURNING job_queue.job_id, job_queue.task
    )
    SELECT array_agg(q.job_id ORDER BY q.job_id), array_agg(DISTINCT q.task)
    INTO v_ids, v_tasks FROM queued q;
    PERFORM pg_notify('jobs', t) FROM unnest(v_tasks) AS t;
    RETURN QUERY SELECT unnest(v_ids);
END $$;
COMMENT ON FUNCTION jobs.retry(bigint[]) IS
    'Puts finished failure, expired and cancelled jobs back in the queue, runnable now, with their attempts and tracebacks; max_retries is raised to the attempts made, so each gets at least one more attempt. Returns the ids queued; others are left out. Role: jobs_operator.';

CREATE FUNCTION jobs.reschedule(i_ids bigint[], i_at timestamptz) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM jobs.check_ids('jobs.reschedule', i_ids);
    IF i_at IS NULL OR NOT isfinite(i_at) THEN
        RAISE EXCEPTION 'jobs.reschedule: i_at must be a finite time, got %',
            coalesce(i_at::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    UPDATE jobs.job_queue q SET scheduled_at = i_at
    WHERE q.job_id = ANY (i_ids) AND q.status = 'pending'
    RETURNING q.job_id;
    PERFORM pg_notify('jobs', t)
    FROM (SELECT DISTINCT q.task FROM jobs.job_queue q
          WHERE q.job_id = ANY (i_ids) AND q.status = 'pending') AS d(t);
END $$;
COMMENT ON FUNCTION jobs.reschedule(bigint[], timestamptz) IS
    'Moves pending jobs to run at i_at (their next attempt, if they are waiting to be retried). Returns the ids moved; running, finished and unknown ids are left out. Raises 22023 for a NULL or infinite i_at. Role: jobs_operator.';

-- Pause -----------------------------------------------------------------------------------------

CREATE TABLE jobs.paused_task (
    task varchar PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE jobs.paused_task IS 'Tasks whose jobs consume skips. Set with jobs.pause and jobs.resume.';

CREATE FUNCTION jobs.pause(i_task text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_found boolean;
BEGIN
    IF i_task IS NULL OR btrim(i_task, E' \t\n\r\v\f') = '' THEN
        RAISE EXCEPTION 'jobs.pause: i_task must be a task name, got %',
            coalesce(quote_literal(i_task), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO jobs.paused_task (task) VALUES (i_task) ON CONFLICT (task) DO NOTHING;
    GET DIAGNOSTICS v_found = ROW_COUNT;
    RETURN v_found;
END $$;
COMMENT ON FUNCTION jobs.pause(text) IS
    'Stops consume from taking jobs of i_task (running ones go on); true when it was not paused yet. Role: jobs_operator.';

CREATE FUNCTION jobs.resume(i_task text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_found boolean;
BEGIN
    DELETE FROM jobs.paused_task WHERE task = i_task;
    GET DIAGNOSTICS v_found = ROW_COUNT;
    IF v_found THEN
        PERFORM pg_notify('jobs', i_task);
    END IF;
    RETURN v_found;
END $$;
COMMENT ON FUNCTION jobs.resume(text) IS
    'Lets consume take jobs of i_task again; true when it was paused. Role: jobs_operator.';

CREATE VIEW jobs.stats_paused_tasks AS
SELECT p.task, p.paused_at FROM jobs.paused_task p;
COMMENT ON VIEW jobs.stats_paused_tasks IS 'Paused tasks. Role: jobs_monitor.';

-- consume and seconds_until_next_due skip paused tasks; otherwise as in migration 11.
CREATE OR REPLACE FUNCTION jobs.consume(num integer, i_tasks varchar[] DEFAULT NULL,
                                        i_worker_id bigint DEFAULT NULL)
RETURNS TABLE (job_id bigint, task varchar, arguments jsonb, attempts integer,
               max_retries integer, timeout numeric, scheduled_at timestamptz,
               published_at timestamptz, started_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET pgjobs.pending_counted = 'on' AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
    v_since timestamptz;
    v_floor timestamptz;
    v_paused varchar[];
BEGIN
    IF num IS NULL OR num < 1 THEN
        RAISE EXCEPTION 'jobs.consume: num must be at least 1, got %', coalesce(num::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_now := clock_timestamp();
    v_since := coalesce(nullif(current_setting('pgjobs.expiry_checked_until', true), ''),
                        '-infinity')::timestamptz;
    -- The earliest deadline in the window, not EXISTS: after five calls PL/pgSQL may keep one
    -- plan for any bounds, and for EXISTS that plan can read the table until a first match.
    -- Ordered by the index's key, the index range is the only cheap plan.
    IF (SELECT q.expires_at FROM jobs.job_queue q
        WHERE q.status = 'running' AND q.expires_at >= v_since AND q.expires_at < v_now
        ORDER BY q.expires_at LIMIT 1) IS NOT NULL THEN
        PERFORM jobs.expire();
    END IF;
    PERFORM set_config('pgjobs.expiry_checked_until', v_now::text, false);
    v_paused := ARRAY(SELECT p.task FROM jobs.paused_task p);
    IF i_tasks IS NOT NULL AND cardinality(v_paused) > 0 THEN
        i_tasks := ARRAY(SELECT t FROM unnest(i_tasks) AS t WHERE t <> ALL (v_paused));
        IF cardinality(i_tasks) = 0 THEN
            RETURN;
        END IF;
    END IF;
    v_floor := jobs.consume_floor(i_tasks, true);
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
              AND p.scheduled_at >= v_floor
              AND (i_tasks IS NULL OR p.task = ANY (i_tasks))
              AND p.task <> ALL (v_paused)
            ORDER BY p.priority DESC, p.scheduled_at
            LIMIT num
            FOR NO KEY UPDATE SKIP LOCKED))
        RETURNING q.job_id, q.task, q.arguments, q.attempts, q.max_retries, q.timeout,
                  q.scheduled_at, q.published_at, q.started_at
    ), counted AS (
        INSERT INTO jobs.pending_count AS c (task, shard, n)
        SELECT t.task, pg_backend_pid() % 16, -count(*)
        FROM taken t GROUP BY t.task ORDER BY t.task  -- lock order: see add_pending_counts
        ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n
    ), floor AS (
        -- Referenced below so that it runs; one row whatever was taken.
        SELECT jobs.set_consume_floor(i_tasks, min(t.scheduled_at)) AS recorded FROM taken t
    )
    SELECT t.job_id, t.task, t.arguments, t.attempts, t.max_retries, t.timeout, t.scheduled_at,
           t.published_at, t.started_at
    FROM taken t CROSS JOIN floor f;
END $$;
COMMENT ON FUNCTION jobs.consume(integer, varchar[], bigint) IS
    'Takes up to num runnable jobs (only of i_tasks when given; never of a paused task), greater priority first, then the earliest runnable, and marks them running for i_worker_id; attempts is the attempt number to pass back to ack and nack. Reclaims expired jobs first (see jobs.expire). Concurrent callers never get the same job and never wait for each other (SKIP LOCKED). Searches from this session''s floor, fully at least every 2 s (see migration 11). Raises 22023 for num < 1. Role: jobs_consumer.';

CREATE OR REPLACE FUNCTION jobs.seconds_until_next_due(i_tasks varchar[]) RETURNS float8
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_floor timestamptz := jobs.consume_floor(i_tasks, false);
BEGIN
    RETURN (SELECT date_part('epoch', min(n.at) - clock_timestamp())
            FROM unnest(i_tasks) AS t(task)
            CROSS JOIN LATERAL (
                SELECT min(q.scheduled_at) AS at
                FROM jobs.job_queue q
                WHERE q.status = 'pending' AND q.task = t.task AND q.scheduled_at >= v_floor
            ) AS n
            WHERE NOT EXISTS (SELECT 1 FROM jobs.paused_task p WHERE p.task = t.task));
END $$;
COMMENT ON FUNCTION jobs.seconds_until_next_due(varchar[]) IS
    'Seconds until the earliest pending job of i_tasks (paused tasks left out) is runnable: <= 0 when one is now, NULL when none is pending; searched from this session''s floor (see migration 11). Role: jobs_consumer.';

-- A marked job that fails or expires ends as cancelled, without a retry; otherwise as in
-- migration 9.
CREATE OR REPLACE FUNCTION jobs.fail_attempts(i_job_ids bigint[], i_attempts integer[],
                                              i_errors text[], i_retry_at timestamptz,
                                              i_final_status text)
RETURNS TABLE (job_id bigint, retried boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET pgjobs.pending_counted = 'on'
SET plan_cache_mode = 'force_generic_plan' AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    RETURN QUERY
    WITH target AS (
        SELECT q.job_id, q.attempts, q.max_retries, q.cancel_requested_at IS NOT NULL AS cancelled,
               coalesce(q.tracebacks, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                   'attempt', q.attempts, 'at', v_now, 'error',
                   CASE WHEN q.cancel_requested_at IS NULL THEN a.error
                        ELSE 'cancelled while running: ' || a.error END)) AS tracebacks
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
        WHERE q.job_id = t.job_id AND t.attempts <= t.max_retries AND NOT t.cancelled
        RETURNING q.job_id, q.task
    ), counted AS (
        INSERT INTO jobs.pending_count AS c (task, shard, n)
        SELECT r.task, pg_backend_pid() % 16, count(*)
        FROM retried r GROUP BY r.task ORDER BY r.task  -- lock order: see add_pending_counts
        ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n
    ), dead AS (
        DELETE FROM jobs.job_queue q
        USING target t
        WHERE q.job_id = t.job_id AND (t.attempts > t.max_retries OR t.cancelled)
        RETURNING q.*, t.tracebacks AS new_tracebacks, t.cancelled
    ), moved AS (
        INSERT INTO jobs.job (job_id, task, arguments, status, priority, attempts, max_retries,
                              timeout, published_at, scheduled_at, started_at, finished_at,
                              tracebacks)
        SELECT d.job_id, d.task, d.arguments,
               CASE WHEN d.cancelled THEN 'cancelled' ELSE i_final_status END, d.priority,
               d.attempts, d.max_retries, d.timeout, d.published_at, d.scheduled_at,
               d.started_at, v_now, d.new_tracebacks
        FROM dead d
        RETURNING jobs.job.job_id
    )
    SELECT r.job_id, true FROM retried r
    UNION ALL
    SELECT m.job_id, false FROM moved m;
END $$;

-- Jobs cancelled before they started have no wait or run time: counted, not in the histograms.
CREATE OR REPLACE FUNCTION jobs.finished_stats(i_after_xid bigint, i_wait_bounds float8[],
                                               i_run_bounds float8[], i_attempt_bounds float8[])
RETURNS TABLE (kind text, task varchar, status text, bucket integer, n bigint, total float8)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_until bigint := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    -- width_bucket counts bounds <= v; Prometheus buckets are `le`, so count bounds >= -v in the
    -- negated, reversed bounds instead: bucket = 1 + (bounds below v).
    v_wait float8[] := ARRAY(SELECT -b FROM unnest(i_wait_bounds) WITH ORDINALITY AS u(b, i)
                             ORDER BY i DESC);
    v_run float8[] := ARRAY(SELECT -b FROM unnest(i_run_bounds) WITH ORDINALITY AS u(b, i)
                            ORDER BY i DESC);
    v_attempt float8[] := ARRAY(SELECT -b FROM unnest(i_attempt_bounds) WITH ORDINALITY AS u(b, i)
                                ORDER BY i DESC);
BEGIN
    RETURN QUERY SELECT 'watermark'::text, NULL::varchar, NULL::text, NULL::integer, v_until,
                        NULL::float8;
    IF i_after_xid IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH fresh AS (
        SELECT j.task, j.status, j.attempts::float8 AS attempts,
               j.started_at IS NOT NULL AS started,
               greatest(date_part('epoch', j.started_at - j.scheduled_at), 0) AS wait,
               greatest(date_part('epoch', j.finished_at - j.started_at), 0) AS run
        FROM jobs.job j
        WHERE j.finished_xid >= i_after_xid AND j.finished_xid < v_until
    ), grouped AS MATERIALIZED (
        SELECT f.task, f.status, f.started,
               1 + cardinality(v_wait) - width_bucket(-f.wait, v_wait) AS wait_bucket,
               1 + cardinality(v_run) - width_bucket(-f.run, v_run) AS run_bucket,
               1 + cardinality(v_attempt) - width_bucket(-f.attempts, v_attempt) AS attempt_bucket,
               count(*) AS n, sum(f.wait) AS wait, sum(f.run) AS run, sum(f.attempts) AS attempts
        FROM fresh f
        GROUP BY 1, 2, 3, 4, 5, 6
    )
    SELECT 'finished', g.task, g.status, NULL::integer, sum(g.n)::bigint, NULL::float8
    FROM grouped g GROUP BY g.task, g.status
    UNION ALL
    SELECT 'wait', g.task, NULL, g.wait_bucket, sum(g.n)::bigint, sum(g.wait)
    FROM grouped g WHERE g.started GROUP BY g.task, g.wait_bucket
    UNION ALL
    SELECT 'run', g.task, NULL, g.run_bucket, sum(g.n)::bigint, sum(g.run)
    FROM grouped g WHERE g.started GROUP BY g.task, g.run_bucket
    UNION ALL
    SELECT 'attempts', g.task, NULL, g.attempt_bucket, sum(g.n)::bigint, sum(g.attempts)
    FROM grouped g WHERE g.started GROUP BY g.task, g.attempt_bucket;
END $$;

-- Maintenance -----------------------------------------------------------------------------------

CREATE FUNCTION jobs.maintain(i_worker_retention interval DEFAULT '1 hour',
                              i_prune_limit integer DEFAULT 10000)
RETURNS TABLE (step text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    IF i_worker_retention IS NULL OR i_worker_retention < interval '0' THEN
        RAISE EXCEPTION 'jobs.maintain: i_worker_retention must be an interval of 0 or more, got %',
            coalesce(i_worker_retention::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    step := 'expire';
    n := jobs.expire();
    RETURN NEXT;
    step := 'prune';
    n := jobs.prune(i_prune_limit);
    RETURN NEXT;
    -- A worker that stopped, or stopped beating, longer ago than the retention, and holds no
    -- running job (a job still marked as its own is reported on stale workers until it expires).
    step := 'workers';
    WITH gone AS (
        DELETE FROM jobs.worker w
        WHERE coalesce(w.stopped_at, w.heartbeat_at + w.stale_after) < v_now - i_worker_retention
          AND NOT EXISTS (SELECT 1 FROM jobs.job_queue q
                          WHERE q.worker_id = w.worker_id AND q.status = 'running')
        RETURNING 1
    )
    SELECT count(*) INTO n FROM gone;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION jobs.maintain(interval, integer) IS
    'One round of maintenance: reclaims expired jobs, prunes finished jobs past retention (at most i_prune_limit), and deletes workers gone for longer than i_worker_retention that hold no running job. Returns how many of each. The worker runs it on an interval (maintenance in its YAML); pg_cron may too. Role: jobs_operator.';

-- Roles -----------------------------------------------------------------------------------------

CREATE VIEW jobs.job_overview AS
SELECT q.job_id, q.task, q.status,
       jobs.job_state(q.status, q.attempts, q.scheduled_at, q.expires_at, clock_timestamp()) AS state,
       q.priority, q.attempts, q.max_retries, q.timeout, q.published_at, q.scheduled_at,
       q.started_at, q.expires_at, NULL::timestamptz AS finished_at, q.worker_id,
       q.cancel_requested_at, q.tracebacks
FROM jobs.job_queue q
UNION ALL
SELECT j.job_id, j.task, j.status, 'finished', j.priority, j.attempts, j.max_retries, j.timeout,
       j.published_at, j.scheduled_at, j.started_at, NULL, j.finished_at, NULL, NULL,
       j.tracebacks
FROM jobs.job j;
COMMENT ON VIEW jobs.job_overview IS
    'Every queued and finished job without its arguments: what the runbooks read. Role: jobs_monitor.';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jobs_operator') THEN
        CREATE ROLE jobs_operator NOLOGIN;
    END IF;
END $$;

REVOKE ALL ON FUNCTION jobs.set_retention(text, interval), jobs.prune(integer),
                       jobs.check_ids(text, bigint[]), jobs.cancel(bigint[]),
                       jobs.cancel_requested(bigint), jobs.retry(bigint[]),
                       jobs.reschedule(bigint[], timestamptz), jobs.pause(text),
                       jobs.resume(text), jobs.maintain(interval, integer)
    FROM PUBLIC;
GRANT USAGE ON SCHEMA jobs TO jobs_operator;
GRANT EXECUTE ON FUNCTION jobs.set_retention(text, interval), jobs.prune(integer),
                          jobs.cancel(bigint[]), jobs.retry(bigint[]),
                          jobs.reschedule(bigint[], timestamptz), jobs.pause(text),
                          jobs.resume(text), jobs.maintain(interval, integer)
    TO jobs_operator;
GRANT EXECUTE ON FUNCTION jobs.cancel_requested(bigint), jobs.maintain(interval, integer)
    TO jobs_consumer;
GRANT SELECT ON jobs.stats_retention, jobs.stats_paused_tasks, jobs.job_overview
    TO jobs_monitor, jobs_operator;
GRANT SELECT ON jobs.retention TO jobs_monitor, jobs_operator;
-- The views call it as the reader.
GRANT EXECUTE ON FUNCTION jobs.job_state(text, integer, timestamptz, timestamptz, timestamptz)
    TO jobs_operator;
