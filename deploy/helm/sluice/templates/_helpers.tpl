{{/* The chart's name. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object's name. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the release's pods. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The sluice image: the tag defaults to the chart's appVersion. */}}
{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The application's image: the sluice image unless a repository is given. */}}
{{- define "sluice.appImage" -}}
{{- if .Values.app.image.repository }}
{{- printf "%s:%s" .Values.app.image.repository (.Values.app.image.tag | default "latest") }}
{{- else }}
{{- include "sluice.image" . }}
{{- end }}
{{- end }}

{{/*
The full name with "-" and a suffix: the full name is cut to leave room
for the suffix, so that two objects of one kind (the seed Service and the
metrics Service) keep different names when the full name is 63 characters
long. Called with a list: the root context and the suffix.
*/}}
{{- define "sluice.suffixed" -}}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "sluice.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* The headless seed Service. */}}
{{- define "sluice.peersName" -}}
{{- include "sluice.suffixed" (list . "peers") }}
{{- end }}

{{/* The Service of the admin ports, for the ServiceMonitor. */}}
{{- define "sluice.metricsName" -}}
{{- include "sluice.suffixed" (list . "metrics") }}
{{- end }}

{{/*
A probe from its values: Helm merges a user's probe into the default one,
so a probe given with exec, tcpSocket or grpc would keep the default
httpGet as well, and Kubernetes refuses a probe with two handlers. The
handler given wins. Called with the probe's values.
*/}}
{{- define "sluice.probe" -}}
{{- $p := deepCopy . }}
{{- if or $p.exec $p.tcpSocket $p.grpc }}
{{- $_ := unset $p "httpGet" }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/* The Secret holding the gossip key. */}}
{{- define "sluice.secretName" -}}
{{- .Values.sluice.gossipKey.existingSecret | default (include "sluice.suffixed" (list . "gossip")) }}
{{- end }}

{{/* The ConfigMap holding the rules. */}}
{{- define "sluice.rulesName" -}}
{{- .Values.sluice.existingRulesConfigMap | default (include "sluice.suffixed" (list . "rules")) }}
{{- end }}

{{/* Where the application reaches the API. */}}
{{- define "sluice.apiURL" -}}
{{- if eq .Values.sluice.api "socket" }}unix:/run/sluice/api.sock{{ else if eq .Values.sluice.api "tcp" }}http://127.0.0.1:8080{{ else }}{{ fail "sluice.api must be socket or tcp" }}{{ end }}
{{- end }}

{{/* Whether a ServiceMonitor is rendered: asked for, and the operator's API is there. */}}
{{- define "sluice.serviceMonitor" -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/*
Whether the sidecar has a preStop pause: asked for, and the sleep action is
there (on by default from Kubernetes 1.30).
*/}}
{{- define "sluice.preStop" -}}
{{- if and (gt (int .Values.sluice.preStopSeconds) 0) (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}true{{ end }}
{{- end }}

{{/*
The pod's grace period: the application's stop, then the sidecar's preStop
and its whole shutdown budget, and a margin. A smaller value is refused: a
node killed before it has left is remembered as failed, and the cluster
decides at a reduced share for --partition-window.
*/}}
{{- define "sluice.gracePeriod" -}}
{{- $preStop := 0 }}
{{- if include "sluice.preStop" . }}{{ $preStop = int .Values.sluice.preStopSeconds }}{{ end }}
{{- $need := add (int .Values.app.stopSeconds) $preStop (int .Values.sluice.shutdownTimeoutSeconds) 5 }}
{{- $set := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- $need }}
{{- else if lt (int $set) (int $need) }}
{{- fail (printf "terminationGracePeriodSeconds %d does not cover the application's stop, the preStop pause and the sidecar's shutdown (%d s)" (int $set) (int $need)) }}
{{- else }}
{{- int $set }}
{{- end }}
{{- end }}
