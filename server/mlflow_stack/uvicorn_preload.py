"""uvicorn's workers forked from a parent that imported MLflow's server once.

Why: uvicorn starts each worker with multiprocessing's "spawn", a fresh interpreter that
imports all of MLflow's server (~3 s of CPU, 2,500 modules). `mlflow server` runs several
workers (two per core here), so on two cores their imports took ~6 s of every start, and
each worker held its own copy of those modules. uvicorn has no preload option (gunicorn's
`--preload` is the idea). Here, in the `python -m uvicorn` process that `mlflow server`
starts, the modules the app factory needs are imported once before the first worker
starts, the heap is frozen (gc.freeze: the collector then leaves those pages shared), and
the workers are forked from that parent. Each worker still calls the app factory itself,
so database engines and connections are made after the fork, never shared. boto3 is
imported and its S3 model parsed here too (warm_s3_client_data), not its clients; when
that fails, the reason is logged and the workers are forked all the same.

Forking is safe only while the parent has a single thread: with another thread alive
the workers are spawned as before and the reason is logged. Imported modules keep the
values they made at import in every worker, e.g. the random key MLflow's auth module
makes at import for its credential cache (the workers share that key; each keeps its own
cache). tests/e2e/test_07_uvicorn_preload.py fails when the workers are spawned again, and
test_05's probe checks that forked workers still get TCP_NODELAY.
MLFLOW_STACK_UVICORN_PRELOAD=0 in the server's environment turns this off.
"""

# A .pth imports this module in every Python process of the image: only os and sys here.
import os
import sys

from mlflow_stack.uvicorn_nodelay import started_as_uvicorn

_MARK = "_mlflow_stack_preload"
# What the stack's app factory (mlflow_stack.app.create_app) imports when it runs.
MODULES = ("mlflow.server.auth", "mlflow.server.fastapi_app", "mlflow_stack.app")


def preload_and_fork() -> None:
    """Imports MODULES, then makes uvicorn fork its workers if that is safe."""
    import gc
    import importlib
    import logging
    import multiprocessing
    import threading

    import uvicorn._subprocess

    _logger = logging.getLogger("uvicorn.error")
    try:
        for name in MODULES:
            importlib.import_module(name)
    except Exception as e:  # each worker meets it again, and uvicorn reports it there
        _logger.warning("workers are spawned, not forked: importing %s failed (%s)", name, e)
        return
    try:
        warm_s3_client_data()
    except Exception as e:  # optional: each worker makes its S3 client on first use
        _logger.warning("S3's client data is not preloaded (%s): each worker's first "
                        "artifact request will load it (mlflow_stack/uvicorn_preload.py)", e)
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        _logger.warning("workers are spawned, not forked: the parent runs threads %s "
                        "(mlflow_stack/uvicorn_preload.py)", ", ".join(threads))
        return
    gc.collect()
    gc.freeze()
    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")


def warm_s3_client_data() -> None:
    """A process's first S3 client imports boto3 and parses S3's service model (~0.28 s
    together): that was a worker's first artifact download's whole time to first byte.
    A throwaway client here leaves both in the default boto3 session the workers inherit
    (their own clients, made after the fork, then take ~0.02 s). It makes no request."""
    import boto3

    boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                 aws_access_key_id="unused", aws_secret_access_key="unused")


def install() -> None:
    import functools

    from uvicorn.supervisors.multiprocess import Multiprocess

    original = Multiprocess.init_processes
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def init_processes(self):
        preload_and_fork()
        return original(self)

    setattr(init_processes, _MARK, True)
    Multiprocess.init_processes = init_processes


if (os.environ.get("MLFLOW_STACK_UVICORN_PRELOAD", "1") != "0" and started_as_uvicorn()
        and sys.platform == "linux"):
    install()
