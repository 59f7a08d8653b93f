"""Who gets in: basic-auth on every route but /health, and the Host-header check."""

import requests

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_health_is_open(stack):
    r = requests.get(f"{stack.url}/health", timeout=10)
    assert r.status_code == 200


def test_api_without_credentials_is_401(stack):
    r = requests.get(stack.url + SEARCH, timeout=10)
    assert r.status_code == 401
    assert "WWW-Authenticate" in r.headers


def test_api_with_wrong_password_is_401(stack, admin):
    r = requests.get(stack.url + SEARCH, auth=(admin[0], admin[1] + "x"), timeout=10)
    assert r.status_code == 401


def test_ui_needs_credentials_and_renders_with_them(stack, admin):
    assert requests.get(stack.url + "/", timeout=10).status_code == 401
    r = requests.get(stack.url + "/", auth=admin, timeout=10)
    assert r.status_code == 200
    assert "<html" in r.text.lower()


def test_api_with_admin_credentials(stack, admin):
    r = requests.get(stack.url + SEARCH, auth=admin, timeout=10)
    assert r.status_code == 200, r.text
    assert "experiments" in r.json()


def test_unknown_host_header_gets_the_documented_error(stack, admin):
    r = requests.get(
        stack.url + SEARCH, auth=admin, headers={"Host": "attacker.example.net"}, timeout=10
    )
    assert r.status_code == 403
    assert r.text == "Invalid Host header - possible DNS rebinding attack detected"


def test_server_does_not_send_clients_to_presigned_s3_urls(stack, admin):
    # The stack keeps artifact bytes on the tracking server's proxy (MinIO is not
    # reachable from laptops); see README "How artifacts travel".
    r = requests.get(stack.url + "/api/3.0/mlflow/server-info", auth=admin, timeout=10)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["multipart_downloads_enabled"] is False
    assert info["multipart_uploads_enabled"] is False


def browser_write(stack, admin, origin: str, host: str | None = None) -> requests.Response:
    """The UI's kind of request: a POST to the ajax API, with the page's Origin header."""
    headers = {"Origin": origin, **({"Host": host} if host else {})}
    return requests.post(f"{stack.url}/ajax-api/2.0/mlflow/experiments/search", auth=admin,
                         json={"max_results": 1}, headers=headers, timeout=10)


def test_browser_writes_from_other_sites_are_refused(stack, admin):
    assert browser_write(stack, admin, f"http://localhost:{stack.port}").status_code == 200
    for origin in ("http://evil.example.test", "http://10.attacker.example.test:5000"):
        refused = browser_write(stack, admin, origin)
        assert refused.status_code == 403, origin
        assert "Cross-origin request blocked" in refused.text
