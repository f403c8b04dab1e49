#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# pgjobs across hosts: three worker "hosts", each a network namespace joined to this one by a
# veth pair in the private test subnet 10.231.N.0/24 (N = 1, 2, 3; the addresses exist only on
# those pairs), each running a worker of concurrency 8 that handles command, sql and C++ tasks.
# Hosts 1 and 2 reach the database through PgBouncer in transaction pooling (host 1 listens on a
# direct notify_dsn, host 2 polls), host 3 directly. 200,000 jobs; mid-run the link of host 3 is
# cut for longer than the jobs' timeout, then restored. A real Prometheus scrapes the workers and
# jobs-exporter with the mixin's rules. Checks: every job finished exactly once (sql side effects
# counted), the cut host's jobs expired and finished elsewhere and its late results were refused
# and counted as late, the workers' success counters add up to the database's count per task
# (less the commits whose outcome the cut host could not learn),
# and PgjobsWorkerDown fired for the cut host's instance and resolved.
# usage: tests/scale/run.sh BUILD_DIR SOURCE_DIR SCALE_WORKER_BINARY   (as root)
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
scale_worker=$3
fail() { echo "scale: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "scale: needs root for network namespaces: skipped"; exit 0; }
for tool in ip pgbouncer prometheus jsonnet psql curl; do
  command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || fail "$tool is missing"
done

jobs_total=200000
sql_jobs=15000  # and 5,000 command jobs, the rest C++
timeout_s=3 cut_s=12
work=$(mktemp -d /tmp/pgjobs-scale-XXXXXX)
chmod 755 "$work"
tag=$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in 1 2 3; do
    ip netns del "pgjobs-$tag-$n" 2>/dev/null || true
    ip link del "pj${tag}h$n" 2>/dev/null || true
  done
  "$source_dir/scripts/pg-cluster" stop "$work/pg" immediate >/dev/null 2>&1 || true
  [ -n "${KEEP_SCALE_DIR:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

# The hosts.
for n in 1 2 3; do
  ns="pgjobs-$tag-$n"
  ip netns add "$ns"
  ip link add "pj${tag}h$n" type veth peer name "pj${tag}w$n"
  ip link set "pj${tag}w$n" netns "$ns"
  ip addr add "10.231.$n.1/24" dev "pj${tag}h$n"
  ip link set "pj${tag}h$n" up
  ip netns exec "$ns" ip addr add "10.231.$n.2/24" dev "pj${tag}w$n"
  ip netns exec "$ns" ip link set "pj${tag}w$n" up
  ip netns exec "$ns" ip link set lo up
done

# The database, on loopback and the hosts' side of each link.
"$source_dir/scripts/pg-cluster" init "$work/pg"
echo "host all all 10.231.0.0/16 trust" >>"$work/pg/data/pg_hba.conf"
port=$("$source_dir/scripts/pg-cluster" start "$work/pg" 0 \
  -c listen_addresses=127.0.0.1,10.231.1.1,10.231.2.1,10.231.3.1 -c max_connections=300)
dsn="postgresql://postgres@127.0.0.1:$port/postgres"
"$build_dir/tools/jobs-migrate/jobs-migrate" "$dsn" >/dev/null
psql_() { psql -X -q -tA -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_ -c "CREATE TABLE scale_sink (i int NOT NULL)"

# PgBouncer for hosts 1 and 2.
bouncer_port=$("$source_dir/scripts/pg-cluster" free-port)
mkdir -p "$work/bouncer"
echo '"postgres" ""' >"$work/bouncer/users.txt"
cat >"$work/bouncer/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$port
[pgbouncer]
listen_addr = 10.231.1.1,10.231.2.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/bouncer/users.txt
pool_mode = transaction
default_pool_size = 12
max_client_conn = 200
INI
/usr/sbin/pgbouncer -u postgres "$work/bouncer/pgbouncer.ini" >"$work/bouncer/log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "process up" "$work/bouncer/log" && break; sleep 0.1; done
grep -q "process up" "$work/bouncer/log" || fail "pgbouncer: $(cat "$work/bouncer/log")"

# The workers.
for n in 1 2 3; do
  case $n in
    1) database="{dsn: \"postgresql://postgres@10.231.1.1:$bouncer_port/postgres\", pooling: transaction, notify_dsn: \"postgresql://postgres@10.231.1.1:$port/postgres\"}" ;;
    2) database="{dsn: \"postgresql://postgres@10.231.2.1:$bouncer_port/postgres\", pooling: transaction}" ;;
    3) database="{dsn: \"postgresql://postgres@10.231.3.1:$port/postgres\"}" ;;
  esac
  cat >"$work/worker$n.yaml" <<YAML
