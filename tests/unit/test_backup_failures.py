"""scripts/backup_restore.py: a step that fails without a message says its exit status, and
a backup whose bucket copy failed that way is tried once more, never more."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import backup_restore  # noqa: E402


def test_reason_prefers_the_last_line_printed():
    assert backup_restore.reason(b"mc: <ERROR> Access Denied.\n\n", 1) == "mc: <ERROR> Access Denied."


@pytest.mark.parametrize(("code", "expected"), [
    (1, "exit status 1 without a message"),
    (141, "exit status 141 (killed by signal 13) without a message"),
    (-13, "killed by signal 13 without a message"),
])
def test_reason_without_output_names_the_exit_status(code, expected):
    assert backup_restore.reason(b" \n", code) == expected


def run_backup(monkeypatch, tmp_path, failures):
    calls = []

    def backup(directory):
        calls.append(directory)
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(backup_restore, "backup", backup)
    monkeypatch.setattr(sys, "argv", ["backup_restore.py", "backup", str(tmp_path)])
    return backup_restore.main(), len(calls)


def test_an_unexplained_bucket_copy_failure_is_tried_once_more(monkeypatch, tmp_path, capsys):
    failure = backup_restore.UnexplainedFailure("copying bucket 'mlflow' failed: exit status 1")
    assert run_backup(monkeypatch, tmp_path, [failure]) == (0, 2)
    assert "trying the whole backup once more" in capsys.readouterr().out


def test_a_second_unexplained_failure_ends_the_backup(monkeypatch, tmp_path, capsys):
    failures = [backup_restore.UnexplainedFailure("first"), backup_restore.UnexplainedFailure("second")]
    assert run_backup(monkeypatch, tmp_path, failures) == (1, 2)
    assert "backup: second" in capsys.readouterr().err


def test_an_explained_failure_is_not_tried_again(monkeypatch, tmp_path, capsys):
    failures = [backup_restore.Failure("copying bucket 'mlflow' failed: mc: <ERROR> Access Denied.")]
    assert run_backup(monkeypatch, tmp_path, failures) == (1, 1)
    assert "Access Denied" in capsys.readouterr().err
