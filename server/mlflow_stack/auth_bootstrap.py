"""Prepare the auth database before any server worker starts (run by databases.py).

Migrates it (workers would otherwise race to do so on a fresh install) and makes the
stack's own accounts match the secret files: the admin, and the non-admin account the
models job logs in with. Each is created on first start, and its password reset when the
operator rotated it in .env. The secret files are the one source of truth, so
`scripts/credentials` always prints a password that works.

Needs MLFLOW_AUTH_CONFIG_PATH and MODELS_PASSWORD_FILE.
"""

import os
import sys
from pathlib import Path

from mlflow.server.auth.config import read_auth_config
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

from mlflow_stack.settings import MODELS_USERNAME


def ensure_account(store: SqlAlchemyStore, username: str, password: str, is_admin: bool) -> None:
    role = "admin" if is_admin else "user"
    if not store.has_user(username):
        store.create_user(username, password, is_admin=is_admin)
        print(f"auth: created {role} '{username}'")
    elif not store.authenticate_user(username, password):
        store.update_user(username, password=password, is_admin=is_admin)
        print(f"auth: {role} '{username}' password reset to the one in the secrets volume")


def main() -> int:
    config = read_auth_config()
    store = SqlAlchemyStore()
    store.init_db(config.database_uri)
    ensure_account(store, config.admin_username, config.admin_password, is_admin=True)
    models_password = Path(os.environ["MODELS_PASSWORD_FILE"]).read_text()
    ensure_account(store, MODELS_USERNAME, models_password, is_admin=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
