"""Prometheus metrics: mlflow counts every request by route and status over all workers on
a port only the stack network reaches, MinIO's metrics need no keys, the public port
serves no metrics, and the monitoring profile's Prometheus scrapes both and answers the
README's three queries."""

import re
import time
import urllib.parse

import mlflow
import requests

from .stack import ALL_PROFILES

MONITORING = ("--profile", "monitoring")
LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"
# The queries README.md shows an operator.
README_QUERIES = (
    'sum by (route) (rate(mlflow_http_requests_total[5m]))',
    'histogram_quantile(0.95, sum by (le, route) (rate(mlflow_http_request_duration_seconds_bucket[5m])))',
    'sum(rate(mlflow_http_requests_total{status=~"5.."}[5m])) / sum(rate(mlflow_http_requests_total[5m]))',
)

FETCH = r"""
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())
"""


def scrape(stack, url="http://mlflow:9464/metrics") -> str:
    """What a scraper on the stack network gets, with no credentials."""
    with stack.machine(f"scraper-{time.time_ns()}") as scraper:
        return scraper.run_python(FETCH, url, timeout=120)


def sample(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match[3])
    return total


def test_requests_are_counted_by_route_and_status_across_workers(stack, admin, as_user):
    labels = {"method": "POST", "route": LOG_BATCH, "status": "200"}
    before = scrape(stack)
    as_user(*admin)
    client = mlflow.MlflowClient()
    run = client.create_run(client.create_experiment(f"metrics-{time.time_ns()}")).info.run_id
    calls = 24  # a new connection each: the calls land on every worker
    for step in range(calls):
        requests.post(stack.url + LOG_BATCH, auth=admin, timeout=30, json={
            "run_id": run, "metrics": [{"key": "m", "value": step, "timestamp": 1, "step": step}]},
        ).raise_for_status()
    requests.get(stack.url + "/api/2.0/mlflow/runs/get", params={"run_id": run},
                 auth=("admin", "wrong-password"), timeout=30)
    after = scrape(stack)

    assert sample(after, "mlflow_http_requests_total", **labels) \
        - sample(before, "mlflow_http_requests_total", **labels) == calls
    assert sample(after, "mlflow_http_request_duration_seconds_count", **labels) \
        - sample(before, "mlflow_http_request_duration_seconds_count", **labels) == calls
    denied = {"method": "GET", "route": "/api/2.0/mlflow/runs/get", "status": "401"}
    assert sample(after, "mlflow_http_requests_total", **denied) \
        - sample(before, "mlflow_http_requests_total", **denied) == 1
    # Route templates, never a run id or an artifact path.
    assert run not in after


def test_the_public_port_serves_no_metrics(stack, admin):
    for auth in (None, admin):
        response = requests.get(stack.url + "/metrics", auth=auth, timeout=30)
        assert response.status_code in (401, 404), response.status_code
        assert "mlflow_http_requests_total" not in response.text
    published = stack.compose("port", "mlflow", "9464", check=False)
    assert not published.stdout.strip()


def test_minio_metrics_need_no_keys(stack):
    text = scrape(stack, "http://minio:9000/minio/v2/metrics/cluster")
    assert "minio_cluster_" in text or "minio_node_" in text


def test_monitoring_profile_scrapes_mlflow_and_minio(stack, admin):
    stack.compose(*MONITORING, "up", "-d", "prometheus")
    try:
        stack.wait_healthy(120, service="prometheus", probe=f"{stack.prometheus_url}/-/ready")
        deadline = time.monotonic() + 90
        while True:
            targets = requests.get(f"{stack.prometheus_url}/api/v1/targets", timeout=30).json()
            health = {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}
            if health.get("mlflow") == "up" and health.get("minio") == "up":
                break
            assert time.monotonic() < deadline, targets
            time.sleep(3)
        for _ in range(5):
            requests.get(stack.url + "/api/2.0/mlflow/experiments/search", auth=admin,
                         params={"max_results": 1}, timeout=30)
        deadline = time.monotonic() + 120
        while True:  # a rate needs two scrapes (15 s apart) that both saw the counter
            rates = query(stack, README_QUERIES[0])
            if any(r["metric"].get("route") == "/api/2.0/mlflow/experiments/search"
                   for r in rates):
                break
            assert time.monotonic() < deadline, rates
            time.sleep(3)
        for readme_query in README_QUERIES[1:]:
            query(stack, readme_query)  # valid PromQL over our metric names
        assert query(stack, 'minio_cluster_health_status') or query(stack, 'up{job="minio"}')
    finally:
        stack.compose(*ALL_PROFILES, "rm", "--stop", "--force", "prometheus", check=False)


def query(stack, promql: str) -> list:
    response = requests.get(f"{stack.prometheus_url}/api/v1/query?"
                            + urllib.parse.urlencode({"query": promql}), timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (promql, body)
    return body["data"]["result"]
