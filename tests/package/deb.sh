#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian packages with cpack, checks them with lintian (no errors) and their
# contents, and, as root, installs pgjobs with dpkg -i: the pgjobs user, the binaries, the
# conffiles readable by that user only, the units clean under systemd-analyze verify; then purges.
# usage: tests/package/deb.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
out=$(mktemp -d /tmp/pgjobs-deb-XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "deb: $*" >&2; exit 1; }

(cd "$build_dir" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) ||
  { cat "$out/cpack.log" >&2; fail "cpack failed"; }
version=$(sed -n 's/^project(pgjobs VERSION \([0-9.]*\).*/\1/p' "$source_dir/CMakeLists.txt")
main="$out/pgjobs_${version}_amd64.deb"
dev="$out/pgjobs-dev_${version}_amd64.deb"
[ -f "$main" ] && [ -f "$dev" ] || fail "expected $(basename "$main") and $(basename "$dev"), got: $(ls "$out")"
echo "deb: built $(basename "$main") and $(basename "$dev")"

contents=$(dpkg-deb -c "$main" | awk '{print $6}')
for path in ./usr/bin/jobs-worker ./usr/bin/jobs-exporter ./usr/bin/jobs-migrate ./usr/bin/jobs-ctl \
    ./lib/systemd/system/jobs-worker@.service ./lib/systemd/system/jobs-exporter.service \
    ./etc/pgjobs/worker.yaml ./etc/pgjobs/exporter.yaml \
    ./usr/share/pgjobs/prometheus/alerts.yml ./usr/share/pgjobs/grafana/dashboards/pgjobs-queue.json \
    ./usr/share/pgjobs/mixin/mixin.libsonnet ./usr/share/doc/pgjobs/copyright \
    ./usr/share/man/man1/jobs-worker.1.gz; do
  grep -qxF "$path" <<<"$contents" || fail "$(basename "$main") lacks $path"
done
dpkg-deb -c "$dev" | awk '{print $6}' | grep -q '^./usr/lib/cmake/pgjobs/pgjobsConfig.cmake$' ||
  fail "$(basename "$dev") lacks the CMake package"
[ "$(dpkg-deb -f "$main" Depends | grep -c libpq5)" -eq 1 ] || fail "Depends lacks libpq5: $(dpkg-deb -f "$main" Depends)"
dpkg-deb --ctrl-tarfile "$main" | tar -tf - | grep -qx './conffiles' || fail "no conffiles"
echo "deb: contents, Depends ($(dpkg-deb -f "$main" Depends | tr -d '\n')) and conffiles as expected"

# Errors fail; warnings are printed for the record.
lintian --fail-on error --suppress-tags-from-file /dev/null "$main" "$dev" | tee "$out/lintian.log" ||
  fail "lintian found errors"
echo "deb: lintian: no errors ($(grep -c '^W:' "$out/lintian.log" || true) warnings)"

if [ "$(id -u)" -ne 0 ]; then
  echo "deb: not root: dpkg -i skipped"
  exit 0
fi
if dpkg-query -W -f='${Status}' pgjobs 2>/dev/null | grep -q "install ok installed"; then
  echo "deb: a pgjobs package is installed on this machine: dpkg -i skipped"
  exit 0
fi
trap 'dpkg --purge pgjobs >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
dpkg -i "$main" >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log" >&2; fail "dpkg -i failed"; }
id pgjobs >/dev/null || fail "postinst did not make the pgjobs user"
[ "$(stat -c '%U:%G %a' /etc/pgjobs/worker.yaml)" = "root:pgjobs 640" ] ||
  fail "/etc/pgjobs/worker.yaml is $(stat -c '%U:%G %a' /etc/pgjobs/worker.yaml)"
/usr/bin/jobs-worker --version | grep -q "jobs-worker $version" || fail "jobs-worker --version"
# The shipped configurations are valid and readable by the services' user.
for binary in worker exporter; do
  runuser -u pgjobs -- env PGJOBS_DSN=postgresql://localhost/app \
    /usr/bin/jobs-$binary --config.file=/etc/pgjobs/$binary.yaml --config.check >/dev/null ||
    fail "jobs-$binary --config.check of /etc/pgjobs/$binary.yaml failed as user pgjobs"
done
cp /etc/pgjobs/worker.yaml /etc/pgjobs/worker-check.yaml
verify=$(systemd-analyze verify /lib/systemd/system/jobs-exporter.service \
  /lib/systemd/system/jobs-worker@check.service 2>&1 | grep -v -e 'Failed to .* bus' || true)
rm -f /etc/pgjobs/worker-check.yaml
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
echo "deb: installed with dpkg -i: user pgjobs, conffiles root:pgjobs 640, --config.check passes as pgjobs, units verify clean"
dpkg --purge pgjobs >/dev/null
! id pgjobs >/dev/null 2>&1 || fail "purge left the pgjobs user"
[ ! -e /usr/bin/jobs-worker ] && [ ! -e /etc/pgjobs ] || fail "purge left files"
echo "deb: purged: user and files gone"
