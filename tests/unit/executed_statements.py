"""The SQL an engine sends while a block runs, for tests that check a statement's shape."""

import contextlib

import sqlalchemy


@contextlib.contextmanager
def executed_statements(engine):
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sqlalchemy.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", record)
