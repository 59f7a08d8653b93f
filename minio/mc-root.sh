#!/usr/bin/env bash
# Runs mc with the alias "stack" bound to MinIO's root account, for the init job and
# for operator commands (docker compose exec minio mc-root.sh ls stack/mlflow).
# mc takes the alias from MC_HOST_stack, so the credentials touch neither disk nor argv;
# the secrets job only allows characters that need no escaping in a URL.
set -euo pipefail
source /usr/local/bin/root-credentials.sh
endpoint="${MINIO_ENDPOINT:-http://127.0.0.1:9000}"
MC_HOST_stack="${endpoint%%://*}://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@${endpoint#*://}"
export MC_HOST_stack
exec mc --quiet "$@"
