{{/*
Mistakes that would otherwise surface only when the pod starts, or never.
Called from the ConfigMap, which every mode renders. Rules of tsrelay's own
config checks are left to `tsrelay validate` (scripts/check-deploy runs it on
every rendered config) rather than copied here, where they could drift.
*/}}
{{- define "tsrelay.validateValues" -}}
{{- if and .Values.auth.enabled (not .Values.auth.keysSecret) -}}
{{- fail "auth.enabled needs auth.keysSecret: the Secret holding the keys file (tsrelay keys new)" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret (tls.crt, tls.key; ca.crt for tls.mutual)" -}}
{{- end -}}
{{- $dataDir := toString (.Values.config.data_dir | default "") -}}
{{- if not (hasPrefix "/" $dataDir) -}}
{{- fail (printf "config.data_dir must be an absolute path (the volume is mounted there), got %q" $dataDir) -}}
{{- end -}}
{{- $limits := .Values.config.limits | default dict -}}
{{- if and $limits.memory_bytes .Values.resources .Values.resources.limits .Values.resources.limits.memory -}}
{{- $explicit := include "tsrelay.quantityBytes" $limits.memory_bytes | int64 -}}
{{- $container := include "tsrelay.quantityBytes" .Values.resources.limits.memory | int64 -}}
{{- if gt $explicit $container -}}
{{- fail (printf "config.limits.memory_bytes (%d) exceeds resources.limits.memory (%d bytes): the kernel would kill tsrelay before its own limit applies" $explicit $container) -}}
{{- end -}}
{{- end -}}
{{- $feeding := dict -}}
{{- range $name, $pipeline := .Values.pipelines -}}
{{- if $pipeline -}}
{{- range $pipeline.receivers -}}
{{- if not (get ($.Values.receivers | default dict) .) -}}
{{- fail (printf "pipelines.%s.receivers names %q, which is not defined under receivers" $name .) -}}
{{- end -}}
{{- $_ := set $feeding . $name -}}
{{- end -}}
{{- range $pipeline.sinks -}}
{{- if not (get ($.Values.sinks | default dict) .) -}}
{{- fail (printf "pipelines.%s.sinks names %q, which is not defined under sinks" $name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $feeding -}}
{{- fail "pipelines: define at least one pipeline with receivers and sinks; nothing would flow" -}}
{{- end -}}
{{- if eq .Values.mode "deployment" -}}
{{- if and .Values.persistence.enabled (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) -}}
{{- fail "persistence: replicas of a Deployment would share one volume, and with it their disk queues; use replicaCount: 1 with autoscaling.enabled: false, or leave persistence off (emptyDir) to scale out" -}}
{{- end -}}
{{- else -}}
{{- if and .Values.persistence.enabled (not .Values.persistence.existingClaim) (not .Values.persistence.claimTemplate) -}}
{{- fail "persistence in sidecar mode needs persistence.claimTemplate (a StatefulSet's volumeClaimTemplates, one claim per pod) or persistence.existingClaim (one pod only): the chart creates claims in deployment mode only, and disk queues cannot be shared" -}}
{{- end -}}
{{- if .Values.serviceMonitor.enabled -}}
{{- fail "serviceMonitor needs mode: deployment (a sidecar has no Service of its own); scrape the sidecar's admin port from the including chart's monitoring instead" -}}
{{- end -}}
{{- end -}}
{{- end -}}
