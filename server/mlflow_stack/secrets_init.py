"""One-shot job: make sure every secret the stack needs exists, before anything starts.

Each service gets its own volume holding only the secrets it reads, owned by the uid
its image runs as, mode 0600. A value the operator sets in `.env` wins (so rotating
it there takes effect on the next `up`); otherwise a value generated on the first
start is kept. Values are never printed.

Run as root inside the server image: python -m mlflow_stack.secrets_init
"""

import base64
import binascii
import dataclasses
import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from mlflow_stack import StackError

# uids the service images run as (see each Dockerfile).
SERVICE_UIDS = {"postgres": 999, "minio": 1000, "mlflow": 1001, "models": 1002}
MIN_PASSWORD_LENGTH = 12
# Characters that need no quoting in a URL's user info, a pgpass line or an ini value.
SAFE_CHARACTERS = re.compile(r"[A-Za-z0-9._~!*+=-]+")
# MLflow's _LEGACY_DEFAULT_ADMIN_PASSWORD (mlflow/server/auth/__init__.py).
LEGACY_MLFLOW_ADMIN_PASSWORD = "password1234"  # noqa: S105 - refused, never used


def _password() -> str:
    # 32 URL-safe characters, 192 bits: safe in URLs, ini files and shell variables.
    return secrets.token_urlsafe(24)


@dataclasses.dataclass(frozen=True)
class Secret:
    name: str
    env: str
    readers: tuple[str, ...]
    generate: Callable[[], str] = _password
    min_length: int = MIN_PASSWORD_LENGTH
    # Extra check of an operator's value (raises StackError naming `where`); None: safe
    # characters only.
    check: Callable[[str, str], None] | None = None
    # Keep the values this one replaced (file <name>.previous, newest first), so the server
    # can re-encrypt what the old value protects (encryption_keys.py).
    keep_previous: bool = False
    # Refuse MLflow's old default admin password (MLflow refuses admin logins with it).
    refuse_mlflow_default: bool = False

    def validate(self, value: str, where: str = "") -> None:
        """where: how the operator set it, for the message (default: the .env line)."""
        where = where or f"{self.env} in .env"
        if self.check is not None:
            self.check(value, where)
            return
        if len(value) < self.min_length:
            raise StackError(
                f"{where} has {len(value)} characters; it needs at least "
                f"{self.min_length}. Set a longer value, or remove the line to have a strong "
                "one generated."
            )
        if not SAFE_CHARACTERS.fullmatch(value):
            raise StackError(
                f"{where} may contain only letters, digits and . _ ~ ! * + = - "
                "(it is used in URLs and config files); change it, or remove the line to "
                "have one generated."
            )
        if self.refuse_mlflow_default and value == LEGACY_MLFLOW_ADMIN_PASSWORD:
            raise StackError(
                f"{where} is the admin password older MLflow versions shipped as their default "
                "(GHSA-gq3w-7jj3-x7gr), and MLflow refuses admin logins with it; set another, "
                "or remove the line to have a strong one generated."
            )


MIN_PASSPHRASE_LENGTH = 32
# How many replaced values of a key are kept (rotations before the server next starts).
MAX_PREVIOUS = 5


def _fernet_key() -> str:
    # What cryptography's Fernet.generate_key() returns: 32 random bytes, urlsafe base64.
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _check_passphrase(value: str, where: str) -> None:
    if len(value) < MIN_PASSPHRASE_LENGTH or value != value.strip() or "\n" in value:
        raise StackError(
            f"{where} must be one line of at least "
            f"{MIN_PASSPHRASE_LENGTH} characters without surrounding spaces (it has "
            f"{len(value)}); set a longer one, or remove the line to have one generated."
        )


def _check_fernet_key(value: str, where: str) -> None:
    try:
        ok = len(value) == 44 and len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        ok = False
    if not ok:
        raise StackError(
            f"{where} is not a Fernet key (44 characters "
            "of urlsafe base64 encoding 32 bytes, as printed by python3 -c \"import base64, os; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"); fix it, or remove "
            "the line to have one generated."
        )


