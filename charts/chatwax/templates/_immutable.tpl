{{/*
Values the API server will not let change after install, refused before anything is applied.

A real API server refuses an update of a StatefulSet's volumeClaimTemplates
(k8s.io/kubernetes pkg/apis/apps/validation `ValidateStatefulSetUpdate`) and of a
PersistentVolumeClaim's spec, except a bound claim's requested storage growing on a
StorageClass with allowVolumeExpansion (pkg/apis/core/validation
`ValidatePersistentVolumeClaimUpdate`, admission plugin PersistentVolumeClaimResize).
Helm applies objects one by one, so such a value is half-applied (the NATS ConfigMap's
max_file_store grows, the StatefulSet is refused) and the release is marked failed. Helm
renders every template before it applies any object: a `fail` here stops the upgrade
with nothing changed.

Names are fixed at install too (nameOverride, fullnameOverride: chatwax.baseName and
chatwax.name in _helpers.tpl). A new object name makes Helm create new StatefulSets, whose
volume claims are new and empty (the JetStream data and the dataflow's recovery state stay
in the old claims), and delete the old ones. A new app.kubernetes.io/name changes the
workloads' spec.selector, which the API server refuses for a StatefulSet
(`ValidateStatefulSetUpdate`: only replicas, template, updateStrategy and a few others may
change) and for an apps/v1 Deployment (pkg/registry/apps/deployment/strategy.go
`ValidateUpdate`, beside `ValidateDeploymentUpdate`): the ConfigMaps and Services are
changed, the workloads refused, the release failed.

The live objects come from `lookup`, which is empty under `helm template`, a client-side
`--dry-run` and hence Argo CD (helm.sh/docs/chart_template_guide/functions_and_pipelines
"Using the lookup function"; helm pkg/engine/lookup_func.go returns an empty map for a
missing object): there, nothing is checked and the chart renders as before. The name check
lists the namespace's StatefulSets and Deployments, so helm's identity needs `list` on them.
Upgrade notes: docs/kubernetes.md "Storage values after install".
*/}}

{{/*
Bytes of a Kubernetes quantity as the API server stores it, or "" when it is not a whole
number with a binary or decimal suffix up to T/Ti. The server stores quantities in
canonical form (1024Mi as "1Gi", 1073741824 as "1Gi", 1000M as "1G"), so what was sent
and what is stored compare equal by bytes, not by text.
*/}}
{{- define "chatwax.storageBytes" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $num := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- if and $num (hasKey $units $unit) -}}
{{- mul (int64 $num) (get $units $unit) -}}
{{- end -}}
{{- end -}}

{{/*
"equal", "less" or "more": the new quantity against the installed one, by bytes (by text
when either is not a plain quantity: then only identical text is "equal").
*/}}
{{- define "chatwax.compareQuantity" -}}
{{- $new := include "chatwax.storageBytes" .new -}}
{{- $old := include "chatwax.storageBytes" .old -}}
{{- if or (eq $new "") (eq $old "") -}}
{{- ternary "equal" "other" (eq (toString .new) (toString .old)) -}}
{{- else if eq (int64 $new) (int64 $old) -}}equal
{{- else if lt (int64 $new) (int64 $old) -}}less
{{- else -}}more
{{- end -}}
{{- end -}}

