"""scripts/benchmark: the stack against MLflow's own configuration and MinIO, in one run.

Starts a throwaway copy of the stack (its own Compose project, fresh volumes, ports on
127.0.0.1), the HTTPS proxy, and beside it the "anchor": `mlflow server` as MLflow's
docker-compose example runs it (no auth, MLflow's defaults, artifacts proxied), from our
server image on the same network, PostgreSQL (its own schema) and MinIO (its own prefix),
with our uvicorn shim switched off. Then it measures, on this machine, in this run:

1. latency of a trivial authenticated call, one reused connection and a new one per call;
2. throughput of concurrent keep-alive clients sending log_batch (every point verified);
3. artifact upload/download with the default MLflow client, time to first byte, the
   mlflow container's memory peak, against `mc cp` inside the MinIO container;
4. `docker compose down` + `up -d` with existing volumes (and the first start) to healthy;
5. search_runs over many seeded runs, as the admin and as a team member (whose answers
   also pass MLflow's model-link redaction), and the experiment's runs page in a browser
   (also a first visit over an emulated office link, where the UI's size counts).

It prints one table with ratios and writes it to --output. The copy is removed at the end.
Every request goes to 127.0.0.1 or to containers of the copy; every loop is bounded.
"""

import argparse
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.e2e.memory import MemoryPeaks
from tests.e2e.stack import REPO, Stack, free_port
from tests.load.log_load import percentile
from tests.load.request_latency import measure

MIB = 1 << 20
ANCHOR_SCHEMA = "anchor"

SIZES = {
    # calls per latency path, clients x log_batch calls, artifact MiB, seeded runs, searches
    # attack: seconds of password guessing by 8 clients (issue #12's test)
    "tiny": dict(calls=15, clients=4, batches=10, artifact_mib=8, runs=500, searches=5,
                 attack=3),
    "full": dict(calls=105, clients=16, batches=150, artifact_mib=1024, runs=100_000,
                 searches=40, attack=20),
}

# The anchor: MLflow's docker-compose configuration, from our image. It reads the copy's
# generated PostgreSQL password and S3 keys from the mlflow secrets volume into files only
# this throwaway container sees, then runs `mlflow server` with MLflow's defaults.
ANCHOR_START = f"""
import os, pathlib, psycopg2
s = pathlib.Path('/secrets/mlflow')
pw = (s / 'postgres_password').read_text()
pathlib.Path('/tmp/pgpass').write_text(f'postgres:5432:mlflow:mlflow:{{pw}}\\n')
os.chmod('/tmp/pgpass', 0o600)
pathlib.Path('/tmp/aws').write_text('[default]\\naws_access_key_id = '
    + (s / 's3_access_key').read_text() + '\\naws_secret_access_key = '
    + (s / 's3_secret_key').read_text() + '\\n')
os.environ.update(PGPASSFILE='/tmp/pgpass', AWS_SHARED_CREDENTIALS_FILE='/tmp/aws',
                  MLFLOW_S3_ENDPOINT_URL='http://minio:9000')
with psycopg2.connect(host='postgres', dbname='mlflow', user='mlflow') as c:
    c.cursor().execute('CREATE SCHEMA IF NOT EXISTS {ANCHOR_SCHEMA}')
uri = 'postgresql+psycopg2://mlflow@postgres:5432/mlflow?options=-csearch_path%3D{ANCHOR_SCHEMA}'
os.execvp('mlflow', ['mlflow', 'server', '--backend-store-uri', uri, '--serve-artifacts',
          '--artifacts-destination', 's3://mlflow/anchor', '--host', '0.0.0.0', '--port', '5000'])
"""


def log(message: str) -> None:
    print(f"benchmark: {message}", file=sys.stderr, flush=True)


@dataclass
class Target:
    name: str
    url: str
    auth: tuple[str, str] | None
    verify: bool | str = True
    env: dict[str, str] = field(default_factory=dict)

    def client_env(self) -> dict[str, str]:
        env = {"MLFLOW_TRACKING_URI": self.url, **self.env}
        if self.auth:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = self.auth
        return env


