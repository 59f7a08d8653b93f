"""mlflow_stack.uvicorn_preload forks uvicorn's workers only from a single-threaded parent."""

import gc
import multiprocessing
import threading

import pytest
import uvicorn._subprocess

from mlflow_stack import uvicorn_preload


@pytest.fixture
def spawn_context(monkeypatch):
    monkeypatch.setattr(uvicorn._subprocess, "spawn", multiprocessing.get_context("spawn"))
    monkeypatch.setattr(uvicorn_preload, "MODULES", ("json",))
    # boto3 is the server image's, not the test client's (tests/e2e/test_07 checks it there).
    monkeypatch.setattr(uvicorn_preload, "warm_s3_client_data", lambda: None)
    yield
    gc.unfreeze()


def test_a_single_threaded_parent_forks_its_workers(spawn_context, monkeypatch):
    # The test process itself may run threads (the e2e tests' clients leave some behind).
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread()])
    uvicorn_preload.preload_and_fork()
    assert uvicorn._subprocess.spawn.get_start_method() == "fork"


def test_a_parent_with_another_thread_keeps_spawning(spawn_context, caplog):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="some-thread")
    thread.start()
    try:
        uvicorn_preload.preload_and_fork()
    finally:
        stop.set()
        thread.join()
    assert uvicorn._subprocess.spawn.get_start_method() == "spawn"
    assert "some-thread" in caplog.text


def test_a_failed_warm_up_still_forks(spawn_context, monkeypatch, caplog):
    def fail():
        raise ImportError("no boto3 here")

    monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread()])
    monkeypatch.setattr(uvicorn_preload, "warm_s3_client_data", fail)
    uvicorn_preload.preload_and_fork()
    assert uvicorn._subprocess.spawn.get_start_method() == "fork"
    assert "no boto3 here" in caplog.text


def test_a_failed_import_keeps_spawning(spawn_context, monkeypatch, caplog):
    monkeypatch.setattr(uvicorn_preload, "MODULES", ("no_such_module_here",))
    uvicorn_preload.preload_and_fork()
    assert uvicorn._subprocess.spawn.get_start_method() == "spawn"
    assert "no_such_module_here" in caplog.text


def test_the_supervisor_still_starts_workers_where_the_patch_hooks_in():
    from uvicorn.supervisors.multiprocess import Multiprocess

    assert callable(Multiprocess.init_processes)
    assert hasattr(uvicorn._subprocess, "spawn")
