{{/*
Labels on every object: kustomize/base's `part-of`, plus the ones Helm charts carry so an object
can be traced to its release. Selectors never use the Helm ones, so they match kustomize's.
*/}}
{{- define "modelsync.labels" -}}
app.kubernetes.io/part-of: modelsync
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "modelsync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The namespace whose ModelSyncs the controller reconciles, when it watches only one. */}}
{{- define "modelsync.watchNamespace" -}}
{{ .Values.controller.watch.namespace | default .Release.Namespace }}
{{- end }}

{{- define "modelsync.leaseNamespace" -}}
{{ .Values.controller.leaderElection.namespace | default .Release.Namespace }}
{{- end }}

{{/*
The shard names, checked: each becomes part of a Deployment name, a label value and a Lease
name, so it must be a DNS label short enough for all three.
*/}}
{{- define "modelsync.shards" -}}
{{- $seen := dict }}
{{- range .Values.controller.shards }}
{{- if not (kindIs "string" .) }}
{{- fail (printf "controller.shards: %v is not a name; list shard names, like [gpu, eu]" .) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "controller.shards: %q is not a DNS label (lower-case letters, digits and '-')" .) }}
{{- end }}
{{- if gt (len .) 42 }}
{{- fail (printf "controller.shards: %q is longer than 42 characters, so the label value modelsync-controller-%s would pass 63" . .) }}
{{- end }}
{{- if hasKey $seen . }}
{{- fail (printf "controller.shards: %q is listed twice" .) }}
{{- end }}
{{- $_ := set $seen . true }}
{{- end }}
{{- end }}
