"""Look at and promote the registered Phi-3 models.

    python manage_models.py list [NAME ...]
    python manage_models.py promote NAME

`list` shows every registered model (or the named ones) with its versions,
aliases and the source/quantization tags the logging job sets. `promote` moves
@champion to the version that is @challenger and removes @challenger, so the
model server picks up the new champion on its next load.

Talks to MLFLOW_TRACKING_URI as MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
"""

from __future__ import annotations

import argparse
import os
import sys

CHAMPION, CHALLENGER = "champion", "challenger"


class CommandError(Exception):
    """An expected failure, reported as one sentence."""


def _client():
    from mlflow import MlflowClient

    if not os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        raise CommandError("MLFLOW_TRACKING_URI is not set; point it at the MLflow server")
    return MlflowClient()


def _aliases_by_version(model) -> dict[str, list[str]]:
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def list_models(names: list[str] | None = None) -> list[dict]:
    """One row per model version: name, version, aliases, source, quantization."""
    from mlflow.exceptions import MlflowException

    client = _client()
    if names:
        models = []
        for name in names:
            try:
                models.append(client.get_registered_model(name))
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise CommandError(f"no registered model named {name!r}") from None
                raise
    else:
        models = list(client.search_registered_models(order_by=["name ASC"]))
    rows = []
    for model in models:
        aliases = _aliases_by_version(model)
        versions = client.search_model_versions(f"name = '{model.name}'")
        for mv in sorted(versions, key=lambda v: int(v.version)):
            rows.append(
                {
                    "name": model.name,
                    "version": str(mv.version),
                    "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
                    "source": mv.tags.get("source", ""),
                    "quantization": mv.tags.get("quantization", ""),
                }
            )
    return rows


def promote(name: str) -> tuple[str | None, str]:
    """Make the @challenger version @champion; return (old champion, new champion)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise CommandError(f"no registered model named {name!r}") from None
        raise
    aliases = model.aliases or {}
    challenger = aliases.get(CHALLENGER)
    if challenger is None:
        raise CommandError(f"{name} has no @{CHALLENGER} version to promote")
    previous = aliases.get(CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, challenger)
    client.delete_registered_model_alias(name, CHALLENGER)
    return (str(previous) if previous is not None else None), str(challenger)


def _print_table(rows: list[dict]) -> None:
    headers = ["name", "version", "aliases", "source", "quantization"]
    widths = {h: max([len(h)] + [len(r[h]) for r in rows]) for h in headers}
    print("  ".join(h.upper().ljust(widths[h]) for h in headers).rstrip())
    for row in rows:
        print("  ".join(row[h].ljust(widths[h]) for h in headers).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List and promote registered Phi-3 models.")
    sub = parser.add_subparsers(dest="command", required=True)
    list_cmd = sub.add_parser("list", help="models, versions, aliases, source and quantization tags")
    list_cmd.add_argument("names", nargs="*", help="only these registered models")
    promote_cmd = sub.add_parser("promote", help="move @champion to the @challenger version")
    promote_cmd.add_argument("name")
    args = parser.parse_args(argv)

    from mlflow.exceptions import MlflowException

    try:
        if args.command == "list":
            rows = list_models(args.names)
            if rows:
                _print_table(rows)
            else:
                print("no registered models")
        else:
            previous, new = promote(args.name)
            was = f" (was version {previous})" if previous else ""
            print(f"{args.name}: @champion is now version {new}{was}; @challenger removed")
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MlflowException as exc:
        # Auth and permission failures are operator errors, not bugs.
        status = exc.get_http_status_code()
        text = str(exc)
        if status in (401, 403) or " 401 " in text or " 403 " in text or "PERMISSION_DENIED" in text:
            print(f"error: the MLflow server refused this ({'401' if '401' in text else '403'}); check the user and its permissions", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
