{{/* Names, labels and shared snippets. */}}

{{- define "chatwax.name" -}}
{{- regexReplaceAll "[-_.]+$" (default .Chart.Name .Values.nameOverride | trunc 63) "" }}
{{- end }}

{{/* Names and Kubernetes' limits. Every object name is "<base><suffix>", where base is
     "<release>-<chart>" (just "<release>" when it already contains the chart's name) or
     fullnameOverride, lower-cased with any character a DNS label cannot hold turned into
     "-" and, when it does not start with a letter, "chatwax-" in front (Service names must).
     A name that fits its object's limit is exactly that. A longer one keeps its suffix and
     the start of base, with "-" and 8 hex characters of base's sha256 between them, so
     names stay stable across upgrades, components never collide (their suffixes differ)
     and two releases that share a long prefix differ (their hashes do). The limits:
       StatefulSet   52  pods carry the label controller-revision-hash=<sts>-<10 chars>,
                         a label value (63); pods are <sts>-<ordinal>, a DNS label
       Service       63  a DNS label (RFC 1035), and "<sts>-headless" (<= 61 from 52)
       Deployment    63  shared with its Service; pod hostnames stay whole
       Job           63  pods carry the label job-name=<job>
       others       253  DNS subdomain: ConfigMap, Secret, PVC, Role, ... ("<fullname>-..."
                         with fullname <= 50 stays far below)
     Names of releases whose base fits in 43 characters are those of chart 0.2.0. */}}
{{- define "chatwax.baseName" -}}
{{- $base := .Values.fullnameOverride -}}
{{- if not $base -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- $base = ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) -}}
{{- end -}}
{{- $base = regexReplaceAll "[^a-z0-9-]+" (lower $base) "-" | trimAll "-" -}}
{{- if not (regexMatch "^[a-z]" $base) -}}
{{- $base = printf "%s-%s" .Chart.Name $base | trimSuffix "-" -}}
{{- end -}}
{{- $base -}}
{{- end }}

{{/* "<base><suffix>" in at most .max characters (see above):
     (dict "ctx" $ "suffix" "-nats" "max" 52). */}}
{{- define "chatwax.fitName" -}}
{{- $base := include "chatwax.baseName" .ctx -}}
{{- $suffix := .suffix | default "" -}}
{{- $max := int .max -}}
{{- if le (len (printf "%s%s" $base $suffix)) $max -}}
{{- printf "%s%s" $base $suffix -}}
{{- else -}}
{{- $keep := sub (sub $max (len $suffix)) 9 | int -}}
{{- printf "%s-%s%s" ($base | trunc $keep | trimSuffix "-") (sha256sum $base | trunc 8) $suffix -}}
{{- end -}}
{{- end }}

{{/* Release-scoped base name (<= 50); other names append to it (-llm, -test-ask, ...). */}}
{{- define "chatwax.fullname" -}}
{{- include "chatwax.fitName" (dict "ctx" . "max" 50) }}
{{- end }}

{{/* Component names: StatefulSets fit 52, Services and Deployments 63. */}}
{{- define "chatwax.nats.fullname" -}}{{ include "chatwax.fitName" (dict "ctx" . "suffix" "-nats" "max" 52) }}{{- end }}
{{- define "chatwax.dataflow.fullname" -}}{{ include "chatwax.fitName" (dict "ctx" . "suffix" "-dataflow" "max" 52) }}{{- end }}
{{- define "chatwax.frontend.fullname" -}}{{ include "chatwax.fitName" (dict "ctx" . "suffix" "-frontend" "max" 63) }}{{- end }}
{{- define "chatwax.llm.fullname" -}}{{ include "chatwax.fitName" (dict "ctx" . "suffix" "-llm" "max" 63) }}{{- end }}