{{/*
The NATS StatefulSet's volume claim template (nats.jetstream.storageSize and
storageClassName): no change is accepted by the API server.
*/}}
{{- define "chatwax.checkNatsStorage" -}}
{{- $name := include "chatwax.nats.fullname" . -}}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace $name -}}
{{- if $live -}}
{{- range (dig "spec" "volumeClaimTemplates" list $live) -}}
{{- if eq (dig "metadata" "name" "" .) "data" -}}
{{- $size := dig "spec" "resources" "requests" "storage" "" . | toString -}}
{{- $class := dig "spec" "storageClassName" "" . -}}
{{- $wantSize := toString $.Values.nats.jetstream.storageSize -}}
{{- $wantClass := $.Values.nats.jetstream.storageClassName | default "" -}}
{{- if ne (include "chatwax.compareQuantity" (dict "new" $wantSize "old" $size)) "equal" -}}
{{- fail (printf "nats.jetstream.storageSize cannot change after install: the StatefulSet %s has volumes of %s, the new value is %s, and Kubernetes refuses any change to a StatefulSet's volumeClaimTemplates (the upgrade would half-apply: max_file_store would follow the new value, the volumes would not). Nothing was applied. Keep --set nats.jetstream.storageSize=%s, or resize as docs/kubernetes.md \"Storage values after install\" says (expand each data-%s-<n> claim with an expandable StorageClass, delete the StatefulSet with --cascade=orphan, then upgrade with the new size)." $name $size $wantSize $size $name) -}}
{{- end -}}
{{- if ne $wantClass $class -}}
{{- fail (printf "nats.jetstream.storageClassName cannot change after install: the StatefulSet %s has volumes of class %q, the new value is %q, and Kubernetes refuses any change to a StatefulSet's volumeClaimTemplates. Nothing was applied. Keep --set nats.jetstream.storageClassName=%s, or move to the new class as docs/kubernetes.md \"Storage values after install\" says (a new release, or new claims)." $name $class $wantClass $class) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The recovery claim (dataflow.recovery.size, accessMode, storageClassName). Returns the
storage class to render: the value, or when it is empty the class the live claim got from
the cluster's default (the DefaultStorageClass admission plugin writes it into the claim
on create), so a re-render with "" sends no change to an immutable field.
*/}}
{{- define "chatwax.checkRecoveryStorage" -}}
{{- $r := .Values.dataflow.recovery -}}
{{- $name := printf "%s-recovery" (include "chatwax.dataflow.fullname" .) -}}
{{- $live := lookup "v1" "PersistentVolumeClaim" .Release.Namespace $name -}}
{{- $class := $r.storageClassName | default "" -}}
{{- if $live -}}
{{- $liveClass := dig "spec" "storageClassName" "" $live -}}
{{- $liveMode := first (dig "spec" "accessModes" (list "") $live) -}}
{{- $liveSize := dig "spec" "resources" "requests" "storage" "" $live | toString -}}
{{- $phase := dig "status" "phase" "Pending" $live -}}
{{- $docs := "docs/kubernetes.md \"Storage values after install\"" -}}
{{- if ne $r.accessMode $liveMode -}}
{{- fail (printf "dataflow.recovery.accessMode cannot change after install: the claim %s is %s, the new value is %s, and Kubernetes refuses a change to a claim's spec. Nothing was applied. Keep --set dataflow.recovery.accessMode=%s, or move the recovery state to a new claim as %s says." $name $liveMode $r.accessMode $liveMode $docs) -}}
{{- end -}}
{{- if and $class (ne $class $liveClass) -}}
{{- fail (printf "dataflow.recovery.storageClassName cannot change after install: the claim %s has class %q, the new value is %q, and Kubernetes refuses a change to a claim's spec. Nothing was applied. Keep --set dataflow.recovery.storageClassName=%s (or leave it empty), or move the recovery state to a new claim as %s says." $name $liveClass $class $liveClass $docs) -}}
{{- end -}}
{{- $cmp := include "chatwax.compareQuantity" (dict "new" $r.size "old" $liveSize) -}}
{{- if eq $cmp "less" -}}
{{- fail (printf "dataflow.recovery.size cannot shrink: the claim %s requests %s, the new value is %s, and Kubernetes never shrinks a claim. Nothing was applied. Keep --set dataflow.recovery.size=%s or larger (%s)." $name $liveSize (toString $r.size) $liveSize $docs) -}}
{{- else if eq $cmp "other" -}}
{{- fail (printf "dataflow.recovery.size: cannot compare the new value %s with the claim %s's %s; write it as the claim has it or as a whole number with Ki, Mi, Gi, Ti, k, M, G or T." (toString $r.size) $name $liveSize) -}}
{{- else if eq $cmp "more" -}}
{{- if ne $phase "Bound" -}}
{{- fail (printf "dataflow.recovery.size can grow only on a bound claim: the claim %s (%s, %s) is %s, and Kubernetes refuses any change to an unbound claim's spec. Nothing was applied. Keep --set dataflow.recovery.size=%s until the claim is Bound (%s)." $name $liveSize (default "the default class" $liveClass) $phase $liveSize $docs) -}}
{{- end -}}
{{- $sc := dict -}}
{{- if $liveClass -}}
{{- $sc = lookup "storage.k8s.io/v1" "StorageClass" "" $liveClass -}}
{{- end -}}
{{- if not ($sc.allowVolumeExpansion) -}}
{{- fail (printf "dataflow.recovery.size can grow only where the claim's StorageClass allows it: the claim %s (%s) has class %q, which does not set allowVolumeExpansion: true, so Kubernetes refuses the resize. Nothing was applied. Keep --set dataflow.recovery.size=%s, or move the recovery state to a larger claim as %s says." $name $liveSize $liveClass $liveSize $docs) -}}
{{- end -}}
{{- end -}}
{{- $class = $liveClass -}}
{{- end -}}
{{- $class -}}
{{- end -}}

