"""Hardening: non-root services, no published PostgreSQL/MinIO ports, MLflow without MinIO's
root account, no secret in docker inspect / image history / logs, and hostile requests
answered with 4xx (never 5xx, never a file outside the artifact root)."""

import http.client
import json
import subprocess
import time

import pytest
import requests

from .stack import ALL_PROFILES

LONG_RUNNING = ("postgres", "minio", "mlflow")
SECRET_DIRS = {"postgres": "/secrets/postgres", "minio": "/secrets/minio",
               "mlflow": "/secrets/mlflow"}
ENV_OF = {"postgres_password": "POSTGRES_PASSWORD", "minio_root_user": "MINIO_ROOT_USER",
          "minio_root_password": "MINIO_ROOT_PASSWORD", "s3_access_key": "MLFLOW_S3_ACCESS_KEY",
          "s3_secret_key": "MLFLOW_S3_SECRET_KEY", "admin_password": "MLFLOW_ADMIN_PASSWORD",
          "models_password": "MLFLOW_MODELS_PASSWORD",
          "flask_secret_key": "MLFLOW_FLASK_SECRET_KEY"}
# Identifiers rather than secrets: minio-init names its service user in its log.
NAMES = ("minio_root_user", "s3_access_key")
PASSWD_MARKERS = ("root:x:0:0", "root:*:0:0", "/bin/bash", "nologin")


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect(container_id: str) -> dict:
    return json.loads(docker("inspect", container_id))[0]


def container_id(stack, service: str) -> str:
    ids = stack.compose("ps", "-q", service).stdout.split()
    assert ids, f"{service} is not running"
    return ids[0]


def project_containers(stack) -> list[str]:
    return docker("ps", "-a", "-q", "--filter",
                  f"label=com.docker.compose.project={stack.project}").split()


@pytest.fixture(scope="module")
def secrets(stack) -> dict[str, str]:
    """Every secret file of the volumes mounted in the running services, by volume/name."""
    values = {}
    for service, directory in SECRET_DIRS.items():
        for name in stack.exec(service, "ls", directory).split():
            values[f"{service}/{name}"] = stack.exec(service, "cat", f"{directory}/{name}")
    assert all(len(v) >= 3 for v in values.values()), "a secret file is empty"
    assert {"minio/minio_root_password", "mlflow/admin_password",
            "postgres/postgres_password"} <= set(values)
    return values


def leaked(text: str, secrets: dict[str, str], skip=()) -> list[str]:
    return sorted(key for key, value in secrets.items() if value in text and key not in skip)


def test_long_running_services_run_as_non_root(stack):
    for service in LONG_RUNNING:
        info = inspect(container_id(stack, service))
        user = info["Config"]["User"]
        assert user and user.split(":")[0] not in ("", "0", "root"), f"{service} runs as {user!r}"
        assert stack.exec(service, "id", "-u").strip() != "0", service
        status = stack.exec(service, "cat", "/proc/1/status")
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert "0" not in uids, f"{service}'s main process has uids {uids}"


def test_only_mlflow_publishes_a_port_and_only_where_asked(stack):
    for service, port in (("postgres", "5432"), ("minio", "9000"), ("minio", "9001")):
        info = inspect(container_id(stack, service))
        assert not info["HostConfig"]["PortBindings"], (service, info["HostConfig"]["PortBindings"])
        assert not any(info["NetworkSettings"]["Ports"].values()), (service, info["NetworkSettings"])
        published = stack.compose("port", service, port, check=False)
        assert published.returncode != 0 or published.stdout.strip() in ("", ":0"), published.stdout
    bindings = inspect(container_id(stack, "mlflow"))["HostConfig"]["PortBindings"]
    assert list(bindings) == ["5000/tcp"]
    assert [b["HostIp"] for b in bindings["5000/tcp"]] == [stack.env["BIND_ADDRESS"]]


