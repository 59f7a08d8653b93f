# Sourced by entrypoint.sh and mc-root.sh: sets MINIO_ROOT_USER and MINIO_ROOT_PASSWORD
# from the secret files the one-shot 'secrets' service writes, so they never sit in the
# image or in `docker inspect`.
secrets_dir="${SECRETS_DIR:-/secrets/minio}"
for name in minio_root_user minio_root_password; do
  if [ ! -s "$secrets_dir/$name" ]; then
    echo "minio: missing secret $secrets_dir/$name; the one-shot 'secrets' service writes it (docker compose logs secrets)" >&2
    exit 1
  fi
done
MINIO_ROOT_USER="$(cat "$secrets_dir/minio_root_user")"
MINIO_ROOT_PASSWORD="$(cat "$secrets_dir/minio_root_password")"
