"""Runs inside the mlflow container (python - < this file): lets MLflow's own store (with
the stack's search_distinct, as the server has it) build the statement of a first page of
runs for each order a laptop or the UI asks for, on the server's database, and prints one
JSON line per order with PostgreSQL's plan for that statement.

The plans are made with sorting switched off (`enable_sort`), which makes PostgreSQL avoid
a sort wherever an index can give the order: a Sort left in the plan means that no index
can, whatever the size of the table. That keeps the answer independent of how many runs
the test database holds and of its statistics."""

import json
import os
import pathlib
import time

import sqlalchemy
from mlflow.entities import ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow_stack import search_distinct

ORDERS = {
    "default": None,  # MlflowClient.search_runs without order_by
    "the runs page": ["attributes.start_time DESC"],  # what the UI always sends
}


def server_database():
    """The backend store URI and PGPASSFILE of the running `mlflow server`."""
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--backend-store-uri" not in argv:
                continue
            environ = dict(item.split(b"=", 1) for item in
                           (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except OSError:
            continue
        return (argv[argv.index(b"--backend-store-uri") + 1].decode(),
                environ[b"PGPASSFILE"].decode())
    raise SystemExit("no mlflow server process found")


def main():
    uri, os.environ["PGPASSFILE"] = server_database()
    search_distinct.install()
    store = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    experiment_id = store.create_experiment(f"search-plans-{time.time_ns()}")
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT runs.") and "ORDER BY" in statement:
            statements.append((statement, parameters))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", capture)
    for label, order_by in ORDERS.items():
        statements.clear()
        store.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY, max_results=100,
                          order_by=order_by)
        assert len(statements) == 1, (label, statements)
        statement, parameters = statements[0]
        connection = store.engine.raw_connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_sort = off")
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0][0]["Plan"]
            connection.rollback()
        finally:
            connection.close()
        print(json.dumps({"order": label, "statement": statement, "plan": plan}))


main()
