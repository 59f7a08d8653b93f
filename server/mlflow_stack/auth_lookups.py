"""Fewer database lookups in MLflow's permission checks, with the same answers.

Profiled under 16 concurrent log_batch clients (py-spy, docs/performance.md), MLflow's
basic-auth spent more of a worker's time than the log_batch itself, on two lookups:

- A run's experiment. Every run-scoped request (log_batch, log_metric, set_tag, get_run,
  metric history, ...) is resolved to the run's experiment with the tracking store's
  `get_run`, which loads the run with its params, tags, latest metrics and inputs: seven
  queries, to read one column. MLflow's auth module reads nothing of those runs but
  `run.info.experiment_id`, and a run never moves to another experiment, so the auth
  module's store answers `get_run` with one indexed query, remembered per worker. Only
  the auth module sees this store; MLflow's handlers keep the real one.
- The user. One request reads the same user row two or three times (`sender_is_admin`,
  then the permission resolution); it is read once per request now. Nothing is kept
  between requests, so an admin flag or a deleted user takes effect as before.

tests/unit/test_auth_lookups.py fails when MLflow's auth module starts reading more of a
run than its experiment id, or stops calling these (then this is no longer needed).
"""

import functools
import types

# Run ids are 32 hex characters; 100,000 of them with their experiment ids take ~15 MB.
MAX_REMEMBERED = 100_000


def _remembered(lookup, size: int = MAX_REMEMBERED):
    """run id -> experiment id, the least recently used forgotten first; a lookup that
    raises (a missing run) is not remembered."""
    return functools.lru_cache(maxsize=size)(lookup)


class _AuthTrackingStore:
    """The tracking store as MLflow's auth module sees it: `get_run` returns just the run's
    experiment id (as `run.info.experiment_id`); everything else is the real store's."""

    def __init__(self, store, experiment_of):
        self._store = store
        self._experiment_of = experiment_of

    def get_run(self, run_id):
        info = types.SimpleNamespace(run_id=run_id, experiment_id=self._experiment_of(run_id))
        return types.SimpleNamespace(info=info)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _experiment_of(store, run_id: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
    from mlflow.store.tracking.dbmodels.models import SqlRun

    with store.ManagedSessionMaker() as session:
        row = session.query(SqlRun.experiment_id).filter(SqlRun.run_uuid == run_id).one_or_none()
    if row is None:
        raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
    return str(row[0])


def _once_per_request(get_user):
    """store.get_user, remembered for the rest of the Flask request that asked."""
    import flask

    def get_user_once(username):
        if not flask.has_request_context():
            return get_user(username)
        users = flask.g.setdefault("_stack_users", {})
        if username not in users:
            users[username] = get_user(username)
        return users[username]

    return get_user_once


def install() -> bool:
    """Put both lookups in place; False (and nothing changed) when the tracking store is
    not MLflow's SQLAlchemy store."""
    import mlflow.server.auth as auth
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = auth._get_tracking_store()  # the worker's one store (a module-level singleton)
    if not isinstance(store, SqlAlchemyStore):
        return False
    lean = _AuthTrackingStore(store, _remembered(functools.partial(_experiment_of, store)))
    auth._get_tracking_store = lambda *args, **kwargs: lean
    auth.store.get_user = _once_per_request(auth.store.get_user)
    return True
