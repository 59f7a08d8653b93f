#!/usr/bin/env bash
# Logs in to MLflow as the stack's non-admin "models" account, whose password the
# secrets job wrote to this service's own volume, then runs the given command.
set -euo pipefail
password_file="${MODELS_PASSWORD_FILE:-/secrets/models/models_password}"
if [ ! -s "$password_file" ]; then
  echo "models: missing $password_file; the one-shot 'secrets' service writes it (docker compose logs secrets)" >&2
  exit 1
fi
export MLFLOW_TRACKING_USERNAME="${MLFLOW_TRACKING_USERNAME:-models}"
MLFLOW_TRACKING_PASSWORD="$(cat "$password_file")"
export MLFLOW_TRACKING_PASSWORD
exec "$@"
