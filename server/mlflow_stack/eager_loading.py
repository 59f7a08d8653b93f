"""Experiments, registered models and model versions load their tags with selectinload.

MLflow 3.17.2 loads these collections eagerly with `subqueryload`: an experiment's tags
(every `get_experiment`, `get_experiment_by_name`, `search_experiments`), a registered
model's tags and aliases, and a model version's tags (every registry read, `@champion`
resolution included). SQLAlchemy's subquery loader re-runs the parent query as a
subquery and builds and adapts that statement again on every call; its selectin loader
runs `... WHERE parent_id IN (...)` from a statement it caches. Both fill the same
collections (SQLAlchemy's documentation recommends selectin over subquery loading; the
subquery loader can even fill collections from different parents when a LIMIT has no
total order). Measured in the mlflow container on the stack's PostgreSQL:
`search_experiments(max_results=1)` took 5.4 ms of CPU with subqueryload and 3.9 ms with
selectinload, about a tenth of the CPU of a trivial authenticated call.

The fix belongs in MLflow (selectinload in these three option lists); no upstream issue
for it was found. tests/unit/test_eager_loading.py checks on MLflow's own stores that
every answer is unchanged and that the tags are loaded with `IN (...)`, and fails when
MLflow stops using subqueryload here (then this module can go).
"""

import logging

from sqlalchemy.orm import selectinload

_REPLACED = {}  # (class, method name) -> MLflow's staticmethod


def _eager_methods():
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    return [
        (TrackingStore, "_get_eager_experiment_query_options"),
        (RegistryStore, "_get_eager_registered_model_query_options"),
        (RegistryStore, "_get_eager_model_version_query_options"),
    ]


def as_selectin(options) -> list | None:
    """The same relationships loaded with selectinload; None when an option is anything
    but a one-step subqueryload (MLflow changed: leave its options alone)."""
    converted = []
    for option in options:
        contexts = getattr(option, "context", ())
        if len(contexts) != 1:
            return None
        (context,) = contexts
        if dict(context.strategy or ()) != {"lazy": "subquery"} or len(context.path) != 3:
            return None
        parent, relationship, _ = context.path
        converted.append(selectinload(getattr(parent.class_, relationship.key)))
    return converted


def install() -> int:
    """Replace each option list that is still all subqueryloads; returns how many were."""
    for cls, name in _eager_methods():
        if (cls, name) in _REPLACED:
            continue
        converted = as_selectin(getattr(cls, name)())
        if not converted:
            logging.getLogger(__name__).warning(
                "MLflow's %s.%s no longer returns subqueryload options; left as it is "
                "(mlflow_stack/eager_loading.py)", cls.__name__, name)
            continue
        _REPLACED[(cls, name)] = cls.__dict__[name]
        setattr(cls, name, staticmethod(lambda converted=converted: list(converted)))
    return len(_REPLACED)


def uninstall() -> None:
    while _REPLACED:
        (cls, name), original = _REPLACED.popitem()
        setattr(cls, name, original)
