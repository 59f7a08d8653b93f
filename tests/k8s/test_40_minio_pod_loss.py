"""MinIO keeps every artifact when one of its four pods goes away, and rebuilds a drive
that comes back empty.

The artifacts are the seeded run's (conftest `seeded`), so test_50/test_60 read back
objects that went through this, and the run logged here."""

import json
import os
import time
import uuid

import mlflow
import pytest
from mlflow import MlflowClient

from .conftest import laptop_env, timing
from .kube import sha256_file, wait_until

HEAL_LIMIT_SECONDS = 300
POD_LIMIT_SECONDS = 180


@pytest.fixture(scope="module")
def artifacts(release, admin, seeded, tmp_path_factory):
    """The seeded run's files plus a run of this module's own, logged with default settings."""
    mp = pytest.MonkeyPatch()
    laptop_env(mp, release.url, *admin)
    src = tmp_path_factory.mktemp("minio-src")
    files = {}
    for name, size in (("a.txt", 100), ("b.bin", 3 * 1024 * 1024 + 5), ("c.bin", 12 * 1024 * 1024)):
        (src / name).write_bytes(os.urandom(size))
        files[name] = src / name
    client = MlflowClient(tracking_uri=release.url)
    experiment_id = client.create_experiment(f"minio-loss-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment_id).info.run_id
    for path in files.values():
        client.log_artifact(run_id, str(path))
    everything = [(seeded["run_id"], remote, local) for remote, local in seeded["files"].items()]
    everything += [(run_id, remote, local) for remote, local in files.items()]
    yield {"all": everything, "run_ids": [seeded["run_id"], run_id]}
    mp.undo()


def download_all(release, artifacts, dst, slowest: list | None = None) -> list[str]:
    """Downloads every artifact; returns what was not byte-identical or failed. Appends
    each download's seconds to slowest when given."""
    bad = []
    for i, (run_id, remote, local) in enumerate(artifacts["all"]):
        start = time.monotonic()
        target = dst / f"{time.monotonic_ns()}-{i}"
        target.mkdir(parents=True)
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=remote, dst_path=str(target), tracking_uri=release.url)
        except Exception as e:  # noqa: BLE001 - reported
            bad.append(f"{run_id}/{remote}: {e.__class__.__name__}: {str(e)[:300]}")
            continue
        if slowest is not None:
            slowest.append(time.monotonic() - start)
        if sha256_file(path) != sha256_file(local):
            bad.append(f"{run_id}/{remote}: content differs")
    return bad


def pod_ready(release, pod: str) -> bool:
    found = release.get("pods", selector=release.selector("minio"))["items"]
    for p in found:
        if p["metadata"]["name"] == pod and not p["metadata"].get("deletionTimestamp"):
            conditions = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
            return conditions.get("Ready") == "True"
    return False


def drive_files(release, pod: str, run_ids: list[str]) -> dict[str, int]:
    """Relative path -> size of every file of these runs' objects on the pod's drive."""
    data = release.minio_data_dir()
    pattern = " -o ".join(f"-path '*{r}*'" for r in run_ids)
    out = release.exec(pod, "sh", "-c",
                       f"cd {data} && find . -type f \\( {pattern} \\) -printf '%s %p\\n'")
    files = {}
    for line in out.splitlines():
        size, path = line.split(" ", 1)
        files[path] = int(size)
    return files


def minio_whole(release) -> bool:
    """All four drives online in MinIO's own view (a Ready pod may not have rejoined yet)."""
    info = release.minio_info()
    drives = [d for server in info["servers"] for d in server.get("drives", [])]
    return len(drives) == 4 and all(d.get("state") == "ok" for d in drives)


def pod_uid(release, pod: str) -> str | None:
    out = release.kubectl("get", "pod", pod, "--ignore-not-found", "-o", "jsonpath={.metadata.uid}")
    return out.strip() or None


def test_a_deleted_minio_pod_comes_back_and_nothing_is_lost(release, admin, as_user, artifacts,
                                                            tmp_path):
    as_user(*admin)
    assert download_all(release, artifacts, tmp_path) == []
    victim = release.resource("minio-2")
    uid = pod_uid(release, victim)
    release.kubectl("delete", "pod", victim, "--wait=true", "--timeout=120s")
    # Right after the delete (the pod restarting) and once it is back.
    seconds = []
    bad = download_all(release, artifacts, tmp_path, seconds)
    assert bad == [], f"while {victim} restarted:\n" + "\n".join(bad)
    timing("minio_restart_slowest_download_s", max(seconds))
    wait_until(lambda: pod_ready(release, victim), POD_LIMIT_SECONDS, f"{victim} Ready again",
               diagnose=release.diagnose)
    assert pod_uid(release, victim) != uid, f"{victim} was not replaced"
    assert download_all(release, artifacts, tmp_path) == []


