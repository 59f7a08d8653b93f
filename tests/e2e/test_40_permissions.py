"""A second, non-admin user: READ by default, EDIT once the operator grants it."""

import os
import subprocess
import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .stack import REPO


def user_script(stack, *args, input=None):
    return subprocess.run(
        [str(REPO / "scripts" / "user"), *args], capture_output=True, text=True, input=input,
        env={**os.environ, "COMPOSE_PROJECT_NAME": stack.project}, timeout=120,
    )


def new_user(stack, name: str) -> tuple[str, str]:
    """Adds a user with `scripts/user add`; returns its name and the password it printed."""
    result = user_script(stack, "add", name)
    assert result.returncode == 0, result.stderr
    return name, result.stdout.split("password: ")[1].strip()


@pytest.fixture(scope="module")
def alice(stack):
    return new_user(stack, f"alice{time.time_ns() % 10**8}")


def test_user_script_lists_the_new_user(stack, alice):
    result = user_script(stack, "list")
    assert result.returncode == 0, result.stderr
    assert alice[0] in result.stdout


def test_read_only_user_reads_but_cannot_write_until_granted(stack, admin, alice, as_user):
    as_user(*admin)
    experiment = f"shared-{time.time_ns()}"
    experiment_id = MlflowClient().create_experiment(experiment)

    as_user(*alice)
    client = MlflowClient()
    assert client.get_experiment(experiment_id).name == experiment
    with pytest.raises(MlflowException) as e:
        client.create_run(experiment_id)
    assert "403" in e.value.message and "Permission denied" in e.value.message

    result = user_script(stack, "grant", alice[0], "EDIT", "experiment", experiment)
    assert result.returncode == 0, result.stderr
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "who", alice[0])
    assert client.get_run(run.info.run_id).data.params["who"] == alice[0]


def test_non_admin_cannot_manage_users(stack, alice, as_user):
    from mlflow.server import get_app_client

    as_user(*alice)
    auth = get_app_client("basic-auth", tracking_uri=stack.url)
    with pytest.raises(MlflowException) as e:
        auth.create_user(f"mallory{time.time_ns() % 10**6}", "mallory-password-123")
    assert "403" in e.value.message and "Permission denied" in e.value.message


def test_user_script_errors_are_one_clear_line(stack):
    result = user_script(stack, "grant", "nobody-here", "EDIT", "experiment", "no-such-experiment")
    assert result.returncode == 1
    assert "no experiment named 'no-such-experiment'" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_account_exists_and_is_not_an_admin(stack):
    import requests

    models = ("models", stack.secret("mlflow", "models_password"))
    search = stack.url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, auth=models, timeout=10).status_code == 200
    create = requests.post(stack.url + "/api/2.0/mlflow/users/create", auth=models, timeout=10,
                           json={"username": "eve-by-models", "password": "eve-password-123"})
    assert create.status_code == 403
