#!/usr/bin/env bash
# Runs mc with the alias "stack" bound to MinIO's root account, for the init job and
# for operator commands (docker compose exec minio mc-root.sh ls stack/mlflow).
# mc takes the alias from MC_HOST_stack, so the credentials touch neither disk nor argv;
# the secrets job only allows characters that need no escaping in a URL.
set -euo pipefail

secrets_dir="${SECRETS_DIR:-/secrets/minio}"
endpoint="${MINIO_ENDPOINT:-http://127.0.0.1:9000}"
for name in minio_root_user minio_root_password; do
  if [ ! -s "$secrets_dir/$name" ]; then
    echo "mc-root: missing secret $secrets_dir/$name; the one-shot 'secrets' service writes it (docker compose logs secrets)" >&2
    exit 1
  fi
done
MC_HOST_stack="${endpoint%%://*}://$(cat "$secrets_dir/minio_root_user"):$(cat "$secrets_dir/minio_root_password")@${endpoint#*://}"
export MC_HOST_stack
exec mc --quiet "$@"
