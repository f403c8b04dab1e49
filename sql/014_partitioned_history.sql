-- pgjobs 14: finished jobs are kept in partitions per day and status; retention drops them whole.
--
-- Deleting finished jobs one row at a time costs, for each row, a WAL record, a dead row that
-- vacuum must visit and three index entries. Measured while 10 million old jobs were pruned in
-- batches (bench/run-prune-bench), the queue drained at 0.78 of its speed without pruning,
-- however the batches were paced. Dropping a table costs nothing per row.
--
-- * jobs.job is partitioned by range of finished_at, one partition per UTC day
--   (jobs.job_day_YYYYMMDD), and each day by list of status (jobs.job_day_YYYYMMDD_success,
--   _failure, _expired, _cancelled), so that a status with a shorter retention (success, 7 days
--   by default) drops its days before the others do.
-- * jobs.create_job_partitions creates the days ahead (jobs.maintain: today and the next 3). A
--   job finished on a day that has no partition (maintenance off for days) lands in
--   jobs.job_default, and jobs finished before this migration stay in jobs.job_before_14 (a
--   partition for all time before it); both are pruned row by row, as before.
-- * jobs.prune drops the partitions of a status whose whole day is past its retention, after
--   counting their rows into jobs.pruned_count, and deletes rows past retention from
--   jobs.job_before_14 and jobs.job_default. A job in a day partition is therefore kept up to a
--   day longer than its retention; with a retention under a day, prune deletes its rows one by
--   one as before. Dropping a partition takes an exclusive lock on its day's table, which only
--   readers of old days (scrapes, operators) wait for; prune waits at most 100 ms for it and
--   leaves the partition for its next call otherwise, so that no lock queue forms behind it.
-- * The primary key on job_id goes: a key on a partitioned table must hold the partition
--   columns. job_id stays indexed; ids are unique by the sequence that hands them out.
--
-- Upgrading locks jobs.job and, when it holds jobs, checks that they all lie before now (a scan)
-- and indexes job_id anew: about 2 s per million finished jobs on a small machine.

LOCK TABLE jobs.job IN ACCESS EXCLUSIVE MODE;
ALTER TABLE jobs.job RENAME TO job_before_14;
ALTER INDEX jobs.job_pkey RENAME TO job_before_14_pkey;
ALTER INDEX jobs.job_finished_xid RENAME TO job_before_14_finished_xid;
ALTER INDEX jobs.job_status_finished_at RENAME TO job_before_14_status_finished_at;

CREATE TABLE jobs.job (LIKE jobs.job_before_14 INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                       INCLUDING COMMENTS)
    PARTITION BY RANGE (finished_at);
COMMENT ON TABLE jobs.job IS
    'Finished jobs, partitioned by UTC day of finished_at and then by status (see migration 14).';
CREATE INDEX job_job_id ON jobs.job (job_id);
CREATE INDEX job_finished_xid ON jobs.job (finished_xid);
CREATE INDEX job_status_finished_at ON jobs.job (status, finished_at);
CREATE TABLE jobs.job_default PARTITION OF jobs.job DEFAULT;

-- Where jobs.job_before_14 ends: NULL when there is no such partition.
CREATE TABLE jobs.job_partitioning (
    one boolean PRIMARY KEY DEFAULT true CONSTRAINT job_partitioning_one_row CHECK (one),
    before_14_until timestamptz
);
COMMENT ON TABLE jobs.job_partitioning IS
    'Internal: where jobs.job_before_14, the partition of the jobs finished before migration 14, ends.';

