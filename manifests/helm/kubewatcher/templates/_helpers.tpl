{{/* Base name of every object: the release name when it already contains the chart name. */}}
{{- define "kubewatcher.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; call with (dict "ctx" $ "component" "controller"), component optional. */}}
{{- define "kubewatcher.labels" -}}
{{- $ctx := .ctx -}}
{{ include "kubewatcher.selectorLabels" . }}
app.kubernetes.io/part-of: kubewatcher
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels that select a component's pods; never change them after install (selectors are immutable). */}}
{{- define "kubewatcher.selectorLabels" -}}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/name: kubewatcher
{{- end -}}

{{/* Labels on pod templates: the selector labels plus part-of and version. */}}
{{- define "kubewatcher.podLabels" -}}
{{ include "kubewatcher.selectorLabels" . }}
app.kubernetes.io/part-of: kubewatcher
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- end -}}

{{- define "kubewatcher.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Flags both programs take: one --namespace per watched namespace, and the log level. */}}
{{- define "kubewatcher.commonArgs" -}}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- with .Values.logLevel }}
- --log-level={{ . }}
{{- end }}
{{- end -}}

{{- define "kubewatcher.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubewatcher.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The controller's rules; a ClusterRole when cluster-wide, a Role per watched namespace otherwise. */}}
{{- define "kubewatcher.controllerRules" -}}
# Informer on WatchedImages; create, patch (server-side apply) and delete keep the generated ones
# of auto-watch (--auto-watch).
- apiGroups: [kubewatcher.io]
  resources: [watchedimages]
  verbs: [get, list, watch, create, patch, delete]
# Its own status fields (workloads, latestUpdate, Ready), written with server-side apply = PATCH.
- apiGroups: [kubewatcher.io]
  resources: [watchedimages/status]
  verbs: [patch]
# Informer on ImageUpdates; delete prunes history beyond historyLimit.
- apiGroups: [kubewatcher.io]
  resources: [imageupdates]
  verbs: [get, list, watch, delete]
# ImageUpdate phase and per-workload results, server-side apply = PATCH.
- apiGroups: [kubewatcher.io]
  resources: [imageupdates/status]
  verbs: [patch]
# Informers on the workload kinds; patch pins the new digest (strategic merge patch).
# BEGIN workload kinds: controller (written by scripts/render-manifests.ts from packages/shared/src/api/workload-kinds.ts)
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, watch, patch]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, patch]
# END workload kinds
# core/v1 Events on WatchedImages, ImageUpdates and workloads.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "kubewatcher.pollerRules" -}}
# One list per run finds the WatchedImages that are due.
- apiGroups: [kubewatcher.io]
  resources: [watchedimages]
  verbs: [list]
# Its own status fields (digest, lastCheckedTime, Resolved, ...), server-side apply = PATCH.
- apiGroups: [kubewatcher.io]
  resources: [watchedimages/status]
  verbs: [patch]
# create records a change; get reads the existing one when the name is taken (runs are idempotent).
- apiGroups: [kubewatcher.io]
  resources: [imageupdates]
  verbs: [get, create]
# Finds the workloads a WatchedImage matches, for their imagePullSecrets.
# BEGIN workload kinds: poller (written by scripts/render-manifests.ts from packages/shared/src/api/workload-kinds.ts)
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [list]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [list]
# END workload kinds
# The imagePullSecrets of the matched workloads' service accounts.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get]
{{- end -}}

{{/* Registry credentials, each read by name; no list or watch: the poller never enumerates secrets. */}}
{{- define "kubewatcher.pollerSecretsRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end -}}

{{/*
What the controller needs, cluster-wide only, to bind the poller's secrets ClusterRole in each
namespace that holds WatchedImages (the admission policy refuses any other binding).
*/}}
{{- define "kubewatcher.controllerBindingRules" -}}
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [create, list]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  resourceNames: [{{ include "kubewatcher.fullname" . }}-poller-secrets]
  verbs: [get, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  resourceNames: [{{ include "kubewatcher.fullname" . }}-poller-secrets]
  verbs: [bind, get]
{{- end -}}
