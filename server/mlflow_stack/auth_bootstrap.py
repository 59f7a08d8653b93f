"""Prepare the auth database before any server worker starts (run by serve.py).

Migrates it (workers would otherwise race to do so on a fresh install) and makes the
admin account match the secret file: created on first start, and its password reset
when the operator rotated MLFLOW_ADMIN_PASSWORD in .env. The secret file is the one
source of truth, so `scripts/credentials` always prints a password that works.

Usage: python -m mlflow_stack.auth_bootstrap  (needs MLFLOW_AUTH_CONFIG_PATH)
"""

import sys

from mlflow.server.auth.config import read_auth_config
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore


def main() -> int:
    config = read_auth_config()
    store = SqlAlchemyStore()
    store.init_db(config.database_uri)
    username, password = config.admin_username, config.admin_password
    if not store.has_user(username):
        store.create_user(username, password, is_admin=True)
        print(f"auth: created admin user '{username}'")
    elif not store.authenticate_user(username, password):
        store.update_user(username, password=password, is_admin=True)
        print(f"auth: admin '{username}' password reset to the one in the secrets volume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