def test_with_one_minio_pod_away_artifacts_download_and_upload(release, admin, as_user, artifacts,
                                                               tmp_path):
    """The pod stays away (StatefulSet scaled to 3) for as long as the checks take."""
    as_user(*admin)
    statefulset = release.resource("minio")
    victim = release.resource("minio-3")
    try:
        release.kubectl("scale", "statefulset", statefulset, "--replicas=3")
        wait_until(lambda: pod_uid(release, victim) is None, POD_LIMIT_SECONDS, f"{victim} gone")
        seconds = []
        bad = download_all(release, artifacts, tmp_path, seconds)
        assert bad == [], f"with {victim} away:\n" + "\n".join(bad)
        timing("minio_away_slowest_download_s", max(seconds))
        # Writes need 3 of the 4 drives: they go on.
        extra = tmp_path / "written-while-away.bin"
        extra.write_bytes(os.urandom(2 * 1024 * 1024))
        run_id = artifacts["run_ids"][1]
        MlflowClient(tracking_uri=release.url).log_artifact(run_id, str(extra), "away")
        assert pod_uid(release, victim) is None, f"{victim} came back during the checks"
    finally:
        release.kubectl("scale", "statefulset", statefulset, "--replicas=4")
    wait_until(lambda: pod_ready(release, victim), POD_LIMIT_SECONDS, f"{victim} Ready again",
               diagnose=release.diagnose)
    artifacts["all"].append((run_id, f"away/{extra.name}", extra))
    assert download_all(release, artifacts, tmp_path) == []
    # MinIO did not write the missing drive's share of that object by itself within 5
    # minutes (its scanner gets there eventually); `mc admin heal` does. Right after the
    # pod rejoins, a heal may still skip it: heal until it is there, with a deadline.
    start = time.monotonic()
    wait_until(lambda: minio_whole(release), POD_LIMIT_SECONDS, "all four MinIO drives online",
               diagnose=lambda: json.dumps(release.minio_info(), indent=1)[:3000])

    def healed():
        release.mc("admin", "heal", "-r", f"stack/{release.bucket()}")
        return any(p.endswith(f"away/{extra.name}/xl.meta")
                   for p in drive_files(release, victim, [run_id]))

    wait_until(healed, HEAL_LIMIT_SECONDS, f"mc admin heal writing the object written while "
               f"{victim} was away onto its drive", interval=5)
    timing("minio_missed_write_healed_s", time.monotonic() - start)


def test_a_wiped_minio_drive_is_healed(release, admin, as_user, artifacts, tmp_path):
    as_user(*admin)
    victim = release.resource("minio-1")
    data = release.minio_data_dir()
    before = drive_files(release, victim, artifacts["run_ids"])
    assert len(before) >= len(artifacts["all"]), before
    # MinIO's own xl.meta can change when it heals; the erasure-coded parts must come back
    # with the same sizes, and every object's metadata must be there again.
    parts = {p: s for p, s in before.items() if "/part." in p}
    metas = {p for p in before if p.endswith("/xl.meta")}
    assert parts and metas, before

    release.exec(victim, "sh", "-c", f"rm -rf {data}/* {data}/.minio.sys")
    assert drive_files(release, victim, artifacts["run_ids"]) == {}
    release.kubectl("delete", "pod", victim, "--wait=true", "--timeout=120s")
    wiped = time.monotonic()
    wait_until(lambda: pod_ready(release, victim), POD_LIMIT_SECONDS, f"{victim} Ready again",
               diagnose=release.diagnose)

    bad = download_all(release, artifacts, tmp_path)
    assert bad == [], "with one MinIO drive wiped:\n" + "\n".join(bad)

    def healed():
        now = drive_files(release, victim, artifacts["run_ids"])
        return metas <= set(now) and all(now.get(p) == s for p, s in parts.items())

    def diagnose():
        return (f"before: {before}\nnow: {drive_files(release, victim, artifacts['run_ids'])}\n"
                f"logs of {victim}:\n" + release.kubectl("logs", victim, "--tail=40", check=False))

    wait_until(healed, HEAL_LIMIT_SECONDS, f"MinIO rebuilding {victim}'s drive", interval=5,
               diagnose=diagnose)
    timing("minio_drive_healed_s", time.monotonic() - wiped)
    # The files come back before MinIO's own view of the drive leaves "healing".
    wait_until(lambda: minio_whole(release), HEAL_LIMIT_SECONDS,
               "all four MinIO drives ok after the heal",
               diagnose=lambda: json.dumps(release.minio_info(), indent=1)[:3000])
    assert download_all(release, artifacts, tmp_path) == []
