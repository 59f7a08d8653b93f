"""The models job logs both Phi-3 wrappers (tiny weights), and they serve as promised."""

import os
import subprocess

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from .stack import REPO

CHAT, ONNX = "phi3-mini-chat", "phi3-mini-onnx"
PROMPTS = ["Hello, how are you?", "The capital of France is", "1, 2, 3, 4,",
           "Write a haiku about data.", "MLflow tracks"]


def run_job(stack, seed: str):
    result = stack.compose(
        "--profile", "models", "run", "--rm", "-T", "-e", "PHI3_SOURCE=tiny",
        "-e", f"PHI3_TINY_SEED={seed}", "models", check=False, timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def models_script(stack, *args):
    return subprocess.run(
        [str(REPO / "scripts" / "models"), *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COMPOSE_PROJECT_NAME": stack.project, **stack.env},
    )


@pytest.fixture(scope="module")
def registered(stack, admin):
    first = run_job(stack, "11")
    return {"first_output": first}


@pytest.fixture
def laptop(as_user, admin):
    as_user(*admin)
    return MlflowClient()


def test_both_models_registered_with_flavors_signatures_tags_and_champion(registered, laptop):
    for name, flavor in ((CHAT, "transformers"), (ONNX, "python_function")):
        version = laptop.get_model_version_by_alias(name, "champion")
        assert version.version == "1"
        assert version.tags["source"] == "tiny"
        assert version.tags["context_length"] == "4096"
        assert "quantization" in version.tags
        assert laptop.get_registered_model(name).description
        info = mlflow.models.get_model_info(f"models:/{name}@champion")
        assert flavor in info.flavors
        assert info.signature is not None
    chat_inputs = mlflow.models.get_model_info(f"models:/{CHAT}@champion").signature.inputs.input_names()
    assert "messages" in chat_inputs
    onnx_sig = mlflow.models.get_model_info(f"models:/{ONNX}@champion").signature
    assert onnx_sig.inputs.input_names() == ["prompt"]
    assert onnx_sig.outputs.to_dict()[0]["type"] == "string"


def test_chat_champion_answers_openai_style_from_a_laptop(registered, laptop):
    model = mlflow.pyfunc.load_model(f"models:/{CHAT}@champion")
    answer = model.predict({"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8})
    answer = answer[0] if isinstance(answer, list) else answer
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(answer["choices"][0]["message"]["content"], str)
    assert answer["usage"]["completion_tokens"] <= 8


def test_onnx_champion_answers_a_prompt_with_a_string(registered, laptop):
    model = mlflow.pyfunc.load_model(f"models:/{ONNX}@champion")
    answer = model.predict(pd.DataFrame({"prompt": ["Hello there"]}), params={"max_new_tokens": 8})
    assert len(answer) == 1 and isinstance(answer[0], str)


def test_onnx_tokens_equal_transformers_tokens_greedy_fp32(registered, laptop):
    components = mlflow.transformers.load_model(f"models:/{CHAT}@champion", return_type="components")
    hf_model, tokenizer = components["model"], components["tokenizer"]
    onnx = mlflow.pyfunc.load_model(f"models:/{ONNX}@champion").unwrap_python_model()
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        hf_out = hf_model.generate(ids, do_sample=False, max_new_tokens=24)[0, ids.shape[1]:].tolist()
        onnx_out = onnx.generate_ids(prompt, max_new_tokens=24, do_sample=False)
        assert onnx_out == hf_out, prompt


def test_models_account_cannot_change_permissions(stack, registered):
    models = ("models", stack.secret("mlflow", "models_password"))
    r = requests.post(stack.url + "/api/3.0/mlflow/users/permissions/grant", auth=models, timeout=10,
                      json={"username": "models", "resource_type": "experiment",
                            "resource_id": "0", "permission": "MANAGE"})
    assert r.status_code == 403


def invoke(stack, payload):
    return requests.post(stack.model_server_url + "/invocations", json=payload, timeout=60)


def start_model_server(stack, restart=False):
    stack.compose("--profile", "serve", *(["restart"] if restart else ["up", "-d"]), "model-server")
    stack.wait_healthy(300, service="model-server", probe=stack.model_server_url + "/ping")


def test_second_run_is_challenger_promote_and_serve(stack, registered, laptop):
    prompt = {"inputs": {"prompt": ["The capital of France is"]}, "params": {"max_new_tokens": 12}}
    start_model_server(stack)
    served_v1 = invoke(stack, prompt)
    assert served_v1.status_code == 200, served_v1.text
    v1 = mlflow.pyfunc.load_model(f"models:/{ONNX}/1").predict(
        pd.DataFrame({"prompt": prompt["inputs"]["prompt"]}), params=prompt["params"])
    assert served_v1.json()["predictions"] == list(v1)

    run_job(stack, "22")
    for name in (CHAT, ONNX):
        assert laptop.get_model_version_by_alias(name, "challenger").version == "2"
        assert laptop.get_model_version_by_alias(name, "champion").version == "1"

    listed = models_script(stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert ONNX in listed.stdout and "champion" in listed.stdout and "challenger" in listed.stdout

    promoted = models_script(stack, "promote", ONNX)
    assert promoted.returncode == 0, promoted.stderr
    assert laptop.get_model_version_by_alias(ONNX, "champion").version == "2"
    assert "challenger" not in laptop.get_registered_model(ONNX).aliases

    start_model_server(stack, restart=True)
    served_v2 = invoke(stack, prompt)
    v2 = mlflow.pyfunc.load_model(f"models:/{ONNX}/2").predict(
        pd.DataFrame({"prompt": prompt["inputs"]["prompt"]}), params=prompt["params"])
    assert list(v1) != list(v2), "the two seeds should give different models"
    assert served_v2.json()["predictions"] == list(v2)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": {"prompt": [""]}}, "empty"),
        ({"inputs": {"prompt": ["word " * 5000]}}, "context"),
        ({"inputs": {"prompt": ["hi"]}, "params": {"max_new_tokens": -3}}, "max_new_tokens"),
        ({"inputs": {"text": ["hi"]}}, "prompt"),
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(stack, registered, payload, message):
    if stack.container_health("model-server") != "healthy":
        start_model_server(stack)
    r = invoke(stack, payload)
    assert 400 <= r.status_code < 500, r.text
    assert message in r.text.lower()
    ok = invoke(stack, {"inputs": {"prompt": ["still there?"]}, "params": {"max_new_tokens": 4}})
    assert ok.status_code == 200, ok.text
