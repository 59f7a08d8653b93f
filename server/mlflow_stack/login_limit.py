"""Limits failed logins per client address and per user name (ASGI middleware).

Why here and not in the HTTPS proxy: the proxy is optional and MLflow's own port is the
front door laptops use by default, and only the server can tell a failed login (MLflow's
401 with its Basic realm) from any other answer. It sits outside MLflow's app, so it sees
the Flask routes and the FastAPI ones (artifacts, gateway, OTLP) alike.

Every wrong password costs MLflow a full password hash (tens of ms of CPU by design), so
unlimited guessing is also a denial of service. The rules, for requests that carry Basic
credentials on a protected path:

- An address with `failure_limit` failed logins within `window` seconds is refused
  (429 with Retry-After after a 1 s pause, no hash) for `block` seconds, whatever it
  sends.
- A user name with `failure_limit` failed logins within `window` seconds (from any
  addresses) is locked for `block` seconds: an attempt with a password that is not one
  this server has already seen succeed for that user is refused without a hash and counts
  as a failure of its address. So a correct password keeps working from anywhere during
  an attack on the account, while guesses stay bounded by the per-address limit.

The state is shared by all workers in a SQLite file on the container's tmpfs (gone when
the container stops). Correct logins from another address are never refused because of
someone else's failures; the one exception (documented) is a user whose password this
server has not seen succeed since it started, during an attack on that user name.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import ipaddress
import math
import os
import sqlite3
import sys
import time
from collections.abc import Mapping

# MLflow's 401 for a failed login carries exactly this challenge (mlflow/server/auth).
MLFLOW_CHALLENGE = b'basic realm="mlflow"'
GATEWAY_AUTH_HEADER = b"x-mlflow-authorization"
# Known-good password digests are rewritten at most this often per worker.
GOOD_REFRESH_SECONDS = 300
GOOD_KEEP_SECONDS = 7 * 24 * 3600
PROXY_LOOKUP_SECONDS = 60
# A refused attempt is answered after this delay: it costs the server nothing (no hash, no
# CPU while waiting), but a client that ignores Retry-After can no longer spin on cheap
# 429s fast enough to take the CPU from everyone else.
REFUSAL_DELAY_SECONDS = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (address TEXT NOT NULL, username TEXT NOT NULL,
                                     at REAL NOT NULL, counts_for_user INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS failures_address ON failures (address, at);
CREATE INDEX IF NOT EXISTS failures_username ON failures (username, at);
CREATE TABLE IF NOT EXISTS blocks (kind TEXT NOT NULL, key TEXT NOT NULL, until REAL NOT NULL,
                                   PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS bursts (address TEXT PRIMARY KEY, last_at REAL NOT NULL,
                                   block_logged INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS good (username TEXT NOT NULL, digest BLOB NOT NULL, at REAL NOT NULL,
                                 PRIMARY KEY (username, digest));
"""


