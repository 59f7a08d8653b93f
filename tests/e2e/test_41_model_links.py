"""Links from runs to logged models, as each reader gets them from the stack: MLflow's
redaction (checked first by server/mlflow_stack/model_link_redaction.py) still withholds
them from a user denied logged models, and everyone else reads runs as the admin does."""

import time

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, Metric, Param

from .test_40_permissions import new_user


@pytest.fixture(scope="module")
def linked(stack, admin):
    """An experiment with a run that logged a model and a run that did not, a reader with
    MLflow's default permission, and a reader whose role denies every logged model."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    mp.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
    client = MlflowClient(tracking_uri=stack.url)
    experiment_id = client.create_experiment(f"model-links-{time.time_ns()}")
    model = client.create_logged_model(experiment_id, name="linked")
    with_model = client.create_run(experiment_id, start_time=2).info.run_id
    client.log_outputs(with_model, [LoggedModelOutput(model.model_id, 0)])
    without_model = client.create_run(experiment_id, start_time=1).info.run_id
    for run_id in (with_model, without_model):
        client.log_batch(run_id, metrics=[Metric("loss", 0.5, 1, 0)], params=[Param("p", "1")])
    mp.undo()

    reader = new_user(stack, f"reader{time.time_ns() % 10**8}")
    denied = new_user(stack, f"nomodels{time.time_ns() % 10**8}")

    def call(path, body):
        r = requests.post(f"{stack.url}{path}", json=body, auth=admin, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    role = call("/api/3.0/mlflow/roles/create",
                {"name": f"no-models-{time.time_ns()}", "workspace": "default"})["role"]
    call("/api/3.0/mlflow/roles/permissions/add",
         {"role_id": role["id"], "resource_type": "logged_model", "resource_pattern": "*",
          "permission": "DENY"})
    call("/api/3.0/mlflow/roles/assign", {"username": denied[0], "role_id": role["id"]})
    return dict(experiment_id=experiment_id, model_id=model.model_id, with_model=with_model,
                without_model=without_model, admin=admin, reader=reader, denied=denied)


def read(stack, auth, linked):
    """The runs as the UI and a laptop read them: one search, each run, a metric history."""
    def get(method, path, **kwargs):
        r = requests.request(method, f"{stack.url}{path}", auth=auth, timeout=30, **kwargs)
        assert r.status_code == 200, r.text
        return r.json()

    return {
        "search": get("POST", "/api/2.0/mlflow/runs/search",
                      json={"experiment_ids": [linked["experiment_id"]]})["runs"],
        "ajax search": get("POST", "/ajax-api/2.0/mlflow/runs/search",
                           json={"experiment_ids": [linked["experiment_id"]]})["runs"],
        **{f"get {name}": get("GET", "/api/2.0/mlflow/runs/get",
                              params={"run_id": linked[name]})["run"]
           for name in ("with_model", "without_model")},
        "history": get("GET", "/api/2.0/mlflow/metrics/get-history",
                       params={"run_id": linked["with_model"], "metric_key": "loss"}),
    }


def test_a_reader_reads_runs_and_their_model_links_as_the_admin_does(stack, linked):
    as_admin = read(stack, linked["admin"], linked)
    assert as_admin["get with_model"]["outputs"]["model_outputs"][0]["model_id"] == \
        linked["model_id"]
    assert read(stack, linked["reader"], linked) == as_admin


def test_a_reader_denied_logged_models_gets_the_runs_without_their_model_links(stack, linked):
    as_admin = read(stack, linked["admin"], linked)
    as_denied = read(stack, linked["denied"], linked)
    assert as_admin["get with_model"]["outputs"] != {}
    for runs in ("search", "ajax search"):
        assert [run["info"]["run_id"] for run in as_denied[runs]] == \
            [linked["with_model"], linked["without_model"]]
        assert as_denied[runs] == [{**as_admin[runs][0], "outputs": {}}, as_admin[runs][1]]
    assert as_denied["get with_model"] == {**as_admin["get with_model"], "outputs": {}}
    assert as_denied["get without_model"] == as_admin["get without_model"]
    assert as_denied["history"] == as_admin["history"]
