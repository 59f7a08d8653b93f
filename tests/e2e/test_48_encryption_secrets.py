"""The keys MLflow encrypts stored secrets with: the AI Gateway's provider API keys
(MLFLOW_CRYPTO_KEK_PASSPHRASE) and the registry webhooks' signing secrets
(MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY). Generated per stack, the same in every server
worker and across restarts, rotated from .env (with `mlflow crypto rotate-kek` for the
gateway), and a restore onto a stack with other keys is refused with the fix.

A receiver on the stack network records webhook deliveries (verifying MLflow's signature)
and plays an OpenAI-compatible provider, whose Authorization header shows the API key the
server decrypted. MLflow refuses private addresses for both unless told otherwise; only
this module's mlflow container is told so (webhook_receiver/allow-private-ips.yml)."""

import base64
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

from .stack import REPO
from .test_80_backup_restore import script

HERE = Path(__file__).parent / "webhook_receiver"
RECEIVER = (HERE / "receiver.py").read_text()
OVERRIDE = ("-f", str(REPO / "docker-compose.yml"), "-f", str(HERE / "allow-private-ips.yml"))
PORT = "8080"
# More requests than workers, each on its own connection, so every worker answers some.
REQUESTS = 16


def call(stack, auth, method, path, **kwargs):
    """One request on a new connection (uvicorn's workers accept connections in turn)."""
    with requests.Session() as session:
        response = session.request(method, stack.url + path, auth=auth, timeout=60,
                                   headers={"Connection": "close"}, **kwargs)
    return response


def restart_mlflow(stack):
    stack.compose("restart", "mlflow")
    stack.wait_healthy(300)


class Receiver:
    def __init__(self, stack):
        self.secret = "whsec-" + secrets.token_urlsafe(16)
        self.machine = stack.machine(f"hooks{secrets.token_hex(3)}")
        self.process = self.machine.python(RECEIVER, self.secret, PORT)
        self.url = f"http://{self.machine.address}:{PORT}"
        deadline = time.monotonic() + 30
        while True:
            probe = self.machine.python(
                f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=2)")
            if probe.wait() == 0:
                break
            assert time.monotonic() < deadline, self.process.stderr.read() if self.process.poll() else "no receiver"
            time.sleep(0.5)

    def records(self) -> list[dict]:
        out = self.machine.run_python(
            "import os; p='/tmp/deliveries.jsonl'; print(open(p).read() if os.path.exists(p) else '')")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def close(self):
        self.process.kill()
        self.machine.remove()


@pytest.fixture(scope="module")
def receiver(stack):
    stack.compose(*OVERRIDE, "up", "-d", "mlflow")
    stack.wait_healthy(300)
    r = Receiver(stack)
    try:
        yield r
    finally:
        r.close()
        stack.compose("up", "-d", "mlflow")  # back to the default: private addresses refused
        stack.wait_healthy(300)


@pytest.fixture(scope="module")
def webhook(stack, admin, receiver):
    response = call(stack, admin, "POST", "/api/2.0/mlflow/webhooks", json={
        "name": f"hook-{time.time_ns()}", "url": receiver.url + "/hook",
        "events": [{"entity": "MODEL_VERSION", "action": "CREATED"},
                   {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}],
        "secret": receiver.secret,
    })
    assert response.status_code == 200, response.text
    webhook_id = response.json()["webhook"]["webhook_id"]
    yield webhook_id
    # Later tests back up and restore into a stack with other keys: leave nothing encrypted.
    call(stack, admin, "DELETE", f"/api/2.0/mlflow/webhooks/{webhook_id}")


