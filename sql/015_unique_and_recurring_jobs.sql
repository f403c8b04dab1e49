-- pgjobs 15: unique jobs and recurring jobs.
--
-- * Unique jobs. jobs.publish(..., i_unique_key, i_unique_while) queues nothing while a job of
--   the same task and key holds the key, and returns that job's id instead. A job holds its key
--   while it is pending (ready, scheduled or waiting for a retry) and, with i_unique_while =>
--   'pending_or_running', while it runs too. Who holds a key is one row of jobs.unique_claim
--   (task, unique_key primary key): a publisher takes it with INSERT ... ON CONFLICT DO NOTHING,
--   so concurrent publishers of one key queue one job. A claim is not released when its job
--   starts or finishes (that would cost every consume and ack); a publisher that meets a claim
--   checks its job, and takes the claim over when that job no longer holds the key. The
--   maintenance deletes such stale claims. A job retried after another job took its key over
--   keeps running: keys prevent duplicates being published, not a retry.
-- * Publishes that found their key held are counted per task in jobs.dedup_count, sharded like
--   jobs.pending_count; only keyed publishes pay for it.
-- * Recurring jobs. jobs.schedules holds named schedules: a standard 5-field cron expression in
--   a time zone, the task and arguments to publish, and what to do with slots missed while
--   nobody enqueued (skip, run_once, run_all). jobs.enqueue_schedules, run by the maintenance,
--   publishes each due slot once: the schedule's row is locked and its last slot advanced in
--   the transaction that publishes, and each job carries the unique key '<name>@<slot>'.
-- * Cron as cron does it: fields minute, hour, day of month, month (1-12 or JAN-DEC), day of
--   week (0-7 or SUN-SAT, 0 and 7 Sunday) with *, lists, ranges and steps, and @yearly,
--   @annually, @monthly, @weekly, @daily, @midnight, @hourly. When both day fields are
--   restricted (neither starts with *) a day matches either; otherwise both. Daylight saving:
--   a schedule with a fixed hour runs a slot that falls in a skipped hour once, when the clock
--   jumps, and a slot in a repeated hour once, the first time; a schedule whose hour field
--   starts with * runs at each real time that matches (no slot in a skipped hour, both in a
--   repeated one).

ALTER TABLE jobs.job_queue
    ADD COLUMN unique_key text,
    ADD COLUMN unique_while text,
    ADD CONSTRAINT job_queue_unique_while_known
        CHECK (unique_while IN ('pending', 'pending_or_running')),
    ADD CONSTRAINT job_queue_unique_key_with_while
        CHECK ((unique_key IS NULL) = (unique_while IS NULL));

CREATE TABLE jobs.unique_claim (
    task varchar NOT NULL,
    unique_key text NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (task, unique_key)
);
CREATE INDEX unique_claim_job_id ON jobs.unique_claim (job_id);
COMMENT ON TABLE jobs.unique_claim IS
    'Which job holds each (task, unique_key); stale when that job no longer holds it (see migration 15).';

CREATE TABLE jobs.dedup_count (
    task varchar NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (task, shard)
);
COMMENT ON TABLE jobs.dedup_count IS
    'Publishes that queued nothing because their unique key was held, per task, in shards.';

