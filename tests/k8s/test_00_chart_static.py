"""The chart lints clean and every manifest it renders is valid Kubernetes 1.34, for the
defaults and the main ways operators configure it. Needs helm only, no cluster."""

import pytest
import yaml

from .kube import CHART, helm

KUBERNETES_VERSION = "1.34.4"

# name -> (--set arguments, kinds/names that must be rendered, that must not be)
COMBINATIONS = {
    "defaults": ([], {"Deployment/R-mlflow", "StatefulSet/R-postgresql", "StatefulSet/R-minio",
                      "Service/R-minio-hl", "Job/R-secrets", "Job/R-migrate-1",
                      "Job/R-minio-init-1"}, {"Ingress/R-mlflow", "Deployment/R-model-server"}),
    "external-db-and-s3": ([
        "postgresql.enabled=false", "postgresql.external.host=db.example.com",
        "postgresql.external.existingSecret=mlflow-db",
        "minio.enabled=false", "s3.external.endpointUrl=https://s3.example.com",
        "s3.external.existingSecret=mlflow-s3",
    ], {"Deployment/R-mlflow"}, {"StatefulSet/R-postgresql", "StatefulSet/R-minio",
                                 "Job/R-minio-init-1"}),
    "ingress-with-tls": ([
        "ingress.enabled=true", "ingress.host=mlflow.example.com", "ingress.className=nginx",
        "ingress.tlsSecret=mlflow-example-tls",
    ], {"Ingress/R-mlflow"}, set()),
    "models-and-model-server": ([
        "models.enabled=true", "modelServer.enabled=true",
    ], {"Deployment/R-model-server", "Service/R-model-server", "Job/R-models-1"}, set()),
    "test-install": ([
        "image.pullPolicy=Never", "mlflow.service.type=NodePort", "mlflow.service.nodePort=31234",
    ], {"Deployment/R-mlflow"}, set()),
}

RELEASE = "chk"


def _set_args(settings: list[str]) -> list[str]:
    return [arg for s in settings for arg in ("--set", s)]


def render(settings: list[str]) -> list[dict]:
    out = helm("template", RELEASE, str(CHART), "--namespace", "ns", "--kube-version",
               KUBERNETES_VERSION, *_set_args(settings)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_helm_lint_strict(helm_ready):
    result = helm("lint", "--strict", str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_rendered_manifests_are_valid_kubernetes_1_34(helm_ready, combination):
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    settings, present, absent = COMBINATIONS[combination]
    lint = helm("lint", "--strict", str(CHART), *_set_args(settings), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    docs = render(settings)
    problems = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            problems.append(f"{what}: {path}: {e.message}")
        except SchemaNotFoundError as e:
            problems.append(f"{what}: {e.message}")
    assert not problems, "\n".join(problems)

    rendered = {f"{d['kind']}/{d['metadata']['name']}" for d in docs}
    want = {p.replace("R-", f"{RELEASE}-") for p in present}
    unwanted = {p.replace("R-", f"{RELEASE}-") for p in absent}
    assert want <= rendered, f"missing {sorted(want - rendered)}; rendered {sorted(rendered)}"
    assert not (unwanted & rendered), f"rendered {sorted(unwanted & rendered)} though disabled"


def test_ingress_serves_the_host_over_tls(helm_ready):
    settings = COMBINATIONS["ingress-with-tls"][0]
    ingress = next(d for d in render(settings) if d["kind"] == "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["mlflow.example.com"],
                                       "secretName": "mlflow-example-tls"}], ingress["spec"]
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["mlflow.example.com"]
    assert ingress["spec"].get("ingressClassName") == "nginx"
