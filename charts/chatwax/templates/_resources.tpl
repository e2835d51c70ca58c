{{/* Sizes read from Kubernetes quantities. */}}

{{/* The bytes in a memory quantity ("4Gi", "1.5G", "512Mi", "2147483648", "1e9"; YAML
     numbers too), as a float; fails on anything else. */}}
{{- define "chatwax.quantityBytes" -}}
{{- $q := toString . | trim -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- $units := dict "" 1 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- $factor := 1.0 -}}
{{- if not $number -}}
{{- fail (printf "cannot read the memory quantity %q" $q) -}}
{{- else if hasKey $units $unit -}}
{{- $factor = get $units $unit | float64 -}}
{{- else if regexMatch "^[eE]\\+?[0-9]+$" $unit -}}
{{- /* the exponent without leading zeros ("e+09" from a YAML number), which int would read as octal */ -}}
{{- range until (int (regexFind "[1-9][0-9]*$" $unit)) }}{{ $factor = mulf $factor 10 }}{{ end -}}
{{- else -}}
{{- fail (printf "cannot read the memory quantity %q" $q) -}}
{{- end -}}
{{- mulf (float64 $number) $factor -}}
{{- end }}

{{/* GOMEMLIMIT for a Go server: 90% of the container's memory limit, in bytes, leaving the
     rest for what the Go runtime does not count (stacks, cgo, page cache of mmapped files);
     empty when resources have no memory limit. */}}
{{- define "chatwax.goMemLimit" -}}
{{- with dig "limits" "memory" "" (. | default dict) -}}
{{- include "chatwax.quantityBytes" . | float64 | mulf 0.9 | floor | int64 -}}
{{- end -}}
{{- end }}
