#!/usr/bin/env python3
"""Backup and restore of the stack's data; run through scripts/backup and scripts/restore.

Host side: the Python standard library and `docker compose` only. Everything that touches
the data runs inside the stack's own containers (`docker compose exec -T`), as PostgreSQL's
superuser (local peer login) and MinIO's root account (mc-root.sh), so no credential ever
reaches the host, argv or this archive.

The archive is one uncompressed tar:
    databases/mlflow.pgdump        pg_dump -Fc of the tracking database (runs, registry)
    databases/mlflow_auth.pgdump   pg_dump -Fc of the auth database (users, permissions)
    bucket/<key>                   every object of the artifact bucket, under its key
    manifest.json                  sha256 and size of every file above, versions, times,
                                   and fingerprints (never the values) of the two keys the
                                   stored AI Gateway and webhook secrets are encrypted with
Everything is streamed: memory use does not grow with the data. Disk: the archive itself
on the host, plus one copy of the bucket in the minio container's temporary space while
it is copied (the same on restore).
"""

import argparse
import datetime
import hashlib
import io
import json
import os
import posixpath
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from stack_host import NO_OUTPUT, compose_command, last_line, version_tuple

FORMAT = "mlflow-stack-backup/1"
DATABASES = ("mlflow", "mlflow_auth")
DATABASE_DIR = "databases/"
BUCKET_DIR = "bucket/"
MANIFEST = "manifest.json"
CHUNK = 1 << 20
PROG = os.environ.get("STACK_PROG", "backup")

# Runs inside the minio container. Copies the bucket to a private temporary directory,
# then writes it to stdout as a tar (mc cannot write a tar itself). Bounded memory.
BUCKET_TO_TAR = r"""
set -euo pipefail
bucket="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/objects"
# stdout carries the tar, so mc's own messages go to stderr with its errors.
mc-root.sh mirror "stack/$bucket" "$tmp/objects" >&2 \
  || { echo "mc mirror of stack/$bucket exited with status $?" >&2; exit 1; }
tar -C "$tmp/objects" --format=pax -cf - . \
  || { echo "tar of the copied objects exited with status $?" >&2; exit 1; }
"""

# Runs inside the minio container: reads a tar of objects on stdin and makes the bucket
# hold exactly those objects.
TAR_TO_BUCKET = r"""
set -euo pipefail
bucket="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/objects"
tar -C "$tmp/objects" --no-same-owner --no-same-permissions -xf - \
  || { echo "tar of the archive's objects exited with status $?" >&2; exit 1; }
mc-root.sh mirror --overwrite --remove "$tmp/objects/" "stack/$bucket/" >&2 \
  || { echo "mc mirror into stack/$bucket exited with status $?" >&2; exit 1; }
"""

SERVER_INFO = (
    "import json, os, mlflow; "
    "print(json.dumps({'mlflow_version': mlflow.__version__, "
    "'bucket': os.environ.get('MLFLOW_S3_BUCKET') or 'mlflow'}))"
)

# Runs inside the mlflow container: fingerprints of the encryption keys (current value
# first, then the values it replaced), never the keys. Empty lists if a key is missing.
KEY_FINGERPRINTS = r"""
import hashlib, json, os, pathlib
from mlflow.utils.crypto import DEFAULT_KEK_PASSPHRASE
from mlflow_stack import StackError
from mlflow_stack.encryption_keys import KEK_PASSPHRASE, WEBHOOK_KEY, key_values
directory = pathlib.Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow"))
def fingerprint(value):
    return hashlib.sha256(b"mlflow-stack key fingerprint\0" + value.encode()).hexdigest()[:16]
out = {}
for name in (KEK_PASSPHRASE, WEBHOOK_KEY):
    try:
        values = key_values(directory, name)
    except StackError:
        values = []
    if name == KEK_PASSPHRASE and values:
        # MLflow's public default, which the server re-wraps from (encryption_keys.py).
        values.append(DEFAULT_KEK_PASSPHRASE)
    out[name] = [fingerprint(v) for v in values]
print(json.dumps(out))
"""
KEY_VARIABLES = {"crypto_kek_passphrase": "MLFLOW_CRYPTO_KEK_PASSPHRASE",
                 "webhook_encryption_key": "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"}


class Failure(Exception):
    """Ends the command with one sentence."""


class UnexplainedFailure(Failure):
    """A step inside a container failed without printing why (seen once in CI: the bucket's
    whole tar had arrived, then `docker compose exec` reported a failure with no message)."""


