"""The @champion behind MLflow's AI Gateway: a laptop asks it OpenAI-style through the
tracking server with its MLflow login, and after a promote it answers from the new champion."""

import os
import subprocess
import time

import pytest
import requests

from .stack import REPO
from .test_60_models import ONNX, models_script, run_job, start_model_server

ENDPOINT = "phi3-champion"
QUESTION = "The capital of France is"


def script(stack, name, *args, check=True):
    result = subprocess.run(
        [str(REPO / "scripts" / name), *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COMPOSE_PROJECT_NAME": stack.project, **stack.env},
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def new_user(stack, admin, prefix):
    user = (f"{prefix}{time.time_ns() % 10**8}", f"{prefix}-password-123456")
    r = requests.post(stack.url + "/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                      json={"username": user[0], "password": user[1]})
    assert r.status_code == 200, r.text
    return user


@pytest.fixture(scope="module")
def endpoint(stack, admin):
    champion = requests.get(stack.url + "/api/2.0/mlflow/registered-models/alias", auth=admin,
                            params={"name": ONNX, "alias": "champion"}, timeout=30)
    if champion.status_code != 200:  # run alone, without test_60 before it
        run_job(stack, "11")
    start_model_server(stack)
    registered = script(stack, "model-gateway", "register")
    assert f"created endpoint {ENDPOINT}" in registered.stdout
    assert "it answered" in registered.stdout
    yield ENDPOINT
    # Its gateway secret is encrypted with this stack's key, which later tests (a restore
    # into a fresh stack with new keys) rightly refuse to carry over.
    removed = script(stack, "model-gateway", "remove")
    assert f"deleted endpoint {ENDPOINT}" in removed.stdout
    assert f"deleted secret {ENDPOINT}-model-server" in removed.stdout


@pytest.fixture(scope="module")
def member(stack, admin, endpoint):
    """A team member an admin let use the endpoint."""
    user = new_user(stack, admin, "member")
    granted = script(stack, "user", "grant", user[0], "USE", "endpoint", endpoint)
    assert "USE" in granted.stdout
    return user


def ask(url, auth, **extra):
    return requests.post(url + "/gateway/mlflow/v1/chat/completions", auth=auth, timeout=120,
                         json={"model": ENDPOINT, "max_tokens": 12, "temperature": 0,
                               "messages": [{"role": "user", "content": QUESTION}], **extra})


def served_directly(stack) -> str:
    """The model server's own answer (loopback, no gateway), greedy like ask()."""
    r = requests.post(stack.model_server_url + "/v1/chat/completions", timeout=120,
                      json={"max_tokens": 12, "temperature": 0,
                            "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_a_laptop_gets_the_champions_answer_through_the_gateway(stack, member):
    r = ask(stack.url, member)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == ONNX
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"] == served_directly(stack)

    # MLflow's per-endpoint route answers the same, in the same shape.
    r = requests.post(f"{stack.url}/gateway/{ENDPOINT}/mlflow/invocations", auth=member,
                      timeout=120, json={"max_tokens": 12, "temperature": 0,
                                         "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == message["content"]


def test_no_login_gets_401_and_a_user_without_use_gets_403(stack, admin, endpoint):
    assert ask(stack.url, None).status_code == 401
    outsider = new_user(stack, admin, "outsider")
    assert ask(stack.url, (outsider[0], "not-the-password")).status_code == 401
    denied = ask(stack.url, outsider)
    assert denied.status_code == 403, denied.text
    assert "choices" not in denied.text


def test_a_bad_request_gets_a_clear_400(stack, member):
    r = ask(stack.url, member, n=2)
    assert 400 <= r.status_code < 500, r.text
    assert "n must be 1" in r.text


def test_users_cannot_aim_the_gateway_at_the_stacks_plain_http_services(stack, member):
    # The private-upstream opt-in must not open MinIO, Prometheus or the metrics port to
    # anyone who may create a gateway secret: MLflow's write-time check keeps https only.
    for upstream in ("http://minio:9000", "http://mlflow:9464"):
        r = requests.post(stack.url + "/ajax-api/3.0/mlflow/gateway/secrets/create", auth=member,
                          timeout=30, json={"secret_name": f"probe-{time.time_ns()}",
                                            "secret_value": {"api_key": "x"}, "provider": "openai",
                                            "auth_config": {"api_base": upstream}})
        assert r.status_code == 400, r.text
        assert "scheme" in r.text


def test_registering_again_changes_nothing_and_needs_the_opt_in(stack, endpoint):
    again = script(stack, "model-gateway", "register")
    assert f"endpoint {ENDPOINT} is already registered" in again.stdout
    refused = stack.compose("exec", "-T", "-e", "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS=false",
                            "mlflow", "python", "-m", "mlflow_stack.model_gateway", "register",
                            check=False)
    assert refused.returncode == 1
    assert "GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_after_promote_and_restart_the_gateway_answers_from_the_new_champion(stack, member):
    before = ask(stack.url, member)
    assert before.status_code == 200, before.text
    run_job(stack, "33")
    promoted = models_script(stack, "promote", ONNX)
    assert promoted.returncode == 0, promoted.stderr
    start_model_server(stack, restart=True)
    after = ask(stack.url, member)
    assert after.status_code == 200, after.text
    answer = after.json()["choices"][0]["message"]["content"]
    assert answer == served_directly(stack)
    assert answer != before.json()["choices"][0]["message"]["content"], \
        "the new champion (another seed) should answer differently"


def test_the_model_server_image_has_no_torch_and_stays_small(stack):
    image = stack.image("model-server")
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                              capture_output=True, text=True, check=True).stdout)
    assert size <= 1.2e9, f"{image} is {size / 1e9:.2f} GB; the goal is 1.2 GB at most"
    found = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c",
         "import importlib.util as u; print([m for m in ('torch', 'transformers', 'flask') "
         "if u.find_spec(m)])"], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
