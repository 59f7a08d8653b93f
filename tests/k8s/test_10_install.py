"""`helm install` from scratch brings every component up, Ready, through its own jobs, and
generates the Secret before anything needs it. The time it took is reported."""

import requests

from .conftest import TIMINGS
from .kube import SECRET_KEYS


def test_every_pod_is_ready_and_the_install_time_is_reported(release):
    assert release.not_ready() == [], release.diagnose()
    seconds = TIMINGS.get("install_to_ready_s")
    if seconds is not None:
        print(f"\nhelm install to every pod Ready: {seconds:.0f} s "
              f"(helm install --wait itself: {TIMINGS['helm_install_s']:.0f} s)")


def test_no_container_restarted_during_the_install(release):
    """Components wait for each other; none crashes its way to Ready."""
    restarts = release.restarts()
    logs = {pod: release.kubectl("logs", pod.split("/")[0], "-c", pod.split("/")[1], "--previous",
                                 "--tail=15", check=False) for pod in restarts}
    assert not restarts, f"restarted: {restarts}\n" + "\n".join(
        f"--- {pod} (previous)\n{text}" for pod, text in logs.items())


def test_the_workloads_have_the_promised_shape(release):
    mlflow = release.get("deployment", release.resource("mlflow"))
    assert mlflow["status"].get("readyReplicas") == 2
    postgres = release.get("statefulset", release.resource("postgresql"))
    assert postgres["status"].get("readyReplicas") == 1
    minio = release.get("statefulset", release.resource("minio"))
    assert minio["status"].get("readyReplicas") == 4
    # MinIO is one erasure-coded server over the four pods' drives, not four servers.
    info = release.minio_info()
    assert info["backend"]["backendType"] == "Erasure", info["backend"]
    drives = [d for server in info["servers"] for d in server.get("drives", [])]
    assert len(info["servers"]) == 4 and len(drives) == 4, info["servers"]
    assert all(d["state"] == "ok" for d in drives), drives

    claims = release.get("pvc")["items"]
    assert len(claims) == 5 and all(c["status"]["phase"] == "Bound" for c in claims), \
        [(c["metadata"]["name"], c["status"]["phase"]) for c in claims]

    jobs = {j["metadata"]["name"]: j for j in release.get("jobs")["items"]}
    for prefix in ("migrate", "minio-init"):
        names = [n for n in jobs if n.startswith(release.resource(prefix) + "-")]
        assert names, f"no {prefix} job in {sorted(jobs)}"
        assert all(jobs[n]["status"].get("succeeded") == 1 for n in names)


def test_the_generated_secret_is_complete_and_no_helm_resource(release):
    secret = release.get("secret", release.secret_name)
    assert set(secret["data"]) >= set(SECRET_KEYS), sorted(secret["data"])
    values = release.secret()
    assert all(len(values[k]) >= 16 for k in SECRET_KEYS if k != "minio_root_user"), \
        {k: len(v) for k, v in values.items()}
    # Not in the release's manifest: helm uninstall must leave it (test_60).
    annotations = secret["metadata"].get("annotations", {})
    assert "meta.helm.sh/release-name" not in annotations
    assert secret["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm"


def test_the_node_port_serves_mlflow_and_refuses_anonymous_calls(release):
    assert requests.get(f"{release.url}/health", timeout=10).status_code == 200
    r = requests.get(f"{release.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert r.status_code == 401
