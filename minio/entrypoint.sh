#!/usr/bin/env bash
# Starts MinIO with its root credentials read from the secret files.
set -euo pipefail
source /usr/local/bin/root-credentials.sh
export MINIO_ROOT_USER MINIO_ROOT_PASSWORD

if [ "${1:-}" = server ]; then
  exec minio "$@"
fi
exec "$@"
