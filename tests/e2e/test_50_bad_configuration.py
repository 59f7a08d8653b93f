"""Bad configuration fails fast, with one sentence that names the fix, and loses nothing."""

import os
import subprocess
import tempfile

import pytest
import requests


def test_short_admin_password_is_refused_before_anything_is_written(stack, admin):
    result = stack.compose(
        "run", "--rm", "-e", "MLFLOW_ADMIN_PASSWORD=tooshort", "secrets", check=False
    )
    assert result.returncode == 1
    assert "MLFLOW_ADMIN_PASSWORD in .env has 8 characters; it needs at least 12" in result.stderr
    assert "Traceback" not in result.stderr
    assert stack.admin_password() == admin[1]


def _run_server_with_secrets(stack, overrides: dict[str, str]) -> subprocess.CompletedProcess:
    """Start a second server container whose secret files differ from the stack's."""
    names = ("postgres_password", "s3_access_key", "s3_secret_key", "admin_password",
             "models_password", "flask_secret_key")
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(overrides.get(name) or stack.secret("mlflow", name))
            os.chmod(path, 0o644)
        return stack.compose(
            "run", "--rm", "--no-deps", "-T", "-v", f"{directory}:/wrong-secrets:ro",
            "-e", "SECRETS_DIR=/wrong-secrets", "-e", "MLFLOW_STARTUP_TIMEOUT=20",
            "mlflow", check=False, timeout=180,
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"s3_secret_key": "not-the-right-key-123"}, "rejected MLflow's S3 keys"),
        ({"s3_access_key": "nobody"}, "rejected MLflow's S3 keys"),
        ({"postgres_password": "not-the-right-password"}, "PostgreSQL rejected the mlflow role's password"),
    ],
)
def test_wrong_credentials_stop_the_server_with_the_fix(stack, overrides, message):
    result = _run_server_with_secrets(stack, overrides)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert message in output
    assert "Traceback" not in output
    for value in overrides.values():
        assert value not in output


def test_invalid_setting_names_the_variable(stack):
    result = stack.compose(
        "run", "--rm", "--no-deps", "-T", "-e", "MLFLOW_DEFAULT_PERMISSION=WRITE", "mlflow",
        check=False, timeout=120,
    )
    assert result.returncode == 1
    assert "MLFLOW_DEFAULT_PERMISSION='WRITE' is not one of READ, EDIT, MANAGE, NO_PERMISSIONS" in result.stderr


def test_the_running_stack_is_untouched(stack, admin):
    r = requests.get(stack.url + "/api/2.0/mlflow/experiments/search?max_results=1", auth=admin, timeout=10)
    assert r.status_code == 200
