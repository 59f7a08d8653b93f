"""The tracking server's settings, read from the environment and checked up front."""

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping

from mlflow_stack import StackError

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
JOB_ENGINES = ("executor", "huey")
# Who brings the schemas up to date: this server at start (Compose), or a one-shot job
# that runs once per install or upgrade while every replica waits for it (Helm chart).
MIGRATION_MODES = ("at-start", "job")
# Where queued jobs run: this server's own runner, or one other server (the chart's jobs
# pod), since MLflow's runner resets every other runner's running jobs when it starts.
JOB_RUNNERS = ("this-server", "elsewhere")
# The non-admin account the models job logs in with (its password: secret models_password).
MODELS_USERNAME = "models"


def default_workers(cores: int | None = None) -> int:
    """Two uvicorn workers per core, at most 8. On two cores 4 workers served more
    concurrent log_batch calls than 2 or 3 and about as many as 6 (docs/performance.md);
    each worker holds ~250 MB and adds to start-up."""
    cores = cores or os.cpu_count() or 1
    return max(2, min(8, 2 * cores))

# postgres/entrypoint.sh sets max_connections = 200; gc, the job runner, backups and doctor
# need a few of them besides the server's workers.
POSTGRES_MAX_CONNECTIONS = 200
CONNECTIONS_KEPT_FOR_OTHERS = 20


def default_pool(workers: int) -> tuple[int, int]:
    """Connections per worker and database (runs, auth): (kept open, extra for bursts).

    Up to 10 stay open: each request holds one connection per database, and with MLflow's
    5 most concurrent calls opened and SCRAM-authenticated a new one (docs/performance.md).
    The total stays within what PostgreSQL accepts however many workers there are."""
    per_engine = (POSTGRES_MAX_CONNECTIONS - CONNECTIONS_KEPT_FOR_OTHERS) // (2 * workers)
    pool = max(1, min(10, per_engine))
    return pool, max(0, min(5, per_engine - pool))


# Always allowed: the in-stack service name (the models job and healthchecks use it),
# loopback, and the private address ranges MLflow itself allows when no list is given,
# so http://<server's LAN IP>:5000 works out of the box. Public names come from
# MLFLOW_ALLOWED_HOSTS.
BUILTIN_ALLOWED_HOSTS = (
    "mlflow", "mlflow:*", "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*",
    "[::1]", "[[]::1]:*", "10.*", "192.168.*",
    *(f"172.{i}.*" for i in range(16, 32)),
)

_HOST_PATTERN = re.compile(r"^[A-Za-z0-9*\[\]:._-]+$")


def allowed_hosts(extra: str) -> list[str]:
    """Turn MLFLOW_ALLOWED_HOSTS ("a.example.com, b:8443") into --allowed-hosts entries.

    A name without a port is allowed on any port, since the Host header carries the port
    the browser used (":5000", or none behind a proxy on 443).
    """
    hosts = list(BUILTIN_ALLOWED_HOSTS)
    for raw in extra.split(","):
        host = raw.strip()
        if not host:
            continue
        if "://" in host or "/" in host:
            raise StackError(
                f"MLFLOW_ALLOWED_HOSTS entry {host!r} looks like a URL; list bare host "
                "names such as mlflow.example.com (optionally with :port), comma-separated."
            )
        if not _HOST_PATTERN.match(host):
            raise StackError(f"MLFLOW_ALLOWED_HOSTS entry {host!r} is not a host name.")
        candidates = [host] if ":" in host.lstrip("[") else [host, f"{host}:*"]
        hosts.extend(h for h in candidates if h not in hosts)
    return hosts


