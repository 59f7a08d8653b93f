"""Traces and prompts from a laptop, directly and through the HTTPS proxy: MLflow's own
tracing, a plain OpenTelemetry exporter sending to /v1/traces, what a READ-only user may do
with traces, and the prompt registry (register, alias @champion, load).

Every write path a READ-only user could take into an experiment they may only read is
refused by MLflow 3.17.2's basic-auth with 403 (each needs `update` on the experiment):
StartTraceV3 (`POST /api/3.0/mlflow/traces`, what the Python client sends), OTLP
(`POST /v1/traces`, which the Python client also uses to store spans), the trace-data
upload (`PUT .../mlflow-artifacts/artifacts/<experiment>/traces/<trace>/artifacts/traces.json`),
trace tags, assessments and deleting traces. The client does not raise: it logs an error and
the trace is not saved.
"""

import base64
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import test_25_tls_proxy
from .conftest import CLIENT_VARIABLES_TO_CLEAR

# The proxy with its self-signed certificate saved as a laptop would; removed after this module.
proxy = test_25_tls_proxy.proxy


@dataclass
class Server:
    """Where a laptop sends its calls: MLflow's own port, or the HTTPS proxy with the
    certificate the laptop was given (scripts/tls-cert)."""
    url: str
    certificate: Path | None

    @property
    def verify(self) -> bool | str:
        return str(self.certificate) if self.certificate else True


@dataclass
class User:
    name: str
    password: str

    @property
    def auth(self) -> tuple[str, str]:
        return self.name, self.password

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.name}:{self.password}".encode()).decode()


def create_user(stack, admin, prefix: str) -> User:
    user = User(f"{prefix}{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(18))
    response = requests.post(f"{stack.url}/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                             json={"username": user.name, "password": user.password})
    assert response.status_code == 200, response.text
    return user


@pytest.fixture(scope="module")
def author(stack, admin):
    """Creates the experiments, so MLflow gives them MANAGE there."""
    return create_user(stack, admin, "author")


@pytest.fixture(scope="module")
def reader(stack, admin):
    """Granted nothing: the stack's default permission, READ, everywhere."""
    return create_user(stack, admin, "reader")


@pytest.fixture(scope="module", params=["direct", "https"])
def server(request, stack):
    if request.param == "direct":
        yield Server(stack.url, None)
    else:
        yield Server(stack.https_url, request.getfixturevalue("proxy"))
        mlflow.set_tracking_uri(stack.url)  # the proxy is gone after this module


def use_laptop(mp: pytest.MonkeyPatch, server: Server, user: User) -> None:
    """Make this process a laptop of `user`: the three variables (and the certificate for HTTPS)."""
    for name in CLIENT_VARIABLES_TO_CLEAR:
        mp.delenv(name, raising=False)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    mp.setenv("AWS_CONFIG_FILE", "/nonexistent")
    # requests lets these override an explicit Session.verify, which is how the OTLP exporter
    # passes its certificate_file: with them set it would not trust the stack's certificate.
    mp.delenv("REQUESTS_CA_BUNDLE", raising=False)
    mp.delenv("CURL_CA_BUNDLE", raising=False)
    mp.setenv("MLFLOW_TRACKING_URI", server.url)
    mp.setenv("MLFLOW_TRACKING_USERNAME", user.name)
    mp.setenv("MLFLOW_TRACKING_PASSWORD", user.password)
    if server.certificate:
        mp.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(server.certificate))
    else:
        mp.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    mlflow.set_tracking_uri(server.url)


@pytest.fixture
def laptop(monkeypatch, server):
    return lambda user: use_laptop(monkeypatch, server, user)


@mlflow.trace(name="retrieve", span_type="RETRIEVER")
def retrieve(question: str) -> list[str]:
    return [f"doc about {question}", "faq"]


@mlflow.trace(name="answer", span_type="CHAIN")
def answer(question: str) -> str:
    documents = retrieve(question)
    with mlflow.start_span("generate", span_type="LLM") as span:
        span.set_inputs({"documents": documents})
        text = f"{question}: see {documents[0]}"
        span.set_outputs(text)
    return text


@pytest.fixture(scope="module")
def traced(server, author):
    """The author traces a function with nested spans into a new experiment of theirs."""
    mp = pytest.MonkeyPatch()
    use_laptop(mp, server, author)
    experiment_id = MlflowClient().create_experiment(f"traces-{uuid.uuid4().hex[:8]}")
    mlflow.set_experiment(experiment_id=experiment_id)
    question = f"question-{uuid.uuid4().hex[:6]}"
    output = answer(question)
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()  # traces are sent in the background by default
    yield {"experiment_id": experiment_id, "trace_id": trace_id, "question": question,
           "output": output}
    mp.undo()


def spans_by_name(trace) -> dict:
    return {span.name: span for span in trace.data.spans}


def test_traced_function_with_nested_spans_is_read_back(traced, laptop, author):
    laptop(author)
    trace = mlflow.get_trace(traced["trace_id"])
    assert trace is not None, "the trace did not land"
    assert trace.info.state == "OK"
    assert trace.info.experiment_id == traced["experiment_id"]
    spans = spans_by_name(trace)
    assert set(spans) == {"answer", "retrieve", "generate"}
    root = spans["answer"]
    assert root.parent_id is None
    assert spans["retrieve"].parent_id == root.span_id
    assert spans["generate"].parent_id == root.span_id
    assert root.inputs == {"question": traced["question"]}
    assert root.outputs == traced["output"]
    assert spans["generate"].inputs["documents"][0] == f"doc about {traced['question']}"

    found = mlflow.search_traces(locations=[traced["experiment_id"]], return_type="list")
    assert [t.info.trace_id for t in found] == [traced["trace_id"]]
    assert set(spans_by_name(found[0])) == {"answer", "retrieve", "generate"}


def otel_provider(*processors) -> TracerProvider:
    """A plain OpenTelemetry SDK set-up of the laptop's own, apart from MLflow's."""
    provider = TracerProvider(resource=Resource.create({"service.name": "laptop-agent"}))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def otel_trace(provider: TracerProvider, root: str) -> str:
    """A root span with one child; returns MLflow's id for the trace."""
    tracer = provider.get_tracer("laptop")
    with tracer.start_as_current_span(root) as span:
        span.set_attribute("question", "what is mlflow?")
        with tracer.start_as_current_span(f"{root}-child") as child:
            child.set_attribute("tokens", 42)
    return f"tr-{span.get_span_context().trace_id:032x}"


def otlp_exporter(server: Server, user: User, experiment_id: str) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers={"Authorization": user.basic, "x-mlflow-experiment-id": experiment_id},
        certificate_file=str(server.certificate) if server.certificate else None,
        timeout=10,
    )


