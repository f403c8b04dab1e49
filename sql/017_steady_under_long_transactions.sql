-- pgjobs 17: steady while a long transaction holds back vacuum.
--
-- A transaction that holds a snapshot (an analytics query, pg_dump) keeps vacuum from removing
-- the row versions every finished job leaves behind, and their index entries stay too. Migration
-- 11 made consume start past them; what still stepped over all of them, measured by
-- bench/run-hold-anatomy at a million dead rows:
--
-- * consume's full search, every 2 s per session (38 ms there, and the jobs taken in that call
--   and those published meanwhile waited for it: the soak's pickup p99 grew 7.8x in a 10-minute
--   hold). It exists for the jobs below a session's floor (see migration 11), which are rare.
--   It is now spaced out by what it costs: the interval is the cost of the session's last full
--   search (the call's time less 0.1 ms per job it took, so that a large batch does not count
--   as a costly search) divided by pgjobs.consume_full_scan_share (0.005: at most 0.5% of the
--   session's time), and no less than pgjobs.consume_full_scan_interval (2 s) nor more than
--   pgjobs.consume_full_scan_max_interval (1 min). A full search costs about a millisecond on a
--   vacuumed queue, so outside long transactions the interval stays at 2 s; during one, a job
--   below the floor waits at most a minute longer.
-- * jobs.stats_queue, on every scrape (70 ms there, 1 s in the soak): its count of running and
--   expired jobs walked the whole index of running jobs, and its oldest runnable job's age
--   walked the pending index from the bottom. Both now start from floors the session found at
--   its previous scrape, as consume does (jobs.queue_stats):
--     - a job running now was running then, so its deadline is no earlier than the earliest
--       deadline seen then, or started since, so its deadline is no earlier than that scrape;
--     - a runnable job now was pending then, so no earlier than the oldest seen then, or became
--       pending since, so runnable no earlier than that scrape, unless published with a past
--       scheduled_at, published by a transaction that took longer than the margin to commit,
--       or moved back by jobs.reschedule (when the counters say a task has runnable jobs and
--       none lies above the floor, its walk goes on down to them);
--   less the margin (pgjobs.consume_floor_margin, 5 s). A full walk at least every
--   pgjobs.stats_full_scan_interval (5 min) finds what the floors miss; a session's first call
--   walks fully. The walks now cover the jobs that finished within a timeout (running) or a
--   scrape interval (runnable) instead of all since the snapshot. jobs.stats_jobs_on_stale_workers
--   walks the running jobs from the same floor.
-- * jobs.maintain's expire step walked every passed deadline, once a minute on the worker's
--   maintenance connection; it now first looks, as consume does, for a deadline passed since
--   the session's last round.
-- * The queue's indexes after it: vacuum empties their pages once the transaction ends, but a
--   B-tree never gives pages back (79 MB where 4.5 MB served before a 10-minute hold).
--   jobs.compact_queue, a step of jobs.maintain, rebuilds an index of jobs.job_queue that is
--   larger than 8 MB and has fewer than 10 row versions of the table per page, live or dead by
--   the statistics (during the transaction vacuum still counts every dead version it could not
--   remove, so it does not rebuild then). REINDEX locks out writes to the table and reads of that index while it runs
--   (milliseconds: it reads the table, which vacuum has shrunk); it waits at most 50 ms for its
--   locks, and otherwise gives up until the next round.

-- The floor of this session's search for pending jobs of i_tasks: '-infinity' when it has none
-- for these tasks, or when a full search is due (which i_record then records as started now).
CREATE OR REPLACE FUNCTION jobs.consume_floor(i_tasks varchar[], i_record boolean)
RETURNS timestamptz
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_floor text := current_setting('pgjobs.consume_floor', true);
    v_full text := current_setting('pgjobs.consume_full_scan_at', true);
    v_cost float8 := coalesce(nullif(current_setting('pgjobs.consume_full_scan_cost', true), ''),
                              '0')::float8;
    v_share float8 := coalesce(nullif(current_setting('pgjobs.consume_full_scan_share', true),
                                      ''), '0.005')::float8;
    v_interval interval := greatest(
        coalesce(nullif(current_setting('pgjobs.consume_full_scan_interval', true), ''),
                 '2 s')::interval,
        least(coalesce(nullif(current_setting('pgjobs.consume_full_scan_max_interval', true), ''),
                       '1 min')::interval,
              make_interval(secs => v_cost / greatest(v_share, 1e-6))));
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

-- As in migration 12, and records what a full search cost, for consume_floor's interval.
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
    v_taken bigint;
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
    IF v_floor = '-infinity' THEN
        -- The search's cost, not the taking's: a large batch is slow without any dead entry, and
        -- must not stretch the interval for the jobs a full search is there to find.
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        PERFORM set_config('pgjobs.consume_full_scan_cost',
                           greatest(0, extract(epoch FROM clock_timestamp() - v_now)
                                       - v_taken * 0.0001)::text, false);
    END IF;
END $$;
COMMENT ON FUNCTION jobs.consume(integer, varchar[], bigint) IS
    'Takes up to num runnable jobs (only of i_tasks when given; never of a paused task), greater priority first, then the earliest runnable, and marks them running for i_worker_id; attempts is the attempt number to pass back to ack and nack. Reclaims expired jobs first (see jobs.expire). Concurrent callers never get the same job and never wait for each other (SKIP LOCKED). Searches from this session''s floor, fully at least every 2 s, or less often when a full search is costly (at most a minute apart; see migrations 11 and 17). Raises 22023 for num < 1. Role: jobs_consumer.';

-- What this session's last jobs.queue_stats() call found, from the session setting
-- pgjobs.stats_floors, "<last full walk>|<running floor>|<runnable floor>" in seconds since the
-- epoch (whatever the session's DateStyle): i_which 0 the time of the last full walk, 1 the
-- floor of the running jobs' deadlines, 2 that of the runnable jobs' scheduled_at. '-infinity'
-- when there is none, or when a full walk is due.
CREATE FUNCTION jobs.stats_floor(i_which integer) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN f.floors = ''
          OR statement_timestamp() - to_timestamp(split_part(f.floors, '|', 1)::float8)
             >= coalesce(nullif(current_setting('pgjobs.stats_full_scan_interval', true), ''),
                         '5 min')::interval
        THEN '-infinity'::timestamptz
        ELSE to_timestamp(split_part(f.floors, '|', i_which + 1)::float8)
    END
    FROM (SELECT coalesce(current_setting('pgjobs.stats_floors', true), '') AS floors) AS f
$$;
COMMENT ON FUNCTION jobs.stats_floor(integer) IS
    'Internal: a floor this session''s last jobs.queue_stats() call found (see migration 17).';
REVOKE ALL ON FUNCTION jobs.stats_floor(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.stats_floor(integer) TO jobs_monitor, jobs_operator;

-- The counts behind jobs.stats_queue, walking the indexes only from this session's floors (see
-- above and jobs.stats_floor), which it then records.
CREATE FUNCTION jobs.queue_stats()
RETURNS TABLE (task varchar, ready numeric, scheduled bigint, retry_wait bigint, running bigint,
               expired bigint, oldest_ready_age_seconds numeric, oldest_running_seconds numeric,
               max_expired_overdue_seconds numeric)
LANGUAGE plpgsql SECURITY DEFINER
-- The floors change every call; a plan kept for any floor could read the whole index.
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    v_at timestamptz := clock_timestamp();
    v_margin interval := coalesce(nullif(current_setting('pgjobs.consume_floor_margin', true),
                                         ''), '5 s')::interval;
    v_full_at timestamptz := jobs.stats_floor(0);
    v_running_floor timestamptz := jobs.stats_floor(1);
    v_ready_floor timestamptz := jobs.stats_floor(2);
    v_min_deadline timestamptz := v_at;
    v_min_ready timestamptz := v_at;
    v_row record;
BEGIN
    IF v_full_at = '-infinity' THEN
        v_full_at := v_at;  -- this call walks fully
    END IF;
    FOR v_row IN
        WITH pending AS (
            SELECT c.task, sum(c.n) AS pending FROM jobs.pending_count c GROUP BY c.task
        ), running AS (
            SELECT q.task,
                   count(*) FILTER (WHERE q.expires_at >= v_at) AS running,
                   count(*) FILTER (WHERE q.expires_at < v_at) AS expired,
                   min(q.started_at) AS oldest_started_at,
                   max(v_at - q.expires_at) FILTER (WHERE q.expires_at < v_at) AS max_overdue,
                   min(q.expires_at) AS min_deadline
            FROM jobs.job_queue q
            WHERE q.status = 'running' AND q.expires_at >= v_running_floor
            GROUP BY q.task
        ), tasks AS (
            SELECT p.task FROM pending p WHERE p.pending > 0
            UNION
            SELECT r.task FROM running r
        )
        SELECT t.task, coalesce(p.pending, 0) - f.scheduled - f.retry_wait AS ready,
               f.scheduled, f.retry_wait, coalesce(r.running, 0) AS running,
               coalesce(r.expired, 0) AS expired, o.oldest_ready_at, r.oldest_started_at,
               r.max_overdue, r.min_deadline
        FROM tasks t
        LEFT JOIN pending p ON p.task = t.task
        LEFT JOIN running r ON r.task = t.task
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE q.attempts = 0) AS scheduled,
                   count(*) FILTER (WHERE q.attempts > 0) AS retry_wait
            FROM jobs.job_queue q
            WHERE q.status = 'pending' AND q.task = t.task AND q.scheduled_at > v_at) f
        CROSS JOIN LATERAL (
            SELECT min(q.scheduled_at) AS oldest_ready_at
            FROM jobs.job_queue q
            WHERE q.status = 'pending' AND q.task = t.task AND q.scheduled_at <= v_at
              AND q.scheduled_at >= v_ready_floor) above
        -- Runnable jobs by the counters, none above the floor: they lie below it (published
        -- with a past scheduled_at, say). Walk down to them.
        CROSS JOIN LATERAL (
            SELECT CASE WHEN above.oldest_ready_at IS NULL
                         AND coalesce(p.pending, 0) - f.scheduled - f.retry_wait > 0
                    THEN (SELECT min(q.scheduled_at) FROM jobs.job_queue q
                          WHERE q.status = 'pending' AND q.task = t.task
                            AND q.scheduled_at <= v_at)
                    ELSE above.oldest_ready_at END AS oldest_ready_at) o
    LOOP
        task := v_row.task;
        ready := v_row.ready;
        scheduled := v_row.scheduled;
        retry_wait := v_row.retry_wait;
        running := v_row.running;
        expired := v_row.expired;
        oldest_ready_age_seconds := coalesce(extract(epoch FROM v_at - v_row.oldest_ready_at), 0);
        oldest_running_seconds := coalesce(extract(epoch FROM v_at - v_row.oldest_started_at), 0);
        max_expired_overdue_seconds := coalesce(extract(epoch FROM v_row.max_overdue), 0);
        v_min_deadline := least(v_min_deadline, v_row.min_deadline);
        v_min_ready := least(v_min_ready, v_row.oldest_ready_at);
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pgjobs.stats_floors',
                       format('%s|%s|%s', extract(epoch FROM v_full_at),
                              extract(epoch FROM v_min_deadline - v_margin),
                              extract(epoch FROM v_min_ready - v_margin)), false);
