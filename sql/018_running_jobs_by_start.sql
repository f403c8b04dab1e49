-- pgjobs 18: scrapes walk the running jobs by when they started, not by their deadlines.
--
-- Migration 17 walked the running jobs' index (by deadline) from the earliest deadline the
-- session's previous scrape saw, or that scrape's time. A job that finished within its timeout
-- keeps its deadline in the future, so while a transaction holds back vacuum the walk still
-- stepped over the dead entry of every job finished in the last timeout: 60 s of jobs by
-- default, ~120,000 entries at 2,000 jobs/s, and scrapes of 90 ms at p99 in the soak
-- (bench/RESULTS.md). By start time the same reasoning holds with a floor that does not run
-- ahead: a job running now was running at the previous scrape, so it started no earlier than
-- the earliest start seen then, or it started since that scrape. The walk then covers the jobs
-- that started since the previous scrape, less the margin (pgjobs.consume_floor_margin, 5 s,
-- for a consume whose transaction commits late), plus those started after the oldest job still
-- running. The cost: one more index entry for every job consume takes (bench/RESULTS.md).
--
-- The floors move to the session setting pgjobs.queue_stats_floors: a session that scraped
-- before this migration kept a floor of deadlines under the old name, which as a floor of start
-- times would hide the jobs running since.

CREATE INDEX job_queue_running_started ON jobs.job_queue (started_at) WHERE status = 'running';

-- What this session's last jobs.queue_stats() call found, from the session setting
-- pgjobs.queue_stats_floors, "<last full walk>|<running floor>|<runnable floor>" in seconds
-- since the epoch (whatever the session's DateStyle): i_which 0 the time of the last full walk,
-- 1 the floor of the running jobs' start times, 2 that of the runnable jobs' scheduled_at.
-- '-infinity' when there is none, or when a full walk is due.
CREATE OR REPLACE FUNCTION jobs.stats_floor(i_which integer) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN f.floors = ''
          OR statement_timestamp() - to_timestamp(split_part(f.floors, '|', 1)::float8)
             >= coalesce(nullif(current_setting('pgjobs.stats_full_scan_interval', true), ''),
                         '5 min')::interval
        THEN '-infinity'::timestamptz
        ELSE to_timestamp(split_part(f.floors, '|', i_which + 1)::float8)
    END
    FROM (SELECT coalesce(current_setting('pgjobs.queue_stats_floors', true), '') AS floors) AS f
$$;

-- The counts behind jobs.stats_queue, walking the indexes only from this session's floors (see
-- above and jobs.stats_floor), which it then records.
CREATE OR REPLACE FUNCTION jobs.queue_stats()
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
    v_min_started timestamptz := v_at;
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
                   max(v_at - q.expires_at) FILTER (WHERE q.expires_at < v_at) AS max_overdue
            FROM jobs.job_queue q
            WHERE q.status = 'running' AND q.started_at >= v_running_floor
            GROUP BY q.task
        ), tasks AS (
            SELECT p.task FROM pending p WHERE p.pending > 0
            UNION
            SELECT r.task FROM running r
        )
        SELECT t.task, coalesce(p.pending, 0) - f.scheduled - f.retry_wait AS ready,
               f.scheduled, f.retry_wait, coalesce(r.running, 0) AS running,
               coalesce(r.expired, 0) AS expired, o.oldest_ready_at, r.oldest_started_at,
               r.max_overdue
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
        v_min_started := least(v_min_started, v_row.oldest_started_at);
        v_min_ready := least(v_min_ready, v_row.oldest_ready_at);
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pgjobs.queue_stats_floors',
                       format('%s|%s|%s', extract(epoch FROM v_full_at),
                              extract(epoch FROM v_min_started - v_margin),
                              extract(epoch FROM v_min_ready - v_margin)), false);
END $$;
COMMENT ON FUNCTION jobs.queue_stats() IS
    'The rows of jobs.stats_queue (see there). Walks the queue''s indexes from floors this session found at its previous call, fully at least every pgjobs.stats_full_scan_interval (5 min; see migrations 17 and 18). Role: jobs_monitor, jobs_operator.';
REVOKE ALL ON FUNCTION jobs.queue_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.queue_stats() TO jobs_monitor, jobs_operator;

-- Jobs still marked running by workers that stopped or stopped beating: walked from the same
-- floor, and not at all while every worker beats (see migration 17).
CREATE OR REPLACE VIEW jobs.stats_jobs_on_stale_workers AS
SELECT q.task, count(*) AS jobs
FROM jobs.job_queue q
JOIN jobs.worker w ON w.worker_id = q.worker_id
WHERE q.status = 'running' AND q.started_at >= jobs.stats_floor(1)
  AND (w.stopped_at IS NOT NULL OR w.heartbeat_at + w.stale_after < clock_timestamp())
  AND EXISTS (SELECT 1 FROM jobs.worker s
              WHERE s.stopped_at IS NOT NULL
                 OR s.heartbeat_at + s.stale_after < statement_timestamp())
GROUP BY q.task;