def test_mlflow_holds_no_minio_root_credentials(stack, secrets):
    files = stack.exec("mlflow", "ls", "-A", "/secrets/mlflow").split()
    assert not [f for f in files if f.startswith("minio_root")], files
    environment = stack.exec("mlflow", "env")
    assert "MINIO_ROOT" not in environment
    # The server's own processes (serve.py changes its environment before exec).
    processes = stack.exec("mlflow", "sh", "-c",
                           "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'")
    runtime = stack.exec("mlflow", "sh", "-c", "cat /run/mlflow/* /secrets/mlflow/*")
    assert "pgpass" in stack.exec("mlflow", "ls", "/run/mlflow")
    for key in ("minio/minio_root_password", "minio/minio_root_user"):
        for where, text in (("env", environment), ("processes", processes), ("files", runtime)):
            assert secrets[key] not in text, f"{key} found in the mlflow container's {where}"
    assert "MINIO_ROOT" not in processes


def test_no_secret_in_inspect_image_history_logs_or_command_lines(stack, secrets):
    problems = []
    containers = project_containers(stack)
    assert len(containers) >= 5, containers  # secrets, postgres, minio, minio-init, mlflow
    images = set()
    for cid in containers:
        info = inspect(cid)
        images.add(info["Image"])
        name = info["Name"]
        skip = set()
        if info["Config"]["Labels"].get("com.docker.compose.service") == "secrets":
            # Values an operator sets in .env reach the secrets job through its environment
            # (documented); only generated ones must be absent there too.
            given = {e.split("=", 1)[0] for e in info["Config"]["Env"] if e.split("=", 1)[1:] != [""]}
            skip = {k for k in secrets if ENV_OF.get(k.split("/")[1]) in given}
        if found := leaked(json.dumps(info), secrets, skip):
            problems.append(f"docker inspect {name}: {found}")
    for image in images:
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}} {{.Comment}}", image)
        history += json.dumps(json.loads(docker("image", "inspect", image))[0]["Config"])
        if found := leaked(history, secrets):
            problems.append(f"image {image}: {found}")
    logs = stack.compose(*ALL_PROFILES, "logs", "--no-color").stdout
    assert "mlflow-entrypoint" in logs
    if found := leaked(logs, secrets, skip=[k for k in secrets if k.split("/")[1] in NAMES]):
        problems.append(f"docker compose logs: {found}")
    for service in LONG_RUNNING:
        argv = stack.exec(service, "sh", "-c",
                          "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
        if found := leaked(argv, secrets, skip=[k for k in secrets if k.split("/")[1] in NAMES]):
            problems.append(f"command lines in {service}: {found}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------- hostile requests


@pytest.fixture(scope="module")
def run_ids(stack, admin):
    api = stack.url + "/api/2.0/mlflow"
    experiment = requests.post(f"{api}/experiments/create", auth=admin, timeout=30,
                               json={"name": f"hostile-{time.time_ns()}"})
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    run = requests.post(f"{api}/runs/create", auth=admin, timeout=30,
                        json={"experiment_id": experiment_id})
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    put = requests.put(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}"
                       "/artifacts/ok.txt", data=b"fine", auth=admin, timeout=30)
    assert put.status_code == 200, put.text
    return experiment_id, run_id


def raw(stack, admin, method: str, path: str, body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, str]:
    """Send the path exactly as written (requests would normalise dot segments)."""
    import base64

    token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host="Host" in (headers or {}))
        for name, value in {"Authorization": f"Basic {token}", **(headers or {})}.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def assert_refused(status: int, body: str, what: str) -> None:
    assert 400 <= status < 500, f"{what}: HTTP {status}: {body[:300]}"
    assert not any(marker in body for marker in PASSWD_MARKERS), f"{what} returned a host file"


