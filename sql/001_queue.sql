-- pgjobs 1: the work queue.
--
-- jobs.job_queue holds pending and running jobs; a job leaves it exactly once, moved (not copied)
-- into jobs.job with its final status. Every public function checks its arguments and raises
-- SQLSTATE 22023 (invalid_parameter_value) for bad input and 55000 (object_not_in_prerequisite_state)
-- for a job that is not in a state the call allows; a refused call changes nothing.
--
-- Times are taken with clock_timestamp(), not now(), so that a job published and consumed in one
-- long transaction, or a worker holding a transaction open, still sees real elapsed time.

CREATE SEQUENCE jobs.job_id_seq AS bigint;

CREATE TABLE jobs.job_queue (
    job_id       bigint       PRIMARY KEY DEFAULT nextval('jobs.job_id_seq'),
    task         varchar      NOT NULL,
    arguments    jsonb,
    status       text         NOT NULL DEFAULT 'pending',
    priority     integer      NOT NULL DEFAULT 0,
    -- Attempts started so far; while running, the number of the current attempt.
    attempts     integer      NOT NULL DEFAULT 0,
    max_retries  integer      NOT NULL DEFAULT 3,
    timeout      numeric(7,2) NOT NULL DEFAULT 60,
    published_at timestamptz  NOT NULL DEFAULT clock_timestamp(),
    -- When the job is (or became) runnable: the requested time on a first attempt, the end of the
    -- backoff on a retry.
    scheduled_at timestamptz  NOT NULL DEFAULT clock_timestamp(),
    started_at   timestamptz,
    expires_at   timestamptz,
    -- One entry per failed attempt: {"attempt": n, "at": time, "error": text}.
    tracebacks   jsonb,
    CONSTRAINT job_queue_task_not_empty CHECK (task <> ''),
    CONSTRAINT job_queue_status_known CHECK (status IN ('pending', 'running')),
    CONSTRAINT job_queue_timeout_positive CHECK (timeout > 0),
    CONSTRAINT job_queue_max_retries_not_negative CHECK (max_retries >= 0),
    CONSTRAINT job_queue_running_has_times
        CHECK (status <> 'running' OR (started_at IS NOT NULL AND expires_at IS NOT NULL))
);
ALTER SEQUENCE jobs.job_id_seq OWNED BY jobs.job_queue.job_id;

-- consume's order: greater priority first, then the job that became runnable first.
CREATE INDEX job_queue_pending_order ON jobs.job_queue (priority DESC, scheduled_at)
    WHERE status = 'pending';
-- Expiry reclaim and every running-job statistic walk this one; its size is bounded by the number
-- of jobs running at once, not by the backlog.
CREATE INDEX job_queue_running_expiry ON jobs.job_queue (expires_at) WHERE status = 'running';

CREATE TABLE jobs.job (
    job_id       bigint       PRIMARY KEY,
    task         varchar      NOT NULL,
    arguments    jsonb,
    status       text         NOT NULL,
    priority     integer      NOT NULL,
    attempts     integer      NOT NULL,
    max_retries  integer      NOT NULL,
    timeout      numeric(7,2) NOT NULL,
    published_at timestamptz  NOT NULL,
    -- When the final attempt became runnable, started and ended.
    scheduled_at timestamptz  NOT NULL,
    started_at   timestamptz  NOT NULL,
    finished_at  timestamptz  NOT NULL,
    tracebacks   jsonb,
    CONSTRAINT job_status_known CHECK (status IN ('success', 'failure', 'expired'))
);