COLUMNS = ("ours", "anchor", "proxy", "minio", "ratio")
HEADER = ["measure", "ours (MLflow port)", "anchor (MLflow defaults, no auth)",
          "ours via HTTPS proxy", "MinIO direct (mc cp)", "ratio"]


class Table:
    def __init__(self):
        self.rows: list[list[str]] = []

    def add(self, measure: str, **cells: str) -> None:
        row = [measure, *(cells.get(column, "") for column in COLUMNS)]
        self.rows.append(row)
        log(" | ".join(row))

    def markdown(self) -> str:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def ratio(ours: float, other: float) -> str:
    return f"{ours / other:.2f}x" if other else "n/a"


# 1. Latency ------------------------------------------------------------------------------

def latency(target: Target, calls: int, reuse: bool) -> tuple[float, float]:
    """p50 and p95 (ms) of the trivial call, as tests/load/request_latency.py times it."""
    times = measure(target.url, target.auth, target.verify, calls, reuse)
    return statistics.median(times), percentile(times, 95)


def latency_under_attack(stack: Stack, target: Target, calls: int, seconds: int) -> dict:
    """The trivial call's latency alone, then while 8 clients on another machine of the
    stack network guess the same user's password as fast as they are answered."""
    from tests.e2e.test_47_login_limit import CLIENTS, PROTECTED

    alone = latency(target, calls, reuse=True)
    times: list[float] = []
    with stack.machine("bench-attacker") as attacker:
        process = attacker.python(CLIENTS, "http://mlflow:5000" + PROTECTED, target.auth[0],
                                  str(seconds), "8", "", "", str(10**9))
        time.sleep(1)  # the guessing is under way
        while process.poll() is None:
            times += measure(target.url, target.auth, target.verify, 10, reuse=True)
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"the guessing clients failed: {err[-2000:]}")
    statuses = [status for status, _ in json.loads(out)]
    return {"alone": alone, "attacked": (statistics.median(times), percentile(times, 95)),
            "guesses": len(statuses), "checked": statuses.count(401)}


# 2. Throughput ---------------------------------------------------------------------------