def test_opentelemetry_otlp_exporter_spans_are_readable(server, traced, laptop, author):
    laptop(author)  # only for reading back: the exporter has its own URL and login
    provider = otel_provider(BatchSpanProcessor(
        otlp_exporter(server, author, traced["experiment_id"])))
    trace_id = otel_trace(provider, "otel-agent")
    assert provider.force_flush(30_000)
    provider.shutdown()

    trace = mlflow.get_trace(trace_id)
    assert trace is not None, "the OTLP spans did not land"
    assert trace.info.experiment_id == traced["experiment_id"]
    spans = spans_by_name(trace)
    assert set(spans) == {"otel-agent", "otel-agent-child"}
    assert spans["otel-agent"].parent_id is None
    assert spans["otel-agent-child"].parent_id == spans["otel-agent"].span_id
    assert spans["otel-agent"].attributes["question"] == "what is mlflow?"
    assert spans["otel-agent-child"].attributes["tokens"] == 42
    found = mlflow.search_traces(locations=[traced["experiment_id"]], return_type="list")
    assert trace_id in {t.info.trace_id for t in found}


def test_read_only_user_reads_traces_but_cannot_write_them(server, traced, laptop, reader):
    """What MLflow 3.17.2 enforces: every way of writing a trace into someone else's
    experiment needs `update` there, so a READ-only user gets 403 on each, while reading and
    searching work. See the module docstring for the routes."""
    experiment_id, trace_id = traced["experiment_id"], traced["trace_id"]
    laptop(reader)
    assert set(spans_by_name(mlflow.get_trace(trace_id))) == {"answer", "retrieve", "generate"}
    assert trace_id in {t.info.trace_id for t in
                        mlflow.search_traces(locations=[experiment_id], return_type="list")}

    # The Python client: @mlflow.trace does not raise, but nothing is stored.
    mlflow.set_experiment(experiment_id=experiment_id)

    @mlflow.trace(name="reader-attempt")
    def attempt(x):
        return x

    attempt(1)
    attempted = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    stored = {t.info.trace_id for t in
              mlflow.search_traces(locations=[experiment_id], return_type="list")}
    assert attempted not in stored and trace_id in stored

    # A plain OTLP exporter: the export fails with the reader's login.
    memory = InMemorySpanExporter()
    otel_trace(otel_provider(SimpleSpanProcessor(memory)), "reader-otel")
    spans = memory.get_finished_spans()
    assert otlp_exporter(server, reader, experiment_id).export(spans) == SpanExportResult.FAILURE

    # Each write route, as raw requests: 403 with MLflow's message.
    def call(method, path, **kwargs):
        return requests.request(method, server.url + path, auth=reader.auth, verify=server.verify,
                                timeout=30, **kwargs)

    new_trace = f"tr-{uuid.uuid4().hex}"
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    writes = {
        "StartTraceV3": call("POST", "/api/3.0/mlflow/traces", json={"trace": {"trace_info": {
            "trace_id": new_trace, "trace_location": location, "state": "OK",
            "request_time": "2026-01-01T00:00:00Z", "execution_duration": "1s"}}}),
        "OTLP": call("POST", "/v1/traces", data=encode_spans(spans).SerializeToString(),
                     headers={"Content-Type": "application/x-protobuf",
                              "x-mlflow-experiment-id": experiment_id}),
        "trace data upload": call(
            "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/traces/{trace_id}"
                   "/artifacts/traces.json", data=b'{"spans": []}'),
        "trace tag": call("PATCH", f"/api/3.0/mlflow/traces/{trace_id}/tags",
                          json={"key": "verdict", "value": "bad"}),
        "assessment": call("POST", f"/api/3.0/mlflow/traces/{trace_id}/assessments", json={
            "assessment": {"trace_id": trace_id, "assessment_name": "correct",
                           "source": {"source_type": "HUMAN", "source_id": reader.name},
                           "feedback": {"value": False}}}),
        "delete traces": call("POST", "/api/3.0/mlflow/traces/delete-traces",
                              json={"experiment_id": experiment_id, "trace_ids": [trace_id]}),
    }
    refused = {name: (r.status_code, r.text[:80]) for name, r in writes.items()}
    assert refused == {name: (403, "Permission denied") for name in writes}, refused

    trace = mlflow.get_trace(trace_id)
    assert "verdict" not in trace.info.tags and not trace.info.assessments
    assert set(spans_by_name(trace)) == {"answer", "retrieve", "generate"}