def log(message: str) -> None:
    print(f"mlflow-stack: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Limits:
    failure_limit: int  # 0: no limit
    window_seconds: int
    block_seconds: int


class LoginLimiter:
    """The shared bookkeeping. All methods are quick local SQLite calls."""

    def __init__(self, path: str, limits: Limits, key: bytes, clock=time.time):
        self.path = path
        self.limits = limits
        self.key = key
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._good_written: dict[tuple[str, bytes], float] = {}

    @property
    def db(self) -> sqlite3.Connection:
        # Opened lazily, so each worker (a forked process) has its own connection.
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")  # tmpfs: nothing to make durable
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def digest(self, password: str) -> bytes:
        return hmac.new(self.key, password.encode("utf-8", "surrogatepass"), "sha256").digest()

    def refusal(self, address: str, username: str, password: str) -> int | None:
        """Seconds the caller must wait before this attempt is verified, or None."""
        now = self.clock()
        rows = dict(self.db.execute(
            "SELECT kind, until FROM blocks WHERE until > ? AND "
            "((kind = 'address' AND key = ?) OR (kind = 'user' AND key = ?))",
            (now, address, username)).fetchall())
        if "address" in rows:
            return math.ceil(rows["address"] - now)
        if "user" in rows:
            known = self.db.execute(
                "SELECT 1 FROM good WHERE username = ? AND digest = ?",
                (username, self.digest(password))).fetchone()
            if known is None:
                self._record_failure(address, username, now, count_user=False)
                return math.ceil(rows["user"] - now)
        return None

    def failed(self, address: str, username: str) -> None:
        self._record_failure(address, username, self.clock(), count_user=True)

    def succeeded(self, username: str, password: str) -> None:
        now = self.clock()
        digest = self.digest(password)
        if now - self._good_written.get((username, digest), -math.inf) < GOOD_REFRESH_SECONDS:
            return
        self._good_written[(username, digest)] = now
        self.db.execute("INSERT OR REPLACE INTO good VALUES (?, ?, ?)", (username, digest, now))
        self.db.execute("DELETE FROM good WHERE at < ?", (now - GOOD_KEEP_SECONDS,))

    def _record_failure(self, address: str, username: str, now: float, count_user: bool) -> None:
        since = now - self.limits.window_seconds
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM failures WHERE at <= ?", (since,))
            db.execute("INSERT INTO failures VALUES (?, ?, ?, ?)",
                       (address, username, now, int(count_user)))
            burst = db.execute("SELECT last_at, block_logged FROM bursts WHERE address = ?",
                               (address,)).fetchone()
            new_burst = burst is None or burst[0] <= since
            db.execute("INSERT OR REPLACE INTO bursts VALUES (?, ?, ?)",
                       (address, now, 0 if new_burst else burst[1]))
            if new_burst:
                log(f"failed login for user {username!r} from {address} (more failures from "
                    "this address in the next minutes are not logged one by one)")
            self._maybe_block_address(address, now, since)
            if count_user:
                self._maybe_block_user(username, now, since)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _start_block(self, kind: str, key: str, count: int, now: float) -> bool:
        if count < self.limits.failure_limit:
            return False
        active = self.db.execute("SELECT 1 FROM blocks WHERE kind = ? AND key = ? AND until > ?",
                                 (kind, key, now)).fetchone()
        if active:
            return False
        self.db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?)",
                        (kind, key, now + self.limits.block_seconds))
        return True

    def _maybe_block_address(self, address: str, now: float, since: float) -> None:
        db, limits = self.db, self.limits
        count = db.execute("SELECT count(*) FROM failures WHERE address = ? AND at > ?",
                           (address, since)).fetchone()[0]
        if not self._start_block("address", address, count, now):
            return
        if db.execute("SELECT block_logged FROM bursts WHERE address = ?", (address,)).fetchone()[0]:
            return  # one line per burst: a continuing attack is not logged every minute
        db.execute("UPDATE bursts SET block_logged = 1 WHERE address = ?", (address,))
        names = [row[0] for row in db.execute(
            "SELECT DISTINCT username FROM failures WHERE address = ? AND at > ? LIMIT 10",
            (address, since))]
        log(f"login limit: refusing logins from {address} for {limits.block_seconds} s after "
            f"{count} failed logins within {limits.window_seconds} s (user names tried: "
            f"{', '.join(repr(name) for name in names)}); MLFLOW_LOGIN_FAILURE_LIMIT in .env "
            "sets the limit")

    def _maybe_block_user(self, username: str, now: float, since: float) -> None:
        limits = self.limits
        count, addresses = self.db.execute(
            "SELECT count(*), count(DISTINCT address) FROM failures "
            "WHERE username = ? AND counts_for_user = 1 AND at > ?", (username, since)).fetchone()
        if self._start_block("user", username, count, now):
            log(f"login limit: user {username!r} had {count} failed logins from {addresses} "
                f"address(es) within {limits.window_seconds} s; for {limits.block_seconds} s "
                "only passwords already seen to work for this user are checked")


