"""Guards what serve.py relies on when it tells the workers the admin is bootstrapped.

`mlflow server --app-name basic-auth` bootstraps the admin once and sets
_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED for its workers, so that each worker's create_app only
opens the auth store. The stack's app has its own name, so serve.py prepares the accounts
and sets the variable itself. These tests fail when MLflow stops honouring the variable
(the workers would bootstrap again: slower, still correct) and when `mlflow server` sets
it for every app name (then serve.py's line can go)."""

import inspect

import pytest


@pytest.fixture
def auth_calls(monkeypatch):
    import mlflow.server.auth as auth

    calls = []
    monkeypatch.setattr(auth.store, "init_db", lambda *a, **k: calls.append("init_db"))
    monkeypatch.setattr(auth, "bootstrap_admin_user", lambda: calls.append("bootstrap"))
    return auth, calls


def test_a_worker_told_the_admin_is_bootstrapped_only_opens_the_store(auth_calls, monkeypatch):
    auth, calls = auth_calls
    monkeypatch.setenv("_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED", "true")
    auth._init_store_for_app()
    assert calls == ["init_db"]


def test_a_worker_not_told_bootstraps_the_admin_itself(auth_calls, monkeypatch):
    auth, calls = auth_calls
    monkeypatch.delenv("_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED", raising=False)
    auth._init_store_for_app()
    assert calls == ["bootstrap"]


def test_mlflow_server_tells_the_workers_only_for_its_own_basic_auth_app():
    from mlflow.server import _run_server

    source = inspect.getsource(_run_server)
    assert 'if app_name == "basic-auth":' in source
    branch = source[source.index('if app_name == "basic-auth":'):]
    assert "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED" in branch.split("\n\n")[0]
    assert source.count("_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED") == 1


def test_the_refused_admin_password_is_mlflows_legacy_default():
    from mlflow.server.auth import _LEGACY_DEFAULT_ADMIN_PASSWORD

    from mlflow_stack.secrets_init import LEGACY_MLFLOW_ADMIN_PASSWORD

    assert LEGACY_MLFLOW_ADMIN_PASSWORD == _LEGACY_DEFAULT_ADMIN_PASSWORD