def cors_allowed_origins(extra_hosts: str, extra_origins: str) -> list[str]:
    """Browser origins allowed to change things: the server's own names, plus extra origins.

    MLflow refuses a POST/PUT/DELETE whose Origin is not localhost or listed, and browsers
    send Origin even to the page's own server, so the UI at http://<listed name>:5000 (or
    https://<name> behind the proxy) needs its own origin here. Only explicitly listed
    names count: a wildcard such as "http://10.*" would also match "http://10.evil.example".
    """
    origins: list[str] = []
    for host in allowed_hosts(extra_hosts)[len(BUILTIN_ALLOWED_HOSTS):]:
        if host.split(":")[0] == "*":  # "any host" must not become "any origin"
            continue
        for scheme in ("http", "https"):
            origin = f"{scheme}://{host}"
            if origin not in origins:
                origins.append(origin)
    for raw in extra_origins.split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        # "*" may start a name ("https://*.example.com") but never stand for any host.
        if not re.fullmatch(r"https?://(\*\.)?[A-Za-z0-9\[\]][A-Za-z0-9\[\]:._-]*(:\*)?", origin):
            raise StackError(
                f"MLFLOW_CORS_ALLOWED_ORIGINS entry {origin!r} is not an origin; use "
                "scheme://host[:port], e.g. https://notebooks.example.com, comma-separated."
            )
        if origin not in origins:
            origins.append(origin)
    return origins


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a whole number (default {default}).") from None
    if value < minimum:
        raise StackError(f"{name}={value} must be at least {minimum} (default {default}).")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    allowed_hosts: list[str]
    cors_allowed_origins: list[str]
    default_permission: str
    admin_username: str
    workers: int
    gateway_private_upstreams: bool
    db_pool_size: int
    db_max_overflow: int
    job_engine: str
    auth_cache_ttl_seconds: int
    login_failure_limit: int
    login_window_seconds: int
    login_block_seconds: int
    startup_timeout_seconds: int
    bucket: str
    postgres_host: str
    postgres_port: int
    postgres_user: str
    migrations: str
    job_runner: str
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    s3_endpoint_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        permission = env.get("MLFLOW_DEFAULT_PERMISSION", "").strip().upper() or "READ"
        if permission not in PERMISSIONS:
            raise StackError(
                f"MLFLOW_DEFAULT_PERMISSION={permission!r} is not one of {', '.join(PERMISSIONS)}."
            )
        job_engine = env.get("MLFLOW_JOB_ENGINE", "").strip().lower() or "executor"
        if job_engine not in JOB_ENGINES:
            raise StackError(
                f"MLFLOW_JOB_ENGINE={job_engine!r} is not one of {', '.join(JOB_ENGINES)}."
            )
        private_upstreams = env.get("MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS", "false")
        if private_upstreams.strip().lower() not in ("true", "false"):
            raise StackError(
                f"GATEWAY_ALLOW_PRIVATE_UPSTREAMS={private_upstreams!r} must be true or false."
            )
        gateway_private_upstreams = private_upstreams.strip().lower() == "true"
        admin = env.get("MLFLOW_ADMIN_USERNAME", "").strip() or "admin"
        bucket = env.get("MLFLOW_S3_BUCKET", "").strip() or "mlflow"
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise StackError(
                f"MLFLOW_S3_BUCKET={bucket!r} is not a valid bucket name "
                "(3-63 lower-case letters, digits, dots and dashes)."
            )
        migrations = env.get("MLFLOW_MIGRATIONS", "").strip().lower() or "at-start"
        if migrations not in MIGRATION_MODES:
            raise StackError(
                f"MLFLOW_MIGRATIONS={migrations!r} is not one of {', '.join(MIGRATION_MODES)} "
                "(at-start: this server migrates before it serves; job: a separate job does, "
                "and the server waits for it)."
            )
        job_runner = env.get("MLFLOW_JOB_RUNNER", "").strip().lower() or "this-server"
        if job_runner not in JOB_RUNNERS:
            raise StackError(
                f"MLFLOW_JOB_RUNNER={job_runner!r} is not one of {', '.join(JOB_RUNNERS)}.")
        if job_runner == "elsewhere" and job_engine != "executor":
            raise StackError(
                "MLFLOW_JOB_RUNNER=elsewhere needs MLFLOW_JOB_ENGINE=executor: with huey a job "
                "runs only on the server that queued it.")
        trusted_proxies = []
        for raw in env.get("MLFLOW_TRUSTED_PROXIES", "").split(","):
            if raw.strip():
                try:
                    trusted_proxies.append(ipaddress.ip_network(raw.strip(), strict=False))
                except ValueError:
                    raise StackError(
                        f"MLFLOW_TRUSTED_PROXIES entry {raw.strip()!r} is not an address or "
                        "network such as 10.244.0.0/16 (comma-separated).") from None
        postgres_user = env.get("POSTGRES_USER", "").strip() or "mlflow"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}", postgres_user):
            raise StackError(f"POSTGRES_USER={postgres_user!r} is not a PostgreSQL role name.")
        workers = _int(env, "MLFLOW_WORKERS", default_workers(), 1)
        pool_default, overflow_default = default_pool(workers)
        pool = _int(env, "MLFLOW_DB_POOL_SIZE", pool_default, 1)
        overflow = _int(env, "MLFLOW_DB_MAX_OVERFLOW", overflow_default, 0)
        peak = workers * 2 * (pool + overflow)
        if peak > POSTGRES_MAX_CONNECTIONS - CONNECTIONS_KEPT_FOR_OTHERS:
            raise StackError(
                f"{workers} workers x 2 databases x (MLFLOW_DB_POOL_SIZE {pool} + "
                f"MLFLOW_DB_MAX_OVERFLOW {overflow}) is {peak} database connections at peak, "
                f"but PostgreSQL accepts {POSTGRES_MAX_CONNECTIONS} and "
                f"{CONNECTIONS_KEPT_FOR_OTHERS} are kept for gc, jobs and backups: lower "
                "them or MLFLOW_WORKERS (or leave them empty to have them derived)."
            )
        return cls(
            allowed_hosts=allowed_hosts(env.get("MLFLOW_ALLOWED_HOSTS", "")),
            cors_allowed_origins=cors_allowed_origins(env.get("MLFLOW_ALLOWED_HOSTS", ""),
                                                      env.get("MLFLOW_CORS_ALLOWED_ORIGINS", "")),
            default_permission=permission,
            admin_username=admin,
            workers=workers,
            gateway_private_upstreams=gateway_private_upstreams,
            db_pool_size=pool,
            db_max_overflow=overflow,
            job_engine=job_engine,
            auth_cache_ttl_seconds=_int(env, "MLFLOW_AUTH_CACHE_TTL_SECONDS", 60, 0),
            login_failure_limit=_int(env, "MLFLOW_LOGIN_FAILURE_LIMIT", 10, 0),
            login_window_seconds=_int(env, "MLFLOW_LOGIN_WINDOW_SECONDS", 60, 1),
            login_block_seconds=_int(env, "MLFLOW_LOGIN_BLOCK_SECONDS", 60, 1),
            startup_timeout_seconds=_int(env, "MLFLOW_STARTUP_TIMEOUT", 120, 1),
            bucket=bucket,
            postgres_host=env.get("POSTGRES_HOST", "postgres"),
            postgres_port=_int(env, "POSTGRES_PORT", 5432, 1),
            postgres_user=postgres_user,
            migrations=migrations,
            job_runner=job_runner,
            trusted_proxies=tuple(trusted_proxies),
            s3_endpoint_url=env.get("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000"),
        )

    def database_uri(self, database: str) -> str:
        # No password here: libpq reads it from PGPASSFILE, so it stays out of argv and logs.
        # psycopg2 explicitly: SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3.
        return (f"postgresql+psycopg2://{self.postgres_user}@{self.postgres_host}"
                f":{self.postgres_port}/{database}")

    def tracking_store_uri(self) -> str:
        """The runs and registry database, with the stack's batching plugin
        (sqlalchemy_batching.py) for every engine MLflow makes from it."""
        return f"{self.database_uri('mlflow')}?plugin=stack_batching"
