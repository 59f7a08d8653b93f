"""`helm upgrade` to another server image with data in place: every earlier run and
artifact reads back, the generated Secret is untouched, users still log in."""

import time

from .conftest import check_seeded, timing
from .kube import UPGRADE_TAG, load_images, run


def test_upgrade_to_another_image_keeps_data_secret_and_logins(release, admin, seeded, tmp_path):
    # The server image the release runs, under a second tag: what an operator's rebuilt
    # image looks like to Kubernetes.
    current = release.workload_images()[release.resource("mlflow")]
    assert len(current) == 1, current
    # (A kept install that was upgraded before gets a second such tag.)
    tag = f"{UPGRADE_TAG}-b" if current[0].endswith(f":{UPGRADE_TAG}") else UPGRADE_TAG
    target = f"mlflow-stack/server:{tag}"
    run(["docker", "tag", current[0], target])
    start = time.monotonic()
    load_images([target])
    timing("upgrade_image_load_s", time.monotonic() - start)

    secret_before = release.get("secret", release.secret_name)["data"]
    revision_before = release.revision()
    old_pods = set(release.pod_names("mlflow"))

    start = time.monotonic()
    release.upgrade("--reuse-values", "--set", f"image.server.tag={tag}")
    release.wait_ready(300)
    timing("helm_upgrade_s", time.monotonic() - start)

    # The upgrade really moved the server to the other image, and only the server.
    images = release.workload_images()
    assert images[release.resource("mlflow")] == [target], images
    assert all(img.endswith(":local") for img in images[release.resource("minio")]), images
    assert all(img.endswith(":local") for img in images[release.resource("postgresql")]), images
    assert not (old_pods & set(release.pod_names("mlflow"))), "no mlflow pod was replaced"
    revision = release.revision()
    assert revision == revision_before + 1
    for job in (f"migrate-{revision}", f"minio-init-{revision}"):
        status = release.get("job", release.resource(job))["status"]
        assert status.get("succeeded") == 1, (job, status)

    assert release.get("secret", release.secret_name)["data"] == secret_before, \
        "the upgrade changed the generated Secret"
    check_seeded(release, seeded, admin, tmp_path)
