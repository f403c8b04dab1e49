-- pgjobs 13: what jobs-ctl reads with the jobs_operator role.
--
-- The operator acts on jobs (migration 12) and needs to see what it acts on: the queue's
-- counts, the workers, and a job's arguments, which jobs_monitor may not read (they may hold
-- personal data) but the operator who retries or cancels a job may.

CREATE VIEW jobs.worker_overview AS
SELECT w.worker_id, w.name, w.host, w.pid, w.concurrency, w.started_at, w.heartbeat_at,
       w.stopped_at,
       CASE WHEN w.stopped_at IS NOT NULL THEN 'stopped'
            WHEN w.heartbeat_at + w.stale_after >= clock_timestamp() THEN 'alive'
            ELSE 'stale' END AS state,
       (SELECT count(*) FROM jobs.job_queue q
        WHERE q.worker_id = w.worker_id AND q.status = 'running') AS running
FROM jobs.worker w;
COMMENT ON VIEW jobs.worker_overview IS
    'Every registered worker: alive (beating), stale (silent past stale_after) or stopped (unregistered), with its running jobs. Role: jobs_monitor, jobs_operator.';

CREATE FUNCTION jobs.job_arguments(i_job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce((SELECT q.arguments FROM jobs.job_queue q WHERE q.job_id = i_job_id),
                    (SELECT j.arguments FROM jobs.job j WHERE j.job_id = i_job_id));
END;
COMMENT ON FUNCTION jobs.job_arguments(bigint) IS
    'The arguments of a queued or finished job; NULL when it has none or is unknown. Role: jobs_operator.';

REVOKE ALL ON FUNCTION jobs.job_arguments(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.job_arguments(bigint) TO jobs_operator;
GRANT SELECT ON jobs.worker_overview TO jobs_monitor, jobs_operator;
GRANT SELECT ON jobs.stats_queue TO jobs_operator;
