"""Bring both databases to this MLflow version before any server worker starts.

serve.py first asks `pending_work()`, which needs only psycopg2 and werkzeug: are the
tracking and auth schemas at this MLflow's heads (read from the image, where the Dockerfile
wrote them with MLflow's own code), and do the admin and models accounts exist with the
passwords in the secret files? On a restart of a current stack nothing is pending, and the
start skips a second Python process that imports MLflow (~3 s of the 15 s budget,
docs/performance.md). Otherwise `python -m mlflow_stack.databases` does the work with
MLflow's own code: `mlflow db upgrade`'s path for the tracking schema, then the auth
database and accounts (auth_bootstrap.py). `ensure_indexes()` runs on every start.

Usage: python -m mlflow_stack.databases TRACKING_DATABASE_URI
       python -m mlflow_stack.databases --write-heads FILE   (at image build time)
"""

import json
import sys
from pathlib import Path

from mlflow_stack import indexes

HEADS_FILE = Path("/opt/mlflow/schema-heads.json")
TRACKING_VERSION_TABLE = "alembic_version"
AUTH_VERSION_TABLE = "alembic_version_auth"


def schema_heads() -> dict[str, str]:
    """This MLflow's head revisions, computed by MLflow's own code (build time)."""
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_config as auth_alembic_config
    from mlflow.store.db.utils import _get_latest_schema_revision

    auth = ScriptDirectory.from_config(auth_alembic_config("")).get_current_head()
    return {"tracking": _get_latest_schema_revision(), "auth": auth}


def _revision(connection, table: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (table,))
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT version_num FROM {table}")  # noqa: S608 - a fixed name
        row = cursor.fetchone()
        return row[0] if row else None


def pending_work(connect, accounts: dict[str, str], heads_file: Path = HEADS_FILE) -> list[str]:
    """What the slow path must do; empty when both schemas and accounts are current.

    connect(dbname) opens a psycopg2 connection; accounts maps user name -> password.
    """
    from werkzeug.security import check_password_hash

    try:
        heads = json.loads(heads_file.read_text())
    except (OSError, ValueError):
        return [f"no schema heads in {heads_file}"]
    pending = []
    with connect("mlflow") as connection:
        current = _revision(connection, TRACKING_VERSION_TABLE)
        if current != heads["tracking"]:
            pending.append(f"tracking schema {current or 'empty'} -> {heads['tracking']}")
    with connect("mlflow_auth") as connection:
        current = _revision(connection, AUTH_VERSION_TABLE)
        if current != heads["auth"]:
            pending.append(f"auth schema {current or 'empty'} -> {heads['auth']}")
        else:
            with connection.cursor() as cursor:
                for username, password in accounts.items():
                    cursor.execute("SELECT password_hash FROM users WHERE username = %s",
                                   (username,))
                    row = cursor.fetchone()
                    if row is None:
                        pending.append(f"account '{username}' to create")
                    elif not check_password_hash(row[0], password):
                        pending.append(f"account '{username}' password to reset")
    return pending


def migrate_tracking(uri: str) -> None:
    """The same code path as `mlflow db upgrade URI`, skipped when already current."""
    from mlflow.db import upgrade
    from mlflow.store.db.utils import (
        _get_latest_schema_revision,
        _get_schema_version,
        create_sqlalchemy_engine_with_retry,
    )

    engine = create_sqlalchemy_engine_with_retry(uri)
    try:
        current, head = _get_schema_version(engine), _get_latest_schema_revision()
    finally:
        engine.dispose()
    if current == head:
        print(f"databases: tracking schema is current ({head})", flush=True)
        return
    print(f"databases: migrating the tracking schema from {current or 'empty'} to {head}",
          flush=True)
    upgrade.callback(uri)


def ensure_indexes(connect) -> None:
    with connect("mlflow") as connection:
        indexes.ensure(connection)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write-heads"]:
        Path(argv[1]).write_text(json.dumps(schema_heads()) + "\n")
        return 0
    (uri,) = argv
    migrate_tracking(uri)
    from mlflow_stack import auth_bootstrap  # imports MLflow's auth app: slow path only

    return auth_bootstrap.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
