#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Scrapes a URL N times and prints p50, p99 and max latency in milliseconds.

usage: scrape_latency.py URL [N] [INTERVAL_SECONDS]
"""
import sys
import time
import urllib.request

url = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
times = []
for _ in range(n):
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
        if r.status != 200 or b"pgjobs_up 1" not in body:
            sys.exit("scrape failed: status %d, pgjobs_up not 1" % r.status)
    times.append((time.perf_counter() - start) * 1000)
    if interval:
        time.sleep(max(0.0, interval - times[-1] / 1000))
times.sort()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print("scrapes=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f" % (n, p(0.50), p(0.99), times[-1]))
