"""scripts/gc and the scheduled `gc` service: runs and experiments in the deleted stage lose
their rows and their objects in MinIO; live runs, recently deleted runs and the files of
registered model versions stay, also while clients keep logging."""

import datetime
import json
import os
import subprocess
import threading
import time

import mlflow
import pytest
from mlflow import MlflowClient

from .stack import REPO

RUN_TABLES = ("runs", "metrics", "latest_metrics", "params", "tags")


def gc_script(stack, *args):
    return subprocess.run(
        [str(REPO / "scripts" / "gc"), *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": stack.project},
    )


def gc_ok(stack, *args) -> str:
    result = gc_script(stack, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def sql(stack, query: str) -> list[str]:
    out = stack.exec("postgres", "psql", "--no-psqlrc", "--username=postgres", "--dbname=mlflow",
                     "--tuples-only", "--no-align", "--command", query)
    return [line for line in out.splitlines() if line]


def run_rows(stack, run_id: str) -> dict[str, int]:
    """Rows per table that belong to the run."""
    counts = " , ".join(f"(SELECT count(*) FROM {t} WHERE run_uuid = '{run_id}')" for t in RUN_TABLES)
    return dict(zip(RUN_TABLES, map(int, sql(stack, f"SELECT {counts}")[0].split("|"))))


def objects(stack, prefix: str) -> dict[str, int]:
    """Object key (below artifacts/<prefix>/) -> size, as MinIO's root sees the bucket."""
    out = stack.mc("ls", "--recursive", "--json", f"stack/mlflow/artifacts/{prefix}/")
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["key"]: row["size"] for row in rows if row.get("type") == "file"}


@pytest.fixture
def client(stack, admin, as_user):
    as_user(*admin)
    return MlflowClient()


def make_run(client, experiment_id, tmp_path, name="r") -> str:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "p", name)
    client.log_metric(run_id, "m", 1.0)
    client.set_tag(run_id, "t", name)
    data = tmp_path / f"{name}-{run_id}"
    data.mkdir()
    (data / "weights.bin").write_bytes(os.urandom(3000))
    (data / "sub").mkdir()
    (data / "sub" / "notes.txt").write_text(name)
    client.log_artifacts(run_id, str(data))
    return run_id


def assert_run_intact(stack, client, experiment_id, run_id, tmp_path):
    rows = run_rows(stack, run_id)
    assert all(rows.values()), rows
    assert set(objects(stack, f"{experiment_id}/{run_id}")) == {
        "artifacts/weights.bin", "artifacts/sub/notes.txt"}
    local = client.download_artifacts(run_id, "sub/notes.txt", str(tmp_path))
    assert open(local).read() == client.get_run(run_id).data.params["p"]


def test_deleted_run_loses_its_rows_and_objects(stack, client, tmp_path):
    experiment_id = client.create_experiment(f"gc-run-{time.time_ns()}")
    live = make_run(client, experiment_id, tmp_path, "live")
    doomed = make_run(client, experiment_id, tmp_path, "doomed")
    client.delete_run(doomed)
    assert len(objects(stack, f"{experiment_id}/{doomed}")) == 2

    out = gc_ok(stack, "--older-than", "0s", "--dry-run")
    assert out.startswith("gc (dry run): would delete "), out
    assert all(run_rows(stack, doomed).values()) and objects(stack, f"{experiment_id}/{doomed}")

    out = gc_ok(stack, "--older-than", "0s")
    assert out.startswith("gc: deleted ") and "artifact object" in out, out
    assert run_rows(stack, doomed) == dict.fromkeys(RUN_TABLES, 0)
    assert objects(stack, f"{experiment_id}/{doomed}") == {}
    assert_run_intact(stack, client, experiment_id, live, tmp_path)

    last = gc_ok(stack, "--last")
    assert last.startswith("last gc (manual, older than 0s) started ") and ": ok in " in last, last
    row = sql(stack, "SELECT status, trigger, older_than, runs >= 1, objects >= 2 "
                     "FROM stack_gc_runs ORDER BY id DESC LIMIT 1")
    assert row == ["ok|manual|0s|t|t"], row


def test_live_and_recently_deleted_runs_are_untouched(stack, client, tmp_path):
    experiment_id = client.create_experiment(f"gc-recent-{time.time_ns()}")
    live = make_run(client, experiment_id, tmp_path, "live")
    recent = make_run(client, experiment_id, tmp_path, "recent")
    client.delete_run(recent)

    gc_ok(stack, "--older-than", "1d")

    assert_run_intact(stack, client, experiment_id, live, tmp_path)
    rows = run_rows(stack, recent)
    assert all(rows.values()), rows
    assert len(objects(stack, f"{experiment_id}/{recent}")) == 2
    client.restore_run(recent)  # still only marked deleted
    assert_run_intact(stack, client, experiment_id, recent, tmp_path)


