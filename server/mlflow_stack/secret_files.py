"""The server's secrets, read from the files the one-shot `secrets` service writes."""

from pathlib import Path

from mlflow_stack import StackError

SECRET_NAMES = (
    "postgres_password", "s3_access_key", "s3_secret_key", "admin_password", "models_password",
    "flask_secret_key",
)


def read_secrets(directory: Path, names: tuple[str, ...] = SECRET_NAMES) -> dict[str, str]:
    values = {}
    for name in names:
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
