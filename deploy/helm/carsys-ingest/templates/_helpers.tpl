{{- define "carsys-ingest.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "carsys-ingest.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "carsys-ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carsys-ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "carsys-ingest.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "carsys-ingest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "carsys-ingest.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* METRICS_PORT as a number; the probes, the Service and the ServiceMonitor need a real port. */}}
{{- define "carsys-ingest.metricsPort" -}}
{{- $port := int (default "9108" .Values.config.METRICS_PORT) -}}
{{- if eq $port 0 -}}
{{- fail "config.METRICS_PORT must not be 0: the probes need /healthz and /readyz" -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/* Longer than the worker's own bound on a graceful shutdown, so SIGKILL never cuts a batch's commit short. */}}
{{- define "carsys-ingest.terminationGracePeriodSeconds" -}}
{{- add (int (ceil (default "25" .Values.config.SHUTDOWN_TIMEOUT_S))) (int .Values.shutdown.marginSeconds) -}}
{{- end -}}

{{/* The Secret's keys as files, and the *_FILE variables pointing at them. */}}
{{- define "carsys-ingest.secretEnv" -}}
- name: DATABASE_URL_FILE
  value: {{ printf "%s/%s" .Values.secrets.mountPath .Values.secrets.databaseUrlKey | quote }}
{{- if .Values.secrets.kafkaSaslPasswordKey }}
- name: KAFKA_SASL_PASSWORD_FILE
  value: {{ printf "%s/%s" .Values.secrets.mountPath .Values.secrets.kafkaSaslPasswordKey | quote }}
{{- end }}
{{- end -}}

{{- define "carsys-ingest.secretVolume" -}}
- name: secrets
  secret:
    secretName: {{ required "secrets.existingSecret: the name of a Secret holding the database URL" .Values.secrets.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secrets.databaseUrlKey }}
        path: {{ .Values.secrets.databaseUrlKey }}
      {{- if .Values.secrets.kafkaSaslPasswordKey }}
      - key: {{ .Values.secrets.kafkaSaslPasswordKey }}
        path: {{ .Values.secrets.kafkaSaslPasswordKey }}
      {{- end }}
{{- end -}}

{{- define "carsys-ingest.secretMount" -}}
- name: secrets
  mountPath: {{ .Values.secrets.mountPath }}
  readOnly: true
{{- end -}}

{{- define "carsys-ingest.podSecurity" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The worker's pods only: the migrations Job's pod shares the release labels but is no replica. */}}
{{- define "carsys-ingest.workerSelectorLabels" -}}
{{ include "carsys-ingest.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end -}}
