"""The stack's own artifact paths (server/mlflow_stack/app.py, proxied_s3.py): uploads
stream into S3 multipart uploads, downloads stream out of S3 with their length, and both
keep MLflow's permission checks and error answers."""

import base64
import json
import os
import socket
import time
from urllib.parse import urlparse

import pytest
import requests
from mlflow import MlflowClient

from .test_40_permissions import new_user, user_script

DOWNLOAD_PREFIXES = ("/api/2.0/mlflow-artifacts/artifacts", "/ajax-api/2.0/mlflow-artifacts/artifacts")


@pytest.fixture(scope="module")
def artifact(stack, admin, tmp_path_factory):
    """An experiment with one run and a 20 MiB artifact, logged by the admin."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    mp.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
    try:
        client = MlflowClient(tracking_uri=stack.url)
        name = f"streaming-{time.time_ns()}"
        experiment_id = client.create_experiment(name)
        run_id = client.create_run(experiment_id).info.run_id
        data = os.urandom(20 * 1024 * 1024)
        path = tmp_path_factory.mktemp("art") / "weights.bin"
        path.write_bytes(data)
        client.log_artifact(run_id, str(path))
    finally:
        mp.undo()
    return {"experiment": name, "experiment_id": experiment_id, "run_id": run_id, "data": data,
            "key": f"{experiment_id}/{run_id}/artifacts/weights.bin"}


def test_upload_went_into_an_s3_multipart_upload(stack, artifact):
    """A streamed upload reaches MinIO as a multipart object (ETag "<md5>-<parts>"); a
    staged one would be a single PUT of the finished file."""
    out = stack.mc("stat", "--json", f"stack/mlflow/artifacts/{artifact['key']}")
    stat = json.loads(out.strip().splitlines()[-1])
    assert stat["size"] == len(artifact["data"])
    assert "-" in stat["etag"], stat["etag"]


UPLOAD_PARTS_HELD = """
import inspect, json
import mlflow.store.artifact.artifact_repository_registry  # as the server imports it
import s3transfer.manager
from mlflow_stack import proxied_s3
manager = inspect.getsource(s3transfer.manager.TransferManager)
print(json.dumps({"held": proxied_s3._transfer_config().max_in_memory_upload_chunks,
                  "set": proxied_s3.UPLOAD_PARTS_IN_MEMORY,
                  "read_by_s3transfer": "config.max_in_memory_upload_chunks" in manager}))
"""


def test_an_upload_holds_only_a_few_parts_in_memory(stack):
    """s3transfer keeps up to 10 parts of 8 MiB per upload by default; the stack sets fewer
    on the config, a setting boto3's TransferConfig does not take as an argument. Fails
    when s3transfer stops reading it from the config."""
    out = json.loads(stack.exec("mlflow", "python", "-c", UPLOAD_PARTS_HELD).splitlines()[-1])
    assert out["read_by_s3transfer"], "s3transfer no longer reads max_in_memory_upload_chunks"
    assert out["held"] == out["set"] <= 4, out


@pytest.mark.parametrize("prefix", DOWNLOAD_PREFIXES)
def test_download_streams_with_its_length(stack, admin, artifact, prefix):
    with requests.get(f"{stack.url}{prefix}/{artifact['key']}", auth=admin, stream=True,
                      timeout=60) as response:
        assert response.status_code == 200, response.text[:300]
        assert response.headers["Content-Length"] == str(len(artifact["data"]))
        assert "weights.bin" in response.headers["Content-Disposition"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.raw.read() == artifact["data"]


def test_missing_artifact_is_a_json_404(stack, admin, artifact):
    response = requests.get(
        f"{stack.url}{DOWNLOAD_PREFIXES[0]}/{artifact['experiment_id']}/{artifact['run_id']}"
        "/artifacts/no-such-file.bin", auth=admin, timeout=30)
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_unsafe_path_is_refused(stack, admin):
    response = requests.get(f"{stack.url}{DOWNLOAD_PREFIXES[0]}/..%2F..%2Fetc%2Fpasswd",
                            auth=admin, timeout=30)
    assert 400 <= response.status_code < 500
    assert "root:" not in response.text


def test_user_without_read_cannot_download_through_any_path(stack, artifact):
    name, password = new_user(stack, f"nobody{time.time_ns() % 10**8}")
    auth = (name, password)
    # Default permission READ: the new user can download, which shows the 403 below is the
    # permission check and not something else.
    url = f"{stack.url}{DOWNLOAD_PREFIXES[0]}/{artifact['key']}"
    with requests.get(url, auth=auth, stream=True, timeout=60) as allowed:
        assert allowed.status_code == 200
    revoked = user_script(stack, "grant", name, "DENY", "experiment",
                          artifact["experiment"])
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1)
    paths = [f"{prefix}/{artifact['key']}" for prefix in DOWNLOAD_PREFIXES] + [
        f"/get-artifact?run_id={artifact['run_id']}&path=weights.bin",
        f"/api/2.0/mlflow/artifacts/list?run_id={artifact['run_id']}",
    ]
    for path in paths:
        response = requests.get(stack.url + path, auth=auth, timeout=60)
        assert response.status_code == 403, (path, response.status_code, response.text[:200])
        assert artifact["data"][:64] not in response.content


def test_upload_cut_off_half_way_stores_nothing(stack, admin, artifact):
    """A client that promises 8 MiB and disconnects after 3 MiB: no object, not a short one,
    and the server logs one line that says so (not a traceback, as for a server fault)."""
    key = f"{artifact['experiment_id']}/{artifact['run_id']}/artifacts/cut-off.bin"
    since = stack.log_mark()
    url = urlparse(stack.url)
    token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    head = (f"PUT {DOWNLOAD_PREFIXES[0]}/{key} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Basic {token}\r\nContent-Length: {8 * 1024 * 1024}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head)
        sock.sendall(os.urandom(3 * 1024 * 1024))
    time.sleep(3)
    listing = stack.mc("ls", "--json", f"stack/mlflow/artifacts/{key}")
    assert '"key"' not in listing, f"a cut-off upload left an object: {listing}"
    uploads = stack.mc("ls", "--incomplete", "--json", f"stack/mlflow/artifacts/{key}")
    assert '"key"' not in uploads, f"the multipart upload was not aborted: {uploads}"
    log = stack.service_log("mlflow", since)
    assert (f"WARNING mlflow_stack.proxied_s3: artifact '{key}': the upload stopped before the "
            "end of its body (ClientDisconnect); nothing was stored") in log, log[-3000:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-5000:]
