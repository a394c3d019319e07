{{/* The chart's name, shortened to what a label value allows. */}}
{{- define "greenai-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of the release's objects. */}}
{{- define "greenai-agent.fullname" -}}
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

{{- define "greenai-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "greenai-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "greenai-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "greenai-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-agent
{{- end }}

{{- define "greenai-agent.serviceAccountName" -}}
{{- default (include "greenai-agent.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* Where the ConfigMap is mounted, and the agent's config file in it. */}}
{{- define "greenai-agent.configDir" -}}/etc/greenai{{- end }}

{{/* The service account's token and CA, as every pod with a mounted token has them. */}}
{{- define "greenai-agent.saDir" -}}/var/run/secrets/kubernetes.io/serviceaccount{{- end }}

{{/*
The agent's YAML config: .Values.config with the keys the pod's layout decides set by the chart.
*/}}
{{- define "greenai-agent.config" -}}
{{- $m := .Values.hostMounts }}
{{- $owned := dict
  "listen" (printf "0.0.0.0:%d" (int .Values.port))
  "host" (dict "procfs" $m.procfs "sysfs" $m.sysfs "cgroupfs" (printf "%s/fs/cgroup" $m.sysfs))
  "ledger" (dict "path" (printf "%s/%s" .Values.ledger.hostPath .Values.ledger.fileName))
  "slurm" (dict "scontrol" "" "environ_fallback" "false")
}}
{{- if .Values.podLookup.enabled }}
{{- $sa := include "greenai-agent.saDir" . }}
{{- $_ := set $owned "kubernetes" (dict
  "pods_url" .Values.podLookup.url
  "token_file" (printf "%s/token" $sa)
  "ca_file" (printf "%s/ca.crt" $sa)
  "refresh_seconds" .Values.podLookup.refreshSeconds) }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $owned) }}
{{- end }}