END $$;
COMMENT ON FUNCTION jobs.queue_stats() IS
    'The rows of jobs.stats_queue (see there). Walks the queue''s indexes from floors this session found at its previous call, fully at least every pgjobs.stats_full_scan_interval (5 min; see migration 17). Role: jobs_monitor, jobs_operator.';
REVOKE ALL ON FUNCTION jobs.queue_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.queue_stats() TO jobs_monitor, jobs_operator;

CREATE OR REPLACE VIEW jobs.stats_queue AS SELECT * FROM jobs.queue_stats();
COMMENT ON VIEW jobs.stats_queue IS
    'Per task with pending or running jobs: ready, scheduled (future, first attempt), retry_wait (future, a retry), running, expired (running past the deadline), and the ages in seconds of the oldest runnable and oldest running job and how far past its deadline the most overdue one is. Role: jobs_monitor, jobs_operator.';

-- Jobs still marked running by workers that stopped or stopped beating: walked from the same
-- floor (every running job's deadline lies above it), not through every dead entry of the running
-- jobs' index; that walk took 65 ms of each scrape 4 minutes into a hold at 2,000 jobs/s. And not
-- at all while no worker is stopped or stale (the usual case): the EXISTS has no volatile call,
-- so the planner tests it once, before the walk.
CREATE OR REPLACE VIEW jobs.stats_jobs_on_stale_workers AS
SELECT q.task, count(*) AS jobs
FROM jobs.job_queue q
JOIN jobs.worker w ON w.worker_id = q.worker_id
WHERE q.status = 'running' AND q.expires_at >= jobs.stats_floor(1)
  AND (w.stopped_at IS NOT NULL OR w.heartbeat_at + w.stale_after < clock_timestamp())
  AND EXISTS (SELECT 1 FROM jobs.worker s
              WHERE s.stopped_at IS NOT NULL
                 OR s.heartbeat_at + s.stale_after < statement_timestamp())
GROUP BY q.task;

-- Rebuilds the most bloated index of jobs.job_queue (see above). Returns 1 when it rebuilt one,
-- else 0.
CREATE FUNCTION jobs.compact_queue(i_min_bytes bigint DEFAULT 8388608)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_index regclass;
    v_lock_timeout text := current_setting('lock_timeout');
BEGIN
    IF i_min_bytes IS NULL OR i_min_bytes < 0 THEN
        RAISE EXCEPTION 'jobs.compact_queue: i_min_bytes must be 0 or more, got %',
            coalesce(i_min_bytes::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- An index holds at most one entry per row version in the table, live or dead: by the
    -- statistics, fewer than 10 a page means mostly empty pages. While a transaction holds back
    -- vacuum, its dead row versions still count (vacuum reports those it could not remove), so
    -- the indexes, full of their entries, are left alone. (Not pg_class.reltuples: ANALYZE
    -- sets it from the live rows alone.)
    SELECT b.index INTO v_index
    FROM (SELECT i.indexrelid::regclass AS index, pg_relation_size(i.indexrelid) AS bytes
          FROM pg_index i WHERE i.indrelid = 'jobs.job_queue'::regclass) AS b
    CROSS JOIN (SELECT s.n_live_tup + s.n_dead_tup AS versions FROM pg_stat_user_tables s
                WHERE s.relid = 'jobs.job_queue'::regclass) AS t
    WHERE b.bytes >= i_min_bytes
      AND t.versions < b.bytes / current_setting('block_size')::bigint * 10
    ORDER BY b.bytes DESC
    LIMIT 1;
    IF v_index IS NULL THEN
        RETURN 0;
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', '50ms', true);
        EXECUTE format('REINDEX INDEX %s', v_index);
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
    EXCEPTION WHEN lock_not_available THEN
        RETURN 0;  -- busy; the setting was rolled back with the block
    END;
    RETURN 1;
END $$;
COMMENT ON FUNCTION jobs.compact_queue(bigint) IS
    'Rebuilds the largest index of jobs.job_queue that is at least i_min_bytes and has fewer than 10 row versions of the table (live or dead, by the statistics) per page: emptied by vacuum after a long transaction held it back, as a B-tree never gives pages back. Waits at most 50 ms for its locks, else returns 0. Returns 1 when it rebuilt one. jobs.maintain runs it. Role: jobs_operator, jobs_consumer.';
REVOKE ALL ON FUNCTION jobs.compact_queue(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.compact_queue(bigint) TO jobs_operator, jobs_consumer;


CREATE OR REPLACE FUNCTION jobs.maintain(i_worker_retention interval DEFAULT '1 hour',
                                         i_prune_limit integer DEFAULT 10000)
RETURNS TABLE (step text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_since timestamptz;
BEGIN
    IF i_worker_retention IS NULL OR i_worker_retention < interval '0' THEN
        RAISE EXCEPTION 'jobs.maintain: i_worker_retention must be an interval of 0 or more, got %',
            coalesce(i_worker_retention::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- As consume does: jobs.expire() walks every deadline that has passed, dead entries and all,
    -- so it runs only when a deadline passed since this session's last check (see migration
    -- 11), less a margin for a consume that committed late.
    step := 'expire';
    v_since := coalesce(nullif(current_setting('pgjobs.expiry_checked_until', true), ''),
                        '-infinity')::timestamptz
               - coalesce(nullif(current_setting('pgjobs.consume_floor_margin', true), ''),
                          '5 s')::interval;
    n := 0;
    IF (SELECT q.expires_at FROM jobs.job_queue q
        WHERE q.status = 'running' AND q.expires_at >= v_since AND q.expires_at < v_now
        ORDER BY q.expires_at LIMIT 1) IS NOT NULL THEN
        n := jobs.expire();
    END IF;
    PERFORM set_config('pgjobs.expiry_checked_until', v_now::text, false);
    RETURN NEXT;
    step := 'schedules';
    n := jobs.enqueue_schedules();
    RETURN NEXT;
    step := 'partitions';
    n := jobs.create_job_partitions(v_now, 4);
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
    step := 'unique_keys';
    n := jobs.forget_stale_claims();
    RETURN NEXT;
    -- Last: a rebuild holds its locks until the round commits.
    step := 'compact';
    n := jobs.compact_queue();
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION jobs.maintain(interval, integer) IS
    'One round of maintenance: reclaims expired jobs, publishes the due slots of recurring jobs, creates the day partitions of jobs.job for today and the next 3 days, prunes finished jobs past retention (at most i_prune_limit row by row; see jobs.prune), deletes workers gone for longer than i_worker_retention that hold no running job, forgets unique keys whose jobs no longer hold them, and rebuilds an emptied index of the queue (see jobs.compact_queue). Returns how many of each. The worker runs it on an interval (maintenance in its YAML); pg_cron may too. Role: jobs_operator, jobs_consumer.';
