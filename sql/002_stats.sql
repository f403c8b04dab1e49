-- pgjobs 2: statistics that cost the same per scrape whatever the size of jobs.job.
--
-- * Pending jobs are counted by statement-level triggers into jobs.pending_count, sharded by backend
--   so that concurrent consumers never wait on one counter row. The time-dependent split of
--   pending jobs (ready, scheduled, retry_wait) only walks jobs due in the future.
-- * Running and expired jobs are read from the running-jobs index, whose size is the number of
--   jobs running at once.
-- * Finished jobs are read incrementally: every row of jobs.job records the id of the transaction
--   that wrote it, and jobs.finished_stats reads only rows of transactions that ended since the
--   caller's last watermark. The BRIN index on that column costs next to nothing per ack.

-- Existing rows keep NULL (they are history from before statistics); new rows record the writer's
-- transaction id. Adding the column without a default, then setting one, avoids a table rewrite.
ALTER TABLE jobs.job ADD COLUMN finished_xid bigint;
ALTER TABLE jobs.job ALTER COLUMN finished_xid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX job_finished_xid ON jobs.job USING brin (finished_xid) WITH (autosummarize = on);

-- The oldest ready job of one task, and that task's jobs due in the future.
CREATE INDEX job_queue_pending_task ON jobs.job_queue (task, scheduled_at) WHERE status = 'pending';

CREATE TABLE jobs.pending_count (
    task  varchar NOT NULL,
    shard integer NOT NULL,
    n     bigint  NOT NULL,
    PRIMARY KEY (task, shard)
);

-- Adds per-task deltas to this backend's shard. Rows are locked in task order so that two
-- transactions sharing a shard cannot deadlock.
CREATE FUNCTION jobs.add_pending_counts(i_tasks varchar[], i_deltas bigint[]) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO jobs.pending_count AS c (task, shard, n)
    SELECT d.task, pg_backend_pid() % 16, d.delta
    FROM unnest(i_tasks, i_deltas) AS d(task, delta)
    WHERE d.delta <> 0
    ORDER BY d.task
    ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n;
END;

CREATE FUNCTION jobs.count_pending() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tasks varchar[];
    v_deltas bigint[];
BEGIN
    -- Each branch names only the transition tables its trigger declares.
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(task), array_agg(delta) INTO v_tasks, v_deltas
        FROM (SELECT task, count(*) AS delta FROM new_rows WHERE status = 'pending'
              GROUP BY task) AS d;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(task), array_agg(delta) INTO v_tasks, v_deltas
        FROM (SELECT task, -count(*) AS delta FROM old_rows WHERE status = 'pending'
              GROUP BY task) AS d;
    ELSE
        SELECT array_agg(task), array_agg(delta) INTO v_tasks, v_deltas
        FROM (SELECT task, sum(delta) AS delta
              FROM (SELECT task, 1 AS delta FROM new_rows WHERE status = 'pending'
                    UNION ALL
                    SELECT task, -1 FROM old_rows WHERE status = 'pending') AS r
              GROUP BY task) AS d;
    END IF;
    IF v_tasks IS NOT NULL THEN
        PERFORM jobs.add_pending_counts(v_tasks, v_deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER job_queue_count_insert AFTER INSERT ON jobs.job_queue
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs.count_pending();
CREATE TRIGGER job_queue_count_update AFTER UPDATE ON jobs.job_queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs.count_pending();
CREATE TRIGGER job_queue_count_delete AFTER DELETE ON jobs.job_queue
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs.count_pending();

CREATE FUNCTION jobs.clear_pending_counts() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM jobs.pending_count;
    RETURN NULL;
END $$;
CREATE TRIGGER job_queue_count_truncate AFTER TRUNCATE ON jobs.job_queue
    FOR EACH STATEMENT EXECUTE FUNCTION jobs.clear_pending_counts();

-- Recomputes the counters from the queue itself, holding off writers meanwhile. Needed only if
-- the triggers were disabled by hand; also used to initialise them here.
CREATE FUNCTION jobs.recount_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    LOCK TABLE jobs.job_queue IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM jobs.pending_count;
    INSERT INTO jobs.pending_count (task, shard, n)
    SELECT task, 0, count(*) FROM jobs.job_queue WHERE status = 'pending' GROUP BY task;
END $$;
SELECT jobs.recount_pending();

-- One row per task that has jobs in the queue. The five state columns partition the queue: their
-- sum is the number of the task's jobs in jobs.job_queue.
CREATE VIEW jobs.stats_queue AS
WITH clock AS MATERIALIZED (
    SELECT clock_timestamp() AS at
), pending AS (
    SELECT c.task, sum(c.n) AS pending FROM jobs.pending_count c GROUP BY c.task
), running AS (
    SELECT q.task,
           count(*) FILTER (WHERE q.expires_at >= clock.at) AS running,
           count(*) FILTER (WHERE q.expires_at < clock.at) AS expired,
           extract(epoch FROM clock.at - min(q.started_at)) AS oldest_running_seconds,
           extract(epoch FROM max(clock.at - q.expires_at) FILTER (WHERE q.expires_at < clock.at))
               AS max_expired_overdue_seconds
    FROM jobs.job_queue q CROSS JOIN clock
    WHERE q.status = 'running'
    GROUP BY q.task, clock.at
), tasks AS (
    SELECT p.task FROM pending p WHERE p.pending > 0
    UNION
    SELECT r.task FROM running r
)
SELECT t.task,
       coalesce(p.pending, 0) - f.scheduled - f.retry_wait AS ready,
       f.scheduled,
       f.retry_wait,
       coalesce(r.running, 0) AS running,
       coalesce(r.expired, 0) AS expired,
       coalesce(extract(epoch FROM clock.at - o.oldest_ready_at), 0) AS oldest_ready_age_seconds,
       coalesce(r.oldest_running_seconds, 0) AS oldest_running_seconds,
       coalesce(r.max_expired_overdue_seconds, 0) AS max_expired_overdue_seconds
FROM tasks t
CROSS JOIN clock
LEFT JOIN pending p ON p.task = t.task
LEFT JOIN running r ON r.task = t.task
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE q.attempts = 0) AS scheduled,
           count(*) FILTER (WHERE q.attempts > 0) AS retry_wait
    FROM jobs.job_queue q
    WHERE q.status = 'pending' AND q.task = t.task AND q.scheduled_at > clock.at
) f
CROSS JOIN LATERAL (
    SELECT min(q.scheduled_at) AS oldest_ready_at
    FROM jobs.job_queue q
    WHERE q.status = 'pending' AND q.task = t.task AND q.scheduled_at <= clock.at
) o;

