"""Session fixtures of the Kubernetes tests: a real one-node cluster (kube-host-up), the
stack's images loaded into it, and one install of charts/mlflow-stack in a fresh
namespace, removed afterwards with its volumes and generated Secret.

The test files run in number order and some change the install (test_50 upgrades it,
test_60 uninstalls and reinstalls it); the data they check survives those on purpose,
so it is made once, by the `seeded` fixture, before the first of them needs it.

Environment:
  KUBE_HOST_UP               path of kube-host-up (default ../shared/tools/kube-host-up)
  STACK_TEST_KEEP=1          leave the install (namespace, volumes, Secret) for inspection
  STACK_TEST_K8S_NAMESPACE   use this namespace; a deployed release there is reused as is
  STACK_TEST_K8S_RELEASE     release name (default mls)
  STACK_TEST_K8S_VALUES      a values file layered over the test's (e.g. other images)
Times worth quoting are printed at the end and kept in tests/k8s/.results/ (latest.json,
history.jsonl).
"""

import os
import time
import uuid
import warnings

import pytest
import requests

from . import kube
from .kube import IMAGES, LOCAL_TAG, Release

# What a laptop is told to set, and nothing else: a default MLflow client.
CLIENT_VARIABLES_TO_CLEAR = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)

# Volumes one install claims: PostgreSQL's and one per MinIO pod.
VOLUMES_PER_INSTALL = 1 + 4

# Numbers reported at the end of the run (and kept in tests/k8s/.results/).
TIMINGS: dict[str, float] = {}
_SUITE_START: list[float] = []


def pytest_collection_modifyitems(items):
    for item in items:
        if "/k8s/" in str(item.fspath):
            item.add_marker(pytest.mark.k8s)


def pytest_runtest_setup(item):
    if "/k8s/" in str(item.fspath) and not _SUITE_START:
        _SUITE_START.append(time.monotonic())


def pytest_terminal_summary(terminalreporter):
    if not _SUITE_START:
        return
    TIMINGS["k8s_suite_s"] = round(time.monotonic() - _SUITE_START[0], 1)
    kube.record_result("k8s_suite_s", TIMINGS["k8s_suite_s"])
    stats = terminalreporter.stats

    def count(category: str) -> int:
        return sum(1 for r in stats.get(category, []) if "tests/k8s/" in getattr(r, "nodeid", ""))

    kube.finish_results({"passed": count("passed"), "failed": count("failed"),
                         "errors": count("error")})
    terminalreporter.section("kubernetes timings")
    for name, value in TIMINGS.items():
        terminalreporter.write_line(f"{name:40} {value}")
    terminalreporter.write_line(f"(also in {kube.RESULTS / 'latest.json'})")


def timing(name: str, seconds: float) -> None:
    TIMINGS[name] = round(seconds, 1)
    kube.record_result(name, round(seconds, 1))


# --------------------------------------------------------------------------- cluster


@pytest.fixture(scope="session")
def helm_ready():
    """helm on PATH; kube-host-up builds it, so a machine without it gets the cluster too."""
    if kube.helm_binary() is None:
        kube.kube_host_up("up")
    assert kube.helm_binary(), "kube-host-up ran but left no helm in /usr/local/bin"
    assert kube.CHART.is_dir(), f"the chart is missing: {kube.CHART}"


@pytest.fixture(scope="session")
def cluster(helm_ready):
    """The running cluster with the stack's current images in it."""
    start = time.monotonic()
    try:
        kube.kube_host_up("up")
    except kube.CommandFailed as e:
        # kube-host-up's `ip addr show | grep -q` under pipefail fails now and then
        # ("Address already assigned"); one more `up` is what an operator would do.
        warnings.warn(f"kube-host-up up failed once, running it again: {str(e)[-300:]}")
        kube.kube_host_up("up")
    timing("cluster_up_s", time.monotonic() - start)

    start = time.monotonic()
    # The tag the test values name, whatever a .env on this checkout says.
    kube.run(["docker", "compose", "build", "mlflow", "postgres", "minio"], timeout=3600,
             env={"STACK_IMAGE_TAG": LOCAL_TAG})
    timing("image_build_s", time.monotonic() - start)
    wanted = [f"mlflow-stack/{name}:{LOCAL_TAG}" for name in IMAGES]
    start = time.monotonic()
    kube.load_images(wanted)
    timing("image_load_s", time.monotonic() - start)
    return wanted


