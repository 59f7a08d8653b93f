"""The `gc` service (compose profile gc): runs mlflow_stack.gc once a day.

  GC_SCHEDULE_TIME  time of day, UTC, HH:MM or HH:MM:SS (default 03:30)
  GC_OLDER_THAN     what gc deletes: runs and experiments deleted longer ago (default 30d)

Each gc runs in its own process, so a failed or crashed one is logged and the next day's
runs as usual, and memory is given back between runs. SIGTERM (docker compose stop) ends
the wait at once, or stops a running gc, which records itself as interrupted.
"""

import datetime
import os
import re
import signal
import subprocess
import sys
import threading

from mlflow_stack import StackError
from mlflow_stack.gc import DEFAULT_OLDER_THAN, parse_duration

DEFAULT_TIME = "03:30"
# What `docker compose stop` allows by default is 10 s; a stopped gc records itself in less.
STOP_SECONDS = 8


def log(message: str) -> None:
    print(f"gc-schedule: {message}", file=sys.stderr, flush=True)


def parse_time(text: str) -> datetime.time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59 \
            or int(match.group(3) or 0) > 59:
        raise StackError(
            f"GC_SCHEDULE_TIME={text!r} is not a time of day; use HH:MM (UTC), such as 03:30."
        )
    return datetime.time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def next_run(now: datetime.datetime, at: datetime.time) -> datetime.datetime:
    """The first moment after now (an aware UTC datetime) whose time of day is at."""
    candidate = datetime.datetime.combine(now.date(), at, tzinfo=datetime.timezone.utc)
    return candidate if candidate > now else candidate + datetime.timedelta(days=1)


def main() -> int:
    try:
        at = parse_time(os.environ.get("GC_SCHEDULE_TIME", "").strip() or DEFAULT_TIME)
        older_than = os.environ.get("GC_OLDER_THAN", "").strip() or DEFAULT_OLDER_THAN
        parse_duration(older_than)
    except StackError as e:
        log(f"error: {e}")
        return 1

    stopping = threading.Event()
    child: list[subprocess.Popen] = []

    def stop(signum, frame):
        stopping.set()
        for process in child:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    # As PID 1, Python gets no default SIGTERM behaviour: without a handler it is ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    while not stopping.is_set():
        due = next_run(datetime.datetime.now(datetime.timezone.utc), at)
        log(f"next gc at {due:%Y-%m-%d %H:%M:%S} UTC, deleting what was deleted more than "
            f"{older_than} before")
        # Sleep in steps, so a clock that jumps (suspend, NTP) is noticed within a minute.
        while not stopping.is_set():
            left = (due - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
            if left <= 0:
                break
            stopping.wait(min(left, 60))
        if stopping.is_set():
            break
        command = [sys.executable, "-m", "mlflow_stack.gc", "--older-than", older_than,
                   "--trigger", "schedule"]
        child[:] = [subprocess.Popen(command)]  # its one-line summary goes to the log
        if stopping.is_set():  # SIGTERM came just before the child existed
            child[0].send_signal(signal.SIGTERM)
        status = child[0].wait()
        if status != 0 and not stopping.is_set():
            log(f"gc failed (exit {status}, reason above); the next one runs as scheduled")
    if child and child[0].poll() is None:
        try:
            child[0].wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child[0].kill()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