-- Jobs ever published: the ids handed out, including those of publishes that rolled back.
CREATE VIEW jobs.stats_published AS
SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END AS published_total
FROM jobs.job_id_seq s;

-- Size and upkeep of the queue's tables: the bloat of a hot queue table is what hurts first.
CREATE VIEW jobs.stats_tables AS
SELECT s.relname::text AS table_name,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       pg_total_relation_size(s.relid) AS total_bytes,
       extract(epoch FROM clock_timestamp() - greatest(s.last_vacuum, s.last_autovacuum))
           AS seconds_since_vacuum
FROM pg_stat_user_tables s
WHERE s.schemaname = 'jobs' AND s.relname IN ('job_queue', 'job');

-- Finished jobs since a watermark. Call it first with i_after_xid NULL: it returns only the
-- 'watermark' row. Pass that row's n back next time to get every job finished in between, exactly
-- once: a row is read only when its transaction is older than the snapshot's xmin, so it has
-- ended and no later call can see it appear behind the watermark.
--
-- Rows returned (kind: columns used):
--   watermark: n = the next i_after_xid
--   finished:  task, status, n = jobs finished with that status
--   wait:      task, bucket, n, total = seconds from runnable to started (final attempt)
--   run:       task, bucket, n, total = seconds from started to finished (final attempt)
--   attempts:  task, bucket, n, total = attempts made
-- bucket i counts values v with bounds[i] < v <= bounds[i+1] (1-based, bounds[0] = -inf); bucket
-- cardinality(bounds) + 1 is +Inf. Bounds must be ascending.
CREATE FUNCTION jobs.finished_stats(i_after_xid bigint, i_wait_bounds float8[],
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
    WITH fresh AS MATERIALIZED (
        SELECT j.task, j.status, j.attempts::float8 AS attempts,
               greatest(extract(epoch FROM j.started_at - j.scheduled_at), 0)::float8 AS wait,
               greatest(extract(epoch FROM j.finished_at - j.started_at), 0)::float8 AS run
        FROM jobs.job j
        WHERE j.finished_xid >= i_after_xid AND j.finished_xid < v_until
    )
    SELECT 'finished', f.task, f.status, NULL::integer, count(*), NULL::float8
    FROM fresh f GROUP BY f.task, f.status
    UNION ALL
    SELECT 'wait', f.task, NULL, 1 + cardinality(v_wait) - width_bucket(-f.wait, v_wait), count(*), sum(f.wait)
    FROM fresh f GROUP BY 2, 4
    UNION ALL
    SELECT 'run', f.task, NULL, 1 + cardinality(v_run) - width_bucket(-f.run, v_run), count(*), sum(f.run)
    FROM fresh f GROUP BY 2, 4
    UNION ALL
    SELECT 'attempts', f.task, NULL, 1 + cardinality(v_attempt) - width_bucket(-f.attempts, v_attempt), count(*),
           sum(f.attempts)
    FROM fresh f GROUP BY 2, 4;
END $$;

GRANT SELECT ON jobs.stats_queue, jobs.stats_published, jobs.stats_tables TO jobs_monitor;
GRANT EXECUTE ON FUNCTION jobs.finished_stats(bigint, float8[], float8[], float8[])
    TO jobs_monitor;
REVOKE ALL ON FUNCTION jobs.add_pending_counts(varchar[], bigint[]), jobs.count_pending(),
                       jobs.clear_pending_counts(), jobs.recount_pending()
    FROM PUBLIC;
