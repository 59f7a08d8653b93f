"""Samples the resident memory of the stack's containers while a test runs.

Resident means anonymous memory (heaps, buffers): what grows if a service holds a request
or response body in memory. Page cache from files the services write is left out; the
kernel reclaims it under pressure.
"""

import re
import subprocess
import threading
from pathlib import Path

MIB = 1 << 20
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30, "kB": 1000, "MB": 10**6, "GB": 10**9}


def _cgroup_stat_file(container_id: str) -> tuple[Path, str] | None:
    """memory.stat of the container on this host, and the field that counts resident memory."""
    candidates = (
        (Path(f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat"), "total_rss"),  # v1
        (Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.stat"), "anon"),
        (Path(f"/sys/fs/cgroup/docker/{container_id}/memory.stat"), "anon"),
    )
    for path, field in candidates:
        if path.exists():
            return path, field
    return None


def _read_stat(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        name, value = line.split()
        if name == field:
            return int(value)
    raise AssertionError(f"{field} missing from {path}")


def _docker_stats() -> dict[str, int]:
    """Fallback where the cgroup files are not visible: docker's own figure (full id -> bytes)."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--no-trunc", "--format",
                          "{{.ID}} {{.MemUsage}}"], capture_output=True, text=True).stdout
    usage = {}
    for line in out.splitlines():
        match = re.match(r"(\w+) ([\d.]+)(\w+) /", line)
        if match:
            usage[match[1]] = int(float(match[2]) * UNITS[match[3]])
    return usage


class MemoryPeaks:
    """Context manager: the highest resident memory of each service while it was active."""

    def __init__(self, services_to_ids: dict[str, str], interval: float = 0.25):
        self.ids = {
            service: subprocess.run(["docker", "inspect", "-f", "{{.Id}}", cid],
                                    capture_output=True, text=True).stdout.strip()
            for service, cid in services_to_ids.items()
        }
        self.interval = interval
        self.baseline: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, int]:
        files = {service: _cgroup_stat_file(cid) for service, cid in self.ids.items()}
        if all(files.values()):
            return {service: _read_stat(*files[service]) for service in self.ids}
        stats = _docker_stats()
        return {service: stats[cid] for service, cid in self.ids.items() if cid in stats}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for service, used in self.sample().items():
                self.peak[service] = max(self.peak.get(service, 0), used)

    def __enter__(self) -> "MemoryPeaks":
        self.baseline = self.sample()
        self.peak = dict(self.baseline)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, service: str) -> int:
        return self.peak[service] - self.baseline[service]

    def table(self) -> str:
        rows = [f"{'service':<12} {'before MiB':>10} {'peak MiB':>9} {'growth MiB':>10}"]
        for service in sorted(self.peak):
            rows.append(f"{service:<12} {self.baseline[service] / MIB:>10.0f} "
                        f"{self.peak[service] / MIB:>9.0f} {self.growth(service) / MIB:>10.0f}")
        return "\n".join(rows)
