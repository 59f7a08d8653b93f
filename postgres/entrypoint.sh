#!/usr/bin/env bash
# Initialises the cluster on first start, then (on every start) makes sure the
# mlflow role and both databases exist and the role's password matches the secret
# file, so a password rotated in .env takes effect on restart. Only then does
# PostgreSQL listen on the network.
set -euo pipefail

die() { printf 'postgres: %s\n' "$*" >&2; exit 1; }

: "${POSTGRES_PASSWORD_FILE:?is not set; it must name the file holding the mlflow role password}"
[ -r "$POSTGRES_PASSWORD_FILE" ] || die "cannot read $POSTGRES_PASSWORD_FILE: did the secrets job run? (docker compose logs secrets)"
[ -s "$POSTGRES_PASSWORD_FILE" ] || die "$POSTGRES_PASSWORD_FILE is empty: remove the secrets volume or set POSTGRES_PASSWORD in .env"

if [ "${1:-}" != postgres ]; then exec "$@"; fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "postgres: creating a new cluster in $PGDATA (scram-sha-256, data checksums)"
  initdb --username=postgres --encoding=UTF8 --locale=C.UTF-8 --data-checksums \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  cat >>"$PGDATA/postgresql.conf" <<'CONF'
listen_addresses = '*'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 256MB
log_min_messages = warning
CONF
  # The network may reach only the two MLflow databases, only as the mlflow role.
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
local all         postgres              peer
local mlflow,mlflow_auth mlflow         scram-sha-256
host  mlflow,mlflow_auth mlflow 0.0.0.0/0 scram-sha-256
host  mlflow,mlflow_auth mlflow ::/0      scram-sha-256
HBA
fi

# Socket-only server for the idempotent setup; the healthcheck probes TCP, so the
# service is not reported healthy until the real server below is up.
pg_ctl --silent --wait --options="-c listen_addresses=''" start
psql --no-psqlrc --quiet --username=postgres --dbname=postgres --set=ON_ERROR_STOP=1 \
  --set=password_file="$POSTGRES_PASSWORD_FILE" \
  --file=/usr/local/share/stack-postgres/init.sql
pg_ctl --silent --wait --mode=fast stop

exec "$@"
