"""Permanently delete runs and experiments in the deleted stage (scripts/gc).

Deleting a run or experiment in MLflow only marks it; its rows and every artifact byte stay
until `mlflow gc` removes them. This runs MLflow's own gc (its `_gc_tracking_resources`)
inside the stack, where the database and S3 credentials are, with three additions:

- Artifact URIs. The server stores `mlflow-artifacts:/<experiment>/<run>/artifacts`, which
  MLflow's gc can only resolve by calling the tracking server over HTTP as some user. Here
  they are resolved the way the server does (onto `s3://<bucket>/artifacts`) and deleted
  straight from MinIO, so gc needs no login and reports what it removed.
- Experiments. MLflow's gc deletes the experiment's rows (its logged models and traces go
  by cascade) but leaves everything under the experiment's artifact folder that was not a
  deleted run's: logged models (where MLflow 3 keeps models) and trace data. The folder
  is deleted too when no remaining experiment's artifact location overlaps it.
- Registered models. A model version keeps pointing at the files it was registered from;
  gc leaves every object under a version's storage location, so a registered model never
  loses its files because the run or experiment it came from was deleted.

Every gc is recorded in the stack_gc_runs table (`--last` prints the latest), and two at
once are prevented with a PostgreSQL advisory lock.

  python -m mlflow_stack.gc [--older-than 30d] [--dry-run]
  python -m mlflow_stack.gc --last
"""

import argparse
import contextlib
import dataclasses
import functools
import io
import logging
import posixpath
import re
import shutil
import signal
import sys
import time
from urllib.parse import urlparse

from mlflow_stack import StackError
from mlflow_stack.dependencies import postgres_connection
from mlflow_stack.runtime_files import credential_files_for_this_process
from mlflow_stack.settings import Settings

DEFAULT_OLDER_THAN = "30d"
_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Where `--artifacts-destination` puts mlflow-artifacts:/ paths (serve.py).
DESTINATION_PREFIX = "artifacts"
# Any fixed 64-bit number; it only has to differ from other advisory locks on the database.
LOCK_KEY = 0x6D6C666C6F776763  # "mlflowgc"
TABLE = "stack_gc_runs"
_ARTIFACTS_ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"


def parse_duration(text: str) -> int:
    """Seconds in "30d", "12h", "90m" or "0s"."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise StackError(
            f"--older-than {text!r} is not a duration; use a whole number followed by d, h, m "
            "or s, such as 30d, 12h, 90m or 0s."
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclasses.dataclass
class Counts:
    runs: int = 0
    experiments: int = 0
    logged_models: int = 0
    objects: int = 0
    bytes: int = 0
    kept_objects: int = 0

    def summary(self) -> str:
        return (f"{_plural(self.runs, 'run')}, {_plural(self.experiments, 'experiment')}, "
                f"{_plural(self.logged_models, 'logged model')} and "
                f"{_plural(self.objects, 'artifact object')} ({format_bytes(self.bytes)})")


class ArtifactDeleter:
    """Deletes (or, in a dry run, only counts) the objects under an artifact URI."""

    def __init__(self, client, bucket: str, dry_run: bool, counts: Counts):
        self._client = client
        self._bucket = bucket
        self._protected: list[str] = []  # key prefixes registered model versions point into
        self._dry_run = dry_run
        self._counts = counts
        self._seen: set[str] = set()  # a dry run would count a run's objects again with its experiment

    def key_prefix(self, artifact_uri: str | None) -> str | None:
        """The object key prefix an artifact URI stands for in the stack's bucket, or None."""
        if not artifact_uri:
            return None
        parsed = urlparse(artifact_uri)
        if parsed.scheme == "mlflow-artifacts":
            path = posixpath.join(DESTINATION_PREFIX, parsed.path.strip("/"))
        elif parsed.scheme == "s3" and parsed.netloc == self._bucket:
            path = parsed.path
        elif parsed.scheme in ("http", "https") and _ARTIFACTS_ROUTE in parsed.path:
            path = posixpath.join(DESTINATION_PREFIX, parsed.path.split(_ARTIFACTS_ROUTE, 1)[1])
        else:
            return None
        return posixpath.normpath("/" + path).strip("/")

    def protect(self, artifact_uris) -> None:
        self._protected = [p for p in map(self.key_prefix, artifact_uris) if p]

    def _is_protected(self, key: str) -> bool:
        return any(key == p or key.startswith(p + "/") for p in self._protected)

    def delete(self, prefix: str) -> None:
        # Never the whole destination: a run or experiment whose location is the root would
        # otherwise take every artifact of the stack with it.
        if prefix.count("/") < 1 or not prefix.startswith(DESTINATION_PREFIX + "/"):
            raise ValueError(f"refusing to delete s3://{self._bucket}/{prefix}")
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix + "/"):
            batch = []
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key in self._seen:
                    continue
                self._seen.add(key)
                if self._is_protected(key):
                    self._counts.kept_objects += 1
                    continue
                batch.append({"Key": key})
                self._counts.objects += 1
                self._counts.bytes += obj.get("Size", 0)
            if batch and not self._dry_run:
                response = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})
                if response.get("Errors"):
                    error = response["Errors"][0]
                    raise RuntimeError(f"MinIO did not delete {error['Key']}: {error['Message']}")

    def repository(self, artifact_uri, tracking_uri=None, registry_uri=None):
        """A stand-in for the artifact repository MLflow's gc asks for: it only deletes."""
        from mlflow.exceptions import InvalidUrlException

        deleter, prefix = self, self.key_prefix(artifact_uri)

        class _Repository:
            def delete_artifacts(self, artifact_path=None):
                # MLflow's gc reports this and goes on without deleting the files.
                if prefix is None:
                    raise InvalidUrlException(f"{artifact_uri} is not in the stack's bucket")
                try:
                    deleter.delete(posixpath.join(prefix, artifact_path or "").rstrip("/"))
                except ValueError as e:
                    raise InvalidUrlException(str(e)) from None

            def __repr__(self):
                return artifact_uri

        return _Repository()


