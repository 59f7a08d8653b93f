import os
import uuid

import pytest

from .stack import Stack, docker_available, free_port

# What a laptop is told to set, and nothing else: a default MLflow client.
CLIENT_VARIABLES_TO_CLEAR = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_TRACKING_TOKEN",
)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


# Package scope: the Compose stack goes away when the e2e tests end, before tests/k8s
# starts a cluster on the same machine.
@pytest.fixture(scope="package")
def stack():
    if not docker_available():
        pytest.fail("the end-to-end tests need a running Docker engine (see README: Tests)")
    project = os.environ.get("STACK_TEST_PROJECT") or f"mlflowtest{uuid.uuid4().hex[:8]}"
    s = Stack(project, free_port())
    s.build()
    try:
        s.up()
        yield s
    finally:
        if os.environ.get("STACK_TEST_KEEP") != "1":
            s.down(volumes=True)


@pytest.fixture(scope="package")
def admin(stack):
    return ("admin", stack.admin_password())


@pytest.fixture
def as_user(monkeypatch, stack):
    """Make this process a laptop logged in as the given user: only the three variables."""

    def login(username: str, password: str, url: str | None = None) -> None:
        url = url or stack.url
        for name in CLIENT_VARIABLES_TO_CLEAR:
            monkeypatch.delenv(name, raising=False)
        # Make sure no ~/.aws on the test machine could lend S3 keys to the client.
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        import mlflow

        mlflow.set_tracking_uri(url)

    return login
