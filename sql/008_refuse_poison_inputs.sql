-- pgjobs 8: no publisher, nacker or driver can store a job that stops the queue.
--
-- * A timeout of NaN was accepted (numeric's NaN passes "> 0"), and every consume that would
--   take the job then failed with "interval out of range": one publisher stopped every worker of
--   the queue. A scheduled_at of +/-infinity made idle workers spin, and a blank task, or one too
--   long for the pending index and for NOTIFY's payload, failed with an unrelated error. Every
--   setting is now checked by one function, with SQLSTATE 22023 and the argument named, and the
--   table's constraints refuse what any other path (an UPDATE by hand) might store.
-- * Sizes are bounded and documented: arguments at most 1 MiB (as jsonb), a task name at most
--   200 characters, a traceback at most 16 KiB per failed attempt.
-- * Drivers that send parameters untyped (node-postgres, for one) could not call
--   jobs.ack($1, $2) or jobs.nack($1, $2, $3, $4): both the single-job and the batch forms
--   matched. An overload taking text, which PostgreSQL prefers for untyped parameters, now
--   resolves them, and dispatches on the value: an array literal is a batch.
-- * Functions created after migration 1 had kept PostgreSQL's default EXECUTE for PUBLIC
--   (jobs.finished_stats among them). Every function is now revoked from PUBLIC, also for
--   functions that later migrations create.

-- Jobs that these rules refuse could only have come from the defects above. A NaN timeout
-- becomes the default; a job that could never run (an infinite or blank setting) is finished as
-- a failure that says why, so that nothing is dropped silently and nothing stops the queue.
UPDATE jobs.job_queue SET timeout = 60 WHERE timeout = 'NaN';
UPDATE jobs.job_queue SET scheduled_at = published_at WHERE scheduled_at = '-infinity';
WITH refused AS (
    DELETE FROM jobs.job_queue q
    WHERE q.scheduled_at = 'infinity' OR btrim(q.task, E' \t\n\r\f\v') = ''
       OR char_length(q.task) > 200
    RETURNING q.*,
        CASE WHEN q.scheduled_at = 'infinity' THEN 'scheduled_at was infinity'
             WHEN char_length(q.task) > 200 THEN 'the task name was over 200 characters'
             ELSE 'the task name was blank' END AS reason
)
INSERT INTO jobs.job (job_id, task, arguments, status, priority, attempts, max_retries, timeout,
                      published_at, scheduled_at, started_at, finished_at, tracebacks)
SELECT r.job_id, r.task, r.arguments, 'failure', r.priority, r.attempts, r.max_retries, r.timeout,
       r.published_at, least(r.scheduled_at, clock_timestamp()), clock_timestamp(),
       clock_timestamp(),
       coalesce(r.tracebacks, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
           'attempt', r.attempts, 'at', clock_timestamp(),
           'error', 'refused by pgjobs migration 8: ' || r.reason || ', so the job could never run'))
FROM refused r;

ALTER TABLE jobs.job_queue
    DROP CONSTRAINT job_queue_task_not_empty,
    DROP CONSTRAINT job_queue_timeout_positive,
    ADD CONSTRAINT job_queue_task_valid
        CHECK (btrim(task, E' \t\n\r\f\v') <> '' AND char_length(task) <= 200),
    -- numeric's NaN sorts above every number, so "> 0" alone lets it through.
    ADD CONSTRAINT job_queue_timeout_valid CHECK (timeout > 0 AND timeout <> 'NaN'),
    ADD CONSTRAINT job_queue_scheduled_at_finite CHECK (isfinite(scheduled_at));

