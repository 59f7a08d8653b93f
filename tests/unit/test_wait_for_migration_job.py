"""Replicas in job mode (the Helm chart) wait for the migration job; what they say meanwhile."""

import pytest

from mlflow_stack import StackError, serve
from mlflow_stack.settings import Settings


def test_a_failing_check_is_a_reason_to_wait_not_a_crash(monkeypatch):
    def broken(connect, accounts):
        raise RuntimeError("")  # psycopg2 errors can have no message at all

    monkeypatch.setattr(serve, "pending_work", broken)
    assert serve._pending_or_reason(None, {}) == ["cannot check yet (RuntimeError: )"]


def test_the_wait_ends_with_a_sentence_naming_what_is_pending(monkeypatch, capsys):
    monkeypatch.setattr(serve, "pending_work", lambda connect, accounts: ["auth schema empty -> x"])
    monkeypatch.setattr(serve.time, "sleep", lambda s: None)
    settings = Settings.from_env({"MLFLOW_MIGRATIONS": "job", "MLFLOW_STARTUP_TIMEOUT": "1"})
    clock = iter(range(0, 100, 1))
    monkeypatch.setattr(serve.time, "monotonic", lambda: next(clock))
    with pytest.raises(StackError, match=r"did not finish within 1 s \(still pending: auth schema"):
        serve.wait_for_migration_job(settings, {"admin_password": "a", "models_password": "m"})
    # Said once, not once a second.
    assert capsys.readouterr().err.count("waiting for the migration job") == 1
