"""Run searches without a DISTINCT that cannot remove anything.

MLflow 3.17.2's `SqlAlchemyStore._search_runs` makes every run search `SELECT DISTINCT`.
Only one kind of join in that statement can repeat a run: a dataset filter
(`datasets.name = ...`), joined through `inputs`, where a run may have several matching
inputs. Every other join is a subquery of `latest_metrics`, `params` or `tags` filtered to
one key, and those tables have one row per run and key (their primary keys), so each joins
at most one row to a run. Without a dataset filter DISTINCT removes nothing, but it still
makes PostgreSQL sort every run of the experiment on all of its columns before the LIMIT:
100,000 runs ordered by a metric took 218 ms (an external merge sort on disk) where the
same statement without DISTINCT took 89 ms (a top-N heapsort keeping 101 rows).

This removes DISTINCT from run searches whose every table other than `runs` is read in a
subquery of one of those three tables that keeps one key, and leaves every other statement
as MLflow built it. The fix belongs in MLflow (DISTINCT only when a dataset filter is
joined); no upstream issue for it was found. tests/unit/test_search_distinct.py runs
MLflow's own store to check that results are unchanged, that a dataset filter keeps
DISTINCT, and fails when MLflow stops adding it (then this module can go).
"""

import sqlalchemy
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter

_ONE_ROW_PER_RUN_AND_KEY = frozenset({"latest_metrics", "params", "tags"})
_installed = False


def is_needless_run_distinct(statement) -> bool:
    """A plain DISTINCT over whole runs, where every table but `runs` is read in a
    subquery of one of latest_metrics, params or tags that keeps one key (`key = ...`)."""
    from mlflow.store.tracking.dbmodels.models import SqlRun

    if not isinstance(statement, sqlalchemy.Select):
        return False
    if not statement._distinct or statement._distinct_on:
        return False
    descriptions = statement.column_descriptions
    if not descriptions or descriptions[0].get("expr") is not SqlRun:
        return False
    return _only_runs_and_one_key_subqueries(statement, statement)


def _only_runs_and_one_key_subqueries(element, statement) -> bool:
    if isinstance(element, sqlalchemy.Select) and element is not statement:
        return _keeps_one_key_of_one_table(element)
    if isinstance(element, sqlalchemy.Table) and element.name != "runs":
        return False  # joined directly: as many rows per run as the table has
    return all(_only_runs_and_one_key_subqueries(child, statement)
               for child in element.get_children())


def _keeps_one_key_of_one_table(select) -> bool:
    tables = {element.name for element in visitors.iterate(select)
              if isinstance(element, sqlalchemy.Table)}
    keyed = tables & _ONE_ROW_PER_RUN_AND_KEY
    if len(keyed) != 1 or tables - keyed - {"runs"}:
        return False
    return select.whereclause is not None and any(
        _is_key_equality(element, *keyed) for element in visitors.iterate(select.whereclause))


def _is_key_equality(element, table: str) -> bool:
    """`<table>.key = <value>`."""
    if not isinstance(element, BinaryExpression) or element.operator is not operators.eq:
        return False
    sides = [side._deannotate() for side in (element.left, element.right)]
    return any(isinstance(column, sqlalchemy.Column) and column.name == "key"
               and column.table.name == table and isinstance(other, BindParameter)
               for column, other in (sides, sides[::-1]))


def _without_needless_distinct(orm_execute_state) -> None:
    statement = orm_execute_state.statement
    if orm_execute_state.is_select and getattr(statement, "_distinct", False) \
            and is_needless_run_distinct(statement):
        # Select has no public way to undo .distinct(); _generate() is the copy it makes
        # itself before every change.
        plain = statement._generate()
        plain._distinct = False
        orm_execute_state.statement = plain


def install() -> None:
    """For every ORM session of this process (MLflow's stores make their own)."""
    global _installed
    if not _installed:
        sqlalchemy.event.listen(Session, "do_orm_execute", _without_needless_distinct)
        _installed = True


def uninstall() -> None:
    global _installed
    if _installed:
        sqlalchemy.event.remove(Session, "do_orm_execute", _without_needless_distinct)
        _installed = False
