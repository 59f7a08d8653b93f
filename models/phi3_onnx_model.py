"""Wrapper B: Phi-3 as an MLflow pyfunc over onnxruntime-genai.

The logged model carries the onnxruntime-genai folder (model.onnx, its external
weights, genai_config.json, tokenizer files) as the artifact "onnx". Serving it
needs neither torch nor transformers, which is the point of this wrapper.

Input: a DataFrame (or dict, list of strings, list of dicts, or one string) with
a string column `prompt`. Params: `max_new_tokens`, `temperature`, `do_sample`.
Output: one generated string per prompt.

This file is logged with the model (code_paths) and imported by that name when
the model loads, so it must only import what the serving image has.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

ARTIFACT_KEY = "onnx"
PROMPT_COLUMN = "prompt"
# genai_config.json has no notion of "new tokens", only a total max_length that
# equals the context window; a chat-sized default keeps a bare request cheap.
DEFAULT_MAX_NEW_TOKENS = 256


class InvalidInputError(MlflowException, ValueError):
    """Bad request data. MlflowException with INVALID_PARAMETER_VALUE makes the
    scoring server answer 400 instead of 500; ValueError lets plain Python
    callers catch it without importing MLflow."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def read_genai_config(onnx_dir: str | os.PathLike) -> dict:
    path = Path(onnx_dir) / "genai_config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{onnx_dir} is not an onnxruntime-genai model folder (no genai_config.json)") from None


def generation_defaults(onnx_dir: str | os.PathLike) -> dict[str, Any]:
    """Default params: the model's own search options where it has them."""
    search = read_genai_config(onnx_dir).get("search", {})
    return {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "temperature": float(search.get("temperature", 1.0)),
        "do_sample": bool(search.get("do_sample", False)),
    }


