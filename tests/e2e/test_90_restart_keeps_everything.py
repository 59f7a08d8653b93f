"""`docker compose down` (without -v) and `up` keep every kind of data and all logins."""

import hashlib
import time

import mlflow
import pandas as pd
import requests
from mlflow import MlflowClient

from .test_10_auth_and_hosts import browser_write
from .test_30_model_registry import AddOne
from .test_40_permissions import new_user


def test_down_and_up_keeps_runs_artifacts_models_users_and_admin_password(
    stack, admin, as_user, tmp_path
):
    as_user(*admin)
    client = MlflowClient()
    experiment_id = client.create_experiment(f"durable-{time.time_ns()}")
    run_id = client.create_run(experiment_id).info.run_id
    for step in range(50):
        client.log_metric(run_id, "acc", step / 50, step=step)
    payload = (tmp_path / "weights.bin")
    payload.write_bytes(hashlib.sha256(b"seed").digest() * 4096)
    client.log_artifact(run_id, str(payload))
    name = f"durable-model-{time.time_ns()}"
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(name="m", python_model=AddOne(), registered_model_name=name,
                                       pip_requirements=["pandas"])
    client.set_registered_model_alias(name, "champion", str(info.registered_model_version))
    user, user_password = new_user(stack, f"bob{time.time_ns() % 10**8}")

    stack.down(volumes=False)
    # Also prove MLFLOW_ALLOWED_HOSTS: the restarted server accepts a public name.
    stack.env["MLFLOW_ALLOWED_HOSTS"] = "mlflow.example.test"
    stack.up()

    assert stack.admin_password() == admin[1]
    client = MlflowClient()
    history = client.get_metric_history(run_id, "acc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [s / 50 for s in range(50)]
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="weights.bin",
                                               dst_path=str(tmp_path / "back"))
    assert open(path, "rb").read() == payload.read_bytes()
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(model.predict(pd.DataFrame({"x": [1.0]}))) == [2.0]

    search = stack.url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, auth=(user, user_password), timeout=10).status_code == 200
    assert requests.get(search, auth=admin, timeout=10).status_code == 200
    public = requests.get(search, auth=admin, timeout=10,
                          headers={"Host": f"mlflow.example.test:{stack.port}"})
    assert public.status_code == 200, public.text
    # ... and the UI served under that name (or behind the HTTPS proxy) may make changes.
    for origin in (f"http://mlflow.example.test:{stack.port}", "https://mlflow.example.test"):
        write = browser_write(stack, admin, origin, host=f"mlflow.example.test:{stack.port}")
        assert write.status_code == 200, (origin, write.text)
    assert browser_write(stack, admin, "http://mlflow.example.test.evil.test").status_code == 403
