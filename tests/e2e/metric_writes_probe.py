"""Runs inside the mlflow container (python - < this file): writes the same batches of
metrics into two runs each on the server's database, once at the level of
`_log_metrics_once` (MLflow's own against the stack's `metric_writes.log_metrics_once`)
and once through the whole `log_batch` (MLflow's, then the stack's with
`metric_writes.install()`), and prints one JSON line per case and level with both runs'
rows and errors."""

import json
import math
import random
import shutil
import time
import uuid

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow_stack import metric_writes
from mlflow_stack.runtime_files import credential_files_for_this_process
from sqlalchemy import text


def m(key, value, timestamp, step):
    return Metric(key, value, timestamp, step)


def cases():
    nan, inf = float("nan"), float("inf")
    rng = random.Random(7)
    big = [m(f"k{rng.randrange(100)}", rng.choice([rng.random(), nan, inf, -inf, 0.5]),
             rng.randrange(1, 4), rng.randrange(0, 4)) for _ in range(1000)]
    return {
        "steps, a repeat and an older point": [
            [m(f"m{k}", k / 10, 1000, 0) for k in range(10)],
            [m(f"m{k}", k / 10 + 1, 2000, 1) for k in range(10)],
            [m(f"m{k}", k / 10 + 1, 2000, 1) for k in range(10)],
            [m(f"m{k}", 99.0, 3000, 0) for k in range(10)],
        ],
        "one key several times in a batch": [
            [m("a", 1.0, 5, 2), m("a", 3.0, 5, 2), m("a", 2.0, 9, 1), m("a", 3.0, 5, 2),
             m("a", 3.0, 4, 2)],
            [m("a", 3.0, 5, 2), m("a", 2.5, 6, 2)],
        ],
        "NaN, zero and infinities": [
            # Equal (step, timestamp, value) twice: the first stays the latest.
            [m("b", nan, 1, 0), m("b", 0.0, 1, 0), m("b", nan, 1, 0)],
            [m("d", 0.0, 1, 0), m("d", nan, 1, 0)],
            [m("b", inf, 1, 1), m("b", -inf, 1, 1)],
            [m("c", -inf, 1, 0)],
            [m("c", nan, 1, 0), m("c", nan, 2, 0)],
        ],
        "empty batch": [[]],
        "a thousand points": [big, list(reversed(big))],
        "an invalid point": [[m("ok", 1.0, 1, 0), Metric("bad", "x", 1, 0)]],
        "a deleted run": "deleted",
        "a missing run": "missing",
    }


def rows(store, run_id):
    with store.engine.connect() as conn:
        metrics = conn.execute(text(
            "SELECT key, timestamp, step, value, is_nan FROM metrics WHERE run_uuid = :r "
            "ORDER BY key, timestamp, step, value, is_nan"), {"r": run_id}).all()
        latest = conn.execute(text(
            "SELECT key, timestamp, step, value, is_nan FROM latest_metrics "
            "WHERE run_uuid = :r ORDER BY key"), {"r": run_id}).all()
    return {"metrics": [list(r) for r in metrics], "latest": [list(r) for r in latest]}


def write(store, experiment_id, name, batches, log):
    run_id = store.create_run(experiment_id, "probe", int(time.time() * 1000), [], name).info.run_id
    errors = []
    if batches == "deleted":
        store.delete_run(run_id)
        batches = [[m("x", 1.0, 1, 0)], []]
    elif batches == "missing":
        run_id = uuid.uuid4().hex
        batches = [[m("x", 1.0, 1, 0)], []]
    for batch in batches:
        try:
            log(store, run_id, batch)
        except MlflowException as e:
            errors.append([e.error_code, e.message.replace(run_id, "<run>")])
    return {**rows(store, run_id), "errors": errors}


def main(settings):
    # The server's own artifact root (it serves artifacts), so that scripts/gc treats the
    # probe's deleted run like any other.
    store = SqlAlchemyStore(settings.tracking_store_uri(), "mlflow-artifacts:/")
    assert store._get_dialect() == "postgresql"
    mlflows_own = SqlAlchemyStore._log_metrics_once
    experiment_id = store.create_experiment(f"metric-writes-probe-{time.time_ns()}")

    def whole_batch(store, run_id, batch):
        store.log_batch(run_id, batch, [], [])

    levels = {
        "_log_metrics_once": {
            "mlflow": lambda store, run_id, batch: store._run_with_deadlock_retry(
                mlflows_own, store, run_id, batch),
            "stack": lambda store, run_id, batch: store._run_with_deadlock_retry(
                metric_writes.log_metrics_once, store, run_id, batch),
        },
        # The same call on both sides: MLflow's log_batch first, then the stack's, put in
        # place by install() below.
        "log_batch": {"mlflow": whole_batch, "stack": whole_batch},
    }
    results = {}
    for side in ("mlflow", "stack"):
        if side == "stack":
            assert metric_writes.install()
        for level, log in levels.items():
            for name, batches in cases().items():
                results.setdefault((level, name), {})[side] = write(
                    store, experiment_id, name, batches, log[side])
    for (level, name), sides in results.items():
        print(json.dumps({"level": level, "case": name, **sides},
                         default=lambda v: None if isinstance(v, float) and math.isnan(v)
                         else str(v)))


# The server's settings and this process's own copy of its credential files, as scripts/gc
# gets them.
settings, runtime_dir = credential_files_for_this_process("metric-writes-probe")
try:
    main(settings)
finally:
    shutil.rmtree(runtime_dir, ignore_errors=True)