TRAVERSALS = [
    "../../etc/passwd",
    "../../../../../../etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5c..%5cetc%5cpasswd",
    "....//....//etc/passwd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_artifact_path_traversal_is_refused(stack, admin, run_ids, path):
    experiment_id, run_id = run_ids
    base = "/api/2.0/mlflow-artifacts/artifacts/"
    for prefix in ("", f"{experiment_id}/{run_id}/artifacts/"):
        status, body = raw(stack, admin, "GET", base + prefix + path)
        assert_refused(status, body, f"GET {base}{prefix}{path}")
        if not path.startswith("...."):  # "....//x" is an odd but harmless artifact name
            status, body = raw(stack, admin, "PUT", base + prefix + path.replace("passwd", "escape"),
                               body=b"escape")
            assert_refused(status, body, f"PUT {base}{prefix}{path}")
    for endpoint in (f"/get-artifact?run_id={run_id}&path=",
                     f"/ajax-api/2.0/mlflow/get-artifact?run_uuid={run_id}&path=",
                     f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=",
                     "/model-versions/get-artifact?name=nope&version=1&path="):
        status, body = raw(stack, admin, "GET", endpoint + path)
        assert_refused(status, body, f"GET {endpoint}{path}")


def test_hostile_writes_leave_nothing_outside_the_artifact_root(stack, run_ids):
    # Runs after the traversal attempts above: every object is still under artifacts/.
    keys = [line.split()[-1] for line in stack.mc("ls", "--recursive", "stack/mlflow").splitlines()]
    assert keys, "the bucket is empty"
    outside = [k for k in keys if not k.startswith("artifacts/") or "escape" in k]
    assert not outside, outside


def test_reading_a_missing_artifact_is_404(stack, admin, run_ids):
    experiment_id, run_id = run_ids
    status, body = raw(stack, admin, "GET", "/api/2.0/mlflow-artifacts/artifacts/"
                       f"{experiment_id}/{run_id}/artifacts/no-such-file.txt")
    assert status == 404, body[:300]
    status, body = raw(stack, admin, "GET", f"/get-artifact?run_id={run_id}&path=no-such-file")
    assert 400 <= status < 500, body[:300]


MLFLOW_DOUBLE_JSON_BUG = pytest.mark.xfail(strict=True, reason=(
    "MLflow 3.17.2 bug: _get_normalized_request_json json.loads() a JSON string body a second "
    "time and the JSONDecodeError becomes a 500; fix upstream or in a Flask error handler"))


@pytest.mark.parametrize("body", [
    b'{"experiment_id": ', b"\xff\xfe not json", b"[]", b"{}" * 50_000, b"null",
    pytest.param(b'"x"', marks=MLFLOW_DOUBLE_JSON_BUG),
], ids=["truncated", "not-utf8", "array", "100kB-garbage", "null", "json-string"])
def test_malformed_json_gets_4xx(stack, admin, body):
    status, text = raw(stack, admin, "POST", "/api/2.0/mlflow/runs/create", body=body,
                       headers={"Content-Type": "application/json"})
    assert_refused(status, text, f"runs/create with {body[:20]!r}")


@pytest.mark.parametrize("endpoint,field", [("runs/create", "run_name"),
                                            ("experiments/create", "name")])
def test_100_kB_names_get_4xx(stack, admin, run_ids, endpoint, field):
    body = {"experiment_id": run_ids[0]} if endpoint == "runs/create" else {}
    body[field] = "n" * 100_000
    status, text = raw(stack, admin, "POST", f"/api/2.0/mlflow/{endpoint}",
                       body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert_refused(status, text, f"{endpoint} with a 100 kB {field}")


def test_unknown_host_header_is_refused(stack, admin):
    for host in ("evil.example.com", f"evil.example.com:{stack.port}", "127.0.0.1.nip.io"):
        status, body = raw(stack, admin, "GET", "/api/2.0/mlflow/experiments/search?max_results=1",
                           headers={"Host": host})
        assert status == 403, (host, status, body[:200])
