"""Wait, with a deadline, until PostgreSQL and the artifact bucket answer.

Transient states (still starting, not yet resolvable) are retried; answers that will
not change by waiting (a rejected password or S3 key) fail at once.
"""

import contextlib
import time
from collections.abc import Callable

from mlflow_stack import StackError
from mlflow_stack.settings import Settings

RETRY_SECONDS = 0.5


def _until_deadline(timeout: int, attempt: Callable[[], str | None], log, what: str,
                    look: str = "`docker compose ps` and that service's logs") -> None:
    """Call attempt() until it returns None (ready); it returns a reason while not ready."""
    deadline = time.monotonic() + timeout
    reason = None
    while time.monotonic() < deadline:
        reason = attempt()
        if reason is None:
            return
        log(f"waiting for {what}: {reason}")
        time.sleep(RETRY_SECONDS)
    raise StackError(
        f"{what} was not ready within {timeout} s (last: {reason}). Check "
        f"{look}; MLFLOW_STARTUP_TIMEOUT sets the wait."
    )


def _look(settings: Settings) -> str:
    if settings.migrations == "job":  # the Helm chart
        return "`kubectl get pods,jobs` and the logs of the postgresql, minio and init pods"
    return "`docker compose ps` and that service's logs"


@contextlib.contextmanager
def postgres_connection(settings: Settings, dbname: str):
    """A psycopg2 connection as the mlflow role (password from PGPASSFILE), closed after."""
    import psycopg2

    connection = psycopg2.connect(
        host=settings.postgres_host, port=settings.postgres_port,
        dbname=dbname, user=settings.postgres_user, connect_timeout=3,
    )
    try:
        yield connection
    finally:
        connection.close()


def wait_for_postgres(settings: Settings, log) -> None:
    import psycopg2

    def attempt():
        try:
            with postgres_connection(settings, "mlflow"):
                pass
        except psycopg2.OperationalError as e:
            message = str(e).strip() or repr(e)
            if "password authentication failed" in message:
                raise StackError(
                    "PostgreSQL rejected the mlflow role's password. The copies in the "
                    "secrets volumes disagree with the database: if you changed "
                    "POSTGRES_PASSWORD in .env, run `docker compose up -d` again so both "
                    "postgres and mlflow pick it up."
                ) from None
            # libpq's first line says what happened; later ones add context.
            return message.splitlines()[0]
        return None

    where = f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port}"
    _until_deadline(settings.startup_timeout_seconds, attempt, log, where, _look(settings))


def wait_for_bucket(settings: Settings, log) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    def attempt():
        # A new client (and connection, and name lookup) for every attempt: a kept-alive
        # connection to an address a name no longer has (a Service recreated on
        # Kubernetes, with DNS still answering the old one) would be asked forever.
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1}),
        )
        try:
            client.head_bucket(Bucket=settings.bucket)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403) and settings.migrations == "job":
                # On Kubernetes nothing orders the pods after the minio-init job, which may
                # not have created MLflow's user yet: wait, and name the keys at the deadline.
                return (f"MinIO refuses MLflow's S3 keys (HTTP {status}): the minio-init job "
                        "has not created its user yet, or the keys in the Secret differ")
            if status in (401, 403):
                raise StackError(
                    f"MinIO at {settings.s3_endpoint_url} rejected MLflow's S3 keys for bucket "
                    f"'{settings.bucket}' (HTTP {status}). The keys in the secrets volume do "
                    "not match MinIO's service user: check MLFLOW_S3_ACCESS_KEY / "
                    "MLFLOW_S3_SECRET_KEY in .env and rerun `docker compose up -d` so "
                    "minio-init updates the user (docker compose logs minio-init)."
                ) from None
            if status == 404:
                return f"bucket '{settings.bucket}' does not exist yet (minio-init creates it)"
            return f"HTTP {status}"
        except BotoCoreError as e:
            return str(e)
        return None

    _until_deadline(settings.startup_timeout_seconds, attempt, log,
                    f"S3 bucket '{settings.bucket}'", _look(settings))
