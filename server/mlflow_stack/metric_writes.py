"""A batch of metrics written in two statements on PostgreSQL, with MLflow's results.

MLflow 3.17.2's `SqlAlchemyStore._log_metrics_once` (every log_batch and log_metric) writes
through the ORM: it reads which `latest_metrics` keys the run has, reads those rows again
`FOR UPDATE`, adds each point as an ORM object, compares each with the latest value in
Python and flushes; a point that was already logged fails the whole flush, which is rolled
back and repeated without it. Profiled with py-spy (`--gil`) under 16 log_batch clients
this was 35% of a worker's CPU, the largest single cost of a request.

On PostgreSQL the same rows are written here with two statements:

- `INSERT INTO metrics ... ON CONFLICT DO NOTHING`: a point already stored (same key,
  timestamp, step, value and NaN flag, MLflow's primary key) is skipped, as MLflow's retry
  skips it;
- `INSERT INTO latest_metrics ... ON CONFLICT (key, run_uuid) DO UPDATE ... WHERE` the new
  (step, timestamp, value) is greater than the stored one: MLflow's `_compare_metrics`,
  applied to the batch's newest point per key (the first of equal ones, as MLflow's loop
  keeps it). The upsert locks the row it compares, as MLflow's `FOR UPDATE` did.

What stays MLflow's: validation and its messages, the removal of repeated points, the
NaN and infinity encoding (`sanitize_metric_value`), the check that the run exists and is
active, locking keys in sorted order, and the deadlock retry around this method. Other
databases keep MLflow's method.

A `log_batch` of metrics alone (no params, tags or model metrics: a training loop's
calls) checks the run once. MLflow's `log_batch` loads the run and checks that it is active
in a session of its own, which it keeps open while `_log_metrics` opens a second session
and checks the same run again before writing: per call two pool checkouts (each with its
`SELECT 1` ping), two ORM loads of the run and two transactions, 14 statements in all
with the admin's user row. Here the batch is validated as MLflow's `log_batch` validates
it and goes straight to `_log_metrics`, whose check in the writing transaction raises the
same errors for a missing or deleted run. Any other batch is MLflow's.

tests/unit/test_metric_writes.py fails when MLflow changes the methods this stands in
for; tests/e2e/test_23_metric_writes.py writes the same batches both ways on the stack's
PostgreSQL and compares every row and error.
"""

import functools

_MARK = "_mlflow_stack_metric_writes"


def log_metrics_once(store, run_id, metrics) -> None:
    from mlflow.utils.validation import _validate_metric

    points, seen = [], set()
    single = len(metrics) == 1
    for index, metric in enumerate(metrics):
        _validate_metric(metric.key, metric.value, metric.timestamp, metric.step,
                         path="" if single else f"metrics[{index}]")
        if metric not in seen:
            is_nan, value = store.sanitize_metric_value(metric.value)
            points.append({"run_uuid": run_id, "key": metric.key, "value": value,
                           "timestamp": metric.timestamp, "step": metric.step,
                           "is_nan": is_nan})
        seen.add(metric)
    newest = {}
    for point in points:
        kept = newest.get(point["key"])
        if kept is None or _order(point) > _order(kept):
            newest[point["key"]] = point

    with store.ManagedSessionMaker(read_only=False) as session:
        store._check_run_is_active(store._get_run(run_uuid=run_id, session=session))
        if not points:
            return
        insert_points, upsert_latest = _statements()
        # Sorted by key, like MLflow's locking order, so two batches of one run cannot
        # deadlock on each other's rows.
        points.sort(key=lambda p: p["key"])
        session.execute(insert_points, points)
        session.execute(upsert_latest, [newest[key] for key in sorted(newest)])


def log_batch_of_metrics(store, run_id, metrics) -> None:
    """MLflow's `log_batch(run_id, metrics, [], [])` for metrics without a model, with the
    run checked once, in the transaction that writes."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
    from mlflow.store.tracking import sqlalchemy_store

    sqlalchemy_store._validate_run_id(run_id)
    metrics, params, tags = sqlalchemy_store._validate_batch_log_data(metrics, [], [])
    sqlalchemy_store._validate_batch_log_limits(metrics, params, tags)
    try:
        store._log_metrics(run_id, metrics)
    except MlflowException:
        raise
    except Exception as e:
        raise MlflowException(e, INTERNAL_ERROR) from e


def _metrics_alone(metrics, params, tags) -> bool:
    return not params and not tags and all(m.model_id is None for m in metrics)


@functools.cache
def _statements():
    """Built once per process: building them took a sixth of this module's time."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
    from sqlalchemy.dialects.postgresql import insert

    latest = insert(SqlLatestMetric.__table__)
    stored = SqlLatestMetric.__table__.c
    upsert_latest = latest.on_conflict_do_update(
        index_elements=[stored.key, stored.run_uuid],
        set_={name: latest.excluded[name] for name in ("value", "timestamp", "step", "is_nan")},
        where=sqlalchemy.tuple_(latest.excluded.step, latest.excluded.timestamp,
                                latest.excluded.value)
        > sqlalchemy.tuple_(stored.step, stored.timestamp, stored.value))
    return insert(SqlMetric.__table__).on_conflict_do_nothing(), upsert_latest


def _order(point) -> tuple:
    return point["step"], point["timestamp"], point["value"]


def install() -> bool:
    """Route the SQLAlchemy store's metric writes through log_metrics_once, and its batches
    of metrics alone through log_batch_of_metrics, on PostgreSQL. False when MLflow's store
    no longer has the methods this replaces."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    original = getattr(SqlAlchemyStore, "_log_metrics_once", None)
    original_batch = getattr(SqlAlchemyStore, "log_batch", None)
    if original is None or original_batch is None:
        return False
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    def _log_metrics_once(self, run_id, metrics):
        if self._get_dialect() != "postgresql":
            return original(self, run_id, metrics)
        return log_metrics_once(self, run_id, metrics)

    @functools.wraps(original_batch)
    def log_batch(self, run_id, metrics, params, tags):
        if self._get_dialect() != "postgresql" or not _metrics_alone(metrics, params, tags):
            return original_batch(self, run_id, metrics, params, tags)
        return log_batch_of_metrics(self, run_id, metrics)

    for replacement in (_log_metrics_once, log_batch):
        setattr(replacement, _MARK, True)
    SqlAlchemyStore._log_metrics_once = _log_metrics_once
    SqlAlchemyStore.log_batch = log_batch
    return True
