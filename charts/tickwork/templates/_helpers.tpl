{{/*
Names and labels shared by every template. Every helper is prefixed with the chart name.
*/}}

{{/* The chart name (nameOverride wins), at most 63 characters. */}}
{{- define "tickwork.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every object: fullnameOverride, else the release name, with the chart
name appended unless the release name already contains it. At most 54 characters, so that
"<fullname>-operator" stays a valid label value (63).
*/}}
{{- define "tickwork.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's objects: Deployment, Service, NetworkPolicy, (Cluster)Roles, Lease. */}}
{{- define "tickwork.operatorName" -}}
{{- printf "%s-operator" (include "tickwork.fullname" .) }}
{{- end }}

{{/* The try-it Redis: Deployment, Service, Secret. */}}
{{- define "tickwork.redisName" -}}
{{- printf "%s-redis" (include "tickwork.fullname" .) }}
{{- end }}

{{/* "tickwork-0.1.0" for the helm.sh/chart label. */}}
{{- define "tickwork.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The recommended labels of every object (without the component). */}}
{{- define "tickwork.labels" -}}
helm.sh/chart: {{ include "tickwork.chart" . }}
app.kubernetes.io/name: {{ include "tickwork.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tickwork
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's labels and its (immutable) selector. */}}
{{- define "tickwork.operatorLabels" -}}
{{ include "tickwork.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tickwork.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "tickwork.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The try-it Redis's labels and selector. */}}
{{- define "tickwork.redisLabels" -}}
{{ include "tickwork.labels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "tickwork.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "tickwork.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "tickwork.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tickwork.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest, else repository:tag (default: appVersion). */}}
{{- define "tickwork.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces served, sorted and without duplicates (empty: every namespace). */}}
{{- define "tickwork.watchNamespaces" -}}
{{- .Values.watchNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The RBAC rules, generated from operator/worker_operator/rbac.py by `make manifests`. */}}
{{- define "tickwork.rbacRules" -}}
{{- .Files.Get "files/rbac-rules.yaml" | fromYaml | toJson }}
{{- end }}

{{/* The rules of the reconciling (Cluster)Role, with the Secret rule when it is asked for. */}}
{{- define "tickwork.reconcileRules" -}}
{{- $rules := include "tickwork.rbacRules" . | fromJson }}
{{- $reconcile := $rules.reconcile }}
{{- if .Values.operator.checkSecretReferences }}
{{- $reconcile = concat $reconcile $rules.secretCheck }}
{{- end }}
{{- toYaml $reconcile }}
{{- end }}

{{/*
Whether to create the monitoring.coreos.com objects: monitoring.create "always", or "auto"
and the cluster serves monitoring.coreos.com/v1 (`helm template --api-versions` says so).
*/}}
{{- define "tickwork.monitoringEnabled" -}}
{{- if eq .Values.monitoring.create "always" }}
{{- "true" }}
{{- else if and (eq .Values.monitoring.create "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
{{- "true" }}
{{- end }}
{{- end }}

{{/* Seconds of a duration such as 15s, 1m30s, 500ms (the syntax the operator's flags take). */}}
{{- define "tickwork.seconds" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+([.][0-9]+)?(ms|s|m|h)" . -1 }}
{{- $unit := regexFind "(ms|s|m|h)$" . }}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- $total = addf $total (mulf (float64 (trimSuffix $unit .)) $scale) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Refuse leader election timings the operator would refuse at start (it would exit 2 in a
crash loop): retryPeriod < renewDeadline < leaseDuration.
*/}}
{{- define "tickwork.checkLeaderElection" -}}
{{- with .Values.leaderElection }}
{{- if .enabled }}
{{- $lease := include "tickwork.seconds" .leaseDuration | float64 }}
{{- $renew := include "tickwork.seconds" .renewDeadline | float64 }}
{{- $retry := include "tickwork.seconds" .retryPeriod | float64 }}
{{- if not (and (lt $retry $renew) (lt $renew $lease)) }}
{{- fail (printf "leaderElection needs retryPeriod < renewDeadline < leaseDuration, got retryPeriod %s, renewDeadline %s, leaseDuration %s" .retryPeriod .renewDeadline .leaseDuration) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
