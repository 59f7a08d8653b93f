"""mlflow_stack.search_distinct against MLflow's own SQLAlchemy store (on SQLite): the same
runs in the same order with and without it, and DISTINCT kept where a run can repeat."""

import math

import pytest
import sqlalchemy
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_stack import search_distinct

from .executed_statements import executed_statements

SEARCHES = [
    ("", None),
    ("", ["metrics.m DESC"]),
    ("", ["metrics.m ASC", "params.p DESC"]),
    ("", ["tags.t ASC"]),
    ("metrics.m > 0.1", ["metrics.m DESC"]),
    ("metrics.m > 0.1 and metrics.m < 0.9 and params.p != 'x'", None),
    ("tags.t LIKE 'v%'", ["attributes.start_time ASC"]),
    ("attributes.run_name = 'run-3'", None),
    ("tags.t IS NULL", None),
    ("params.p IS NOT NULL", ["params.p ASC"]),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_distinct")
    store = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))
    experiment_id = store.create_experiment("search")
    values = [0.5, 0.2, float("nan"), None, 0.9, 0.2, 0.7]
    for i, value in enumerate(values):
        run = store.create_run(experiment_id, "tester", 1_000 + i, [], f"run-{i}")
        metrics = [] if value is None else [Metric("m", value, 1_000 + i, 0)]
        store.log_batch(run.info.run_id, metrics=metrics,
                        params=[Param("p", "abcdefg"[i % 3])] if i != 4 else [],
                        tags=[RunTag("t", f"v{i % 2}")])
    # Two datasets of the same name on one run: a filter on the name joins that run twice.
    twice = store.search_runs([experiment_id], "attributes.run_name = 'run-1'", ViewType.ALL)[0]
    store.log_inputs(twice.info.run_id, datasets=[
        DatasetInput(Dataset("eval", digest, "code", "{}"),
                     [InputTag("mlflow.data.context", "eval")])
        for digest in ("d1", "d2")])
    store.experiment_id = experiment_id
    store.twice = twice.info.run_id
    yield store
    search_distinct.uninstall()
    store.engine.dispose()


def _search(store, filter_string, order_by):
    with executed_statements(store.engine) as executed:
        runs = store.search_runs([store.experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                 max_results=4, order_by=order_by)
    statements = [s for s in executed if "FROM runs" in s and "LIMIT" in s]
    assert len(statements) == 1, statements
    distinct = statements[0].lstrip().startswith("SELECT DISTINCT")
    metrics = [r.data.metrics.get("m") for r in runs]
    return [r.info.run_id for r in runs], ["nan" if m is not None and math.isnan(m) else m
                                           for m in metrics], distinct


def test_mlflow_still_makes_every_run_search_distinct(store):
    """When this fails MLflow dropped the needless DISTINCT itself: search_distinct can go."""
    search_distinct.uninstall()
    for filter_string, order_by in SEARCHES:
        assert _search(store, filter_string, order_by)[2], (filter_string, order_by)


@pytest.mark.parametrize(("filter_string", "order_by"), SEARCHES)
def test_searches_find_the_same_runs_in_the_same_order_without_distinct(
        store, filter_string, order_by):
    search_distinct.uninstall()
    ids, metrics, _ = _search(store, filter_string, order_by)
    search_distinct.install()
    plain_ids, plain_metrics, distinct = _search(store, filter_string, order_by)
    assert not distinct
    assert (plain_ids, plain_metrics) == (ids, metrics)
    assert ids or filter_string


def test_a_dataset_filter_keeps_distinct_and_finds_the_run_once(store):
    search_distinct.install()
    ids, _, distinct = _search(store, "dataset.name = 'eval'", None)
    assert distinct
    assert ids == [store.twice]


def test_other_statements_are_left_alone(store):
    from mlflow.store.tracking.dbmodels.models import SqlParam, SqlRun, SqlTag
    from sqlalchemy.orm import Session

    session = Session()
    runs = sqlalchemy.select(SqlRun)
    one_key = session.query(SqlTag).filter(SqlTag.key == "t").subquery()
    assert search_distinct.is_needless_run_distinct(runs.outerjoin(one_key).distinct())
    for statement in (
        runs,  # not DISTINCT
        sqlalchemy.select(SqlRun.experiment_id).distinct(),  # not whole runs
        runs.join(SqlTag).distinct(),  # every tag of a run
        runs.join(session.query(SqlTag).filter(SqlTag.value == "t").subquery()).distinct(),
        runs.join(session.query(SqlTag).filter(SqlTag.key.like("t%")).subquery()).distinct(),
        runs.join(session.query(SqlTag).join(SqlParam, SqlParam.run_uuid == SqlTag.run_uuid)
                  .filter(SqlTag.key == "t").subquery()).distinct(),
    ):
        assert not search_distinct.is_needless_run_distinct(statement), str(statement)
