-- pgjobs 11: consume steps over only the dead rows it has not stepped over yet.
--
-- A transaction that holds a snapshot (an analytics query, pg_dump) keeps vacuum from removing
-- the dead row versions every job leaves behind. Their index entries stay, and each consume had
-- to step over all of them, twice. Measured at 2,000 jobs/s with a snapshot held for 95 s
-- (217,650 dead entries): the check for expired jobs took 54 ms, the search for pending jobs
-- 25 ms, in every call. Both now start where this session last left off:
--
-- * Expired jobs. A running job's deadline is set when it starts and never lies before that
--   moment, so a deadline that has passed since this session's last check belongs to a job that
--   was running then, or started since. The check looks only at deadlines between the session's
--   last check and now (the session setting pgjobs.expiry_checked_until); a session's first
--   call looks at all of them. The dead entries of finished jobs lie mostly before that window.
-- * Pending jobs. The search starts a margin (pgjobs.consume_floor_margin, 5 s) before the
--   oldest job this session took last time for the same tasks (pgjobs.consume_floor). A job
--   below that floor could only be there by a publishing transaction that took longer than the
--   margin to commit, a scheduled_at set further back than the margin, a job of a lower priority
--   that has waited longer than the margin behind higher ones, or one that another consumer had
--   locked and released: a full search at least every pgjobs.consume_full_scan_interval (2 s)
--   finds them, so they wait at most that much longer. seconds_until_next_due uses the same
--   floor, so that an idle worker's look costs as little.
--
-- The settings are the session's own; a session that never consumed searches fully.
--
-- consume's update no longer repeats status = 'pending' beside the row addresses it locked: the
-- lock already checked it, and a locked row cannot change. With the test there, a table whose
-- statistics counted few pending jobs (a new queue, or one just drained) was updated through a
-- scan of the whole pending index, dead entries and all, instead of by address.

-- The floor of this session's search for i_tasks: '-infinity' when it has none for these tasks,
-- or when a full search is due (which i_record then records as done now).
CREATE FUNCTION jobs.consume_floor(i_tasks varchar[], i_record boolean) RETURNS timestamptz
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_floor text := current_setting('pgjobs.consume_floor', true);
    v_full text := current_setting('pgjobs.consume_full_scan_at', true);
    v_interval interval := coalesce(nullif(current_setting('pgjobs.consume_full_scan_interval',
                                                           true), ''), '2 s')::interval;
    v_key text := coalesce(i_tasks::text, '*');
BEGIN
    IF coalesce(v_full, '') = '' OR clock_timestamp() - v_full::timestamptz >= v_interval THEN
        IF i_record THEN
            PERFORM set_config('pgjobs.consume_full_scan_at', clock_timestamp()::text, false);
        END IF;
        RETURN '-infinity';
    END IF;
    -- "<floor>|<tasks>": a floor is only good for the tasks it was found for.
    IF coalesce(v_floor, '') = '' OR substr(v_floor, strpos(v_floor, '|') + 1) <> v_key THEN
        RETURN '-infinity';
    END IF;
    RETURN split_part(v_floor, '|', 1)::timestamptz;
END $$;

-- Records the floor of this session's next search for i_tasks: the margin before i_oldest, the
-- oldest scheduled_at it took. Returns true; does nothing when i_oldest is NULL.
CREATE FUNCTION jobs.set_consume_floor(i_tasks varchar[], i_oldest timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF i_oldest IS NOT NULL THEN
        PERFORM set_config('pgjobs.consume_floor',
                           (i_oldest - coalesce(nullif(current_setting(
                               'pgjobs.consume_floor_margin', true), ''), '5 s')::interval)::text
                           || '|' || coalesce(i_tasks::text, '*'),
                           false);
    END IF;
    RETURN true;
END $$;

-- As in migration 7, searching from this session's floor and expiry window (see above).
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
    v_since timestamptz;
    v_floor timestamptz;
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

-- As in migration 4, from this session's floor (without recording a full search: only consume,
-- which takes what it finds, does that).
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
            ) AS n);
END $$;

REVOKE ALL ON FUNCTION jobs.consume_floor(varchar[], boolean),
                       jobs.set_consume_floor(varchar[], timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION jobs.consume_floor(varchar[], boolean) IS
'Internal: the floor of this session''s search for pending jobs of i_tasks (see migration 11).';
COMMENT ON FUNCTION jobs.set_consume_floor(varchar[], timestamptz) IS
'Internal: records the floor of this session''s next search for pending jobs of i_tasks.';
COMMENT ON FUNCTION jobs.seconds_until_next_due(varchar[]) IS
'Seconds until the earliest pending job of i_tasks is runnable: <= 0 when one is now, NULL when '
'none is pending; searched from this session''s floor (see migration 11). Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.consume(integer, varchar[], bigint) IS
'Takes up to num runnable jobs (only of i_tasks when given), greater priority first, then the '
'earliest runnable, and marks them running for i_worker_id; attempts is the attempt number to '
'pass back to ack and nack. Reclaims expired jobs first (see jobs.expire). Concurrent callers '
'never get the same job and never wait for each other (SKIP LOCKED). Searches from this '
'session''s floor, fully at least every 2 s (see migration 11). Raises 22023 for num < 1. '
'Role: jobs_consumer.';
