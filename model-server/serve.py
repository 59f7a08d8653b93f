"""The model server: models:/<MODEL_SERVER_MODEL>@champion behind MLflow's own scoring app
(/ping, /health, /version, /invocations) plus /v1/chat/completions (openai_chat.py).

Logs in to MLflow as the stack's non-admin "models" account, whose password the secrets
job wrote to this service's volume. Runs uvicorn with MODEL_SERVER_WORKERS processes, each
loading the model once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PORT = 8080


class ServeError(Exception):
    """A start-up failure, reported as one sentence."""


def model_name() -> str:
    return os.environ.get("MODEL_SERVER_MODEL", "").strip() or "phi3-mini-onnx"


def log_in() -> None:
    password_file = Path(os.environ.get("MODELS_PASSWORD_FILE", "/secrets/models/models_password"))
    try:
        password = password_file.read_text().strip()
    except OSError:
        password = ""
    if not password:
        raise ServeError(f"missing {password_file}; the one-shot 'secrets' service writes it "
                         "(docker compose logs secrets)")
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", "models")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def _workers() -> int:
    raw = os.environ.get("MODEL_SERVER_WORKERS", "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ServeError(f"MODEL_SERVER_WORKERS={raw!r} must be a whole number of at least 1")
    return int(raw)


def load_champion():
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    uri = f"models:/{model_name()}@champion"
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as e:
        first_line = (e.message.strip().splitlines() or ["?"])[0]
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ServeError(
                f"cannot load {uri}: {first_line}. Register the models first (docker compose "
                "--profile models up models), or set MODEL_SERVER_MODEL to a registered model "
                "with a @champion alias.") from None
        raise ServeError(
            f"cannot load {uri} from {os.environ.get('MLFLOW_TRACKING_URI')}: {first_line}. "
            "Is the mlflow service healthy (docker compose ps; scripts/doctor)?") from None
    except ModuleNotFoundError as e:
        raise ServeError(
            f"{uri} needs the Python package {e.name!r}, which this image leaves out (it "
            "serves onnxruntime-genai models without torch); serve a model like "
            "phi3-mini-onnx, or run a transformers model with `mlflow models serve` in the "
            "models image.") from None


def create_app():
    """uvicorn's app factory: runs once in every worker process."""
    from mlflow.pyfunc import scoring_server

    import openai_chat

    try:
        model = load_champion()
    except ServeError as e:
        print(f"model-server: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    app = scoring_server.init(model)
    openai_chat.add_routes(app, model, model_name())
    return app


def main() -> int:
    try:
        log_in()
        workers = _workers()
    except ServeError as e:
        print(f"model-server: {e}", file=sys.stderr, flush=True)
        return 1
    import uvicorn

    print(f"model-server: serving models:/{model_name()}@champion on port {PORT} "
          f"with {workers} worker(s)", flush=True)
    uvicorn.run("serve:create_app", factory=True, host="0.0.0.0", port=PORT, workers=workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
