"""Drives one throwaway copy of the stack with Docker Compose, as an operator would."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
# Optional services (docker-compose.yml profiles) the suite also builds and cleans up.
ALL_PROFILES = ("--profile", "models", "--profile", "serve", "--profile", "tls", "--profile", "gc",
                "--profile", "monitoring")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {})}


class Stack:
    def __init__(self, project: str, port: int, env: dict[str, str] | None = None):
        self.project = project
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.model_server_port = free_port()
        self.model_server_url = f"http://127.0.0.1:{self.model_server_port}"
        self.https_port, self.http_port = free_port(), free_port()
        self.https_url = f"https://127.0.0.1:{self.https_port}"
        self.prometheus_port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{self.prometheus_port}"
        self.env = {
            "BIND_ADDRESS": "127.0.0.1", "MLFLOW_PORT": str(port),
            "MODEL_SERVER_BIND_ADDRESS": "127.0.0.1", "MODEL_SERVER_PORT": str(self.model_server_port),
            "PROXY_BIND_ADDRESS": "127.0.0.1", "HTTPS_PORT": str(self.https_port),
            "HTTP_PORT": str(self.http_port),
            "PROMETHEUS_BIND_ADDRESS": "127.0.0.1", "PROMETHEUS_PORT": str(self.prometheus_port),
            # The model server behind the AI Gateway (test_61); off by default.
            "GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "true",
            **(env or {}),
        }

    def compose(self, *args: str, check: bool = True, input: str | None = None,
                env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
        command = ["docker", "compose", "--project-directory", str(REPO), "-p", self.project, *args]
        result = subprocess.run(
            command, cwd=REPO, env=compose_env({**self.env, **(env or {})}), input=input,
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def exec(self, service: str, *args: str, check: bool = True, input: str | None = None) -> str:
        return self.compose("exec", "-T", service, *args, check=check, input=input).stdout

    def build(self) -> None:
        self.compose(*ALL_PROFILES, "build", timeout=3600)

    def up(self, timeout: float = 300) -> None:
        self.compose("up", "-d")
        self.wait_healthy(timeout)

    def down(self, volumes: bool = False) -> None:
        self.compose(*ALL_PROFILES, "down", "--remove-orphans", *(["-v"] if volumes else []),
                     check=False)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--timestamps", check=False).stdout

    @staticmethod
    def log_mark() -> str:
        """A moment for service_log(): two seconds ago, in UTC, as `docker compose logs
        --since` takes it (whole seconds)."""
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))

    def service_log(self, service: str, since: str) -> str:
        """One service's log lines since a log_mark(), without Compose's prefixes."""
        return self.compose("logs", "--no-color", "--no-log-prefix", "--since", since,
                            service).stdout

    def wait_healthy(self, timeout: float, service: str = "mlflow", probe: str | None = None,
                     verify: bool | str = True) -> None:
        probe = probe or f"{self.url}/health"
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = requests.get(probe, timeout=5, verify=verify)
                if last.status_code == 200 and self.container_health(service) == "healthy":
                    return
            except requests.RequestException as e:
                last = e
            time.sleep(2)
        raise AssertionError(f"stack not healthy after {timeout} s (last: {last})\n{self.logs()[-8000:]}")

    def container_ids(self) -> dict[str, str]:
        """Service name -> id of each running container of this stack."""
        out = self.compose(*ALL_PROFILES, "ps", "--format", "json", check=False).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(rows) == 1 and isinstance(rows[0], list):  # older Compose prints one array
            rows = rows[0]
        return {row["Service"]: row["ID"] for row in rows}

    def container_health(self, service: str) -> str | None:
        ids = self.compose(*ALL_PROFILES, "ps", "-q", service, check=False).stdout.split()
        if not ids:
            return None
        out = subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True).stdout
        state = json.loads(out)[0]["State"]
        return (state.get("Health") or {}).get("Status") or state["Status"]

    def secret(self, service: str, name: str) -> str:
        return self.exec(service, "cat", f"/secrets/{service}/{name}")

    def admin_password(self) -> str:
        return self.secret("mlflow", "admin_password")

    def image(self, service: str) -> str:
        return f"mlflow-stack/{service}:{self.env.get('STACK_IMAGE_TAG', 'local')}"

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def machine(self, name: str) -> "NetworkMachine":
        """Another machine on the stack network, with its own address."""
        return NetworkMachine(self, name)

    def mc(self, *args: str) -> str:
        """mc as MinIO's root, from inside the stack network (the laptop has no S3 keys)."""
        return self.exec("minio", "mc-root.sh", *args)


class NetworkMachine:
    """A container of the server image on the stack network, idle until told to run a
    Python script: a client that is not on this machine's loopback and keeps its address
    for as long as it lives. Use it as a context manager."""

    def __init__(self, stack: Stack, name: str):
        self.container = f"{stack.project}-{name}"
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", self.container, "--network", stack.network,
             "--entrypoint", "sleep", stack.image("server"), "3600"],
            check=True, capture_output=True, text=True)
        out = subprocess.run(["docker", "inspect", self.container], check=True,
                             capture_output=True, text=True).stdout
        networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
        self.address = networks[stack.network]["IPAddress"]

    def python(self, script: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(["docker", "exec", self.container, "python", "-c", script, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run_python(self, script: str, *args: str, timeout: float = 300) -> str:
        process = self.python(script, *args)
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err
        return out

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)

    def __enter__(self) -> "NetworkMachine":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def docker_available() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True
    ).returncode == 0
