#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs pgjobs into a temporary prefix, builds the worker and publish examples as a separate project with
# find_package(pgjobs), and runs the result's usage line.
set -euo pipefail
build_dir=$1
source_dir=$2
prefix=$(mktemp -d /tmp/pgjobs-package-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
cmake -S "$source_dir/tests/package" -B "$prefix/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DEXAMPLE_SOURCE="$source_dir/worker/examples/noop_worker.cc" \
  -DPUBLISH_EXAMPLE_SOURCE="$source_dir/worker/examples/publish_example.cc" >/dev/null
cmake --build "$prefix/build" -j2 >/dev/null
out=$("$prefix/build/my_worker" 2>&1 || true)
case "$out" in
  "usage: noop_worker_example DSN"*) echo "package: the example built against the installed pgjobs::worker runs" ;;
  *) echo "package: unexpected output: $out" >&2; exit 1 ;;
esac
out=$("$prefix/build/my_publisher" 2>&1 || true)
case "$out" in
  "usage: publish_example DSN"*) echo "package: the example built against the installed pgjobs::client runs" ;;
  *) echo "package: unexpected output: $out" >&2; exit 1 ;;
esac