def model_signature(onnx_dir: str | os.PathLike):
    """prompt (string) -> string, with the generation params and their defaults.

    The defaults live in the signature because MLflow fills in signature
    defaults for every param a request leaves out.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    defaults = generation_defaults(onnx_dir)
    return ModelSignature(
        inputs=Schema([ColSpec("string", PROMPT_COLUMN)]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", defaults["max_new_tokens"]),
                ParamSpec("temperature", "double", defaults["temperature"]),
                ParamSpec("do_sample", "boolean", defaults["do_sample"]),
            ]
        ),
    )


def _prompts_from(model_input: Any) -> list[str]:
    """Accept the shapes pyfunc callers use and return the prompt strings."""
    try:
        import pandas as pd
    except ImportError:  # pandas always comes with mlflow; keep the wrapper importable anyway
        pd = None

    if isinstance(model_input, str):
        prompts: list[Any] = [model_input]
    elif pd is not None and isinstance(model_input, pd.DataFrame):
        if PROMPT_COLUMN not in model_input.columns:
            raise InvalidInputError(
                f"input has no '{PROMPT_COLUMN}' column (columns: {', '.join(map(str, model_input.columns)) or 'none'})"
            )
        prompts = model_input[PROMPT_COLUMN].tolist()
    elif isinstance(model_input, dict):
        if PROMPT_COLUMN not in model_input:
            raise InvalidInputError(f"input has no '{PROMPT_COLUMN}' field (keys: {', '.join(map(str, model_input)) or 'none'})")
        value = model_input[PROMPT_COLUMN]
        prompts = [value] if isinstance(value, str) else list(value)
    elif isinstance(model_input, (list, tuple)):
        prompts = []
        for item in model_input:
            if isinstance(item, dict):
                if PROMPT_COLUMN not in item:
                    raise InvalidInputError(f"an input record has no '{PROMPT_COLUMN}' field")
                prompts.append(item[PROMPT_COLUMN])
            else:
                prompts.append(item)
    else:
        raise InvalidInputError(
            f"input must be a DataFrame, dict, list or string with a '{PROMPT_COLUMN}' column, got {type(model_input).__name__}"
        )

    # pyfunc turns {"prompt": ["a", "b"]} into one DataFrame row holding the
    # list, so list-like cells are batches of prompts, not bad values.
    flat: list[Any] = []
    for item in prompts:
        if isinstance(item, (list, tuple)) or type(item).__name__ == "ndarray":
            flat.extend(list(item))
        else:
            flat.append(item)
    prompts = flat
    if not prompts:
        raise InvalidInputError("input holds no prompts")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt {i} must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise InvalidInputError(f"prompt {i} is empty")
    return prompts


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy.bool_ too
        return bool(value)
    raise InvalidInputError(f"{name} must be true or false, got {value!r}")


class Phi3OnnxModel(mlflow.pyfunc.PythonModel):
    """Generate text from a prompt with onnxruntime-genai."""

    def __init__(self):
        self._model = None
        self._tokenizer = None
        self._context_length = 0
        self._defaults: dict[str, Any] = {}

    # Not pickled: the ONNX session is rebuilt from the artifact on load.
    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    @classmethod
    def from_folder(cls, onnx_dir: str | os.PathLike) -> "Phi3OnnxModel":
        """Open an onnxruntime-genai folder directly, without MLflow (tests, benchmarks)."""
        instance = cls()
        instance._open(onnx_dir)
        return instance

    def load_context(self, context):
        self._open(context.artifacts[ARTIFACT_KEY])

    def _open(self, onnx_dir: str | os.PathLike) -> None:
        import onnxruntime_genai as og

        config = read_genai_config(onnx_dir)
        self._model = og.Model(str(onnx_dir))
        self._tokenizer = og.Tokenizer(self._model)
        self._context_length = int(config["model"]["context_length"])
        self._defaults = generation_defaults(onnx_dir)

    @property
    def context_length(self) -> int:
        return self._context_length

    def _settings(self, params: dict[str, Any] | None) -> tuple[int, float, bool]:
        merged = {**self._defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        max_new_tokens = _as_int("max_new_tokens", merged["max_new_tokens"])
        if max_new_tokens <= 0:
            raise InvalidInputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        try:
            temperature = float(merged["temperature"])
        except (TypeError, ValueError):
            raise InvalidInputError(f"temperature must be a number, got {merged['temperature']!r}") from None
        if not temperature > 0:
            raise InvalidInputError(f"temperature must be greater than 0, got {temperature}")
        do_sample = _as_bool("do_sample", merged["do_sample"])
        return max_new_tokens, temperature, do_sample

    def _encode(self, prompt: str) -> list[int]:
        ids = [int(i) for i in self._tokenizer.encode(prompt)]
        if len(ids) >= self._context_length:
            raise InvalidInputError(
                f"prompt is {len(ids)} tokens; the model's context is {self._context_length} tokens "
                "and needs room for at least one new token"
            )
        return ids

    def _generate(self, ids: list[int], max_new_tokens: int, temperature: float, do_sample: bool) -> list[int]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self._model)
        # A long prompt plus many new tokens is clamped to the context window
        # rather than rejected: the caller gets as much text as fits.
        max_length = min(len(ids) + max_new_tokens, self._context_length)
        params.set_search_options(max_length=max_length, do_sample=do_sample, temperature=temperature)
        generator = og.Generator(self._model, params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
        return [int(t) for t in generator.get_sequence(0)[len(ids):]]

    def generate_ids(
        self,
        prompt: str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        do_sample: bool | None = None,
    ) -> list[int]:
        """Token ids generated after `prompt` (prompt ids excluded).

        Parity tests compare these with transformers' generate(); strings are
        not comparable because the two decoders treat spaces and partial UTF-8
        differently.
        """
        self._require_loaded()
        (prompt,) = _prompts_from([prompt])
        settings = self._settings(
            {"max_new_tokens": max_new_tokens, "temperature": temperature, "do_sample": do_sample}
        )
        return self._generate(self._encode(prompt), *settings)

    def predict(self, context, model_input, params=None):
        self._require_loaded()
        prompts = _prompts_from(model_input)
        settings = self._settings(params)
        encoded = [self._encode(p) for p in prompts]  # reject a bad batch before generating anything
        return [self._decode(self._generate(ids, *settings)) for ids in encoded]

    def _decode(self, ids: list[int]) -> str:
        text = self._tokenizer.decode(ids)
        # SentencePiece marks a word start with "▁"; onnxruntime-genai keeps it
        # as a leading space on the first new word, transformers strips it.
        return text[1:] if text.startswith(" ") else text

    def _require_loaded(self):
        if self._model is None:
            raise RuntimeError("Phi3OnnxModel is not loaded: use mlflow.pyfunc.load_model or Phi3OnnxModel.from_folder")
