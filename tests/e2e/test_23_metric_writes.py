"""The stack's metric writes on PostgreSQL (server/mlflow_stack/metric_writes.py) store the
same rows and raise the same errors as MLflow's own, batch for batch, on the stack's
database: repeats, older points, NaN and infinities, one key several times in a batch,
a thousand points, an invalid point, a deleted run."""

import json
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("metric_writes_probe.py")


@pytest.fixture(scope="module")
def cases(stack):
    out = stack.exec("mlflow", "python", "-", input=PROBE.read_text())
    return {case["case"]: case for case in map(json.loads, out.strip().splitlines())}


def test_every_case_ran(cases):
    assert len(cases) == 7, sorted(cases)
    assert cases["a thousand points"]["mlflow"]["metrics"], "the probe wrote nothing"
    assert cases["an invalid point"]["mlflow"]["errors"]
    assert cases["a deleted run"]["mlflow"]["errors"]


@pytest.mark.parametrize("name", [
    "steps, a repeat and an older point", "one key several times in a batch",
    "NaN, zero and infinities", "empty batch", "a thousand points", "an invalid point",
    "a deleted run"])
def test_the_stack_writes_what_mlflow_writes(cases, name):
    case = cases[name]
    assert case["stack"] == case["mlflow"]
