"""Encryption keys of MLflow's stored secrets: checked, and re-encrypted after a rotation.

MLflow encrypts two kinds of stored secrets with keys it reads from the environment:
the AI Gateway's provider API keys (MLFLOW_CRYPTO_KEK_PASSPHRASE, derived into a KEK per
MLFLOW_CRYPTO_KEK_VERSION) and the registry webhooks' signing secrets
(MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY, a Fernet key). Without them MLflow uses a public
development passphrase and a random key per worker process. The secrets job keeps both
in the secrets-mlflow volume, with the values they replaced in <name>.previous; at start, before any
worker runs, the server re-encrypts what an older value protects with the current one
(for the gateway with MLflow's own `mlflow crypto rotate-kek`) and derives the KEK version.
"""

import os
import subprocess
import sys
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.dependencies import postgres_connection
from mlflow_stack.secret_files import read_secrets
from mlflow_stack.settings import Settings


def log(message: str) -> None:
    print(f"mlflow-entrypoint: {message}", file=sys.stderr, flush=True)


KEK_PASSPHRASE = "crypto_kek_passphrase"
WEBHOOK_KEY = "webhook_encryption_key"
# Runs MLflow's `mlflow crypto rotate-kek` in-process so the new passphrase is not in argv.
ROTATE_KEK = (
    "import os, sys; from mlflow.cli.crypto import rotate_kek; "
    "rotate_kek.main(['--new-passphrase', os.environ.pop('STACK_NEW_KEK_PASSPHRASE'), '--yes', "
    "'--backend-store-uri', sys.argv[1]], prog_name='mlflow crypto rotate-kek')"
)


def key_values(directory: Path, name: str) -> list[str]:
    """[current value, *the values it replaced] of one key (StackError if it is missing)."""
    current = read_secrets(directory, (name,))[name]
    try:
        previous = (directory / f"{name}.previous").read_text().splitlines()
    except FileNotFoundError:
        previous = []
    return [current, *(v for v in previous if v and v != current)]


def read_encryption_keys(directory: Path) -> dict[str, list[str]]:
    """name -> [current value, *previous values]."""
    return {name: key_values(directory, name) for name in (KEK_PASSPHRASE, WEBHOOK_KEY)}