def _values(node_port: int) -> dict:
    return {
        "image": {"tag": LOCAL_TAG, "pullPolicy": "Never"},
        "mlflow": {"service": {"type": "NodePort", "nodePort": node_port}},
    }


def _extra_values() -> tuple[str, ...]:
    """STACK_TEST_K8S_VALUES: a values file layered over the test's (e.g. other images)."""
    extra = os.environ.get("STACK_TEST_K8S_VALUES")
    if extra and not os.path.isfile(extra):
        raise AssertionError(f"STACK_TEST_K8S_VALUES names no file: {extra}")
    return (extra,) if extra else ()


@pytest.fixture(scope="session")
def release(cluster, tmp_path_factory):
    """The chart installed from scratch into a fresh namespace, every pod Ready."""
    namespace = os.environ.get("STACK_TEST_K8S_NAMESPACE") or f"mlflow-k8s-{uuid.uuid4().hex[:6]}"
    name = os.environ.get("STACK_TEST_K8S_RELEASE") or "mls"
    values_file = tmp_path_factory.mktemp("helm") / "values.yaml"
    rel = Release(name, namespace, 0, values_file, _extra_values())
    reused = rel.installed()
    if reused:
        # A kept install (STACK_TEST_KEEP=1 earlier): reuse it, leave it in place.
        svc = rel.get("service", rel.resource("mlflow"))
        rel = Release(name, namespace, svc["spec"]["ports"][0]["nodePort"], values_file,
                      _extra_values())
        rel.write_values(_values(rel.node_port))
        rel.wait_ready(120)
        TIMINGS["install_reused"] = 1
    else:
        free = kube.available_volumes()
        assert free >= VOLUMES_PER_INSTALL, (
            f"the cluster has {free} free volumes and an install claims {VOLUMES_PER_INSTALL}; "
            f"remove leftover installs (kubectl get pvc -A), then kube-host-up recycles them")
        rel = Release(name, namespace, kube.free_node_port(), values_file, _extra_values())
        rel.write_values(_values(rel.node_port))
        need, free = kube.chart_cpu_millis(*rel.values_args()), kube.free_cpu_millis()
        assert need <= free, (
            f"the install requests {need}m CPU and the node has {free}m unrequested: another "
            f"install is using it (helm list -A); remove it or run the suite later.\n"
            + kube.helm("list", "-A").stdout)
        start = time.monotonic()
        try:
            rel.install()
            timing("helm_install_s", time.monotonic() - start)
            rel.wait_ready(300)
        except BaseException:
            print(rel.diagnose())
            if os.environ.get("STACK_TEST_KEEP") != "1":
                _remove(rel)
            raise
        timing("install_to_ready_s", time.monotonic() - start)
    try:
        yield rel
    finally:
        if os.environ.get("STACK_TEST_KEEP") != "1" and not reused:
            _remove(rel)


def _remove(rel: Release) -> None:
    """helm uninstall, then what it leaves on purpose: the volumes and the Secret."""
    errors = []
    if rel.status() is not None:
        out = kube.helm("uninstall", rel.name, "-n", rel.namespace, "--wait", "--timeout", "5m",
                        check=False)
        if out.returncode:
            errors.append(out.stderr)
    for args in (("delete", "secret", rel.secret_name, "--ignore-not-found"),
                 ("delete", "pvc", "--all", "--ignore-not-found", "--timeout=300s")):
        try:
            rel.kubectl(*args, timeout=360)
        except AssertionError as e:
            errors.append(str(e))
    try:
        kube.kubectl("delete", "namespace", rel.namespace, "--ignore-not-found", "--timeout=300s",
                     timeout=360)
    except AssertionError as e:
        errors.append(str(e))
    assert not errors, "removing the test install failed:\n" + "\n".join(errors)


# --------------------------------------------------------------------------- clients


@pytest.fixture(scope="session")
def admin(release):
    return release.admin()


