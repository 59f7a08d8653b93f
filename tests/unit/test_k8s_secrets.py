"""The Helm chart's secrets job: which keys it keeps, generates or refuses.

The real Kubernetes API is exercised by tests/k8s; here only the decisions."""

import base64

import pytest

from mlflow_stack import StackError
from mlflow_stack.k8s_secrets import complete, ensure_secret

KEYS = ["admin_password", "flask_secret_key", "webhook_encryption_key"]


def test_missing_keys_are_generated_and_present_ones_kept():
    stored = {"admin_password": "a-strong-operator-password"}
    added, report = complete("ns/s", stored, KEYS, generate=True)
    assert set(added) == {"flask_secret_key", "webhook_encryption_key"}
    assert len(added["flask_secret_key"]) == 64
    assert len(base64.urlsafe_b64decode(added["webhook_encryption_key"])) == 32
    assert report == ["admin_password: kept", "flask_secret_key: generated",
                      "webhook_encryption_key: generated"]
    # Nothing secret in the report.
    assert not any(v in line for v in added.values() for line in report)


def test_a_weak_operator_value_is_refused_with_the_key_and_secret_named():
    with pytest.raises(StackError, match="key admin_password of Secret ns/s has 5 characters"):
        complete("ns/s", {"admin_password": "short"}, KEYS, generate=True)


def test_an_operator_secret_missing_keys_is_named_not_filled():
    with pytest.raises(StackError, match="lacks flask_secret_key, webhook_encryption_key"):
        complete("ns/s", {"admin_password": "a-strong-operator-password"}, KEYS, generate=False)


class RecordingApi:
    """Stands in for the API server's Secret endpoints only."""

    namespace = "ns"

    def __init__(self, secret=None):
        self.secret, self.calls = secret, []

    def request(self, method, path, body=None, content_type="application/json"):
        self.calls.append((method, path, body))
        return self.secret if method == "GET" else {}


def test_a_complete_secret_is_not_written_again():
    data = {k: base64.b64encode(v.encode()).decode() for k, v in complete(
        "ns/s", {}, KEYS, generate=True)[0].items()}
    api = RecordingApi({"data": data})
    ensure_secret(api, "s", KEYS, True, {}, lambda _: None)
    assert [c[0] for c in api.calls] == ["GET"]


def test_a_new_secret_is_created_and_a_partial_one_patched():
    api = RecordingApi(None)
    ensure_secret(api, "s", KEYS, True, {"app": "x"}, lambda _: None)
    assert api.calls[0][:2] == ("GET", "secrets/s")
    method, _, body = api.calls[1]
    assert method == "POST" and body["metadata"] == {"name": "s", "labels": {"app": "x"}}
    assert set(body["data"]) == set(KEYS)

    kept = base64.b64encode(b"a-strong-operator-password").decode()
    api = RecordingApi({"data": {"admin_password": kept}})
    ensure_secret(api, "s", KEYS, True, {}, lambda _: None)
    method, path, body = api.calls[1]
    assert (method, path) == ("PATCH", "secrets/s")
    assert "admin_password" not in body["data"] and set(body["data"]) == set(KEYS[1:])