@pytest.fixture(scope="module")
def gateway(stack, admin, receiver):
    """An AI Gateway endpoint whose provider is the receiver; returns (endpoint, api key)."""
    api_key = "sk-test-" + secrets.token_urlsafe(16)
    name = f"gw{time.time_ns()}"
    created = call(stack, admin, "POST", "/ajax-api/3.0/mlflow/gateway/secrets/create", json={
        "secret_name": name, "secret_value": {"api_key": api_key}, "provider": "openai",
        "auth_config": {"api_base": receiver.url + "/v1"}})
    assert created.status_code == 200, created.text
    secret_id = created.json()["secret"]["secret_id"]
    model = call(stack, admin, "POST", "/ajax-api/3.0/mlflow/gateway/model-definitions/create", json={
        "name": name, "secret_id": secret_id, "provider": "openai", "model_name": "gpt-4o-mini"})
    assert model.status_code == 200, model.text
    model_id = model.json()["model_definition"]["model_definition_id"]
    endpoint = call(stack, admin, "POST", "/ajax-api/3.0/mlflow/gateway/endpoints/create", json={
        "name": name, "usage_tracking": False,
        "model_configs": [{"model_definition_id": model_id, "linkage_type": "PRIMARY", "weight": 1}]})
    assert endpoint.status_code == 200, endpoint.text
    yield name, api_key
    gateway_api = "/ajax-api/3.0/mlflow/gateway"
    for path, body in (
            ("endpoints/delete", {"endpoint_id": endpoint.json()["endpoint"]["endpoint_id"]}),
            ("model-definitions/delete", {"model_definition_id": model_id}),
            ("secrets/delete", {"secret_id": secret_id})):
        deleted = call(stack, admin, "DELETE", f"{gateway_api}/{path}", json=body)
        assert deleted.status_code == 200, f"{path}: {deleted.text}"


def webhook_tests_pass_on_every_worker(stack, admin, webhook):
    failures = []
    for _ in range(REQUESTS):
        response = call(stack, admin, "POST", f"/api/2.0/mlflow/webhooks/{webhook}/test", json={})
        result = response.json().get("result", {}) if response.ok else {}
        if not result.get("success"):
            failures.append(f"{response.status_code} {response.text[:300]}")
    assert not failures, f"{len(failures)} of {REQUESTS} webhook tests failed: {failures[:3]}"


def gateway_calls_pass_on_every_worker(stack, admin, gateway, receiver):
    endpoint, api_key = gateway
    before = len(receiver.records())
    failures = []
    for _ in range(REQUESTS):
        response = call(stack, admin, "POST", f"/gateway/{endpoint}/mlflow/invocations",
                        json={"messages": [{"role": "user", "content": "ping"}]})
        if response.status_code != 200 or "pong" not in response.text:
            failures.append(f"{response.status_code} {response.text[:300]}")
    assert not failures, f"{len(failures)} of {REQUESTS} gateway calls failed: {failures[:3]}"
    calls = [r for r in receiver.records()[before:] if r["path"].endswith("/chat/completions")]
    assert len(calls) == REQUESTS
    keys = [{k.lower(): v for k, v in r["headers"].items()}.get("authorization") for r in calls]
    assert keys == [f"Bearer {api_key}"] * REQUESTS, keys[:2]


def test_gateway_does_not_use_mlflows_public_passphrase(stack, admin):
    response = call(stack, admin, "GET", "/ajax-api/3.0/mlflow/gateway/secrets/config")
    assert response.status_code == 200, response.text
    assert response.json()["using_default_passphrase"] is False


def test_keys_are_generated_private_and_not_in_the_container_configuration(stack):
    passphrase = stack.secret("mlflow", "crypto_kek_passphrase")
    key = stack.secret("mlflow", "webhook_encryption_key")
    assert len(passphrase) >= 32 and len(key) == 44
    listing = stack.exec("mlflow", "ls", "-ln", "/secrets/mlflow")
    for name in ("crypto_kek_passphrase", "webhook_encryption_key"):
        line = next(line for line in listing.splitlines() if line.endswith(" " + name))
        assert line.startswith("-rw------- ") and " 1001 1001 " in line, line
    mlflow_id = stack.compose("ps", "-q", "mlflow").stdout.split()[0]
    inspect = subprocess.run(["docker", "inspect", mlflow_id], capture_output=True, text=True,
                             check=True).stdout
    assert passphrase not in inspect and key not in inspect
    assert "MLFLOW_CRYPTO_KEK_PASSPHRASE" not in inspect


