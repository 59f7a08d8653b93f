"""scripts/backup and scripts/restore: a fresh stack (down -v, up) gets runs, metrics,
artifacts, registered models with aliases, users and their permissions back; an archive
that was modified is refused before anything is touched."""

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from .conftest import CLIENT_VARIABLES_TO_CLEAR
from .stack import REPO, sha256_file
from .test_30_model_registry import AddOne
from .test_40_permissions import new_user, user_script

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def script(stack, name, *args, timeout=900):
    return subprocess.run(
        [str(REPO / "scripts" / name), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": stack.project},
    )


@pytest.fixture(scope="module")
def saved(stack, admin, tmp_path_factory):
    """Data of every kind, then one backup of it."""
    work = tmp_path_factory.mktemp("backup")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
        env.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
        for name in CLIENT_VARIABLES_TO_CLEAR:
            env.delenv(name, raising=False)
        client = MlflowClient(tracking_uri=stack.url)
        experiment = f"backup-{time.time_ns()}"
        experiment_id = client.create_experiment(experiment)
        runs = {}
        for name in ("first", "second"):
            run_id = client.create_run(experiment_id, run_name=name).info.run_id
            client.log_param(run_id, "depth", name)
            for step in range(30):
                client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
            runs[run_id] = [1 / (step + 1) for step in range(30)]
        run_id = next(iter(runs))
        files = work / "files"
        (files / "nested").mkdir(parents=True)
        (files / "report.txt").write_text("accuracy 0.91\n")
        (files / "config.json").write_text(json.dumps({"lr": 0.1}))
        (files / "nested" / "weights.bin").write_bytes(os.urandom(6 * 1024 * 1024))
        client.log_artifacts(run_id, str(files), artifact_path="data")
        artifacts = {str(p.relative_to(files)): sha256_file(p) for p in files.rglob("*") if p.is_file()}

        model = f"backup-model-{time.time_ns()}"
        mlflow.set_tracking_uri(stack.url)
        with mlflow.start_run(experiment_id=experiment_id) as model_run:
            info = mlflow.pyfunc.log_model(name="m", python_model=AddOne(),
                                           registered_model_name=model, pip_requirements=["pandas"])
        version = str(info.registered_model_version)
        client.set_registered_model_alias(model, "champion", version)

    user, password = new_user(stack, f"carol{time.time_ns() % 10**8}")
    granted = user_script(stack, "grant", user, "EDIT", "experiment", experiment)
    assert granted.returncode == 0, granted.stderr

    started = time.monotonic()
    result = script(stack, "backup", str(work / "out"))
    assert result.returncode == 0, result.stderr
    archives = list((work / "out").glob("mlflow-backup-*.tar"))
    assert len(archives) == 1, archives
    print(f"backup took {time.monotonic() - started:.1f} s; archive "
          f"{archives[0].stat().st_size} bytes")
    return {
        "archive": archives[0], "work": work, "experiment_id": experiment_id, "runs": runs,
        "run_id": run_id, "artifacts": artifacts, "model": model, "version": version,
        "model_run_id": model_run.info.run_id, "user": (user, password),
        "models_password": stack.secret("mlflow", "models_password"),
    }


def test_archive_lists_every_file_with_its_checksum(saved):
    archive = saved["archive"]
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        names = {m.name for m in tar.getmembers()} - {"manifest.json"}
        assert names == set(manifest["files"])
        for member in tar.getmembers():
            if member.name != "manifest.json":
                data = tar.extractfile(member).read()
                assert hashlib.sha256(data).hexdigest() == manifest["files"][member.name]["sha256"]
                assert len(data) == manifest["files"][member.name]["size"]
    assert manifest["mlflow_version"] == mlflow.__version__
    assert manifest["secrets_included"] is False
    assert "databases/mlflow.pgdump" in names and "databases/mlflow_auth.pgdump" in names
    weights = [n for n in names if n.endswith(f"{saved['run_id']}/artifacts/data/nested/weights.bin")]
    assert len(weights) == 1, sorted(names)[:20]
    assert manifest["files"][weights[0]]["sha256"] == saved["artifacts"]["nested/weights.bin"]


@pytest.mark.parametrize("member", ["databases/mlflow.pgdump", "weights.bin"])
def test_modified_archive_is_refused_before_anything_changes(stack, admin, saved, member):
    tampered = saved["work"] / f"tampered-{member.replace('/', '_')}.tar"
    shutil.copyfile(saved["archive"], tampered)
    with tarfile.open(tampered) as tar:
        target = next(m for m in tar.getmembers() if m.name.endswith(member))
    with open(tampered, "r+b") as f:
        f.seek(target.offset_data + target.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))

    result = script(stack, "restore", str(tampered))
    assert result.returncode == 1
    assert "damaged or was modified" in result.stderr and target.name in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert stack.container_health("mlflow") == "healthy"
    assert requests.get(stack.url + SEARCH, auth=admin, timeout=10).status_code == 200


def test_restore_refuses_a_stack_that_holds_runs(stack, saved):
    result = script(stack, "restore", str(saved["archive"]))
    assert result.returncode == 1
    assert "already holds" in result.stderr and "--force" in result.stderr, result.stderr
    assert stack.container_health("mlflow") == "healthy"


def test_restore_into_a_fresh_stack_brings_everything_back(stack, admin, saved, as_user, tmp_path):
    old_models_password = saved["models_password"]
    stack.down(volumes=True)
    # The fresh stack gets the session's admin password, so later tests keep working; the
    # models account shows how restored accounts follow the NEW stack's secrets.
    stack.env["MLFLOW_ADMIN_PASSWORD"] = admin[1]
    try:
        stack.up()
        assert stack.secret("mlflow", "models_password") != old_models_password
        started = time.monotonic()
        result = script(stack, "restore", str(saved["archive"]))
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"restore took {time.monotonic() - started:.1f} s")
        assert stack.container_health("mlflow") == "healthy"
    finally:
        # Recreate the one-shot secrets container without the variable (the stored secret
        # keeps the value), so no password stays in its `docker inspect`.
        stack.env.pop("MLFLOW_ADMIN_PASSWORD", None)
        stack.up()

    as_user(*admin)
    client = MlflowClient()
    found = client.search_runs([saved["experiment_id"]])
    assert {r.info.run_id for r in found} == set(saved["runs"]) | {saved["model_run_id"]}
    for run_id, values in saved["runs"].items():
        history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
        assert [m.value for m in history] == values
    for relative, digest in saved["artifacts"].items():
        path = mlflow.artifacts.download_artifacts(
            run_id=saved["run_id"], artifact_path=f"data/{relative}", dst_path=str(tmp_path))
        assert sha256_file(path) == digest, relative

    assert client.get_model_version_by_alias(saved["model"], "champion").version == saved["version"]
    model = mlflow.pyfunc.load_model(f"models:/{saved['model']}@champion")
    assert list(model.predict(pd.DataFrame({"x": [1.0]}))) == [2.0]

    # Users come back with their passwords and permissions; the stack's own accounts follow
    # the new stack's secrets.
    user, password = saved["user"]
    assert requests.get(stack.url + SEARCH, auth=(user, password), timeout=10).status_code == 200
    as_user(user, password)
    MlflowClient().create_run(saved["experiment_id"])
    models = ("models", stack.secret("mlflow", "models_password"))
    assert requests.get(stack.url + SEARCH, auth=models, timeout=10).status_code == 200
    old = requests.get(stack.url + SEARCH, auth=("models", old_models_password), timeout=10)
    assert old.status_code == 401
    assert requests.get(stack.url + SEARCH, auth=admin, timeout=10).status_code == 200
