"""No secret value of the stack is readable anywhere but in its Secret: not in the
workloads, ConfigMaps or pods Kubernetes shows, nor in what Helm stores of the release."""

import base64

from .kube import helm


def places(release) -> dict[str, str]:
    kinds = "configmaps,deployments,replicasets,statefulsets,pods,jobs,services,networkpolicies"
    found = {f"kubectl get {kinds} -o yaml": release.kubectl("get", kinds, "-o", "yaml")}
    for what in ("values --all", "manifest", "hooks", "notes"):
        found[f"helm get {what}"] = helm("get", *what.split(), release.name, "-n",
                                         release.namespace).stdout
    return found


def test_no_secret_value_appears_outside_the_secret(release):
    secrets = release.secret()
    assert secrets, "the Secret is empty"
    found = places(release)
    # The workloads and the manifest were really scanned: both name the Secret the pods
    # mount (never its values).
    for where in (next(iter(found)), "helm get manifest"):
        assert release.secret_name in found[where], f"{where}: {found[where][:300]!r}"
    leaks = []
    for where, text in found.items():
        for key, value in secrets.items():
            encoded = base64.b64encode(value.encode()).decode()
            if value in text:
                leaks.append(f"{key} in `{where}`")
            elif encoded in text:
                leaks.append(f"{key} (base64) in `{where}`")
    assert not leaks, "secret values found:\n" + "\n".join(leaks)

