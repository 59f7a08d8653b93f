"""scripts/doctor: passes on a healthy stack and names the fix for what is wrong."""

import os
import subprocess

from .stack import REPO


def doctor(stack, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                          "MLFLOW_PUBLIC_URL", "MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [str(REPO / "scripts" / "doctor")], capture_output=True, text=True, timeout=180,
        env={**clean, **stack.env, "COMPOSE_PROJECT_NAME": stack.project,
             "MLFLOW_PUBLIC_URL": f"http://localhost:{stack.port}", **env},
    )
    return result, result.stdout.splitlines()


def line(lines, prefix):
    found = [i for i, text in enumerate(lines) if text.startswith(prefix)]
    assert found, f"no line starting with {prefix!r} in:\n" + "\n".join(lines)
    return found[0]


def test_doctor_passes_on_the_healthy_stack(stack):
    result, lines = doctor(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [text for text in lines if text.startswith("FAIL")], result.stdout
    for check in ("docker", "compose", "container mlflow", "container postgres",
                  "container minio", "public host", "tracking login", "browser changes",
                  "artifact round trip",
                  "docker disk", "clock", "log limits", "metrics", "encryption keys"):
        line(lines, f"OK   {check}:")
    # Whether gc ran and logins failed depends on the tests before; each gets its line.
    for check in ("gc", "failed logins"):
        assert [text for text in lines
                if text.startswith((f"OK   {check}:", f"WARN {check}:"))], result.stdout
    assert "Traceback" not in result.stderr


def test_doctor_names_an_address_that_guessed_passwords(stack):
    from .test_47_login_limit import logins_from

    with stack.machine("doctor-guesser") as guesser:
        results = logins_from(guesser, "doctor-victim", attempts=12)
        assert {status for status, _ in results} == {401, 429}, results
        result, lines = doctor(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    i = line(lines, "WARN failed logins:")
    assert guesser.address in lines[i] and "doctor-victim" in lines[i], lines[i]
    assert lines[i + 1].lstrip().startswith("fix:"), lines[i + 1]


def test_doctor_says_when_gc_last_ran(stack):
    gc = subprocess.run([str(REPO / "scripts" / "gc"), "--older-than", "30d"],
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": stack.project})
    assert gc.returncode == 0, gc.stderr
    result, lines = doctor(stack)
    i = line(lines, "OK   gc:")
    assert "ok in" in lines[i] and "older than 30d" in lines[i], lines[i]


def test_doctor_names_a_wrong_password(stack, admin):
    result, lines = doctor(stack, MLFLOW_TRACKING_USERNAME=admin[0],
                           MLFLOW_TRACKING_PASSWORD="wrong-password-123")
    assert result.returncode == 1, result.stdout + result.stderr
    i = line(lines, "FAIL tracking login:")
    assert "wrong user name or password" in lines[i], lines[i]
    assert lines[i + 1].lstrip().startswith("fix:") and "MLFLOW_TRACKING_PASSWORD" in lines[i + 1]
    line(lines, "OK   public host:")  # only the login is wrong
    assert "Traceback" not in result.stderr


def test_doctor_names_allowed_hosts_for_an_unlisted_host(stack):
    result, lines = doctor(stack, MLFLOW_PUBLIC_URL=f"http://unlisted.example.test:{stack.port}")
    assert result.returncode == 1, result.stdout + result.stderr
    i = line(lines, "FAIL public host:")
    assert "unlisted.example.test" in lines[i] and "Invalid Host header" in lines[i], lines[i]
    fix = lines[i + 1]
    assert fix.lstrip().startswith("fix:"), fix
    assert "MLFLOW_ALLOWED_HOSTS" in fix and "unlisted.example.test" in fix, fix
    line(lines, "OK   tracking login:")  # the rest of the stack is fine
    line(lines, "OK   artifact round trip:")


def test_doctor_says_a_private_ip_is_read_only_in_the_browser_until_listed(stack):
    result, lines = doctor(stack, MLFLOW_PUBLIC_URL=f"http://10.1.2.3:{stack.port}")
    assert result.returncode == 1, result.stdout + result.stderr
    line(lines, "OK   public host:")  # MLflow lets private addresses in...
    i = line(lines, "FAIL browser changes:")  # ...but refuses changes from their pages
    assert "Cross-origin request blocked" in lines[i], lines[i]
    fix = lines[i + 1]
    assert "MLFLOW_ALLOWED_HOSTS" in fix and "10.1.2.3" in fix, fix
