#!/usr/bin/env python3
"""Latency of one laptop's sequential API calls: MLflow's port directly vs the HTTPS proxy.

A client that reuses its connection (requests.Session, which the MLflow client does) waits
on every call; this prints p50/p95 per path and the ratio, e.g.

    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=...   # scripts/credentials
    scripts/tls-cert > /tmp/stack.crt
    .venv-test/bin/python tests/load/request_latency.py --url http://127.0.0.1:5000 \\
        --proxy-url https://127.0.0.1:443 --cert /tmp/stack.crt

Only the given URLs are contacted; each path gets --calls calls (the first five are warm-up).
"""

import argparse
import os
import statistics
import sys
import time

import requests

PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
WARM_UP = 5


def measure(url: str, auth: tuple[str, str], verify: bool | str, calls: int,
            reuse: bool) -> list[float]:
    session = requests.Session() if reuse else None
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        # verify per call: a Session's own verify loses to REQUESTS_CA_BUNDLE.
        response = (session or requests).get(url + PATH, auth=auth, verify=verify, timeout=30)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            sys.exit(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    return times[WARM_UP:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="MLflow's own port, e.g. http://127.0.0.1:5000")
    parser.add_argument("--proxy-url", required=True, help="the HTTPS proxy, e.g. https://127.0.0.1:443")
    parser.add_argument("--cert", default=True, help="certificate to trust for the proxy")
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])

    rows = []
    for label, url, verify in (("direct", args.url, True), ("HTTPS proxy", args.proxy_url, args.cert)):
        for reuse in (True, False):
            times = measure(url, auth, verify, args.calls, reuse)
            rows.append((f"{label}, {'one connection' if reuse else 'new connection each call'}",
                         statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]))
    print(f"{'path':<44}{'p50 ms':>9}{'p95 ms':>9}")
    for name, p50, p95 in rows:
        print(f"{name:<44}{p50:>9.1f}{p95:>9.1f}")
    print(f"ratio proxy/direct p50, one connection:      {rows[2][1] / rows[0][1]:.2f}")
    print(f"ratio proxy/direct p50, new connections:     {rows[3][1] / rows[1][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
