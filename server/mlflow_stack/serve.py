"""Entrypoint of the tracking server container.

Reads the secrets, waits (with a deadline) for PostgreSQL and the bucket, migrates both
databases, then execs `mlflow server`. Every failure ends in one sentence that names
the fix, never a traceback.
"""

import functools
import os
import secrets as secrets_module
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.databases import ensure_indexes, pending_work
from mlflow_stack.dependencies import postgres_connection, wait_for_bucket, wait_for_postgres
from mlflow_stack.runtime_files import write_runtime_files
from mlflow_stack.settings import MODELS_USERNAME, Settings

# MLflow's basic-auth app with streamed artifact downloads (mlflow_stack/app.py).
APP_NAME = "stack-basic-auth"

SECRET_NAMES = (
    "postgres_password", "s3_access_key", "s3_secret_key", "admin_password", "models_password",
    "flask_secret_key",
)


def log(message: str) -> None:
    print(f"mlflow-entrypoint: {message}", file=sys.stderr, flush=True)


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


# --------------------------------------------------------------- encryption keys
# MLflow encrypts two kinds of stored secrets with keys it reads from the environment:
# the AI Gateway's provider API keys (MLFLOW_CRYPTO_KEK_PASSPHRASE, derived into a KEK per
# MLFLOW_CRYPTO_KEK_VERSION) and the registry webhooks' signing secrets
# (MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY, a Fernet key). Without them MLflow uses a public
# development passphrase and a random key per worker process. The secrets job keeps both
# in this volume, with the values they replaced in <name>.previous; at start, before any
# worker runs, the server re-encrypts what an older value protects with the current one
# (for the gateway with MLflow's own `mlflow crypto rotate-kek`) and derives the KEK version.
KEK_PASSPHRASE = "crypto_kek_passphrase"
WEBHOOK_KEY = "webhook_encryption_key"
# MLflow's public development passphrase (mlflow/utils/crypto.py), which MLflow used here
# before the stack set one: gateway secrets stored then are re-wrapped on the first start.
DEFAULT_KEK_PASSPHRASE = "mlflow-default-kek-passphrase-for-development-only"
# Runs MLflow's `mlflow crypto rotate-kek` in-process so the new passphrase is not in argv.
ROTATE_KEK = (
    "import os, sys; from mlflow.cli.crypto import rotate_kek; "
    "rotate_kek.main(['--new-passphrase', os.environ.pop('STACK_NEW_KEK_PASSPHRASE'), '--yes', "
    "'--backend-store-uri', sys.argv[1]], prog_name='mlflow crypto rotate-kek')"
)


def read_encryption_keys(directory: Path) -> dict[str, list[str]]:
    """name -> [current value, *previous values]."""
    values = read_secrets(directory, (KEK_PASSPHRASE, WEBHOOK_KEY))
    keys = {}
    for name, current in values.items():
        try:
            previous = (directory / f"{name}.previous").read_text().splitlines()
        except FileNotFoundError:
            previous = []
        keys[name] = [current, *(v for v in previous if v and v != current)]
    return keys


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


def server_command(settings: Settings, artifacts_destination: str) -> list[str]:
    return [
        "mlflow", "server",
        "--backend-store-uri", settings.tracking_store_uri(),
        "--serve-artifacts",
        "--artifacts-destination", artifacts_destination,
        "--app-name", APP_NAME,
        "--host", "0.0.0.0",
        "--port", "5000",
        "--workers", str(settings.workers),
        "--allowed-hosts", ",".join(settings.allowed_hosts),
        # Empty means MLflow's default: localhost origins only.
        *(["--cors-allowed-origins", ",".join(settings.cors_allowed_origins)]
          if settings.cors_allowed_origins else []),
    ]


def migrate(settings: Settings, secrets: dict[str, str]) -> None:
    """Bring both schemas and the stack's accounts up to date before any worker starts."""
    connect = functools.partial(postgres_connection, settings)
    accounts = {settings.admin_username: secrets["admin_password"],
                MODELS_USERNAME: secrets["models_password"]}
    try:
        pending = pending_work(connect, accounts)
    except Exception as e:  # noqa: BLE001 - the slow path below checks everything itself
        pending = [f"the quick check failed ({type(e).__name__}: {e})"]
    if pending:
        log(f"preparing the databases: {'; '.join(pending)}")
        command = [sys.executable, "-m", "mlflow_stack.databases", settings.tracking_store_uri()]
        if subprocess.run(command, check=False).returncode != 0:
            raise StackError(
                "preparing the databases failed (the output is above). If a migration "
                "failed, the database is unchanged or partly migrated: restore the latest "
                "backup before retrying (docs/operations.md)."
            )
    else:
        log("both database schemas and the stack's accounts are current")
    try:
        ensure_indexes(connect)
    except Exception as e:  # noqa: BLE001 - an index only speeds up search; serve without it
        log(f"warning: could not create the stack's search indexes ({type(e).__name__}: {e}); "
            "searching experiments with many runs stays slow until the next start")


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
    # What `mlflow server` does only for the app name "basic-auth" (mlflow/server/__init__.py)
    # and must happen for ours too: the accounts are prepared before the workers start
    # (migrate() below), and job subprocesses get a per-start token that lets them call
    # the AI Gateway as the user who queued the job (MLflow accepts it on /gateway/ only).
    os.environ["_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN"] = secrets_module.token_hex(32)
    # The login limiter's state (login_limit.py) starts empty at every start; its key
    # turns passwords seen to work into digests that are useless without it.
    os.environ["MLFLOW_STACK_LOGIN_LIMIT_KEY"] = secrets_module.token_hex(32)
    for stale in runtime_dir.glob("login-limit.sqlite*"):
        stale.unlink()
    # Each worker writes its request metrics here (metrics.py); values from a previous
    # start would otherwise be summed into this one's.
    metrics_dir = runtime_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # MLflow's job engines: "executor" runs each job (GenAI scorers, prompt optimisation)
    # as a subprocess when one is queued; Huey keeps a consumer process per job type
    # running: ~2 s of CPU each at every start and ~235 MB each while idle (the idle
    # container: 2.2 GiB with Huey, 1.2 GiB without).
    if settings.job_engine == "executor":
        os.environ["MLFLOW_SERVER_JOB_EXECUTION_ENGINE"] = "executor"
    else:
        os.environ.pop("MLFLOW_SERVER_JOB_EXECUTION_ENGINE", None)  # MLflow's default: Huey
    # Credentials come only from the files above, never from inherited variables.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        os.environ.pop(name, None)

    wait_for_postgres(settings, log)
    wait_for_bucket(settings, log)
    migrate(settings, secrets)
    # Read after the database checks, which name a wrong password before anything else.
    os.environ.update(prepare_encryption(settings, secrets_dir))

    command = server_command(settings, f"s3://{settings.bucket}/artifacts")
    log(f"starting mlflow server with {settings.workers} workers, job engine "
        f"{settings.job_engine}; allowed hosts: "
        f"{','.join(settings.allowed_hosts)}; browser origins allowed to make changes: "
        f"localhost, {','.join(settings.cors_allowed_origins) or '(no others)'}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    try:
        main()
    except StackError as e:
        log(f"error: {e}")
        sys.exit(1)
