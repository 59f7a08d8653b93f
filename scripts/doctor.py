"""Checks a running stack from the machine it runs on; see scripts/doctor.

Standard library only (the host needs python3 and Docker, nothing else). Prints one line
per check (OK / WARN / FAIL), with a sentence saying what to do under each problem, and
exits 1 if any check failed.
"""

from __future__ import annotations

import base64
import calendar
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from stack_host import compose_command, last_line, version_tuple

REPO = Path(__file__).resolve().parents[1]
HTTP_TIMEOUT = 15
MIN_FREE_BYTES = 5 * 1024**3
MAX_SKEW_SECONDS = 30
EXPERIMENT = "doctor"
# Services that stay up, and one-shot services that must have exited 0.
LONG_RUNNING = ("postgres", "minio", "mlflow")
ONE_SHOT = ("secrets", "minio-init", "models")
# Services of the optional profiles: their problems do not stop the tracking server.
OPTIONAL = ("models", "model-server", "gc", "prometheus")
ALL_PROFILES = ("--profile", "models", "--profile", "serve", "--profile", "tls",
                "--profile", "gc", "--profile", "monitoring")
# Where the monitoring profile's Prometheus (or any scraper on the stack network) reads.
SCRAPE_TARGETS = {"mlflow": "http://mlflow:9464/metrics",
                  "minio": "http://minio:9000/minio/v2/metrics/cluster"}
FETCH_STATUS = ("import sys, urllib.request\n"
                "for url in sys.argv[1:]:\n"
                "    try: print(urllib.request.urlopen(url, timeout=10).status)\n"
                "    except Exception as e: print(type(e).__name__, str(e)[:200])\n")
LOGIN_REFUSED = re.compile(r"login limit: refusing logins from (\S+) .*\(user names tried: (.*)\)")
LOGIN_FAILED = re.compile(r"failed login for user '(.*)' from (\S+) ")
GC_STALE_SECONDS = 2 * 86400
INVALID_HOST = "Invalid Host header"
CORS_BLOCKED = "Cross-origin request blocked"


class Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, check: str, message: str, fix: str | None = None) -> None:
        print(f"{status:<4} {check}: {message}", flush=True)
        if fix:
            print(f"     fix: {fix}", flush=True)
        if status == "FAIL":
            self.failed = True

    def ok(self, check, message):
        self.line("OK", check, message)

    def warn(self, check, message, fix=None):
        self.line("WARN", check, message, fix)

    def fail(self, check, message, fix):
        self.line("FAIL", check, message, fix)


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of .env, as Compose reads them (simple quoting only)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


class Settings:
    def __init__(self) -> None:
        self.file = read_env_file(REPO / ".env")

    def get(self, name: str, default: str = "") -> str:
        """The environment wins over .env, as with docker compose."""
        value = os.environ.get(name)
        if value is None:
            value = self.file.get(name)
        return value if value else default


