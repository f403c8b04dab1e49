-- pgjobs 9: one call reports a batch of results and says what became of each; every function
-- carries its contract.
--
-- * jobs.complete acks and nacks in one call and returns, per job, what the database decided:
--   'success', 'retry' (back in the queue) or 'failure' (no retry left). A worker used to work
--   out "failed for good" itself, restating the rule that jobs.fail_attempts applies.
-- * jobs.fail_attempts returns whether it retried each job, for jobs.complete.
-- * COMMENT ON FUNCTION states each function's contract, so that \df+ and sql/schema.sql show
--   it where the definition is.

-- As in migration 5, returning whether each job went back to the queue.
DROP FUNCTION jobs.fail_attempts(bigint[], integer[], text[], timestamptz, text);
CREATE FUNCTION jobs.fail_attempts(i_job_ids bigint[], i_attempts integer[], i_errors text[],
                                   i_retry_at timestamptz, i_final_status text)
RETURNS TABLE (job_id bigint, retried boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp SET pgjobs.pending_counted = on
SET plan_cache_mode = force_generic_plan AS $$
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
        WHERE q.status <> 'pending'  -- that is, 'running': see jobs.ack
          AND (a.attempt IS NULL OR q.attempts = a.attempt)
        FOR UPDATE OF q
    ), retried AS (
        UPDATE jobs.job_queue q
        SET status = 'pending', started_at = NULL, expires_at = NULL, tracebacks = t.tracebacks,
            scheduled_at = coalesce(i_retry_at, v_now + jobs.retry_delay(t.attempts))
        FROM target t
        WHERE q.job_id = t.job_id AND t.attempts <= t.max_retries
        RETURNING q.job_id, q.task
    ), counted AS (
        INSERT INTO jobs.pending_count AS c (task, shard, n)
        SELECT r.task, pg_backend_pid() % 16, count(*)
        FROM retried r GROUP BY r.task ORDER BY r.task  -- lock order: see add_pending_counts
        ON CONFLICT (task, shard) DO UPDATE SET n = c.n + excluded.n
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
    SELECT r.job_id, true FROM retried r
    UNION ALL
    SELECT m.job_id, false FROM moved m;
END $$;

CREATE FUNCTION jobs.complete(i_ack_ids bigint[], i_ack_attempts integer[],
                              i_nack_ids bigint[], i_tracebacks text[],
                              i_nack_attempts integer[])
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    -- Each part only when it has jobs: an empty call still costs a function call.
    IF cardinality(i_ack_ids) > 0 THEN
        RETURN QUERY SELECT a.job_id, 'success'::text FROM jobs.ack(i_ack_ids, i_ack_attempts) a;
    END IF;
    IF cardinality(i_nack_ids) > 0 THEN
        PERFORM jobs.check_batch('jobs.complete', i_nack_ids, i_tracebacks, 'tracebacks');
        PERFORM jobs.check_batch('jobs.complete', i_nack_ids, i_nack_attempts, 'nack_attempts');
        PERFORM jobs.check_tracebacks('jobs.complete', i_nack_ids, i_tracebacks);
        RETURN QUERY
        SELECT f.job_id, CASE WHEN f.retried THEN 'retry' ELSE 'failure' END
        FROM jobs.fail_attempts(i_nack_ids, i_nack_attempts, i_tracebacks, NULL, 'failure') f;
    END IF;
END $$;

REVOKE ALL ON FUNCTION jobs.fail_attempts(bigint[], integer[], text[], timestamptz, text),
                       jobs.complete(bigint[], integer[], bigint[], text[], integer[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.complete(bigint[], integer[], bigint[], text[], integer[])
    TO jobs_consumer;

-- Contracts. Public functions: what they take, return, change and raise. Internal ones say so.
COMMENT ON FUNCTION jobs.publish(varchar, jsonb, timestamptz, numeric, integer, integer) IS
'Queues one job and returns its job_id; NOTIFY jobs with the task. i_task: 1 to 200 characters, '
'not blank. i_arguments: at most 1 MiB as jsonb. i_scheduled_at: when it becomes runnable '
'(default now; finite). i_timeout: seconds, 0.01 to 99999.99 (default 60). i_priority: greater '
'runs first (default 0). i_max_retries: >= 0 (default 3; at most max_retries + 1 runs). '
'Raises 22023 naming the bad argument; a refused call queues nothing. Role: jobs_publisher.';
COMMENT ON FUNCTION jobs.publish_bulk(jobs.bulk_job[]) IS
'Queues every element of i_jobs in one statement and returns one job_id per element, in order; '
'NOTIFY jobs once per distinct task. Each element is checked as jobs.publish checks its '
'arguments (timeout in whole seconds, 1 to 99999); the first bad element is named with 22023 and '
'nothing is queued. Role: jobs_publisher.';
COMMENT ON FUNCTION jobs.consume(integer, varchar[], bigint) IS
'Takes up to num runnable jobs (only of i_tasks when given), greater priority first, then the '
'earliest runnable, and marks them running for i_worker_id; attempts is the attempt number to '
'pass back to ack and nack. Reclaims expired jobs first (see jobs.expire). Concurrent callers '
'never get the same job and never wait for each other (SKIP LOCKED). Raises 22023 for num < 1. '
'Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.ack(bigint, integer) IS
'Finishes a running job as a success: moves it to jobs.job. With i_attempt, only that attempt. '
'Raises 55000 when the job is not running or runs another attempt (it was reclaimed), 22023 '
'for a NULL id. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.ack(bigint[], integer[]) IS
'Batch ack: finishes every listed job that is running (the given attempt, when not NULL) and '
'returns the ids it finished; other ids are left alone and missing from the result. Both '
'arguments required (NULL for no attempts). Raises 22023 for arrays of different lengths. '
'Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.ack(text, text) IS
'jobs.ack($1, $2) with untyped parameters (drivers that send text): an array literal acks a '
'batch as jobs.ack(bigint[], integer[]); a single id acks that job as jobs.ack(bigint, integer) '
'and returns it. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.nack(bigint, text, timestamptz, integer) IS
'Ends a running attempt as failed: retried at i_schedule_at, or after jobs.retry_delay, while '
'retries are left, else finished as a failure. i_traceback (at most 16 KiB) is kept in '
'tracebacks. Raises 55000 as jobs.ack does, 22023 for a traceback over 16 KiB. '
'Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.nack(bigint[], text[], timestamptz, integer[]) IS
'Batch nack, one traceback per job; returns the ids it changed, as the batch ack. Every argument '
'required (NULL where not used). Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.nack(text, text, text, text) IS
'jobs.nack($1, $2, $3, $4) with untyped parameters: an array literal nacks a batch, a single id '
'that job, which it returns. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.complete(bigint[], integer[], bigint[], text[], integer[]) IS
'Acks i_ack_ids and nacks i_nack_ids (with their tracebacks) in one call, each at the attempt '
'given, and returns what became of each: outcome success, retry (back in the queue) or failure '
'(no retry left). A job not running that attempt is left alone and missing from the result. '
'Raises 22023 for arrays of different lengths or a traceback over 16 KiB. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.expire() IS
'Reclaims running jobs past their timeout: retried as by nack while retries are left, else '
'finished as expired. Returns how many. jobs.consume does this by itself. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.register_worker(text, text, integer, integer, interval) IS
'Records a worker in jobs.worker and returns its id; it counts as stale after i_stale_after '
'without a heartbeat. Raises 22023 for a blank name or concurrency < 1. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.heartbeat(bigint) IS
'Records that the worker is alive; false when it is unknown or was unregistered. '
'Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.unregister_worker(bigint) IS
'Marks the worker stopped after a clean shutdown. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.seconds_until_next_due(varchar[]) IS
'Seconds until the earliest pending job of i_tasks is runnable: <= 0 when one is now, NULL when '
'none is pending. One index probe per task. Role: jobs_consumer.';
COMMENT ON FUNCTION jobs.finished_stats(bigint, float8[], float8[], float8[]) IS
'Jobs finished since the watermark i_after_xid, each counted exactly once across calls: counts '
'by task and status and histogram buckets of wait, run and attempts (see migration 2). Call '
'first with NULL for the watermark row alone. Role: jobs_monitor.';
COMMENT ON FUNCTION jobs.recount_pending() IS
'Rebuilds jobs.pending_count from the queue, holding off writers meanwhile; needed only if its '
'triggers were disabled by hand. Owner only.';
COMMENT ON FUNCTION jobs.retry_delay(integer) IS
'The delay before retry number attempts: 2^attempts seconds, at most one hour. Pure.';
COMMENT ON FUNCTION jobs.job_state(text, integer, timestamptz, timestamptz, timestamptz) IS
'What a job in the queue is doing at a moment: ready, scheduled, retry_wait, running or expired. '
'Pure.';
COMMENT ON FUNCTION jobs.fail_attempts(bigint[], integer[], text[], timestamptz, text) IS
'Internal: ends failed or expired attempts for nack, expire and complete; returns each changed '
'job and whether it was retried.';
COMMENT ON FUNCTION jobs.refuse(text, bigint, integer) IS
'Internal: raises the error that explains why a single-job ack or nack changed nothing.';
COMMENT ON FUNCTION jobs.check_batch(text, bigint[], anyarray, text) IS
'Internal: raises 22023 when a batch call''s arrays differ in length or the ids are NULL.';
COMMENT ON FUNCTION jobs.check_job(text, varchar, jsonb, timestamptz, numeric, integer) IS
'Internal: the one validation of a job''s settings, for publish and publish_bulk (22023).';
COMMENT ON FUNCTION jobs.check_tracebacks(text, bigint[], text[]) IS
'Internal: raises 22023 for a traceback over 16 KiB, naming the job.';
COMMENT ON FUNCTION jobs.add_pending_counts(varchar[], bigint[]) IS
'Internal: adds per-task deltas to this backend''s shard of jobs.pending_count.';
COMMENT ON FUNCTION jobs.count_pending() IS
'Internal: statement trigger counting published jobs into jobs.pending_count.';
COMMENT ON FUNCTION jobs.count_pending_row() IS
'Internal: row trigger counting hand edits that move jobs into or out of pending.';
COMMENT ON FUNCTION jobs.clear_pending_counts() IS
'Internal: empties jobs.pending_count when the queue is truncated.';
