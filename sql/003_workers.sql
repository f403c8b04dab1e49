-- pgjobs 3: workers register themselves and beat, so that monitoring can tell live workers from
-- dead ones and find the jobs that dead workers still hold.

CREATE TABLE jobs.worker (
    worker_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    concurrency   integer     NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A worker that has not beaten for this long is stale (presumed dead).
    stale_after   interval    NOT NULL DEFAULT interval '30 seconds',
    stopped_at    timestamptz,
    CONSTRAINT worker_concurrency_positive CHECK (concurrency > 0),
    CONSTRAINT worker_stale_after_positive CHECK (stale_after > interval '0')
);

ALTER TABLE jobs.job_queue ADD COLUMN worker_id bigint;

-- Registers a worker and returns its id.
CREATE FUNCTION jobs.register_worker(i_name text, i_host text, i_pid integer, i_concurrency integer,
                                     i_stale_after interval DEFAULT interval '30 seconds',
                                     OUT worker_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF i_name IS NULL OR i_name = '' THEN
        RAISE EXCEPTION 'jobs.register_worker: name must be a non-empty string, got %',
            coalesce(quote_literal(i_name), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF i_concurrency IS NULL OR i_concurrency < 1 THEN
        RAISE EXCEPTION 'jobs.register_worker: concurrency must be at least 1, got %',
            coalesce(i_concurrency::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO jobs.worker (name, host, pid, concurrency, stale_after)
    VALUES (i_name, coalesce(i_host, ''), coalesce(i_pid, 0), i_concurrency,
            coalesce(i_stale_after, interval '30 seconds'))
    RETURNING worker.worker_id INTO worker_id;
END $$;

-- Records that the worker is alive; false if it is unknown or was marked stopped.
CREATE FUNCTION jobs.heartbeat(i_worker_id bigint) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH beat AS (
        UPDATE jobs.worker SET heartbeat_at = clock_timestamp()
        WHERE worker_id = i_worker_id AND stopped_at IS NULL
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM beat);
END;

-- Marks a worker stopped after a clean shutdown.
CREATE FUNCTION jobs.unregister_worker(i_worker_id bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE jobs.worker SET stopped_at = clock_timestamp()
    WHERE worker_id = i_worker_id AND stopped_at IS NULL;
END;

-- consume gains the worker that takes the jobs; the old two-argument calls keep working.
DROP FUNCTION jobs.consume(integer, varchar[]);
CREATE FUNCTION jobs.consume(num integer, i_tasks varchar[] DEFAULT NULL,
                             i_worker_id bigint DEFAULT NULL)
RETURNS TABLE (job_id bigint, task varchar, arguments jsonb, attempts integer,
               max_retries integer, timeout numeric(7,2), scheduled_at timestamptz,
               published_at timestamptz, started_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
    WITH picked AS (
        SELECT q.job_id
        FROM jobs.job_queue q
        WHERE q.status = 'pending' AND q.scheduled_at <= v_now
          AND (i_tasks IS NULL OR q.task = ANY (i_tasks))
        ORDER BY q.priority DESC, q.scheduled_at
        LIMIT num
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs.job_queue q
    SET status = 'running', attempts = q.attempts + 1, started_at = v_now,
        expires_at = v_now + make_interval(secs => q.timeout), worker_id = i_worker_id
    FROM picked p
    WHERE q.job_id = p.job_id
    RETURNING q.job_id, q.task, q.arguments, q.attempts, q.max_retries, q.timeout,
              q.scheduled_at, q.published_at, q.started_at;
END $$;

CREATE VIEW jobs.stats_workers AS
SELECT s.state, count(w.worker_id) AS workers
FROM (VALUES ('alive'), ('stale')) AS s(state)
LEFT JOIN jobs.worker w
       ON w.stopped_at IS NULL
      AND s.state = CASE WHEN w.heartbeat_at + w.stale_after >= clock_timestamp()
                         THEN 'alive' ELSE 'stale' END
GROUP BY s.state;

-- Running jobs held by workers that stopped beating, per task.
CREATE VIEW jobs.stats_jobs_on_stale_workers AS
SELECT q.task, count(*) AS jobs
FROM jobs.job_queue q
JOIN jobs.worker w ON w.worker_id = q.worker_id
WHERE q.status = 'running'
  AND (w.stopped_at IS NOT NULL OR w.heartbeat_at + w.stale_after < clock_timestamp())
GROUP BY q.task;

REVOKE ALL ON FUNCTION jobs.register_worker(text, text, integer, integer, interval),
                       jobs.heartbeat(bigint), jobs.unregister_worker(bigint),
                       jobs.consume(integer, varchar[], bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.register_worker(text, text, integer, integer, interval),
                          jobs.heartbeat(bigint), jobs.unregister_worker(bigint),
                          jobs.consume(integer, varchar[], bigint)
    TO jobs_consumer;
GRANT SELECT ON jobs.stats_workers, jobs.stats_jobs_on_stale_workers TO jobs_monitor;
