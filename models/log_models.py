"""Log, register and alias both Phi-3 wrappers on the tracking server.

One-shot job. Where the weights come from is the only thing that varies; the
logging code is the same for all sources:

  PHI3_SOURCE=hub    microsoft/Phi-3-mini-4k-instruct and its int4 CPU ONNX
                     variant from the Hugging Face hub, cached in PHI3_CACHE_DIR
                     (default: huggingface_hub's cache under HF_HOME)
  PHI3_SOURCE=local  folders already on disk: PHI3_HF_DIR and PHI3_ONNX_DIR
  PHI3_SOURCE=tiny   a tiny random Phi-3 built on the spot (tests, offline
                     machines); ONNX precision from PHI3_TINY_ONNX_PRECISION,
                     weights from PHI3_TINY_SEED

Registered as PHI3_CHAT_MODEL_NAME (default phi3-mini-chat, transformers flavor)
and PHI3_ONNX_MODEL_NAME (default phi3-mini-onnx, pyfunc over onnxruntime-genai).
The first version of a model becomes @champion, later ones @challenger.

Talks to MLFLOW_TRACKING_URI as MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.

    python log_models.py        (or: cd models && python -m log_models)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The pyfunc wrapper must be importable under its top-level name, because that
# is the name it is pickled under and the name MLflow finds in code_paths.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

HUB_CHAT_REPO = "microsoft/Phi-3-mini-4k-instruct"
HUB_ONNX_REPO = "microsoft/Phi-3-mini-4k-instruct-onnx"
HUB_ONNX_SUBFOLDER = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"
SOURCES = ("hub", "local", "tiny")
CHAMPION, CHALLENGER = "champion", "challenger"

CHAT_PACKAGES = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub")
ONNX_PACKAGES = ("mlflow", "onnxruntime-genai", "onnxruntime")


class JobError(Exception):
    """An expected failure, reported as one sentence without a traceback."""


@dataclass
class Weights:
    source: str
    hf_dir: Path
    onnx_dir: Path
    chat_origin: str
    onnx_origin: str
    # What the chat model calls itself in responses ("model" field).
    model_id: str


@dataclass
class Registered:
    name: str
    version: str
    alias: str


def pinned(packages: tuple[str, ...]) -> list[str]:
    """Exact pins of the versions running this job, so the logged model asks for
    what it was logged with. Local labels (torch's "+cpu") are dropped: they name
    an index, not a release, and would not resolve on PyPI."""
    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={version(name).split('+', 1)[0]}")
        except PackageNotFoundError:
            raise JobError(f"package {name} is not installed; install models/requirements.txt") from None
    return pins


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


# ---------------------------------------------------------------- weights


def _hub_weights(cache_dir: Path | None) -> Weights:
    try:
        from huggingface_hub import snapshot_download

        hf_dir = snapshot_download(
            HUB_CHAT_REPO,
            cache_dir=cache_dir,
            allow_patterns=["*.json", "*.safetensors", "tokenizer.model"],
        )
        onnx_root = snapshot_download(
            HUB_ONNX_REPO, cache_dir=cache_dir, allow_patterns=[f"{HUB_ONNX_SUBFOLDER}/*"]
        )
    except Exception as exc:  # offline, DNS, proxy, rate limit: all mean "not from the hub"
        raise JobError(
            f"cannot download Phi-3 from the Hugging Face hub ({type(exc).__name__}); "
            "set PHI3_SOURCE=local with PHI3_HF_DIR and PHI3_ONNX_DIR, or PHI3_SOURCE=tiny for a small test model"
        ) from None
    return Weights("hub", Path(hf_dir), Path(onnx_root) / HUB_ONNX_SUBFOLDER, HUB_CHAT_REPO, f"{HUB_ONNX_REPO}/{HUB_ONNX_SUBFOLDER}", HUB_CHAT_REPO)


def _local_weights() -> Weights:
    hf, onnx = env("PHI3_HF_DIR"), env("PHI3_ONNX_DIR")
    if not hf or not onnx:
        raise JobError("PHI3_SOURCE=local needs PHI3_HF_DIR (Hugging Face folder) and PHI3_ONNX_DIR (onnxruntime-genai folder)")
    hf_dir, onnx_dir = Path(hf), Path(onnx)
    if not (hf_dir / "config.json").is_file():
        raise JobError(f"PHI3_HF_DIR={hf_dir} is not a Hugging Face model folder (no config.json)")
    if not (onnx_dir / "genai_config.json").is_file():
        raise JobError(f"PHI3_ONNX_DIR={onnx_dir} is not an onnxruntime-genai model folder (no genai_config.json)")
    return Weights("local", hf_dir, onnx_dir, str(hf_dir), str(onnx_dir), hf_dir.resolve().name)


def _tiny_weights(work_dir: Path) -> Weights:
    from onnx_export import PRECISIONS, OnnxExportError, export_onnx
    from tiny_phi3 import build_tiny_phi3

    precision = env("PHI3_TINY_ONNX_PRECISION", "fp32")
    if precision not in PRECISIONS:
        raise JobError(f"PHI3_TINY_ONNX_PRECISION must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    seed = env("PHI3_TINY_SEED", "")
    if seed and not seed.isdigit():
        raise JobError(f"PHI3_TINY_SEED must be a whole number, got {seed!r}")
    # A different seed gives different weights, so two versions answer differently.
    hf_dir = build_tiny_phi3(work_dir / "hf", **({"seed": int(seed)} if seed else {}))
    try:
        onnx_dir = export_onnx(hf_dir, work_dir / f"onnx-{precision}", precision, cache_dir=work_dir / "builder-cache")
    except OnnxExportError as exc:
        raise JobError(str(exc)) from None
    return Weights("tiny", hf_dir, onnx_dir, "tiny random Phi-3 (models/tiny_phi3.py)", f"tiny random Phi-3, ONNX {precision}", "tiny-phi3")


def resolve_weights(source: str, work_dir: Path) -> Weights:
    if source == "hub":
        # Unset: huggingface_hub's own cache (HF_HOME), which the image puts on a volume.
        cache = env("PHI3_CACHE_DIR")
        return _hub_weights(Path(cache) if cache else None)
    if source == "local":
        return _local_weights()
    if source == "tiny":
        return _tiny_weights(work_dir)
    raise JobError(f"PHI3_SOURCE must be one of {', '.join(SOURCES)}, got {source!r}")


# ---------------------------------------------------------------- facts for tags


def onnx_quantization(onnx_dir: Path) -> str:
    """int4 when the graph uses 4-bit MatMulNBits, otherwise the logits' float type."""
    import onnx

    config = json.loads((onnx_dir / "genai_config.json").read_text())
    graph_file = onnx_dir / config["model"]["decoder"]["filename"]
    # The weights live in external data; the graph alone says how they are stored.
    graph = onnx.load(str(graph_file), load_external_data=False).graph
    for node in graph.node:
        if node.op_type == "MatMulNBits":
            bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
            return f"int{bits}"
    for output in graph.output:
        if output.name == "logits":
            elem = output.type.tensor_type.elem_type
            return {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16"}.get(elem, "unknown")
    return "unknown"


def onnx_context_length(onnx_dir: Path) -> int:
    return int(json.loads((onnx_dir / "genai_config.json").read_text())["model"]["context_length"])


# ---------------------------------------------------------------- logging


def log_chat_model(weights: Weights, name: str) -> tuple[str, dict[str, str]]:
    """Wrapper A: transformers text-generation pipeline with the chat schema."""
    import mlflow
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(weights.hf_dir)
    # "auto" keeps the checkpoint's own dtype (bfloat16 for the real Phi-3),
    # which halves memory and the logged size compared to float32.
    model = AutoModelForCausalLM.from_pretrained(weights.hf_dir, dtype="auto")
    # Otherwise responses name a temporary or cache path as their model.
    model.name_or_path = weights.model_id
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    dtype = str(model.dtype).removeprefix("torch.")
    tags = {
        "source": weights.source,
        "origin": weights.chat_origin,
        "quantization": {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype),
        "context_length": str(model.config.max_position_embeddings),
        "flavor": "transformers",
        "task": "llm/v1/chat",
    }
    info = mlflow.transformers.log_model(
        transformers_model=generator,
        name="model",
        task="llm/v1/chat",
        input_example={"messages": [{"role": "user", "content": "What is MLflow?"}], "max_tokens": 16},
        # Inferred requirements add torchvision for any torch model, which is
        # neither needed nor installed.
        pip_requirements=pinned(CHAT_PACKAGES),
        registered_model_name=name,
    )
    del generator, model
    with contextlib.suppress(Exception):
        torch.cuda.empty_cache()
    return str(info.registered_model_version), tags


def log_onnx_model(weights: Weights, name: str) -> tuple[str, dict[str, str]]:
    """Wrapper B: pyfunc over onnxruntime-genai with the ONNX folder as artifact."""
    import mlflow
    import pandas as pd
    import phi3_onnx_model
    from phi3_onnx_model import ARTIFACT_KEY, Phi3OnnxModel, model_signature

    quantization = onnx_quantization(weights.onnx_dir)
    tags = {
        "source": weights.source,
        "origin": weights.onnx_origin,
        "quantization": quantization,
        "context_length": str(onnx_context_length(weights.onnx_dir)),
        "flavor": "pyfunc/onnxruntime-genai",
        "task": "text-generation",
    }
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=Phi3OnnxModel(),
        artifacts={ARTIFACT_KEY: str(weights.onnx_dir)},
        code_paths=[phi3_onnx_model.__file__],
        signature=model_signature(weights.onnx_dir),
        input_example=(
            pd.DataFrame({"prompt": ["<|user|>\nWhat is MLflow?<|end|>\n<|assistant|>\n"]}),
            {"max_new_tokens": 16},
        ),
        pip_requirements=pinned(ONNX_PACKAGES),
        registered_model_name=name,
    )
    return str(info.registered_model_version), tags


DESCRIPTIONS = {
    "transformers": (
        "Phi-3-mini-4k-instruct as a transformers text-generation pipeline with MLflow's "
        "OpenAI-style chat schema (llm/v1/chat): send `messages`, get `choices` and `usage`."
    ),
    "pyfunc/onnxruntime-genai": (
        "Phi-3-mini-4k-instruct on onnxruntime-genai (CPU): send a `prompt` string, get the generated "
        "string. Params: max_new_tokens, temperature, do_sample."
    ),
}


def register(name: str, model_version: str, tags: dict[str, str]) -> Registered:
    """Describe, tag and alias a freshly registered version."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.update_registered_model(name, description=DESCRIPTIONS[tags["flavor"]])
    client.set_registered_model_tag(name, "flavor", tags["flavor"])
    for key, value in tags.items():
        client.set_model_version_tag(name, model_version, key, value)
    client.update_model_version(
        name,
        model_version,
        description=f"From {tags['origin']} ({tags['source']}, {tags['quantization']}, context {tags['context_length']} tokens).",
    )
    aliases = client.get_registered_model(name).aliases
    # A new version never replaces the champion by itself; promotion is an
    # operator's decision (manage_models.py promote).
    alias = CHALLENGER if CHAMPION in aliases else CHAMPION
    client.set_registered_model_alias(name, alias, model_version)
    return Registered(name, model_version, alias)


# ---------------------------------------------------------------- server checks


def _session():
    import requests

    session = requests.Session()
    user, password = env("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password is not None:
        session.auth = (user, password)
    if env("MLFLOW_TRACKING_INSECURE_TLS", "false").lower() == "true":
        session.verify = False
    elif env("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        session.verify = env("MLFLOW_TRACKING_SERVER_CERT_PATH")
    return session


def check_server(uri: str) -> None:
    """Fail fast with a clear sentence; MLflow's client would retry for minutes."""
    import requests

    if not uri.startswith(("http://", "https://")):
        return
    base = uri.rstrip("/")
    session = _session()
    try:
        session.get(f"{base}/health", timeout=10).raise_for_status()
        resp = session.get(f"{base}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30)
    except requests.RequestException as exc:
        raise JobError(f"the MLflow server at {base} is not reachable ({type(exc).__name__}); is the stack up?") from None
    if resp.status_code == 401:
        raise JobError(
            f"the MLflow server at {base} rejected the credentials (401); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if resp.status_code == 403:
        raise JobError(f"user {env('MLFLOW_TRACKING_USERNAME', '(none)')} may not read from the MLflow server at {base} (403)")
    if resp.status_code >= 400:
        raise JobError(f"the MLflow server at {base} answered {resp.status_code} to a simple search; check MLFLOW_TRACKING_URI")


def explain(exc: Exception) -> str | None:
    """One sentence for failures an operator can fix; None for real bugs."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    text = str(exc)
    status = exc.get_http_status_code()
    user = env("MLFLOW_TRACKING_USERNAME", "(none)")
    if status == 401 or "401" in text.split("!=")[0] or "UNAUTHENTICATED" in text:
        return "the MLflow server rejected the credentials (401); check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    if status == 403 or re.search(r"\b403\b", text) or "PERMISSION_DENIED" in text:
        return (
            f"user {user} lacks permission for this (403): it needs to create experiments and registered models, "
            "and EDIT on existing phi3 models"
        )
    if "Max retries exceeded" in text or "Connection refused" in text:
        return "lost the connection to the MLflow server; is the stack up?"
    return None


# ---------------------------------------------------------------- main


def run() -> list[Registered]:
    source = env("PHI3_SOURCE", "hub")
    if source not in SOURCES:
        raise JobError(f"PHI3_SOURCE must be one of {', '.join(SOURCES)}, got {source!r}")
    if source != "hub":
        # Local and tiny weights must never reach out (model cards, configs):
        # offline machines would stall on timeouts. Read at import, so set first.
        os.environ["HF_HUB_OFFLINE"] = "1"
    import mlflow

    uri = env("MLFLOW_TRACKING_URI")
    if not uri:
        raise JobError("MLFLOW_TRACKING_URI is not set; point it at the MLflow server, e.g. http://mlflow:5000")
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    chat_name = env("PHI3_CHAT_MODEL_NAME", "phi3-mini-chat")
    onnx_name = env("PHI3_ONNX_MODEL_NAME", "phi3-mini-onnx")

    with tempfile.TemporaryDirectory(prefix="phi3-") as tmp:
        weights = resolve_weights(source, Path(tmp))
        mlflow.set_experiment(env("PHI3_EXPERIMENT", "phi3-models"))
        with mlflow.start_run(run_name=f"log-phi3-{source}"):
            mlflow.log_params({"source": source, "chat_origin": weights.chat_origin, "onnx_origin": weights.onnx_origin})
            # Tag and alias each version as soon as it exists, so a failure on
            # the second model never leaves the first one registered but bare.
            results = [register(chat_name, *log_chat_model(weights, chat_name))]
            results.append(register(onnx_name, *log_onnx_model(weights, onnx_name)))
        return results


def main() -> int:
    started = time.monotonic()
    try:
        results = run()
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    for r in results:
        print(f"registered {r.name} version {r.version} as @{r.alias}")
    print(f"done in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