def test_deleted_experiment_goes_with_its_runs_and_models_but_not_registered_files(
        stack, client, tmp_path):
    experiment_id = client.create_experiment(f"gc-experiment-{time.time_ns()}")
    runs = [make_run(client, experiment_id, tmp_path, f"r{i}") for i in range(2)]
    client.delete_run(runs[0])  # deleted before its experiment
    models = []
    for name in ("plain", "registered"):
        model = client.create_logged_model(experiment_id, name=name, source_run_id=runs[1])
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.bin").write_bytes(os.urandom(2000))
        client.log_model_artifacts(model.model_id, str(folder))
        models.append(model.model_id)
    registered_name = f"gc-registered-{time.time_ns()}"
    mlflow.register_model(f"models:/{models[1]}", registered_name)
    before = objects(stack, experiment_id)
    assert len(before) == 6, before
    client.delete_experiment(experiment_id)

    gc_ok(stack, "--older-than", "0s")

    assert sql(stack, f"SELECT count(*) FROM experiments WHERE experiment_id = {experiment_id}") == ["0"]
    assert sql(stack, "SELECT count(*) FROM logged_models WHERE experiment_id = "
                      f"{experiment_id}") == ["0"]
    for run_id in runs:
        assert run_rows(stack, run_id) == dict.fromkeys(RUN_TABLES, 0)
    # Only what the registered model version points at is left.
    assert set(objects(stack, experiment_id)) == {f"models/{models[1]}/artifacts/model.bin"}
    local = mlflow.artifacts.download_artifacts(f"models:/{registered_name}/1", dst_path=str(tmp_path / "dl"))
    assert open(os.path.join(local, "model.bin"), "rb").read() == (tmp_path / "registered" / "model.bin").read_bytes()


def test_gc_during_load_loses_nothing_live(stack, client, tmp_path):
    experiment_id = client.create_experiment(f"gc-load-{time.time_ns()}")
    live = [client.create_run(experiment_id).info.run_id for _ in range(4)]
    stop = threading.Event()
    logged: dict[str, dict] = {run_id: {"steps": 0, "files": {}} for run_id in live}
    errors = []

    def writer(run_id):
        writer_client = MlflowClient()
        folder = tmp_path / run_id
        folder.mkdir()
        try:
            while not stop.is_set():
                step = logged[run_id]["steps"]
                writer_client.log_metric(run_id, "loss", float(step), step=step)
                logged[run_id]["steps"] = step + 1
                if step % 5 == 0:
                    path = folder / f"f{step}.bin"
                    path.write_bytes(os.urandom(1000 + step))
                    writer_client.log_artifact(run_id, str(path))
                    logged[run_id]["files"][path.name] = path.read_bytes()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{run_id}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=writer, args=(run_id,)) for run_id in live]
    for t in threads:
        t.start()
    try:
        doomed = []
        for round_ in range(2):
            for i in range(3):
                run_id = make_run(client, experiment_id, tmp_path, f"doomed{round_}{i}")
                client.delete_run(run_id)
                doomed.append(run_id)
            gc_ok(stack, "--older-than", "0s")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    for run_id in doomed:
        assert run_rows(stack, run_id) == dict.fromkeys(RUN_TABLES, 0)
        assert objects(stack, f"{experiment_id}/{run_id}") == {}
    for run_id, what in logged.items():
        assert what["steps"] > 10, what["steps"]  # the writers really ran alongside gc
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == list(range(what["steps"]))
        stored = objects(stack, f"{experiment_id}/{run_id}")
        assert {key.rsplit("/", 1)[1] for key in stored} == set(what["files"])
        for name, data in what["files"].items():
            local = client.download_artifacts(run_id, name, str(tmp_path / "dl" / run_id))
            assert open(local, "rb").read() == data


def test_scheduled_service_runs_gc_at_its_time(stack, client, tmp_path):
    experiment_id = client.create_experiment(f"gc-schedule-{time.time_ns()}")
    doomed = make_run(client, experiment_id, tmp_path, "doomed")
    client.delete_run(doomed)
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=40)
    env = {"GC_SCHEDULE_TIME": at.strftime("%H:%M:%S"), "GC_OLDER_THAN": "0s"}
    try:
        stack.compose("--profile", "gc", "up", "-d", "gc", env=env)
        deadline = time.monotonic() + 180
        while run_rows(stack, doomed)["runs"] and time.monotonic() < deadline:
            time.sleep(3)
        logs = stack.compose("--profile", "gc", "logs", "--no-color", "gc").stdout
        assert run_rows(stack, doomed) == dict.fromkeys(RUN_TABLES, 0), logs
        assert objects(stack, f"{experiment_id}/{doomed}") == {}
        assert gc_ok(stack, "--last").startswith("last gc (schedule, older than 0s)")
        assert f"next gc at {at:%Y-%m-%d %H:%M:%S} UTC" in logs, logs
        assert "gc: deleted " in logs, logs
        started = time.monotonic()
        stack.compose("--profile", "gc", "stop", "gc", env=env)
        assert time.monotonic() - started < 8  # it stopped on SIGTERM, not when killed
        assert "gc-schedule: stopped" in stack.compose("--profile", "gc", "logs", "gc").stdout
    finally:
        stack.compose("--profile", "gc", "rm", "--stop", "--force", "gc", env=env, check=False)


@pytest.mark.parametrize("value", ["3x", "1.5d", "thirty days"])
def test_bad_older_than_is_one_sentence(stack, value):
    result = gc_script(stack, "--older-than", value)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [f"gc: --older-than '{value}' is not a duration; use a whole number followed "
                     "by d, h, m or s, such as 30d, 12h, 90m or 0s."], result.stderr