database: $database
worker: {name: host$n, concurrency: 8, poll_interval: 200ms, heartbeat_interval: 1s}
maintenance: {interval: 1s, takeover: 2s}
metrics: {listen: "10.231.$n.2:9466"}
tasks:
  scale.cmd: {command: ["/bin/true"]}
  scale.sql: {sql: "INSERT INTO scale_sink VALUES ((\$1::jsonb->>'i')::int)"}
YAML
  ip netns exec "pgjobs-$tag-$n" "$scale_worker" "$work/worker$n.yaml" >"$work/worker$n.log" 2>&1 &
  pids+=($!)
done

# jobs-exporter and Prometheus, with the mixin's rules: workers grouped per instance, so that
# one down host is a whole pool, and a short `for` to fit the test.
exporter_port=$("$source_dir/scripts/pg-cluster" free-port)
PGJOBS_DSN=$dsn "$build_dir/exporter/jobs-exporter" "--web.listen-address=127.0.0.1:$exporter_port" \
  >"$work/exporter.log" 2>&1 &
pids+=($!)
jsonnet -J "$source_dir" -S -e "std.manifestYamlDoc(((import 'mixin/mixin.libsonnet') + {_config+:: {workerGroupLabels: ['job', 'instance'], workerDownFor: '2s'}}).prometheusAlerts)" \
  >"$work/rules.yml"
prom_port=$("$source_dir/scripts/pg-cluster" free-port)
cat >"$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}
rule_files: [rules.yml]
scrape_configs:
  - job_name: pgjobs-workers
    static_configs: [{targets: ["10.231.1.2:9466", "10.231.2.2:9466", "10.231.3.2:9466"]}]
  - job_name: pgjobs-exporter
    static_configs: [{targets: ["127.0.0.1:$exporter_port"]}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)

for n in 1 2 3; do
  for _ in $(seq 100); do grep -q "msg=registered" "$work/worker$n.log" && break; sleep 0.1; done
  grep -q "msg=registered" "$work/worker$n.log" || fail "worker $n: $(cat "$work/worker$n.log")"
done
targets_up() {
  curl -fsS "http://127.0.0.1:$prom_port/api/v1/query?query=count(up==1)" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null ||
    echo 0
}
for _ in $(seq 100); do [ "$(targets_up)" = 4 ] && break; sleep 0.2; done
[ "$(targets_up)" = 4 ] || fail "Prometheus does not see the 3 workers and the exporter up: $(targets_up)"
echo "scale: 3 hosts, PgBouncer, exporter and Prometheus up after $(elapsed) s"

# 200,000 jobs, the kinds interleaved.
psql_ -c "SELECT count(*) FROM jobs.publish_bulk(ARRAY(
  SELECT (CASE WHEN i % 40 = 0 THEN 'scale.cmd' WHEN i % 40 IN (1, 2, 3) THEN 'scale.sql' ELSE 'scale.cpp' END,
          jsonb_build_object('i', i), NULL, $timeout_s, NULL, 5)::jobs.bulk_job
  FROM generate_series(1, $jobs_total) i))" >/dev/null
echo "scale: published $jobs_total jobs at $(elapsed) s"

finished() { psql_ -c "SELECT count(*) FROM jobs.job"; }
for _ in $(seq 600); do [ "$(finished)" -ge $(( jobs_total / 5 )) ] && break; sleep 0.1; done
alerts() { curl -fsS "http://127.0.0.1:$prom_port/api/v1/alerts"; }
firing_for_host3() {
  alerts | python3 -c 'import json,sys
a=json.load(sys.stdin)["data"]["alerts"]
print(sum(1 for x in a if x["labels"]["alertname"]=="PgjobsWorkerDown" and x["state"]=="firing" and x["labels"].get("instance")=="10.231.3.2:9466"))'
}
# Cut while host 3 holds running jobs (it takes a smaller share than the pooled hosts, and
# between two batches it may hold none), so that it has results to report late.
host3_running() {
  psql_ -c "SELECT count(*) FROM jobs.job_queue q JOIN jobs.worker w USING (worker_id)
            WHERE q.status = 'running' AND w.name = 'host3'"
}
for _ in $(seq 200); do [ "$(host3_running)" -gt 0 ] && break; sleep 0.05; done
ip link set "pj${tag}h3" down
cut_at=$(finished)
echo "scale: cut host 3's link at $(elapsed) s, $cut_at jobs finished"
fired=0
for _ in $(seq $(( cut_s * 5 ))); do
  [ "$(firing_for_host3)" -ge 1 ] && fired=1
  sleep 0.2
done
ip link set "pj${tag}h3" up
echo "scale: restored host 3's link at $(elapsed) s, $(finished) jobs finished"
[ "$fired" = 1 ] || fail "PgjobsWorkerDown did not fire for instance 10.231.3.2:9466: $(alerts)"

