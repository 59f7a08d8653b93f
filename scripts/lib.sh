# Shared by the operator scripts: run docker compose on this checkout from anywhere.
# COMPOSE_PROJECT_NAME (or .env) picks the stack, as with docker compose itself.
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

compose() { docker compose --project-directory "$repo_dir" "$@"; }

require_running_mlflow() {
  command -v docker >/dev/null 2>&1 || die "docker is not installed or not on PATH"
  local id
  id="$(compose ps -q --status running mlflow 2>/dev/null || true)"
  [ -n "$id" ] || die "the mlflow service is not running; start the stack with: docker compose up -d"
}

# The Python that acts as a laptop (tests, benchmark): a venv with tests/requirements.txt,
# reinstalled when that file changes. Prints its python's path.
client_python() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 3.11 or newer is needed for the test client"
  local venv="$repo_dir/.venv-test"
  local stamp="$venv/.requirements.sha256" want
  want="$(sha256sum "$repo_dir/tests/requirements.txt" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing the test client into $venv" >&2
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed; install python3-venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      -r "$repo_dir/tests/requirements.txt" >&2
    echo "$want" >"$stamp"
  fi
  echo "$venv/bin/python"
}
