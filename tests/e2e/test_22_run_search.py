"""Run searches on the stack's PostgreSQL give MLflow's answers: the server leaves out
MLflow's DISTINCT where no join can repeat a run (server/mlflow_stack/search_distinct.py),
so the order, the pages and the dataset filter that can repeat one are checked here. And
the stack's indexes (server/mlflow_stack/indexes.py) give a first page of runs in the
orders laptops and the UI ask for without sorting the experiment's runs."""

import json
import math
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

# m per run; None: the run has no m.
VALUES = [0.5, 0.2, float("nan"), None, 0.9, 0.2, 0.7, None]


@pytest.fixture(scope="module")
def searched(stack, admin):
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    mp.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
    client = MlflowClient(tracking_uri=stack.url)
    experiment_id = client.create_experiment(f"search-{time.time_ns()}")
    runs = []
    for i, value in enumerate(VALUES):
        run = client.create_run(experiment_id, start_time=1_700_000_000_000 + i * 1000,
                                run_name=f"run-{i}")
        metrics = [] if value is None else [Metric("m", value, 1_700_000_000_000, 0)]
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param("p", str(i % 3))],
                         tags=[RunTag("t", f"v{i % 2}")])
        runs.append(run.info.run_id)
    # Two datasets of one name on one run: filtering on the name joins that run twice.
    client.log_inputs(runs[1], datasets=[
        DatasetInput(Dataset("eval", digest, "code", "{}"),
                     [InputTag("mlflow.data.context", "eval")]) for digest in ("d1", "d2")])
    yield client, experiment_id, runs
    mp.undo()


def _ids(page):
    return [run.info.run_id for run in page]


def test_ordered_by_a_metric_values_first_then_nan_then_missing(searched):
    client, experiment_id, runs = searched
    # MLflow's order: values high to low, then NaN, then runs without the metric; ties by
    # newest start time, then run id.
    def key(i):
        value = VALUES[i]
        rank = 2 if value is None else 1 if math.isnan(value) else 0
        return rank, -(value or 0) if rank == 0 else 0, -i

    expected = [runs[i] for i in sorted(range(len(VALUES)), key=key)]
    found = _ids(client.search_runs([experiment_id], order_by=["metrics.m DESC"]))
    assert found == expected


def test_pages_of_a_metric_ordering_join_up_without_gaps_or_repeats(searched):
    client, experiment_id, runs = searched
    whole = _ids(client.search_runs([experiment_id], order_by=["metrics.m ASC", "params.p DESC"]))
    pages, token = [], None
    while True:
        page = client.search_runs([experiment_id], order_by=["metrics.m ASC", "params.p DESC"],
                                  max_results=3, page_token=token)
        pages += _ids(page)
        token = page.token
        if not token:
            break
    assert pages == whole
    assert sorted(whole) == sorted(runs)


def test_filters_on_metrics_params_and_tags(searched):
    client, experiment_id, runs = searched
    found = _ids(client.search_runs(
        [experiment_id], "metrics.m > 0.3 and params.p != '1' and tags.t = 'v0'"))
    assert found == [runs[6], runs[0]]


def test_a_dataset_filter_finds_a_run_with_two_matching_datasets_once(searched):
    client, experiment_id, runs = searched
    assert _ids(client.search_runs([experiment_id], "dataset.name = 'eval'")) == [runs[1]]


PLANS_PROBE = Path(__file__).with_name("search_plans_probe.py")


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture(scope="module")
def plans(stack):
    out = stack.exec("mlflow", "python", "-", input=PLANS_PROBE.read_text())
    return {line["order"]: line for line in map(json.loads, out.strip().splitlines())}


@pytest.mark.parametrize("order", ["default", "the runs page"])
def test_a_first_page_of_runs_is_read_from_an_index_without_sorting(plans, order):
    """Without one of server/mlflow_stack/indexes.py's indexes for this order, every first
    page of a big experiment sorts all its runs (125 ms at 100,000 runs instead of 0.1 ms).
    A failure here after an MLflow upgrade means MLflow changed how it orders runs: make
    the index match the statement printed."""
    nodes = list(_nodes(plans[order]["plan"]))
    sorts = [n["Node Type"] for n in nodes if "Sort" in n["Node Type"]]
    indexes = [n.get("Index Name") for n in nodes if n["Node Type"].startswith("Index")]
    assert not sorts and any(name and name.startswith("stack_runs_") for name in indexes), (
        f"{order}: {sorts} {indexes}\n{plans[order]['statement']}\n"
        f"{json.dumps(plans[order]['plan'], indent=1)[:3000]}")
