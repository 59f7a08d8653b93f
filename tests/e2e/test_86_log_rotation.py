"""Every service's log is bounded (json-file with max-size and max-file), with the defaults
from docker-compose.yml and with the limits an operator sets in .env."""

import json

from .stack import ALL_PROFILES
from .test_85_hardening import inspect, project_containers

DEFAULT_LIMITS = {"max-size": "10m", "max-file": "5"}


def test_every_running_and_finished_container_has_a_bounded_log(stack):
    services = {}
    for cid in project_containers(stack):
        info = inspect(cid)
        services[info["Config"]["Labels"]["com.docker.compose.service"]] = info["HostConfig"]["LogConfig"]
    # The services every stack has (the suite's other tests may have started more).
    assert {"secrets", "postgres", "minio", "minio-init", "mlflow"} <= services.keys()
    for service, log_config in services.items():
        assert log_config["Type"] == "json-file", service
        assert log_config["Config"] == DEFAULT_LIMITS, (service, log_config)


def test_every_service_of_every_profile_takes_the_limits_from_env(stack):
    config = json.loads(stack.compose(
        *ALL_PROFILES, "config", "--format", "json",
        env={"LOG_MAX_SIZE": "3m", "LOG_MAX_FILES": "2"}).stdout)
    assert len(config["services"]) >= 8
    for name, service in config["services"].items():
        assert service.get("logging") == {
            "driver": "json-file", "options": {"max-size": "3m", "max-file": "2"}}, name
