"""Put the in-stack model server behind MLflow's AI Gateway (run by scripts/model-gateway).

  register [--endpoint NAME]   create (or bring up to date) the gateway endpoint NAME
                               (default phi3-champion) for http://model-server:8080, then
                               ask it one question to prove the path works
  remove [--endpoint NAME]     delete the endpoint, its model definition and its secret

Team members then call the @champion with their MLflow login, OpenAI-style:
  POST <mlflow>/gateway/mlflow/v1/chat/completions  {"model": NAME, "messages": [...]}
  POST <mlflow>/gateway/NAME/mlflow/invocations     {"messages": [...]}
once an admin has granted them USE:  scripts/user grant USER USE endpoint NAME

Why the endpoint is written through MLflow's store rather than its REST API: the REST API
accepts only https upstreams (MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES), which keeps users
from aiming the gateway at the stack's plain-http services (MinIO, Prometheus, the metrics
port). The operator's own endpoint is the one exception, so it is made here, inside the
mlflow container, and the server keeps the https-only rule. What the server cannot avoid is
MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS: the model server has a private address, and
MLflow checks the address of every upstream at connect time; the operator turns it on with
GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true.
"""

import argparse
import json
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.encryption_keys import KEK_PASSPHRASE, key_values, stored_kek_version
from mlflow_stack.runtime_files import credential_files_for_this_process
from mlflow_stack.settings import Settings

DEFAULT_ENDPOINT = "phi3-champion"
MODEL_SERVER_URL = "http://model-server:8080"
PROVIDER = "openai"  # the model server speaks OpenAI's chat completions (model-server/openai_chat.py)


def _name(endpoint: str) -> str:
    """The name of the endpoint's secret and of its model definition."""
    return f"{endpoint}-model-server"


def served_model(url: str = MODEL_SERVER_URL) -> str:
    """The registered model the model server serves (its /v1/models)."""
    import requests

    try:
        response = requests.get(f"{url}/v1/models", timeout=10)
        response.raise_for_status()
        return response.json()["data"][0]["id"]
    except (requests.RequestException, ValueError, KeyError, IndexError) as e:
        raise StackError(
            f"the model server does not answer at {url}/v1/models ({type(e).__name__}); start "
            "it with: docker compose --profile serve up -d model-server") from None


def _store(settings: Settings, passphrase: str):
    from mlflow.tracking._tracking_service.utils import _get_store

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # engine options
    os.environ["MLFLOW_CRYPTO_KEK_PASSPHRASE"] = passphrase
    os.environ["MLFLOW_CRYPTO_KEK_VERSION"] = str(stored_kek_version(settings))
    # The server's default artifact root with --serve-artifacts, for the usage-tracking
    # experiment MLflow creates with the endpoint.
    return _get_store(settings.tracking_store_uri(), "mlflow-artifacts:/")


def _find(items, **match):
    return next((i for i in items if all(getattr(i, k) == v for k, v in match.items())), None)


