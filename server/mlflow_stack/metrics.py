"""Prometheus metrics of the tracking server: requests by route and status, across workers.

MLflow's `--expose-prometheus` is not used: it measures only the Flask routes (not the
FastAPI ones: artifact downloads, gateway, OTLP), labels requests by MLflow's version
instead of the endpoint, and serves /metrics on the public port behind the login.

Here an ASGI middleware (outside MLflow's app, so it sees every route and the login
limiter's 429s) counts requests by method, route template and status, and times them.
Each worker writes its values to PROMETHEUS_MULTIPROC_DIR (a tmpfs emptied at every
start by serve.py) and serves the sum of all workers on METRICS_PORT, a port the stack
never publishes: only containers on the stack's network (the monitoring profile's
Prometheus) reach it, and no password is needed or handed out. Every worker listens on
that port with SO_REUSEPORT, so the endpoint survives a worker restart.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
import time

METRICS_PORT = 9464
UNMATCHED = "<unmatched>"
# Anything else a client sends as a method is counted as OTHER (bounded label values).
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# Request durations from a trivial call (~5 ms) to a large artifact transfer.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@functools.cache
def _request_metrics():
    # Once per process: Starlette may build its middleware stack more than once, and
    # prometheus_client refuses a second metric of the same name.
    from prometheus_client import Counter, Histogram

    requests = Counter(
        "mlflow_http_requests", "HTTP requests answered by the tracking server",
        ["method", "route", "status"])
    duration = Histogram(
        "mlflow_http_request_duration_seconds",
        "Time from a request's arrival to the end of its response",
        ["method", "route", "status"], buckets=BUCKETS)
    return requests, duration


class RequestMetricsMiddleware:
    def __init__(self, app, route_of):
        self.app = app
        self.route_of = route_of
        self.requests, self.duration = _request_metrics()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        method = scope.get("method", "GET")
        method = method if method in METHODS else "OTHER"
        status = 500  # an exception before the response started ends as a 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = self.route_of(scope, method, scope.get("path", ""))
            labels = (method, route, str(status))
            self.requests.labels(*labels).inc()
            self.duration.labels(*labels).observe(time.perf_counter() - started)


def route_resolver(flask_app):
    """(scope, method, path) -> the route's template, e.g. /api/2.0/mlflow/runs/get, so
    metrics have one series per endpoint and not one per run id or artifact path."""
    flask_urls = flask_app.url_map.bind("localhost")

    @functools.lru_cache(maxsize=4096)
    def flask_rule(method: str, path: str) -> str:
        try:
            rule, _ = flask_urls.match(path, method=method, return_rule=True)
            return rule.rule
        except Exception:  # noqa: BLE001 - 404/405/redirects: not an endpoint
            return UNMATCHED

    def route_of(scope, method: str, path: str) -> str:
        # FastAPI's own routes leave themselves in the scope; the rest is MLflow's Flask app.
        route = scope.get("route")
        return getattr(route, "path", None) or flask_rule(method, path)

    return route_of


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    registry = None

    def do_GET(self):  # noqa: N802 - http.server's naming
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # scrapes every 15 s would drown the server's log
        pass


class _ReusePortServer(http.server.ThreadingHTTPServer):
    allow_reuse_port = True
    daemon_threads = True


def serve_metrics(port: int = METRICS_PORT) -> None:
    """Serve the sum of all workers' metrics on `port`, from a thread of this worker."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    handler = type("MetricsHandler", (_MetricsHandler,), {"registry": registry})
    try:
        server = _ReusePortServer(("0.0.0.0", port), handler)
    except OSError as e:
        print(f"mlflow-stack: warning: metrics port {port} unavailable ({e}); this worker "
              "does not serve /metrics", file=sys.stderr, flush=True)
        return
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def install(fastapi_app) -> None:
    """Count this worker's requests and serve everyone's, if serve.py enabled metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from mlflow.server import app as flask_app

    fastapi_app.add_middleware(RequestMetricsMiddleware,
                               route_of=route_resolver(flask_app))
    serve_metrics()
