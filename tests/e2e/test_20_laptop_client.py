"""A laptop with a default MLflow client logs and downloads through the stack."""

import os
import time

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from .stack import sha256_file

# A download that falls into the presigned-URL trap hangs ~65 s before failing.
DOWNLOAD_LIMIT_SECONDS = 30



@pytest.fixture(scope="module")
def logged_run(stack, admin, tmp_path_factory):
    """One run with params, a few thousand metric points and three kinds of artifacts."""
    mp = pytest.MonkeyPatch()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL",
                 "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    mp.setenv("AWS_CONFIG_FILE", "/nonexistent")
    mp.setenv("MLFLOW_TRACKING_URI", stack.url)
    mp.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    mp.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])

    src = tmp_path_factory.mktemp("src")
    (src / "tiny.txt").write_bytes(b"hello")
    big = src / "big.bin"
    big.write_bytes(os.urandom(50 * 1024 * 1024))
    small_dir = src / "many"
    small_dir.mkdir()
    for i in range(20):
        (small_dir / f"part-{i:02d}.json").write_text(f'{{"i": {i}}}')

    client = MlflowClient(tracking_uri=stack.url)
    experiment_id = client.create_experiment(f"laptop-{time.time_ns()}")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric("loss", 1.0 / (step + 1), now, step) for step in range(3000)]
    params = [Param(f"p{i}", str(i)) for i in range(10)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000],
                         params=params if start == 0 else [])
    client.log_artifact(run_id, str(src / "tiny.txt"))
    client.log_artifact(run_id, str(big), "data")
    client.log_artifacts(run_id, str(small_dir), "many")
    client.set_terminated(run_id)
    yield {"client": client, "run_id": run_id, "experiment_id": experiment_id, "src": src}
    mp.undo()


def test_params_and_all_metric_points_are_stored(logged_run):
    client, run_id = logged_run["client"], logged_run["run_id"]
    run = client.get_run(run_id)
    assert run.data.params["p7"] == "7"
    history = client.get_metric_history(run_id, "loss")
    assert len(history) == 3000
    assert {m.step for m in history} == set(range(3000))
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")


@pytest.mark.parametrize(
    ("remote", "local"), [("tiny.txt", "tiny.txt"), ("data/big.bin", "big.bin"), ("many", "many")]
)
def test_artifacts_download_byte_identical_and_quickly(logged_run, tmp_path, remote, local):
    start = time.monotonic()
    path = mlflow.artifacts.download_artifacts(
        run_id=logged_run["run_id"], artifact_path=remote, dst_path=str(tmp_path)
    )
    elapsed = time.monotonic() - start
    assert elapsed < DOWNLOAD_LIMIT_SECONDS, f"{remote} took {elapsed:.0f} s"
    source = logged_run["src"] / local
    if source.is_dir():
        names = sorted(p.name for p in source.iterdir())
        assert sorted(os.listdir(path)) == names
        for name in names:
            assert sha256_file(os.path.join(path, name)) == sha256_file(source / name)
    else:
        assert sha256_file(path) == sha256_file(source)


def test_objects_live_in_the_minio_bucket(stack, logged_run):
    run_id, experiment_id = logged_run["run_id"], logged_run["experiment_id"]
    listing = stack.mc("ls", "--recursive", f"stack/mlflow/artifacts/{experiment_id}/{run_id}/")
    assert "artifacts/tiny.txt" in listing
    assert "artifacts/data/big.bin" in listing
    assert listing.count("artifacts/many/part-") == 20
    size = stack.mc("stat", "--json",
                    f"stack/mlflow/artifacts/{experiment_id}/{run_id}/artifacts/data/big.bin")
    assert '"size":52428800' in size.replace(" ", "")


def test_the_laptop_held_no_storage_credentials(logged_run):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        assert name not in os.environ