# --- the record of gc runs ----------------------------------------------------------------

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL,
    trigger text NOT NULL,
    older_than text NOT NULL,
    runs integer NOT NULL DEFAULT 0,
    experiments integer NOT NULL DEFAULT 0,
    logged_models integer NOT NULL DEFAULT 0,
    objects integer NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    kept_objects integer NOT NULL DEFAULT 0,
    error text
)"""
_COLUMNS = ("id", "started_at", "finished_at", "status", "trigger", "older_than", "runs",
            "experiments", "logged_models", "objects", "bytes", "kept_objects", "error")


def last_run(connect) -> dict | None:
    """The latest gc (status running, ok or failed) as a dict of _COLUMNS, or None if gc has
    never run. connect(dbname) opens a psycopg2 connection (dependencies.postgres_connection)."""
    with connect("mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (TABLE,))
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} ORDER BY id DESC LIMIT 1")
        row = cursor.fetchone()
    return dict(zip(_COLUMNS, row)) if row else None


def describe(row: dict | None) -> str:
    if row is None:
        return "gc has never run (scripts/gc runs it; docker compose --profile gc up -d daily)"
    started = row["started_at"].strftime("%Y-%m-%d %H:%M:%S %Z")
    counts = Counts(**{f.name: row[f.name] for f in dataclasses.fields(Counts)})
    text = f"last gc ({row['trigger']}, older than {row['older_than']}) started {started}: "
    if row["status"] == "running":
        return text + "still running (or stopped without saying so)"
    if row["finished_at"] is None:  # killed; the next gc marked it
        return text + f"failed: {row['error']}"
    seconds = (row["finished_at"] - row["started_at"]).total_seconds()
    if row["status"] == "ok":
        return text + f"ok in {seconds:.0f} s, deleted {counts.summary()}"
    return text + f"failed after {seconds:.0f} s having deleted {counts.summary()}: {row['error']}"


@contextlib.contextmanager
def _exclusive(connect):
    """Hold the gc lock and yield a connection for the record; StackError if it is taken."""
    with connect("mlflow") as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            if not cursor.fetchone()[0]:
                raise StackError(
                    "another gc is running (the scheduled one, or scripts/gc elsewhere); "
                    "wait for it to finish: scripts/gc --last shows when it started."
                )
            cursor.execute(_CREATE_TABLE)
            # Holding the lock, any row still "running" is from a gc that was killed.
            cursor.execute(f"UPDATE {TABLE} SET status = 'failed', error = 'interrupted' "
                           "WHERE status = 'running'")
        yield connection


def _record_start(connection, trigger: str, older_than: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (status, trigger, older_than) "
                       "VALUES ('running', %s, %s) RETURNING id", (trigger, older_than))
        return cursor.fetchone()[0]


def _record_end(connection, record_id: int, counts: Counts, error: str | None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET finished_at = now(), status = %s, runs = %s, experiments = %s, "
            "logged_models = %s, objects = %s, bytes = %s, kept_objects = %s, error = %s "
            "WHERE id = %s",
            ("failed" if error else "ok", counts.runs, counts.experiments, counts.logged_models,
             counts.objects, counts.bytes, counts.kept_objects, error, record_id))


# --- the gc itself ------------------------------------------------------------------------

def _registered_locations(connect) -> list[str]:
    with connect("mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT storage_location FROM model_versions "
                       "WHERE storage_location IS NOT NULL")
        return [row[0] for row in cursor.fetchall()]


def _experiment_locations(connect) -> list[str]:
    with connect("mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT artifact_location FROM experiments")
        return [row[0] for row in cursor.fetchall()]


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def collect(settings: Settings, connect, older_than: str, dry_run: bool, counts: Counts,
            warn) -> None:
    """Run MLflow's gc on the stack's store, adding to counts as things go."""
    from mlflow.cli import _gc_tracking_resources
    from mlflow.environment_variables import MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
    from mlflow.tracking._tracking_service.utils import _get_store

    from mlflow_stack.proxied_s3 import _s3_client

    # MLflow logs each engine it makes at INFO; the operator wants gc's few lines only.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = _s3_client(settings.s3_endpoint_url, MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE.get())
    deleter = ArtifactDeleter(client, settings.bucket, dry_run, counts)
    deleter.protect(_registered_locations(connect))
    # Only in this process: the repositories MLflow's gc resolves artifact URIs with.
    for scheme in ("mlflow-artifacts", "s3", "http", "https"):
        _artifact_repository_registry.register(scheme, deleter.repository)

    store = _get_store(settings.tracking_store_uri(), f"s3://{settings.bucket}/{DESTINATION_PREFIX}")
    hard_delete_run = store._hard_delete_run
    hard_delete_experiment = store._hard_delete_experiment
    hard_delete_logged_model = store._hard_delete_logged_model

    def delete_run(run_id):
        if not dry_run:
            hard_delete_run(run_id)
        counts.runs += 1

    def delete_logged_model(model_id):
        if not dry_run:
            hard_delete_logged_model(model_id)
        counts.logged_models += 1

    def delete_experiment(experiment_id):
        location = store.get_experiment(experiment_id).artifact_location
        if not dry_run:
            hard_delete_experiment(experiment_id)
        counts.experiments += 1
        prefix = deleter.key_prefix(location)
        others = [p for p in map(deleter.key_prefix, _experiment_locations(connect)) if p]
        if dry_run and prefix in others:  # its own row is still there
            others.remove(prefix)
        if prefix is None:
            warn(f"kept the files of experiment {experiment_id}: {location} is not in the "
                 "stack's bucket")
        elif any(_overlaps(prefix, other) for other in others):
            warn(f"kept the files of experiment {experiment_id}: another experiment's "
                 f"artifact location overlaps {location}")
        else:
            try:
                deleter.delete(prefix)
            except ValueError as e:
                warn(f"kept the files of experiment {experiment_id}: {e}")

    store._hard_delete_run = delete_run
    store._hard_delete_experiment = delete_experiment
    store._hard_delete_logged_model = delete_logged_model

    seconds = parse_duration(older_than)
    # MLflow's gc says what it does per run, experiment and model on stdout; keep its
    # warnings (artifacts it could not delete) and drop the per-item lines.
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            _gc_tracking_resources(
                backend_store=store, run_ids=None, experiment_ids=None, logged_model_ids=None,
                older_than=older_than, time_delta=seconds * 1000, skip_experiments=False,
                skip_logged_models=False,
            )
    finally:
        for line in output.getvalue().splitlines():
            if line.strip() and not line.endswith("has been permanently deleted."):
                warn(line)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/gc",
        description="Permanently delete runs and experiments that were deleted more than "
                    "--older-than ago, with their artifacts.")
    p.add_argument("--older-than", default=DEFAULT_OLDER_THAN, metavar="AGE",
                   help="30d, 12h, 90m, 0s, ... (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.add_argument("--last", action="store_true", help="print when gc last ran and what it did")
    p.add_argument("--trigger", default="manual", help=argparse.SUPPRESS)
    return p


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # `docker compose stop` of the scheduled service: end like Ctrl-C, recorded as failed.
    signal.signal(signal.SIGTERM, _stop)

    def warn(text):
        print(f"gc: {text}", file=sys.stderr, flush=True)

    runtime_dir = None
    try:
        older_than = args.older_than.strip()
        parse_duration(older_than)
        settings, runtime_dir = credential_files_for_this_process("gc")
        connect = functools.partial(postgres_connection, settings)
        if args.last:
            print(describe(last_run(connect)))
            return 0
        counts = Counts()
        started = time.monotonic()
        if args.dry_run:
            collect(settings, connect, older_than, True, counts, warn)
            print(f"gc (dry run): would delete {counts.summary()} deleted more than "
                  f"{older_than} ago")
            if counts.kept_objects:
                print(f"gc (dry run): would keep {_plural(counts.kept_objects, 'object')} "
                      "that registered model versions use")
            return 0
        with _exclusive(connect) as record:
            record_id = _record_start(record, args.trigger, older_than)
            try:
                collect(settings, connect, older_than, False, counts, warn)
            except BaseException as e:
                reason = "interrupted" if isinstance(e, KeyboardInterrupt) else (
                    f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
                _record_end(record, record_id, counts, reason)
                raise StackError(
                    f"failed after deleting {counts.summary()} ({reason}); what is left "
                    "is still marked deleted, so the next gc picks it up."
                ) from None
            _record_end(record, record_id, counts, None)
        print(f"gc: deleted {counts.summary()} that were deleted more than {older_than} ago, "
              f"in {time.monotonic() - started:.0f} s")
        if counts.kept_objects:
            print(f"gc: kept {_plural(counts.kept_objects, 'object')} that registered model "
                  "versions use")
        return 0
    except StackError as e:
        warn(str(e))
        return 1
    except KeyboardInterrupt:
        warn("interrupted")
        return 1
    except Exception as e:  # noqa: BLE001 - one line for the operator, not a traceback
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        warn(f"{type(e).__name__}: {message}")
        return 1
    finally:
        if runtime_dir is not None:
            shutil.rmtree(runtime_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
