{{/* The frontend behind an ingress: its URL path and sticky sessions. */}}

{{/* Streamlit's server.baseUrlPath without slashes ("" for the root): frontend.baseUrlPath,
     else, with the ingress on, the first host's first path. */}}
{{- define "chatwax.frontend.baseUrlPath" -}}
{{- $path := .Values.frontend.baseUrlPath -}}
{{- if and (not $path) .Values.frontend.ingress.enabled -}}
{{- with .Values.frontend.ingress.hosts -}}
{{- with (first .).paths -}}
{{- $path = (first .).path -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- trimAll "/" ($path | default "") -}}
{{- end }}

{{/* Streamlit's health endpoint under the base path. */}}
{{- define "chatwax.frontend.healthPath" -}}
{{- with include "chatwax.frontend.baseUrlPath" . }}/{{ . }}{{ end }}/_stcore/health
{{- end }}

{{/* "true" when more than one frontend pod may serve (replicas > 1 or the HPA on). */}}
{{- define "chatwax.frontend.manyPods" -}}
{{- if or (gt (int .Values.frontend.replicas) 1) .Values.frontend.autoscaling.enabled -}}true{{- end -}}
{{- end }}

{{/* "true" when the Ingress gets ingress-nginx's cookie affinity: stickySessions true, or
     auto with more than one pod and ingress class nginx. */}}
{{- define "chatwax.frontend.sticky" -}}
{{- $ingress := .Values.frontend.ingress -}}
{{- $mode := toString $ingress.stickySessions -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (include "chatwax.frontend.manyPods" .) (eq $ingress.className "nginx")) -}}true{{- end -}}
{{- end }}

{{/* The Ingress's annotations: ingress-nginx's cookie affinity when sticky (persistent:
     a scale-up moves no existing session; a new cookie when the pod is gone), under
     frontend.ingress.annotations, which win on the same key. */}}
{{- define "chatwax.frontend.ingressAnnotations" -}}
{{- $annotations := deepCopy (.Values.frontend.ingress.annotations | default dict) -}}
{{- if include "chatwax.frontend.sticky" . -}}
{{- $annotations = merge $annotations (dict
    "nginx.ingress.kubernetes.io/affinity" "cookie"
    "nginx.ingress.kubernetes.io/affinity-mode" "persistent"
    "nginx.ingress.kubernetes.io/session-cookie-name" "chatwax-frontend"
    "nginx.ingress.kubernetes.io/session-cookie-change-on-failure" "true") -}}
{{- end -}}
{{- with $annotations }}{{ toYaml . }}{{ end -}}
{{- end }}