{{- define "chatwax.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "chatwax.labels" -}}
helm.sh/chart: {{ include "chatwax.chart" . }}
app.kubernetes.io/name: {{ include "chatwax.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatwax
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "nats"). */}}
{{- define "chatwax.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatwax.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "chatwax.componentLabels" -}}
{{ include "chatwax.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image: "repository:tag" with the tag defaulting to the chart's appVersion. */}}
{{- define "chatwax.image" -}}
{{- $tag := .image.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository (toString $tag) }}
{{- end }}

{{/* Where clients find NATS: the chart's own service (tls:// with nats.tls) or an
     external URL. */}}
{{- define "chatwax.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{ ternary "tls" "nats" .Values.nats.tls.enabled }}://{{ include "chatwax.nats.host" . }}:{{ .Values.nats.ports.client }}
{{- else -}}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url -}}
{{- end -}}
{{- end }}

{{- define "chatwax.nats.host" -}}
{{ include "chatwax.nats.fullname" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end }}

{{/* "true" when the chart runs a clustered NATS: its routes log in (route-password). */}}
{{- define "chatwax.nats.clustered" -}}
{{- if and .Values.nats.enabled (gt (int .Values.nats.replicas) 1) }}true{{ end }}
{{- end }}

{{/* The NATS pods' auth Secret is needed for client passwords or the route password. */}}
{{- define "chatwax.nats.passwordFiles" -}}
{{- if and .Values.nats.enabled (or .Values.nats.auth.enabled (include "chatwax.nats.clustered" .)) }}true{{ end }}
{{- end }}

{{/* The Secret with the NATS certificate (nats.tls): given, or the Certificate's. */}}
{{- define "chatwax.nats.tlsSecretName" -}}
{{- $tls := .Values.nats.tls -}}
{{- if $tls.secretName -}}
{{- $tls.secretName -}}
{{- else if and $tls.certManager.enabled .Values.nats.enabled -}}
{{- printf "%s-tls" (include "chatwax.nats.fullname" .) -}}
{{- else if .Values.nats.enabled -}}
{{- fail "nats.tls.enabled needs a certificate: nats.tls.secretName (a kubernetes.io/tls Secret with ca.crt) or nats.tls.certManager.enabled with nats.tls.certManager.issuerRef.name" -}}
{{- else -}}
{{- fail "nats.tls.enabled with an external NATS needs nats.tls.secretName: a Secret whose ca.crt signed that server's certificate" -}}
{{- end -}}
{{- end }}

{{/* Clients of a TLS NATS read its CA from a file (NATS_CA): the env entry, the mount and
     the volume, each empty without nats.tls. */}}
{{- define "chatwax.nats.tlsDir" -}}/run/secrets/nats-tls{{- end }}
{{- define "chatwax.nats.caDir" -}}/run/secrets/nats-ca{{- end }}
{{- define "chatwax.nats.caEnv" -}}
{{- if .Values.nats.tls.enabled }}
NATS_CA: {{ printf "%s/ca.crt" (include "chatwax.nats.caDir" .) | quote }}
{{- end }}
{{- end }}
{{- define "chatwax.nats.caMount" -}}
{{- if .Values.nats.tls.enabled }}
- name: nats-ca
  mountPath: {{ include "chatwax.nats.caDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- define "chatwax.nats.caVolume" -}}
{{- if .Values.nats.tls.enabled }}
- name: nats-ca
  secret:
    secretName: {{ include "chatwax.nats.tlsSecretName" . }}
    defaultMode: 292  # 0444: a CA is no secret
    items:
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- end }}

{{- define "chatwax.nats.authSecretName" -}}
{{- .Values.nats.auth.existingSecret | default (printf "%s-auth" (include "chatwax.nats.fullname" .)) }}
{{- end }}

{{/* The model name every answer reports: the local model's when it is enabled. */}}
{{- define "chatwax.llm.model" -}}
{{- if .Values.llm.local.enabled -}}smollm2-135m-instruct{{- else -}}{{ .Values.llm.model }}{{- end -}}
{{- end }}

{{/* LLM settings for the dataflow's ConfigMap: the local model's server and sizes, or
     llm.baseUrl and the chosen sizes. History keeps half the local context free, since
     token counts before the call are estimates. */}}
{{- define "chatwax.llm.env" -}}
CHATWAX_MODEL: {{ include "chatwax.llm.model" . | quote }}
{{- if .Values.llm.local.enabled }}
{{- $local := .Values.llm.local }}
OPENAI_BASE_URL: {{ printf "http://%s.%s.svc.%s:%d/v1" (include "chatwax.llm.fullname" .) .Release.Namespace .Values.clusterDomain (int $local.port) | quote }}
CHATWAX_PROVIDER: "local"
CHATWAX_CONTEXT_TOKENS: {{ $local.contextTokens | quote }}
CHATWAX_MAX_OUTPUT_TOKENS: {{ min .Values.llm.maxOutputTokens $local.maxOutputTokens | quote }}
CHATWAX_HISTORY_TOKEN_BUDGET: {{ min .Values.llm.historyTokenBudget (div (int $local.contextTokens) 2) | quote }}
{{- else }}
{{- with .Values.llm.baseUrl }}
OPENAI_BASE_URL: {{ . | quote }}
{{- end }}
CHATWAX_MAX_OUTPUT_TOKENS: {{ .Values.llm.maxOutputTokens | quote }}
CHATWAX_HISTORY_TOKEN_BUDGET: {{ .Values.llm.historyTokenBudget | quote }}
{{- end }}
{{- end }}

{{- define "chatwax.llm.secretName" -}}
{{- .Values.llm.existingSecret | default (printf "%s-llm" (include "chatwax.fullname" .)) }}
{{- end }}

{{- define "chatwax.dataflow.serviceAccountName" -}}
{{- if .Values.dataflow.serviceAccount.create }}
{{- .Values.dataflow.serviceAccount.name | default (include "chatwax.dataflow.fullname" .) }}
{{- else }}
{{- .Values.dataflow.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* Peer list of the bytewax cluster: one stable DNS name per StatefulSet pod. */}}
{{- define "chatwax.dataflow.addresses" -}}
{{- $name := include "chatwax.dataflow.fullname" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.dataflow.processes) -}}
{{- $addrs = append $addrs (printf "%s-%d.%s-headless.%s.svc.%s:%d" $name $i $name $.Release.Namespace $.Values.clusterDomain (int $.Values.dataflow.ports.process)) -}}
{{- end -}}
{{- join ";" $addrs -}}
{{- end }}

{{/* NATS user name of one client: (dict "ctx" $ "user" "dataflow"|"frontend"|"operator");
     its password is a file (chatwax.natsPasswordSource). */}}
{{- define "chatwax.natsAuthEnv" -}}
{{- if .ctx.Values.nats.auth.enabled }}
{{- if not (or .ctx.Values.nats.enabled .ctx.Values.nats.auth.existingSecret) }}
{{- fail "nats.auth.enabled with an external NATS (nats.enabled=false) needs nats.auth.existingSecret with the clients' passwords, or nats.auth.enabled=false" }}
{{- end }}
- name: NATS_USER
  value: {{ .user | quote }}
{{- end }}
{{- end }}

{{/* Secrets as files (src/chatwax/core/secretfiles.py): no secret is an environment
     variable of any chatwax container. Each pod gets a projected volume at
     /run/secrets/chatwax with one file per secret setting, named like its variable, and
     CHATWAX_SECRETS_DIR pointing there, where chatwax reads them at start. */}}
{{- define "chatwax.secretsDir" -}}/run/secrets/chatwax{{- end }}

{{/* One projected source: (dict "secret" name "key" key "path" VARIABLE). */}}
{{- define "chatwax.secretSource" -}}
- secret:
    name: {{ .secret }}
    items:
      - key: {{ .key }}
        path: {{ .path }}
{{- end }}

{{/* The NATS password of one client as a file: (dict "ctx" $ "user" ...). */}}
{{- define "chatwax.natsPasswordSource" -}}
{{- if .ctx.Values.nats.auth.enabled }}
{{- include "chatwax.secretSource" (dict "secret" (include "chatwax.nats.authSecretName" .ctx) "key" (printf "%s-password" .user) "path" "NATS_PASSWORD") }}
{{- end }}
{{- end }}

{{/* The secrets volume from sources (YAML text, empty lines ignored): nothing without any. */}}
{{- define "chatwax.secretsVolume" -}}
{{- $sources := regexReplaceAll "\n[ \t]*\n" (trim .) "\n" -}}
{{- with $sources }}
- name: secrets
  projected:
    defaultMode: 288  # 0440: the pods' user and group (fsGroup) read, nobody else
    sources:
      {{- . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The container side of the secrets volume: CHATWAX_SECRETS_DIR (env) or the mount. */}}
{{- define "chatwax.secretsEnv" -}}
{{- if trim . }}
- name: CHATWAX_SECRETS_DIR
  value: {{ include "chatwax.secretsDir" . }}
{{- end }}
{{- end }}
{{- define "chatwax.secretsMount" -}}
{{- if trim . }}
- name: secrets
  mountPath: {{ include "chatwax.secretsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The restricted pod-security context every chatwax container runs with. */}}
{{- define "chatwax.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Bytes in a Kubernetes quantity: 10Gi, 500Mi, 2G, 1073741824.
*/}}
{{- define "chatwax.bytes" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $num := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- if or (not $num) (not (hasKey $units $unit)) -}}
{{- fail (printf "cannot read %q as bytes: write a whole number with Ki, Mi, Gi, Ti, k, M, G or T" $q) -}}
{{- end -}}
{{- mul (int64 $num) (get $units $unit) -}}
{{- end -}}

{{/*
The streams' byte bounds together must fit the JetStream volume: NATS reserves each bound
when it creates the stream, and refuses a stream whose bound no longer fits.
*/}}
{{- define "chatwax.checkStreamBytes" -}}
{{- if .Values.nats.enabled -}}
{{- $volume := include "chatwax.bytes" .Values.nats.jetstream.storageSize | int64 -}}
{{- $transcripts := int64 .Values.dataflow.transcripts.maxBytes -}}
{{- $prompts := int64 .Values.dataflow.prompts.maxBytes -}}
{{- $total := add $transcripts $prompts (int64 .Values.dataflow.deadLetters.maxBytes) -}}
{{- if gt $total $volume -}}
{{- fail (printf "dataflow.transcripts.maxBytes + dataflow.prompts.maxBytes + dataflow.deadLetters.maxBytes = %d bytes, more than nats.jetstream.storageSize (%s = %d bytes): NATS could not create the streams. Lower the bounds or raise the storage size." $total (toString .Values.nats.jetstream.storageSize) $volume) -}}
{{- end -}}
{{- end -}}
{{- end -}}
