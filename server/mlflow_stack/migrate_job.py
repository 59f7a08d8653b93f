"""One-shot migration job of the Helm chart (charts/mlflow-stack, templates/migrate-job.yaml).

With several server replicas nobody may migrate at start: two pods would race on
`mlflow db upgrade` and on creating the admin account. This job does what a Compose
start does before serving (both schemas, the stack's accounts, the search indexes, and
re-encrypting stored secrets after a key rotation), once per install or upgrade; the
replicas run with MLFLOW_MIGRATIONS=job and wait until it is done (serve.py).

Run inside the server image: python -m mlflow_stack.migrate_job
"""

import os
import sys
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.dependencies import wait_for_postgres
from mlflow_stack.encryption_keys import prepare_encryption
from mlflow_stack.runtime_files import use_credential_files
from mlflow_stack.secret_files import read_secrets
from mlflow_stack.serve import log, migrate
from mlflow_stack.settings import Settings


def main() -> None:
    settings = Settings.from_env(os.environ)
    secrets_dir = Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow"))
    secrets = read_secrets(secrets_dir)
    use_credential_files(Path(os.environ.get("RUNTIME_DIR", "/run/mlflow")), settings, secrets)
    os.environ["MODELS_PASSWORD_FILE"] = str(secrets_dir / "models_password")
    wait_for_postgres(settings, log)
    migrate(settings, secrets)
    prepare_encryption(settings, secrets_dir)
    log("migration job done: schemas, accounts, indexes and encrypted secrets are current")


if __name__ == "__main__":
    try:
        main()
    except StackError as e:
        log(f"error: {e}")
        sys.exit(1)
