"""Runs inside the mlflow container (python - < this file): lets MLflow's own store (with
the stack's search_distinct, as the server has it) build the statement of a first page of
runs for each order a laptop or the UI asks for, on the server's database, and prints one
JSON line per order with PostgreSQL's plan for that statement.

The plans are made with sorting switched off (`enable_sort`), which makes PostgreSQL avoid
a sort wherever an index can give the order: a Sort left in the plan means that no index
can, whatever the size of the table. That keeps the answer independent of how many runs
the test database holds and of its statistics."""

import json
import shutil
import time

import sqlalchemy
from mlflow.entities import ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow_stack import search_distinct
from mlflow_stack.runtime_files import credential_files_for_this_process

ORDERS = {
    "default": None,  # MlflowClient.search_runs without order_by
    "the runs page": ["attributes.start_time DESC"],  # what the UI always sends
}


def main(settings):
    search_distinct.install()
    store = SqlAlchemyStore(settings.tracking_store_uri(), "mlflow-artifacts:/")
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


# The server's settings and this process's own copy of its credential files, as scripts/gc
# gets them.
settings, runtime_dir = credential_files_for_this_process("search-plans-probe")
try:
    main(settings)
finally:
    shutil.rmtree(runtime_dir, ignore_errors=True)
