"""Glue that turns `mlflow server` into the stack's tracking service."""


class StackError(Exception):
    """A problem the operator must fix; its message says what and how."""
