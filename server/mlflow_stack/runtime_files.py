"""Files the server reads its credentials from, written at start-up to a private tmpfs.

Keeping secrets in files (not argv or the container's environment) keeps them out of
`docker inspect`, `ps` and the logs.
"""

import configparser
import io
import os
from pathlib import Path

from mlflow_stack.settings import Settings


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pgpass(settings: Settings, password: str) -> str:
    host = _pgpass_field(settings.postgres_host)
    user = _pgpass_field(settings.postgres_user)
    return f"{host}:{settings.postgres_port}:*:{user}:{_pgpass_field(password)}\n"


def aws_credentials(access_key: str, secret_key: str) -> str:
    return f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"


def auth_ini(settings: Settings, admin_password: str) -> str:
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": settings.default_permission,
        "database_uri": settings.database_uri("mlflow_auth"),
        "admin_username": settings.admin_username,
        # Used only on the very first start, to create the admin user.
        "admin_password": admin_password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        # Without this cache basic-auth re-hashes the password on every request (see
        # docs/operations.md): 5 req/s instead of ~28 on two cores.
        "auth_cache_ttl_seconds": str(settings.auth_cache_ttl_seconds),
        "auth_cache_max_size": "10000",
    }
    out = io.StringIO()
    config.write(out)
    return out.getvalue()


def write_runtime_files(
    runtime_dir: Path, settings: Settings, secrets: dict[str, str]
) -> dict[str, str]:
    """Write the credential files; return the environment variables that point at them."""
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {
        "pgpass": pgpass(settings, secrets["postgres_password"]),
        "aws-credentials": aws_credentials(secrets["s3_access_key"], secrets["s3_secret_key"]),
        "basic_auth.ini": auth_ini(settings, secrets["admin_password"]),
    }
    for name, text in files.items():
        _write_private(runtime_dir / name, text)
    return {
        "PGPASSFILE": str(runtime_dir / "pgpass"),
        "AWS_SHARED_CREDENTIALS_FILE": str(runtime_dir / "aws-credentials"),
        "MLFLOW_AUTH_CONFIG_PATH": str(runtime_dir / "basic_auth.ini"),
    }


def use_credential_files(runtime_dir: Path, settings: Settings, secrets: dict[str, str]) -> None:
    """Write the credential files and point this process (and what it starts) at them:
    libpq, boto3 and MLflow read credentials from these files and from nothing inherited."""
    os.environ.update(write_runtime_files(runtime_dir, settings, secrets))
    os.environ["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        os.environ.pop(name, None)


def credential_files_for_this_process(label: str) -> tuple[Settings, Path]:
    """For a command run beside the server (gc, model-gateway): settings from the
    environment and this process's own copy of the credential files (the server's copies in
    /run/mlflow belong to it). Returns the folder, which the caller removes when done."""
    from mlflow_stack.secret_files import read_secrets

    settings = Settings.from_env(os.environ)
    secrets = read_secrets(Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow")))
    runtime_dir = Path(os.environ.get("RUNTIME_DIR", "/run/mlflow")) / f"{label}-{os.getpid()}"
    use_credential_files(runtime_dir, settings, secrets)
    return settings, runtime_dir
