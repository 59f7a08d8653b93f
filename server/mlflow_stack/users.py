"""Operator commands for MLflow users and permissions (run by scripts/user).

Runs inside the mlflow container, as the admin, against the server on loopback; the
admin password is read from the secret file, so the operator never types it.

  add USER [--admin] [--password-stdin]      create; prints a generated password
  password USER [--password-stdin]           set a new password; prints it if generated
  admin USER yes|no                          grant or revoke admin
  grant USER PERMISSION experiment NAME|ID   READ, USE, EDIT, MANAGE or DENY
  grant USER PERMISSION model NAME           (a registered model)
  grant USER USE endpoint NAME               (an AI Gateway endpoint: USE lets them call it)
  revoke USER experiment NAME|ID | model NAME | endpoint NAME
  delete USER
  list
"""

import argparse
import os
import secrets
import sys
from pathlib import Path

from mlflow_stack import StackError

MIN_PASSWORD_LENGTH = 12
RESOURCE_TYPES = {"experiment": "experiment", "model": "registered_model",
                  "endpoint": "gateway_endpoint"}
# What MLflow 3.17 accepts on one experiment or model (RESOURCE_GRANTABLE_PERMISSIONS);
# DENY takes away what MLFLOW_DEFAULT_PERMISSION would give. NO_PERMISSIONS, the name
# the default setting uses, is taken as DENY here.
GRANTABLE = ("READ", "USE", "EDIT", "MANAGE", "DENY")
ALIASES = {"NO_PERMISSIONS": "DENY"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/user", description="Manage MLflow users.")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw = sub.add_parser("password", help="set a user's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    adm = sub.add_parser("admin", help="grant (yes) or revoke (no) admin")
    adm.add_argument("username")
    adm.add_argument("value", choices=["yes", "no"])
    grant = sub.add_parser("grant", help="give a user a permission on an experiment, model or "
                                         "gateway endpoint")
    grant.add_argument("username")
    grant.add_argument("permission", type=lambda v: ALIASES.get(v.upper(), v.upper()),
                       choices=GRANTABLE)
    grant.add_argument("resource", choices=RESOURCE_TYPES)
    grant.add_argument("name", help="experiment name or id, registered model name, or gateway "
                                    "endpoint name")
    revoke = sub.add_parser("revoke", help="remove a user's permission")
    revoke.add_argument("username")
    revoke.add_argument("resource", choices=RESOURCE_TYPES)
    revoke.add_argument("name")
    delete = sub.add_parser("delete", help="delete a user")
    delete.add_argument("username")
    sub.add_parser("list", help="list users")
    return p


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """Return (password, generated?)."""
    if not from_stdin:
        return secrets.token_urlsafe(18), True
    password = sys.stdin.readline().rstrip("\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StackError(
            f"the password read from stdin has {len(password)} characters; MLflow needs at "
            f"least {MIN_PASSWORD_LENGTH}. Omit --password-stdin to have one generated."
        )
    return password, False


def _experiment_id(name_or_id: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(name_or_id)
    if experiment is not None:
        return experiment.experiment_id
    if name_or_id.isdigit():
        return client.get_experiment(name_or_id).experiment_id
    raise StackError(f"no experiment named {name_or_id!r} (and it is not an id).")


def _endpoint_id(name: str) -> str:
    from mlflow.tracking._tracking_service.utils import _get_store

    return _get_store().get_gateway_endpoint(name=name).endpoint_id


def _resource_id(resource: str, name: str) -> str:
    if resource == "experiment":
        return _experiment_id(name)
    return _endpoint_id(name) if resource == "endpoint" else name


def run(args: argparse.Namespace) -> str:
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    if args.command == "add":
        password, generated = _new_password(args.password_stdin)
        auth.create_user(args.username, password)
        if args.admin:
            auth.update_user_admin(args.username, True)
        role = "admin" if args.admin else "user"
        return f"created {role} {args.username}" + (f"\npassword: {password}" if generated else "")
    if args.command == "password":
        if args.username == os.environ["MLFLOW_TRACKING_USERNAME"]:
            raise StackError(
                "the admin password lives in the secrets volume: set MLFLOW_ADMIN_PASSWORD in "
                ".env and run `docker compose up -d`; the server applies it on start."
            )
        password, generated = _new_password(args.password_stdin)
        auth.update_user_password(args.username, password)
        return f"password of {args.username} changed" + (f"\npassword: {password}" if generated else "")
    if args.command == "admin":
        auth.update_user_admin(args.username, args.value == "yes")
        return f"{args.username} is {'now' if args.value == 'yes' else 'no longer'} an admin"
    if args.command == "grant":
        resource_id = _resource_id(args.resource, args.name)
        auth.grant_user_permission(
            args.username, RESOURCE_TYPES[args.resource], resource_id, args.permission
        )
        return f"{args.username} has {args.permission} on {args.resource} {args.name} (id {resource_id})"
    if args.command == "revoke":
        resource_id = _resource_id(args.resource, args.name)
        auth.revoke_user_permission(args.username, RESOURCE_TYPES[args.resource], resource_id)
        return f"revoked {args.username}'s permission on {args.resource} {args.name}"
    if args.command == "delete":
        auth.delete_user(args.username)
        return f"deleted {args.username}"
    if args.command == "list":
        from mlflow.utils.rest_utils import http_request, verify_rest_response
        from mlflow.utils.credentials import get_default_host_creds

        endpoint = "/api/2.0/mlflow/users/list"
        response = http_request(get_default_host_creds(auth.tracking_uri), endpoint, "GET")
        users = verify_rest_response(response, endpoint).json().get("users", [])
        lines = [f"{'USER':24} ADMIN"]
        lines += [f"{u['username']:24} {'yes' if u['is_admin'] else 'no'}" for u in users]
        return "\n".join(lines)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    secrets_dir = Path(os.environ.get("SECRETS_DIR", "/secrets/mlflow"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("MLFLOW_ADMIN_USERNAME") or "admin"
    try:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = (secrets_dir / "admin_password").read_text()
        print(run(args))
    except StackError as e:
        print(f"user: {e}", file=sys.stderr)
        return 1
    except MlflowException as e:
        print(f"user: MLflow refused: {e.message}", file=sys.stderr)
        if "401" in e.message:
            print("user: the admin password in the secrets volume no longer works; set "
                  "MLFLOW_ADMIN_PASSWORD in .env and run `docker compose up -d` to reset it.",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
