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
The shard names, checked as `modelsync controller --shard` checks them: each is a label value
and part of a Deployment's and a Lease's name, so a DNS label.
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
{{- if gt (len .) 63 }}
{{- fail (printf "controller.shards: %q is longer than 63 characters, the most a label value holds" .) }}
{{- end }}
{{- if hasKey $seen . }}
{{- fail (printf "controller.shards: %q is listed twice" .) }}
{{- end }}
{{- $_ := set $seen . true }}
{{- end }}
{{- end }}