-- The one validation of a job's settings, for publish and publish_bulk. `i_what` says where the
-- bad value came from (the function, and the element of a bulk call). Raises 22023.
CREATE FUNCTION jobs.check_job(i_what text, i_task varchar, i_arguments jsonb,
                               i_scheduled_at timestamptz, i_timeout numeric,
                               i_max_retries integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF i_task IS NULL OR btrim(i_task, E' \t\n\r\f\v') = '' THEN
        RAISE EXCEPTION '%: task must be a non-blank string, got %', i_what,
            coalesce(quote_literal(i_task), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF char_length(i_task) > 200 THEN
        RAISE EXCEPTION '%: task must be at most 200 characters, got %', i_what,
            char_length(i_task)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_column_size(i_arguments) > 1048576 THEN
        RAISE EXCEPTION '%: arguments must be at most 1048576 bytes as jsonb, got %', i_what,
            pg_column_size(i_arguments)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(i_scheduled_at) THEN
        RAISE EXCEPTION '%: scheduled_at must be a finite time, got %', i_what, i_scheduled_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The column is numeric(7,2): a timeout that rounds to 0.00 or past 99999.99 cannot be
    -- stored, and NaN or infinity cannot be added to a time.
    IF i_timeout IS NOT NULL
       AND NOT (i_timeout >= 0.005 AND i_timeout < 99999.995 AND i_timeout <> 'NaN') THEN
        RAISE EXCEPTION '%: timeout must be a number of seconds from 0.01 to 99999.99, got %',
            i_what, i_timeout
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF i_max_retries < 0 THEN
        RAISE EXCEPTION '%: max_retries must be zero or more, got %', i_what, i_max_retries
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- As in migration 1, with every setting checked by jobs.check_job.
CREATE OR REPLACE FUNCTION jobs.publish(i_task varchar,
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
    PERFORM jobs.check_job('jobs.publish', i_task, i_arguments, i_scheduled_at, i_timeout,
                           i_max_retries);
    INSERT INTO jobs.job_queue (task, arguments, priority, max_retries, timeout, published_at,
                                scheduled_at)
    VALUES (i_task, i_arguments, coalesce(i_priority, 0), coalesce(i_max_retries, 3),
            coalesce(i_timeout, 60), v_now, coalesce(i_scheduled_at, v_now))
    RETURNING job_queue.job_id INTO job_id;
    PERFORM pg_notify('jobs', i_task);
END $$;

-- As in migration 1, with the checks of jobs.check_job. The first pass tests every element with
-- plain expressions (a function call per element would cost more than the insert); only the
-- first bad element is then run through jobs.check_job, for its message.
CREATE OR REPLACE FUNCTION jobs.publish_bulk(i_jobs jobs.bulk_job[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_bad_ord bigint;
    v_tasks varchar[];
BEGIN
    SELECT min(j.ord) FILTER (WHERE j.task IS NULL OR btrim(j.task, E' \t\n\r\f\v') = ''
                                    OR char_length(j.task) > 200
                                    OR pg_column_size(j.arguments) > 1048576
                                    OR NOT isfinite(j.scheduled_at)
                                    OR j.timeout <= 0 OR j.timeout > 99999
                                    OR j.max_retries < 0),
           array_agg(DISTINCT j.task)
    INTO v_bad_ord, v_tasks
    FROM unnest(i_jobs) WITH ORDINALITY AS j(task, arguments, scheduled_at, timeout, priority,
                                             max_retries, ord);
    IF v_bad_ord IS NOT NULL THEN
        PERFORM jobs.check_job(format('jobs.publish_bulk: element %s', v_bad_ord), j.task,
                               j.arguments, j.scheduled_at::timestamptz, j.timeout, j.max_retries)
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

DROP FUNCTION jobs.check_job_settings(text, varchar, numeric, integer);

-- Refuses a traceback over 16 KiB, naming the job. Raises 22023.
CREATE FUNCTION jobs.check_tracebacks(i_call text, i_job_ids bigint[], i_tracebacks text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_job_id bigint;
    v_bytes integer;
BEGIN
    SELECT t.job_id, octet_length(t.traceback) INTO v_job_id, v_bytes
    FROM unnest(i_job_ids, i_tracebacks) AS t(job_id, traceback)
    WHERE octet_length(t.traceback) > 16384
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: the traceback of job % is % bytes, more than 16384', i_call,
            v_job_id, v_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- As in migration 1, with the tracebacks bounded.
CREATE OR REPLACE FUNCTION jobs.nack(i_job_ids bigint[], i_tracebacks text[],
                                     i_schedule_at timestamptz, i_attempts integer[])
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM jobs.check_batch('jobs.nack', i_job_ids, i_tracebacks, 'tracebacks');
    PERFORM jobs.check_batch('jobs.nack', i_job_ids, i_attempts, 'attempts');
    PERFORM jobs.check_tracebacks('jobs.nack', i_job_ids, i_tracebacks);
    RETURN QUERY
    SELECT f.job_id
    FROM jobs.fail_attempts(i_job_ids, i_attempts, i_tracebacks, i_schedule_at, 'failure') f;
END $$;

CREATE OR REPLACE FUNCTION jobs.nack(i_job_id bigint, i_traceback text DEFAULT NULL,
                                     i_schedule_at timestamptz DEFAULT NULL,
                                     i_attempt integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM jobs.check_tracebacks('jobs.nack', ARRAY[i_job_id], ARRAY[i_traceback]);
    PERFORM 1 FROM jobs.fail_attempts(ARRAY[i_job_id], ARRAY[i_attempt], ARRAY[i_traceback],
                                      i_schedule_at, 'failure');
    IF NOT FOUND THEN
        PERFORM jobs.refuse('jobs.nack', i_job_id, i_attempt);
    END IF;
END $$;

-- jobs.ack($1, $2) with untyped parameters. PostgreSQL prefers the string category for them, so
-- this overload is chosen, and the value decides: an array literal ('{41,42}') acks a batch and
-- returns the ids it completed; a single id acks that job, raises 55000 as jobs.ack(bigint,
-- integer) does, and returns its id. Typed calls never reach it (no implicit cast to text).
CREATE FUNCTION jobs.ack(i_job_id text, i_attempt text)
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF left(btrim(i_job_id), 1) = '{' THEN
        RETURN QUERY SELECT a.job_id FROM jobs.ack(i_job_id::bigint[], i_attempt::integer[]) a;
    ELSE
        PERFORM jobs.ack(i_job_id::bigint, i_attempt::integer);
        RETURN QUERY SELECT i_job_id::bigint;
    END IF;
END $$;

-- jobs.nack($1, $2, $3, $4) with untyped parameters, as jobs.ack(text, text) above.
CREATE FUNCTION jobs.nack(i_job_id text, i_traceback text, i_schedule_at text, i_attempt text)
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF left(btrim(i_job_id), 1) = '{' THEN
        RETURN QUERY SELECT n.job_id
                     FROM jobs.nack(i_job_id::bigint[], i_traceback::text[],
                                    i_schedule_at::timestamptz, i_attempt::integer[]) n;
    ELSE
        PERFORM jobs.nack(i_job_id::bigint, i_traceback, i_schedule_at::timestamptz,
                          i_attempt::integer);
        RETURN QUERY SELECT i_job_id::bigint;
    END IF;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA jobs REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.ack(text, text), jobs.nack(text, text, text, text)
    TO jobs_consumer;