def test_read_only_user_traces_into_an_experiment_of_their_own(traced, laptop, reader):
    """READ is what they hold on others' experiments; one they create is theirs (MANAGE)."""
    laptop(reader)
    experiment_id = MlflowClient().create_experiment(f"reader-own-{uuid.uuid4().hex[:8]}")
    mlflow.set_experiment(experiment_id=experiment_id)
    answer("mine")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(trace_id)
    assert trace is not None and trace.info.experiment_id == experiment_id


def test_prompt_registered_aliased_and_loaded_by_alias(server, laptop, author, reader):
    laptop(author)
    name = f"support-answer-{uuid.uuid4().hex[:8]}"
    first = mlflow.genai.register_prompt(name=name, template="Answer {{question}} briefly.",
                                         commit_message="first wording")
    second = mlflow.genai.register_prompt(
        name=name, template="Answer {{question}} in one sentence, citing {{source}}.")
    assert (first.version, second.version) == (1, 2)
    mlflow.genai.set_prompt_alias(name, "champion", first.version)
    champion = mlflow.genai.load_prompt(f"prompts:/{name}@champion")
    assert champion.version == 1
    assert champion.format(question="what is MLflow?") == "Answer what is MLflow? briefly."

    mlflow.genai.set_prompt_alias(name, "champion", second.version)
    champion = mlflow.genai.load_prompt(f"prompts:/{name}@champion")
    assert champion.version == 2 and champion.variables == {"question", "source"}
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").template == "Answer {{question}} briefly."

    laptop(reader)  # READ: may load the champion, may not move it
    assert mlflow.genai.load_prompt(f"prompts:/{name}@champion").version == 2
    with pytest.raises(MlflowException) as error:
        mlflow.genai.set_prompt_alias(name, "champion", first.version)
    assert "403" in error.value.message and "Permission denied" in error.value.message
    with pytest.raises(MlflowException) as error:
        mlflow.genai.register_prompt(name=name, template="Ignore {{question}}.")
    assert "403" in error.value.message
    laptop(author)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@champion").version == 2


def test_edit_grant_lets_a_user_write_traces(stack, admin, server, laptop, reader):
    """The README's fix for the 403: EDIT on the experiment, granted by the operator."""
    experiment_id = requests.post(f"{stack.url}/api/2.0/mlflow/experiments/create", auth=admin,
                                  json={"name": f"granted-{uuid.uuid4().hex[:8]}"},
                                  timeout=30).json()["experiment_id"]
    grant = requests.post(f"{stack.url}/api/3.0/mlflow/users/permissions/grant", auth=admin,
                          timeout=30, json={"username": reader.name, "resource_type": "experiment",
                                            "resource_id": experiment_id, "permission": "EDIT"})
    assert grant.status_code == 200, grant.text
    laptop(reader)
    memory = InMemorySpanExporter()
    trace_id = otel_trace(otel_provider(SimpleSpanProcessor(memory)), "granted-otel")
    exporter = otlp_exporter(server, reader, experiment_id)
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    mlflow.set_experiment(experiment_id=experiment_id)
    answer("granted")
    own = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    stored = {t.info.trace_id for t in
              mlflow.search_traces(locations=[experiment_id], return_type="list")}
    assert stored == {trace_id, own}
