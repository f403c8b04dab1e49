-- pgjobs 16: jobs queued, per task.
--
-- * jobs.publish_count counts every job inserted into jobs.job_queue (publish, publish_bulk, a
--   recurring schedule's slot, jobs.retry of a finished job), per task, sharded by backend like
--   jobs.pending_count. The queue's insert trigger already aggregates each statement's rows per
--   task; it now adds the same counts here, so no path that queues a job can miss it and a
--   rolled-back publish counts nothing. The inflow of a task is then comparable with its
--   outflow (pgjobs_jobs_finished_total) on a dashboard or in a runbook.
-- * Counts start from the jobs present at upgrade (queued and kept in history), so that the
--   counter of a busy task does not start at 0 next to a large finished count.

CREATE TABLE jobs.publish_count (
    task  varchar NOT NULL,
    shard integer NOT NULL,
    n     bigint  NOT NULL,
    PRIMARY KEY (task, shard)
);
COMMENT ON TABLE jobs.publish_count IS
    'Jobs inserted into jobs.job_queue, per task, in shards (see jobs.stats_published_by_task).';

INSERT INTO jobs.publish_count (task, shard, n)
SELECT task, 0, sum(n)
FROM (SELECT task, count(*) AS n FROM jobs.job_queue GROUP BY task
      UNION ALL
      SELECT task, count(*) FROM jobs.job GROUP BY task) AS present
GROUP BY task;

CREATE OR REPLACE FUNCTION jobs.count_pending() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tasks varchar[];
    v_deltas bigint[];
BEGIN
    -- Each branch names only the transition tables its trigger declares.
    IF TG_OP = 'INSERT' THEN
        -- Every inserted job is queued once; the pending ones (all, unless inserted running by
        -- hand) also count as pending. Locked in task order, as add_pending_counts does.
        INSERT INTO jobs.publish_count AS c (task, shard, n)
        SELECT r.task, pg_backend_pid() % 16, count(*)
        FROM new_rows r GROUP BY r.task ORDER BY r.task
        ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n;
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
COMMENT ON FUNCTION jobs.count_pending() IS
    'Internal: statement trigger counting queued jobs into jobs.publish_count and pending ones into jobs.pending_count.';

CREATE VIEW jobs.stats_published_by_task AS
SELECT c.task, sum(c.n)::bigint AS published_total
FROM jobs.publish_count c GROUP BY c.task;
COMMENT ON VIEW jobs.stats_published_by_task IS
    'Jobs queued per task, ever: published, queued by a recurring schedule or re-queued by jobs.retry (rolled-back publishes excluded). Role: jobs_monitor.';
GRANT SELECT ON jobs.stats_published_by_task TO jobs_monitor, jobs_operator;
