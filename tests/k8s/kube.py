"""Drives the Helm chart on the real one-node cluster that ../shared/tools/kube-host-up
starts on this machine, as an operator would: kubectl and helm, nothing else.

Test traffic goes only to 127.0.0.1 (the mlflow Service's NodePort) or, through
`kubectl exec`, to the stack's own pods."""

import base64
import json
import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests
import yaml

from ..e2e import stack as e2e_stack

sha256_file = e2e_stack.sha256_file

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mlflow-stack"
RESULTS = Path(__file__).resolve().parent / ".results"
KUBECONFIG = "/etc/kube-host-up/admin.kubeconfig"
# kube-host-up's own containerd (not Docker's), where `load-image` puts the images.
CONTAINERD_SOCKET = "/var/lib/kube-host-up/run/containerd.sock"

IMAGES = ("server", "postgres", "minio")
LOCAL_TAG = "local"
UPGRADE_TAG = "k8s-upgrade"          # the same server image under a second tag (test_50)

# Keys of the generated Secret <release>-secrets (one file name each).
SECRET_KEYS = (
    "postgres_password", "minio_root_user", "minio_root_password", "s3_access_key",
    "s3_secret_key", "admin_password", "models_password", "flask_secret_key",
    "crypto_kek_passphrase", "webhook_encryption_key",
)


class CommandFailed(AssertionError):
    pass


