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

{{/* Where the BMC's password (and CA bundle) are mounted: files "password" and "ca.crt". */}}
{{- define "greenai-agent.bmcDir" -}}/etc/greenai/bmc{{- end }}

{{/* The Secret holding the BMC's password: the operator's, or the one the chart creates; "" for none. */}}
{{- define "greenai-agent.bmcSecretName" -}}
{{- if .Values.bmc.existingSecret }}
{{- .Values.bmc.existingSecret }}
{{- else if .Values.bmc.password }}
{{- printf "%s-bmc" (include "greenai-agent.fullname" .) }}
{{- end }}
{{- end }}

{{/*
collectors.bmc of the agent's config, from .Values.bmc; fails on values that contradict each other.
The password itself never goes in: only the path of the file the Secret is mounted as.
*/}}
{{- define "greenai-agent.bmcConfig" -}}
{{- $b := .Values.bmc }}
{{- if not $b.enabled }}
{{- toYaml (dict "enabled" "false") }}
{{- else }}
{{- if not $b.url }}
{{- fail "bmc.enabled needs bmc.url (it may contain {node_name})" }}
{{- end }}
{{- if and $b.existingSecret $b.password }}
{{- fail "set bmc.existingSecret or bmc.password, not both" }}
{{- end }}
{{- $secret := include "greenai-agent.bmcSecretName" . }}
{{- if and $b.username (not $secret) }}
{{- fail "bmc.username needs the password: set bmc.existingSecret (preferred) or bmc.password" }}
{{- end }}
{{- if and $secret (not $b.username) }}
{{- fail "bmc.existingSecret or bmc.password needs bmc.username: the agent sends no password without a user" }}
{{- end }}
{{- if and $b.caSecret (not $b.verifyTls) }}
{{- fail "bmc.caSecret is given but bmc.verifyTls is false: drop one of them" }}
{{- end }}
{{- $dir := include "greenai-agent.bmcDir" . }}
{{- $c := dict
  "enabled" (ternary "true" "auto" $b.required)
  "url" $b.url
  "interval_seconds" $b.intervalSeconds
  "timeout_seconds" $b.timeoutSeconds
  "verify_tls" (ternary (printf "%s/ca.crt" $dir) $b.verifyTls (not (empty $b.caSecret)))
}}
{{- if $b.username }}
{{- $_ := set $c "username" $b.username }}
{{- $_ := set $c "password_file" (printf "%s/password" $dir) }}
{{- end }}
{{- toYaml $c }}
{{- end }}
{{- end }}

{{/*
api.socket of the agent's config: agent.sock in the node's localSocket.hostPath, which the agent's
container mounts at the same path; "" (no socket) with localSocket off. Fails on a hostPath that is
already another mount's path in the container, which Kubernetes would refuse less clearly.
*/}}
{{- define "greenai-agent.socketPath" -}}
{{- $s := .Values.localSocket }}
{{- if $s.enabled }}
{{- $m := .Values.hostMounts }}
{{- range $taken := list $.Values.ledger.hostPath $m.procfs $m.sysfs "/tmp" (include "greenai-agent.configDir" $) }}
{{- if eq (clean $s.hostPath) (clean $taken) }}
{{- fail (printf "localSocket.hostPath %s is already mounted in the agent's container: choose another directory" $s.hostPath) }}
{{- end }}
{{- end }}
{{- printf "%s/agent.sock" (clean $s.hostPath) }}
{{- end }}
{{- end }}

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
  "collectors" (dict "bmc" (include "greenai-agent.bmcConfig" . | fromYaml))
  "api" (dict "socket" (include "greenai-agent.socketPath" .))
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