{{/*
The name the values give one component's workload: (dict "ctx" $ "component" "nats").
*/}}
{{- define "chatwax.componentName" -}}
{{- include (printf "chatwax.%s.fullname" .component) .ctx -}}
{{- end -}}

{{/*
"true" when .ctx (a context with .Values.nameOverride and fullnameOverride, .Chart and
.Release) gives every workload in .found the name it has.
*/}}
{{- define "chatwax.namesAre" -}}
{{- $ok := true -}}
{{- range .found -}}
{{- if ne .name (include "chatwax.componentName" (dict "ctx" $.ctx "component" .component)) -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- if $ok -}}true{{- end -}}
{{- end -}}

{{/*
nameOverride and fullnameOverride: the release's installed StatefulSets and Deployments
(labels app.kubernetes.io/instance=<release>, part-of=chatwax, managed-by=Helm and a
component) must keep their names and their selector's app.kubernetes.io/name. Only the
components the values render are compared: one they turn off is deleted, not renamed.
The message names the value to set back: nameOverride when the label differs (its old
value is the label), fullnameOverride when the names differ otherwise (the old value is
the installed name without its component suffix, when that gives every installed name).
*/}}
{{- define "chatwax.checkNames" -}}
{{- $label := include "chatwax.name" . -}}
{{- $kinds := dict "nats" "StatefulSet" "dataflow" "StatefulSet" "frontend" "Deployment" "llm" "Deployment" -}}
{{- $rendered := dict "nats" .Values.nats.enabled "dataflow" true "frontend" .Values.frontend.enabled "llm" .Values.llm.local.enabled -}}
{{- $found := list -}}
{{- range $kind := list "StatefulSet" "Deployment" -}}
{{- range (dig "items" list (lookup "apps/v1" $kind $.Release.Namespace "")) -}}
{{- $l := dig "metadata" "labels" dict . -}}
{{- $component := get $l "app.kubernetes.io/component" | toString -}}
{{- if and (eq (get $l "app.kubernetes.io/instance" | toString) $.Release.Name) (eq (get $l "app.kubernetes.io/part-of" | toString) "chatwax") (eq (get $l "app.kubernetes.io/managed-by" | toString) "Helm") (eq (get $kinds $component | toString) $kind) (get $rendered $component) -}}
{{- $found = append $found (dict "kind" $kind "component" $component "name" (dig "metadata" "name" "" .) "label" (dig "spec" "selector" "matchLabels" "app.kubernetes.io/name" "" . | toString)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $found -}}
{{- $want := include "chatwax.componentName" (dict "ctx" $ "component" .component) -}}
{{- if or (ne .name $want) (ne .label $label) -}}
{{- $values := list -}}
{{- $keep := list -}}
{{- $nameOverride := $.Values.nameOverride | default "" -}}
{{- if ne .label $label -}}
{{- $values = append $values "nameOverride" -}}
{{- $keep = append $keep (printf "--set nameOverride=%s" .label) -}}
{{- $nameOverride = .label -}}
{{- end -}}
{{- $old := dict "Values" (dict "nameOverride" $nameOverride "fullnameOverride" ($.Values.fullnameOverride | default "")) "Chart" $.Chart "Release" $.Release -}}
{{- if not (include "chatwax.namesAre" (dict "ctx" $old "found" $found)) -}}
{{- $values = append $values "fullnameOverride" -}}
{{- $base := trimSuffix (printf "-%s" .component) .name -}}
{{- $_ := set $old.Values "fullnameOverride" $base -}}
{{- if include "chatwax.namesAre" (dict "ctx" $old "found" $found) -}}
{{- $keep = append $keep (printf "--set fullnameOverride=%s" $base) -}}
{{- else -}}
{{- $keep = append $keep (printf "fullnameOverride as it was at install (the value that gave %s)" .name) -}}
{{- end -}}
{{- end -}}
{{- $why := "Kubernetes refuses any change to a StatefulSet's or Deployment's spec.selector, so the upgrade would half-apply (ConfigMaps and Services changed, the workloads refused, the release failed)." -}}
{{- if ne .name $want -}}
{{- $why = "Helm would create new StatefulSets and Deployments under the new names, with new, empty volume claims (the JetStream data and the dataflow's recovery state stay in the old claims), and delete the old ones." -}}
{{- end -}}
{{- fail (printf "%s cannot change after install: the installed %s is %s with the selector label app.kubernetes.io/name=%s, the new values make it %s with app.kubernetes.io/name=%s. %s Nothing was applied. Keep %s; a new name means a new release with new, empty volumes (docs/kubernetes.md \"Storage values after install\")." (join " and " $values) .kind .name .label $want $label $why (join " and " $keep)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