def basic_credentials(headers: Mapping[bytes, bytes], path: str) -> tuple[str, str] | None:
    """(user name, password) as MLflow will read them, or None when there are none."""
    raw = None
    if path.startswith("/gateway/"):  # MLflow reads its own header first there
        raw = headers.get(GATEWAY_AUTH_HEADER)
    raw = raw or headers.get(b"authorization")
    if not raw:
        return None
    scheme, _, token = raw.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    username, _, password = decoded.partition(":")
    return username, password


class LoginLimitMiddleware:
    def __init__(self, app, limiter: LoginLimiter, trusted_proxy_host: str = "proxy",
                 trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()):
        from mlflow.server.auth import is_unprotected_route

        self.app = app
        self.limiter = limiter
        self.is_unprotected_route = is_unprotected_route
        self.trusted_proxy_host = trusted_proxy_host
        # On Kubernetes the peer is an Ingress controller's pod (or a node, after SNAT):
        # without trusting its X-Forwarded-For, every user would share one address.
        self.trusted_networks = trusted_networks
        self._proxy_addresses: tuple[float, frozenset[str]] = (-math.inf, frozenset())
        self._warned = False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.limiter.limits.failure_limit == 0:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or ())
        credentials = None if self.is_unprotected_route(path) else basic_credentials(headers, path)
        if credentials is None:  # MLflow answers 401 without hashing anything
            return await self.app(scope, receive, send)
        username, password = credentials
        address = await self._client_address(scope, headers)
        wait = self._safely(self.limiter.refusal, address, username, password)
        if wait is not None:
            await asyncio.sleep(min(wait, REFUSAL_DELAY_SECONDS))
            return await _too_many_attempts(send, max(1, wait - int(REFUSAL_DELAY_SECONDS)))

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status = message["status"]
                challenge = dict(message.get("headers") or ()).get(b"www-authenticate", b"")
                if status == 401 and challenge.lower() == MLFLOW_CHALLENGE:
                    self._safely(self.limiter.failed, address, username)
                elif status < 400 or status in (403, 404):
                    # MLflow checked the password and accepted it (403: not allowed to do
                    # this, but logged in).
                    self._safely(self.limiter.succeeded, username, password)
            await send(message)

        await self.app(scope, receive, send_and_record)

    def _safely(self, method, *args):
        """The limiter's bookkeeping failing (say, a full tmpfs) must not fail requests:
        serve without the limit, and say so once per worker."""
        try:
            return method(*args)
        except sqlite3.Error as e:
            if not self._warned:
                self._warned = True
                log(f"warning: the failed-login limit is not working ({e}); logins are "
                    "served without it until the server restarts or the cause goes away")
            return None

    async def _client_address(self, scope, headers) -> str:
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded and (self._in_trusted_network(peer) or peer in await self._proxy_peers()):
            # nginx appends the address it saw; anything before it came from the client.
            return forwarded.decode("latin-1").rsplit(",", 1)[-1].strip() or peer
        return peer

    def _in_trusted_network(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)

    async def _proxy_peers(self) -> frozenset[str]:
        looked_up_at, addresses = self._proxy_addresses
        if time.monotonic() - looked_up_at > PROXY_LOOKUP_SECONDS:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(self.trusted_proxy_host, None)
                addresses = frozenset(info[4][0] for info in infos)
            except OSError:  # no proxy service in this stack: trust nobody's header
                addresses = frozenset()
            self._proxy_addresses = (time.monotonic(), addresses)
        return addresses


async def _too_many_attempts(send, wait: int) -> None:
    body = (b'{"error_code": "RESOURCE_EXHAUSTED", "message": "Too many failed logins; '
            b'try again in %d s."}' % wait)
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(wait).encode())]})
    await send({"type": "http.response.body", "body": body})


def from_env(env: Mapping[str, str] = os.environ) -> LoginLimiter:
    from mlflow_stack.settings import Settings

    settings = Settings.from_env(env)
    key = bytes.fromhex(env["MLFLOW_STACK_LOGIN_LIMIT_KEY"])
    path = os.path.join(env.get("STATE_DIR", "/run/mlflow-state"), "login-limit.sqlite")
    return LoginLimiter(path, Limits(settings.login_failure_limit, settings.login_window_seconds,
                                     settings.login_block_seconds), key)