SECRETS = (
    Secret("postgres_password", "POSTGRES_PASSWORD", readers=("postgres", "mlflow")),
    Secret("minio_root_user", "MINIO_ROOT_USER", readers=("minio",),
           generate=lambda: "root-" + secrets.token_hex(6), min_length=3),
    Secret("minio_root_password", "MINIO_ROOT_PASSWORD", readers=("minio",)),
    # MLflow's least-privilege MinIO user: the access key is its user name.
    Secret("s3_access_key", "MLFLOW_S3_ACCESS_KEY", readers=("minio", "mlflow"),
           generate=lambda: "mlflow-" + secrets.token_hex(6), min_length=3),
    Secret("s3_secret_key", "MLFLOW_S3_SECRET_KEY", readers=("minio", "mlflow")),
    Secret("admin_password", "MLFLOW_ADMIN_PASSWORD", readers=("mlflow",),
           refuse_mlflow_default=True),
    # The models job's own non-admin MLflow account (created by the server on start).
    Secret("models_password", "MLFLOW_MODELS_PASSWORD", readers=("mlflow", "models")),
    Secret("flask_secret_key", "MLFLOW_FLASK_SECRET_KEY", readers=("mlflow",),
           generate=lambda: secrets.token_hex(32), min_length=32),
    # Encrypts the AI Gateway's stored provider API keys (MLflow's envelope encryption).
    Secret("crypto_kek_passphrase", "MLFLOW_CRYPTO_KEK_PASSPHRASE", readers=("mlflow",),
           generate=lambda: secrets.token_urlsafe(32), min_length=MIN_PASSPHRASE_LENGTH,
           check=_check_passphrase, keep_previous=True),
    # Encrypts the model registry webhooks' signing secrets (Fernet).
    Secret("webhook_encryption_key", "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", readers=("mlflow",),
           generate=_fernet_key, min_length=44, check=_check_fernet_key, keep_previous=True),
)


def previous_name(name: str) -> str:
    return f"{name}.previous"


def _read(path: Path) -> str | None:
    try:
        value = path.read_text()
    except FileNotFoundError:
        return None
    return value or None


def _write(path: Path, value: str, uid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    os.chown(tmp, uid, uid)
    os.replace(tmp, path)


def resolve(secret: Secret, env: Mapping[str, str], stored: str | None) -> tuple[str, str]:
    """Return (value, where it came from) for one secret."""
    if operator_value := env.get(secret.env, ""):
        secret.validate(operator_value)
        return operator_value, "from .env"
    if stored:
        return stored, "kept"
    return secret.generate(), "generated"


def ensure_secrets(root: Path, env: Mapping[str, str], uids: Mapping[str, int]) -> list[str]:
    """Create or update every secret under root/<service>/; return one log line each."""
    for service, uid in uids.items():
        directory = root / service
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, uid, uid)
        directory.chmod(0o700)

    # Resolve (and so validate) everything before writing anything.
    resolved = []
    for secret in SECRETS:
        # The first reader's copy is the reference; the others are kept equal to it.
        stored = _read(root / secret.readers[0] / secret.name)
        resolved.append((secret, *resolve(secret, env, stored)))

    report = []
    for secret, value, origin in resolved:
        if secret.keep_previous:
            _keep_previous(root / secret.readers[0], secret, value, uids[secret.readers[0]])
        for service in secret.readers:
            path = root / service / secret.name
            if _read(path) != value:
                _write(path, value, uids[service])
        report.append(f"{secret.name}: {origin} (readers: {', '.join(secret.readers)})")
    return report


def _keep_previous(directory: Path, secret: Secret, value: str, uid: int) -> None:
    """Before a new value replaces the stored one, remember the stored one."""
    stored = _read(directory / secret.name)
    if not stored or stored == value:
        return
    path = directory / previous_name(secret.name)
    previous = [v for v in (_read(path) or "").splitlines() if v and v != value]
    previous = [stored, *(v for v in previous if v != stored)][:MAX_PREVIOUS]
    _write(path, "\n".join(previous) + "\n", uid)


def main() -> int:
    root = Path(os.environ.get("STACK_SECRETS_ROOT", "/secrets"))
    try:
        for line in ensure_secrets(root, os.environ, SERVICE_UIDS):
            print(f"secrets: {line}")
    except StackError as e:
        print(f"secrets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
