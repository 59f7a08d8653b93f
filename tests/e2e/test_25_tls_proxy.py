"""The optional HTTPS proxy (profile tls): certificates, redirect, headers, limits, and a
1 GB artifact streamed both ways with every container's memory bounded."""

import datetime
import hashlib
import os
import ssl
import subprocess
import time

import mlflow
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .memory import MIB, MemoryPeaks
from .stack import REPO, sha256_file

GIB = 1 << 30
# A service that held the 1 GB body in memory would grow by about that much.
MEMORY_GROWTH_LIMIT = 256 * MIB
TLS = ("--profile", "tls")


def wait_proxy_healthy(stack) -> None:
    # Not verified here: the certificate is what the tests below examine.
    stack.wait_healthy(60, service="proxy", probe=f"{stack.https_url}/health", verify=False)


def start_proxy(stack, **env) -> None:
    stack.compose(*TLS, "up", "-d", "--force-recreate", "proxy", env=env)
    wait_proxy_healthy(stack)


def served_certificate(stack) -> bytes:
    pem = ssl.get_server_certificate(("127.0.0.1", stack.https_port))
    return ssl.PEM_cert_to_DER_cert(pem)


@pytest.fixture(scope="module")
def proxy(stack, tmp_path_factory):
    """The proxy with its self-signed certificate, saved as a laptop would (scripts/tls-cert)."""
    start_proxy(stack)
    result = subprocess.run([str(REPO / "scripts" / "tls-cert")], capture_output=True, text=True,
                            env={**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": stack.project})
    assert result.returncode == 0, result.stderr
    cert = tmp_path_factory.mktemp("tls") / "mlflow-stack.crt"
    cert.write_text(result.stdout)
    yield cert
    # Other tests check that only MLflow publishes a port.
    stack.compose(*TLS, "rm", "--stop", "--force", "proxy", check=False)


@pytest.fixture
def https_laptop(monkeypatch, stack, admin, as_user, proxy):
    """A default MLflow client that was told the URL and to trust the stack's certificate."""
    as_user(*admin, url=stack.https_url)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(proxy))
    yield MlflowClient(tracking_uri=stack.https_url)
    mlflow.set_tracking_uri(stack.url)  # the proxy is gone after this module


def test_https_works_with_the_stack_certificate_and_only_with_it(stack, admin, proxy):
    url = f"{stack.https_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(url, auth=admin, verify=str(proxy), timeout=10).status_code == 200
    assert requests.get(url, verify=str(proxy), timeout=10).status_code == 401
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, auth=admin, timeout=10)  # the public CAs do not vouch for it
    served = x509.load_der_x509_certificate(served_certificate(stack))
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert served == x509.load_pem_x509_certificate(proxy.read_bytes())


def test_plain_http_redirects_to_https_keeping_path_and_method(stack, proxy):
    for method in ("GET", "POST"):
        response = requests.request(method, f"http://127.0.0.1:{stack.http_port}/api/2.0/x?y=1",
                                    allow_redirects=False, timeout=10)
        assert response.status_code == 308, response.text
        assert response.headers["Location"] == f"https://127.0.0.1:{stack.https_port}/api/2.0/x?y=1"


def test_security_headers_are_set_once(stack, admin, proxy):
    for path in ("/", "/health", "/api/2.0/mlflow/experiments/search?max_results=1", "/nope"):
        response = requests.get(f"{stack.https_url}{path}", auth=admin, verify=str(proxy), timeout=10)
        headers = response.headers
        assert headers["Strict-Transport-Security"] == "max-age=31536000", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["X-Frame-Options"] == "SAMEORIGIN", path
        assert headers["Referrer-Policy"] == "same-origin", path
        assert "nginx/" not in headers.get("Server", ""), "the proxy shows its version"


def test_mlflow_still_checks_the_host_name_behind_the_proxy(stack, admin, proxy):
    response = requests.get(f"{stack.https_url}/api/2.0/mlflow/experiments/search?max_results=1",
                            auth=admin, verify=str(proxy), headers={"Host": "evil.example.test"},
                            timeout=10)
    assert response.status_code == 403
    assert "Invalid Host header" in response.text


def test_self_signed_certificate_survives_a_restart(stack, proxy):
    before = served_certificate(stack)
    stack.compose(*TLS, "restart", "proxy")
    wait_proxy_healthy(stack)
    assert served_certificate(stack) == before, "laptops would have to trust a new certificate"


