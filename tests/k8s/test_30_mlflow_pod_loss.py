"""One mlflow replica is deleted while 8 laptops log metrics through the NodePort.

Clients run with MLflow's default settings, so the retries MLflow's client makes by itself
are allowed; a call that still raises after them is a failure. Afterwards every point a
call acknowledged must be stored."""

import threading
import time
import uuid

from mlflow import MlflowClient
from mlflow.entities import Metric

from .conftest import timing
from .kube import wait_until

CLIENTS = 8
LOGGING_SECONDS = 30
BATCH = 20
REPLACEMENT_LIMIT_SECONDS = 180


class Logger(threading.Thread):
    """One laptop: log_batch and log_metric in turn, each point with its own step."""

    def __init__(self, url: str, run_id: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.client = MlflowClient(tracking_uri=url)
        self.run_id, self.stop = run_id, stop
        self.acked: set[int] = set()
        self.ack_times: list[float] = []
        self.failures: list[str] = []
        self.slowest = 0.0

    def run(self):
        step = 0
        while not self.stop.is_set():
            now = int(time.time() * 1000)
            if (step // BATCH) % 2 == 0:
                steps = list(range(step, step + BATCH))
                call = lambda: self.client.log_batch(  # noqa: E731
                    self.run_id, metrics=[Metric("m", float(s), now, s) for s in steps])
            else:
                steps = [step]
                call = lambda: self.client.log_metric(self.run_id, "m", float(step), now, step)  # noqa: E731
            start = time.monotonic()
            try:
                call()
            except Exception as e:  # noqa: BLE001 - every failure is reported
                self.failures.append(f"{time.strftime('%H:%M:%S')} steps {steps[0]}..{steps[-1]}: "
                                     f"{e.__class__.__name__}: {str(e)[:300]}")
            else:
                self.acked.update(steps)
                self.ack_times.append(time.monotonic())
            self.slowest = max(self.slowest, time.monotonic() - start)
            step += BATCH


def test_deleting_an_mlflow_pod_loses_no_acknowledged_point(release, admin, as_user):
    as_user(*admin)
    client = MlflowClient(tracking_uri=release.url)
    experiment_id = client.create_experiment(f"pod-loss-{uuid.uuid4().hex[:8]}")
    runs = [client.create_run(experiment_id).info.run_id for _ in range(CLIENTS)]
    before = set(release.pod_names("mlflow"))
    assert len(before) == 2, before

    stop = threading.Event()
    loggers = [Logger(release.url, run_id, stop) for run_id in runs]
    started = time.monotonic()
    for logger in loggers:
        logger.start()
    try:
        wait_until(lambda: all(lg.acked for lg in loggers), 60, "every client's first acknowledged call")
        victim = sorted(before)[0]
        # The deleted replica is one the clients are using (its access log shows their calls).
        wait_until(lambda: "/mlflow/runs/log-" in release.kubectl("logs", victim, "--since=60s"),
                   30, f"the clients' calls in {victim}'s log")
        killed = time.monotonic()
        release.kubectl("delete", "pod", victim, "--wait=false")
        # A replacement replica, Ready, and the deleted one gone.
        wait_until(lambda: victim not in release.pod_names("mlflow")
                   and not release.kubectl("get", "pod", victim, "--ignore-not-found", "-o", "name").strip()
                   and release.get("deployment", release.resource("mlflow"))["status"].get("readyReplicas") == 2,
                   REPLACEMENT_LIMIT_SECONDS, f"{victim} replaced by a Ready replica", interval=1,
                   diagnose=release.diagnose)
        replaced = time.monotonic() - killed
        # Keep logging for the full period, and at least 5 s with the replacement serving.
        remaining = max(LOGGING_SECONDS - (time.monotonic() - started), 5)
        stop.wait(remaining)
    finally:
        stop.set()
        for logger in loggers:
            logger.join(timeout=300)
    assert not any(lg.is_alive() for lg in loggers), "a client hung for more than 5 minutes"
    timing("mlflow_pod_replaced_s", replaced)

    failures = [f"client {i}: {f}" for i, lg in enumerate(loggers) for f in lg.failures]
    calls = sum(len(lg.ack_times) for lg in loggers)
    slowest = max(lg.slowest for lg in loggers)
    timing("mlflow_pod_loss_acknowledged_calls", calls)
    timing("mlflow_pod_loss_failed_calls", len(failures))
    timing("mlflow_pod_loss_slowest_call_s", slowest)
    # The deletion happened while every client was logging, and each kept logging after it.
    for i, lg in enumerate(loggers):
        assert any(t > killed + replaced for t in lg.ack_times), \
            f"client {i} logged nothing after the replacement came up"

    missing = {}
    for i, (lg, run_id) in enumerate(zip(loggers, runs)):
        stored = {m.step for m in client.get_metric_history(run_id, "m")}
        lost = lg.acked - stored
        if lost:
            missing[i] = sorted(lost)[:20] + ([f"... {len(lost)} in all"] if len(lost) > 20 else [])
    assert not missing, f"acknowledged points not stored: {missing}"
    assert not failures, "calls that failed after the client's own retries:\n" + "\n".join(failures)
