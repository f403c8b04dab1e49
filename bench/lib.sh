# SPDX-License-Identifier: Apache-2.0
# Shared by the benchmark scripts (sourced): a throwaway cluster and what a drain needs.
# Expects to run from the repository's root.

# Starts a fresh cluster in a new temporary directory with the settings given as -c options, and
# installs the schema. Sets dir, port, dsn; stops and removes the cluster at exit.
bench_cluster() {
  dir=$(mktemp -d /tmp/pgjobs-bench-XXXXXX)
  chmod 755 "$dir"
  trap 'bench_cleanup' EXIT
  scripts/pg-cluster init "$dir/pg"
  port=$(scripts/pg-cluster start "$dir/pg" 0 "$@")
  dsn="postgresql://postgres@127.0.0.1:$port/postgres"
  build/tools/jobs-migrate/jobs-migrate "$dsn" >/dev/null
  # Each look starts from the smallest id seen before: nothing is published during a drain, so
  # the queue's smallest id only grows, and the look skips the index entries of finished jobs.
  psql_ -c "CREATE OR REPLACE PROCEDURE bench_wait_drained() LANGUAGE plpgsql AS \$\$
            DECLARE
              v_smallest bigint := 0;
            BEGIN
              LOOP
                SELECT job_id INTO v_smallest FROM jobs.job_queue WHERE job_id >= v_smallest
                ORDER BY job_id LIMIT 1;
                EXIT WHEN v_smallest IS NULL;
                COMMIT;
                PERFORM pg_sleep(0.01);
              END LOOP;
            END \$\$" >/dev/null
}

bench_pids=()
bench_cleanup() {
  for p in "${bench_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/pg-cluster stop "$dir/pg" immediate
  rm -rf "$dir"
}

psql_() {
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -tA -h 127.0.0.1 -p "$port" -U postgres \
    -d postgres -v ON_ERROR_STOP=1 "$@"
}

# An empty, checkpointed queue.
bench_reset() { psql_ -c "TRUNCATE jobs.job_queue, jobs.job, jobs.worker; CHECKPOINT" >/dev/null; }

# Publishes $2 jobs of task $1, in calls of 10,000.
bench_publish() {
  local left=$2
  while [ "$left" -gt 0 ]; do
    local n=$(( left < 10000 ? left : 10000 ))
    psql_ -c "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT ('$1', jsonb_build_object('i', i), NULL, NULL, NULL, NULL)::jobs.bulk_job FROM generate_series(1, $n) i))" >/dev/null
    left=$(( left - n ))
  done
  psql_ -c "VACUUM ANALYZE jobs.job_queue" >/dev/null
}

# Waits in one session until the queue is empty; sets `bench_end` then, and checks that $1 jobs
# finished (the check is not timed).
bench_wait_drained() {
  psql_ -c "CALL bench_wait_drained()" >/dev/null
  bench_end=$(date +%s.%N)
  local n; n=$(psql_ -c "SELECT count(*) FROM jobs.job")
  [ "$n" -eq "$1" ] || { echo "expected $1 finished jobs, found $n" >&2; exit 1; }
}

# This shared machine's speed now: seconds for a fixed Python loop (about 1.1 when idle).
bench_calibrate() { python3 -c 'import time; t=time.time(); x=0
for i in range(20000000): x+=i
print("%.2f" % (time.time()-t))'; }