def run(*command: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError:
        return subprocess.CompletedProcess(command, 127, "", f"{command[0]}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 124, "", f"timed out after {timeout:.0f} s")


def compose(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # COMPOSE_PROJECT_NAME (environment or .env) picks the stack, as in scripts/lib.sh.
    return run(*compose_command(*args), timeout=timeout)


# --- checks -----------------------------------------------------------------------------

def check_docker(report: Report) -> bool:
    if shutil.which("docker") is None:
        report.fail("docker", "the docker command is not installed or not on PATH",
                    "Install Docker Engine (https://docs.docker.com/engine/install/).")
        return False
    server = run("docker", "version", "--format", "{{.Server.Version}}")
    if server.returncode != 0 or not server.stdout.strip():
        report.fail("docker", f"the Docker engine does not answer: {last_line(server.stderr)}",
                    "Start the Docker daemon (e.g. systemctl start docker) and make sure this "
                    "user may use it (member of the docker group, or use sudo).")
        return False
    report.ok("docker", f"Docker Engine {server.stdout.strip()}")
    compose_version = run("docker", "compose", "version", "--short")
    text = compose_version.stdout.strip().lstrip("v")
    if compose_version.returncode != 0 or not text:
        report.fail("compose", "Docker Compose v2 (the 'docker compose' plugin) is missing",
                    "Install the docker-compose-plugin package (Compose v2); the old "
                    "docker-compose v1 is not supported.")
        return False
    if version_tuple(text) < (2,):
        report.fail("compose", f"Docker Compose {text} is too old",
                    "Install Docker Compose v2 (the docker-compose-plugin package).")
        return False
    report.ok("compose", f"Docker Compose {text}")
    return True


def compose_containers() -> tuple[list[dict] | None, str]:
    result = compose(*ALL_PROFILES, "ps", "--all", "--format", "json")
    if result.returncode != 0:
        return None, last_line(result.stderr)
    text = result.stdout.strip()
    if not text:
        return [], ""
    # Compose >= 2.21 prints one JSON object per line, older versions one array.
    if text.startswith("["):
        return json.loads(text), ""
    return [json.loads(line) for line in text.splitlines() if line.strip()], ""


def check_containers(report: Report) -> bool:
    """Returns whether the mlflow service is running."""
    containers, error = compose_containers()
    if containers is None:
        report.fail("containers", f"docker compose ps failed: {error}",
                    "Run this from the stack's checkout, with the same COMPOSE_PROJECT_NAME "
                    "as the running stack.")
        return False
    project = containers[0].get("Project") if containers else None
    if not containers:
        report.fail("containers", "no container of this stack exists",
                    "Start the stack: docker compose up -d (set COMPOSE_PROJECT_NAME if the "
                    "stack was started under another project name).")
        return False
    report.ok("project", f"{project} ({len(containers)} containers)")
    by_service = {c.get("Service"): c for c in containers}
    mlflow_running = False
    for service in LONG_RUNNING + ("model-server", "proxy", "gc", "prometheus") + ONE_SHOT:
        c = by_service.get(service)
        check = f"container {service}"
        if c is None:
            if service in LONG_RUNNING or service == "secrets":
                report.fail(check, "does not exist",
                            "Start the stack: docker compose up -d.")
            continue
        state = (c.get("State") or "").lower()
        health = (c.get("Health") or "").lower()
        status = c.get("Status") or state
        exit_code = c.get("ExitCode")
        bad = report.warn if service in OPTIONAL else report.fail
        if service in ONE_SHOT:
            if state == "exited" and exit_code == 0:
                report.ok(check, "finished successfully")
            elif state in ("running", "created", "restarting"):
                report.warn(check, f"still {state} ({status})",
                            f"Wait for it, then look at: docker compose logs {service}")
            else:
                bad(check, f"{status}",
                    f"Read why in: docker compose logs {service}; fix the cause and "
                    "run docker compose up -d again.")
            continue
        if state == "running" and health in ("healthy", ""):
            report.ok(check, f"running{' and healthy' if health else ''}")
            mlflow_running = mlflow_running or service == "mlflow"
        elif state == "running" and health == "starting":
            report.warn(check, f"running, health check still starting ({status})",
                        f"Wait a minute; if it stays so, read: docker compose logs {service}")
            mlflow_running = mlflow_running or service == "mlflow"
        elif state == "running":
            bad(check, f"running but {health} ({status})",
                f"Read why in: docker compose logs {service}")
            mlflow_running = mlflow_running or service == "mlflow"
        else:
            bad(check, f"{status}",
                f"Read why in: docker compose logs {service}; then docker compose up -d.")
    return mlflow_running


def published_address(settings: Settings) -> tuple[str, int]:
    """Where MLflow's port is published, as an address this machine can connect to."""
    result = compose("port", "mlflow", "5000")
    text = result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""
    match = re.match(r"^\[?([^\]]*)\]?:(\d+)$", text)
    if match:
        host, port = match.group(1), int(match.group(2))
    else:
        host, port = settings.get("BIND_ADDRESS", "0.0.0.0"), int(settings.get("MLFLOW_PORT", "5000"))
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return host, port


class Http:
    def __init__(self, base: str, auth: tuple[str, str] | None = None) -> None:
        self.base = base.rstrip("/")
        self.auth = auth

    def request(self, method: str, path: str, body: bytes | dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        headers = dict(headers or {})
        data = None
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = body
            headers["Content-Type"] = "application/octet-stream"
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, raw = self.request(method, path, body)
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"message": raw.decode(errors="replace")[:200]}


def public_url(settings: Settings, published_port: int) -> str:
    port = settings.get("MLFLOW_PORT") or str(published_port)
    return settings.get("MLFLOW_PUBLIC_URL") or f"http://localhost:{port}"


def allowed_hosts_fix(host_header: str) -> str:
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return (f"Add {name} to MLFLOW_ALLOWED_HOSTS in .env (comma-separated), then run "
            "docker compose up -d.")


def check_host(report: Report, base: str, port: int, settings: Settings) -> None:
    url = public_url(settings, port)
    host_header = urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1]
    check = "public host"
    if not host_header:
        report.fail(check, f"MLFLOW_PUBLIC_URL={url!r} has no host name",
                    "Set MLFLOW_PUBLIC_URL to the URL people use, e.g. http://mlflow.example.com:5000.")
        return
    try:
        # "/" without credentials: the Host check answers before the login check does.
        status, body = Http(base).request("GET", "/", headers={"Host": host_header})
    except OSError as e:
        report.fail(check, f"cannot reach the server at {base}: {e}",
                    "Check that the mlflow container is running: docker compose ps.")
        return
    if status == 403 and INVALID_HOST.encode() in body:
        report.fail(check, f"the server refuses the host {host_header!r} of {url} "
                           "(\"Invalid Host header\")", allowed_hosts_fix(host_header))
    elif status in (200, 401):
        report.ok(check, f"{host_header} (from {url}) is accepted by the server's Host check")
    else:
        report.warn(check, f"unexpected answer {status} for host {host_header!r}",
                    "Look at: docker compose logs mlflow")


def credentials(settings: Settings) -> tuple[tuple[str, str] | None, str]:
    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        return (username, password), "MLFLOW_TRACKING_USERNAME/PASSWORD"
    user = compose("exec", "-T", "mlflow", "printenv", "MLFLOW_ADMIN_USERNAME")
    secret = compose("exec", "-T", "mlflow", "cat", "/secrets/mlflow/admin_password")
    if secret.returncode != 0 or not secret.stdout:
        return None, last_line(secret.stderr)
    name = user.stdout.strip() if user.returncode == 0 and user.stdout.strip() else "admin"
    return (name, secret.stdout.strip()), "the admin password from the secrets volume"


def check_login(report: Report, base: str, settings: Settings) -> Http | None:
    check = "tracking login"
    auth, source = credentials(settings)
    if auth is None:
        report.fail(check, f"could not read the admin password from the mlflow container: {source}",
                    "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or start the "
                    "stack (docker compose up -d).")
        return None
    http = Http(base, auth)
    try:
        status, body = http.json("GET", "/api/2.0/mlflow/experiments/search?max_results=1")
    except OSError as e:
        report.fail(check, f"cannot reach {base}: {e}",
                    "Check that the mlflow container is running and its port is published: "
                    "docker compose ps.")
        return None
    if status == 200:
        report.ok(check, f"{base} answers as {auth[0]!r} (using {source})")
        return http
    if status == 401:
        report.fail(check, f"{base} rejects the password of {auth[0]!r} (401, using {source}): "
                           "wrong user name or password",
                    "Fix MLFLOW_TRACKING_PASSWORD (scripts/credentials prints the admin's; "
                    "scripts/user password NAME sets a new one for a user).")
    else:
        report.fail(check, f"{base} answered {status}: {str(body.get('message', body))[:200]}",
                    "Look at: docker compose logs mlflow")
    return None


def check_browser_changes(report: Report, http: Http, settings: Settings, port: int) -> None:
    """The UI's writes carry the page's Origin; MLflow refuses origins it does not know."""
    check = "browser changes"
    url = public_url(settings, port)
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    origin = f"{parts.scheme}://{netloc}"
    status, body = http.request("POST", "/ajax-api/2.0/mlflow/experiments/search",
                                {"max_results": 1}, headers={"Host": netloc, "Origin": origin})
    if status == 200:
        report.ok(check, f"pages at {origin} may change things (create, rename, delete)")
    elif status == 403 and CORS_BLOCKED.encode() in body:
        report.fail(check, f"the server refuses changes made from pages at {origin} "
                           "(\"Cross-origin request blocked\"): the UI there is read-only",
                    allowed_hosts_fix(netloc))
    elif status == 403 and INVALID_HOST.encode() in body:
        report.fail(check, f"skipped: the server refuses the host of {url}", "See public host above.")
    else:
        report.warn(check, f"unexpected answer {status} to a change from {origin}",
                    "Look at: docker compose logs mlflow")


def check_encryption(report: Report, http: Http) -> None:
    check = "encryption keys"
    status, body = http.json("GET", "/ajax-api/3.0/mlflow/gateway/secrets/config")
    if status == 403:
        report.warn(check, "skipped: needs an admin login", "Run scripts/doctor without "
                    "MLFLOW_TRACKING_USERNAME/PASSWORD to use the admin account.")
        return
    if status != 200 or "using_default_passphrase" not in body:
        report.warn(check, f"unexpected answer {status} from the AI Gateway's secrets config",
                    "Look at: docker compose logs mlflow")
        return
    if body["using_default_passphrase"]:
        report.fail(check, "the AI Gateway encrypts stored API keys with MLflow's public "
                           "development passphrase",
                    "Recreate the server with this checkout's files: docker compose up -d "
                    "(the secrets job generates MLFLOW_CRYPTO_KEK_PASSPHRASE).")
        return
    logs = compose("logs", "--no-color", "--tail", "2000", "mlflow", timeout=120).stdout
    starts = logs.split("starting mlflow server with")
    unreadable = [line.split("warning: ", 1)[1][:160] for line in starts[-2].splitlines()
                  if "warning: AI Gateway:" in line or "warning: webhooks:" in line] \
        if len(starts) >= 2 else []
    if unreadable:
        report.warn(check, f"at the last start: {unreadable[0]}...",
                    "Read the whole line in docker compose logs mlflow; docs/operations.md "
                    "\"Encryption keys\" says how to bring the right keys back.")
    else:
        report.ok(check, "stored gateway and webhook secrets use the stack's own keys")


def check_artifacts(report: Report, http: Http) -> None:
    check = "artifact round trip"
    fix_logs = "Look at: docker compose logs mlflow minio"
    status, body = http.json("GET", "/api/2.0/mlflow/experiments/get-by-name?"
                             + urllib.parse.urlencode({"experiment_name": EXPERIMENT}))
    if status == 200:
        experiment = body["experiment"]
        experiment_id = experiment["experiment_id"]
        if experiment.get("lifecycle_stage") == "deleted":
            http.json("POST", "/api/2.0/mlflow/experiments/restore", {"experiment_id": experiment_id})
    elif status == 404:
        status, body = http.json("POST", "/api/2.0/mlflow/experiments/create", {"name": EXPERIMENT})
        if status != 200:
            report.fail(check, f"could not create the experiment {EXPERIMENT!r}: {status} "
                               f"{body.get('message', '')[:200]}", fix_logs)
            return
        experiment_id = body["experiment_id"]
    else:
        report.fail(check, f"could not look up the experiment {EXPERIMENT!r}: {status} "
                           f"{body.get('message', '')[:200]}", fix_logs)
        return

    status, body = http.json("POST", "/api/2.0/mlflow/runs/create", {
        "experiment_id": experiment_id, "run_name": "doctor",
        "start_time": int(time.time() * 1000),
    })
    if status != 200:
        fix = (f"Grant the user EDIT on it: scripts/user grant {http.auth[0]} EDIT experiment "
               f"{EXPERIMENT}" if status == 403 else fix_logs)
        report.fail(check, f"could not create a run in {EXPERIMENT!r}: {status} "
                           f"{body.get('message', '')[:200]}", fix)
        return
    run_id = body["run"]["info"]["run_id"]
    artifact_uri = body["run"]["info"].get("artifact_uri", "")
    try:
        if not artifact_uri.startswith("mlflow-artifacts:"):
            report.fail(check, f"the run's artifacts go to {artifact_uri!r}, not through the "
                               "server's artifact proxy",
                        "Start the server with --serve-artifacts and --artifacts-destination "
                        "(as this stack's mlflow service does); the experiment may predate it.")
            return
        path = urllib.parse.urlsplit(artifact_uri).path.lstrip("/") + "/doctor.bin"
        url_path = "/api/2.0/mlflow-artifacts/artifacts/" + urllib.parse.quote(path)
        payload = os.urandom(64 * 1024) + f"doctor {uuid.uuid4()}\n".encode()
        started = time.monotonic()
        status, raw = http.request("PUT", url_path, payload)
        if status != 200:
            report.fail(check, f"upload through the proxy failed: {status} "
                               f"{raw.decode(errors='replace')[:200]}",
                        "Check MinIO and the free disk space; " + fix_logs)
            return
        status, raw = http.request("GET", url_path)
        if status != 200:
            report.fail(check, f"download through the proxy failed: {status} "
                               f"{raw.decode(errors='replace')[:200]}", fix_logs)
            return
        if raw != payload:
            report.fail(check, f"downloaded {len(raw)} bytes that differ from the {len(payload)} "
                               "uploaded", fix_logs)
            return
        http.request("DELETE", url_path)
        report.ok(check, f"{len(payload)} bytes up and back through the proxy in "
                         f"{time.monotonic() - started:.1f} s")
    except OSError as e:
        report.fail(check, f"the server stopped answering: {e}", fix_logs)
    finally:
        try:
            http.json("POST", "/api/2.0/mlflow/runs/delete", {"run_id": run_id})
        except OSError:
            pass
    status, info = http.json("GET", "/api/3.0/mlflow/server-info")
    if status == 200 and (info.get("multipart_downloads_enabled") or info.get("multipart_uploads_enabled")):
        report.warn("presigned transfers", "the server tells clients to use presigned S3 URLs, "
                    "which laptops cannot reach",
                    "Use the stack's server image (it registers the proxied S3 repository).")


def check_disk(report: Report) -> None:
    check = "docker disk"
    root = run("docker", "info", "--format", "{{.DockerRootDir}}").stdout.strip()
    free = None
    where = root or "Docker's data directory"
    if root and os.path.isdir(root):
        free = shutil.disk_usage(root).free
    else:
        # Docker Desktop or a remote engine: measure from inside the mlflow container,
        # whose writable layer (and upload buffer) lives on that disk.
        df = compose("exec", "-T", "mlflow", "df", "-Pk", "/tmp")
        fields = df.stdout.strip().splitlines()[-1].split() if df.returncode == 0 and df.stdout.strip() else []
        if len(fields) >= 4 and fields[3].isdigit():
            free = int(fields[3]) * 1024
            where = f"{where} (seen from the mlflow container)"
    if free is None:
        report.warn(check, f"could not measure the free space of {where}",
                    "Check it by hand: docker system df, and df on the Docker host.")
    elif free < MIN_FREE_BYTES:
        report.warn(check, f"{free / 1024**3:.1f} GB free on {where} (under 5 GB)",
                    "Free space (docker system prune, docker builder prune) or grow the disk: "
                    "uploads are buffered there and PostgreSQL and MinIO keep their data there.")
    else:
        report.ok(check, f"{free / 1024**3:.1f} GB free on {where}")


def check_metrics(report: Report) -> None:
    check = "metrics"
    prometheus = compose("ps", "-q", "--status", "running", "prometheus").stdout.strip()
    if prometheus:
        up = compose("exec", "-T", "prometheus", "promtool", "query", "instant",
                     "http://127.0.0.1:9090", "up")
        states = dict(re.findall(r'job="([^"]+)".*=> (\d)', up.stdout))
        down = [job for job in SCRAPE_TARGETS if states.get(job) != "1"]
        if up.returncode != 0:
            report.warn(check, f"could not ask Prometheus: {last_line(up.stderr)}",
                        "Read: docker compose logs prometheus")
        elif down:
            report.fail(check, f"Prometheus cannot scrape {', '.join(down)}",
                        "Read the scrape error at the targets page of Prometheus (127.0.0.1:"
                        "PROMETHEUS_PORT/targets) and docker compose logs " + " ".join(down))
        else:
            report.ok(check, "Prometheus scrapes mlflow and minio")
        return
    # No Prometheus here: ask from the mlflow container, which is on the stack network.
    result = compose("exec", "-T", "mlflow", "python", "-c", FETCH_STATUS, *SCRAPE_TARGETS.values())
    answers = result.stdout.split("\n")
    failing = [f"{name} ({answers[i].strip() or 'no answer'})"
               for i, name in enumerate(SCRAPE_TARGETS)
               if i >= len(answers) or answers[i].strip() != "200"]
    if failing:
        report.warn(check, f"metrics not served to the stack network: {', '.join(failing)}",
                    "Recreate the services with this checkout's settings: docker compose up -d "
                    "(mlflow serves port 9464; MinIO needs MINIO_PROMETHEUS_AUTH_TYPE=public).")
    else:
        report.ok(check, "mlflow and minio serve metrics on the stack network (no Prometheus "
                         "running: docker compose --profile monitoring up -d)")


def check_log_limits(report: Report) -> None:
    check = "log limits"
    ids = compose(*ALL_PROFILES, "ps", "-a", "-q").stdout.split()
    if not ids:
        return
    result = run("docker", "inspect", "--format",
                 '{{index .Config.Labels "com.docker.compose.service"}} {{.HostConfig.LogConfig.Type}} '
                 '{{index .HostConfig.LogConfig.Config "max-size"}}', *ids)
    unbounded = sorted({line.split()[0] for line in result.stdout.splitlines()
                        if len(line.split()) < 3 or line.split()[1] not in ("json-file", "local")})
    if result.returncode != 0:
        report.warn(check, f"could not inspect the containers: {last_line(result.stderr)}",
                    "Check Docker: docker compose ps")
    elif unbounded:
        report.warn(check, f"unbounded logs: {', '.join(unbounded)}",
                    "These containers predate the log limits; recreate them: docker compose "
                    "up -d (LOG_MAX_SIZE and LOG_MAX_FILES in .env set the limits).")
    else:
        report.ok(check, f"every container's log is bounded ({len(ids)} containers)")


def check_gc(report: Report) -> None:
    check = "gc"
    result = compose("exec", "-T", "mlflow", "python", "-m", "mlflow_stack.gc", "--last")
    text = result.stdout.strip()
    scheduled = bool(compose("ps", "-q", "--status", "running", "gc").stdout.strip())
    fix = ("Run scripts/gc (deletes for good what was deleted more than 30 days ago), or "
           "schedule it daily: docker compose --profile gc up -d")
    if result.returncode != 0 or not text:
        report.warn(check, f"could not read when gc last ran: {last_line(result.stderr)}",
                    "Read: docker compose logs mlflow")
    elif "never run" in text:
        report.warn(check, "gc has never run: deleted runs and their artifacts still take space",
                    fix)
    elif " failed" in text or "still running" in text:
        report.warn(check, text, "Read why in: docker compose logs gc (or the output of "
                                 "scripts/gc); the next gc retries what is left.")
    else:
        started = re.search(r"started (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text)
        # gc prints the database's time: UTC, the zone of the postgres container.
        age = time.time() - calendar.timegm(time.strptime(started[1], "%Y-%m-%d %H:%M:%S")) \
            if started else 0
        if scheduled and age > GC_STALE_SECONDS:
            report.warn(check, f"{text} (more than two days ago, though the gc service runs)",
                        "Read: docker compose logs gc")
        else:
            report.ok(check, text + ("" if scheduled else " (not scheduled)"))


def check_failed_logins(report: Report) -> None:
    check = "failed logins"
    logs = compose("logs", "--no-color", "--since", "24h", "mlflow", timeout=120)
    refused: dict[str, str] = {}
    bursts = 0
    for line in logs.stdout.splitlines():
        if match := LOGIN_REFUSED.search(line):
            refused[match[1]] = match[2]
        elif LOGIN_FAILED.search(line):
            bursts += 1
    if logs.returncode != 0:
        report.warn(check, f"could not read the mlflow log: {last_line(logs.stderr)}",
                    "Check: docker compose logs mlflow")
    elif refused:
        who = "; ".join(f"{address} (tried {names})" for address, names in list(refused.items())[:5])
        report.warn(check, f"{len(refused)} address(es) reached the failed-login limit in the "
                           f"last 24 h: {who}",
                    "If these are not your users, block the addresses at the firewall; if they "
                    "are, check their password (scripts/user password NAME sets a new one). "
                    "Details: docker compose logs mlflow | grep 'login'")
    else:
        report.ok(check, f"no address reached the failed-login limit in the last 24 h "
                         f"({bursts} burst(s) of failed logins)")


def check_clock(report: Report) -> None:
    check = "clock"
    before = time.time()
    result = compose("exec", "-T", "mlflow", "date", "+%s")
    after = time.time()
    text = result.stdout.strip()
    if result.returncode != 0 or not text.isdigit():
        report.warn(check, f"could not read the mlflow container's clock: {last_line(result.stderr)}",
                    "Make sure the mlflow container is running: docker compose ps.")
        return
    skew = int(text) - (before + after) / 2
    if abs(skew) > MAX_SKEW_SECONDS:
        report.warn(check, f"the mlflow container's clock is {skew:+.0f} s off this machine's",
                    "Synchronise the clocks (NTP: timedatectl set-ntp true on the Docker host, "
                    "or restart Docker Desktop); run times and login caching depend on it.")
    else:
        report.ok(check, f"container and host clocks agree within {max(abs(skew), 1):.0f} s")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip().replace("see scripts/doctor", "run as scripts/doctor"))
        return 0
    report = Report()
    settings = Settings()
    if not check_docker(report):
        return 1
    mlflow_running = check_containers(report)
    host, port = published_address(settings)
    base = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    if mlflow_running:
        check_host(report, base, port, settings)
        http = check_login(report, base, settings)
        if http is not None:
            check_browser_changes(report, http, settings, port)
            check_artifacts(report, http)
            check_encryption(report, http)
        else:
            report.fail("artifact round trip", "skipped: no working login",
                        "Fix the login above first.")
    else:
        report.fail("tracking server", "skipped the HTTP checks: the mlflow service is not running",
                    "Start the stack: docker compose up -d")
    check_disk(report)
    check_log_limits(report)
    if mlflow_running:
        check_clock(report)
        check_metrics(report)
        check_gc(report)
        check_failed_logins(report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