def log_batch_load(target: Target, clients: int, batches: int) -> dict:
    """Each client: its own keep-alive connection and run, `batches` log_batch calls of 10
    points, as the MLflow client sends them. Returns req/s, p50/p99 and the stored count."""
    setup = requests.Session()

    def call(session, path, body):
        r = session.post(target.url + path, json=body, auth=target.auth, verify=target.verify,
                         timeout=120)
        r.raise_for_status()
        return r.json()

    experiment = call(setup, "/api/2.0/mlflow/experiments/create",
                      {"name": f"bench-load-{time.time_ns()}"})["experiment_id"]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> str:
        session = requests.Session()
        run_id = call(session, "/api/2.0/mlflow/runs/create",
                      {"experiment_id": experiment, "start_time": int(time.time() * 1000)}
                      )["run"]["info"]["run_id"]
        for step in range(batches):
            now = int(time.time() * 1000)
            body = {"run_id": run_id, "metrics": [
                {"key": f"m{k}", "value": float(step), "timestamp": now, "step": step}
                for k in range(10)]}
            start = time.perf_counter()
            try:
                call(session, "/api/2.0/mlflow/runs/log-batch", body)
            except requests.RequestException as e:
                with lock:
                    errors.append(repr(e)[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
        return run_id

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        run_ids = list(pool.map(work, range(clients)))
    wall = time.perf_counter() - start
    stored = 0
    for run_id in run_ids:
        for k in range(10):
            r = setup.get(target.url + "/api/2.0/mlflow/metrics/get-history",
                          params={"run_id": run_id, "metric_key": f"m{k}", "max_results": 25000},
                          auth=target.auth, verify=target.verify, timeout=60)
            r.raise_for_status()
            stored += len(r.json().get("metrics", []))
    return {"rps": len(latencies) / wall, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "errors": len(errors),
            "stored": stored, "expected": clients * batches * 10}


# 3. Artifacts ----------------------------------------------------------------------------

def client_script(target: Target, code: str, *args: str) -> dict:
    """Run MLflow client code in a fresh process with only the target's laptop variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "AWS_")) and k != "REQUESTS_CA_BUNDLE"}
    env.update(target.client_env(), AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
               AWS_CONFIG_FILE="/nonexistent")
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                            text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{target.name}: client failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


ARTIFACT_ROUND_TRIP = """
import hashlib, json, os, sys, tempfile, time
from mlflow import MlflowClient
path, = sys.argv[1:]
client = MlflowClient()
exp = client.create_experiment(f"bench-artifacts-{time.time_ns()}")
run = client.create_run(exp).info.run_id
t = time.perf_counter(); client.log_artifact(run, path); up = time.perf_counter() - t
with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as d:
    t = time.perf_counter()
    local = client.download_artifacts(run, os.path.basename(path), d)
    down = time.perf_counter() - t
    same = os.path.getsize(local) == os.path.getsize(path)
print(json.dumps({"up": up, "down": down, "same": same,
                  "path": f"{exp}/{run}/artifacts/{os.path.basename(path)}"}))
"""


def first_byte(target: Target, artifact: str) -> float:
    """Seconds from sending the download request (the client's path) to its first body byte."""
    url = f"{target.url}/api/2.0/mlflow-artifacts/artifacts/{artifact}"
    start = time.perf_counter()
    with requests.get(url, auth=target.auth, verify=target.verify, stream=True,
                      timeout=600) as r:
        r.raise_for_status()
        next(r.iter_content(1))
        return time.perf_counter() - start


def artifacts(stack: Stack, target: Target, path: Path) -> dict:
    ids = stack.container_ids()
    with MemoryPeaks({"mlflow": ids["mlflow"]}) as memory:
        result = client_script(target, ARTIFACT_ROUND_TRIP, str(path))
    if not result["same"]:
        raise RuntimeError(f"{target.name}: the downloaded artifact differs in size")
    mib = path.stat().st_size / MIB
    return {"up": mib / result["up"], "down": mib / result["down"],
            "ttfb": first_byte(target, result["path"]),
            "mem": memory.growth("mlflow") / MIB}


def minio_direct(stack: Stack, mib: int) -> dict:
    """`mc cp` of the same size inside the MinIO container, both ways (MiB/s)."""
    script = (f"set -e; f=/tmp/bench.bin; head -c {mib * MIB} /dev/urandom > $f; "
              "s=$(date +%s.%N); mc-root.sh cp -q $f stack/mlflow/bench/mc.bin >/dev/null; "
              "m=$(date +%s.%N); mc-root.sh cp -q stack/mlflow/bench/mc.bin $f.back >/dev/null; "
              "e=$(date +%s.%N); mc-root.sh rm -q stack/mlflow/bench/mc.bin >/dev/null; "
              "rm -f $f $f.back; echo $s $m $e")
    s, m, e = map(float, stack.exec("minio", "sh", "-c", script).split()[-3:])
    return {"up": mib / (m - s), "down": mib / (e - m)}


# 4. Start-up -----------------------------------------------------------------------------

def time_to_healthy(stack: Stack) -> float:
    start = time.monotonic()
    stack.compose("up", "-d")
    stack.wait_healthy(300)
    return time.monotonic() - start


# 5. Search at scale ----------------------------------------------------------------------

SEED_SQL = """
SET search_path TO {schema};
INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,
                  start_time, end_time, source_version, lifecycle_stage, artifact_uri,
                  experiment_id)
SELECT md5('{exp}-' || i), 'run-' || i, 'LOCAL', '', '', 'bench', 'FINISHED',
       1700000000000 + i * 1000, 1700000000000 + i * 1000 + 500, '', 'active',
       'mlflow-artifacts:/{exp}/' || md5('{exp}-' || i) || '/artifacts', {exp}
FROM generate_series(1, {n}) AS i;
INSERT INTO params (key, value, run_uuid)
SELECT 'p' || k, ((i * 7 + k) % 101)::text, md5('{exp}-' || i)
FROM generate_series(1, {n}) AS i, generate_series(0, 9) AS k;
INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)
SELECT 'm' || k, ((i * 13 + k * 7) % 1000) / 1000.0, 1700000000000 + i * 1000, 0, false,
       md5('{exp}-' || i)
FROM generate_series(1, {n}) AS i, generate_series(0, 9) AS k;
INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)
SELECT key, value, timestamp, step, is_nan, run_uuid FROM metrics
WHERE run_uuid IN (SELECT run_uuid FROM runs WHERE experiment_id = {exp});
INSERT INTO tags (key, value, run_uuid)
SELECT 't' || k, 'v' || ((i + k) % 13), md5('{exp}-' || i)
FROM generate_series(1, {n}) AS i, generate_series(0, 4) AS k;
ANALYZE;
"""


def seed_runs(stack: Stack, target: Target, schema: str, n: int) -> str:
    r = requests.post(f"{target.url}/api/2.0/mlflow/experiments/create",
                      json={"name": f"bench-search-{time.time_ns()}"}, auth=target.auth,
                      timeout=30)
    r.raise_for_status()
    exp = r.json()["experiment_id"]
    stack.exec("postgres", "psql", "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1",
               "--username=postgres", "--dbname=mlflow",
               input=SEED_SQL.format(schema=schema, exp=int(exp), n=int(n)))
    return exp


def new_member(admin: Target) -> tuple[str, str]:
    """A user with MLflow's default permission (READ), as `scripts/user add` makes one."""
    member = (f"bench-member-{time.time_ns()}", secrets.token_urlsafe(18))
    r = requests.post(f"{admin.url}/api/2.0/mlflow/users/create", auth=admin.auth, timeout=30,
                      json={"username": member[0], "password": member[1]})
    r.raise_for_status()
    return member


SEARCH = """
import json, statistics, sys, time
from mlflow import MlflowClient
exp, searches, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = MlflowClient()
out = {}
for label, order in (("default", None), ("runs page", ["attributes.start_time DESC"]),
                     ("metric", ["metrics.m0 DESC"])):
    times = []
    for i in range(searches + 2):
        t = time.perf_counter()
        page = client.search_runs([exp], order_by=order, max_results=100)
        if i >= 2:
            times.append((time.perf_counter() - t) * 1000)
    assert len(page) == min(100, expected), len(page)
    times.sort()
    out[label] = [statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]]
print(json.dumps(out))
"""


@contextlib.contextmanager
def browser_page(target: Target):
    """A page of a new context (an empty cache) of Debian's chromium, logged in to target."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            credentials = dict(zip(("username", "password"), target.auth)) if target.auth else None
            yield browser.new_context(http_credentials=credentials,
                                      viewport={"width": 1400, "height": 900}).new_page()
        finally:
            browser.close()


def _open_runs_page(page, target: Target, experiment_id: str, runs: int) -> float:
    """From the experiments list (the UI's shell), seconds until the experiment's runs
    table shows its newest run."""
    page.goto(target.url + "/#/experiments")
    page.get_by_role("heading", name="Experiments").wait_for(timeout=60_000)
    start = time.perf_counter()
    page.goto(f"{target.url}/#/experiments/{experiment_id}/runs")
    page.get_by_text(f"run-{runs}", exact=True).first.wait_for(timeout=60_000)
    return time.perf_counter() - start


def runs_page_first_visit(target: Target, experiment_id: str, runs: int) -> float:
    """The browser's first visit to the runs page (the UI's shell cached, the runs page's
    own scripts not), in a new browser."""
    with browser_page(target) as page:
        return _open_runs_page(page, target, experiment_id, runs)


def runs_page_later_visits(target: Target, experiment_id: str, runs: int) -> float:
    """The median of three visits after a first one: what a team member sees all day."""
    with browser_page(target) as page:
        _open_runs_page(page, target, experiment_id, runs)
        return statistics.median(_open_runs_page(page, target, experiment_id, runs)
                                 for _ in range(3))


LINK_MBIT, LINK_RTT_MS = 50, 10  # an office network or a VPN, emulated by chromium


def runs_page_over_link(target: Target, experiment_id: str, runs: int) -> tuple[float, float]:
    """A team member's very first visit (an empty cache) from a laptop on a LINK_MBIT Mbit/s
    link, emulated by chromium. Returns (seconds until the runs table shows the newest run,
    MB received including headers)."""
    with browser_page(target) as page:
        cdp = page.context.new_cdp_session(page)
        received = []
        cdp.on("Network.loadingFinished", lambda e: received.append(e["encodedDataLength"]))
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": LINK_RTT_MS,
            "downloadThroughput": LINK_MBIT * 1e6 / 8, "uploadThroughput": LINK_MBIT * 1e6 / 8,
        })
        start = time.perf_counter()
        page.goto(f"{target.url}/#/experiments/{experiment_id}/runs")
        page.get_by_text(f"run-{runs}", exact=True).first.wait_for(timeout=120_000)
        return time.perf_counter() - start, sum(received) / 1e6


# The run ------------------------------------------------------------------------------------

def start_anchor(stack: Stack) -> tuple[str, Target]:
    image = f"mlflow-stack/server:{stack.env.get('STACK_IMAGE_TAG', 'local')}"
    port = free_port()
    name = f"{stack.project}-anchor"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", f"{stack.project}_default",
         "-p", f"127.0.0.1:{port}:5000", "-v", f"{stack.project}_secrets-mlflow:/secrets/mlflow:ro",
         # MLflow as pip installs it: uvicorn without httptools, parsing HTTP with h11.
         "-e", "MLFLOW_STACK_UVICORN_NODELAY=0", "-e", "UVICORN_HTTP=h11",
         "--entrypoint", "python", image,
         "-c", ANCHOR_START],
        check=True, capture_output=True, text=True)
    target = Target("anchor", f"http://127.0.0.1:{port}", None)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(target.url + "/health", timeout=3).status_code == 200:
                return name, target
        except requests.RequestException:
            pass
        time.sleep(1)
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
    raise RuntimeError(f"the anchor did not become healthy:\n{logs[-3000:]}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Docker {docker}, "
            f"{platform.system()} {platform.release()}")


def run(args) -> str:
    size = dict(SIZES[args.size])
    if args.runs is not None:
        size["runs"] = args.runs
    if args.artifact_mib is not None:
        size["artifact_mib"] = args.artifact_mib
    project = args.project or f"mlflowbench{os.getpid()}"
    stack = Stack(project, free_port(), env={"COMPOSE_PROFILES": "tls"})
    table = Table()
    anchor_name = None
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        try:
            log(f"starting a throwaway copy of the stack ({project}) and the HTTPS proxy")
            first_start = time_to_healthy(stack)
            stack.wait_healthy(120, service="proxy", probe=f"{stack.https_url}/health",
                               verify=False)
            cert = Path(tmp, "stack.crt")
            cert.write_text(stack.exec("proxy", "cat", "/run/proxy/tls.crt"))
            admin = ("admin", stack.admin_password())
            ours = Target("ours", stack.url, admin)
            proxy = Target("ours via HTTPS proxy", stack.https_url, admin, str(cert),
                           {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(cert)})
            log("starting the anchor beside it")
            anchor_name, anchor = start_anchor(stack)
            targets = (ours, anchor, proxy)

            for reuse in (True, False):
                p = {t.name: latency(t, size["calls"], reuse) for t in targets}
                cell = {t.name: f"{p[t.name][0]:.1f} / {p[t.name][1]:.1f} ms" for t in targets}
                table.add("trivial authenticated GET, "
                          + ("one reused connection" if reuse else "new connection per call")
                          + ", p50 / p95", ours=cell["ours"], anchor=cell["anchor"],
                          proxy=cell[proxy.name],
                          ratio=f"p50 ours/anchor {ratio(p['ours'][0], p['anchor'][0])}")

            abuse = latency_under_attack(stack, ours, size["calls"], size["attack"])
            table.add(f"trivial call, one connection, while 8 clients guess the same user's "
                      f"password for {size['attack']} s from another address, p50 / p95",
                      ours=f"{abuse['attacked'][0]:.1f} / {abuse['attacked'][1]:.1f} ms "
                           f"(alone {abuse['alone'][0]:.1f} / {abuse['alone'][1]:.1f} ms; "
                           f"{abuse['checked']} of {abuse['guesses']} guesses checked)",
                      ratio=f"p50 attacked/alone {ratio(abuse['attacked'][0], abuse['alone'][0])}")

            load = {t.name: log_batch_load(t, size["clients"], size["batches"]) for t in targets}
            cell = {name: f"{r['rps']:.1f} req/s, p99 {r['p99']:.0f} ms "
                          f"({r['stored']}/{r['expected']} stored"
                          + (f", {r['errors']} errors)" if r["errors"] else ")")
                    for name, r in load.items()}
            table.add(f"{size['clients']} clients x {size['batches']} log_batch x 10 points, "
                      "keep-alive", ours=cell["ours"], anchor=cell["anchor"],
                      proxy=cell[proxy.name],
                      ratio=f"req/s {ratio(load['ours']['rps'], load['anchor']['rps'])}, "
                            f"p99 {ratio(load['ours']['p99'], load['anchor']['p99'])} "
                            "(ours/anchor)")

            mib = size["artifact_mib"]
            artifact = Path(tmp, f"artifact-{mib}MiB.bin")
            with open(artifact, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(MIB))
            moved = {t.name: artifacts(stack, t, artifact) for t in targets}
            mc = minio_direct(stack, mib)
            for way, label in (("up", "upload"), ("down", "download")):
                table.add(f"{mib} MiB artifact {label}, default client (MiB/s)",
                          ours=f"{moved['ours'][way]:.0f}", anchor=f"{moved['anchor'][way]:.0f}",
                          proxy=f"{moved[proxy.name][way]:.0f}", minio=f"{mc[way]:.0f}",
                          ratio=f"ours/mc {ratio(moved['ours'][way], mc[way])}")
            table.add("download time to first byte",
                      **{key: f"{moved[t.name]['ttfb']:.2f} s"
                         for key, t in zip(COLUMNS, targets)})
            table.add("mlflow container memory growth during the round trip",
                      **{key: f"{moved[t.name]['mem']:.0f} MiB"
                         for key, t in zip(COLUMNS, targets)})

            searches = {}
            for t, schema in ((ours, "public"), (anchor, ANCHOR_SCHEMA)):
                log(f"seeding {size['runs']} runs for {t.name}")
                exp = seed_runs(stack, t, schema, size["runs"])
                searches[t.name] = (exp, client_script(t, SEARCH, exp, str(size["searches"]),
                                                       str(size["runs"])))
            # A team member's searches also pass MLflow's model-link redaction, which an
            # admin's skip (server/mlflow_stack/model_link_redaction.py).
            member = Target("ours, a team member", stack.url, new_member(ours))
            searches[member.name] = (searches["ours"][0], client_script(
                member, SEARCH, searches["ours"][0], str(size["searches"]), str(size["runs"])))
            for label, what in (("default", "default order"),
                                ("runs page", "start_time DESC as the runs page asks"),
                                ("metric", "ordered by a metric")):
                a = searches["anchor"][1][label]
                for who, name in (("", "ours"), (" as a team member (not an admin)", member.name)):
                    o = searches[name][1][label]
                    table.add(f"search_runs over {size['runs']} runs, first 100, {what}{who}, "
                              "p50 / p95", ours=f"{o[0]:.0f} / {o[1]:.0f} ms",
                              anchor=f"{a[0]:.0f} / {a[1]:.0f} ms",
                              ratio=f"p95 ours/anchor {ratio(o[1], a[1])}")
            if not args.no_browser:
                # One first visit is a noisy sample on a shared machine (+-0.3 s): take
                # the median of three, alternating between the two.
                first = {ours.name: [], anchor.name: []}
                for _ in range(3):
                    for t in (ours, anchor):
                        first[t.name].append(
                            runs_page_first_visit(t, searches[t.name][0], size["runs"]))
                page = {t.name: (statistics.median(first[t.name]), runs_page_later_visits(
                    t, searches[t.name][0], size["runs"])) for t in (ours, anchor)}
                table.add(f"runs page of a {size['runs']}-run experiment in chromium, to the "
                          "newest run shown: first visit / later visits (medians of 3)",
                          ours="{:.2f} s / {:.2f} s".format(*page["ours"]),
                          anchor="{:.2f} s / {:.2f} s".format(*page["anchor"]),
                          ratio="first visit ours/anchor "
                                + ratio(page["ours"][0], page["anchor"][0]))
                link = {t.name: runs_page_over_link(t, searches[t.name][0], size["runs"])
                        for t in (ours, anchor)}
                table.add(f"same page, first visit with an empty cache over an emulated "
                          f"{LINK_MBIT} Mbit/s, {LINK_RTT_MS} ms link: seconds (MB received)",
                          ours="{:.2f} s ({:.1f} MB)".format(*link["ours"]),
                          anchor="{:.2f} s ({:.1f} MB)".format(*link["anchor"]),
                          ratio=f"s ours/anchor {ratio(link['ours'][0], link['anchor'][0])}, "
                                f"MB {ratio(link['ours'][1], link['anchor'][1])}")

            subprocess.run(["docker", "rm", "-f", anchor_name], capture_output=True)
            anchor_name = None
            log("docker compose down, then up -d with the existing volumes")
            stack.compose("down")
            restart = time_to_healthy(stack)
            table.add("docker compose up -d to mlflow healthy: existing volumes (after "
                      "`down`) / first start on empty volumes",
                      ours=f"{restart:.1f} s / {first_start:.1f} s")
        finally:
            if anchor_name:
                subprocess.run(["docker", "rm", "-f", anchor_name], capture_output=True)
            if not args.keep:
                stack.down(volumes=True)

    return (f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} by `scripts/benchmark --size "
            f"{args.size}` on {machine()}.\n\n{table.markdown()}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--runs", type=int, help="seeded runs (default: 100000, tiny 500)")
    parser.add_argument("--artifact-mib", type=int, help="artifact size (default: 1024, tiny 8)")
    parser.add_argument("--output", type=Path, help="write the table here (default for "
                        "--size full: docs/performance.md's results section)")
    parser.add_argument("--project", help="Compose project name of the throwaway copy")
    parser.add_argument("--no-browser", action="store_true", help="skip the runs-page timing")
    parser.add_argument("--keep", action="store_true", help="leave the copy running")
    args = parser.parse_args()
    if not (0 < (args.runs or 1) <= 1_000_000 and 0 < (args.artifact_mib or 1) <= 8192):
        parser.error("--runs is at most 1000000 and --artifact-mib at most 8192")
    report = run(args)
    print(report)
    output = args.output or (REPO / "docs" / "performance.md" if args.size == "full" else None)
    if output is not None:
        write_report(output, report)
        log(f"wrote {output}")
    return 0


RESULTS_START = "<!-- benchmark results: scripts/benchmark rewrites from here -->"


def write_report(path: Path, report: str) -> None:
    """Replace the results section of path (everything after the marker), keep the rest."""
    text = path.read_text() if path.exists() else ""
    head = text.split(RESULTS_START)[0].rstrip() if RESULTS_START in text else text.rstrip()
    path.write_text(f"{head}\n\n{RESULTS_START}\n\n{report}".lstrip())


if __name__ == "__main__":
    sys.exit(main())
