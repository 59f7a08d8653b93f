"""The server's app: MLflow's basic-auth app, with artifact downloads streamed from S3,
failed logins limited (login_limit.py), requests counted for Prometheus (metrics.py),
artifact uploads passed on in blocks of one S3 part (upload_body.py), leaner permission
lookups (auth_lookups.py), model-link redaction run only when it could change a response
(model_link_redaction.py), tags loaded with SQLAlchemy's selectin loader
(eager_loading.py), metric batches written in two statements with the run checked once
(metric_writes.py), run searches without a needless DISTINCT (search_distinct.py) and the
UI's files sent gzip-compressed (compressed_static.py).

MLflow's download route (mlflow/server/artifact_router.py) copies the whole object from S3
into a temporary file before it sends the first byte: a 1 GiB artifact waited ~2 s for
its first byte, and every byte crossed the container's disk twice. Here the same route
(same paths, same path checks, same permission middleware in front of it, since it stays
inside MLflow's app) streams the S3 object as it arrives, with its Content-Length, so a
client can tell a cut-off transfer from a complete one. Anything that is not the stack's
S3 repository goes to MLflow's own route.

`mlflow server --app-name stack-basic-auth` selects this factory (pyproject.toml entry
point). MLflow treats the name "basic-auth" specially in the CLI; serve.py does the same
for this one (accounts prepared before workers start, the internal gateway token).
"""

import asyncio
import gc
import logging
import os
import sys

DOWNLOAD_PATHS = (
    "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    "/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
)


def create_app():
    # A server whose job runner is another pod (serve.py, MLFLOW_JOB_RUNNER=elsewhere) still
    # queues jobs: MLflow's submit_job reads this flag in the worker at every call.
    if os.environ.get("MLFLOW_STACK_SUBMIT_JOBS") == "true":
        os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true"
    from mlflow.server.auth import create_app as basic_auth_app

    app = basic_auth_app()
    _stack_log_lines()
    from mlflow_stack import auth_lookups

    if not auth_lookups.install():
        logging.getLogger(__name__).warning(
            "the tracking store is not MLflow's SQLAlchemy store: permission checks load "
            "whole runs (mlflow_stack/auth_lookups.py)")
    from mlflow_stack import eager_loading, metric_writes, model_link_redaction, search_distinct

    model_link_redaction.install()
    eager_loading.install()
    if not metric_writes.install():
        logging.getLogger(__name__).warning(
            "MLflow's SQLAlchemy store changed: metric batches are written through the ORM "
            "(mlflow_stack/metric_writes.py)")
    search_distinct.install()
    from mlflow.server import app as flask_app

    from mlflow_stack import compressed_static

    compressed_static.install(flask_app)
    if hasattr(app, "add_middleware"):
        from mlflow_stack import metrics
        from mlflow_stack.login_limit import LoginLimitMiddleware, from_env
        from mlflow_stack.settings import Settings

        # Starlette runs the middleware added last first: metrics see every answer (the
        # limiter's 429s too), and a refused login never reaches MLflow's password hashing.
        app.add_middleware(LoginLimitMiddleware, limiter=from_env(),
                           trusted_networks=Settings.from_env(os.environ).trusted_proxies)
        metrics.install(app)
        from mlflow_stack.upload_body import UploadBodyBlocks

        app.add_middleware(UploadBodyBlocks)  # outside MLflow's middleware: see upload_body.py
    # FastAPI under uvicorn; under gunicorn MLflow returns its Flask app, left as it is.
    if hasattr(app, "router") and not _replace_download_routes(app.router):
        logging.getLogger(__name__).warning(
            "MLflow's artifact download route was not found: downloads are staged in a "
            "temporary file first (mlflow_stack/app.py)")
    # Everything imported and built so far lives as long as the worker. Freezing it keeps
    # the garbage collector's full passes from walking it: without this, one request in
    # ~20 that loads many runs stalled ~190 ms in a full collection (docs/performance.md).
    gc.collect()
    gc.freeze()
    return app


def _stack_log_lines() -> None:
    """The stack's own log lines in a worker, formatted and filtered as MLflow's are (time,
    level, logger name; MLFLOW_LOGGING_LEVEL). Without a handler Python would print the
    bare message of a warning and drop everything below it."""
    from mlflow.utils.logging_utils import LOGGING_DATETIME_FORMAT, LOGGING_LINE_FORMAT

    stack_logger = logging.getLogger("mlflow_stack")
    if stack_logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOGGING_LINE_FORMAT, LOGGING_DATETIME_FORMAT))
    stack_logger.addHandler(handler)
    stack_logger.setLevel(logging.getLogger("mlflow").getEffectiveLevel())
    stack_logger.propagate = False


def _replace_download_routes(router) -> int:
    from fastapi.routing import APIRoute

    replaced = 0
    for index, route in enumerate(router.routes):
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers
        if included is not None:
            replaced += _replace_download_routes(included)
        elif (isinstance(route, APIRoute) and route.path in DOWNLOAD_PATHS
                and route.methods == {"GET"}):
            router.routes[index] = APIRoute(
                route.path, _streaming_download(route.endpoint), methods=["GET"],
                name=route.name,
            )
            replaced += 1
            if hasattr(router, "_mark_routes_changed"):  # FastAPI caches resolved routes
                router._mark_routes_changed()
    return replaced


def _streaming_download(mlflow_endpoint):
    async def download_artifact(artifact_path: str):
        import json

        from fastapi.responses import JSONResponse, StreamingResponse
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import (
            _content_disposition_attachment,
            _get_artifact_repo_mlflow_artifacts,
            _get_workspace_scoped_repo_path_if_enabled,
        )
        from mlflow.utils.mime_type_utils import _guess_mime_type
        from mlflow.utils.uri import validate_path_is_safe

        from mlflow_stack.proxied_s3 import ProxiedS3ArtifactRepository

        repo = _get_artifact_repo_mlflow_artifacts()
        if not isinstance(repo, ProxiedS3ArtifactRepository):
            return await mlflow_endpoint(artifact_path)
        try:
            path = _get_workspace_scoped_repo_path_if_enabled(validate_path_is_safe(artifact_path))
            size, chunks = await asyncio.to_thread(repo.open_stream, path)
        except MlflowException as e:
            return JSONResponse(status_code=e.get_http_status_code(),
                                content=json.loads(e.serialize_as_json()))
        name = path.rsplit("/", 1)[-1]
        return StreamingResponse(chunks, headers={
            "Content-Type": _guess_mime_type(name),
            "Content-Disposition": _content_disposition_attachment(name),
            "Content-Length": str(size),
            "X-Content-Type-Options": "nosniff",
        })

    return download_artifact
