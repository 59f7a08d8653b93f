"""model_link_redaction.py: MLflow's own redactors (mlflow.server.auth), run on real
responses in a Flask request, with and without the precheck in front of them."""

import json
import types

import pytest
from flask import Response
from google.protobuf.json_format import MessageToJson
from mlflow.protos import service_pb2
from mlflow.server import app as flask_app
from mlflow.server import auth
from mlflow.utils.proto_json_utils import message_to_json

from mlflow_stack import model_link_redaction

PATHS = {
    "redact_search_runs_model_links": ("/api/2.0/mlflow/runs/search", "POST"),
    "redact_get_run_model_links": ("/api/2.0/mlflow/runs/get", "GET"),
    "redact_metric_history_model_ids": ("/api/2.0/mlflow/metrics/get-history", "GET"),
}


def run(index, *, model_input=False, model_output=False, metric_model_id=None):
    r = service_pb2.Run()
    r.info.run_id = r.info.run_uuid = f"run{index}"
    r.info.experiment_id = "1"
    r.info.start_time = 1700000000000 + index
    for k in range(3):
        r.data.params.add(key=f"p{k}", value=str(k))
        r.data.tags.add(key=f"t{k}", value="model_id")  # the name as a value is no link
        metric = r.data.metrics.add(key=f"m{k}", value=k / 3, timestamp=1, step=k)
        if metric_model_id is not None and k == 1:
            metric.model_id = metric_model_id
    if model_input:
        r.inputs.model_inputs.add(model_id="m-input")
    if model_output:
        r.outputs.model_outputs.add(model_id="m-output", step=0)
    return r


LINKS = {
    "none": {},
    "model input": {"model_input": True},
    "model output": {"model_output": True},
    "metric model_id": {"metric_model_id": "m-metric"},
    "metric model_id empty": {"metric_model_id": ""},
}


def response_message(redactor, links):
    if redactor == "redact_search_runs_model_links":
        message = service_pb2.SearchRuns.Response()
        message.runs.extend([run(i) for i in range(5)] + [run(5, **links)])
    elif redactor == "redact_get_run_model_links":
        message = service_pb2.GetRun.Response()
        message.run.CopyFrom(run(0, **links))
    else:
        message = service_pb2.GetMetricHistory.Response()
        message.metrics.extend(run(0, **links).data.metrics)
    return message


def mlflow_sees_links(message) -> bool:
    """What MLflow's redactors look for, read from the parsed message as they read it."""
    fields = message.DESCRIPTOR.fields_by_name
    runs = list(message.runs) if "runs" in fields else [message.run] if "run" in fields else []
    metrics = (list(message.metrics) if "metrics" in fields
               else [metric for r in runs for metric in r.data.metrics])
    return (any(r.inputs.model_inputs or r.outputs.model_outputs for r in runs)
            or any(metric.model_id for metric in metrics))


@pytest.fixture
def reader(monkeypatch):
    """Who asks: set .admin and .denied; MLflow's functions then answer for that reader."""
    who = types.SimpleNamespace(admin=False, denied=set(), parses=0)
    monkeypatch.setattr(auth, "sender_is_admin", lambda: who.admin)
    monkeypatch.setattr(auth, "authenticate_request",
                        lambda: types.SimpleNamespace(username="reader"))
    monkeypatch.setattr(auth, "_denied_sibling_tiers",
                        lambda username, tiers: {t for t in tiers if t in who.denied})
    parse_dict = auth.parse_dict

    def counting_parse_dict(*args, **kwargs):
        who.parses += 1
        return parse_dict(*args, **kwargs)

    monkeypatch.setattr(auth, "parse_dict", counting_parse_dict)
    return who


def redact(handler, redactor, body: str) -> bytes:
    path, method = PATHS[redactor]
    resp = Response(body, mimetype="application/json")
    with flask_app.test_request_context(path, method=method):
        handler(resp)
    return resp.get_data()


def test_the_link_fields_are_the_ones_in_mlflows_messages():
    fields = {
        service_pb2.RunInputs.DESCRIPTOR.fields_by_name["model_inputs"],
        service_pb2.RunOutputs.DESCRIPTOR.fields_by_name["model_outputs"],
        service_pb2.Metric.DESCRIPTOR.fields_by_name["model_id"],
    }
    assert {name for f in fields for name in (f.name, f.json_name)} == \
        model_link_redaction.LINK_FIELDS


