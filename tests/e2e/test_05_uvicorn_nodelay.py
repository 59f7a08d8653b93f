"""The server image's fix for uvicorn's Nagle stall (server/mlflow_stack/uvicorn_nodelay.py).

uvicorn with --workers > 1 leaves TCP_NODELAY off on accepted connections, so every call on
a kept-alive connection waits ~40 ms for the client's delayed ACK (upstream:
https://github.com/Kludex/uvicorn/issues/3149). The probe app runs in the server image
the way `mlflow server` runs uvicorn and reports the option on its own connection.
"""

import subprocess
import time
from pathlib import Path

import requests

from .stack import free_port

PROBE_DIR = Path(__file__).with_name("nodelay_probe")


def probe_nodelay(image: str, shim_enabled: bool) -> set[int | None]:
    port = free_port()
    name = f"nodelay-probe-{port}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--entrypoint", "python",
         "-e", f"MLFLOW_STACK_UVICORN_NODELAY={'1' if shim_enabled else '0'}",
         "-v", f"{PROBE_DIR}:/probe:ro", "-w", "/probe", "-p", f"127.0.0.1:{port}:8000",
         image, "-m", "uvicorn", "--workers", "2", "--host", "0.0.0.0", "--port", "8000",
         "nodelay_probe:app"],
        check=True, capture_output=True, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until uvicorn listens
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise AssertionError("the probe never answered:\n" + subprocess.run(
                        ["docker", "logs", name], capture_output=True, text=True).stderr[-3000:])
                time.sleep(0.5)
        # A new connection per call, so the calls spread over both workers.
        seen = {requests.get(f"http://127.0.0.1:{port}/", timeout=5).json()["nodelay"]
                for _ in range(6)}
        return seen
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_shim_turns_nagle_off_for_multi_worker_uvicorn(stack):
    image = f"mlflow-stack/server:{stack.env.get('STACK_IMAGE_TAG', 'local')}"
    seen = probe_nodelay(image, shim_enabled=True)
    assert seen == {1}, f"TCP_NODELAY on accepted connections with the shim: {seen}"


def test_shim_is_still_needed(stack):
    image = f"mlflow-stack/server:{stack.env.get('STACK_IMAGE_TAG', 'local')}"
    seen = probe_nodelay(image, shim_enabled=False)
    assert seen == {0}, (
        f"uvicorn now sets TCP_NODELAY by itself ({seen}): delete "
        "server/mlflow_stack/uvicorn_nodelay.py, its .pth line in server/Dockerfile and this test"
    )


def test_the_running_server_is_the_process_the_shim_patches(stack):
    """The shim acts only in `python -m uvicorn`: check MLflow still starts uvicorn that way."""
    commands = stack.exec("mlflow", "python", "-c", (
        "import pathlib\n"
        "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):\n"
        "    try: print(p.read_bytes().replace(b'\\0', b' ').decode())\n"
        "    except OSError: pass\n"))
    assert any(" -m uvicorn " in f" {line} " for line in commands.splitlines()), commands
