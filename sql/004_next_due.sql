-- pgjobs 4: an idle worker sleeps until its next job is due.
--
-- NOTIFY wakes workers when jobs are published, but nothing announces a scheduled job or a retry
-- whose time has come. Rather than polling often, a worker asks when its next pending job becomes
-- runnable and sleeps exactly that long (capped by its poll interval).

-- Seconds until the earliest pending job of these tasks is runnable: negative or zero when one is
-- runnable now, NULL when none is pending. One index probe per task.
CREATE FUNCTION jobs.seconds_until_next_due(i_tasks varchar[]) RETURNS float8
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT extract(epoch FROM min(n.at) - clock_timestamp())::float8
    FROM unnest(i_tasks) AS t(task)
    CROSS JOIN LATERAL (
        SELECT min(q.scheduled_at) AS at
        FROM jobs.job_queue q
        WHERE q.status = 'pending' AND q.task = t.task
    ) AS n;
END;

REVOKE ALL ON FUNCTION jobs.seconds_until_next_due(varchar[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.seconds_until_next_due(varchar[]) TO jobs_consumer;
