#!/usr/bin/env python3
"""Bounded load test for the stack: many laptops logging at once.

N concurrent clients (threads, each with its own MlflowClient and run) each send B
log_batch calls (M metric points per call) and A small artifacts through the tracking
server's proxy. Afterwards every metric point (get_metric_history per run) and every
artifact (list_artifacts per run) is counted, and a table with throughput, p50/p99
latencies, the error count and the wall time is printed. Exit status 1 on any error or
missing point. Not a pytest test: run it by hand against a running stack.

    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=...   # scripts/credentials
    .venv-test/bin/python tests/load/log_load.py --url http://127.0.0.1:5000 \\
        --clients 16 --batches 500 --metrics 10 --artifacts 20

Only the given URL is contacted; every loop is bounded (count and --max-seconds).
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient
from mlflow.entities import Metric


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {"log_batch": [], "log_artifact": []}
        self.errors: list[str] = []

    def timed(self, kind: str, action) -> bool:
        start = time.perf_counter()
        try:
            action()
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            with self.lock:
                self.errors.append(f"{kind}: {e!r}"[:300])
            return False
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latencies[kind].append(elapsed)
        return True


def client_work(index: int, args, experiment_id: str, recorder: Recorder, deadline: float,
                workdir: str) -> dict:
    client = MlflowClient(tracking_uri=args.url)
    run_id = client.create_run(experiment_id, run_name=f"load-{index:02d}").info.run_id
    acked_points = 0
    acked_artifacts = 0
    # Interleave artifacts among the batches, as a training loop would.
    artifact_every = max(1, args.batches // max(1, args.artifacts))
    artifact_dir = os.path.join(workdir, f"c{index:02d}")
    os.makedirs(artifact_dir)
    for call in range(args.batches):
        if time.monotonic() > deadline:
            recorder.errors.append(f"client {index}: stopped at the --max-seconds deadline")
            break
        now = int(time.time() * 1000)
        metrics = [Metric(f"m{k}", float(call), now, call) for k in range(args.metrics)]
        if recorder.timed("log_batch", lambda: client.log_batch(run_id, metrics=metrics)):
            acked_points += len(metrics)
        if call % artifact_every == 0 and acked_artifacts < args.artifacts:
            path = os.path.join(artifact_dir, f"artifact-{call:04d}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(args.artifact_bytes))
            if recorder.timed("log_artifact", lambda: client.log_artifact(run_id, path, "load")):
                acked_artifacts += 1
    client.set_terminated(run_id)
    return {"run_id": run_id, "points": acked_points, "artifacts": acked_artifacts}


def count_stored(url: str, run_id: str, metrics: int) -> tuple[int, int]:
    client = MlflowClient(tracking_uri=url)
    points = sum(len(client.get_metric_history(run_id, f"m{k}")) for k in range(metrics))
    artifacts = len(client.list_artifacts(run_id, "load"))
    return points, artifacts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="stack URL (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument("--username", default=os.environ.get("MLFLOW_TRACKING_USERNAME"))
    parser.add_argument("--password", default=os.environ.get("MLFLOW_TRACKING_PASSWORD"),
                        help="default: $MLFLOW_TRACKING_PASSWORD (prefer the variable)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batches", type=int, default=500, help="log_batch calls per client")
    parser.add_argument("--metrics", type=int, default=10, help="metric points per call")
    parser.add_argument("--artifacts", type=int, default=20, help="artifacts per client")
    parser.add_argument("--artifact-bytes", type=int, default=4096)
    parser.add_argument("--max-seconds", type=float, default=1800,
                        help="hard stop for the whole load phase")
    parser.add_argument("--request-timeout", type=int, default=60)
    args = parser.parse_args()
    if not args.url or not args.username or not args.password:
        parser.error("--url, --username and --password (or the MLFLOW_TRACKING_* variables) "
                     "are required")
    if not (1 <= args.clients <= 64 and 1 <= args.batches <= 10000 and 1 <= args.metrics <= 1000
            and 0 <= args.artifacts <= 1000):
        parser.error("out of the bounded range")

    os.environ["MLFLOW_TRACKING_USERNAME"] = args.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = args.password
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(args.request_timeout)
    # No silent retries: every failed request is an error in the table.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"

    setup = MlflowClient(tracking_uri=args.url)
    experiment_id = setup.create_experiment(f"load-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="mlflow-load-") as workdir:
        start = time.monotonic()
        deadline = start + args.max_seconds
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [pool.submit(client_work, i, args, experiment_id, recorder, deadline, workdir)
                       for i in range(args.clients)]
            results = []
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as e:  # noqa: BLE001 - e.g. create_run failed
                    recorder.errors.append(f"client: {e!r}"[:300])
        wall = time.monotonic() - start

    verify_start = time.monotonic()
    stored_points = stored_artifacts = 0
    for r in results:
        try:
            points, artifacts = count_stored(args.url, r["run_id"], args.metrics)
        except Exception as e:  # noqa: BLE001
            recorder.errors.append(f"verify {r['run_id']}: {e!r}"[:300])
            continue
        stored_points += points
        stored_artifacts += artifacts
    verify_wall = time.monotonic() - verify_start

    expected_points = args.clients * args.batches * args.metrics
    expected_artifacts = args.clients * min(args.artifacts, args.batches)
    acked_points = sum(r["points"] for r in results)
    acked_artifacts = sum(r["artifacts"] for r in results)
    batch, upload = recorder.latencies["log_batch"], recorder.latencies["log_artifact"]
    requests_done = len(batch) + len(upload)

    rows = [
        ("clients x batches x metrics", f"{args.clients} x {args.batches} x {args.metrics}"),
        ("artifacts per client (bytes)", f"{args.artifacts} ({args.artifact_bytes})"),
        ("wall time, load phase", f"{wall:.1f} s"),
        ("throughput, all requests", f"{requests_done / wall:.1f} req/s"),
        ("throughput, log_batch", f"{len(batch) / wall:.1f} req/s "
                                  f"({len(batch) * args.metrics / wall:.0f} points/s)"),
        ("log_batch latency p50 / p99", f"{percentile(batch, 50) * 1000:.0f} / "
                                        f"{percentile(batch, 99) * 1000:.0f} ms"),
        ("log_batch latency mean / max", f"{statistics.fmean(batch) * 1000 if batch else 0:.0f} / "
                                         f"{max(batch, default=0) * 1000:.0f} ms"),
        ("artifact upload p50 / p99", f"{percentile(upload, 50) * 1000:.0f} / "
                                      f"{percentile(upload, 99) * 1000:.0f} ms"),
        ("errors", str(len(recorder.errors))),
        ("metric points acked / stored / expected",
         f"{acked_points} / {stored_points} / {expected_points}"),
        ("artifacts acked / stored / expected",
         f"{acked_artifacts} / {stored_artifacts} / {expected_artifacts}"),
        ("verification time", f"{verify_wall:.1f} s"),
        ("total wall time", f"{time.monotonic() - start:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nMLflow load test against {args.url} (experiment {experiment_id})")
    print("-" * (width + 30))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 30))
    for error in recorder.errors[:10]:
        print(f"error: {error}")
    ok = (not recorder.errors and stored_points == expected_points == acked_points
          and stored_artifacts == expected_artifacts == acked_artifacts)
    print("RESULT:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