def _rows(connection, table: str, query: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",))
        if not cursor.fetchone()[0]:
            return []
        cursor.execute(query)
        return cursor.fetchall()


def _kek_opens(passphrase: str, version: int, wrapped_deks: list[bytes]) -> bool:
    from mlflow.utils.crypto import KEKManager, unwrap_dek

    kek = KEKManager(passphrase=passphrase, kek_version=version).get_kek()
    try:
        for wrapped in wrapped_deks:
            unwrap_dek(bytes(wrapped), kek)
    except Exception:  # noqa: BLE001 - MlflowException: wrong KEK or damaged row
        return False
    return True


def prepare_gateway_secrets(settings: Settings, passphrases: list[str]) -> int:
    """Make every stored gateway secret open with passphrases[0]; return the KEK version."""
    with postgres_connection(settings, "mlflow") as connection:
        rows = _rows(connection, "secrets", "SELECT kek_version, wrapped_dek FROM secrets")
    if not rows:
        return 1
    by_version: dict[int, list[bytes]] = {}
    for version, wrapped in rows:
        by_version.setdefault(int(version), []).append(wrapped)
    version = max(by_version)
    current = passphrases[0]
    if len(by_version) == 1 and _kek_opens(current, version, by_version[version]):
        log(f"AI Gateway: {len(rows)} stored secret(s) open with MLFLOW_CRYPTO_KEK_PASSPHRASE "
            f"(KEK version {version})")
        return version
    if len(by_version) == 1:
        # MLflow's public development passphrase is what it used before the stack set one:
        # gateway secrets stored then are re-wrapped on the first start.
        from mlflow.utils.crypto import DEFAULT_KEK_PASSPHRASE

        for old in [*passphrases[1:], DEFAULT_KEK_PASSPHRASE]:
            if old == current or not _kek_opens(old, version, by_version[version]):
                continue
            log(f"AI Gateway: re-wrapping {len(rows)} stored secret(s) with the new "
                f"MLFLOW_CRYPTO_KEK_PASSPHRASE (mlflow crypto rotate-kek, KEK version "
                f"{version} -> {version + 1})")
            env = {**os.environ, "MLFLOW_CRYPTO_KEK_PASSPHRASE": old,
                   "MLFLOW_CRYPTO_KEK_VERSION": str(version), "STACK_NEW_KEK_PASSPHRASE": current}
            result = subprocess.run([sys.executable, "-c", ROTATE_KEK, settings.tracking_store_uri()],
                                    env=env, capture_output=True, text=True)
            if result.returncode != 0 or not _kek_opens(current, version + 1,
                                                        _wrapped_deks(settings)):
                detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
                raise StackError(
                    f"re-wrapping the AI Gateway's stored secrets with the new "
                    f"MLFLOW_CRYPTO_KEK_PASSPHRASE failed ({detail[0]}); nothing was changed. "
                    "Set the previous passphrase back in .env and run docker compose up -d."
                )
            return version + 1
    log(f"warning: AI Gateway: {len(rows)} stored secret(s) do not open with "
        "MLFLOW_CRYPTO_KEK_PASSPHRASE (restored from another stack?); provider API keys "
        "stored there cannot be used. Fix: set MLFLOW_CRYPTO_KEK_PASSPHRASE in .env to the "
        "passphrase of the stack they were stored on and run docker compose up -d; if it "
        "is lost, enter the API keys again in the AI Gateway page")
    return version


def stored_kek_version(settings: Settings) -> int:
    """The KEK version the stored gateway secrets use (1 when there are none): what a
    process beside the running server encrypts new ones with. The server's start made
    them all open with the current passphrase (prepare_gateway_secrets)."""
    with postgres_connection(settings, "mlflow") as connection:
        rows = _rows(connection, "secrets", "SELECT max(kek_version) FROM secrets")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 1


def _wrapped_deks(settings: Settings) -> list[bytes]:
    with postgres_connection(settings, "mlflow") as connection:
        return [row[0] for row in _rows(connection, "secrets", "SELECT wrapped_dek FROM secrets")]


def prepare_webhook_secrets(settings: Settings, keys: list[str]) -> None:
    """Re-encrypt webhook secrets stored with a previous key with keys[0]."""
    with postgres_connection(settings, "mlflow") as connection:
        rows = _rows(connection, "webhooks",
                     "SELECT webhook_id, name, secret FROM webhooks "
                     "WHERE secret IS NOT NULL AND deleted_timestamp IS NULL")
        if not rows:
            return
        from cryptography.fernet import Fernet, InvalidToken, MultiFernet

        current = Fernet(keys[0])
        every = MultiFernet([Fernet(k) for k in keys])
        rotated, unreadable = 0, []
        with connection.cursor() as cursor:
            for webhook_id, name, token in rows:
                try:
                    current.decrypt(token.encode())
                    continue
                except InvalidToken:
                    pass
                try:
                    new = every.rotate(token.encode()).decode()
                except InvalidToken:
                    unreadable.append(name)
                    continue
                cursor.execute("UPDATE webhooks SET secret = %s WHERE webhook_id = %s",
                               (new, webhook_id))
                rotated += 1
        connection.commit()
    if rotated:
        log(f"webhooks: re-encrypted {rotated} signing secret(s) with the new "
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
    if unreadable:
        log(f"warning: webhooks: the signing secret of {len(unreadable)} webhook(s) "
            f"({', '.join(sorted(unreadable)[:5])}) does not open with "
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY (restored from another stack, or made before "
            "the stack kept this key); they cannot be delivered. Fix: set the key of the stack "
            "they were made on in .env and run docker compose up -d, or give each a new secret "
            "(PATCH /api/2.0/mlflow/webhooks/<id>) or delete it")


def prepare_encryption(settings: Settings, directory: Path) -> dict[str, str]:
    """Check and, after a rotation, re-encrypt the stored secrets; return the environment
    the server needs (set only in this process, never in the container's configuration)."""
    keys = read_encryption_keys(directory)
    try:
        version = prepare_gateway_secrets(settings, keys[KEK_PASSPHRASE])
        prepare_webhook_secrets(settings, keys[WEBHOOK_KEY])
    except StackError:
        raise
    except Exception as e:  # noqa: BLE001 - a database problem here is reported, not fatal
        log(f"warning: could not check the stored encrypted secrets ({type(e).__name__}: {e})")
        version = 1
    return {
        "MLFLOW_CRYPTO_KEK_PASSPHRASE": keys[KEK_PASSPHRASE][0],
        "MLFLOW_CRYPTO_KEK_VERSION": str(version),
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": keys[WEBHOOK_KEY][0],
    }
