{{/*
Names and labels shared by every template.
*/}}

{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
<release>-<chart>, or <release> when it already contains the chart name. 63 characters at most,
the limit of a label value and a DNS label.
*/}}
{{- define "modeldeploy.fullname" -}}
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

{{- define "modeldeploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of the release (a Deployment's selector is immutable).
*/}}
{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Standard labels. managed-by is Helm here: the operator only watches children labelled
managed-by=modeldeploy, so its own objects never look like its children.
*/}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ include "modeldeploy.chart" . }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: a digest pins it, otherwise the tag (default: appVersion).
*/}}
{{- define "modeldeploy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it serves, and nothing more. docs/chart.md has
one row per rule saying why. No Secrets, no wildcards, no update (every write is a patch or a
server-side apply), no escalate or impersonate, and `bind` on the sidecar's ClusterRole only.
*/}}
{{- define "modeldeploy.namespacedRules" -}}
# Its own API: read the ModelDeployments; write only their status (never spec or metadata).
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# The children: one Deployment per revision, one Service, one HPA.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# One NetworkPolicy per ModelDeployment, server-side applied; deleted when its spec turns it
# off. Never read one at a time, so no get.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Each revision's spec, kept so a deleted revision Deployment can be rendered again.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# One PodDisruptionBudget per revision (spec.disruption): watched so a deleted one comes back.
# Nothing reads one by name, so no get.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Pods: read the sidecar's MetricsHealthy condition.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events on ModelDeployments (core API, create only: each Event is a new object).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The sidecar's identity in each namespace: its ServiceAccount, and a RoleBinding to the chart's
# fixed `<fullname>-monitor` ClusterRole. Server-side apply needs create (the first time; RBAC
# cannot limit create by name) and patch, which is limited to the two objects by name. Nothing
# reads them back, so no get/list/watch.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  resourceNames: ["modeldeploy-monitor"]
  verbs: ["patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  resourceNames: ["modeldeploy-monitor-reporter"]
  verbs: ["patch"]
# `bind` on that one ClusterRole lets the operator grant it without holding its permissions
# (RBAC escalation prevention would otherwise require them): no pods/status patch here.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  resourceNames: [{{ printf "%s-monitor" (include "modeldeploy.fullname" .) | quote }}]
  verbs: ["bind"]
{{- end }}