def test_one_gigabyte_artifact_round_trip_over_https(stack, https_laptop, tmp_path):
    client = https_laptop
    big = tmp_path / "one-gigabyte.bin"
    block = os.urandom(4 * MIB)
    with open(big, "wb") as f:
        for i in range(GIB // len(block)):
            f.write(hashlib.sha256(i.to_bytes(4, "big")).digest()[:8] + block[8:])
    want = sha256_file(big)

    run = client.create_run(client.create_experiment(f"tls-1g-{time.time_ns()}"))
    run_id = run.info.run_id
    with MemoryPeaks(stack.container_ids()) as memory:
        start = time.monotonic()
        client.log_artifact(run_id, str(big), "data")
        uploaded = time.monotonic() - start
        big.unlink()
        start = time.monotonic()
        local = client.download_artifacts(run_id, "data/one-gigabyte.bin", str(tmp_path))
        downloaded = time.monotonic() - start
    assert os.path.getsize(local) == GIB
    assert sha256_file(local) == want
    print(f"\n1 GiB over HTTPS: upload {uploaded:.1f} s ({GIB / MIB / uploaded:.0f} MiB/s), "
          f"download {downloaded:.1f} s ({GIB / MIB / downloaded:.0f} MiB/s)\n{memory.table()}")
    for service in memory.peak:
        assert memory.growth(service) < MEMORY_GROWTH_LIMIT, (
            f"{service} grew by {memory.growth(service) / MIB:.0f} MiB\n{memory.table()}")


def test_oversized_upload_gets_a_clear_413_and_stores_nothing(stack, https_laptop, tmp_path):
    client = https_laptop
    run_id = client.create_run(client.create_experiment(f"tls-413-{time.time_ns()}")).info.run_id
    big = tmp_path / "three-mib.bin"
    big.write_bytes(os.urandom(3 * MIB))
    start_proxy(stack, PROXY_MAX_BODY_SIZE="1m")
    try:
        with pytest.raises((MlflowException, requests.HTTPError)) as error:
            client.log_artifact(run_id, str(big))
        assert "PROXY_MAX_BODY_SIZE=1m" in str(error.value), str(error.value)
        assert client.list_artifacts(run_id) == []
    finally:
        start_proxy(stack)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _operator_certificate(directory, common_name="mlflow.example.test"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(mode=0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(_key_pem(key))
    # Readable by the proxy's uid (1003); a real operator would chown instead.
    os.chmod(directory / "tls.key", 0o644)
    return cert


def test_operator_certificate_is_served(stack, proxy, tmp_path):
    os.chmod(tmp_path, 0o755)
    cert = _operator_certificate(tmp_path / "certs")
    start_proxy(stack, PROXY_CERT_DIR=str(tmp_path / "certs"))
    try:
        assert served_certificate(stack) == cert.public_bytes(serialization.Encoding.DER)
    finally:
        start_proxy(stack)


def test_a_key_that_does_not_match_the_certificate_is_named(stack, proxy, tmp_path):
    os.chmod(tmp_path, 0o755)
    _operator_certificate(tmp_path / "certs")
    (tmp_path / "certs" / "tls.key").write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    result = stack.compose(*TLS, "run", "--rm", "--no-deps", "proxy", check=False,
                           env={"PROXY_CERT_DIR": str(tmp_path / "certs")})
    assert result.returncode != 0
    assert "tls.key does not belong to tls.crt" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_proxy_runs_as_non_root_on_a_read_only_filesystem(stack, proxy):
    assert stack.exec("proxy", "id", "-u").strip() == "1003"
    assert stack.exec("proxy", "sh", "-c", "touch /etc/x 2>&1 || true").strip().endswith(
        "Read-only file system")
    # The key of the self-signed certificate is readable only by the proxy's user.
    assert stack.exec("proxy", "stat", "-c", "%a %u", "/var/lib/proxy/certs/tls.key").strip() == "600 1003"


def test_credentials_script_names_the_https_address(stack, admin, proxy):
    result = subprocess.run([str(REPO / "scripts" / "credentials")], capture_output=True, text=True,
                            env={**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": stack.project})
    assert result.returncode == 0, result.stderr
    assert f"HTTPS (the proxy is running): https://127.0.0.1:{stack.https_port}" in result.stdout
    assert f"admin password:             {admin[1]}" in result.stdout
