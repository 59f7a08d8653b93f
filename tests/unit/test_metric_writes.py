"""mlflow_stack.metric_writes: what it stands in for, and how it is put in place.
tests/e2e/test_23_metric_writes.py compares its rows with MLflow's on PostgreSQL."""

import ast
import hashlib
import inspect
import textwrap

import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_stack import metric_writes

# MLflow 3.17.2's code that metric_writes reproduces, by the shape of its syntax tree.
REPRODUCED = {
    "_log_metrics_once": "1d1445345b3551f8",
    "_update_latest_metrics_if_necessary": "192721f207fb2b03",
    "sanitize_metric_value": "89140e509c3d3a2a",
    "_log_metrics": "61a148889660518e",
    "log_batch": "06fe0c7a0dec48a9",
}


def _fingerprint(function) -> str:
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(function)))
    return hashlib.sha256(ast.dump(ast.parse(source)).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(REPRODUCED))
def test_mlflow_still_writes_metrics_the_way_metric_writes_reproduces(name):
    """When this fails, MLflow changed how it stores metrics: compare its new code with
    metric_writes.log_metrics_once (and the e2e cases), then update the fingerprint."""
    assert _fingerprint(getattr(SqlAlchemyStore, name)) == REPRODUCED[name]


@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setattr(SqlAlchemyStore, "_log_metrics_once", SqlAlchemyStore._log_metrics_once)
    monkeypatch.setattr(SqlAlchemyStore, "log_batch", SqlAlchemyStore.log_batch)
    originals = SqlAlchemyStore._log_metrics_once, SqlAlchemyStore.log_batch
    assert metric_writes.install()
    return originals


def test_install_replaces_the_methods_once(patched):
    replaced = SqlAlchemyStore._log_metrics_once, SqlAlchemyStore.log_batch
    for method, original in zip(replaced, patched):
        assert method is not original
        assert inspect.unwrap(method) is original
    assert metric_writes.install()
    assert (SqlAlchemyStore._log_metrics_once, SqlAlchemyStore.log_batch) == replaced


@pytest.mark.parametrize(("metrics", "params", "tags", "alone"), [
    ([Metric("m", 1.0, 1, 0)], [], [], True),
    ([], [], [], True),
    ([Metric("m", 1.0, 1, 0)], [Param("p", "v")], [], False),
    ([Metric("m", 1.0, 1, 0)], [], [RunTag("t", "v")], False),
    ([Metric("m", 1.0, 1, 0), Metric("m", 1.0, 1, 0, model_id="m-1")], [], [], False),
])
def test_only_batches_of_metrics_alone_skip_mlflows_first_run_check(metrics, params, tags,
                                                                    alone):
    assert metric_writes._metrics_alone(metrics, params, tags) is alone


def test_other_databases_keep_mlflows_writes(patched, tmp_path, monkeypatch):
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    ours = []
    monkeypatch.setattr(metric_writes, "log_metrics_once", lambda *args: ours.append(args))
    monkeypatch.setattr(metric_writes, "log_batch_of_metrics", lambda *args: ours.append(args))
    experiment_id = store.create_experiment("e")
    run = store.create_run(experiment_id, "u", 1, [], "r")
    store.log_batch(run.info.run_id, [Metric("m", 1.0, 1, 0), Metric("m", 2.0, 2, 1)], [], [])
    assert not ours
    assert store.get_run(run.info.run_id).data.metrics == {"m": 2.0}
    assert [r.info.run_id for r in store.search_runs([experiment_id], "metrics.m = 2", ViewType.ALL)] \
        == [run.info.run_id]
    store.engine.dispose()
