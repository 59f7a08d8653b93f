#!/usr/bin/env bash
# One-shot job (service minio-init): creates the artifact bucket, a policy limited to
# it, and MLflow's service user with that policy. Idempotent: safe on every `up`, and it
# re-applies the service user's secret key, so a key rotated in .env takes effect.
set -euo pipefail

secrets_dir="${SECRETS_DIR:-/secrets/minio}"
bucket="${MLFLOW_S3_BUCKET:-mlflow}"
export MINIO_ENDPOINT="${MINIO_ENDPOINT:-http://minio:9000}"
timeout="${MINIO_INIT_TIMEOUT:-120}"
policy=mlflow-artifacts

die() { printf 'minio-init: %s\n' "$*" >&2; exit 1; }
secret() {
  [ -s "$secrets_dir/$1" ] || die "missing secret $secrets_dir/$1; the one-shot 'secrets' service writes it (docker compose logs secrets)"
  cat "$secrets_dir/$1"
}

access_key="$(secret s3_access_key)"

deadline=$((SECONDS + timeout))
# Compose starts this job with MinIO, and mlflow waits for it: ask often. curl, not
# `mc ready`: mc retries a refused connection for ~5 s before it answers. The endpoint is
# the one `mc ready` asks (write quorum). Each check bounded: a connection to an address
# the name no longer has (a recreated Service while DNS still answers the old one) would
# otherwise hang the job.
until curl -fsS -o /dev/null --max-time 5 "$MINIO_ENDPOINT/minio/health/cluster" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || die "MinIO at $MINIO_ENDPOINT did not become ready within ${timeout}s; see docker compose logs minio"
  sleep 0.2
done

mc-root.sh mb --ignore-existing "stack/$bucket"

policy_file="$(mktemp)"
cat >"$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$bucket"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$bucket/*"]}
  ]
}
JSON
mc-root.sh admin policy create stack "$policy" "$policy_file" >/dev/null
rm -f "$policy_file"

# `user add` on an existing user updates its secret key. The secret goes through stdin
# (mc prompts for it when only the access key is given) to stay out of argv.
secret s3_secret_key | mc-root.sh admin user add stack "$access_key" >/dev/null \
  || die "could not create or update MinIO user '$access_key'"
# MinIO accepts attaching a policy that is already attached, so the listing that would
# confirm it (another ~0.3 s call, and mlflow waits for this job) runs only when it fails.
mc-root.sh admin policy attach stack "$policy" --user "$access_key" >/dev/null 2>&1 \
  || mc-root.sh admin policy entities stack --user "$access_key" --json | grep -q "\"$policy\"" \
  || die "policy '$policy' is not attached to user '$access_key'"
echo "minio-init: bucket '$bucket' and service user '$access_key' (policy $policy) are ready"