-- The day partitions of jobs.job, with their bounds and status partitions.
CREATE VIEW jobs.job_partitions AS
SELECT d.relname::text AS day_table,
       greatest(to_date(substr(d.relname, 9, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC',
                p.before_14_until) AS from_at,
       (to_date(substr(d.relname, 9, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC'
           AS until_at,
       s.relname::text AS status_table,
       substr(s.relname, 18) AS status
FROM pg_inherits di
JOIN pg_class d ON d.oid = di.inhrelid
CROSS JOIN jobs.job_partitioning p
LEFT JOIN pg_inherits si ON si.inhparent = d.oid
LEFT JOIN pg_class s ON s.oid = si.inhrelid
WHERE di.inhparent = 'jobs.job'::regclass AND d.relname ~ '^job_day_[0-9]{8}$';
COMMENT ON VIEW jobs.job_partitions IS
    'The day partitions of jobs.job (UTC days; the first may start later, where jobs.job_before_14 ends) and their status partitions; a day whose statuses were all dropped has one row with status NULL.';

CREATE FUNCTION jobs.create_job_partitions(i_from timestamptz DEFAULT NULL,
                                           i_days integer DEFAULT 4)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Creating or dropping a partition must not queue behind a long lock, nor hold a queue of
-- acks or scrapes behind itself: what cannot be had in 100 ms is left for the next call.
SET lock_timeout = '100ms' AS $$
DECLARE
    v_from timestamptz := coalesce(i_from, clock_timestamp());
    v_before_until timestamptz := (SELECT p.before_14_until FROM jobs.job_partitioning p);
    v_day timestamp;
    v_lo timestamptz;
    v_hi timestamptz;
    v_name text;
    v_created integer := 0;
    v_status text;
BEGIN
    IF i_days IS NULL OR i_days < 1 OR i_days > 366 THEN
        RAISE EXCEPTION 'jobs.create_job_partitions: i_days must be from 1 to 366, got %',
            coalesce(i_days::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(v_from) THEN
        RAISE EXCEPTION 'jobs.create_job_partitions: i_from must be a finite time, got %', v_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. i_days - 1 LOOP
        v_day := date_trunc('day', v_from AT TIME ZONE 'UTC') + make_interval(days => i);
        v_name := 'job_day_' || to_char(v_day, 'YYYYMMDD');
        v_lo := v_day AT TIME ZONE 'UTC';
        v_hi := (v_day + interval '1 day') AT TIME ZONE 'UTC';
        CONTINUE WHEN to_regclass('jobs.' || v_name) IS NOT NULL;
        CONTINUE WHEN v_hi <= v_before_until;
        v_lo := greatest(v_lo, v_before_until);
        -- Jobs that landed in the default partition keep their day there.
        CONTINUE WHEN EXISTS (SELECT 1 FROM jobs.job_default j
                              WHERE j.status IN ('success', 'failure', 'expired', 'cancelled')
                                AND j.finished_at >= v_lo AND j.finished_at < v_hi);
        BEGIN
            EXECUTE format('CREATE TABLE jobs.%I (LIKE jobs.job INCLUDING DEFAULTS '
                           'INCLUDING CONSTRAINTS) PARTITION BY LIST (status)', v_name);
            FOREACH v_status IN ARRAY ARRAY['success', 'failure', 'expired', 'cancelled'] LOOP
                EXECUTE format('CREATE TABLE jobs.%I PARTITION OF jobs.%I FOR VALUES IN (%L)',
                               v_name || '_' || v_status, v_name, v_status);
            END LOOP;
            EXECUTE format('ALTER TABLE jobs.job ATTACH PARTITION jobs.%I '
                           'FOR VALUES FROM (%L) TO (%L)', v_name, v_lo, v_hi);
            v_created := v_created + 1;
        EXCEPTION WHEN lock_not_available THEN
            EXIT;  -- the next call creates it
        END;
    END LOOP;
    RETURN v_created;
END $$;
COMMENT ON FUNCTION jobs.create_job_partitions(timestamptz, integer) IS
    'Creates the day partitions of jobs.job (UTC days) for i_days days from i_from (default: now), except days that exist, lie before migration 14 or already have jobs in jobs.job_default; returns how many it created. Raises 22023 for i_days outside 1..366 or an infinite i_from. Role: jobs_operator.';

-- What jobs.prune removes at i_now, in the order it does: whole status partitions of days past
-- their status's retention (before_at NULL), then, oldest first by table, the tables whose jobs
-- past it (finished_at < before_at) it deletes row by row.
CREATE FUNCTION jobs.prune_targets(i_now timestamptz)
RETURNS TABLE (table_name text, status text, before_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT x.table_name, x.status, x.before_at FROM (
        SELECT p.status_table AS table_name, p.status, NULL::timestamptz AS before_at,
               0 AS pass, p.until_at AS at
        FROM jobs.job_partitions p JOIN jobs.retention t ON t.status = p.status
        WHERE t.keep IS NOT NULL
          AND p.until_at <= i_now - greatest(t.keep, interval '5 minutes')
        UNION ALL
        SELECT r.name, t.status, i_now - greatest(t.keep, interval '5 minutes'), 1,
               '-infinity'
        FROM jobs.retention t
        CROSS JOIN (VALUES ('job_before_14'), ('job_default')) AS r(name)
        WHERE t.keep IS NOT NULL AND to_regclass('jobs.' || r.name) IS NOT NULL
        UNION ALL
        SELECT p.status_table, p.status, i_now - greatest(t.keep, interval '5 minutes'), 1,
               p.from_at
        FROM jobs.job_partitions p JOIN jobs.retention t ON t.status = p.status
        WHERE t.keep < interval '1 day'
          AND p.from_at < i_now - greatest(t.keep, interval '5 minutes')
          AND p.until_at > i_now - greatest(t.keep, interval '5 minutes')
    ) x
    ORDER BY x.pass, x.status, x.at, x.table_name
$$;
COMMENT ON FUNCTION jobs.prune_targets(timestamptz) IS
    'Internal: what jobs.prune removes at i_now: status partitions to drop whole (before_at NULL), and tables to delete from, row by row, the jobs of status finished before before_at.';

CREATE OR REPLACE FUNCTION jobs.prune(i_limit integer DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms' AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_left bigint := i_limit;
    v_total bigint := 0;
    v_n bigint;
    v_day text;
    r record;
BEGIN
    IF i_limit < 1 THEN
        RAISE EXCEPTION 'jobs.prune: i_limit must be at least 1 (or NULL for no limit), got %',
            i_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One pruner at a time: two would count a dropped partition twice.
    IF NOT pg_try_advisory_xact_lock(7061021002) THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT * FROM jobs.prune_targets(v_now) LOOP
        IF r.before_at IS NULL THEN
            -- A whole day of a status: counted, then dropped, whatever i_limit (a drop costs
            -- nothing per row). The day's table is locked first, so that no retry moves a job
            -- out between the count and the drop.
            v_day := substr(r.table_name, 1, 16);
            BEGIN
                EXECUTE format('LOCK TABLE jobs.%I IN ACCESS EXCLUSIVE MODE', v_day);
                EXECUTE format('SELECT count(*) FROM jobs.%I', r.table_name) INTO v_n;
                EXECUTE format('DROP TABLE jobs.%I', r.table_name);
            EXCEPTION WHEN lock_not_available THEN
                CONTINUE;  -- a reader holds the day: the next call drops it
            END;
        ELSE
            CONTINUE WHEN v_left IS NOT NULL AND v_left <= 0;
            -- ctid within one table: a ctid names a row only within its partition.
            EXECUTE format(
                'WITH gone AS (DELETE FROM jobs.%1$I j WHERE j.ctid = ANY (ARRAY('
                '    SELECT o.ctid FROM jobs.%1$I o WHERE o.status = $1 AND o.finished_at < $2'
                '    ORDER BY o.finished_at LIMIT $3)) RETURNING 1) SELECT count(*) FROM gone',
                r.table_name)
                INTO v_n USING r.status, r.before_at, v_left;
            v_left := v_left - v_n;
        END IF;
        IF v_n > 0 THEN
            INSERT INTO jobs.pruned_count AS c (status, n) VALUES (r.status, v_n)
            ON CONFLICT (status) DO UPDATE SET n = c.n + excluded.n;
        END IF;
        v_total := v_total + v_n;
    END LOOP;
    -- Days with no status left. Dropping one locks jobs.job: acks wait for it, briefly.
    FOR v_day IN SELECT p.day_table FROM jobs.job_partitions p
                 GROUP BY p.day_table HAVING count(p.status_table) = 0 LOOP
        BEGIN
            EXECUTE format('DROP TABLE jobs.%I', v_day);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;
        END;
    END LOOP;
    RETURN v_total;
END $$;
COMMENT ON FUNCTION jobs.prune(integer) IS
    'Removes finished jobs past their status''s retention (never one finished in the last 5 minutes) and returns how many: drops the day partitions of a status whose whole day is past it (so a job there is kept up to a day longer; see migration 14), and deletes, oldest first and at most i_limit (NULL: all), the jobs past it in jobs.job_default, jobs.job_before_14, and in day partitions when the retention is under a day. Raises 22023 for i_limit < 1. Role: jobs_operator.';

-- What jobs.prune would remove now, per status: what jobs-ctl prune --dry-run shows.
CREATE FUNCTION jobs.prunable() RETURNS TABLE (status text, jobs bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_status text;
    v_n bigint;
    r record;
BEGIN
    FOR v_status IN SELECT t.status FROM jobs.retention t WHERE t.keep IS NOT NULL
                    ORDER BY t.status LOOP
        status := v_status;
        jobs := 0;
        FOR r IN SELECT p.table_name, p.before_at FROM jobs.prune_targets(v_now) p
                 WHERE p.status = v_status LOOP
            EXECUTE format('SELECT count(*) FROM jobs.%I j WHERE j.status = $1 '
                           'AND ($2::timestamptz IS NULL OR j.finished_at < $2)', r.table_name)
                INTO v_n USING v_status, r.before_at;
            jobs := jobs + v_n;
        END LOOP;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION jobs.prunable() IS
    'Per status with a retention, how many finished jobs jobs.prune would remove now (without a limit). Role: jobs_operator.';

-- Views and functions bound to the table by its oid follow it to its new name: point them at
-- the partitioned one.
CREATE OR REPLACE VIEW jobs.stats_retention AS
SELECT t.status, t.keep,
       date_part('epoch', t.keep) AS keep_seconds,
       coalesce(p.n, 0) AS pruned_total,
       coalesce(date_part('epoch', clock_timestamp() - o.oldest), 0) AS oldest_age_seconds
FROM jobs.retention t
LEFT JOIN jobs.pruned_count p ON p.status = t.status
CROSS JOIN LATERAL (
    SELECT min(j.finished_at) AS oldest FROM jobs.job j WHERE j.status = t.status
) AS o;

CREATE OR REPLACE VIEW jobs.job_overview AS
SELECT q.job_id, q.task, q.status,
       jobs.job_state(q.status, q.attempts, q.scheduled_at, q.expires_at, clock_timestamp()) AS state,
       q.priority, q.attempts, q.max_retries, q.timeout, q.published_at, q.scheduled_at,
       q.started_at, q.expires_at, NULL::timestamptz AS finished_at, q.worker_id,
       q.cancel_requested_at, q.tracebacks
FROM jobs.job_queue q
UNION ALL
SELECT j.job_id, j.task, j.status, 'finished', j.priority, j.attempts, j.max_retries, j.timeout,
       j.published_at, j.scheduled_at, j.started_at, NULL, j.finished_at, NULL, NULL,
       j.tracebacks
FROM jobs.job j;

CREATE OR REPLACE FUNCTION jobs.job_arguments(i_job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce((SELECT q.arguments FROM jobs.job_queue q WHERE q.job_id = i_job_id),
                    (SELECT j.arguments FROM jobs.job j WHERE j.job_id = i_job_id));
END;

-- jobs.job is many tables now: its row sums them. seconds_since_vacuum is that of the
-- partition vacuumed last.
CREATE OR REPLACE VIEW jobs.stats_tables AS
SELECT s.relname::text AS table_name,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       pg_total_relation_size(s.relid) AS total_bytes,
       extract(epoch FROM clock_timestamp() - greatest(s.last_vacuum, s.last_autovacuum))
           AS seconds_since_vacuum
FROM pg_stat_user_tables s
WHERE s.schemaname = 'jobs' AND s.relname = 'job_queue'
UNION ALL
SELECT 'job', sum(s.n_live_tup)::bigint, sum(s.n_dead_tup)::bigint,
       coalesce(sum(pg_total_relation_size(s.relid)), 0)::bigint,
       extract(epoch FROM clock_timestamp() - max(greatest(s.last_vacuum, s.last_autovacuum)))
FROM pg_partition_tree('jobs.job') t
JOIN pg_stat_user_tables s ON s.relid = t.relid
WHERE t.isleaf;

CREATE OR REPLACE FUNCTION jobs.maintain(i_worker_retention interval DEFAULT '1 hour',
                                         i_prune_limit integer DEFAULT 10000)
RETURNS TABLE (step text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    IF i_worker_retention IS NULL OR i_worker_retention < interval '0' THEN
        RAISE EXCEPTION 'jobs.maintain: i_worker_retention must be an interval of 0 or more, got %',
            coalesce(i_worker_retention::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    step := 'expire';
    n := jobs.expire();
    RETURN NEXT;
    step := 'partitions';
    n := jobs.create_job_partitions(v_now, 4);
    RETURN NEXT;
    step := 'prune';
    n := jobs.prune(i_prune_limit);
    RETURN NEXT;
    -- A worker that stopped, or stopped beating, longer ago than the retention, and holds no
    -- running job (a job still marked as its own is reported on stale workers until it expires).
    step := 'workers';
    WITH gone AS (
        DELETE FROM jobs.worker w
        WHERE coalesce(w.stopped_at, w.heartbeat_at + w.stale_after) < v_now - i_worker_retention
          AND NOT EXISTS (SELECT 1 FROM jobs.job_queue q
                          WHERE q.worker_id = w.worker_id AND q.status = 'running')
        RETURNING 1
    )
    SELECT count(*) INTO n FROM gone;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION jobs.maintain(interval, integer) IS
    'One round of maintenance: reclaims expired jobs, creates the day partitions of jobs.job for today and the next 3 days, prunes finished jobs past retention (at most i_prune_limit row by row; see jobs.prune), and deletes workers gone for longer than i_worker_retention that hold no running job. Returns how many of each. The worker runs it on an interval (maintenance in its YAML); pg_cron may too. Role: jobs_operator.';

-- The jobs finished so far: a partition for all time before now, or nothing.
DO $$
DECLARE
    v_until timestamptz := clock_timestamp();
BEGIN
    IF EXISTS (SELECT 1 FROM jobs.job_before_14) THEN
        EXECUTE format('ALTER TABLE jobs.job ATTACH PARTITION jobs.job_before_14 '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', v_until);
        INSERT INTO jobs.job_partitioning (before_14_until) VALUES (v_until);
    ELSE
        DROP TABLE jobs.job_before_14;
        INSERT INTO jobs.job_partitioning (before_14_until) VALUES (NULL);
    END IF;
END $$;

SELECT jobs.create_job_partitions(clock_timestamp(), 4);

REVOKE ALL ON FUNCTION jobs.create_job_partitions(timestamptz, integer), jobs.prunable(),
                       jobs.prune_targets(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.create_job_partitions(timestamptz, integer), jobs.prunable()
    TO jobs_operator;
GRANT SELECT ON jobs.job_partitions TO jobs_monitor, jobs_operator;
