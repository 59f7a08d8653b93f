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

This removes DISTINCT from run searches whose every table is one of those four, and
leaves every other statement as MLflow built it. The fix belongs in MLflow (DISTINCT only
when a dataset filter is joined); no upstream issue for it was found.
tests/unit/test_search_distinct.py runs MLflow's own store to check that results are
unchanged, that a dataset filter keeps DISTINCT, and fails when MLflow stops adding it
(then this module can go).
"""

import sqlalchemy
from sqlalchemy.orm import Session
from sqlalchemy.sql import visitors

_ONE_ROW_PER_RUN_AND_KEY = frozenset({"latest_metrics", "params", "tags"})
_installed = False


def _tables(statement) -> set[str]:
    return {
        element.name for element in visitors.iterate(statement)
        if isinstance(element, sqlalchemy.Table)
    }


def is_needless_run_distinct(statement) -> bool:
    """A plain DISTINCT over whole runs joined only to tables with one row per run and key."""
    from mlflow.store.tracking.dbmodels.models import SqlRun

    if not isinstance(statement, sqlalchemy.Select):
        return False
    if not statement._distinct or statement._distinct_on:
        return False
    descriptions = statement.column_descriptions
    if not descriptions or descriptions[0].get("expr") is not SqlRun:
        return False
    tables = _tables(statement)
    return SqlRun.__tablename__ in tables and tables <= _ONE_ROW_PER_RUN_AND_KEY | {
        SqlRun.__tablename__}


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
