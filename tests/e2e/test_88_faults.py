"""Fault injection: a dependency or the server itself fails while a laptop is logging.

Each test breaks one thing on purpose, checks what a client sees (a quick, clear error,
never a hang; nothing acknowledged is lost; no half-written artifact) and that the stack
recovers on its own, then leaves every service running and healthy for the tests after it.

The client runs with a bounded per-request timeout and no retries so that a failure shows
up at once instead of being hidden by MLflow's backoff.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

from .stack import sha256_file

REQUEST_TIMEOUT = 20
ERROR_LIMIT_SECONDS = 60      # a failing call must fail within this (no hang)
RECOVERY_LIMIT_SECONDS = 60   # a call must succeed again within this after the fault ends
HEALTHY_LIMIT_SECONDS = 240   # a (re)started service must be healthy within this
BIG_SIZE = 50 * 1024 * 1024
LONG_RUNNING = ("postgres", "minio", "mlflow")


# --------------------------------------------------------------------------- helpers


def _container_id(stack, service: str) -> str:
    ids = stack.compose("ps", "-a", "-q", service).stdout.split()
    assert ids, f"no container for {service}"
    return ids[0]


def _inspect_state(container_id: str) -> dict:
    out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    info = json.loads(out)[0]
    return {**info["State"], "RestartCount": info["RestartCount"]}


def _crash(container_id: str) -> None:
    """SIGKILL the container's main process from the host, as the OOM killer or a crash would.

    Not `docker kill`: Docker records that as a manual stop (like `docker stop`), and
    `restart: unless-stopped` then leaves the container exited (checked on Docker 20.10:
    RestartCount stays 0, Status "exited"). A process that dies on its own is restarted.
    """
    pid = _inspect_state(container_id)["Pid"]
    assert pid > 0, "container is not running"
    os.kill(pid, signal.SIGKILL)


def _wait_service_healthy(stack, service: str, timeout: float = HEALTHY_LIMIT_SECONDS) -> float:
    """Seconds until the service's container reports healthy (and mlflow /health is 200)."""
    start = time.monotonic()
    stack.wait_healthy(timeout, service=service)
    return time.monotonic() - start


def _http_status(error: BaseException) -> int | None:
    """The HTTP status behind a client error.

    With MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, urllib3 turns a 5xx in MLflow's retry list
    into "too many 503 error responses" instead of handing over the response.
    """
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None) is not None:
        return response.status_code
    match = re.search(r"too many (\d{3}) error responses|error code (\d{3})", str(error))
    return int(match.group(1) or match.group(2)) if match else None


