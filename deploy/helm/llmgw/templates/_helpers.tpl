{{/* Chart name, at most 63 characters. */}}
{{- define "llmgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, prefixed by the chart's unless it holds it. */}}
{{- define "llmgw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llmgw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmgw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmgw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmgw.labels" -}}
helm.sh/chart: {{ include "llmgw.chart" . }}
{{ include "llmgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "llmgw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmgw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llmgw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret whose keys become environment variables: the user's, or the chart's
(which always exists, holding at least the admin key). */}}
{{- define "llmgw.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecret -}}
{{- else -}}
{{- include "llmgw.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "llmgw.port" -}}
{{- $server := .Values.config.server | default dict -}}
{{- $server.port | default 8080 | int -}}
{{- end -}}

{{/* server.metrics_port, or "" when /metrics stays on the main port. */}}
{{- define "llmgw.metricsPort" -}}
{{- $server := .Values.config.server | default dict -}}
{{- with $server.metrics_port -}}{{- . | int -}}{{- end -}}
{{- end -}}

{{/*
Seconds in a gateway.yaml duration: 250ms, 30s, 5m, 1h, 1m30s, or a bare number.
*/}}
{{- define "llmgw.durationSeconds" -}}
{{- $text := toString . | trim -}}
{{- $total := 0.0 -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?$" $text -}}
{{- $total = float64 $text -}}
{{- else if regexMatch "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" $text -}}
{{- $units := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h)" $text -1 -}}
{{- $unit := regexFind "(ms|s|m|h)$" . -}}
{{- $total = addf $total (mulf (trimSuffix $unit . | float64) (get $units $unit)) -}}
{{- end -}}
{{- else -}}
{{- fail (printf "config.server.shutdown_timeout: invalid duration %q (use e.g. 30s, 1m30s)" $text) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Pods must outlive the gateway's own drain: the preStop pause, then up to
server.shutdown_timeout for requests and streams in flight.
*/}}
{{- define "llmgw.terminationGracePeriodSeconds" -}}
{{- $server := .Values.config.server | default dict -}}
{{- $drain := include "llmgw.durationSeconds" ($server.shutdown_timeout | default "30s") | float64 -}}
{{- $needed := addf $drain (.Values.preStopSleepSeconds | default 0) -}}
{{- $grace := .Values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $grace -}}
{{- addf $needed 10 | ceil | int -}}
{{- else if le (float64 $grace) $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than config.server.shutdown_timeout plus preStopSleepSeconds (%v s)" $grace $needed) -}}
{{- else -}}
{{- $grace | int -}}
{{- end -}}
{{- end -}}

{{/* Refuse values that would deploy a gateway that cannot start or cannot share state. */}}
{{- define "llmgw.validate" -}}
{{- $config := .Values.config | default dict -}}
{{- if and .Values.serviceMonitor.enabled (not (include "llmgw.metricsPort" .)) -}}
{{- fail "serviceMonitor.enabled needs config.server.metrics_port (/metrics on the main port is for the admin key only)" -}}
{{- end -}}
{{- $haveRedis := or .Values.redis.url .Values.redis.existingSecret (hasKey (.Values.secret.env | default dict) "REDIS_URL") .Values.secret.existingSecret -}}
{{- range $section := list "cache" "limits" -}}
{{- $part := get $config $section | default dict -}}
{{- if and (eq (toString $part.backend) "redis") (contains "${REDIS_URL" (toString $part.redis_url)) (not $haveRedis) -}}
{{- fail (printf "config.%s.backend is redis: set redis.url (or redis.existingSecret)" $section) -}}
{{- end -}}
{{- end -}}
{{- end -}}
