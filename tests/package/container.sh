#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the image of deploy/container/Containerfile with podman and runs jobs-exporter and
# jobs-worker from it against a throwaway cluster: the exporter serves pgjobs_up 1, the worker
# drains real jobs, both run as a non-root user and pass the image's health check. No registry is
# reachable here: the bookworm base is made with mmdebstrap and imported.
# usage: tests/package/container.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
fail() { echo "container: $*" >&2; exit 1; }
for tool in podman mmdebstrap runc; do
  command -v $tool >/dev/null || fail "$tool is missing (scripts/install-deps installs it)"
done
[ "$(id -u)" -eq 0 ] || { echo "container: not root: skipped (podman here runs rootful)"; exit 0; }

work=$(mktemp -d /tmp/pgjobs-container-XXXXXX)
chmod 755 "$work"
tag="pgjobs-test-$$"
cleanup() {
  podman rm -f "$tag-exporter" "$tag-worker" >/dev/null 2>&1 || true
  podman rmi -f "localhost/$tag:latest" "localhost/$tag-base:bookworm" >/dev/null 2>&1 || true
  "$source_dir/scripts/pg-cluster" stop "$work/pg" immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# runc, not crun: crun refuses this machine's hybrid cgroup v1/v2 layout. The limits are set
# lower than the host's, as raising them needs CAP_SYS_RESOURCE, which this sandbox lacks.
pod=(podman --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

(cd "$build_dir" && cpack -G DEB -B "$work/context" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; fail "cpack failed"; }
rm -rf "$work/context/_CPack_Packages" "$work/context"/pgjobs-dev_*.deb
mmdebstrap --variant=apt bookworm "$work/base.tar" >"$work/mmdebstrap.log" 2>&1 ||
  { tail -20 "$work/mmdebstrap.log" >&2; fail "mmdebstrap failed"; }
"${pod[@]}" import "$work/base.tar" "localhost/$tag-base:bookworm" >/dev/null
"${pod[@]}" build --format docker "${limits[@]}" --network host --build-arg "BASE=localhost/$tag-base:bookworm" \
  -f "$source_dir/deploy/container/Containerfile" -t "localhost/$tag:latest" "$work/context" \
  >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; fail "podman build failed"; }
echo "container: built the image ($("${pod[@]}" image inspect --format '{{.Size}}' "localhost/$tag:latest") bytes)"

"$source_dir/scripts/pg-cluster" init "$work/pg"
port=$("$source_dir/scripts/pg-cluster" start "$work/pg" 0)
dsn="postgresql://postgres@127.0.0.1:$port/postgres"
"$build_dir/tools/jobs-migrate/jobs-migrate" "$dsn" >/dev/null
psql_() { psql -X -q -tA -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
exporter_port=$("$source_dir/scripts/pg-cluster" free-port)
worker_port=$("$source_dir/scripts/pg-cluster" free-port)

"${pod[@]}" run -d "${limits[@]}" --network host --name "$tag-exporter" -e "PGJOBS_DSN=$dsn" \
  -e "PGJOBS_HEALTH_PORT=$exporter_port" "localhost/$tag:latest" \
  /usr/bin/jobs-exporter "--web.listen-address=127.0.0.1:$exporter_port" >/dev/null
cat >"$work/worker.yaml" <<YAML
worker: {concurrency: 4, poll_interval: 200ms}
metrics: {listen: "127.0.0.1:$worker_port"}
tasks:
  echo: {command: ["/bin/sh", "-c", "cat >/dev/null"]}
YAML
chmod 644 "$work/worker.yaml"
"${pod[@]}" run -d "${limits[@]}" --network host --name "$tag-worker" -e "PGJOBS_DSN=$dsn" \
  -e "PGJOBS_HEALTH_PORT=$worker_port" -v "$work/worker.yaml:/etc/pgjobs/worker.yaml:ro" \
  "localhost/$tag:latest" /usr/bin/jobs-worker --config.file=/etc/pgjobs/worker.yaml >/dev/null

# The exporter counts jobs finished after its first scrape.
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$exporter_port/metrics" >/dev/null 2>&1 && break; sleep 0.2; done
psql_ -c "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT ('echo', jsonb_build_object('i', i), NULL, NULL, NULL, NULL)::jobs.bulk_job FROM generate_series(1, 200) i))" >/dev/null
for _ in $(seq 100); do
  [ "$(psql_ -c "SELECT count(*) FROM jobs.job WHERE status = 'success'")" = 200 ] && break
  sleep 0.2
done
done_jobs=$(psql_ -c "SELECT count(*) FROM jobs.job WHERE status = 'success'")
[ "$done_jobs" = 200 ] || { "${pod[@]}" logs "$tag-worker" >&2; fail "the worker in the image finished $done_jobs of 200 jobs"; }
metrics=$(curl -fsS "http://127.0.0.1:$exporter_port/metrics") ||
  { "${pod[@]}" logs "$tag-exporter" >&2; fail "the exporter in the image does not answer"; }
grep -qx 'pgjobs_up 1' <<<"$metrics" || fail "the exporter in the image reports: $(grep pgjobs_up <<<"$metrics")"
grep -q '^pgjobs_jobs_finished_total{task="echo",status="success"} 200$' <<<"$metrics" ||
  fail "the exporter does not count the 200 jobs: $(grep pgjobs_jobs_finished_total <<<"$metrics")"
for c in exporter worker; do
  uid=$("${pod[@]}" exec "$tag-$c" id -u)
  [ "$uid" != 0 ] || fail "jobs-$c runs as root in the image"
  "${pod[@]}" healthcheck run "$tag-$c" >/dev/null || fail "the health check of jobs-$c fails"
done
echo "container: jobs-worker drained 200 jobs and jobs-exporter served them from the image, as uid $uid, health checks passing"
