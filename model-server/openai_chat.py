"""OpenAI-style chat completions over a prompt-to-text pyfunc (wrapper B).

MLflow's AI Gateway in 3.17 has no database-backed provider for an MLflow model server
(`mlflow-model-serving` exists only in the YAML-configured standalone gateway), but its
OpenAI provider talks to any server with `POST <api_base>/chat/completions`. This module
gives the model server that route: the messages become a Phi-3 chat prompt, the request's
max_tokens / temperature become the wrapper's params, and the answer comes back as a
`chat.completion` object.
"""

from __future__ import annotations

import asyncio
import numbers
import time
import uuid
from typing import Any

# At module level: FastAPI reads the handler's annotations, which this file's
# `from __future__ import annotations` turns into names it must resolve here.
from fastapi import Request
from fastapi.responses import JSONResponse

ROLES = ("system", "user", "assistant")
# Request fields that change what the answer must look like; the wrapper cannot honour
# them, so saying so beats answering something else.
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "stop", "logprobs",
               "top_logprobs", "response_format")


class ChatRequestError(ValueError):
    """A request this route cannot answer; the message says why (HTTP 400)."""


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    # OpenAI's content parts: [{"type": "text", "text": "..."}, ...]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise ChatRequestError(f"messages[{index}].content may only hold text parts")
        return "".join(p["text"] for p in content)
    raise ChatRequestError(f"messages[{index}].content must be a string")


def phi3_prompt(messages: Any) -> str:
    """Phi-3's chat template: <|role|>\\ncontent<|end|>\\n per message, then <|assistant|>."""
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError("messages must be a non-empty list of {role, content} objects")
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatRequestError(f"messages[{i}] must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise ChatRequestError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        parts.append(f"<|{role}|>\n{_text(message.get('content'), i)}<|end|>\n")
    if not any(m["role"] == "user" for m in messages):
        raise ChatRequestError("messages need at least one user message")
    return "".join(parts) + "<|assistant|>\n"


def _positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ChatRequestError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


def generation_params(body: dict) -> dict[str, Any]:
    """The wrapper's params for an OpenAI request; absent fields keep the model's defaults.

    temperature 0 means greedy decoding (as OpenAI describes it); a positive temperature
    samples at that temperature.
    """
    if body.get("stream"):
        raise ChatRequestError("stream is not supported: ask without \"stream\": true")
    n = body.get("n", 1)
    if n != 1:
        raise ChatRequestError(f"n must be 1 (one answer per request), got {n!r}")
    unsupported = [name for name in UNSUPPORTED if body.get(name)]
    if unsupported:
        raise ChatRequestError(f"this model server does not support {', '.join(unsupported)}")
    params: dict[str, Any] = {}
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 <= temperature <= 2:
            raise ChatRequestError(f"temperature must be a number from 0 to 2, got {temperature!r}")
        if temperature == 0:
            params["do_sample"] = False
        else:
            params.update(do_sample=True, temperature=float(temperature))
    return params


def completion(text: str, model: str, created: int | None = None) -> dict[str, Any]:
    """A chat.completion object. The wrapper returns text only, so token counts and the
    reason generation stopped are unknown: usage is absent and finish_reason is null."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": None}],
    }


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def add_routes(app, model, model_name: str) -> None:
    """POST /v1/chat/completions and GET /v1/models on MLflow's scoring app."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object", "invalid_request_error")
        try:
            prompt = phi3_prompt(body.get("messages"))
            params = generation_params(body)
        except ChatRequestError as e:
            return _error(400, str(e), "invalid_request_error")
        try:
            answer = await asyncio.to_thread(model.predict, {"prompt": [prompt]}, params=params)
        except MlflowException as e:
            if e.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE):
                return _error(400, e.message, "invalid_request_error")
            raise
        return completion(str(answer[0]), model_name)

    @app.get("/v1/models")
    async def models():
        return {"object": "list",
                "data": [{"id": model_name, "object": "model", "owned_by": "mlflow-stack"}]}
