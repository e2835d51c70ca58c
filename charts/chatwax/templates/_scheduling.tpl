{{/* Where pods may run: the dataflow's one-node rule and NATS's spread over nodes. */}}

{{/* "true" when every dataflow pod must run on one node: they all mount the one recovery
     claim (dataflow-recovery-pvc.yaml), and a claim that is not ReadWriteMany attaches to
     one node at a time. */}}
{{- define "chatwax.dataflow.oneNode" -}}
{{- $recovery := .Values.dataflow.recovery -}}
{{- if and $recovery.enabled (ne $recovery.accessMode "ReadWriteMany") -}}true{{- end -}}
{{- end }}

{{/* dataflow.affinity, plus (when the pods must share a node) a required pod affinity to
     the other dataflow pods by kubernetes.io/hostname. The user's affinity is kept as
     given; the chart's term is appended to its
     podAffinity.requiredDuringSchedulingIgnoredDuringExecution, so both hold. The first
     pod matches its own term, which the scheduler accepts while no other pod matches. */}}
{{- define "chatwax.dataflow.affinity" -}}
{{- $affinity := deepCopy (.Values.dataflow.affinity | default dict) -}}
{{- if include "chatwax.dataflow.oneNode" . -}}
{{- $selector := include "chatwax.selectorLabels" (dict "ctx" . "component" "dataflow") | fromYaml -}}
{{- $term := dict "labelSelector" (dict "matchLabels" $selector) "topologyKey" "kubernetes.io/hostname" -}}
{{- $podAffinity := get $affinity "podAffinity" | default dict -}}
{{- $required := get $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" | default list -}}
{{- if not (has $term $required) -}}
{{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append $required $term) -}}
{{- end -}}
{{- $_ := set $affinity "podAffinity" $podAffinity -}}
{{- end -}}
{{- with $affinity }}{{ toYaml . }}{{ end -}}
{{- end }}

{{/* NATS's topologySpreadConstraints: with nats.replicas > 1 and nats.topologySpread.enabled,
     one that spreads the servers over nodes (kubernetes.io/hostname), then
     nats.topologySpreadConstraints, each given the NATS pods' labelSelector when it has
     none. nodeTaintsPolicy Honor: nodes whose taints NATS does not tolerate (a control
     plane) are not counted as empty domains that would block scheduling. */}}
{{- define "chatwax.nats.topologySpreadConstraints" -}}
{{- $selector := dict "matchLabels" (include "chatwax.selectorLabels" (dict "ctx" . "component" "nats") | fromYaml) -}}
{{- $spread := .Values.nats.topologySpread -}}
{{- $out := list -}}
{{- if and $spread.enabled (gt (int .Values.nats.replicas) 1) -}}
{{- $out = append $out (dict "maxSkew" (int $spread.maxSkew) "topologyKey" "kubernetes.io/hostname" "whenUnsatisfiable" $spread.whenUnsatisfiable "nodeTaintsPolicy" "Honor" "labelSelector" $selector) -}}
{{- end -}}
{{- range .Values.nats.topologySpreadConstraints -}}
{{- $constraint := deepCopy . -}}
{{- if not (hasKey $constraint "labelSelector") -}}
{{- $_ := set $constraint "labelSelector" $selector -}}
{{- end -}}
{{- $out = append $out $constraint -}}
{{- end -}}
{{- with $out }}{{ toYaml . }}{{ end -}}
{{- end }}
