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

{{/* Sign-in (frontend.auth): where the provider sends the browser back, and where the
     client and cookie secrets come from. */}}

{{/* frontend.auth.redirectUri, else http(s)://<first ingress host><base path>/oauth2callback:
     https when an entry of frontend.ingress.tls lists that host. */}}
{{- define "chatwax.frontend.redirectUri" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if $auth.redirectUri -}}
{{- $auth.redirectUri -}}
{{- else if and .Values.frontend.ingress.enabled .Values.frontend.ingress.hosts -}}
{{- $host := (first .Values.frontend.ingress.hosts).host -}}
{{- $scheme := "http" -}}
{{- range .Values.frontend.ingress.tls -}}
{{- if has $host (.hosts | default list) -}}{{- $scheme = "https" -}}{{- end -}}
{{- end -}}
{{- $path := include "chatwax.frontend.baseUrlPath" . -}}
{{- printf "%s://%s%s/oauth2callback" $scheme $host (ternary (printf "/%s" $path) "" (ne $path "")) -}}
{{- else -}}
{{- fail "frontend.auth.enabled needs frontend.ingress (with a host) or frontend.auth.redirectUri: the page's public URL + /oauth2callback, as registered at the provider" -}}
{{- end -}}
{{- end }}

{{/* The chart-made Secret of frontend.auth.clientSecret / cookieSecret. */}}
{{- define "chatwax.frontend.authSecretName" -}}
{{- printf "%s-auth" (include "chatwax.frontend.fullname" .) -}}
{{- end }}

{{/* The Secret a pre-install hook fills with a generated cookie secret. */}}
{{- define "chatwax.frontend.cookieSecretName" -}}
{{- printf "%s-auth-cookie" (include "chatwax.frontend.fullname" .) -}}
{{- end }}

{{/* "true" when the chart-made Secret holds the client secret (no existingSecret). */}}
{{- define "chatwax.frontend.chartClientSecret" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if and .Values.frontend.enabled $auth.enabled (not $auth.existingSecret) -}}true{{- end -}}
{{- end }}

{{/* "true" when the chart-made Secret holds the cookie secret (a value, and no key of
     existingSecret named for it). */}}
{{- define "chatwax.frontend.chartCookieSecret" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if and .Values.frontend.enabled $auth.enabled $auth.cookieSecret (not (and $auth.existingSecret $auth.cookieSecretKey)) -}}true{{- end -}}
{{- end }}

{{/* "true" when a hook generates the cookie secret: none given in a Secret or a value. */}}
{{- define "chatwax.frontend.generatedCookie" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if and .Values.frontend.enabled $auth.enabled (not (and $auth.existingSecret $auth.cookieSecretKey)) (not $auth.cookieSecret) -}}true{{- end -}}
{{- end }}

{{/* The frontend's secret settings as secretKeyRef env entries, never plain values. */}}
{{- define "chatwax.frontend.authEnv" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if $auth.enabled }}
{{- if not (or $auth.existingSecret $auth.clientSecret) }}
{{- fail "frontend.auth.enabled needs the client secret: frontend.auth.existingSecret (recommended) or frontend.auth.clientSecret" }}
{{- end }}
- name: CHATWAX_OIDC_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret | default (include "chatwax.frontend.authSecretName" .) }}
      key: {{ ternary $auth.clientSecretKey "client-secret" (ne $auth.existingSecret "") }}
- name: CHATWAX_OIDC_COOKIE_SECRET
  valueFrom:
    secretKeyRef:
      {{- if and $auth.existingSecret $auth.cookieSecretKey }}
      name: {{ $auth.existingSecret }}
      key: {{ $auth.cookieSecretKey }}
      {{- else if $auth.cookieSecret }}
      name: {{ include "chatwax.frontend.authSecretName" . }}
      key: cookie-secret
      {{- else }}
      name: {{ include "chatwax.frontend.cookieSecretName" . }}
      key: cookie-secret
      {{- end }}
{{- end }}
{{- end }}

{{/* "true" when the dataflow serves the tutorial's `prompts` subject and NATS lets clients
     publish on it: dataflow.compatAdapter, auto meaning "while sign-in is off". */}}
{{- define "chatwax.compat" -}}
{{- $mode := toString .Values.dataflow.compatAdapter -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (not (and .Values.frontend.enabled .Values.frontend.auth.enabled))) -}}true{{- end -}}
{{- end }}

{{/* The cookie-secret hook's Job, ServiceAccount, Role and RoleBinding (a Job fits 63). */}}
{{- define "chatwax.frontend.authInitName" -}}
{{- include "chatwax.fitName" (dict "ctx" . "suffix" "-frontend-auth-init" "max" 63) -}}
{{- end }}