def say(message: str) -> None:
    print(f"{PROG}: {message}", flush=True)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def run(what: str, *args: str, input: bytes | None = None) -> str:
    result = subprocess.run(compose_command(*args), input=input, capture_output=True)
    if result.returncode != 0:
        raise Failure(f"{what} failed: {last_line(result.stderr or result.stdout)}")
    return result.stdout.decode()


def running_services() -> set[str]:
    out = run("listing the stack's services", "--profile", "serve", "--profile", "models",
              "ps", "--status", "running", "--services")
    return set(out.split())


def require_running(*services: str) -> None:
    missing = [s for s in services if s not in running_services()]
    if missing:
        raise Failure(
            f"the {', '.join(missing)} service{'s are' if len(missing) > 1 else ' is'} not running "
            "in this stack (COMPOSE_PROJECT_NAME selects the stack); start it with: "
            "docker compose up -d"
        )


def psql(database: str, sql: str) -> str:
    return run(f"psql on database {database}", "exec", "-T", "postgres", "psql", "--no-psqlrc",
               "--username=postgres", f"--dbname={database}", "--set=ON_ERROR_STOP=1",
               "--tuples-only", "--no-align", "--command", sql).strip()


def key_fingerprints() -> dict[str, list[str]]:
    return json.loads(run("asking the mlflow container for its key fingerprints", "exec", "-T",
                          "mlflow", "python", "-c", KEY_FINGERPRINTS))


def encrypted_counts() -> tuple[int, int]:
    """(AI Gateway secrets, webhooks with a signing secret) in the tracking database."""
    counts = []
    for table, where in (("secrets", ""),
                         ("webhooks", " WHERE secret IS NOT NULL AND deleted_timestamp IS NULL")):
        exists = psql("mlflow", f"SELECT to_regclass('public.{table}') IS NOT NULL") == "t"
        counts.append(int(psql("mlflow", f"SELECT count(*) FROM {table}{where}")) if exists else 0)
    return counts[0], counts[1]


def check_keys(manifest: dict, ours: dict[str, list[str]]) -> None:
    """Refuse an archive whose encrypted secrets this stack's keys cannot open."""
    theirs = manifest.get("encryption")
    if not isinstance(theirs, dict):
        return  # made before the stack kept these keys
    problems = []
    for name, fingerprint_key, count_key, what in (
            ("crypto_kek_passphrase", "kek_passphrase_fingerprint", "gateway_secrets",
             "AI Gateway secret(s)"),
            ("webhook_encryption_key", "webhook_key_fingerprint", "webhook_secrets",
             "webhook signing secret(s)")):
        count, fingerprint = theirs.get(count_key) or 0, theirs.get(fingerprint_key)
        if count and fingerprint and fingerprint not in ours.get(name, []):
            problems.append((name, count, what))
    if problems:
        listed = " and ".join(f"{count} {what}" for _, count, what in problems)
        variables = " and ".join(KEY_VARIABLES[name] for name, _, _ in problems)
        raise Failure(
            f"the archive holds {listed} encrypted with other keys than this stack's, so they "
            f"could not be used after a restore; nothing was changed. Set {variables} in .env to "
            "the values of the stack the backup was made on (kept with the backup; on that stack: "
            "docker compose exec mlflow cat /secrets/mlflow/<crypto_kek_passphrase or "
            "webhook_encryption_key>), run docker compose up -d, then restore again; or pass "
            "--force to restore without them (they stay unreadable until entered again)")


def server_info() -> dict:
    return json.loads(run("asking the mlflow container for its version", "exec", "-T", "mlflow",
                          "python", "-c", SERVER_INFO))


class HashingReader:
    """Reads from a file object and keeps sha256 and size of what went through."""

    def __init__(self, f):
        self.f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


def safe_member_name(name: str) -> str | None:
    """The normalised relative name, or None if it could escape a directory."""
    if not name or name.startswith("/") or "\x00" in name:
        return None
    norm = posixpath.normpath(name)
    if norm in (".", "..") or norm.startswith("../") or norm.startswith("/"):
        return None
    if any(part == ".." for part in name.split("/")):
        return None
    return norm


