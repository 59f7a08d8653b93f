"""A laptop with a default MLflow client (only MLFLOW_TRACKING_URI/USERNAME/PASSWORD)
uses the stack through the mlflow Service: login required, runs with metrics, a 50 MB
artifact both ways, the model registry by alias, and a read-only user."""

import os
import time
import uuid

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from .conftest import create_user, grant, timing, laptop_env
from .kube import sha256_file

# A download that fell into the presigned-URL trap would hang ~65 s before failing.
DOWNLOAD_LIMIT_SECONDS = 30


class AddOne(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"] + 1


def test_nothing_without_a_login(release, admin):
    search = f"{release.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=10).status_code == 401
    assert requests.get(search, auth=(admin[0], "not-the-password"), timeout=10).status_code == 401
    assert requests.get(search, auth=admin, timeout=10).status_code == 200


@pytest.fixture(scope="module")
def laptop_run(release, admin, tmp_path_factory):
    """A run logged by the default client: params, 2000 metric points, a 50 MB artifact."""
    mp = pytest.MonkeyPatch()
    laptop_env(mp, release.url, *admin)

    src = tmp_path_factory.mktemp("laptop")
    big = src / "big.bin"
    big.write_bytes(os.urandom(50 * 1024 * 1024))
    mlflow.set_experiment(f"laptop-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as run:
        mlflow.log_param("depth", 6)
        for step in range(0, 2000, 500):
            mlflow.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        client = MlflowClient()
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id,
                         metrics=[Metric("auc", s / 2000, now, s) for s in range(2000)])
        start = time.monotonic()
        mlflow.log_artifact(str(big), "data")
        upload_s = time.monotonic() - start
    yield {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "big": big,
           "upload_s": upload_s}
    mp.undo()


def test_runs_and_metrics_are_stored(laptop_run):
    client = MlflowClient()
    run = client.get_run(laptop_run["run_id"])
    assert run.data.params["depth"] == "6"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(laptop_run["run_id"], "auc")
    assert sorted(m.step for m in history) == list(range(2000))
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri


def test_the_50_mb_artifact_downloads_byte_identical(laptop_run, tmp_path):
    start = time.monotonic()
    path = mlflow.artifacts.download_artifacts(
        run_id=laptop_run["run_id"], artifact_path="data/big.bin", dst_path=str(tmp_path))
    elapsed = time.monotonic() - start
    timing("laptop_50mb_upload_s", laptop_run["upload_s"])
    timing("laptop_50mb_download_s", elapsed)
    assert elapsed < DOWNLOAD_LIMIT_SECONDS, f"the download took {elapsed:.0f} s"
    assert sha256_file(path) == sha256_file(laptop_run["big"])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        assert name not in os.environ


def test_register_alias_and_load_the_champion(laptop_run):
    name = f"add-one-{uuid.uuid4().hex[:8]}"
    example = pd.DataFrame({"x": [1.0, 2.0]})
    with mlflow.start_run(experiment_id=laptop_run["experiment_id"]):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=AddOne(), input_example=example,
            registered_model_name=name, pip_requirements=["pandas"])
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "champion", version)
    assert client.get_model_version_by_alias(name, "champion").version == version

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(model.predict(pd.DataFrame({"x": [41.0]}))) == [42.0]


def test_a_read_user_reads_but_gets_403_on_writes(release, admin, laptop_run, as_user):
    reader = (f"reader{uuid.uuid4().hex[:6]}", f"reader-pw-{uuid.uuid4().hex}")
    create_user(release, admin, *reader)
    grant(release, admin, reader[0], laptop_run["experiment_id"], "READ")

    as_user(*reader)
    client = MlflowClient()
    assert client.get_run(laptop_run["run_id"]).data.params["depth"] == "6"
    writes = {
        "create_run": lambda: client.create_run(laptop_run["experiment_id"]),
        "log_metric": lambda: client.log_metric(laptop_run["run_id"], "sneaky", 1.0),
        "set_tag": lambda: client.set_tag(laptop_run["run_id"], "sneaky", "yes"),
        "set_experiment_tag": lambda: client.set_experiment_tag(
            laptop_run["experiment_id"], "sneaky", "yes"),
    }
    for what, write in writes.items():
        with pytest.raises(MlflowException) as e:
            write()
        assert "403" in e.value.message and "Permission denied" in e.value.message, \
            f"{what}: {e.value.message}"
    as_user(*admin)
    assert "sneaky" not in MlflowClient().get_run(laptop_run["run_id"]).data.metrics
