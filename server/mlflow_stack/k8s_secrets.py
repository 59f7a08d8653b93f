"""Hook job of the Helm chart: make sure the stack's Secret holds every key it needs.

The Kubernetes counterpart of secrets_init.py. Helm cannot do this itself: a Secret
rendered by a template is in `helm get manifest` (and a `randAlphaNum` in a template
re-rolls the value on every upgrade). So this job, run before every install and upgrade,
reads the Secret through the API, keeps every value it finds (an operator's own values
included, after the same checks as .env values), generates the missing ones and writes
the Secret. The Secret is not a Helm resource: `helm uninstall` leaves it, so a
reinstall on the same volumes still has the passwords its data was written with.
Values are never printed.

Run inside the server image with the job's service account:
    python -m mlflow_stack.k8s_secrets
Environment: STACK_SECRET_NAME, STACK_SECRET_KEYS (comma-separated), STACK_SECRET_GENERATE
(true/false: false when the operator names an existing Secret that must hold every key),
STACK_SECRET_LABELS (JSON object).
"""

import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from mlflow_stack import StackError
from mlflow_stack.secrets_init import SECRETS

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SECRETS_BY_NAME = {secret.name: secret for secret in SECRETS}


def complete(
    name: str, stored: Mapping[str, str], keys: list[str], generate: bool
) -> tuple[dict[str, str], list[str]]:
    """Return (the keys to add, one report line per key); StackError if a value is bad
    or, with generate off, missing."""
    added, report, missing = {}, [], []
    for key in keys:
        secret = SECRETS_BY_NAME[key]
        if key in stored:
            secret.validate(stored[key], where=f"key {key} of Secret {name}")
            report.append(f"{key}: kept")
        elif generate:
            added[key] = secret.generate()
            report.append(f"{key}: generated")
        else:
            missing.append(key)
    if missing:
        raise StackError(
            f"Secret {name} (secrets.existingSecret) lacks {', '.join(missing)}. Add them "
            f"(kubectl create secret generic {name} --from-literal=KEY=VALUE ..., see the chart "
            "README), or leave secrets.existingSecret empty to have the chart generate them."
        )
    return added, report


class Api:
    """Just enough of the Kubernetes API: one Secret, in-cluster credentials."""

    def __init__(self, namespace: str, token: str, base_url: str, context: ssl.SSLContext):
        self.namespace, self.token, self.base_url, self.context = (
            namespace, token, base_url, context)

    @classmethod
    def in_cluster(cls, account: Path = SERVICE_ACCOUNT) -> "Api":
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if not host:
            raise StackError("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset).")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        try:
            token = (account / "token").read_text()
            namespace = (account / "namespace").read_text().strip()
        except OSError as e:
            raise StackError(
                f"cannot read the service account token ({e.strerror}): the chart's secrets "
                "job needs automountServiceAccountToken."
            ) from None
        context = ssl.create_default_context(cafile=str(account / "ca.crt"))
        # Python 3.13 turned on strict RFC 5280 checks, which refuse cluster CAs made without
        # a keyUsage extension (some tools make them so); the chain and the API server's name
        # are still verified, as kubectl does.
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
        host = f"[{host}]" if ":" in host else host
        return cls(namespace, token, f"https://{host}:{port}", context)

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict | None:
        """The decoded answer, or None for 404."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base_url}/api/v1/namespaces/{self.namespace}/{path}", data=data,
            method=method, headers={"Authorization": f"Bearer {self.token}",
                                    "Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            detail = e.read().decode(errors="replace")[:300]
            raise StackError(
                f"the Kubernetes API refused {method} {path} (HTTP {e.code}: {detail}). The "
                "chart's secrets job needs its Role (get, create, patch on secrets)."
            ) from None
        except (urllib.error.URLError, OSError) as e:
            raise StackError(f"cannot reach the Kubernetes API at {self.base_url} ({e}).") from None


def ensure_secret(api: Api, name: str, keys: list[str], generate: bool,
                  labels: Mapping[str, str], log: Callable[[str], None]) -> None:
    current = api.request("GET", f"secrets/{name}")
    stored = {key: base64.b64decode(value).decode()
              for key, value in ((current or {}).get("data") or {}).items()}
    added, report = complete(f"{api.namespace}/{name}", stored, keys, generate)
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in added.items()}
    if current is None:
        api.request("POST", "secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": dict(labels)}, "data": encoded})
    elif encoded:
        api.request("PATCH", f"secrets/{name}", {"data": encoded},
                    content_type="application/merge-patch+json")
    for line in report:
        log(line)


def main() -> int:
    def log(message: str) -> None:
        print(f"secrets: {message}", file=sys.stderr, flush=True)

    try:
        name = os.environ["STACK_SECRET_NAME"]
        keys = [k for k in os.environ["STACK_SECRET_KEYS"].split(",") if k]
        unknown = [k for k in keys if k not in SECRETS_BY_NAME]
        if unknown:
            raise StackError(f"unknown secret keys {unknown}; known: {sorted(SECRETS_BY_NAME)}")
        generate = os.environ.get("STACK_SECRET_GENERATE", "true") == "true"
        labels = json.loads(os.environ.get("STACK_SECRET_LABELS", "{}"))
        ensure_secret(Api.in_cluster(), name, keys, generate, labels, log)
    except KeyError as e:
        log(f"error: {e.args[0]} is not set (the chart's secrets job sets it).")
        return 1
    except StackError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