def run(command: list[str], *, check: bool = True, input: str | None = None,
        timeout: float = 600, env: dict[str, str] | None = None,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, input=input, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "KUBECONFIG": KUBECONFIG, **(env or {})},
    )
    if check and result.returncode != 0:
        raise CommandFailed(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def _tool(name: str) -> str | None:
    # kube-host-up installs kubectl and helm into /usr/local/bin; prefer them over any
    # other copy on PATH (e.g. a cloud SDK's older kubectl in /usr/bin).
    own = f"/usr/local/bin/{name}"
    return own if os.access(own, os.X_OK) else shutil.which(name)


def helm_binary() -> str | None:
    return _tool("helm")




def wait_until(condition, timeout: float, what: str, interval: float = 1.0, diagnose=None):
    """Polls condition() until it returns something truthy; returns that value. On the
    deadline raises AssertionError naming what was awaited, the last value or error, and
    diagnose()'s text when given."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        if time.monotonic() >= deadline:
            extra = ""
            if diagnose is not None:
                try:
                    extra = "\n" + diagnose()
                except Exception as e:  # noqa: BLE001
                    extra = f"\n(diagnostics failed: {e!r})"
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} "
                                 f"(last: {last!r}){extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------- cluster


def kube_host_up_path() -> Path:
    return Path(os.environ.get("KUBE_HOST_UP") or REPO.parent / "shared" / "tools" / "kube-host-up")


def kube_host_up(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    tool = kube_host_up_path()
    if not tool.is_file():
        raise AssertionError(
            f"the Kubernetes tests need kube-host-up, which builds and starts a one-node "
            f"cluster; it is not at {tool} (set KUBE_HOST_UP to its path)")
    if os.geteuid() != 0:
        raise AssertionError("the Kubernetes tests start a cluster with kube-host-up, which "
                             "needs root; run them as root")
    return run([str(tool), *args], timeout=timeout)


def kubectl(*args: str, namespace: str | None = None, check: bool = True,
            input: str | None = None, timeout: float = 300) -> str:
    ns = ["-n", namespace] if namespace else []
    binary = _tool("kubectl")
    if binary is None:
        raise AssertionError("kubectl is not installed; kube-host-up builds it into /usr/local/bin")
    return run([binary, *ns, *args], check=check, input=input, timeout=timeout).stdout


def helm(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    binary = helm_binary()
    if binary is None:
        raise AssertionError("helm is not installed; kube-host-up builds it into /usr/local/bin")
    return run([binary, *args], check=check, timeout=timeout)


def docker_image_id(image: str) -> str:
    return run(["docker", "image", "inspect", "-f", "{{.Id}}", image]).stdout.strip()


def cluster_image_id(image: str) -> str | None:
    """The config digest (= Docker's image id) of image in the cluster's containerd, or None
    when it is not there or cannot be read (then it is simply loaded again)."""
    ctr = ["ctr", "--address", CONTAINERD_SOCKET, "-n", "k8s.io"]
    ref = image if "/" in image.split(":")[0] and "." in image.split("/")[0] else f"docker.io/{image}"
    try:
        listing = run([*ctr, "images", "ls", f"name=={ref}"], check=False, timeout=60).stdout
        rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
        if not rows:
            return None
        digest = next(col for col in rows[0] if col.startswith("sha256:"))
        for _ in range(3):  # an OCI index points at manifests, a manifest at its config
            blob = json.loads(run([*ctr, "content", "get", digest], timeout=60).stdout)
            if "config" in blob:
                return blob["config"]["digest"]
            digest = blob["manifests"][0]["digest"]
    except Exception:  # noqa: BLE001 - any doubt means "load it"
        return None
    return None


def load_images(images: list[str]) -> None:
    """Copies images from Docker into the cluster, skipping those already there unchanged."""
    stale = [img for img in images if cluster_image_id(img) != docker_image_id(img)]
    if stale:
        kube_host_up("load-image", *stale)
    for img in images:
        assert cluster_image_id(img) in (None, docker_image_id(img)), \
            f"the cluster still has an old {img} after load-image"


def cluster_dns_server() -> str:
    return kubectl("get", "service", "kube-dns", "-n", "kube-system", "-o",
                   "jsonpath={.spec.clusterIP}").strip()


def dns_a(name: str, server: str, timeout: float = 3.0) -> list[str] | None:
    """The A records the cluster's DNS gives for name (a fully qualified name), or None
    for NXDOMAIN. A minimal DNS query over UDP, to the cluster's own DNS Service."""
    query_id = random.randrange(1 << 16)
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split("."))
    packet = (query_id.to_bytes(2, "big") + b"\x01\x00" + (1).to_bytes(2, "big") + b"\x00" * 6
              + question + b"\x00" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        while True:
            answer, _ = sock.recvfrom(4096)
            if int.from_bytes(answer[:2], "big") == query_id:
                break
    rcode = answer[3] & 0x0F
    if rcode == 3:
        return None
    if rcode != 0:
        raise AssertionError(f"DNS error {rcode} for {name}")
    count = int.from_bytes(answer[6:8], "big")
    pos = 12 + len(question) + 1 + 4
    addresses = []
    for _ in range(count):
        if answer[pos] & 0xC0 == 0xC0:   # a compressed name: a 2-byte pointer
            pos += 2
        else:
            while answer[pos]:
                pos += answer[pos] + 1
            pos += 1
        rtype = int.from_bytes(answer[pos:pos + 2], "big")
        length = int.from_bytes(answer[pos + 8:pos + 10], "big")
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(answer[pos + 10:pos + 14]))
        pos += 10 + length
    return addresses


def free_node_port() -> int:
    """A NodePort no Service uses and nothing on this machine listens on."""
    used = set()
    services = json.loads(kubectl("get", "services", "--all-namespaces", "-o", "json"))
    for svc in services["items"]:
        for port in svc["spec"].get("ports", []):
            if port.get("nodePort"):
                used.add(port["nodePort"])
    candidates = [p for p in range(30000, 32768) if p not in used]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free NodePort in 30000-32767")


def cpu_millis(quantity) -> int:
    q = str(quantity)
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def free_cpu_millis() -> int:
    """CPU the scheduler can still hand out on the (one) node."""
    node = json.loads(kubectl("get", "nodes", "-o", "json"))["items"][0]
    free = cpu_millis(node["status"]["allocatable"]["cpu"])
    pods = json.loads(kubectl("get", "pods", "--all-namespaces", "-o", "json"))["items"]
    for pod in pods:
        if pod["status"].get("phase") in ("Succeeded", "Failed") or not pod["spec"].get("nodeName"):
            continue
        for c in pod["spec"]["containers"]:
            free -= cpu_millis(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
    return free


def chart_cpu_millis(*helm_args: str) -> int:
    """CPU requested by everything an install runs at once (workloads and plain Jobs)."""
    rendered = helm("template", "x", str(CHART), *helm_args).stdout
    total = 0
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        if "helm.sh/hook" in doc["metadata"].get("annotations", {}):
            continue
        per_pod = sum(cpu_millis(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
                      for c in doc["spec"]["template"]["spec"]["containers"])
        total += per_pod * int(doc["spec"].get("replicas", 1))
    return total


def available_volumes() -> int:
    pvs = json.loads(kubectl("get", "pv", "-o", "json"))["items"]
    return sum(1 for pv in pvs if pv["status"].get("phase") == "Available"
               and pv["spec"].get("storageClassName") == "standard")


# --------------------------------------------------------------------------- a release


class Release:
    """One installation of charts/mlflow-stack in its own namespace."""

    def __init__(self, name: str, namespace: str, node_port: int, values_file: Path,
                 extra_values: tuple[str, ...] = ()):
        self.extra_values = tuple(extra_values)   # more values files, layered over values_file
        self.name = name
        self.namespace = namespace
        self.node_port = node_port
        self.values_file = values_file
        self.url = f"http://127.0.0.1:{node_port}"

    # -- plumbing
    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 300) -> str:
        return kubectl(*args, namespace=self.namespace, check=check, input=input, timeout=timeout)

    def get(self, kind: str, name: str | None = None, selector: str | None = None) -> dict:
        args = ["get", kind] + ([name] if name else []) + (["-l", selector] if selector else [])
        return json.loads(self.kubectl(*args, "-o", "json"))

    def exists(self, kind: str, name: str) -> bool:
        return self.kubectl("get", kind, name, "--ignore-not-found", "-o", "name").strip() != ""

    def exec(self, pod: str, *command: str, container: str | None = None, check: bool = True,
             timeout: float = 300) -> str:
        c = ["-c", container] if container else []
        return self.kubectl("exec", pod, *c, "--", *command, check=check, timeout=timeout)

    # -- names
    def resource(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"

    @property
    def secret_name(self) -> str:
        return self.resource("secrets")

    def selector(self, component: str | None = None) -> str:
        s = f"app.kubernetes.io/instance={self.name}"
        return s + (f",app.kubernetes.io/component={component}" if component else "")

    def pods(self, component: str | None = None) -> list[dict]:
        return self.get("pods", selector=self.selector(component))["items"]

    def pod_names(self, component: str) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.pods(component)
                      if not p["metadata"].get("deletionTimestamp"))

    # -- helm
    def install(self, *extra: str, timeout: str = "10m") -> None:
        helm("install", self.name, str(CHART), "-n", self.namespace, "--create-namespace",
             *self.values_args(), "--wait", "--wait-for-jobs", "--timeout", timeout,
             *extra, timeout=_seconds(timeout) + 120)

    def upgrade(self, *extra: str, timeout: str = "10m") -> None:
        helm("upgrade", self.name, str(CHART), "-n", self.namespace, "--wait",
             "--wait-for-jobs", "--timeout", timeout, *extra, timeout=_seconds(timeout) + 120)

    def uninstall(self, timeout: str = "5m") -> None:
        helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", timeout,
             timeout=_seconds(timeout) + 60)

    def revision(self) -> int:
        out = helm("status", self.name, "-n", self.namespace, "-o", "json")
        return int(json.loads(out.stdout)["version"])

    def values_args(self) -> list[str]:
        return ["-f", str(self.values_file), *[a for f in self.extra_values for a in ("-f", f)]]

    def status(self) -> str | None:
        """Helm's status of the release (deployed, failed, ...), None when there is none."""
        out = helm("status", self.name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(out.stdout)["info"]["status"] if out.returncode == 0 else None

    def installed(self) -> bool:
        return self.status() == "deployed"

    # -- state
    def not_ready(self) -> list[str]:
        """Why the release is not up yet: every pod not Ready (Jobs' pods excepted when they
        succeeded), every workload short of its replicas, and the mlflow health check through
        the NodePort. Empty when all is well."""
        problems = []
        for pod in self.pods():
            meta, status = pod["metadata"], pod.get("status", {})
            if meta.get("deletionTimestamp"):
                problems.append(f"pod {meta['name']} terminating")
                continue
            owners = {o["kind"] for o in meta.get("ownerReferences", [])}
            if "Job" in owners:
                continue  # judged by its Job below (a retried pod may have failed before)
            ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
            if ready != "True":
                problems.append(f"pod {meta['name']} not Ready ({status.get('phase')})")
        for kind in ("deployments", "statefulsets"):
            for w in self.get(kind, selector=self.selector())["items"]:
                want = w["spec"].get("replicas", 1)
                st = w.get("status", {})
                if st.get("readyReplicas", 0) != want or st.get("updatedReplicas", 0) != want:
                    problems.append(f"{kind[:-1]} {w['metadata']['name']} ready "
                                    f"{st.get('readyReplicas', 0)}/{want}, updated "
                                    f"{st.get('updatedReplicas', 0)}")
        for job in self.get("jobs", selector=self.selector())["items"]:
            if "CronJob" in {o["kind"] for o in job["metadata"].get("ownerReferences", [])}:
                continue
            if not job.get("status", {}).get("succeeded"):
                problems.append(f"job {job['metadata']['name']} not succeeded")
        try:
            r = requests.get(f"{self.url}/health", timeout=5)
            if r.status_code != 200:
                problems.append(f"GET /health through the NodePort: {r.status_code}")
        except requests.RequestException as e:
            problems.append(f"GET /health through the NodePort: {e.__class__.__name__}")
        return problems

    def restarts(self) -> dict[str, str]:
        """Pod -> restart count and last termination reason, for containers that restarted."""
        found = {}
        for pod in self.pods():
            for c in pod.get("status", {}).get("containerStatuses", []):
                if c.get("restartCount"):
                    last = (c.get("lastState") or {}).get("terminated") or {}
                    found[f"{pod['metadata']['name']}/{c['name']}"] = (
                        f"{c['restartCount']}x, last: {last.get('reason')} exit {last.get('exitCode')}")
        return found

    def wait_ready(self, timeout: float = 600) -> None:
        wait_until(lambda: not self.not_ready(), timeout, f"release {self.name} Ready",
                   interval=2, diagnose=self.diagnose)

    def diagnose(self) -> str:
        """What an operator would look at: pods, events, and the logs of unhealthy pods."""
        parts = [self.kubectl("get", "pods,pvc,jobs", "-o", "wide", check=False),
                 "problems: " + "; ".join(self.not_ready())]
        events = self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)
        parts.append("events (last 30):\n" + "\n".join(events.splitlines()[-30:]))
        for pod in self.pods():
            ready = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            if ready.get("Ready") != "True" and pod.get("status", {}).get("phase") != "Succeeded":
                name = pod["metadata"]["name"]
                parts.append(f"--- describe {name}\n" +
                             self.kubectl("describe", "pod", name, check=False)[-3000:])
                parts.append(f"--- logs {name}\n" + self.kubectl(
                    "logs", name, "--all-containers", "--tail=40", check=False)[-3000:])
        return "\n".join(parts)

    def secret(self) -> dict[str, str]:
        data = self.get("secret", self.secret_name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def admin(self) -> tuple[str, str]:
        return "admin", self.secret()["admin_password"]

    def minio_data_dir(self) -> str:
        """Where the MinIO StatefulSet mounts its drive (its volumeClaimTemplate)."""
        sts = self.get("statefulset", self.resource("minio"))
        claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
        for container in sts["spec"]["template"]["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] in claims:
                    return mount["mountPath"]
        raise AssertionError(f"statefulset {self.resource('minio')} mounts no volumeClaimTemplate")

    def mc(self, *args: str, pod: str | None = None) -> str:
        """mc as MinIO's root, from inside a MinIO pod (the laptop has no S3 keys)."""
        return self.exec(pod or self.resource("minio-0"), "mc-root.sh", *args)

    def bucket(self) -> str:
        """The artifact bucket (the chart's s3.bucket, as the server is told it)."""
        deploy = self.get("deployment", self.resource("mlflow"))
        env = {e["name"]: e.get("value") for e in
               deploy["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        return env["MLFLOW_S3_BUCKET"]

    def minio_info(self, pod: str | None = None) -> dict:
        """`mc admin info --json`: servers, drives and their states."""
        return json.loads(self.mc("admin", "info", "stack", "--json", pod=pod))["info"]

    def workload_images(self) -> dict[str, list[str]]:
        images = {}
        for kind in ("deployments", "statefulsets"):
            for w in self.get(kind, selector=self.selector())["items"]:
                spec = w["spec"]["template"]["spec"]
                images[w["metadata"]["name"]] = [c["image"] for c in
                                                 spec.get("initContainers", []) + spec["containers"]]
        return images

    def write_values(self, values: dict) -> None:
        self.values_file.write_text(yaml.safe_dump(values))


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


_RUN: dict = {}


def record_result(name: str, value) -> None:
    """Numbers worth quoting (install time, suite time) of this run land in
    tests/k8s/.results/latest.json; finish_results() appends the run to history.jsonl."""
    RESULTS.mkdir(exist_ok=True)
    _RUN.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _RUN[name] = value
    (RESULTS / "latest.json").write_text(json.dumps(_RUN, indent=2) + "\n")


def finish_results(outcome: dict) -> None:
    if not _RUN:
        return
    _RUN.update(outcome)
    (RESULTS / "latest.json").write_text(json.dumps(_RUN, indent=2) + "\n")
    with open(RESULTS / "history.jsonl", "a") as f:
        f.write(json.dumps(_RUN) + "\n")
