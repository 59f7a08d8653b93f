"""scripts/benchmark at a tiny size, so it cannot rot: it starts its own throwaway copy of
the stack and the anchor beside it, measures every row and writes the table."""

import re
import subprocess
import sys

from .stack import REPO

ROWS = (
    "trivial authenticated GET, one reused connection",
    "trivial authenticated GET, new connection per call",
    "log_batch x 10 points",
    "artifact upload", "artifact download", "download time to first byte",
    "memory growth", "default order", "start_time DESC as the runs page asks",
    "ordered by a metric", "default order as a team member",
    "start_time DESC as the runs page asks as a team member",
    "ordered by a metric as a team member", "runs page of a",
    "first visit with an empty cache over an emulated",
    "docker compose up -d to mlflow healthy",
)


def test_benchmark_runs_end_to_end_at_tiny_size(stack, tmp_path):
    # `stack` only so the images are built; the benchmark makes its own copy of the stack.
    report = tmp_path / "performance.md"
    report.write_text("# Performance\n\nKept above the results.\n")
    result = subprocess.run(
        [sys.executable, "-m", "tests.load.benchmark", "--size", "tiny", "--runs", "200",
         "--artifact-mib", "4", "--project", f"{stack.project}bench", "--output", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    text = report.read_text()
    assert text.startswith("# Performance\n\nKept above the results.")
    for row in ROWS:
        assert row in text, f"no row with {row!r}:\n{text}"
    assert re.search(r"p50 ours/anchor \d+\.\d\dx", text), text
    assert re.search(r"req/s \d+\.\d\dx", text), text
    assert re.search(r"ours/mc \d+\.\d\dx", text), text
    assert re.search(r"MB \d+\.\d\dx", text), text
    assert re.search(r"first visit ours/anchor \d+\.\d\dx", text), text
    assert "errors" not in text, text
    leftovers = subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                                f"label=com.docker.compose.project={stack.project}bench"],
                               capture_output=True, text=True).stdout
    anchor = subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                             f"name={stack.project}bench-anchor"], capture_output=True, text=True).stdout
    assert not (leftovers + anchor).strip(), "the benchmark left containers behind"