@pytest.mark.parametrize("redactor", sorted(PATHS))
@pytest.mark.parametrize("links", sorted(LINKS))
@pytest.mark.parametrize("spelling", ["snake_case", "camelCase"])
def test_the_precheck_finds_every_link_mlflow_finds(redactor, links, spelling):
    message = response_message(redactor, LINKS[links])
    text = message_to_json(message) if spelling == "snake_case" else MessageToJson(message)
    expected = mlflow_sees_links(message)
    assert model_link_redaction.names_models(json.loads(text)) == expected
    if expected:  # the byte screen may only err towards MLflow's redactor
        assert model_link_redaction.may_name_models(text.encode())


def test_the_byte_screen_sends_escaped_text_to_the_json_check():
    escaped = b'{"runs": [{"outputs": {"model\\u005foutputs": [{"model_id": "x"}]}}]}'
    assert model_link_redaction.may_name_models(escaped)
    assert model_link_redaction.names_models(json.loads(escaped))
    assert not model_link_redaction.may_name_models(b'{"runs": [{"data": {}}]}')


def test_unexpected_shapes_go_to_mlflows_redactor():
    assert model_link_redaction.names_models({"run": {"outputs": {"model_outputs": {}}}})
    assert model_link_redaction.names_models({"metrics": [{"model_id": 7}]})
    assert not model_link_redaction.names_models({"metrics": [{"model_id": None}], "x": [[]]})


@pytest.mark.parametrize("redactor", sorted(PATHS))
@pytest.mark.parametrize("links", sorted(LINKS))
@pytest.mark.parametrize("who", ["admin", "reader allowed models", "reader denied models"])
def test_the_outcome_is_mlflows_and_the_parse_happens_only_when_it_can_matter(
        reader, redactor, links, who):
    reader.admin = who == "admin"
    reader.denied = {auth.RESOURCE_TYPE_LOGGED_MODEL} if who == "reader denied models" else set()
    message = response_message(redactor, LINKS[links])
    body = message_to_json(message)
    original = getattr(auth, redactor)

    mlflow_answer = redact(original, redactor, body)
    reader.parses = 0
    answer = redact(model_link_redaction.precheck(original, auth), redactor, body)

    assert answer == mlflow_answer
    can_change = who == "reader denied models" and mlflow_sees_links(message)
    assert (answer != body.encode()) == can_change  # MLflow withholds exactly then
    assert reader.parses == (1 if can_change else 0)


@pytest.mark.parametrize("redactor", sorted(PATHS))
def test_mlflow_still_parses_responses_that_name_no_model(reader, redactor):
    """When this fails, MLflow's redactors no longer pay for the parse: delete
    model_link_redaction.py and its line in app.py."""
    body = message_to_json(response_message(redactor, {}))
    assert redact(getattr(auth, redactor), redactor, body) == body.encode()
    assert reader.parses == 1, "MLflow no longer parses link-free responses; see the docstring"


def test_install_wraps_each_table_entry_once_and_uninstall_restores_them():
    tables = (auth.AFTER_REQUEST_HANDLERS, auth.PARAMETERIZED_AFTER_REQUEST_HANDLERS)
    before = [dict(table) for table in tables]
    redactors = {getattr(auth, name) for name in model_link_redaction.REDACTORS}
    expected = sum(handler in redactors for table in before for handler in table.values())
    try:
        # GetRun and SearchRuns under /api and /ajax-api, at least; metric history too.
        assert expected >= 5
        assert model_link_redaction.install() == expected
        assert model_link_redaction.install() == 0  # already wrapped
        for table, old in zip(tables, before):
            for key, handler in table.items():
                if old[key] in redactors:
                    assert handler is not old[key] and handler.__wrapped__ is old[key]
                else:
                    assert handler is old[key]
    finally:
        model_link_redaction.uninstall()
    assert [dict(table) for table in tables] == before


def test_the_redactors_are_registered_for_the_paths_mlflow_serves():
    for redactor, (path, method) in PATHS.items():
        assert auth.AFTER_REQUEST_HANDLERS[(path, method)] is getattr(auth, redactor)
        assert auth.AFTER_REQUEST_HANDLERS[("/ajax-api" + path.removeprefix("/api"), method)] \
            is getattr(auth, redactor)

