"""mlflow_stack.eager_loading against MLflow's own stores (on SQLite): every answer the same
with and without it, the tags loaded with `IN (...)`, and a signal when MLflow changes."""

import pytest
import sqlalchemy
from mlflow.entities import ExperimentTag, ViewType
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

from mlflow_stack import eager_loading

from .executed_statements import executed_statements


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("eager_loading")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = TrackingStore(uri, str(root / "artifacts"))
    registry = RegistryStore(uri)
    for i in range(7):
        experiment_id = tracking.create_experiment(
            f"exp-{i}", tags=[ExperimentTag(f"k{j}", f"v{i}-{j}") for j in range(i % 3)])
        if i == 4:
            tracking.set_experiment_tag(experiment_id, ExperimentTag("late", "x"))
    for i in range(4):
        name = f"model-{i}"
        registry.create_registered_model(
            name, tags=[RegisteredModelTag(f"k{j}", str(j)) for j in range(i % 3)])
        for version in range(1, 4):
            registry.create_model_version(
                name, f"mlflow-artifacts:/m{i}/{version}", run_id=None,
                tags=[ModelVersionTag("v", str(version))] if version != 2 else [])
        registry.set_registered_model_alias(name, "champion", "3")
        if i % 2:
            registry.set_registered_model_alias(name, "challenger", "1")
    yield tracking, registry
    eager_loading.uninstall()
    tracking.engine.dispose()
    registry.engine.dispose()


def _answers(tracking, registry):
    experiments = []
    token = None
    while True:  # pages of two: the LIMIT is where the two loaders differ
        page = tracking.search_experiments(ViewType.ALL, max_results=2, page_token=token)
        experiments += [(e.experiment_id, e.name, e.tags) for e in page]
        token = page.token
        if not token:
            break
    return {
        "experiments": experiments,
        "one": tracking.get_experiment(
            next(id_ for id_, name, _ in experiments if name == "exp-4")).tags,
        "by_name": tracking.get_experiment_by_name("exp-5").tags,
        "models": [(m.name, m.tags, m.aliases) for m in registry.search_registered_models(
            max_results=3)],
        "model": (lambda m: (m.tags, m.aliases))(registry.get_registered_model("model-3")),
        "versions": sorted((v.name, v.version, v.tags, v.aliases)
                           for v in registry.search_model_versions("name LIKE 'model-%'")),
        "version": registry.get_model_version("model-1", "3").tags,
        "alias": registry.get_model_version_by_alias("model-1", "challenger").version,
    }


def _statements(engine, action):
    with executed_statements(engine) as statements:
        action()
    return [" ".join(statement.split()) for statement in statements]


def test_every_answer_is_unchanged(stores):
    tracking, registry = stores
    eager_loading.uninstall()
    mlflows = _answers(tracking, registry)
    assert eager_loading.install() == 3
    assert _answers(tracking, registry) == mlflows
    assert mlflows["one"] == {"k0": "v4-0", "late": "x"}
    assert mlflows["models"][1][2] == {"champion": 3, "challenger": 1}


def test_the_tags_are_loaded_by_parent_ids(stores):
    tracking, registry = stores
    eager_loading.install()
    experiment = _statements(tracking.engine, lambda: tracking.search_experiments(max_results=1))
    tag_loads = [s for s in experiment if "FROM experiment_tags" in s]
    assert len(tag_loads) == 1 and "experiment_tags.experiment_id IN (" in tag_loads[0]
    model = _statements(registry.engine, lambda: registry.get_registered_model("model-1"))
    assert any("FROM registered_model_aliases" in s and " IN (" in s for s in model)
    assert not [s for s in experiment + model if "anon_1" in s], "a subquery load remains"


def test_install_is_idempotent_and_reversible(stores):
    eager_loading.install()
    assert eager_loading.install() == 3
    eager_loading.uninstall()
    options = TrackingStore._get_eager_experiment_query_options()
    assert dict(options[0].context[0].strategy) == {"lazy": "subquery"}


def test_mlflow_still_loads_these_with_subqueryload():
    """Fails when MLflow changes these option lists: when it loads them with selectinload
    itself, mlflow_stack/eager_loading.py can go."""
    eager_loading.uninstall()
    for cls, name in eager_loading._eager_methods():
        converted = eager_loading.as_selectin(getattr(cls, name)())
        assert converted, f"{cls.__name__}.{name} no longer returns only subqueryloads"


def test_anything_but_a_one_step_subqueryload_is_left_alone():
    from mlflow.store.tracking.dbmodels.models import SqlExperiment

    assert eager_loading.as_selectin([sqlalchemy.orm.joinedload(SqlExperiment.tags)]) is None
    assert eager_loading.as_selectin([sqlalchemy.orm.selectinload(SqlExperiment.tags)]) is None
    assert eager_loading.as_selectin([]) == []
