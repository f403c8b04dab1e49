-- pgjobs 10: a cheaper finished-job read, and autovacuum settings for a hot queue table.
--
-- * jobs.finished_stats was the scrape's slowest part under load (12 to 30 ms at 2,000 finished
--   jobs a second). Mostly the BRIN index on jobs.job.finished_xid: autovacuum summarizes a
--   filled page range only on its next round (a minute apart by default), and every scrape read
--   every row of every range not summarized yet: 40,000 rows to find the 450 that finished since
--   the last scrape. A btree index finds exactly those (31 ms to 3 ms in that case); on the ack
--   path it is one more insertion at the right edge of an index, as xids only grow. The function
--   also read the fresh rows four times and computed extract(), which yields numeric, twice per
--   row: it now reads them once, grouped by task, status and the three buckets at once, and
--   derives the four outputs from those few groups, with date_part. Same rows, same contract.
-- * jobs.job_queue is small and rewritten all the time: every job is inserted, updated at least
--   once and deleted. With the default autovacuum settings (a fifth of the table, throttled),
--   tens of thousands of dead rows sat at the head of the pending index between runs, and every
--   consume stepped over them. Autovacuum now runs on it after 5,000 dead rows, unthrottled.
--   (autovacuum_naptime, one minute by default, is global: see the README's operations notes.)

DROP INDEX jobs.job_finished_xid;
CREATE INDEX job_finished_xid ON jobs.job (finished_xid);

ALTER TABLE jobs.job_queue SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);

-- As in migration 2, read in one pass.
CREATE OR REPLACE FUNCTION jobs.finished_stats(i_after_xid bigint, i_wait_bounds float8[],
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
    WITH fresh AS (
        SELECT j.task, j.status, j.attempts::float8 AS attempts,
               greatest(date_part('epoch', j.started_at - j.scheduled_at), 0) AS wait,
               greatest(date_part('epoch', j.finished_at - j.started_at), 0) AS run
        FROM jobs.job j
        WHERE j.finished_xid >= i_after_xid AND j.finished_xid < v_until
    ), grouped AS MATERIALIZED (
        SELECT f.task, f.status,
               1 + cardinality(v_wait) - width_bucket(-f.wait, v_wait) AS wait_bucket,
               1 + cardinality(v_run) - width_bucket(-f.run, v_run) AS run_bucket,
               1 + cardinality(v_attempt) - width_bucket(-f.attempts, v_attempt) AS attempt_bucket,
               count(*) AS n, sum(f.wait) AS wait, sum(f.run) AS run, sum(f.attempts) AS attempts
        FROM fresh f
        GROUP BY 1, 2, 3, 4, 5
    )
    SELECT 'finished', g.task, g.status, NULL::integer, sum(g.n)::bigint, NULL::float8
    FROM grouped g GROUP BY g.task, g.status
    UNION ALL
    SELECT 'wait', g.task, NULL, g.wait_bucket, sum(g.n)::bigint, sum(g.wait)
    FROM grouped g GROUP BY g.task, g.wait_bucket
    UNION ALL
    SELECT 'run', g.task, NULL, g.run_bucket, sum(g.n)::bigint, sum(g.run)
    FROM grouped g GROUP BY g.task, g.run_bucket
    UNION ALL
    SELECT 'attempts', g.task, NULL, g.attempt_bucket, sum(g.n)::bigint, sum(g.attempts)
    FROM grouped g GROUP BY g.task, g.attempt_bucket;
END $$;