def test_webhook_secret_works_on_every_worker_and_after_a_restart(stack, admin, webhook):
    webhook_tests_pass_on_every_worker(stack, admin, webhook)
    restart_mlflow(stack)
    webhook_tests_pass_on_every_worker(stack, admin, webhook)


def test_gateway_key_works_on_every_worker_and_after_a_restart(stack, admin, gateway, receiver):
    gateway_calls_pass_on_every_worker(stack, admin, gateway, receiver)
    restart_mlflow(stack)
    gateway_calls_pass_on_every_worker(stack, admin, gateway, receiver)


def test_model_version_and_alias_events_are_delivered_signed(stack, admin, webhook, receiver):
    model = f"hooked-{time.time_ns()}"
    assert call(stack, admin, "POST", "/api/2.0/mlflow/registered-models/create",
                json={"name": model}).status_code == 200
    experiment = call(stack, admin, "POST", "/api/2.0/mlflow/experiments/create",
                      json={"name": f"hooks-{time.time_ns()}"}).json()["experiment_id"]
    run = call(stack, admin, "POST", "/api/2.0/mlflow/runs/create",
               json={"experiment_id": experiment}).json()["run"]["info"]
    created = call(stack, admin, "POST", "/api/2.0/mlflow/model-versions/create", json={
        "name": model, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]})
    assert created.status_code == 200, created.text
    version = created.json()["model_version"]["version"]
    aliased = call(stack, admin, "POST", "/api/2.0/mlflow/registered-models/alias",
                   json={"name": model, "alias": "champion", "version": version})
    assert aliased.status_code == 200, aliased.text

    deadline = time.monotonic() + 60
    while True:
        hooks = [r for r in receiver.records() if r["path"] == "/hook"
                 and model in r["body"] and "webhook_test" not in r["body"]]
        kinds = {(json.loads(r["body"])["entity"], json.loads(r["body"])["action"]) for r in hooks}
        if {("model_version", "created"), ("model_version_alias", "created")} <= kinds:
            break
        assert time.monotonic() < deadline, f"deliveries so far: {[r['body'][:200] for r in hooks]}"
        time.sleep(1)
    assert all(r["verified"] for r in hooks), [r["headers"] for r in hooks]
    alias = next(json.loads(r["body"]) for r in hooks if '"model_version_alias"' in r["body"])
    assert alias["data"]["alias"] == "champion" and alias["data"]["version"] == version