def laptop_env(mp: pytest.MonkeyPatch, url: str, username: str, password: str) -> None:
    """Make this process a laptop logged in as the given user: only the three variables."""
    for name in CLIENT_VARIABLES_TO_CLEAR:
        mp.delenv(name, raising=False)
    # No ~/.aws on the test machine may lend S3 keys to the client.
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    mp.setenv("AWS_CONFIG_FILE", "/nonexistent")
    mp.setenv("MLFLOW_TRACKING_URI", url)
    mp.setenv("MLFLOW_TRACKING_USERNAME", username)
    mp.setenv("MLFLOW_TRACKING_PASSWORD", password)
    import mlflow

    mlflow.set_tracking_uri(url)


@pytest.fixture
def as_user(monkeypatch, release):
    def login(username: str, password: str) -> None:
        laptop_env(monkeypatch, release.url, username, password)

    return login


def create_user(release, admin, username: str, password: str) -> None:
    r = requests.post(f"{release.url}/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                      json={"username": username, "password": password})
    assert r.status_code == 200, f"creating user {username}: {r.status_code} {r.text[:300]}"


def grant(release, admin, username: str, experiment_id: str, permission: str) -> None:
    """MLflow 3.17's permission API (what scripts/user grant calls)."""
    r = requests.post(f"{release.url}/api/3.0/mlflow/users/permissions/grant", auth=admin,
                      timeout=30, json={"username": username, "resource_type": "experiment",
                                        "resource_id": experiment_id, "permission": permission})
    assert r.status_code == 200, f"granting {permission}: {r.status_code} {r.text[:300]}"


@pytest.fixture(scope="session")
def seeded(release, admin, tmp_path_factory):
    """Data that must survive pod loss, upgrades and reinstalls: a user with its own
    password, a run with params, metrics and artifacts (one of them 20 MB)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    mp = pytest.MonkeyPatch()
    laptop_env(mp, release.url, *admin)
    try:
        user = (f"keeper{uuid.uuid4().hex[:6]}", f"keeper-pw-{uuid.uuid4().hex}")
        create_user(release, admin, *user)

        src = tmp_path_factory.mktemp("seeded")
        (src / "small.txt").write_text("kept across everything\n")
        (src / "medium.bin").write_bytes(os.urandom(1024 * 1024 + 17))
        (src / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))
        client = MlflowClient(tracking_uri=release.url)
        experiment_id = client.create_experiment(f"seeded-{uuid.uuid4().hex[:8]}")
        grant(release, admin, user[0], experiment_id, "EDIT")
        run_id = client.create_run(experiment_id).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("loss", 1 / (s + 1), now, s) for s in range(500)],
                         params=[Param("depth", "6")])
        for name in ("small.txt", "medium.bin"):
            client.log_artifact(run_id, str(src / name))
        client.log_artifact(run_id, str(src / "big.bin"), "data")
        client.set_terminated(run_id)
    finally:
        mp.undo()
    files = {"small.txt": src / "small.txt", "medium.bin": src / "medium.bin",
             "data/big.bin": src / "big.bin"}
    return {"user": user, "experiment_id": experiment_id, "run_id": run_id, "files": files,
            "metric_points": 500}


def check_seeded(release, seeded, admin, dst) -> None:
    """Every part of the seeded data reads back, for the admin and for the seeded user."""
    import mlflow
    from mlflow import MlflowClient

    mp = pytest.MonkeyPatch()
    try:
        for name in CLIENT_VARIABLES_TO_CLEAR:
            mp.delenv(name, raising=False)
        for who in (admin, seeded["user"]):
            mp.setenv("MLFLOW_TRACKING_USERNAME", who[0])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", who[1])
            client = MlflowClient(tracking_uri=release.url)
            run = client.get_run(seeded["run_id"])
            assert run.data.params["depth"] == "6"
            history = client.get_metric_history(seeded["run_id"], "loss")
            assert sorted(m.step for m in history) == list(range(seeded["metric_points"]))
            for remote, local in seeded["files"].items():
                target = dst / who[0] / remote.replace("/", "_")
                target.mkdir(parents=True, exist_ok=True)
                path = mlflow.artifacts.download_artifacts(
                    run_id=seeded["run_id"], artifact_path=remote, dst_path=str(target),
                    tracking_uri=release.url)
                assert kube.sha256_file(path) == kube.sha256_file(local), \
                    f"{remote} differs (read as {who[0]})"
    finally:
        mp.undo()
