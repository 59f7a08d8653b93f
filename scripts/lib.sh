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
