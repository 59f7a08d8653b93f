import base64

import pytest

from mlflow_stack.login_limit import Limits, LoginLimiter, basic_credentials


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def limiter(tmp_path, clock, failure_limit=3, window=60, block=30, name="limit.sqlite"):
    return LoginLimiter(str(tmp_path / name), Limits(failure_limit, window, block),
                        b"k" * 32, clock=clock)


def test_an_address_is_refused_after_the_limit_until_the_block_ends(tmp_path, clock):
    lim = limiter(tmp_path, clock)
    for _ in range(3):
        assert lim.refusal("10.0.0.9", "alice", "wrong") is None
        lim.failed("10.0.0.9", "alice")
    assert lim.refusal("10.0.0.9", "alice", "wrong") == 30
    assert lim.refusal("10.0.0.9", "bob", "anything") == 30
    clock.now += 10
    assert lim.refusal("10.0.0.9", "alice", "wrong") == 20
    # Another address is not affected by someone else's failures.
    assert lim.refusal("10.0.0.7", "carol", "right") is None
    clock.now += 20.5
    assert lim.refusal("10.0.0.9", "alice", "wrong") is None


def test_failures_outside_the_window_do_not_count(tmp_path, clock):
    lim = limiter(tmp_path, clock)
    for _ in range(5):
        lim.failed("10.0.0.9", "alice")
        clock.now += 31  # at most two failures inside any 60 s window
    assert lim.refusal("10.0.0.9", "alice", "wrong") is None


def test_a_locked_user_still_gets_in_with_a_password_seen_to_work(tmp_path, clock):
    lim = limiter(tmp_path, clock)
    lim.succeeded("alice", "right")
    for i in range(3):  # a distributed attack: every address stays under its own limit
        lim.failed(f"10.0.1.{i}", "alice")
    assert lim.refusal("10.0.2.1", "alice", "right") is None
    assert lim.refusal("10.0.2.1", "alice", "guess") == 30
    assert lim.refusal("10.0.2.1", "bob", "guess") is None  # only alice is locked
    # Refused guesses count against their address, so a locked user is no free oracle.
    assert lim.refusal("10.0.2.1", "alice", "guess2") == 30
    assert lim.refusal("10.0.2.1", "alice", "guess3") == 30
    assert lim.refusal("10.0.2.1", "alice", "right") == 30


def test_state_is_shared_between_workers(tmp_path, clock):
    one, two = limiter(tmp_path, clock), limiter(tmp_path, clock)
    for _ in range(3):
        one.failed("10.0.0.9", "alice")
    assert two.refusal("10.0.0.9", "alice", "wrong") == 30
    two.succeeded("alice", "right")
    for i in range(3):
        two.failed(f"10.0.1.{i}", "alice")
    assert one.refusal("10.0.3.3", "alice", "right") is None


def test_failed_logins_are_logged_once_per_burst_without_the_password(tmp_path, clock, capsys):
    lim = limiter(tmp_path, clock)
    for _ in range(8):
        lim.refusal("10.0.0.9", "alice", "hunter2-secret")
        lim.failed("10.0.0.9", "alice")
        clock.now += 1
    clock.now += 31  # the block ends; the burst goes on
    for _ in range(3):
        lim.failed("10.0.0.9", "alice")
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert err.count("failed login for user 'alice' from 10.0.0.9") == 1
    assert err.count("refusing logins from 10.0.0.9") == 1
    assert err.count("user 'alice' had 3 failed logins") == 1
    clock.now += 120  # a new burst is logged again
    lim.failed("10.0.0.9", "alice")
    assert capsys.readouterr().err.count("failed login for user 'alice'") == 1


def encode(value: str) -> bytes:
    return b"Basic " + base64.b64encode(value.encode())


def test_basic_credentials_read_as_mlflow_reads_them():
    assert basic_credentials({b"authorization": encode("alice:p:w")}, "/api/2.0/x") == ("alice", "p:w")
    assert basic_credentials({b"authorization": b"Bearer abc"}, "/api/2.0/x") is None
    assert basic_credentials({b"authorization": b"Basic !!!"}, "/api/2.0/x") is None
    assert basic_credentials({}, "/api/2.0/x") is None
    gateway = {b"x-mlflow-authorization": encode("bob:pw"), b"authorization": encode("k:v")}
    assert basic_credentials(gateway, "/gateway/chat") == ("bob", "pw")
    assert basic_credentials(gateway, "/api/2.0/x") == ("k", "v")


def test_a_broken_state_file_lets_requests_through_and_says_so_once(tmp_path, clock, capsys):
    import asyncio

    from mlflow_stack.login_limit import LoginLimitMiddleware

    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    broken = LoginLimiter(str(tmp_path / "missing-dir" / "limit.sqlite"), Limits(3, 60, 30),
                          b"k" * 32, clock=clock)
    middleware = LoginLimitMiddleware(app, broken)
    scope = {"type": "http", "path": "/api/2.0/mlflow/runs/get", "client": ("10.0.0.9", 1),
             "headers": [(b"authorization", encode("alice:pw"))]}

    async def send(message):
        pass

    for _ in range(2):
        asyncio.run(middleware(scope, None, send))
    assert calls == ["/api/2.0/mlflow/runs/get"] * 2
    assert capsys.readouterr().err.count("the failed-login limit is not working") == 1


def test_forwarded_for_is_believed_only_from_a_trusted_network(tmp_path, clock):
    import asyncio
    import ipaddress

    from mlflow_stack.login_limit import LoginLimitMiddleware

    async def app(scope, receive, send):
        pass

    limiter = LoginLimiter(str(tmp_path / "limit.sqlite"), Limits(3, 60, 30), b"k" * 32,
                           clock=clock)
    middleware = LoginLimitMiddleware(app, limiter, trusted_proxy_host="proxy.invalid",
                                      trusted_networks=(ipaddress.ip_network("10.244.0.0/16"),))
    headers = {b"x-forwarded-for": b"203.0.113.9, 198.51.100.7"}

    def address(peer):
        return asyncio.run(middleware._client_address({"client": (peer, 1)}, headers))

    # An Ingress controller's pod: the address it appended is the client's.
    assert address("10.244.3.17") == "198.51.100.7"
    # Anyone else's header is ignored.
    assert address("192.168.1.5") == "192.168.1.5"
