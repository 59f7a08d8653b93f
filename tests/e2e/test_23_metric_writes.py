"""The stack's metric writes on PostgreSQL (server/mlflow_stack/metric_writes.py) store the
same rows and raise the same errors as MLflow's own, batch for batch, on the stack's
database, both for the writes alone and through the whole log_batch: repeats, older
points, NaN and infinities, one key several times in a batch, a thousand points, an
invalid point, a deleted run, a missing run."""

import json
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("metric_writes_probe.py")


@pytest.fixture(scope="module")
def cases(stack):
    out = stack.exec("mlflow", "python", "-", input=PROBE.read_text())
    return {(case["level"], case["case"]): case
            for case in map(json.loads, out.strip().splitlines())}


LEVELS = ["_log_metrics_once", "log_batch"]
NAMES = ["steps, a repeat and an older point", "one key several times in a batch",
         "NaN, zero and infinities", "empty batch", "a thousand points", "an invalid point",
         "a deleted run", "a missing run"]


@pytest.mark.parametrize("level", LEVELS)
def test_every_case_ran(cases, level):
    assert len(cases) == len(LEVELS) * len(NAMES), sorted(cases)
    assert cases[level, "a thousand points"]["mlflow"]["metrics"], "the probe wrote nothing"
    assert cases[level, "an invalid point"]["mlflow"]["errors"]
    for name in ("a deleted run", "a missing run"):  # a batch of one point, then an empty one
        assert len(cases[level, name]["mlflow"]["errors"]) == 2, name


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", NAMES)
def test_the_stack_writes_what_mlflow_writes(cases, level, name):
    case = cases[level, name]
    assert case["stack"] == case["mlflow"]
