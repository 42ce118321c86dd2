{{/*
A small TOML writer for Helm values.

Helm's own toToml turns every YAML number into a float (536870912 becomes
5.36870912e+08), which tsrelay's integer keys reject, so the config is written
here: whole numbers as integers, strings as basic strings, maps as [tables],
lists as inline arrays. Keys whose value is null are left out, which lets a
user remove a default with `key: null`.
*/}}

{{/* A key, bare when TOML allows it, quoted otherwise. */}}
{{- define "tsrelay.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}
{{- . -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{/* One value written inline: scalar, array or inline table. */}}
{{- define "tsrelay.toml.inline" -}}
{{- $kind := kindOf . -}}
{{- if eq $kind "string" -}}
{{- /* JSON string escapes (\", \\, \n, \uXXXX) are all valid in TOML basic strings. */ -}}
{{- toJson . -}}
{{- else if eq $kind "bool" -}}
{{- ternary "true" "false" . -}}
{{- else if or (eq $kind "float64") (eq $kind "float32") -}}
{{- if and (eq (float64 (int64 .)) (float64 .)) (lt (float64 .) 9007199254740992.0) (gt (float64 .) -9007199254740992.0) -}}
{{- int64 . -}}
{{- else -}}
{{- printf "%v" . -}}
{{- end -}}
{{- else if has $kind (list "int" "int8" "int16" "int32" "int64" "uint" "uint8" "uint16" "uint32" "uint64") -}}
{{- printf "%d" . -}}
{{- else if eq $kind "slice" -}}
{{- $items := list -}}
{{- range . -}}
{{- $items = append $items (include "tsrelay.toml.inline" .) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else if eq $kind "map" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- if not (kindIs "invalid" $v) -}}
{{- $pairs = append $pairs (printf "%s = %s" (include "tsrelay.toml.key" $k) (include "tsrelay.toml.inline" $v)) -}}
{{- end -}}
{{- end -}}
{{- if $pairs -}}
{ {{ join ", " $pairs }} }
{{- else -}}
{}
{{- end -}}
{{- else -}}
{{- fail (printf "tsrelay config: cannot write a value of kind %s to TOML: %v" $kind .) -}}
{{- end -}}
{{- end -}}

{{/*
A table: its plain keys first, then each map-valued key as a [sub.table].
Expects (dict "path" (list of keys) "table" map).
*/}}
{{- define "tsrelay.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- $plain := list -}}
{{- $nested := list -}}
{{- range $k, $v := $table -}}
{{- if kindIs "map" $v -}}
{{- $nested = append $nested $k -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $plain = append $plain $k -}}
{{- end -}}
{{- end -}}
{{- if and $path (or $plain (not $table)) -}}
{{- $quoted := list -}}
{{- range $path -}}
{{- $quoted = append $quoted (include "tsrelay.toml.key" .) -}}
{{- end }}

[{{ join "." $quoted }}]
{{- end -}}
{{- /* `type` first: it says how to read the rest of the table. */ -}}
{{- if has "type" $plain -}}
{{- $plain = prepend (without $plain "type") "type" -}}
{{- end -}}
{{- range $plain }}
{{ include "tsrelay.toml.key" . }} = {{ include "tsrelay.toml.inline" (get $table .) }}
{{- end -}}
{{- range $nested -}}
{{- include "tsrelay.toml.table" (dict "path" (append $path .) "table" (get $table .)) -}}
{{- end -}}
{{- end -}}
