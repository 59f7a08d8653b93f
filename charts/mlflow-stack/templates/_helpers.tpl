{{/* Names: every resource is <release>-<component> (fullnameOverride replaces <release>). */}}
{{- define "mlflow-stack.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlflow-stack.name" -}}
{{- printf "%s-%s" (include "mlflow-stack.fullname" .root) .component -}}
{{- end -}}

{{- define "mlflow-stack.selectorLabels" -}}
app.kubernetes.io/name: mlflow-stack
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlflow-stack.labels" -}}
{{ include "mlflow-stack.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* An image of the stack: <registry>/<name>:<tag>, or mlflow-stack/<name> (built locally). */}}
{{- define "mlflow-stack.image" -}}
{{- $image := .root.Values.image -}}
{{- $own := index $image .name | default dict -}}
{{- $repository := $own.repository | default (printf "%s/%s" ($image.registry | default "mlflow-stack" | trimSuffix "/") .name) -}}
{{- printf "%s:%s" $repository ($own.tag | default $image.tag) -}}
{{- end -}}

{{/* The Secret every component reads its files from (generated unless the operator names one). */}}
{{- define "mlflow-stack.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "mlflow-stack.fullname" .)) -}}
{{- end -}}

{{- define "mlflow-stack.postgresHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "mlflow-stack.name" (dict "root" . "component" "postgresql") -}}
{{- else -}}
{{- required "postgresql.external.host is required when postgresql.enabled is false" .Values.postgresql.external.host -}}
{{- end -}}
{{- end -}}

{{- define "mlflow-stack.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s:9000" (include "mlflow-stack.name" (dict "root" . "component" "minio")) -}}
{{- else -}}
{{- required "s3.external.endpointUrl is required when minio.enabled is false" .Values.s3.external.endpointUrl -}}
{{- end -}}
{{- end -}}

{{/* Keys the secrets job makes sure exist in the stack's Secret. */}}
{{- define "mlflow-stack.secretKeys" -}}
{{- $keys := list "admin_password" "models_password" "flask_secret_key" "crypto_kek_passphrase" "webhook_encryption_key" -}}
{{- if .Values.postgresql.enabled -}}{{- $keys = append $keys "postgres_password" -}}{{- end -}}
{{- if .Values.minio.enabled -}}{{- $keys = concat $keys (list "minio_root_user" "minio_root_password" "s3_access_key" "s3_secret_key") -}}{{- end -}}
{{- join "," $keys -}}
{{- end -}}

{{/* Per worker and database: (kept open + burst) connections, so that every replica's
     workers together stay within what PostgreSQL accepts (the same budget as the
     Compose stack: 200 connections, 20 kept for jobs and backups). */}}
{{- define "mlflow-stack.dbPool" -}}
{{- $m := .Values.mlflow -}}
{{- /* + the jobs server: one worker */ -}}
{{- $perEngine := div (int .Values.postgresql.connectionBudget) (mul (add (mul (int $m.replicas) (int $m.workers)) 1) 2) -}}
{{- if lt (int $perEngine) 2 -}}
{{- fail (printf "mlflow.replicas %d x mlflow.workers %d x 2 databases need more than postgresql.connectionBudget %d connections allow: lower replicas or workers, or raise the budget (and PostgreSQL's max_connections)" (int $m.replicas) (int $m.workers) (int .Values.postgresql.connectionBudget)) -}}
{{- end -}}
{{- $total := min 15 $perEngine -}}
{{- $pool := min 10 (div (mul $total 2) 3) -}}
{{- dict "pool" ($m.dbPoolSize | default $pool) "overflow" ($m.dbMaxOverflow | default (sub $total $pool)) | toJson -}}
{{- end -}}

{{/* Pod and container hardening shared by every component. */}}
{{- define "mlflow-stack.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mlflow-stack.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* A projected volume with some keys of the stack's Secret (and of the operator's
     external-database / external-S3 Secrets) as files, readable only by the pod's user. */}}
{{- define "mlflow-stack.secretVolume" -}}
- name: {{ .volume }}
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "mlflow-stack.secretName" .root }}
          items:
          {{- range .keys }}
            - {key: {{ . }}, path: {{ . }}}
          {{- end }}
      {{- if and .database (not .root.Values.postgresql.enabled) }}
      - secret:
          name: {{ required "postgresql.external.existingSecret is required when postgresql.enabled is false" .root.Values.postgresql.external.existingSecret }}
          items:
            - {key: {{ .root.Values.postgresql.external.passwordKey }}, path: postgres_password}
      {{- end }}
      {{- if and .s3 (not .root.Values.minio.enabled) }}
      - secret:
          name: {{ required "s3.external.existingSecret is required when minio.enabled is false" .root.Values.s3.external.existingSecret }}
          items:
            - {key: {{ .root.Values.s3.external.accessKeyKey }}, path: s3_access_key}
            - {key: {{ .root.Values.s3.external.secretKeyKey }}, path: s3_secret_key}
      {{- end }}
{{- end -}}

{{/* NetworkPolicy peers: this release's pods of the given components. */}}
{{- define "mlflow-stack.fromComponents" -}}
{{- $root := .root -}}
{{- range .components }}
- podSelector:
    matchLabels: {{- include "mlflow-stack.selectorLabels" (dict "root" $root "component" .) | nindent 6 }}
{{- end }}
{{- end }}