-- The delay before retry number `attempts`: 2^attempts seconds, capped at one hour.
CREATE FUNCTION jobs.retry_delay(attempts integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN make_interval(secs => least(power(2, least(attempts, 12)), 3600));

-- The one validation of a job's settings, shared by publish and publish_bulk. `what` says where
-- the bad value came from (an argument name, or an array element).
CREATE FUNCTION jobs.check_job_settings(what text, task varchar, timeout numeric,
                                        max_retries integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF task IS NULL OR task = '' THEN
        RAISE EXCEPTION '%: task must be a non-empty string, got %', what,
            coalesce(quote_literal(task), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout IS NOT NULL AND timeout <= 0 THEN
        RAISE EXCEPTION '%: timeout must be a positive number of seconds, got %', what, timeout
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_retries IS NOT NULL AND max_retries < 0 THEN
        RAISE EXCEPTION '%: max_retries must be zero or more, got %', what, max_retries
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

CREATE FUNCTION jobs.publish(i_task varchar,
                             i_arguments jsonb DEFAULT NULL,
                             i_scheduled_at timestamptz DEFAULT NULL,
                             i_timeout numeric(7,2) DEFAULT NULL,
                             i_priority integer DEFAULT NULL,
                             i_max_retries integer DEFAULT NULL,
                             OUT job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    PERFORM jobs.check_job_settings('jobs.publish', i_task, i_timeout, i_max_retries);
    INSERT INTO jobs.job_queue (task, arguments, priority, max_retries, timeout, published_at,
                                scheduled_at)
    VALUES (i_task, i_arguments, coalesce(i_priority, 0), coalesce(i_max_retries, 3),
            coalesce(i_timeout, 60), v_now, coalesce(i_scheduled_at, v_now))
    RETURNING job_queue.job_id INTO job_id;
    PERFORM pg_notify('jobs', i_task);
END $$;

CREATE TYPE jobs.bulk_job AS (
    task         varchar,
    arguments    jsonb,
    scheduled_at timestamp,
    timeout      integer,
    priority     integer,
    max_retries  integer
);

-- Returns one job_id per element, in the order of the array.
CREATE FUNCTION jobs.publish_bulk(i_jobs jobs.bulk_job[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_bad_ord bigint;
    v_tasks varchar[];
BEGIN
    -- One pass finds the first bad element (so that a refused call queues nothing and the error
    -- names the element) and the distinct tasks to notify.
    SELECT min(j.ord) FILTER (WHERE j.task IS NULL OR j.task = '' OR j.timeout <= 0
                                    OR j.max_retries < 0),
           array_agg(DISTINCT j.task)
    INTO v_bad_ord, v_tasks
    FROM unnest(i_jobs) WITH ORDINALITY AS j(task, arguments, scheduled_at, timeout, priority,
                                             max_retries, ord);
    IF v_bad_ord IS NOT NULL THEN
        PERFORM jobs.check_job_settings(format('jobs.publish_bulk: element %s', v_bad_ord),
                                        j.task, j.timeout, j.max_retries)
        FROM unnest(i_jobs[v_bad_ord:v_bad_ord]) AS j;
    END IF;

    RETURN QUERY
    INSERT INTO jobs.job_queue AS q (task, arguments, priority, max_retries, timeout, published_at,
                                     scheduled_at)
    SELECT j.task, j.arguments, coalesce(j.priority, 0), coalesce(j.max_retries, 3),
           coalesce(j.timeout, 60), v_now, coalesce(j.scheduled_at::timestamptz, v_now)
    FROM unnest(i_jobs) AS j  -- yields the elements in order, which the insert keeps
    RETURNING q.job_id;

    PERFORM pg_notify('jobs', t) FROM unnest(v_tasks) AS t WHERE t IS NOT NULL;
END $$;

-- Ends attempts that failed (nack) or ran out of time (expire): each listed running job whose
-- current attempt matches returns to pending while retries are left (runnable at i_retry_at, or
-- after jobs.retry_delay), else moves to jobs.job with status i_final_status. A NULL attempt
-- matches any. Jobs that are not running, or whose attempt differs, are left untouched.
-- Returns the ids it changed.
CREATE FUNCTION jobs.fail_attempts(i_job_ids bigint[], i_attempts integer[], i_errors text[],
                                   i_retry_at timestamptz, i_final_status text)
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
        WHERE q.status = 'running' AND (a.attempt IS NULL OR q.attempts = a.attempt)
        FOR UPDATE OF q
    ), retried AS (
        UPDATE jobs.job_queue q
        SET status = 'pending', started_at = NULL, expires_at = NULL, tracebacks = t.tracebacks,
            scheduled_at = coalesce(i_retry_at, v_now + jobs.retry_delay(t.attempts))
        FROM target t
        WHERE q.job_id = t.job_id AND t.attempts <= t.max_retries
        RETURNING q.job_id
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

-- Explains why a single-job ack or nack changed nothing, as an error.
CREATE FUNCTION jobs.refuse(i_call text, i_job_id bigint, i_attempt integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_job record;
BEGIN
    IF i_job_id IS NULL THEN
        RAISE EXCEPTION '%: job_id must not be NULL', i_call USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT status, attempts INTO v_job FROM jobs.job_queue WHERE job_id = i_job_id;
    IF FOUND AND v_job.status = 'running' THEN
        RAISE EXCEPTION '%: job % is running attempt %, not attempt %', i_call, i_job_id,
            v_job.attempts, i_attempt
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The attempt expired and was reclaimed; its result is discarded.';
    ELSIF FOUND THEN
        RAISE EXCEPTION '%: job % is not running (it is %)', i_call, i_job_id, v_job.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT status INTO v_job FROM jobs.job WHERE job_id = i_job_id;
    IF FOUND THEN
        RAISE EXCEPTION '%: job % is not running (it finished with status %)', i_call, i_job_id,
            v_job.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RAISE EXCEPTION '%: job % does not exist', i_call, i_job_id
        USING ERRCODE = 'object_not_in_prerequisite_state';
END $$;

CREATE FUNCTION jobs.check_batch(i_call text, i_job_ids bigint[], i_other anyarray,
                                 i_other_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF i_job_ids IS NULL THEN
        RAISE EXCEPTION '%: job_ids must not be NULL', i_call USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF i_other IS NOT NULL AND cardinality(i_other) <> cardinality(i_job_ids) THEN
        RAISE EXCEPTION '%: % has % elements but job_ids has %', i_call, i_other_name,
            cardinality(i_other), cardinality(i_job_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- Reclaims running jobs past their timeout: retried like a nack while retries are left, else
-- moved to jobs.job as 'expired'. Returns how many it reclaimed.
CREATE FUNCTION jobs.expire() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[];
    v_attempts integer[];
    v_errors text[];
BEGIN
    SELECT array_agg(q.job_id), array_agg(q.attempts),
           array_agg(format('timeout: attempt %s ran longer than %s s', q.attempts, q.timeout))
    INTO v_ids, v_attempts, v_errors
    FROM jobs.job_queue q
    WHERE q.status = 'running' AND q.expires_at < clock_timestamp();
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN (SELECT count(*) FROM jobs.fail_attempts(v_ids, v_attempts, v_errors, NULL, 'expired'));
END $$;

-- Takes up to num runnable jobs (only of i_tasks, when given), greater priority first, then the
-- oldest scheduled_at, and marks them running. `attempts` is the attempt number that ack and nack
-- may be given back. Expired jobs are reclaimed first, so a queue with crashed workers heals
-- itself without a separate reaper.
CREATE FUNCTION jobs.consume(num integer, i_tasks varchar[] DEFAULT NULL)
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
        expires_at = v_now + make_interval(secs => q.timeout)
    FROM picked p
    WHERE q.job_id = p.job_id
    RETURNING q.job_id, q.task, q.arguments, q.attempts, q.max_retries, q.timeout,
              q.scheduled_at, q.published_at, q.started_at;
END $$;

-- Batch ack: completes every listed job that is running (the given attempt, when given) and
-- returns the ids it completed; any other id is left untouched and missing from the result.
-- Every argument is required (pass NULL for no attempts), so that a one-argument call with an
-- untyped parameter, jobs.ack($1), can only mean the single-job form.
CREATE FUNCTION jobs.ack(i_job_ids bigint[], i_attempts integer[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    PERFORM jobs.check_batch('jobs.ack', i_job_ids, i_attempts, 'attempts');
    RETURN QUERY
    WITH done AS (
        DELETE FROM jobs.job_queue q
        USING unnest(i_job_ids, i_attempts) AS a(job_id, attempt)
        WHERE q.job_id = a.job_id AND q.status = 'running'
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

-- Single ack: raises 55000 when the job is not running (or runs another attempt).
CREATE FUNCTION jobs.ack(i_job_id bigint, i_attempt integer DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM jobs.ack(ARRAY[i_job_id], ARRAY[i_attempt]);
    IF NOT FOUND THEN
        PERFORM jobs.refuse('jobs.ack', i_job_id, i_attempt);
    END IF;
END $$;

-- Batch nack, with one traceback per job; same contract as the batch ack, every argument
-- required.
CREATE FUNCTION jobs.nack(i_job_ids bigint[], i_tracebacks text[], i_schedule_at timestamptz,
                          i_attempts integer[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM jobs.check_batch('jobs.nack', i_job_ids, i_tracebacks, 'tracebacks');
    PERFORM jobs.check_batch('jobs.nack', i_job_ids, i_attempts, 'attempts');
    RETURN QUERY
    SELECT f.job_id
    FROM jobs.fail_attempts(i_job_ids, i_attempts, i_tracebacks, i_schedule_at, 'failure') f;
END $$;

CREATE FUNCTION jobs.nack(i_job_id bigint, i_traceback text DEFAULT NULL,
                          i_schedule_at timestamptz DEFAULT NULL, i_attempt integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM jobs.fail_attempts(ARRAY[i_job_id], ARRAY[i_attempt], ARRAY[i_traceback],
                                      i_schedule_at, 'failure');
    IF NOT FOUND THEN
        PERFORM jobs.refuse('jobs.nack', i_job_id, i_attempt);
    END IF;
END $$;

-- What a job in the queue is doing right now: ready (runnable now), scheduled (in the future, on
-- a first attempt), retry_wait (in a retry backoff), running, expired (running past its timeout).
CREATE FUNCTION jobs.job_state(status text, attempts integer, scheduled_at timestamptz,
                               expires_at timestamptz, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN status = 'running' AND expires_at < at THEN 'expired'
    WHEN status = 'running' THEN 'running'
    WHEN scheduled_at <= at THEN 'ready'
    WHEN attempts = 0 THEN 'scheduled'
    ELSE 'retry_wait'
END;

CREATE VIEW jobs.all AS
SELECT q.job_id, q.task, q.status,
       jobs.job_state(q.status, q.attempts, q.scheduled_at, q.expires_at, clock_timestamp())
           AS state,
       q.priority, q.attempts, q.max_retries, q.timeout, q.arguments, q.published_at,
       q.scheduled_at, q.started_at, q.expires_at, q.tracebacks
FROM jobs.job_queue q;

CREATE VIEW jobs.running AS
SELECT * FROM jobs.all WHERE status = 'running';

CREATE VIEW jobs.expired AS
SELECT * FROM jobs.all WHERE status = 'running' AND state = 'expired';

-- Least privilege: three roles, none of which may touch the tables directly. The functions above
-- run as their owner (SECURITY DEFINER, with a fixed search_path); the views run as theirs.
DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['jobs_publisher', 'jobs_consumer', 'jobs_monitor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        END IF;
    END LOOP;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
GRANT USAGE ON SCHEMA jobs TO jobs_publisher, jobs_consumer, jobs_monitor;
GRANT EXECUTE ON FUNCTION jobs.publish(varchar, jsonb, timestamptz, numeric, integer, integer),
                          jobs.publish_bulk(jobs.bulk_job[])
    TO jobs_publisher;
GRANT EXECUTE ON FUNCTION jobs.consume(integer, varchar[]),
                          jobs.ack(bigint[], integer[]), jobs.ack(bigint, integer),
                          jobs.nack(bigint[], text[], timestamptz, integer[]),
                          jobs.nack(bigint, text, timestamptz, integer),
                          jobs.expire()
    TO jobs_consumer;
GRANT EXECUTE ON FUNCTION jobs.retry_delay(integer),
                          jobs.job_state(text, integer, timestamptz, timestamptz, timestamptz)
    TO jobs_publisher, jobs_consumer, jobs_monitor;
GRANT SELECT ON jobs.all, jobs.running, jobs.expired TO jobs_publisher, jobs_consumer, jobs_monitor;