def register(store, endpoint: str, model: str, admin: str) -> list[str]:
    """Create what is missing and correct what differs; returns what was done."""
    from mlflow.entities.gateway_endpoint import GatewayEndpointModelConfig, GatewayModelLinkageType
    from mlflow.exceptions import MlflowException

    secret_name = definition_name = _name(endpoint)
    auth_config = {"api_base": f"{MODEL_SERVER_URL}/v1"}
    done = []
    secret = _find(store.list_secret_infos(), secret_name=secret_name)
    if secret is None:
        # MLflow requires a key for every model definition. The model server has no login
        # (it is reachable only on the stack network and loopback), so this random value is
        # sent and ignored; it is not a credential of anything.
        secret = store.create_gateway_secret(
            secret_name, {"api_key": secrets.token_urlsafe(32)}, provider=PROVIDER,
            auth_config=auth_config, created_by=admin)
        done.append(f"created secret {secret_name}")
    elif secret.auth_config != auth_config:
        store.update_gateway_secret(secret.secret_id, auth_config=auth_config, updated_by=admin)
        done.append(f"pointed secret {secret_name} at {auth_config['api_base']}")

    definition = _find(store.list_gateway_model_definitions(), name=definition_name)
    if definition is None:
        definition = store.create_gateway_model_definition(
            definition_name, secret.secret_id, PROVIDER, model, created_by=admin)
        done.append(f"created model definition {definition_name} ({model})")
    elif (definition.secret_id, definition.provider, definition.model_name) != (
            secret.secret_id, PROVIDER, model):
        store.update_gateway_model_definition(
            definition.model_definition_id, secret_id=secret.secret_id, provider=PROVIDER,
            model_name=model, updated_by=admin)
        done.append(f"updated model definition {definition_name} ({model})")

    try:
        existing = store.get_gateway_endpoint(name=endpoint)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        existing = None
    if existing is None:
        store.create_gateway_endpoint(endpoint, [GatewayEndpointModelConfig(
            model_definition_id=definition.model_definition_id,
            linkage_type=GatewayModelLinkageType.PRIMARY, weight=1.0)], created_by=admin)
        done.append(f"created endpoint {endpoint}")
    elif [m.model_definition_id for m in existing.model_mappings] != [definition.model_definition_id]:
        raise StackError(
            f"a gateway endpoint named {endpoint!r} already exists and uses other models; "
            "pick another name with --endpoint, or delete that endpoint in the AI Gateway page")
    return done


def remove(store, endpoint: str) -> list[str]:
    from mlflow.exceptions import MlflowException

    secret_name = definition_name = _name(endpoint)
    done = []
    try:
        store.delete_gateway_endpoint(store.get_gateway_endpoint(name=endpoint).endpoint_id)
        done.append(f"deleted endpoint {endpoint}")
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    if definition := _find(store.list_gateway_model_definitions(), name=definition_name):
        store.delete_gateway_model_definition(definition.model_definition_id)
        done.append(f"deleted model definition {definition_name}")
    if secret := _find(store.list_secret_infos(), secret_name=secret_name):
        store.delete_gateway_secret(secret.secret_id)
        done.append(f"deleted secret {secret_name}")
    return done


def ask(endpoint: str, admin: str, password: str) -> str:
    """One short chat completion through the tracking server, as the admin."""
    import requests

    url = os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    response = requests.post(
        f"{url}/gateway/mlflow/v1/chat/completions", auth=(admin, password), timeout=120,
        json={"model": endpoint, "max_tokens": 8,
              "messages": [{"role": "user", "content": "Say hello."}]})
    if response.status_code != 200:
        raise StackError(
            f"the endpoint is registered, but a test question through the gateway got HTTP "
            f"{response.status_code}: {response.text[:300]}")
    return json.dumps(response.json()["choices"][0]["message"]["content"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/model-gateway",
                                description="Put the model server behind MLflow's AI Gateway.")
    p.add_argument("command", choices=["register", "remove"])
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                   help="the gateway endpoint's name (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runtime_dir = None
    try:
        settings, runtime_dir = credential_files_for_this_process("model-gateway")
        if args.command == "register" and not settings.gateway_private_upstreams:
            raise StackError(
                "the gateway refuses upstreams on private addresses, and the model server is "
                "one: set GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true in .env, run docker compose up "
                "-d, then run this again (README: the model server behind the AI Gateway)")
        model = served_model() if args.command == "register" else ""
        directory = Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow"))
        store = _store(settings, key_values(directory, KEK_PASSPHRASE)[0])
        if args.command == "remove":
            print("\n".join(remove(store, args.endpoint)) or f"no endpoint {args.endpoint} to remove")
            return 0
        done = register(store, args.endpoint, model, settings.admin_username)
        print("\n".join(done) or f"endpoint {args.endpoint} is already registered for {model}")
        answer = ask(args.endpoint, settings.admin_username,
                     (directory / "admin_password").read_text())
        print(f"asked {args.endpoint} through the gateway; it answered {answer}")
        print(f"give team members access with: scripts/user grant USER USE endpoint {args.endpoint}")
        return 0
    except StackError as e:
        print(f"model-gateway: {e}", file=sys.stderr)
        return 1
    finally:
        if runtime_dir is not None:
            shutil.rmtree(runtime_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
