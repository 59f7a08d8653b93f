"""Failed logins are limited per client address and per user name (server/mlflow_stack/
login_limit.py): guessing gets 429 with Retry-After and costs no password hash, correct
logins from other addresses keep working, each burst is logged once (user name and
address, never the password), and behind the HTTPS proxy the address is the client's."""

import json
import re
import threading
import time

import pytest
import requests

from .test_25_tls_proxy import TLS, start_proxy
from .test_40_permissions import new_user

LIMIT = 10  # docker-compose.yml's default MLFLOW_LOGIN_FAILURE_LIMIT
PROTECTED = "/api/2.0/mlflow/experiments/search?max_results=1"

# Runs in a container on the stack network: `threads` clients send logins for `seconds` or
# `attempts` logins each. Passwords are "guess-<n>-<i>" unless one is given. Prints the
# statuses and Retry-After values.
CLIENTS = r"""
import base64, json, ssl, sys, threading, time, urllib.error, urllib.request
url, user, seconds, threads, password, forwarded_for, attempts = sys.argv[1:8]
results, lock = [], threading.Lock()
unverified = ssl._create_unverified_context()

def client(n):
    end, i = time.monotonic() + float(seconds), 0
    while time.monotonic() < end:
        i += 1
        token = base64.b64encode(f"{user}:{password or f'guess-{n}-{i}'}".encode()).decode()
        headers = {"Authorization": "Basic " + token, "Host": "localhost"}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60, context=unverified) as r:
                status, retry_after = r.status, None
        except urllib.error.HTTPError as e:
            status, retry_after = e.code, e.headers.get("Retry-After")
        with lock:
            results.append((status, retry_after))
        if i >= int(attempts):
            return

workers = [threading.Thread(target=client, args=(n,)) for n in range(int(threads))]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def machines(stack):
    """Other machines on the stack network, each with its own address, by name."""
    started = {}

    def machine(name: str):
        if name not in started:
            started[name] = stack.machine(f"login-{name}")
        return started[name]

    yield machine
    for m in started.values():
        m.remove()


def logins_from(machine, user, *, seconds=3600.0, threads=1, password="", attempts=10**9,
                url="http://mlflow:5000", forwarded_for="") -> list[tuple[int, str | None]]:
    if seconds == 3600.0 and attempts == 10**9:
        attempts = 1
    out = machine.run_python(CLIENTS, url + PROTECTED, user, str(seconds), str(threads),
                             password, forwarded_for, str(attempts))
    return [tuple(r) for r in json.loads(out)]


def statuses(results) -> dict[int, int]:
    counts: dict[int, int] = {}
    for status, _ in results:
        counts[status] = counts.get(status, 0) + 1
    return counts


def mlflow_log(stack) -> str:
    return stack.compose("logs", "--no-color", "mlflow", check=False).stdout


def test_guessing_from_one_address_is_refused_while_others_log_in(stack, admin, machines):
    victim = new_user(stack, "limit-victim")
    assert requests.get(stack.url + PROTECTED, auth=victim, timeout=30).status_code == 200
    attacker = machines("attacker")

    # The legitimate users keep working from this machine during the attack: the victim
    # itself, and a user whose password the server has not seen work yet.
    newcomer = new_user(stack, "limit-newcomer")
    legit: list[int] = []
    stop = threading.Event()

    def legitimate_traffic():
        time.sleep(2)  # the attack is under way
        legit.append(requests.get(stack.url + PROTECTED, auth=newcomer, timeout=30).status_code)
        while not stop.is_set():
            legit.append(requests.get(stack.url + PROTECTED, auth=victim, timeout=30).status_code)
            time.sleep(0.05)

    background = threading.Thread(target=legitimate_traffic)
    background.start()
    try:
        results = logins_from(attacker, "limit-victim", seconds=8, threads=8)
    finally:
        stop.set()
        background.join()

    counts = statuses(results)
    # Workers check and record concurrently, so a few guesses already in flight when the
    # limit is reached still get their answer; the rest is refused without a hash, each
    # after a pause (8 clients for 8 s: about 8 x 7 refusals, not thousands).
    assert counts.get(401, 0) <= LIMIT + 8, counts
    assert set(counts) == {401, 429} and counts[429] <= 8 * 8, counts
    waits = [int(r) for s, r in results if s == 429]
    assert all(1 <= w <= 60 for w in waits), waits
    assert set(legit) == {200} and len(legit) > 10, (legit, counts)

    # Even the right password is refused from the blocked address, for the time it said.
    (status, retry_after), = logins_from(attacker, "limit-victim", password=victim[1])
    assert status == 429 and 1 <= int(retry_after) <= 60

    log = mlflow_log(stack)
    address = attacker.address
    assert log.count(f"failed login for user 'limit-victim' from {address} ") == 1, log[-3000:]
    assert log.count(f"refusing logins from {address} ") == 1, log[-3000:]
    assert "guess-" not in log and victim[1] not in log


def test_an_attacked_user_name_only_lets_known_passwords_through(stack, admin, machines):
    target = new_user(stack, "limit-target")
    assert requests.get(stack.url + PROTECTED, auth=target, timeout=30).status_code == 200
    # A distributed attack: every address stays under its own limit, the name goes over it.
    for n in range(3):
        counts = statuses(logins_from(machines(f"spread-{n}"), "limit-target", attempts=4))
        assert counts == ({401: 4} if n < 2 else {401: 2, 429: 2}), (n, counts)
    # Wrong passwords for the name are now refused everywhere, without a hash...
    (status, retry_after), = logins_from(machines("fresh"), "limit-target")
    assert status == 429 and 1 <= int(retry_after) <= 60
    # ...while the known password still works from another address, and from here.
    assert logins_from(machines("other"), "limit-target", password=target[1])[0][0] == 200
    assert requests.get(stack.url + PROTECTED, auth=target, timeout=30).status_code == 200
    assert "user 'limit-target' had" in mlflow_log(stack)


def test_the_address_behind_the_https_proxy_is_the_clients_own(stack, admin, machines):
    start_proxy(stack)
    behind_proxy, direct = machines("behind-proxy"), machines("direct")
    try:
        new_user(stack, "limit-proxied")
        results = logins_from(behind_proxy, "limit-proxied", attempts=2,
                              url="https://proxy:8443", forwarded_for="198.51.100.7")
        assert statuses(results) == {401: 2}, results
        # Straight to mlflow, a client cannot choose its address with the header.
        results = logins_from(direct, "limit-proxied", attempts=2, forwarded_for="198.51.100.8")
        assert statuses(results) == {401: 2}, results
    finally:
        stack.compose(*TLS, "rm", "--stop", "--force", "proxy", check=False)
    log = mlflow_log(stack)
    for machine in (behind_proxy, direct):
        assert f"failed login for user 'limit-proxied' from {machine.address} " in log, log[-3000:]
    assert not re.search(r"from 198\.51\.100\.[78] ", log)
