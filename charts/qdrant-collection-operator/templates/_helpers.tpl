{{- define "qco.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object name: the chart name when the release name contains it (as with the default install). */}}
{{- define "qco.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "qco.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "qco.labels" -}}
{{ include "qco.selectorLabels" . }}
{{ include "qco.releaseLabels" . }}
{{- end }}

{{/* The labels of every object beside the selector's, which the helm test Pod carries without being selected. */}}
{{- define "qco.releaseLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "qco.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "qco.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "qco.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end }}
{{- end }}

{{- define "qco.peeringName" -}}
{{- .Values.peering.name | default (include "qco.fullname" .) }}
{{- end }}

{{/* The entries of `namespaces` that are kopf patterns (globs, exclusions, lists), joined; empty when none. */}}
{{- define "qco.namespacePatterns" -}}
{{- $patterns := list }}
{{- range .Values.namespaces }}
{{- if regexMatch "[!*?,\\[]" . }}{{ $patterns = append $patterns . }}{{ end }}
{{- end }}
{{- join "," $patterns }}
{{- end }}

{{/* The operator's rules on namespaced objects: in its ClusterRole, or in a Role per watched namespace. */}}
{{- define "qco.namespacedRules" -}}
- apiGroups: [qdrant.collection-operator.dev]
  resources: [qdrantconnections, vectorcollections, collectionsnapshots, collectionaccesskeys]
  verbs: [list, watch, patch]
- apiGroups: [qdrant.collection-operator.dev]
  resources:
    - qdrantconnections/status
    - vectorcollections/status
    - collectionsnapshots/status
    - collectionaccesskeys/status
  verbs: [patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end }}
