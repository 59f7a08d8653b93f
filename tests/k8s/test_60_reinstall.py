"""`helm uninstall` leaves the volumes and the generated Secret; installing the same
release again finds every run, artifact and user where they were."""

import time

from .conftest import check_seeded, timing
from .kube import wait_until


def volumes(release) -> dict[str, str]:
    return {c["metadata"]["name"]: c["spec"].get("volumeName")
            for c in release.get("pvc")["items"] if c["status"]["phase"] == "Bound"}


def test_uninstall_and_reinstall_keep_runs_artifacts_and_users(release, admin, seeded, tmp_path):
    secret_before = release.get("secret", release.secret_name)["data"]
    volumes_before = volumes(release)
    assert len(volumes_before) == 5, volumes_before

    release.uninstall()
    wait_until(lambda: not release.pods(), 180, "every pod of the release gone",
               diagnose=release.diagnose)
    assert not release.installed()
    assert release.get("secret", release.secret_name)["data"] == secret_before, \
        "helm uninstall removed or changed the generated Secret"
    assert volumes(release) == volumes_before, "helm uninstall released the data volumes"

    start = time.monotonic()
    release.install()
    release.wait_ready(300)
    timing("reinstall_to_ready_s", time.monotonic() - start)

    assert release.get("secret", release.secret_name)["data"] == secret_before, \
        "the reinstall generated new secrets over the data's"
    assert volumes(release) == volumes_before, "the reinstall did not reuse the volumes"
    check_seeded(release, seeded, admin, tmp_path)