-- Whether job i_job_id holds i_key of i_task now.
CREATE FUNCTION jobs.holds_key(i_job_id bigint, i_task varchar, i_key text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN EXISTS (SELECT 1 FROM jobs.job_queue q
               WHERE q.job_id = i_job_id AND q.task = i_task AND q.unique_key = i_key
                 AND (q.status = 'pending' OR q.unique_while = 'pending_or_running'));
COMMENT ON FUNCTION jobs.holds_key(bigint, varchar, text) IS
    'Internal: whether job i_job_id is queued with i_key for i_task, pending (or running, when published with unique_while pending_or_running).';

-- Takes i_key of i_task for the job to be queued as i_job_id; returns NULL when taken, or the
-- id of the job that holds it.
CREATE FUNCTION jobs.claim_key(i_task varchar, i_key text, i_job_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_holder bigint;
BEGIN
    LOOP
        INSERT INTO jobs.unique_claim (task, unique_key, job_id)
        VALUES (i_task, i_key, i_job_id)
        ON CONFLICT (task, unique_key) DO NOTHING;
        IF FOUND THEN
            RETURN NULL;
        END IF;
        -- Held, or stale: decide under the claim's lock, so that of two publishers meeting a
        -- stale claim one takes it over and the other sees the first's job.
        SELECT c.job_id INTO v_holder FROM jobs.unique_claim c
        WHERE c.task = i_task AND c.unique_key = i_key FOR UPDATE;
        CONTINUE WHEN NOT FOUND;  -- deleted meanwhile as stale: insert again
        IF jobs.holds_key(v_holder, i_task, i_key) THEN
            INSERT INTO jobs.dedup_count AS d (task, shard, n)
            VALUES (i_task, pg_backend_pid() % 16, 1)
            ON CONFLICT (task, shard) DO UPDATE SET n = d.n + 1;
            RETURN v_holder;
        END IF;
        UPDATE jobs.unique_claim c SET job_id = i_job_id
        WHERE c.task = i_task AND c.unique_key = i_key;
        RETURN NULL;
    END LOOP;
END $$;
COMMENT ON FUNCTION jobs.claim_key(varchar, text, bigint) IS
    'Internal: takes (i_task, i_key) for job i_job_id, or returns the id of the job that holds it (and counts a deduplicated publish).';

CREATE FUNCTION jobs.check_unique(i_what text, i_key text, i_while text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF i_key IS NOT NULL AND (i_key = '' OR char_length(i_key) > 1000) THEN
        RAISE EXCEPTION '%: unique_key must be 1 to 1000 characters, got %', i_what,
            CASE WHEN i_key = '' THEN 'an empty string'
                 ELSE char_length(i_key) || ' characters' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF i_while IS NULL OR i_while NOT IN ('pending', 'pending_or_running') THEN
        RAISE EXCEPTION '%: unique_while must be pending or pending_or_running, got %', i_what,
            coalesce(quote_literal(i_while), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION jobs.check_unique(text, text, text) IS
    'Internal: raises 22023 naming i_what for a bad unique key or unique_while.';

DROP FUNCTION jobs.publish(varchar, jsonb, timestamptz, numeric, integer, integer);
CREATE FUNCTION jobs.publish(i_task varchar, i_arguments jsonb DEFAULT NULL,
                             i_scheduled_at timestamptz DEFAULT NULL,
                             i_timeout numeric DEFAULT NULL, i_priority integer DEFAULT NULL,
                             i_max_retries integer DEFAULT NULL,
                             i_unique_key text DEFAULT NULL,
                             i_unique_while text DEFAULT 'pending',
                             OUT job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_holder bigint;
BEGIN
    PERFORM jobs.check_job('jobs.publish', i_task, i_arguments, i_scheduled_at, i_timeout,
                           i_max_retries);
    IF i_unique_key IS NULL THEN
        INSERT INTO jobs.job_queue (task, arguments, priority, max_retries, timeout,
                                    published_at, scheduled_at)
        VALUES (i_task, i_arguments, coalesce(i_priority, 0), coalesce(i_max_retries, 3),
                coalesce(i_timeout, 60), v_now, coalesce(i_scheduled_at, v_now))
        RETURNING job_queue.job_id INTO job_id;
    ELSE
        PERFORM jobs.check_unique('jobs.publish', i_unique_key, i_unique_while);
        job_id := nextval('jobs.job_id_seq');
        v_holder := jobs.claim_key(i_task, i_unique_key, job_id);
        IF v_holder IS NOT NULL THEN
            job_id := v_holder;
            RETURN;
        END IF;
        INSERT INTO jobs.job_queue (job_id, task, arguments, priority, max_retries, timeout,
                                    published_at, scheduled_at, unique_key, unique_while)
        VALUES (job_id, i_task, i_arguments, coalesce(i_priority, 0),
                coalesce(i_max_retries, 3), coalesce(i_timeout, 60), v_now,
                coalesce(i_scheduled_at, v_now), i_unique_key, i_unique_while);
    END IF;
    PERFORM pg_notify('jobs', i_task);
END $$;
COMMENT ON FUNCTION jobs.publish(varchar, jsonb, timestamptz, numeric, integer, integer, text,
                                 text) IS
    'Queues one job and returns its job_id; NOTIFY jobs with the task. i_task: 1 to 200 characters, not blank. i_arguments: at most 1 MiB as jsonb. i_scheduled_at: when it becomes runnable (default now; finite). i_timeout: seconds, 0.01 to 99999.99 (default 60). i_priority: greater runs first (default 0). i_max_retries: >= 0 (default 3; at most max_retries + 1 runs). i_unique_key (1 to 1000 characters): while a job of the same task holds that key, queue nothing and return that job''s id; a job holds its key while pending (i_unique_while pending, the default) or while pending or running (pending_or_running). Raises 22023 naming the bad argument; a refused call queues nothing. Role: jobs_publisher.';

-- Keys for publish_bulk come in an array beside the jobs: a new attribute of jobs.bulk_job would
-- break every caller that builds rows of the old width.
CREATE FUNCTION jobs.publish_bulk(i_jobs jobs.bulk_job[], i_unique_keys text[],
                                  i_unique_while text DEFAULT 'pending')
RETURNS TABLE (job_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bad bigint;
    j record;
BEGIN
    IF i_unique_keys IS NULL OR cardinality(i_unique_keys) <> cardinality(i_jobs) THEN
        RAISE EXCEPTION 'jobs.publish_bulk: i_unique_keys must have one element per job (%), got %',
            cardinality(i_jobs), coalesce(cardinality(i_unique_keys)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Every element is checked before any is queued, as publish_bulk(i_jobs) does.
    SELECT min(k.ord) INTO v_bad FROM unnest(i_unique_keys) WITH ORDINALITY AS k(key, ord)
    WHERE k.key = '' OR char_length(k.key) > 1000;
    IF v_bad IS NOT NULL THEN
        PERFORM jobs.check_unique(format('jobs.publish_bulk: element %s', v_bad),
                                  i_unique_keys[v_bad], i_unique_while);
    END IF;
    PERFORM jobs.check_unique('jobs.publish_bulk', NULL, i_unique_while);
    SELECT min(e.ord) INTO v_bad
    FROM unnest(i_jobs) WITH ORDINALITY AS e(task, arguments, scheduled_at, timeout, priority,
                                             max_retries, ord)
    WHERE e.task IS NULL OR btrim(e.task, E' \t\n\r\f\v') = '' OR char_length(e.task) > 200
       OR pg_column_size(e.arguments) > 1048576 OR NOT isfinite(e.scheduled_at)
       OR e.timeout <= 0 OR e.timeout > 99999 OR e.max_retries < 0;
    IF v_bad IS NOT NULL THEN
        PERFORM jobs.check_job(format('jobs.publish_bulk: element %s', v_bad), e.task,
                               e.arguments, e.scheduled_at::timestamptz, e.timeout,
                               e.max_retries)
        FROM unnest(i_jobs[v_bad:v_bad]) AS e;
    END IF;
    FOR j IN SELECT e.*, i_unique_keys[e.ord] AS key
             FROM unnest(i_jobs) WITH ORDINALITY AS e(task, arguments, scheduled_at, timeout,
                                                      priority, max_retries, ord)
             ORDER BY e.ord LOOP
        job_id := jobs.publish(j.task, j.arguments, j.scheduled_at::timestamptz,
                               j.timeout, j.priority, j.max_retries, j.key, i_unique_while);
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION jobs.publish_bulk(jobs.bulk_job[], text[], text) IS
    'As publish_bulk(i_jobs), with a unique key per job (NULL for none) in i_unique_keys and one i_unique_while for all: returns one job_id per element, in order, the id of the job that holds the key where one does (see jobs.publish). Raises 22023 for arrays of different lengths or a bad element, naming it; a refused call queues nothing. Role: jobs_publisher.';

CREATE VIEW jobs.stats_deduplicated AS
SELECT d.task, sum(d.n)::bigint AS deduplicated_total
FROM jobs.dedup_count d GROUP BY d.task;
COMMENT ON VIEW jobs.stats_deduplicated IS
    'Publishes that queued nothing because their unique key was held, per task, ever. Role: jobs_monitor.';

-- Deletes claims whose job no longer holds them; returns how many.
CREATE FUNCTION jobs.forget_stale_claims() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n bigint;
BEGIN
    WITH gone AS (
        DELETE FROM jobs.unique_claim c
        WHERE NOT jobs.holds_key(c.job_id, c.task, c.unique_key)
        RETURNING 1
    )
    SELECT count(*) INTO v_n FROM gone;
    RETURN v_n;
END $$;
COMMENT ON FUNCTION jobs.forget_stale_claims() IS
    'Internal: deletes the unique-key claims of jobs that no longer hold their key; run by jobs.maintain.';

-- Cron ------------------------------------------------------------------------------------------

-- The values of one cron field: i_text as a sorted array of ints from i_min to i_max, names in
-- i_names (index 0 = i_min) allowed. Raises 22023 naming i_what.
CREATE FUNCTION jobs.cron_field(i_what text, i_text text, i_min integer, i_max integer,
                                i_names text[] DEFAULT NULL)
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_out integer[] := '{}';
    v_part text;
    v_range text;
    v_step integer;
    v_lo integer;
    v_hi integer;
    v_bounds text[];
    v_name integer;
BEGIN
    IF i_text IS NULL OR i_text = '' THEN
        RAISE EXCEPTION '%: empty field', i_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH v_part IN ARRAY string_to_array(i_text, ',') LOOP
        IF v_part !~ '^(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?$' THEN
            RAISE EXCEPTION '%: % is not a value, range or step (such as 5, 1-5, */15 or MON-FRI)',
                i_what, quote_literal(v_part) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_range := split_part(v_part, '/', 1);
        v_step := CASE WHEN strpos(v_part, '/') > 0
                       THEN least(split_part(v_part, '/', 2)::numeric, 1000)::integer ELSE 1 END;
        IF v_step < 1 THEN
            RAISE EXCEPTION '%: step must be at least 1 in %', i_what, quote_literal(v_part)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_range = '*' THEN
            v_lo := i_min;
            v_hi := i_max;
        ELSE
            v_bounds := string_to_array(v_range, '-');
            FOR i IN 1 .. cardinality(v_bounds) LOOP
                IF v_bounds[i] ~ '^[0-9]+$' THEN
                    v_name := least(v_bounds[i]::numeric, 100000)::integer;
                ELSE
                    v_name := array_position(i_names, upper(v_bounds[i]));
                    IF v_name IS NULL THEN
                        RAISE EXCEPTION '%: unknown name % in %', i_what,
                            quote_literal(v_bounds[i]), quote_literal(v_part)
                            USING ERRCODE = 'invalid_parameter_value';
                    END IF;
                    v_name := v_name - 1 + i_min;
                END IF;
                IF v_name < i_min OR v_name > i_max THEN
                    RAISE EXCEPTION '%: % is out of range %-% in %', i_what, v_bounds[i],
                        i_min, i_max, quote_literal(v_part)
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                IF i = 1 THEN v_lo := v_name; END IF;
                v_hi := v_name;
            END LOOP;
            IF strpos(v_part, '/') > 0 AND cardinality(v_bounds) = 1 THEN
                v_hi := i_max;  -- 5/15: from 5 to the end, every 15
            END IF;
            IF v_lo > v_hi THEN
                RAISE EXCEPTION '%: range % runs backwards', i_what, quote_literal(v_part)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;
        v_out := v_out || ARRAY(SELECT generate_series(v_lo, v_hi, v_step));
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT v FROM unnest(v_out) AS v ORDER BY v);
END $$;
COMMENT ON FUNCTION jobs.cron_field(text, text, integer, integer, text[]) IS
    'Internal: the sorted values of one cron field; raises 22023 naming i_what.';

CREATE TYPE jobs.cron_spec AS (
    minutes integer[],
    hours integer[],
    days integer[],
    months integer[],
    weekdays integer[],   -- 0 = Sunday (7 is read as 0)
    days_star boolean,    -- the day-of-month field starts with *
    weekdays_star boolean,
    hours_star boolean
);

CREATE FUNCTION jobs.cron_parse(i_cron text) RETURNS jobs.cron_spec
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cron text := btrim(lower(coalesce(i_cron, '')));
    v_fields text[];
    v_spec jobs.cron_spec;
BEGIN
    v_cron := CASE v_cron
        WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
        WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@hourly' THEN '0 * * * *' ELSE v_cron END;
    v_fields := regexp_split_to_array(v_cron, '\s+');
    IF v_cron = '' OR cardinality(v_fields) <> 5 THEN
        RAISE EXCEPTION 'cron % must have 5 fields (minute hour day-of-month month day-of-week) or be one of @yearly, @monthly, @weekly, @daily, @hourly',
            coalesce(quote_literal(i_cron), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_spec.minutes := jobs.cron_field('minute field', v_fields[1], 0, 59);
    v_spec.hours := jobs.cron_field('hour field', v_fields[2], 0, 23);
    v_spec.days := jobs.cron_field('day-of-month field', v_fields[3], 1, 31);
    v_spec.months := jobs.cron_field('month field', v_fields[4], 1, 12,
        ARRAY['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV',
              'DEC']);
    v_spec.weekdays := ARRAY(SELECT DISTINCT d % 7 FROM unnest(jobs.cron_field(
        'day-of-week field', v_fields[5], 0, 7,
        ARRAY['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'])) AS d ORDER BY 1);
    v_spec.days_star := left(v_fields[3], 1) = '*';
    v_spec.weekdays_star := left(v_fields[5], 1) = '*';
    v_spec.hours_star := left(v_fields[2], 1) = '*';
    RETURN v_spec;
END $$;
COMMENT ON FUNCTION jobs.cron_parse(text) IS
    'Parses a 5-field cron expression (or @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly); raises 22023 saying which field is wrong and why. Pure.';

-- The UTC offset of time zone i_zone at instant i_at.
CREATE FUNCTION jobs.zone_offset(i_at timestamptz, i_zone text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN (i_at AT TIME ZONE i_zone) - (i_at AT TIME ZONE 'UTC');

-- The instants at which local time i_local occurs in i_zone, earliest first: one, two (in a
-- repeated hour) or none (in a skipped hour).
CREATE FUNCTION jobs.local_instants(i_local timestamp, i_zone text) RETURNS timestamptz[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_guess timestamptz := i_local AT TIME ZONE i_zone;
    v_out timestamptz[] := '{}';
    v_candidate timestamptz;
BEGIN
    FOREACH v_candidate IN ARRAY ARRAY[
            (i_local AT TIME ZONE 'UTC') - jobs.zone_offset(v_guess - interval '6 hours', i_zone),
            (i_local AT TIME ZONE 'UTC') - jobs.zone_offset(v_guess + interval '6 hours', i_zone)]
    LOOP
        IF (v_candidate AT TIME ZONE i_zone) = i_local AND NOT v_candidate = ANY (v_out) THEN
            v_out := v_out || v_candidate;
        END IF;
    END LOOP;
    RETURN ARRAY(SELECT t FROM unnest(v_out) AS t ORDER BY t);
END $$;

-- When the clock of i_zone jumps over local time i_local: the instant the skipped hour ends.
CREATE FUNCTION jobs.gap_end(i_local timestamp, i_zone text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lo timestamptz := (i_local AT TIME ZONE 'UTC')
                        - jobs.zone_offset((i_local AT TIME ZONE i_zone) + interval '6 hours',
                                           i_zone);
    v_hi timestamptz := (i_local AT TIME ZONE 'UTC')
                        - jobs.zone_offset((i_local AT TIME ZONE i_zone) - interval '6 hours',
                                           i_zone);
    v_mid timestamptz;
    v_before interval := jobs.zone_offset(v_lo, i_zone);
BEGIN
    -- The offset changes between v_lo and v_hi; find where, to the second.
    WHILE v_hi - v_lo > interval '1 second' LOOP
        v_mid := v_lo + (v_hi - v_lo) / 2;
        IF jobs.zone_offset(v_mid, i_zone) = v_before THEN
            v_lo := v_mid;
        ELSE
            v_hi := v_mid;
        END IF;
    END LOOP;
    RETURN date_trunc('second', v_hi);
END $$;

CREATE FUNCTION jobs.cron_next(i_cron text, i_zone text, i_after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_spec jobs.cron_spec := jobs.cron_parse(i_cron);
    v_day date;
    v_last date;
    v_best timestamptz;
    v_dom_ok boolean;
    v_dow_ok boolean;
    v_instants timestamptz[];
    v_at timestamptz;
    v_local timestamp;
    -- No clock moves by more than this in a jump: local times further before i_after's cannot
    -- come after it.
    v_from timestamp;
    h integer;
    m integer;
BEGIN
    BEGIN
        PERFORM i_after AT TIME ZONE i_zone;
        IF i_zone IS NULL THEN
            RAISE invalid_parameter_value;
        END IF;
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'time zone % is not known (see pg_timezone_names, e.g. Europe/Berlin or UTC)',
            coalesce(quote_literal(i_zone), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END;
    IF i_after IS NULL OR NOT isfinite(i_after) THEN
        RAISE EXCEPTION 'cron_next: i_after must be a finite time, got %',
            coalesce(i_after::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_day := (i_after AT TIME ZONE i_zone)::date - 1;
    v_last := v_day + 366 * 5;
    v_from := (i_after AT TIME ZONE i_zone) - interval '3 hours';
    WHILE v_day <= v_last LOOP
        v_dom_ok := extract(day FROM v_day)::integer = ANY (v_spec.days);
        v_dow_ok := extract(dow FROM v_day)::integer = ANY (v_spec.weekdays);
        -- Both day fields restricted: either matches. Otherwise both must (a * matches all).
        v_dom_ok := CASE WHEN v_spec.days_star OR v_spec.weekdays_star
                         THEN v_dom_ok AND v_dow_ok ELSE v_dom_ok OR v_dow_ok END;
        IF v_dom_ok AND extract(month FROM v_day)::integer = ANY (v_spec.months) THEN
            <<hours>>
            FOREACH h IN ARRAY v_spec.hours LOOP
                FOREACH m IN ARRAY v_spec.minutes LOOP
                    v_local := v_day + make_time(h, m, 0);
                    CONTINUE WHEN v_local < v_from;
                    EXIT hours WHEN v_best IS NOT NULL
                                    AND v_local > (v_best AT TIME ZONE i_zone) + interval '3 hours';
                    v_instants := jobs.local_instants(v_local, i_zone);
                    IF cardinality(v_instants) = 0 THEN
                        -- Skipped by the clock: a fixed hour runs when the clock jumps.
                        CONTINUE WHEN v_spec.hours_star;
                        v_instants := ARRAY[jobs.gap_end(v_local, i_zone)];
                    ELSIF NOT v_spec.hours_star THEN
                        v_instants := v_instants[1:1];  -- a repeated hour: the first time
                    END IF;
                    FOREACH v_at IN ARRAY v_instants LOOP
                        IF v_at > i_after AND (v_best IS NULL OR v_at < v_best) THEN
                            v_best := v_at;
                        END IF;
                    END LOOP;
                END LOOP;
            END LOOP;
            -- Days run in local order: once a day from i_after's on has a slot, no later day
            -- has an earlier one (within a day, a repeated hour may reorder; all are compared).
            EXIT WHEN v_best IS NOT NULL AND v_day >= (i_after AT TIME ZONE i_zone)::date;
        END IF;
        v_day := v_day + 1;
    END LOOP;
    RETURN v_best;
END $$;
COMMENT ON FUNCTION jobs.cron_next(text, text, timestamptz) IS
    'The first slot of cron expression i_cron in time zone i_zone after i_after (NULL when none in 5 years); daylight saving as cron does it (see migration 15). Raises 22023 for a bad expression or an unknown zone.';

-- Schedules ------------------------------------------------------------------------------------

CREATE TABLE jobs.schedules (
    name text PRIMARY KEY,
    cron text NOT NULL,
    timezone text NOT NULL,
    task varchar NOT NULL,
    arguments jsonb,
    missed text NOT NULL
        CONSTRAINT schedules_missed_known CHECK (missed IN ('skip', 'run_once', 'run_all')),
    -- Slots up to last_slot are dealt with; next_slot is the first after it.
    last_slot timestamptz NOT NULL,
    next_slot timestamptz,
    last_enqueued_at timestamptz,
    last_enqueued_job_id bigint,
    updated_at timestamptz NOT NULL
);
CREATE INDEX schedules_next_slot ON jobs.schedules (next_slot);
COMMENT ON TABLE jobs.schedules IS
    'Recurring jobs: set with jobs.schedule (and from the worker''s YAML), enqueued by jobs.enqueue_schedules.';

CREATE FUNCTION jobs.schedule(i_name text, i_cron text, i_task varchar,
                              i_arguments jsonb DEFAULT NULL, i_timezone text DEFAULT 'UTC',
                              i_missed text DEFAULT 'run_once')
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_next timestamptz;
BEGIN
    IF i_name IS NULL OR btrim(i_name) = '' OR char_length(i_name) > 200 THEN
        RAISE EXCEPTION 'jobs.schedule: i_name must be 1 to 200 characters, not blank, got %',
            coalesce(quote_literal(i_name), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF i_missed IS NULL OR i_missed NOT IN ('skip', 'run_once', 'run_all') THEN
        RAISE EXCEPTION 'jobs.schedule: i_missed must be skip, run_once or run_all, got %',
            coalesce(quote_literal(i_missed), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM jobs.check_job('jobs.schedule', i_task, i_arguments, v_now, NULL, NULL);
    BEGIN
        v_next := jobs.cron_next(i_cron, i_timezone, v_now);
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'jobs.schedule: %', SQLERRM USING ERRCODE = 'invalid_parameter_value';
    END;
    IF v_next IS NULL THEN
        RAISE EXCEPTION 'jobs.schedule: cron % never matches (in the next 5 years)',
            quote_literal(i_cron) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A schedule set again as it was keeps its place; a changed one starts from now.
    INSERT INTO jobs.schedules AS s (name, cron, timezone, task, arguments, missed, last_slot,
                                     next_slot, updated_at)
    VALUES (i_name, i_cron, i_timezone, i_task, i_arguments, i_missed, v_now, v_next, v_now)
    ON CONFLICT (name) DO UPDATE
    SET cron = excluded.cron, timezone = excluded.timezone, task = excluded.task,
        arguments = excluded.arguments, missed = excluded.missed,
        last_slot = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                         THEN s.last_slot ELSE excluded.last_slot END,
        next_slot = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                         THEN s.next_slot ELSE excluded.next_slot END,
        updated_at = CASE WHEN (s.cron, s.timezone, s.task, s.arguments, s.missed)
                               IS NOT DISTINCT FROM (excluded.cron, excluded.timezone,
                                                     excluded.task, excluded.arguments,
                                                     excluded.missed)
                          THEN s.updated_at ELSE excluded.updated_at END
    RETURNING s.next_slot INTO v_next;
    RETURN v_next;
END $$;
COMMENT ON FUNCTION jobs.schedule(text, text, varchar, jsonb, text, text) IS
    'Creates or changes the recurring job i_name: publish i_task with i_arguments at each slot of cron expression i_cron (5 fields or @daily and the like) in time zone i_timezone (default UTC); i_missed says what to do with slots missed while nothing enqueued (skip; run_once, the default: one job for all of them; run_all: one job each, at most 100). Returns the next slot. Setting a schedule again as it is changes nothing; a changed cron or time zone starts from now. Raises 22023 naming the bad argument. Role: jobs_operator, jobs_consumer (the worker sets its YAML''s schedules).';

CREATE FUNCTION jobs.unschedule(i_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM jobs.schedules WHERE name = i_name;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION jobs.unschedule(text) IS
    'Deletes the recurring job i_name (its queued jobs stay); true when it existed. Role: jobs_operator.';

-- Publishes the due slots of every schedule; returns how many jobs it queued.
CREATE FUNCTION jobs.enqueue_schedules(i_grace interval DEFAULT '5 minutes',
                                       i_run_all_limit integer DEFAULT 100)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_total bigint := 0;
    v_slots timestamptz[];
    v_slot timestamptz;
    v_next timestamptz;
    v_id bigint;
    s record;
BEGIN
    -- Locked, so that concurrent callers (two maintenance rounds, pg_cron) never both publish a
    -- slot: the slot advances in the transaction that publishes it.
    FOR s IN SELECT * FROM jobs.schedules x WHERE x.next_slot <= v_now
             ORDER BY x.next_slot FOR UPDATE SKIP LOCKED LOOP
        v_slots := '{}';
        v_next := s.next_slot;
        WHILE v_next IS NOT NULL AND v_next <= v_now AND cardinality(v_slots) <= i_run_all_limit
        LOOP
            v_slots := v_slots || v_next;
            v_next := jobs.cron_next(s.cron, s.timezone, v_next);
        END LOOP;
        -- Past the bound of run_all: the rest is skipped, up to now.
        WHILE v_next IS NOT NULL AND v_next <= v_now LOOP
            v_next := jobs.cron_next(s.cron, s.timezone, v_now);
        END LOOP;
        -- One slot due, less than i_grace ago: on time. Otherwise slots were missed, and the
        -- policy says which to publish: the latest if on time (skip), the latest whatever its
        -- age (run_once), all of them up to the bound (run_all).
        v_slots := CASE
            WHEN cardinality(v_slots) = 1 AND v_slots[1] >= v_now - i_grace THEN v_slots
            WHEN s.missed = 'run_all' THEN v_slots[1:i_run_all_limit]
            WHEN s.missed = 'run_once' THEN v_slots[cardinality(v_slots):]
            ELSE ARRAY(SELECT t FROM unnest(v_slots[cardinality(v_slots):]) t
                       WHERE t >= v_now - i_grace)
            END;
        FOREACH v_slot IN ARRAY ARRAY(SELECT t FROM unnest(v_slots) t ORDER BY t) LOOP
            v_id := jobs.publish(s.task, s.arguments, i_unique_key =>
                                 s.name || '@' || to_char(v_slot AT TIME ZONE 'UTC',
                                                          'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
            v_total := v_total + 1;
            UPDATE jobs.schedules x SET last_enqueued_at = v_now, last_enqueued_job_id = v_id
            WHERE x.name = s.name;
        END LOOP;
        UPDATE jobs.schedules x
        SET last_slot = greatest(x.last_slot, v_now), next_slot = v_next
        WHERE x.name = s.name;
    END LOOP;
    RETURN v_total;
END $$;
COMMENT ON FUNCTION jobs.enqueue_schedules(interval, integer) IS
    'Publishes each schedule''s due slots, once whatever the number of callers. One slot due less than i_grace ago is on time and published; otherwise slots were missed (nothing enqueued for a while) and the schedule''s missed policy decides: skip publishes the latest only if it is on time, run_once publishes one job for the latest, run_all one for each, at most i_run_all_limit. Each job''s unique key is ''<name>@<slot in UTC>''. Returns how many jobs it published. Run by jobs.maintain and by the maintenance worker when a slot is due. Role: jobs_consumer, jobs_operator.';

CREATE VIEW jobs.stats_schedules AS
SELECT s.name, s.task, s.cron, s.timezone, s.missed,
       date_part('epoch', s.last_enqueued_at) AS last_enqueued_seconds,
       date_part('epoch', s.next_slot) AS next_run_seconds
FROM jobs.schedules s;
COMMENT ON VIEW jobs.stats_schedules IS
    'Recurring jobs with when each last queued a job and when it next will (Unix seconds; NULL for never and none). Role: jobs_monitor.';

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
    step := 'schedules';
    n := jobs.enqueue_schedules();
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
    step := 'unique_keys';
    n := jobs.forget_stale_claims();
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION jobs.maintain(interval, integer) IS
    'One round of maintenance: reclaims expired jobs, publishes the due slots of recurring jobs, creates the day partitions of jobs.job for today and the next 3 days, prunes finished jobs past retention (at most i_prune_limit row by row; see jobs.prune), deletes workers gone for longer than i_worker_retention that hold no running job, and forgets unique keys whose jobs no longer hold them. Returns how many of each. The worker runs it on an interval (maintenance in its YAML); pg_cron may too. Role: jobs_operator, jobs_consumer.';

REVOKE ALL ON FUNCTION jobs.publish(varchar, jsonb, timestamptz, numeric, integer, integer, text,
                                   text),
                       jobs.publish_bulk(jobs.bulk_job[], text[], text),
                       jobs.holds_key(bigint, varchar, text), jobs.claim_key(varchar, text, bigint),
                       jobs.check_unique(text, text, text), jobs.forget_stale_claims(),
                       jobs.cron_field(text, text, integer, integer, text[]),
                       jobs.zone_offset(timestamptz, text), jobs.local_instants(timestamp, text),
                       jobs.gap_end(timestamp, text),
                       jobs.schedule(text, text, varchar, jsonb, text, text),
                       jobs.unschedule(text), jobs.enqueue_schedules(interval, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.publish(varchar, jsonb, timestamptz, numeric, integer, integer,
                                       text, text),
                          jobs.publish_bulk(jobs.bulk_job[], text[], text)
    TO jobs_publisher;
GRANT EXECUTE ON FUNCTION jobs.schedule(text, text, varchar, jsonb, text, text),
                          jobs.enqueue_schedules(interval, integer)
    TO jobs_operator, jobs_consumer;
GRANT EXECUTE ON FUNCTION jobs.unschedule(text) TO jobs_operator;
REVOKE ALL ON FUNCTION jobs.cron_parse(text), jobs.cron_next(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.cron_parse(text), jobs.cron_next(text, text, timestamptz),
                          jobs.zone_offset(timestamptz, text), jobs.local_instants(timestamp, text),
                          jobs.gap_end(timestamp, text)
    TO jobs_publisher, jobs_consumer, jobs_monitor, jobs_operator;
GRANT SELECT ON jobs.stats_deduplicated, jobs.stats_schedules TO jobs_monitor, jobs_operator;

CREATE FUNCTION jobs.seconds_until_next_slot() RETURNS float8
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN (SELECT date_part('epoch', min(s.next_slot) - clock_timestamp()) FROM jobs.schedules s);
COMMENT ON FUNCTION jobs.seconds_until_next_slot() IS
    'Seconds until the next slot of any recurring job (<= 0: one is due; NULL: none scheduled): when the maintenance worker calls jobs.enqueue_schedules next. Role: jobs_consumer, jobs_operator.';
REVOKE ALL ON FUNCTION jobs.seconds_until_next_slot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.seconds_until_next_slot() TO jobs_consumer, jobs_operator;