def add_member(out: tarfile.TarFile, files: dict, name: str, f, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    reader = HashingReader(f)
    out.addfile(info, reader)
    files[name] = {"sha256": reader.sha256.hexdigest(), "size": reader.size}


# --------------------------------------------------------------------------- backup


def backup(directory: Path) -> Path:
    require_running("postgres", "minio", "mlflow")
    info = server_info()
    fingerprints = key_fingerprints()
    gateway_secrets, webhook_secrets = encrypted_counts()
    postgres_version = run("asking PostgreSQL for its version", "exec", "-T", "postgres",
                           "postgres", "--version").strip()
    started = now()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / f"mlflow-backup-{started.strftime('%Y%m%dT%H%M%SZ')}.tar"
    if final.exists():
        raise Failure(f"{final} already exists; wait a second and run the backup again")
    partial = directory / f".{final.name}.partial"
    files: dict[str, dict] = {}
    times = {"started": iso(started)}
    os.umask(0o077)  # the archive holds every run and the users' password hashes
    try:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".mlflow-backup-") as tmp, \
                tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as out:
            for database in DATABASES:
                say(f"dumping database {database}")
                dump = Path(tmp) / f"{database}.pgdump"
                with open(dump, "wb") as f:
                    result = subprocess.run(
                        compose_command("exec", "-T", "postgres", "pg_dump", "--username=postgres",
                                "--format=custom", f"--dbname={database}"),
                        stdout=f, stderr=subprocess.PIPE)
                if result.returncode != 0:
                    raise Failure(f"pg_dump of database {database} failed: "
                                  f"{last_line(result.stderr)}")
                with open(dump, "rb") as f:
                    add_member(out, files, f"{DATABASE_DIR}{database}.pgdump", f,
                               dump.stat().st_size)
                dump.unlink()
            times["databases_dumped"] = iso(now())
            say(f"copying the objects of bucket '{info['bucket']}'")
            count = copy_bucket_into(out, files, info["bucket"], Path(tmp))
            times["finished"] = iso(now())
            manifest = {
                "format": FORMAT,
                "created": iso(started),
                "times": times,
                "mlflow_version": info["mlflow_version"],
                "postgres_version": postgres_version,
                "bucket": info["bucket"],
                "compose_project": os.environ.get("COMPOSE_PROJECT_NAME", ""),
                "databases": list(DATABASES),
                "objects": count,
                "consistency": (
                    "Each database dump is a consistent snapshot (pg_dump) taken after "
                    "'started'. The bucket was copied after the dumps, so objects written "
                    "after a dump started may be included; nothing in the databases refers "
                    "to them, which is harmless."
                ),
                "secrets_included": False,
                "secrets_note": (
                    "Users' passwords are in mlflow_auth as hashes and come back with it. "
                    "The stack's generated secrets (database, MinIO and admin passwords, "
                    "encryption keys) are not in the archive: after a restore the admin logs "
                    "in with the password of the stack restored into (scripts/credentials). "
                    "The AI Gateway's API keys and the webhooks' signing secrets in the "
                    "databases are encrypted with MLFLOW_CRYPTO_KEK_PASSPHRASE and "
                    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY: keep both values (docker compose "
                    "exec mlflow cat /secrets/mlflow/crypto_kek_passphrase "
                    "/secrets/mlflow/webhook_encryption_key) with the backup, apart from it; "
                    "restore refuses a stack with other keys."
                ),
                "encryption": {
                    "kek_passphrase_fingerprint":
                        (fingerprints.get("crypto_kek_passphrase") or [None])[0],
                    "webhook_key_fingerprint":
                        (fingerprints.get("webhook_encryption_key") or [None])[0],
                    "gateway_secrets": gateway_secrets,
                    "webhook_secrets": webhook_secrets,
                },
                "files": files,
            }
            data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
            add_manifest(out, data)
        partial.rename(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    size = final.stat().st_size
    say(f"wrote {final} ({size} bytes: {len(DATABASES)} databases, {count} objects, "
        f"MLflow {info['mlflow_version']})")
    return final


def reason(output: bytes, code: int) -> str:
    """The last line a failed command printed, or its exit status when it printed nothing."""
    line = last_line(output)
    if line != NO_OUTPUT:
        return line
    if code < 0:
        return f"killed by signal {-code} without a message"
    if code > 128:
        return f"exit status {code} (killed by signal {code - 128}) without a message"
    return f"exit status {code} without a message"


def add_manifest(out: tarfile.TarFile, data: bytes) -> None:
    info = tarfile.TarInfo(MANIFEST)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(time.time())
    out.addfile(info, io.BytesIO(data))


def copy_bucket_into(out: tarfile.TarFile, files: dict, bucket: str, tmp: Path) -> int:
    count = 0
    with open(tmp / "mc.stderr", "w+b") as errors:
        proc = subprocess.Popen(
            compose_command("exec", "-T", "minio", "bash", "-c", BUCKET_TO_TAR, "bucket-to-tar", bucket),
            stdout=subprocess.PIPE, stderr=errors)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as inner:
                for member in inner:
                    if member.isdir():
                        continue
                    name = safe_member_name(member.name)
                    if not member.isfile() or name is None:
                        raise Failure(f"the copy of the bucket holds {member.name!r}, which is "
                                      "not a plain object; nothing was written")
                    add_member(out, files, BUCKET_DIR + name, inner.extractfile(member),
                               member.size)
                    count += 1
        except tarfile.TarError as e:
            proc.kill()
            proc.wait()
            errors.seek(0)
            line = last_line(errors.read())
            raise Failure(f"copying the bucket failed: {e if line == NO_OUTPUT else line}") from None
        finally:
            proc.stdout.close()
        if (code := proc.wait()) != 0:
            errors.seek(0)
            output = errors.read()
            failure = UnexplainedFailure if last_line(output) == NO_OUTPUT else Failure
            raise failure(f"copying bucket '{bucket}' failed: {reason(output, code)}")
    return count


# --------------------------------------------------------------------------- restore


def verify(path: Path) -> tuple[tarfile.TarFile, dict, list[tarfile.TarInfo]]:
    """Open the archive and check every file against the manifest, before anything else."""
    try:
        archive = tarfile.open(path, "r:")
        members = archive.getmembers()
    except (OSError, tarfile.TarError) as e:
        raise Failure(f"{path} is not a readable backup archive ({e}); nothing was restored")
    by_name = {}
    for member in members:
        if member.name in by_name:
            raise Failure(f"{path} holds {member.name!r} twice; it was not made by scripts/backup")
        if not member.isfile() or safe_member_name(member.name) != member.name:
            raise Failure(f"{path} holds {member.name!r}, which is not a plain file with a safe "
                          "name; it was not made by scripts/backup. Nothing was restored")
        by_name[member.name] = member
    if MANIFEST not in by_name:
        raise Failure(f"{path} has no {MANIFEST}; it was not made by scripts/backup")
    try:
        manifest = json.load(archive.extractfile(by_name[MANIFEST]))
        expected = manifest["files"]
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        if not all(isinstance(v, dict) for v in expected.values()):
            raise ValueError("its files entry is not a table of checksums")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Failure(f"{path} has an unreadable {MANIFEST} ({e}); it is damaged or was "
                      "modified. Nothing was restored")
    present = set(by_name) - {MANIFEST}
    if missing := sorted(set(expected) - present):
        raise Failure(f"{path} is incomplete: {missing[0]} (and {len(missing) - 1} more) listed "
                      f"in {MANIFEST} is missing. Nothing was restored")
    if extra := sorted(present - set(expected)):
        raise Failure(f"{path} was modified: {extra[0]} is not listed in {MANIFEST}. "
                      "Nothing was restored")
    for member in members:
        if member.name == MANIFEST:
            continue
        want = expected[member.name]
        reader = HashingReader(archive.extractfile(member))
        while reader.read(CHUNK):
            pass
        if reader.size != want.get("size") or reader.sha256.hexdigest() != want.get("sha256"):
            raise Failure(
                f"{path} is damaged or was modified: {member.name} does not match its checksum "
                f"in {MANIFEST} (sha256 {reader.sha256.hexdigest()[:16]}..., expected "
                f"{str(want.get('sha256'))[:16]}...). Refusing to restore; nothing was changed")
    return archive, manifest, members


def count_existing() -> tuple[int, int]:
    counts = []
    for table in ("runs", "registered_models"):
        exists = psql("mlflow", f"SELECT to_regclass('public.{table}') IS NOT NULL") == "t"
        counts.append(int(psql("mlflow", f"SELECT count(*) FROM {table}")) if exists else 0)
    return counts[0], counts[1]


def restore_database(archive: tarfile.TarFile, member: tarfile.TarInfo, database: str) -> None:
    say(f"restoring database {database}")
    psql("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    psql("postgres", f'CREATE DATABASE "{database}" OWNER mlflow')
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            compose_command("exec", "-T", "postgres", "pg_restore", "--username=postgres",
                    f"--dbname={database}", "--no-owner", "--no-privileges", "--role=mlflow",
                    "--exit-on-error", "--single-transaction"),
            stdin=subprocess.PIPE, stdout=errors, stderr=errors)
        source = archive.extractfile(member)
        try:
            while chunk := source.read(CHUNK):
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if (code := proc.wait()) != 0:
            errors.seek(0)
            raise Failure(
                f"pg_restore of database {database} failed: {reason(errors.read(), code)}. The "
                "database is incomplete; fix the cause and run restore again with --force")


def restore_bucket(archive: tarfile.TarFile, members: list[tarfile.TarInfo], bucket: str) -> int:
    objects = [m for m in members if m.name.startswith(BUCKET_DIR)]
    say(f"restoring {len(objects)} objects into bucket '{bucket}'")
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            compose_command("exec", "-T", "minio", "bash", "-c", TAR_TO_BUCKET, "tar-to-bucket", bucket),
            stdin=subprocess.PIPE, stdout=errors, stderr=errors)
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as out:
                for member in objects:
                    info = tarfile.TarInfo(member.name[len(BUCKET_DIR):])
                    info.size = member.size
                    info.mode = 0o600
                    info.mtime = member.mtime
                    out.addfile(info, archive.extractfile(member))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if (code := proc.wait()) != 0:
            errors.seek(0)
            raise Failure(f"restoring the objects of bucket '{bucket}' failed: "
                          f"{reason(errors.read(), code)}. Run restore again with --force")
    return len(objects)


def wait_healthy(service: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = "not started"
    while time.monotonic() < deadline:
        ids = run("finding the mlflow container", "ps", "-q", service).split()
        if ids:
            result = subprocess.run(
                ["docker", "inspect", "--format",
                 "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                 ids[0]], capture_output=True, text=True)
            status = result.stdout.strip() or status
            if status == "healthy":
                return
        time.sleep(2)
    raise Failure(f"the {service} service is not healthy after {int(timeout)} s (last status: "
                  f"{status}); see docker compose logs {service}")


def restore(path: Path, force: bool, timeout: float) -> None:
    if not path.is_file():
        raise Failure(f"{path} does not exist or is not a file")
    say(f"verifying {path}")
    archive, manifest, members = verify(path)
    with archive:
        size = sum(m.size for m in members)
        say(f"archive verified: {len(members)} files, {size} bytes, made {manifest.get('created')} "
            f"with MLflow {manifest.get('mlflow_version')}")
        running = running_services()
        if missing := [s for s in ("postgres", "minio") if s not in running]:
            raise Failure(f"the {' and '.join(missing)} service is not running in this stack; "
                          "start it with: docker compose up -d")
        bucket = manifest.get("bucket") or "mlflow"
        if "mlflow" in running:
            info = server_info()
            bucket = info["bucket"]
            theirs, ours = manifest.get("mlflow_version", "0"), info["mlflow_version"]
            if version_tuple(theirs) > version_tuple(ours) and not force:
                raise Failure(f"the archive was made with MLflow {theirs}, newer than this "
                              f"stack's {ours}, whose schema migrations cannot go back; upgrade "
                              "the stack first (or pass --force to try anyway)")
            if not force:
                check_keys(manifest, key_fingerprints())
        elif not force and (manifest.get("encryption") or {}).get("kek_passphrase_fingerprint"):
            raise Failure("the mlflow service is not running, so this stack's encryption keys "
                          "cannot be compared with the archive's; start it with: docker compose "
                          "up -d (or pass --force)")
        runs, models = count_existing()
        if (runs or models) and not force:
            raise Failure(
                f"this stack already holds {runs} runs and {models} registered models, which "
                "the restore would replace; restore into a fresh stack (docker compose down -v "
                "&& docker compose up -d) or pass --force to overwrite them")
        stopped = [s for s in ("model-server", "mlflow") if s in running]
        if stopped:
            say(f"stopping {', '.join(stopped)}")
            run("stopping the server", "--profile", "serve", "stop", *stopped)
        for database in DATABASES:
            member = archive.getmember(f"{DATABASE_DIR}{database}.pgdump")
            restore_database(archive, member, database)
        restore_bucket(archive, members, bucket)
    say("starting mlflow (it migrates the schema if needed and resets the admin password "
        "to this stack's secret)")
    started = ["mlflow"] + [s for s in stopped if s != "mlflow"]
    run("starting the server", "--profile", "serve", "start", *started)
    wait_healthy("mlflow", timeout)
    say(f"restored {path}: mlflow is healthy. Users log in with their old passwords; the admin "
        "with this stack's (scripts/credentials)")


def main() -> int:
    global PROG
    parser = argparse.ArgumentParser(prog="backup_restore.py")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    b.add_argument("directory", type=Path)
    r = sub.add_parser("restore")
    r.add_argument("archive", type=Path)
    r.add_argument("--force", action="store_true")
    r.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    PROG = args.command
    try:
        if args.command == "backup":
            try:
                backup(args.directory)
            except UnexplainedFailure as e:
                # The partial archive is gone and nothing was changed: one more try is safe.
                say(f"{e}; trying the whole backup once more")
                backup(args.directory)
        else:
            restore(args.archive, args.force, args.timeout)
    except Failure as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
