"""MLflow's redaction of logged-model links, skipped when it could not change the response.

Why: for every reader but an admin, MLflow's basic-auth app passes each GetRun, SearchRuns
and GetMetricHistory response through an after-request redactor (mlflow/server/auth,
`redact_get_run_model_links`, `redact_search_runs_model_links`,
`redact_metric_history_model_ids`). It withholds links to logged models the reader may
not see: a run's model inputs and outputs, a metric's `model_id`. Each redactor first
parses the whole JSON response back into protobuf (`parse_dict`), and only then checks
whether anything names a logged model and whether the reader is denied logged models;
when either answer is no, the response is left as it was. With MLflow's default READ
permission the answer is always no, yet the parse ran on every response: 51 ms of CPU
for a page of 100 runs (10 params, 10 metrics, 5 tags each) in the mlflow container,
and a team member's 100-run search took 56-80 ms longer than the admin's at p50.

Here each of those redactors runs only when it could change the response: when something
in it names a logged model (first its bytes, then, if they hold a candidate field, its
JSON), and the reader is neither an admin nor allowed to see logged models by MLflow's own
check (`_denied_sibling_tiers`, the one the redactors make). Otherwise the response is left
unchanged without the parse, which is what MLflow's redactor would have done. A response
with something to withhold goes through MLflow's redactor exactly as before.

No upstream issue for this was found. tests/unit/test_model_link_redaction.py runs
MLflow's own redactors to check that the outcome is the same for admins, readers allowed
and denied logged models, with and without links, and fails when MLflow stops parsing
responses that name no model (then this module can go) or changes the check it makes.
"""

import functools
import logging

# The fields MLflow's three redactors read or clear (run.inputs.model_inputs,
# run.outputs.model_outputs, metric.model_id), under both names `parse_dict` accepts.
LINK_FIELDS = frozenset({"model_inputs", "modelInputs", "model_outputs", "modelOutputs",
                         "model_id", "modelId"})
_LINK_BYTES = tuple(name.encode() for name in LINK_FIELDS)
# MLflow's after-request handlers, by (path, method): exact paths, then path patterns.
TABLES = ("AFTER_REQUEST_HANDLERS", "PARAMETERIZED_AFTER_REQUEST_HANDLERS")
REDACTORS = ("redact_get_run_model_links", "redact_search_runs_model_links",
             "redact_metric_history_model_ids")
_MARK = "_mlflow_stack_link_precheck"


def may_name_models(body: bytes) -> bool:
    """False only when the JSON text cannot hold a link field: none of the names appears,
    and no \\u escape could spell one."""
    return b"\\u" in body or any(name in body for name in _LINK_BYTES)


def names_models(document) -> bool:
    """Whether any object in the JSON document has a link field that `parse_dict` would set
    to something non-empty. Any value but null, "" and [] counts, so an unexpected shape
    sends the response to MLflow's redactor."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in LINK_FIELDS and item not in (None, "", []):
                    return True
                if isinstance(item, (dict, list)):
                    pending.append(item)
        elif isinstance(value, list):
            pending.extend(item for item in value if isinstance(item, (dict, list)))
    return False


def reader_sees_models(auth) -> bool:
    """MLflow's own gate in these redactors: an admin, or logged models not denied."""
    if auth.sender_is_admin():
        return True
    tier = auth.RESOURCE_TYPE_LOGGED_MODEL
    return tier not in auth._denied_sibling_tiers(auth.authenticate_request().username, (tier,))


def could_redact(resp, auth) -> bool:
    if not may_name_models(resp.get_data()):
        return False
    document = resp.get_json(silent=True)
    if isinstance(document, dict) and not names_models(document):
        return False
    return not reader_sees_models(auth)


def precheck(redactor, auth):
    @functools.wraps(redactor)
    def redact_if_needed(resp):
        if could_redact(resp, auth):
            return redactor(resp)
        return None

    setattr(redact_if_needed, _MARK, redactor)
    return redact_if_needed


def install() -> int:
    """Wrap MLflow's three redactors wherever its after-request tables hold them; returns
    how many table entries were wrapped (0: already wrapped, or MLflow changed)."""
    from mlflow.server import auth

    needed = ("sender_is_admin", "authenticate_request", "_denied_sibling_tiers",
              "RESOURCE_TYPE_LOGGED_MODEL", *TABLES, *REDACTORS)
    present = all(hasattr(auth, name) for name in needed)
    originals = {getattr(auth, name) for name in REDACTORS} if present else set()
    wrapped = already = 0
    for table in _tables(auth) if present else ():
        for key, handler in table.items():
            if handler in originals:
                table[key] = precheck(handler, auth)
                wrapped += 1
            elif hasattr(handler, _MARK):
                already += 1
    if not (wrapped or already):
        logging.getLogger(__name__).warning(
            "MLflow's basic-auth app changed: its model-link redaction parses every response "
            "as before (mlflow_stack/model_link_redaction.py)")
    return wrapped


def uninstall() -> None:
    from mlflow.server import auth

    for table in _tables(auth):
        for key, handler in table.items():
            original = getattr(handler, _MARK, None)
            if original is not None:
                table[key] = original


def _tables(auth) -> list[dict]:
    return [getattr(auth, name) for name in TABLES]