for _ in $(seq 1500); do [ "$(finished)" -ge "$jobs_total" ] && break; sleep 0.1; done
[ "$(finished)" -eq "$jobs_total" ] || fail "$(finished) of $jobs_total jobs finished after $(elapsed) s"
echo "scale: all $jobs_total jobs finished at $(elapsed) s"
resolved=0
for _ in $(seq 100); do [ "$(firing_for_host3)" = 0 ] && { resolved=1; break; }; sleep 0.2; done
[ "$resolved" = 1 ] || fail "PgjobsWorkerDown did not resolve: $(alerts)"

# Exactly once, nothing lost.
[ "$(psql_ -c "SELECT count(*) FROM jobs.job WHERE status <> 'success'")" = 0 ] ||
  fail "jobs did not succeed: $(psql_ -c "SELECT task, status, count(*) FROM jobs.job WHERE status <> 'success' GROUP BY 1, 2")"
[ "$(psql_ -c "SELECT count(*) || ' ' || count(DISTINCT i) FROM scale_sink")" = "$sql_jobs $sql_jobs" ] ||
  fail "sql side effects: $(psql_ -c "SELECT count(*) || ' rows, ' || count(DISTINCT i) || ' distinct' FROM scale_sink"), expected $sql_jobs once each"
reclaimed=$(psql_ -c "SELECT count(*) FROM jobs.job WHERE tracebacks::text LIKE '%timeout: attempt%'")
[ "$reclaimed" -gt 0 ] || fail "no job of the cut host expired and was retried elsewhere"

# The cut host's completer learns that its link is back when its blocked call returns (TCP
# retransmits back off) or reaches call_timeout (30 s) and reconnects; its results are refused.
late3=0
for _ in $(seq 90); do
  late3=$(curl -fsS http://10.231.3.2:9466/metrics | awk '/^pgjobs_worker_late_results_total/ {s += $NF} END {printf "%d\n", s}')
  [ "$late3" -gt 0 ] && break
  sleep 0.5
done
[ "$late3" -gt 0 ] || fail "the cut host reported no late results: $(tail -n 5 "$work/worker3.log")"
# The workers' counters against the database.
metric_sum() {  # $1 = metric with labels, as a regex; sums it over the three workers
  for n in 1 2 3; do curl -fsS "http://10.231.$n.2:9466/metrics"; done |
    awk -v re="^$1 " '$0 ~ re {s += $NF} END {printf "%d\n", s}'
}
for task in scale.cpp scale.sql scale.cmd; do
  db=$(psql_ -c "SELECT count(*) FROM jobs.job WHERE task = '$task' AND status = 'success'")
  workers=$(metric_sum "pgjobs_worker_jobs_total\\{outcome=\"success\",task=\"$task\"\\}")
  # A job whose commit was in flight when the link was cut may have committed: the cut host
  # cannot know, reports it late and never replays it. So the workers count at most the
  # database's successes, and at most the cut host's late results fewer.
  late_task=$(curl -fsS http://10.231.3.2:9466/metrics |
    awk -v t="task=\"$task\"" '/^pgjobs_worker_late_results_total/ && index($0, t) {s += $NF} END {printf "%d\n", s}')
  [ "$workers" -le "$db" ] && [ $(( db - workers )) -le "$late_task" ] ||
    fail "$task: the database has $db successes, the workers count $workers ($late_task late on the cut host)"
  failed=$(metric_sum "pgjobs_worker_jobs_total\\{outcome=\"(failure|timeout)\",task=\"$task\"\\}")
  db_failed=$(psql_ -c "SELECT count(*) FROM jobs.job, jsonb_array_elements(tracebacks) t WHERE task = '$task' AND t->>'error' NOT LIKE 'timeout: attempt%'")
  [ "$failed" = "$db_failed" ] || fail "$task: the workers count $failed failed attempts, the database $db_failed"
done
late_other=$(for n in 1 2; do curl -fsS "http://10.231.$n.2:9466/metrics"; done | awk '/^pgjobs_worker_late_results_total/ {s += $NF} END {printf "%d\n", s}')
per_host=$(for n in 1 2 3; do
  curl -fsS "http://10.231.$n.2:9466/metrics" |
    awk -v n=$n '/^pgjobs_worker_jobs_total\{outcome="success"/ {s += $NF} END {printf "host%d %d ", n, s}'
done)
echo "scale: exactly once: $jobs_total jobs succeeded, $sql_jobs sql rows once each; $reclaimed jobs expired on the cut host and finished elsewhere; its $late3 late results refused and counted as late ($late_other late elsewhere); successes per task as the database counts them, less commits whose outcome the cut host could not learn"
echo "scale: jobs per host: $per_host"
echo "scale: passed in $(elapsed) s"
