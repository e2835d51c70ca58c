{{/* NetworkPolicy pieces shared by the components' policies (networkPolicy.*). */}}

{{/* The port of a URL: its explicit port, else the scheme's (443 https, 80 http, 4222 nats/tls). */}}
{{- define "chatwax.urlPort" -}}
{{- $url := urlParse (first (splitList "," .)) -}}
{{- $host := get $url "host" -}}
{{- if regexMatch ":[0-9]+$" $host -}}
{{- regexFind "[0-9]+$" $host -}}
{{- else -}}
{{- get (dict "https" "443" "http" "80" "nats" "4222" "tls" "4222") (get $url "scheme") | default "443" -}}
{{- end -}}
{{- end }}

{{/* Egress to cluster DNS (UDP and TCP 53, any address: where kube-dns runs differs). */}}
{{- define "chatwax.egressDns" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}

{{/* Egress to NATS: the chart's NATS pods on the client port, or nats.url's port. */}}
{{- define "chatwax.egressNats" -}}
{{- if .Values.nats.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "chatwax.selectorLabels" (dict "ctx" . "component" "nats") | nindent 10 }}
  ports:
    - port: {{ .Values.nats.ports.client }}
{{- else }}
- ports:
    - port: {{ include "chatwax.urlPort" .Values.nats.url }}
{{- end }}
{{- end }}

{{/* Egress to addresses (CIDRs) on ports; nothing when either list is empty (an empty
     `to` would mean anywhere). Call with (dict "cidrs" list "ports" list). */}}
{{- define "chatwax.egressCidrs" -}}
{{- if and .cidrs .ports }}
- to:
    {{- range .cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- range .ports }}
    - port: {{ int . }}
    {{- end }}
{{- end }}
{{- end }}

{{/* An ingress rule for the scrapers (networkPolicy.scrapers) on the named ports; nothing
     when the list is empty (an empty `from` would mean everyone). Call with (dict "ctx" $
     "ports" list). */}}
{{- define "chatwax.scrapersRule" -}}
{{- with .ctx.Values.networkPolicy.scrapers }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    {{- range $.ports }}
    - port: {{ . }}
    {{- end }}
{{- end }}
{{- end }}
