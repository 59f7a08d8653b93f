"""Entrypoint of the tracking server container.

Reads the secrets, waits (with a deadline) for PostgreSQL and the bucket, migrates both
databases, then execs `mlflow server`. Every failure ends in one sentence that names
the fix, never a traceback.
"""

import os
import subprocess
import sys
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.dependencies import wait_for_bucket, wait_for_postgres
from mlflow_stack.runtime_files import write_runtime_files
from mlflow_stack.settings import Settings

SECRET_NAMES = (
    "postgres_password", "s3_access_key", "s3_secret_key", "admin_password", "models_password",
    "flask_secret_key",
)


def log(message: str) -> None:
    print(f"mlflow-entrypoint: {message}", file=sys.stderr, flush=True)


def read_secrets(directory: Path) -> dict[str, str]:
    values = {}
    for name in SECRET_NAMES:
        path = directory / name
        try:
            values[name] = path.read_text()
        except OSError as e:
            raise StackError(
                f"cannot read secret {path} ({e.strerror}): the one-shot 'secrets' service "
                "writes it; run `docker compose up secrets` and read its log."
            ) from None
        if not values[name]:
            raise StackError(f"secret {path} is empty; run `docker compose up secrets` again.")
    return values


def server_command(settings: Settings, artifacts_destination: str) -> list[str]:
    return [
        "mlflow", "server",
        "--backend-store-uri", settings.database_uri("mlflow"),
        "--serve-artifacts",
        "--artifacts-destination", artifacts_destination,
        "--app-name", "basic-auth",
        "--host", "0.0.0.0",
        "--port", "5000",
        "--workers", str(settings.workers),
        "--allowed-hosts", ",".join(settings.allowed_hosts),
        # Empty means MLflow's default: localhost origins only.
        *(["--cors-allowed-origins", ",".join(settings.cors_allowed_origins)]
          if settings.cors_allowed_origins else []),
    ]


def migrate(settings: Settings) -> None:
    """Bring both schemas to this MLflow version before any worker starts."""
    log("migrating the tracking database (mlflow db upgrade)")
    result = subprocess.run(
        ["mlflow", "db", "upgrade", settings.database_uri("mlflow")], check=False
    )
    if result.returncode != 0:
        raise StackError(
            "`mlflow db upgrade` failed (its output is above). The database is unchanged "
            "or partly migrated: restore the latest backup before retrying (docs/operations.md)."
        )
    log("migrating the auth database and checking the admin and models accounts")
    bootstrap = [sys.executable, "-m", "mlflow_stack.auth_bootstrap"]
    if subprocess.run(bootstrap, check=False).returncode != 0:
        raise StackError("preparing the auth database failed (its output is above).")


def main() -> None:
    settings = Settings.from_env(os.environ)
    secrets_dir = Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow"))
    secrets = read_secrets(secrets_dir)
    runtime_dir = Path(os.environ.get("RUNTIME_DIR", "/run/mlflow"))
    # From here on this process's environment is the server's; the clients used for
    # waiting (libpq, boto3) read the same credential files.
    os.environ.update(write_runtime_files(runtime_dir, settings, secrets))
    os.environ["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets["flask_secret_key"]
    os.environ["MODELS_PASSWORD_FILE"] = str(secrets_dir / "models_password")
    # Credentials come only from the files above, never from inherited variables.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        os.environ.pop(name, None)

    wait_for_postgres(settings, log)
    wait_for_bucket(settings, log)
    migrate(settings)

    command = server_command(settings, f"s3://{settings.bucket}/artifacts")
    log(f"starting mlflow server with {settings.workers} workers; allowed hosts: "
        f"{','.join(settings.allowed_hosts)}; browser origins allowed to make changes: "
        f"localhost, {','.join(settings.cors_allowed_origins) or '(no others)'}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    try:
        main()
    except StackError as e:
        log(f"error: {e}")
        sys.exit(1)
