{{/* What the tracking server, its migration job (and gc) share: settings, files, volumes. */}}
{{- define "mlflow-stack.allowedHosts" -}}
{{- $service := include "mlflow-stack.name" (dict "root" . "component" "mlflow") -}}
{{- $hosts := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) -}}
{{- if and .Values.ingress.enabled .Values.ingress.host }}{{ $hosts = append $hosts .Values.ingress.host }}{{ end -}}
{{- range splitList "," .Values.mlflow.allowedHosts }}{{ if trim . }}{{ $hosts = append $hosts (trim .) }}{{ end }}{{ end -}}
{{- join "," $hosts -}}
{{- end -}}

{{- define "mlflow-stack.serverEnv" -}}
{{- $m := .Values.mlflow -}}
{{- $pool := include "mlflow-stack.dbPool" . | fromJson -}}
- {name: MLFLOW_MIGRATIONS, value: job}
- {name: MLFLOW_ALLOWED_HOSTS, value: {{ include "mlflow-stack.allowedHosts" . | quote }}}
- {name: MLFLOW_CORS_ALLOWED_ORIGINS, value: {{ $m.corsAllowedOrigins | quote }}}
- {name: MLFLOW_DEFAULT_PERMISSION, value: {{ $m.defaultPermission | quote }}}
- {name: MLFLOW_ADMIN_USERNAME, value: {{ $m.adminUsername | quote }}}
- {name: MLFLOW_JOB_ENGINE, value: executor}
- {name: MLFLOW_TRUSTED_PROXIES, value: {{ $m.trustedProxies | quote }}}
- {name: MLFLOW_AUTH_CACHE_TTL_SECONDS, value: {{ $m.authCacheTtlSeconds | quote }}}
- {name: MLFLOW_LOGIN_FAILURE_LIMIT, value: {{ $m.loginFailureLimit | quote }}}
- {name: MLFLOW_LOGIN_WINDOW_SECONDS, value: {{ $m.loginWindowSeconds | quote }}}
- {name: MLFLOW_LOGIN_BLOCK_SECONDS, value: {{ $m.loginBlockSeconds | quote }}}
- {name: MLFLOW_DB_POOL_SIZE, value: {{ $pool.pool | quote }}}
- {name: MLFLOW_DB_MAX_OVERFLOW, value: {{ $pool.overflow | quote }}}
- {name: MLFLOW_STARTUP_TIMEOUT, value: {{ $m.startupTimeout | quote }}}
- {name: MLFLOW_S3_BUCKET, value: {{ .Values.s3.bucket | quote }}}
- {name: MLFLOW_S3_ENDPOINT_URL, value: {{ include "mlflow-stack.s3Endpoint" . | quote }}}
- {name: MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS, value: {{ $m.gatewayAllowPrivateUpstreams | quote }}}
- {name: POSTGRES_HOST, value: {{ include "mlflow-stack.postgresHost" . | quote }}}
- {name: POSTGRES_PORT, value: {{ ternary 5432 .Values.postgresql.external.port .Values.postgresql.enabled | quote }}}
- {name: POSTGRES_USER, value: {{ ternary "mlflow" .Values.postgresql.external.user .Values.postgresql.enabled | quote }}}
{{- with $m.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mlflow-stack.serverSecretKeys" -}}
{{- $keys := list "admin_password" "models_password" "flask_secret_key" "crypto_kek_passphrase" "webhook_encryption_key" -}}
{{- if .Values.postgresql.enabled }}{{ $keys = append $keys "postgres_password" }}{{ end -}}
{{- if .Values.minio.enabled }}{{ $keys = concat $keys (list "s3_access_key" "s3_secret_key") }}{{ end -}}
{{- toJson $keys -}}
{{- end -}}

{{- define "mlflow-stack.serverVolumes" -}}
{{ include "mlflow-stack.secretVolume" (dict "root" . "volume" "secrets" "keys" (include "mlflow-stack.serverSecretKeys" . | fromJsonArray) "database" true "s3" true) }}
# Credential files rendered at start (pgpass, S3 keys, auth ini): memory only.
- name: runtime
  emptyDir: {medium: Memory, sizeLimit: 16Mi}
# The workers' shared state, emptied by every start: request metrics, failed logins.
- name: state
  emptyDir: {medium: Memory, sizeLimit: 64Mi}
- name: tmp
  emptyDir: {sizeLimit: 2Gi}
- name: home
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}

{{- define "mlflow-stack.serverMounts" -}}
- {name: secrets, mountPath: /secrets/mlflow, readOnly: true}
- {name: runtime, mountPath: /run/mlflow}
- {name: state, mountPath: /run/mlflow-state}
- {name: tmp, mountPath: /tmp}
- {name: home, mountPath: /home/mlflow}
{{- end -}}
