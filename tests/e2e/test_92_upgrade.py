"""Upgrade: data written by the previous MLflow minor release is migrated (`mlflow db upgrade`
on start) and read back by this stack's server, after a plain `docker compose up -d`."""

import hashlib
import json
import os
import subprocess
import uuid

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from .stack import REPO, Stack, free_port
from .test_30_model_registry import AddOne

PREVIOUS_SERVER = REPO / "tests" / "e2e" / "previous_server"
CURRENT_MLFLOW = "3.17.2"


def docker(*args: str, timeout: float = 1200) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def previous_mlflow_version() -> str:
    for line in (PREVIOUS_SERVER / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG PREVIOUS_MLFLOW="):
            return line.split("=", 1)[1]
    raise AssertionError("ARG PREVIOUS_MLFLOW= missing from previous_server/Dockerfile")


@pytest.fixture
def old_stack(stack):
    """A fresh stack whose server runs the previous MLflow; its own images tag, removed after."""
    tag = f"upgrade-{uuid.uuid4().hex[:8]}"
    current = stack.env.get("STACK_IMAGE_TAG", "local")
    docker("build", "--quiet", "--build-arg", f"SERVER_IMAGE=mlflow-stack/server:{current}",
           "-t", f"mlflow-stack/server:{tag}", str(PREVIOUS_SERVER))
    for service in ("postgres", "minio"):
        docker("tag", f"mlflow-stack/{service}:{current}", f"mlflow-stack/{service}:{tag}")
    old = Stack(f"{stack.project}upg", free_port(), env={"STACK_IMAGE_TAG": tag})
    try:
        old.up()
        yield old, f"mlflow-stack/server:{current}", tag
    finally:
        if os.environ.get("STACK_TEST_KEEP") != "1":
            old.down(volumes=True)
            for service in ("server", "postgres", "minio"):
                subprocess.run(["docker", "rmi", f"mlflow-stack/{service}:{tag}"], capture_output=True)


def server_version(stack, auth) -> str:
    response = requests.get(f"{stack.url}/version", auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    return response.text.strip()


def schema_revision(stack) -> str:
    return stack.exec("postgres", "psql", "--no-psqlrc", "--username=postgres", "--dbname=mlflow",
                      "--tuples-only", "--no-align", "--command",
                      "SELECT version_num FROM alembic_version").strip()


def test_previous_minor_data_is_migrated_and_read_back(old_stack, as_user, tmp_path):
    old, current_image, tag = old_stack
    admin = ("admin", old.admin_password())
    assert server_version(old, admin) == previous_mlflow_version()
    revision_before = schema_revision(old)

    as_user(*admin, url=old.url)
    client = MlflowClient(old.url)

    experiment_id = client.create_experiment("written-by-the-previous-minor")
    run_id = client.create_run(experiment_id, tags={"origin": "previous"}).info.run_id
    client.log_param(run_id, "depth", "6")
    for step in range(100):
        client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
    payload = tmp_path / "weights.bin"
    payload.write_bytes(hashlib.sha256(b"upgrade").digest() * 32768)
    client.log_artifact(run_id, str(payload))
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(name="m", python_model=AddOne(), pip_requirements=["pandas"],
                                       registered_model_name="upgraded-model")
    client.set_registered_model_alias("upgraded-model", "champion", str(info.registered_model_version))
    user_password = "carol-" + uuid.uuid4().hex
    created = requests.post(f"{old.url}/api/2.0/mlflow/users/create", auth=admin, timeout=10,
                            json={"username": "carol", "password": user_password})
    assert created.status_code == 200, created.text

    # The upgrade as an operator does it: the new image under the same name, then `up -d`.
    docker("tag", current_image, f"mlflow-stack/server:{tag}")
    old.compose("up", "-d")
    old.wait_healthy(300)

    assert server_version(old, admin) == CURRENT_MLFLOW
    revision_after = schema_revision(old)
    assert revision_after != revision_before, "the schema was not migrated"

    run = client.get_run(run_id)
    assert run.data.params == {"depth": "6"} and run.data.tags["origin"] == "previous"
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [m.value for m in history] == [1 / (s + 1) for s in range(100)]
    back = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="weights.bin",
                                               dst_path=str(tmp_path / "back"))
    assert open(back, "rb").read() == payload.read_bytes()
    version = client.get_model_version_by_alias("upgraded-model", "champion")
    assert version.version == str(info.registered_model_version)
    model = mlflow.pyfunc.load_model("models:/upgraded-model@champion")
    assert list(model.predict(pd.DataFrame({"x": [1.0]}))) == [2.0]
    search = f"{old.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, auth=("carol", user_password), timeout=10).status_code == 200
    # And the upgraded server takes new writes.
    client.log_metric(run_id, "loss", 0.001, step=100)
    assert len(client.get_metric_history(run_id, "loss")) == 101
    mlflow.set_tracking_uri(None)  # this stack goes away after the test
    print(f"\nupgrade {previous_mlflow_version()} -> {CURRENT_MLFLOW}: schema "
          f"{revision_before} -> {revision_after}; " + json.dumps({"runs": 1, "metric_points": 101}))
