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
import time
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.databases import ensure_indexes, pending_work
from mlflow_stack.dependencies import postgres_connection, wait_for_bucket, wait_for_postgres
from mlflow_stack.encryption_keys import prepare_encryption
from mlflow_stack.runtime_files import use_credential_files
from mlflow_stack.secret_files import read_secrets
from mlflow_stack.settings import MODELS_USERNAME, Settings

# MLflow's basic-auth app with streamed artifact downloads (mlflow_stack/app.py).
APP_NAME = "stack-basic-auth"


def log(message: str) -> None:
    print(f"mlflow-entrypoint: {message}", file=sys.stderr, flush=True)


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
    accounts = stack_accounts(settings, secrets)
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


def stack_accounts(settings: Settings, secrets: dict[str, str]) -> dict[str, str]:
    return {settings.admin_username: secrets["admin_password"],
            MODELS_USERNAME: secrets["models_password"]}


def _pending_or_reason(connect, accounts: dict[str, str]) -> list[str]:
    try:
        return pending_work(connect, accounts)
    except Exception as e:  # noqa: BLE001 - e.g. the job is creating a table right now
        first_line = (str(e).strip().splitlines() or [""])[0]
        return [f"cannot check yet ({type(e).__name__}: {first_line})"]


def wait_for_migration_job(settings: Settings, secrets: dict[str, str]) -> None:
    """With several replicas (Helm chart) a one-shot job migrates, once per install or
    upgrade (mlflow_stack.migrate_job); every replica waits here until it is done."""
    connect = functools.partial(postgres_connection, settings)
    accounts = stack_accounts(settings, secrets)
    deadline = time.monotonic() + settings.startup_timeout_seconds
    reported = None
    while pending := _pending_or_reason(connect, accounts):
        if pending != reported:
            log(f"waiting for the migration job: {'; '.join(pending)}")
            reported = pending
        if time.monotonic() > deadline:
            raise StackError(
                f"the migration job did not finish within {settings.startup_timeout_seconds} s "
                f"(still pending: {'; '.join(pending)}). Read its log: kubectl logs "
                "job/<release>-migrate-<revision>; MLFLOW_STARTUP_TIMEOUT sets the wait."
            )
        time.sleep(1)
    log("both database schemas and the stack's accounts are current (migrated by the job)")


def main() -> None:
    settings = Settings.from_env(os.environ)
    secrets_dir = Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow"))
    secrets = read_secrets(secrets_dir)
    runtime_dir = Path(os.environ.get("RUNTIME_DIR", "/run/mlflow"))
    # From here on this process's environment is the server's; the clients used for
    # waiting (libpq, boto3) read the same credential files.
    use_credential_files(runtime_dir, settings, secrets)
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
    state_dir = Path(os.environ.get("STATE_DIR", "/run/mlflow-state"))
    # Each worker writes its request metrics here (metrics.py); values from a previous
    # start would otherwise be summed into this one's.
    metrics_dir = state_dir / "metrics"
    try:
        for stale in state_dir.glob("login-limit.sqlite*"):
            stale.unlink()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700)
    except OSError as e:
        raise StackError(
            f"cannot prepare {metrics_dir} ({e.strerror}): docker-compose.yml mounts a "
            f"tmpfs at {state_dir} for the mlflow service; start it with docker compose up -d."
        ) from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = str(settings.db_pool_size)
    os.environ["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] = str(settings.db_max_overflow)
    # MLflow's job engines: "executor" runs each job (GenAI scorers, prompt optimisation)
    # as a subprocess when one is queued; Huey keeps a consumer process per job type
    # running: ~2 s of CPU each at every start and ~235 MB each while idle (the idle
    # container: 2.2 GiB with Huey, 1.2 GiB without).
    if settings.job_engine == "executor":
        os.environ["MLFLOW_SERVER_JOB_EXECUTION_ENGINE"] = "executor"
    else:
        os.environ.pop("MLFLOW_SERVER_JOB_EXECUTION_ENGINE", None)  # MLflow's default: Huey
    if settings.job_runner == "elsewhere":
        # MLflow starts a job runner in every server, and each one that starts puts the
        # jobs running in all the others back to PENDING, so they run twice
        # (_recover_orphaned_executor_jobs in mlflow/server/jobs/_executor_runner.py). With
        # replicas only one server runs jobs; the others start none, yet queue jobs
        # (app.py turns submitting back on in the workers).
        os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        os.environ["MLFLOW_STACK_SUBMIT_JOBS"] = "true"

    wait_for_postgres(settings, log)
    wait_for_bucket(settings, log)
    if settings.migrations == "job":
        wait_for_migration_job(settings, secrets)
    else:
        migrate(settings, secrets)
    # The admin now exists with the secret's password (checked above), which is what
    # `mlflow server --app-name basic-auth` makes sure of once before it starts the workers;
    # it then sets this so that no worker repeats the bootstrap: two scrypt checks, ~0.3 s
    # of CPU per worker at every start. The secrets job refuses MLflow's legacy default
    # admin password, the one thing the skipped check warns about for the stack's admin.
    os.environ["_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED"] = "true"
    # Read after the database checks, which name a wrong password before anything else.
    os.environ.update(prepare_encryption(settings, secrets_dir))

    command = server_command(settings, f"s3://{settings.bucket}/artifacts")
    log(f"starting mlflow server with {settings.workers} workers ({settings.db_pool_size} + "
        f"{settings.db_max_overflow} database connections each), job engine "
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