def test_rotating_both_keys_from_env_keeps_every_secret_usable(stack, admin, webhook, gateway,
                                                              receiver):
    old_passphrase = stack.secret("mlflow", "crypto_kek_passphrase")
    new_passphrase = secrets.token_urlsafe(40)
    new_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    stack.env["MLFLOW_CRYPTO_KEK_PASSPHRASE"] = new_passphrase
    stack.env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] = new_key
    try:
        # The documented procedure: set the values in .env, then `docker compose up -d`.
        stack.compose(*OVERRIDE, "up", "-d")
        stack.wait_healthy(300)
        assert stack.secret("mlflow", "crypto_kek_passphrase") == new_passphrase
        assert stack.secret("mlflow", "crypto_kek_passphrase.previous").splitlines()[0] == old_passphrase
        logs = stack.compose("logs", "--no-color", "mlflow").stdout
        assert "mlflow crypto rotate-kek" in logs and "re-wrapping 1 stored secret" in logs, logs[-3000:]
        assert "re-encrypted 1 signing secret" in logs, logs[-3000:]
        assert new_passphrase not in logs and new_key not in logs and old_passphrase not in logs
        gateway_calls_pass_on_every_worker(stack, admin, gateway, receiver)
        webhook_tests_pass_on_every_worker(stack, admin, webhook)
    finally:
        # The stored values stay; the one-shot secrets container is recreated without them.
        stack.env.pop("MLFLOW_CRYPTO_KEK_PASSPHRASE")
        stack.env.pop("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
        stack.compose(*OVERRIDE, "up", "-d")
        stack.wait_healthy(300)
    assert stack.secret("mlflow", "crypto_kek_passphrase") == new_passphrase
    restart_mlflow(stack)
    gateway_calls_pass_on_every_worker(stack, admin, gateway, receiver)


# The server's start-up check (mlflow_stack/encryption_keys.py), run against the stack's database with
# keys of another stack and no previous values, as after a `scripts/restore --force`.
OTHER_KEYS_CHECK = """
import base64, os, pathlib, tempfile
from mlflow_stack.encryption_keys import prepare_encryption
from mlflow_stack.runtime_files import write_runtime_files
from mlflow_stack.settings import Settings
settings = Settings.from_env(os.environ)
from mlflow_stack.secret_files import read_secrets
secrets = read_secrets(pathlib.Path("/secrets/mlflow"))
os.environ.update(write_runtime_files(pathlib.Path("/run/mlflow"), settings, secrets))
other = pathlib.Path(tempfile.mkdtemp())
(other / "crypto_kek_passphrase").write_text("another-stacks-passphrase-0123456789abcdef")
(other / "webhook_encryption_key").write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
prepare_encryption(settings, other)
"""


def test_server_start_names_the_fix_when_its_keys_do_not_open_what_is_stored(stack, gateway,
                                                                           webhook):
    result = stack.compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "python", "mlflow",
                           "-c", OTHER_KEYS_CHECK, timeout=300)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "warning: AI Gateway: 1 stored secret(s) do not open with MLFLOW_CRYPTO_KEK_PASSPHRASE" in output
    assert "set MLFLOW_CRYPTO_KEK_PASSPHRASE in .env to the passphrase of the stack" in output
    assert "warning: webhooks: the signing secret of 1 webhook(s)" in output, output
    assert "set the key of the stack they were made on in .env" in output


def test_restore_onto_a_stack_with_other_keys_is_refused_with_the_fix(stack, admin, gateway,
                                                                     webhook, tmp_path):
    result = script(stack, "backup", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    archive = next((tmp_path / "out").glob("mlflow-backup-*.tar"))
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        names = [m.name for m in tar.getmembers()]
    keys = manifest["encryption"]
    assert keys["gateway_secrets"] >= 1 and keys["webhook_secrets"] >= 1
    for value in (stack.secret("mlflow", "crypto_kek_passphrase"),
                  stack.secret("mlflow", "webhook_encryption_key")):
        assert value not in json.dumps(manifest)

    # The same data, as if made on another stack: other key fingerprints in its manifest.
    other = tmp_path / "other-stack.tar"
    with tarfile.open(archive) as source, tarfile.open(other, "w", format=tarfile.PAX_FORMAT) as out:
        for name in names:
            member = source.getmember(name)
            data = source.extractfile(member).read()
            if name == "manifest.json":
                changed = json.loads(data)
                changed["encryption"]["kek_passphrase_fingerprint"] = "0" * 16
                changed["encryption"]["webhook_key_fingerprint"] = "1" * 16
                data = json.dumps(changed).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    result = script(stack, "restore", str(other))
    assert result.returncode == 1
    assert "MLFLOW_CRYPTO_KEK_PASSPHRASE" in result.stderr, result.stderr
    assert "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "nothing was changed" in result.stderr
    assert stack.container_health("mlflow") == "healthy"
    # Its own archive passes the key check (and stops at the next one: the stack has runs).
    result = script(stack, "restore", str(archive))
    assert result.returncode == 1 and "already holds" in result.stderr, result.stderr
    shutil.rmtree(tmp_path / "out")
