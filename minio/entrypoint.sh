#!/usr/bin/env bash
# Starts MinIO with its root credentials read from the secret files, so they never sit
# in the image or in `docker inspect`.
set -euo pipefail

secrets_dir="${SECRETS_DIR:-/secrets/minio}"
for name in minio_root_user minio_root_password; do
  if [ ! -s "$secrets_dir/$name" ]; then
    echo "minio: missing secret $secrets_dir/$name; the one-shot 'secrets' service writes it (docker compose logs secrets)" >&2
    exit 1
  fi
done
MINIO_ROOT_USER="$(cat "$secrets_dir/minio_root_user")"
MINIO_ROOT_PASSWORD="$(cat "$secrets_dir/minio_root_password")"
export MINIO_ROOT_USER MINIO_ROOT_PASSWORD

if [ "${1:-}" = server ]; then
  exec minio "$@"
fi
exec "$@"