def _retry_until_ok(action, limit: float = RECOVERY_LIMIT_SECONDS, pause: float = 2.0):
    """Call action() until it succeeds; returns (seconds it took, result)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < limit:
        try:
            return time.monotonic() - start, action()
        except Exception as e:  # noqa: BLE001 - any failure means "not recovered yet"
            last = e
            time.sleep(pause)
    raise AssertionError(f"still failing {limit} s after the fault ended: {last!r}")


@pytest.fixture
def client(stack, admin, as_user, monkeypatch):
    as_user(*admin)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=stack.url)


@pytest.fixture(autouse=True)
def restore_stack(stack):
    """Whatever a test stopped or killed: start it again and wait until all is healthy."""
    yield
    stack.compose("start", *LONG_RUNNING, check=False, timeout=300)
    for service in LONG_RUNNING:
        _wait_service_healthy(stack, service)


@pytest.fixture
def run_id(client):
    experiment_id = client.create_experiment(f"faults-{time.time_ns()}")
    return client.create_run(experiment_id).info.run_id


# --------------------------------------------------------------------------- 1. MinIO down

def test_minio_stopped_while_logging_artifacts(stack, client, run_id, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    acked: dict[str, str] = {}   # artifact name -> sha256, for every upload that returned OK
    failures: list[tuple[float, float, BaseException]] = []   # (ended at, duration, error)
    stop = threading.Event()

    def upload_loop():
        for i in range(400):                   # bounded in count ...
            if stop.is_set():
                return
            path = src / f"a-{i:04d}.bin"
            path.write_bytes(os.urandom(64 * 1024))
            start = time.monotonic()
            try:
                client.log_artifact(run_id, str(path), "loop")
                acked[path.name] = sha256_file(path)
            except Exception as e:  # noqa: BLE001
                failures.append((time.monotonic(), time.monotonic() - start, e))
            time.sleep(0.1)

    worker = threading.Thread(target=upload_loop, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while len(acked) < 5 and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.2)
    assert len(acked) >= 5, f"uploads did not work before the fault: {failures[:1]}"

    since = stack.log_mark()
    stack.compose("stop", "minio", timeout=120)
    stopped_at = time.monotonic()
    # ... and in time: wait for the first failure that started after MinIO was gone.
    while time.monotonic() - stopped_at < ERROR_LIMIT_SECONDS + 30 and worker.is_alive():
        if any(ended > stopped_at for ended, _, _ in failures):
            break
        time.sleep(0.2)
    stop.set()
    worker.join(REQUEST_TIMEOUT + 10)
    assert not worker.is_alive(), "an upload hung past the client's request timeout"

    after_stop = [(ended, took, e) for ended, took, e in failures if ended > stopped_at]
    assert after_stop, "no upload failed while MinIO was stopped"
    ended, took, error = after_stop[0]
    assert ended - stopped_at < ERROR_LIMIT_SECONDS, f"first error after {ended - stopped_at:.0f} s"
    assert took < ERROR_LIMIT_SECONDS, f"the failing upload took {took:.0f} s"
    status = _http_status(error)
    assert status is not None and 500 <= status < 600, f"not an HTTP 5xx: {error!r}"
    # The body the client's retry layer hides: a JSON error naming the cause, at once.
    start = time.monotonic()
    response = requests.put(
        f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/probe/while-minio-down.txt",
        data=b"x", auth=(os.environ["MLFLOW_TRACKING_USERNAME"],
                         os.environ["MLFLOW_TRACKING_PASSWORD"]), timeout=REQUEST_TIMEOUT)
    assert time.monotonic() - start < ERROR_LIMIT_SECONDS
    assert response.status_code == 503, (response.status_code, response.text[:500])
    body = response.json()
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "artifact store is unreachable" in body["message"], body
    # ... and the operator reads it in the server's log, not only a 503 in the access log.
    log = stack.service_log("mlflow", since)
    assert re.search(r"WARNING mlflow_stack\.proxied_s3: artifact 'probe/while-minio-down\.txt'"
                     r": the artifact store is unreachable", log), log[-3000:]

    stack.compose("start", "minio", timeout=120)
    _wait_service_healthy(stack, "minio")
    again = src / "after-restart.bin"
    again.write_bytes(os.urandom(64 * 1024))
    _retry_until_ok(lambda: client.log_artifact(run_id, str(again), "loop"))
    acked[again.name] = sha256_file(again)

    dst = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="loop",
                                              dst_path=str(tmp_path / "dst"))
    for name, digest in acked.items():
        path = os.path.join(dst, name)
        assert os.path.exists(path), f"acknowledged artifact {name} is missing"
        assert sha256_file(path) == digest, f"acknowledged artifact {name} changed"


# --------------------------------------------------------------------------- 2. PostgreSQL restart

def test_postgres_restart_while_logging_metrics(stack, client, run_id):
    acked_steps: set[int] = set()
    outcomes: list[tuple[float, bool]] = []   # (ended at, ok)
    stop = threading.Event()

    def metric_loop():
        for call in range(3000):               # bounded in count ...
            if stop.is_set():
                return
            now = int(time.time() * 1000)
            steps = range(call * 10, call * 10 + 10)
            try:
                client.log_batch(run_id, metrics=[Metric("loss", float(s), now, s) for s in steps])
                acked_steps.update(steps)
                outcomes.append((time.monotonic(), True))
            except Exception:  # noqa: BLE001
                outcomes.append((time.monotonic(), False))
            time.sleep(0.05)

    worker = threading.Thread(target=metric_loop, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while len(acked_steps) < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(acked_steps) >= 50, "log_batch did not work before the fault"

    stack.compose("restart", "postgres", timeout=180)
    restarted_at = time.monotonic()
    # No manual restart of mlflow: a fresh call succeeds within the bound.
    took, _ = _retry_until_ok(
        lambda: client.log_batch(run_id, metrics=[Metric("probe", 1.0, int(time.time() * 1000), 0)]))
    # The logging thread, too, gets through again (its calls are bounded by the timeout).
    while time.monotonic() - restarted_at < RECOVERY_LIMIT_SECONDS:
        if any(ok and ended > restarted_at + took for ended, ok in outcomes):
            break
        time.sleep(0.5)
    stop.set()
    worker.join(REQUEST_TIMEOUT + 10)
    assert not worker.is_alive(), "a log_batch call hung past the client's request timeout"
    assert any(ok and ended > restarted_at for ended, ok in outcomes), \
        "the logging loop never succeeded again after the restart"

    history = client.get_metric_history(run_id, "loss")
    stored = {m.step: m.value for m in history}
    lost = acked_steps - stored.keys()
    assert not lost, f"{len(lost)} acknowledged metric points are missing, e.g. {sorted(lost)[:5]}"
    assert all(stored[s] == float(s) for s in acked_steps)
    failed = sum(1 for _, ok in outcomes if not ok)
    print(f"postgres restart: {len(acked_steps) // 10} batches acknowledged, {failed} failed, "
          f"recovered {took:.1f} s after `restart` returned")


# --------------------------------------------------------------------------- 3. mlflow killed

def _objects(stack, prefix: str) -> dict[str, int]:
    out = stack.mc("ls", "--recursive", "--json", prefix)
    objects = {}
    for line in out.splitlines():
        if line.strip().startswith("{"):
            entry = json.loads(line)
            if entry.get("type") == "file":
                objects[entry["key"]] = entry["size"]
    return objects


def test_mlflow_killed_mid_upload_leaves_no_partial_artifact(stack, client, run_id, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG_SIZE))
    experiment_id = client.get_run(run_id).info.experiment_id
    container = _container_id(stack, "mlflow")
    restarts_before = _inspect_state(container)["RestartCount"]

    result: dict[str, object] = {}

    def upload():
        start = time.monotonic()
        try:
            client.log_artifact(run_id, str(big), "kill")
            result["ok"] = True
        except Exception as e:  # noqa: BLE001
            result["error"] = e
        result["took"] = time.monotonic() - start

    worker = threading.Thread(target=upload, daemon=True)
    worker.start()
    time.sleep(0.5)   # mid-transfer on this machine; a fast one may finish first (allowed)
    _crash(container)
    worker.join(ERROR_LIMIT_SECONDS)
    assert not worker.is_alive(), "the upload hung after the server was killed"

    # restart: unless-stopped brings the crashed server back without anyone starting it.
    deadline = time.monotonic() + 60
    state = _inspect_state(container)
    while state["RestartCount"] == restarts_before and time.monotonic() < deadline:
        time.sleep(1)
        state = _inspect_state(container)
    assert state["RestartCount"] > restarts_before, f"mlflow was not restarted: {state['Status']}"
    _wait_service_healthy(stack, "mlflow")

    # Whatever the outcome of the interrupted upload: no partial object is visible.
    listed = {f.path: f.file_size for f in client.list_artifacts(run_id, "kill")}
    assert listed in ({}, {"kill/big.bin": BIG_SIZE}), listed
    prefix = f"stack/mlflow/artifacts/{experiment_id}/{run_id}/artifacts/"
    stored = _objects(stack, prefix)
    assert stored.get("kill/big.bin", BIG_SIZE) == BIG_SIZE, stored
    if result.get("ok"):
        assert listed == {"kill/big.bin": BIG_SIZE}, "an acknowledged upload is missing"

    # Uploads work again (the client keeps its session: no restart on the laptop).
    _retry_until_ok(lambda: client.log_artifact(run_id, str(big), "after"))
    assert _objects(stack, prefix)["after/big.bin"] == BIG_SIZE
    print(f"mlflow kill: upload {'succeeded' if result.get('ok') else 'failed'} after "
          f"{result['took']:.1f} s ({result.get('error')!r:.120}); objects {stored}")


# --------------------------------------------------------------------------- 4. restart policy

def test_crashed_minio_comes_back_by_itself(stack, client, run_id, tmp_path):
    container = _container_id(stack, "minio")
    before = _inspect_state(container)
    assert before["Running"]
    # A crash: the server process dies from SIGKILL without Docker being asked to stop it.
    _crash(container)
    start = time.monotonic()
    state = _inspect_state(container)
    while state["RestartCount"] == before["RestartCount"] and time.monotonic() - start < 60:
        time.sleep(0.5)
        state = _inspect_state(container)
    assert state["RestartCount"] > before["RestartCount"], f"minio not restarted: {state}"
    assert state["Status"] in ("restarting", "running"), state["Status"]
    took = _wait_service_healthy(stack, "minio", timeout=120)
    assert _inspect_state(container)["Pid"] != before["Pid"]

    probe = tmp_path / "probe.txt"
    probe.write_text("after the crash")
    _retry_until_ok(lambda: client.log_artifact(run_id, str(probe)))
    print(f"minio crash: healthy again {time.monotonic() - start:.1f} s after the kill "
          f"({took:.1f} s after Docker restarted it)")


def test_mlflow_health_while_minio_is_down(stack, client, run_id, tmp_path):
    """What the health signals say while a dependency is missing.

    MLflow's /health is a liveness probe: it answers 200 "OK" as long as the web server
    runs and checks neither the database nor the artifact store (documented MLflow
    behaviour). So while MinIO is stopped the mlflow container stays "healthy" and a
    restart of mlflow would not help anyway; the outage shows on the artifact calls (5xx
    with a message) and in MinIO's own health, which is what monitoring must watch.
    """
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    client.log_artifact(run_id, str(probe))
    stack.compose("stop", "minio", timeout=120)
    assert _inspect_state(_container_id(stack, "minio"))["Status"] == "exited"

    observed = []
    for _ in range(6):                      # ~3 health-check intervals of mlflow
        response = requests.get(f"{stack.url}/health", timeout=5)
        observed.append((response.status_code, response.text.strip(),
                         stack.container_health("mlflow")))
        time.sleep(2.5)
    assert all(o == (200, "OK", "healthy") for o in observed), observed

    # The tracking API (PostgreSQL only) keeps working ...
    assert client.get_run(run_id).info.run_id == run_id
    # ... and the artifact API reports the outage quickly and truthfully.
    start = time.monotonic()
    with pytest.raises(Exception) as failure:
        client.list_artifacts(run_id)
    assert time.monotonic() - start < ERROR_LIMIT_SECONDS
    status = _http_status(failure.value)
    message = str(failure.value)
    if status is None:   # the tracking-style client wraps the status into its message
        assert " 50" in message or "INTERNAL_ERROR" in message, message
    else:
        assert 500 <= status < 600, message

    stack.compose("start", "minio", timeout=120)
    _wait_service_healthy(stack, "minio")
    assert [f.path for f in client.list_artifacts(run_id)] == ["probe.txt"]


# --------------------------------------------------------------------------- 5. keys refused

def test_minio_refusing_the_servers_keys_is_explained_and_logged(stack, admin, client, run_id,
                                                                 tmp_path):
    """MinIO turns the server's service user away while the server runs (disabled, or its
    key changed in MinIO alone): a laptop's upload and download fail at once with a 500
    that says what is wrong and who must fix it, the operator finds the same in the mlflow
    service's log (MLflow's artifact routes log nothing themselves), nothing is stored,
    and `docker compose up -d`, which the message names, brings the user back."""
    kept = tmp_path / "kept.txt"
    kept.write_text("stored before")
    client.log_artifact(run_id, str(kept))
    base = f"{stack.url}/api/2.0/mlflow-artifacts/artifacts"
    stored = client.get_run(run_id).info.artifact_uri.split("mlflow-artifacts:/", 1)[1]
    access_key = stack.secret("minio", "s3_access_key")
    since = stack.log_mark()
    stack.mc("admin", "user", "disable", "stack", access_key)
    try:
        start = time.monotonic()
        put = requests.put(f"{base}/{stored}/refused.txt", data=b"x", auth=admin,
                           timeout=REQUEST_TIMEOUT)
        get = requests.get(f"{base}/{stored}/kept.txt", auth=admin, timeout=REQUEST_TIMEOUT)
        took = time.monotonic() - start
    finally:
        stack.compose("up", "-d", "minio-init", timeout=300)
    assert took < ERROR_LIMIT_SECONDS
    for response in (put, get):
        assert response.status_code == 500, (response.status_code, response.text[:500])
        body = response.json()
        assert body["error_code"] == "INTERNAL_ERROR", body
        assert "refused the tracking server's S3 keys" in body["message"], body
        assert "InvalidAccessKeyId" in body["message"] and "docker compose up -d" in body[
            "message"], body
    log = stack.service_log("mlflow", since)
    for name in ("refused.txt", "kept.txt"):
        assert re.search(r"ERROR mlflow_stack\.proxied_s3: artifact '[^']*/" + re.escape(name)
                         + r"': MinIO refused the server's S3 keys \(.*InvalidAccessKeyId",
                         log), log[-3000:]
    secret_key = stack.secret("minio", "s3_secret_key")
    for text in (log, put.text, get.text):
        assert access_key not in text and secret_key not in text
    # minio-init enabled the user again: the refused upload left nothing behind, and the
    # same upload now works.
    _, listed = _retry_until_ok(lambda: [f.path for f in client.list_artifacts(run_id)])
    assert listed == ["kept.txt"]
    requests.put(f"{base}/{stored}/refused.txt", data=b"y", auth=admin,
                 timeout=REQUEST_TIMEOUT).raise_for_status()
    assert requests.get(f"{base}/{stored}/refused.txt", auth=admin,
                        timeout=REQUEST_TIMEOUT).content == b"y"
