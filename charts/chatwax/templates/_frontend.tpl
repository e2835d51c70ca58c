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

{{/* Sign-in (frontend.auth): on unless openMode; where the provider sends the browser
     back, and where the client and cookie secrets come from. */}}

{{/* "true" when the pages require sign-in: the frontend runs and openMode is not set. */}}
{{- define "chatwax.frontend.signIn" -}}
{{- if and .Values.frontend.enabled (not .Values.frontend.auth.openMode) -}}true{{- end -}}
{{- end }}

{{/* "true" when sign-in is on and a provider is configured (any of its values given; the
     rest are then required). Sign-in on without one: the page only says what to set. */}}
{{- define "chatwax.frontend.oidc" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if and (include "chatwax.frontend.signIn" .) (or $auth.metadataUrl $auth.clientId $auth.existingSecret $auth.clientSecret) -}}true{{- end -}}
{{- end }}

{{/* Open mode behind an Ingress, a LoadBalancer or a NodePort puts every conversation
     where the network reaches: refused unless frontend.auth.openModeExposed says so. */}}
{{- define "chatwax.frontend.checkOpenMode" -}}
{{- $f := .Values.frontend -}}
{{- if and $f.enabled $f.auth.openMode (not $f.auth.openModeExposed) -}}
{{- if $f.ingress.enabled -}}
{{- fail "frontend.auth.openMode with frontend.ingress.enabled lets anyone the ingress reaches read every conversation: turn sign-in on (unset openMode, set frontend.auth.metadataUrl/clientId/existingSecret), or set frontend.auth.openModeExposed=true to accept it" -}}
{{- end -}}
{{- if has $f.service.type (list "LoadBalancer" "NodePort") -}}
{{- fail (printf "frontend.auth.openMode with frontend.service.type=%s lets anyone the network reaches read every conversation: turn sign-in on, or set frontend.auth.openModeExposed=true to accept it" $f.service.type) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* frontend.auth.redirectUri, else https://<first ingress host><base path>/oauth2callback,
     which needs an entry of frontend.ingress.tls to list that host: sign-in never runs over
     plain http (the code and the identity cookie would cross the network in the clear). */}}
{{- define "chatwax.frontend.redirectUri" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if $auth.redirectUri -}}
{{- $auth.redirectUri -}}
{{- else if and .Values.frontend.ingress.enabled .Values.frontend.ingress.hosts -}}
{{- $host := (first .Values.frontend.ingress.hosts).host -}}
{{- $tls := false -}}
{{- range .Values.frontend.ingress.tls -}}
{{- if has $host (.hosts | default list) -}}{{- $tls = true -}}{{- end -}}
{{- end -}}
{{- if not $tls -}}
{{- fail (printf "sign-in needs https: frontend.ingress.tls must list %s (or set frontend.auth.redirectUri to the page's https URL + /oauth2callback)" $host) -}}
{{- end -}}
{{- $path := include "chatwax.frontend.baseUrlPath" . -}}
{{- printf "https://%s%s/oauth2callback" $host (ternary (printf "/%s" $path) "" (ne $path "")) -}}
{{- else -}}
{{- fail "sign-in needs frontend.ingress (with a host) or frontend.auth.redirectUri: the page's public URL + /oauth2callback, as registered at the provider" -}}
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
{{- if and (include "chatwax.frontend.oidc" .) (not $auth.existingSecret) -}}true{{- end -}}
{{- end }}

{{/* "true" when the chart-made Secret holds the cookie secret (a value, and no key of
     existingSecret named for it). */}}
{{- define "chatwax.frontend.chartCookieSecret" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if and (include "chatwax.frontend.oidc" .) $auth.cookieSecret (not (and $auth.existingSecret $auth.cookieSecretKey)) -}}true{{- end -}}
{{- end }}

{{/* "true" when a hook generates the cookie secret: none given in a Secret or a value. */}}
{{- define "chatwax.frontend.generatedCookie" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if and (include "chatwax.frontend.oidc" .) (not (and $auth.existingSecret $auth.cookieSecretKey)) (not $auth.cookieSecret) -}}true{{- end -}}
{{- end }}

{{/* The frontend's sign-in secrets as projected sources (files), never env values. */}}
{{- define "chatwax.frontend.authSources" -}}
{{- $auth := .Values.frontend.auth -}}
{{- if include "chatwax.frontend.oidc" . }}
{{- if not (or $auth.existingSecret $auth.clientSecret) }}
{{- fail "sign-in needs the client secret: frontend.auth.existingSecret (recommended) or frontend.auth.clientSecret" }}
{{- end }}
{{- include "chatwax.secretSource" (dict "secret" ($auth.existingSecret | default (include "chatwax.frontend.authSecretName" .)) "key" (ternary $auth.clientSecretKey "client-secret" (ne $auth.existingSecret "")) "path" "CHATWAX_OIDC_CLIENT_SECRET") }}
{{- if and $auth.existingSecret $auth.cookieSecretKey }}
{{ include "chatwax.secretSource" (dict "secret" $auth.existingSecret "key" $auth.cookieSecretKey "path" "CHATWAX_OIDC_COOKIE_SECRET") }}
{{- else if $auth.cookieSecret }}
{{ include "chatwax.secretSource" (dict "secret" (include "chatwax.frontend.authSecretName" .) "key" "cookie-secret" "path" "CHATWAX_OIDC_COOKIE_SECRET") }}
{{- else }}
{{ include "chatwax.secretSource" (dict "secret" (include "chatwax.frontend.cookieSecretName" .) "key" "cookie-secret" "path" "CHATWAX_OIDC_COOKIE_SECRET") }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when the dataflow serves the tutorial's `prompts` subject and NATS lets clients
     publish on it: dataflow.compatAdapter, auto meaning "while sign-in is off" (open mode,
     or no frontend). */}}
{{- define "chatwax.compat" -}}
{{- $mode := toString .Values.dataflow.compatAdapter -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (not (include "chatwax.frontend.signIn" .))) -}}true{{- end -}}
{{- end }}

{{/* The cookie-secret hook's Job, ServiceAccount, Role and RoleBinding (a Job fits 63). */}}
{{- define "chatwax.frontend.authInitName" -}}
{{- include "chatwax.fitName" (dict "ctx" . "suffix" "-frontend-auth-init" "max" 63) -}}
{{- end }}
