#!/usr/bin/env bash
# Usage: self-signed-cert.sh DIR "HOST[,HOST...]"
# Keeps a self-signed certificate in DIR for localhost, 127.0.0.1 and the given host names
# (MLFLOW_ALLOWED_HOSTS: ports are dropped). It is kept across restarts, so laptops that
# trust it keep working, and made again only when the names change or it nears expiry.
set -euo pipefail

dir="$1"
hosts="$2"

san="DNS:localhost,IP:127.0.0.1,DNS:proxy"
IFS=',' read -ra entries <<<"$hosts"
for entry in "${entries[@]}"; do
  name="$(echo "$entry" | tr -d '[:space:]')"
  name="${name%:*}"
  case "$name" in
    # Skipped: a bare "*", IPv6 literals, and wildcards other than a leading "*.".
    "" | "*" | localhost | 127.0.0.1 | proxy | *[:\[]* | ?*\** ) ;;
    *[!0-9.]*) san="$san,DNS:$name" ;;
    *) san="$san,IP:$name" ;;
  esac
done

if [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ] && [ "$(cat "$dir/names" 2>/dev/null)" = "$san" ] \
  && openssl x509 -in "$dir/tls.crt" -noout -checkend $((30 * 86400)) >/dev/null; then
  echo "proxy: using the self-signed certificate made earlier for $san"
else
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=MLflow stack self-signed" -addext "subjectAltName=$san" \
    -addext "keyUsage=critical,digitalSignature,keyCertSign" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$dir/tls.key.new" -out "$dir/tls.crt.new" 2>/dev/null \
    || { echo "proxy: openssl could not make a self-signed certificate in $dir" >&2; exit 1; }
  chmod 0644 "$dir/tls.crt.new"
  mv "$dir/tls.key.new" "$dir/tls.key"
  mv "$dir/tls.crt.new" "$dir/tls.crt"
  echo "$san" >"$dir/names"
  echo "proxy: made a self-signed certificate for $san"
fi
echo "proxy: its $(openssl x509 -in "$dir/tls.crt" -noout -fingerprint -sha256)"
echo "proxy: laptops trust it with: scripts/tls-cert > mlflow-stack.crt; export MLFLOW_TRACKING_SERVER_CERT_PATH=\$PWD/mlflow-stack.crt"
