#!/usr/bin/env bash
# Picks the certificate (the operator's in /etc/proxy/certs, else a generated self-signed
# one kept in the proxy-certs volume), renders the nginx config and starts nginx.
set -euo pipefail

die() { printf 'proxy: %s\n' "$*" >&2; exit 1; }

export PROXY_MAX_BODY_SIZE="${PROXY_MAX_BODY_SIZE:-5g}"
export PROXY_TIMEOUT="${PROXY_TIMEOUT:-600s}"
export PROXY_UPSTREAM="${PROXY_UPSTREAM:-mlflow:5000}"
https_port="${HTTPS_PORT:-443}"

[[ "$PROXY_MAX_BODY_SIZE" =~ ^[1-9][0-9]*[kKmMgG]?$ ]] \
  || die "PROXY_MAX_BODY_SIZE='$PROXY_MAX_BODY_SIZE' is not a size; use e.g. 5g, 20g or 500m"
[[ "$PROXY_TIMEOUT" =~ ^[1-9][0-9]*[smh]?$ ]] \
  || die "PROXY_TIMEOUT='$PROXY_TIMEOUT' is not a duration; use e.g. 600s, 30m or 1h"
[[ "$https_port" =~ ^[1-9][0-9]{0,4}$ ]] || die "HTTPS_PORT='$https_port' is not a port number"
# Redirects name the public HTTPS port unless it is the default one.
export PROXY_HTTPS_PORT_SUFFIX=":$https_port"
[ "$https_port" != 443 ] || PROXY_HTTPS_PORT_SUFFIX=""

operator_dir=/etc/proxy/certs
if [ -e "$operator_dir/tls.crt" ] || [ -e "$operator_dir/tls.key" ]; then
  cert="$operator_dir/tls.crt"
  key="$operator_dir/tls.key"
  for f in "$cert" "$key"; do
    [ -e "$f" ] || die "found only one of tls.crt and tls.key in PROXY_CERT_DIR; provide both (PEM), or neither for a self-signed certificate"
    [ -r "$f" ] || die "cannot read $(basename "$f") as uid $(id -u); make it readable, e.g. chown $(id -u) on the host file (mode 0600 is fine)"
  done
  openssl x509 -in "$cert" -noout 2>/dev/null || die "tls.crt is not a PEM certificate"
  cert_pub="$(openssl x509 -in "$cert" -noout -pubkey)"
  key_pub="$(openssl pkey -in "$key" -pubout 2>/dev/null)" || die "tls.key is not a PEM private key (or it is encrypted; nginx needs it unencrypted)"
  [ "$cert_pub" = "$key_pub" ] || die "tls.key does not belong to tls.crt (their public keys differ)"
  openssl x509 -in "$cert" -noout -checkend 0 >/dev/null \
    || echo "proxy: WARNING: tls.crt has expired ($(openssl x509 -in "$cert" -noout -enddate)); clients will refuse it" >&2
  echo "proxy: using the operator's certificate: $(openssl x509 -in "$cert" -noout -subject -enddate | paste -sd ' ')"
else
  cert=/var/lib/proxy/certs/tls.crt
  key=/var/lib/proxy/certs/tls.key
  /usr/local/bin/self-signed-cert.sh /var/lib/proxy/certs "${MLFLOW_ALLOWED_HOSTS:-}"
fi
export PROXY_CERT_FILE="$cert" PROXY_KEY_FILE="$key"
# scripts/tls-cert reads the certificate in use from here.
ln -sfn "$cert" /run/proxy/tls.crt

variables='${PROXY_MAX_BODY_SIZE} ${PROXY_TIMEOUT} ${PROXY_UPSTREAM} ${PROXY_HTTPS_PORT_SUFFIX} ${PROXY_CERT_FILE} ${PROXY_KEY_FILE}'
envsubst "$variables" </etc/proxy/nginx.conf.template >/run/proxy/nginx.conf
envsubst "$variables" </etc/proxy/errors.conf.template >/run/proxy/errors.conf
nginx -t -q -e stderr -c /run/proxy/nginx.conf || die "the rendered nginx configuration is invalid (see above)"
echo "proxy: HTTPS on port $https_port for $PROXY_UPSTREAM; uploads up to $PROXY_MAX_BODY_SIZE, timeout $PROXY_TIMEOUT"
exec nginx -e stderr -c /run/proxy/nginx.conf -g 'daemon off;'
