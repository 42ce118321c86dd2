{{/*
Every helper here takes a scope with .Values (this chart's values) and .Release,
never .Chart or .Files: the sidecar templates are included from another chart,
which passes (dict "Values" .Values.tsrelay "Release" .Release), and must come
to the same names and the same config as this chart renders for itself.
*/}}

{{- define "tsrelay.name" -}}
{{- default "tsrelay" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tsrelay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tsrelay.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tsrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tsrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Needs the root context: it names the chart version. */}}
{{- define "tsrelay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tsrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "tsrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tsrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tsrelay.image" -}}
{{- $appVersion := "" -}}
{{- with .Chart -}}{{- $appVersion = .AppVersion -}}{{- end -}}
{{- $tag := .Values.image.tag | default $appVersion -}}
{{- if not (or $tag .Values.image.digest) -}}
{{- fail "tsrelay: set image.tag (or image.digest); a sidecar scope without .Chart has no appVersion to default to" -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Bytes in a Kubernetes quantity ("512Mi", "1G", "1.5Gi", 536870912).
*/}}
{{- define "tsrelay.quantityBytes" -}}
{{- $quantity := . -}}
{{- if kindIs "float64" $quantity -}}
{{- int64 $quantity -}}
{{- else if kindIs "int" $quantity -}}
{{- $quantity -}}
{{- else if kindIs "int64" $quantity -}}
{{- $quantity -}}
{{- else -}}
{{- $text := toString $quantity -}}
{{- $parts := regexFindAll "^([0-9]+(?:\\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $text 1 -}}
{{- if not $parts -}}
{{- fail (printf "resources.limits.memory %q is not a Kubernetes quantity tsrelay can read (write it like 512Mi, 1Gi or 500M)" $text) -}}
{{- end -}}
{{- $number := regexReplaceAll "[A-Za-z]+$" $text "" -}}
{{- $suffix := regexReplaceAll "^[0-9.]+" $text "" -}}
{{- $scale := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- mulf (float64 $number) (get $scale $suffix) | int64 -}}
{{- end -}}
{{- end -}}

{{/*
The value of limits.memory_bytes: set explicitly in config.limits, or the
container's memory limit less memoryHeadroomPercent, so tsrelay's own ceiling
is reached before the kernel's OOM killer acts. Empty when neither is set.
*/}}
{{- define "tsrelay.memoryBytes" -}}
{{- $limits := .Values.config.limits | default dict -}}
{{- if $limits.memory_bytes -}}
{{- include "tsrelay.quantityBytes" $limits.memory_bytes -}}
{{- else if and .Values.resources .Values.resources.limits .Values.resources.limits.memory -}}
{{- $bytes := include "tsrelay.quantityBytes" .Values.resources.limits.memory | float64 -}}
{{- $share := sub 100 (int .Values.memoryHeadroomPercent) | float64 -}}
{{- divf (mulf $bytes $share) 100.0 | int64 -}}
{{- end -}}
{{- end -}}

{{/*
The whole tsrelay.toml as a map: config (top-level keys and sections) with
receivers, sinks and pipelines added, sinks stripped of the chart-only
fromSecret key, the memory limit filled in and the registry file referenced.
*/}}
{{- define "tsrelay.configMap" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $sinks := dict -}}
{{- range $name, $sink := .Values.sinks -}}
{{- if $sink -}}
{{- $_ := set $sinks $name (omit $sink "fromSecret") -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "receivers" (deepCopy (.Values.receivers | default dict)) -}}
{{- $_ := set $config "sinks" $sinks -}}
{{- $_ := set $config "pipelines" (.Values.pipelines | default dict) -}}
{{- $memoryBytes := include "tsrelay.memoryBytes" . -}}
{{- if $memoryBytes -}}
{{- $limits := $config.limits | default dict -}}
{{- $_ := set $limits "memory_bytes" ($memoryBytes | int64) -}}
{{- $_ := set $config "limits" $limits -}}
{{- end -}}
{{- if .Values.registry.metrics -}}
{{- $_ := set $config "registry" (dict "path" "metrics.yaml") -}}
{{- end -}}
{{- if .Values.auth.enabled -}}
{{- $auth := dict "keys_file" (printf "/etc/tsrelay-auth/%s" .Values.auth.keysKey) -}}
{{- with .Values.auth.clientCerts }}{{ $_ := set $auth "client_certs" . }}{{ end -}}
{{- $_ := set $config "auth" $auth -}}
{{- if .Values.auth.openMetrics -}}
{{- $admin := $config.admin | default dict -}}
{{- $_ := set $admin "open_paths" (list "/healthz" "/readyz" "/metrics") -}}
{{- $_ := set $config "admin" $admin -}}
{{- end -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $server := dict "cert_file" "/etc/tsrelay-tls/tls.crt" "key_file" "/etc/tsrelay-tls/tls.key" -}}
{{- $receiverTls := deepCopy $server -}}
{{- if .Values.tls.mutual }}{{ $_ := set $receiverTls "client_ca_file" "/etc/tsrelay-tls/ca.crt" }}{{ end -}}
{{- range $name, $receiver := $config.receivers -}}
{{- if and $receiver $receiver.listen -}}
{{- $_ := set $receiver "tls" $receiverTls -}}
{{- end -}}
{{- end -}}
{{- if .Values.tls.admin -}}
{{- $admin := $config.admin | default dict -}}
{{- $_ := set $admin "tls" $server -}}
{{- $_ := set $config "admin" $admin -}}
{{- end -}}
{{- end -}}
{{- toJson $config -}}
{{- end -}}

{{- define "tsrelay.configToml" -}}
# Rendered by the tsrelay Helm chart from its values; edit the values, not this file.
{{- $config := include "tsrelay.configMap" . | fromJson -}}
{{- /* Top-level keys first, then the sections in the order a reader follows the data. */ -}}
{{- $plain := dict -}}
{{- $sections := list -}}
{{- range $key, $value := $config -}}
{{- if kindIs "map" $value -}}
{{- $sections = append $sections $key -}}
{{- else -}}
{{- $_ := set $plain $key $value -}}
{{- end -}}
{{- end -}}
{{- $preferred := list "limits" "admin" "receivers" "sinks" "pipelines" "registry" -}}
{{- $ordered := list -}}
{{- range $preferred -}}
{{- if has . $sections -}}
{{- $ordered = append $ordered . -}}
{{- end -}}
{{- end -}}
{{- range $sections -}}
{{- if not (has . $preferred) -}}
{{- $ordered = append $ordered . -}}
{{- end -}}
{{- end }}
{{ include "tsrelay.toml.table" (dict "path" list "table" $plain) | trim }}
{{- range $ordered }}
{{- include "tsrelay.toml.table" (dict "path" (list .) "table" (get $config .)) }}
{{- end }}
{{ end -}}

{{- define "tsrelay.registryYaml" -}}
{{- toYaml (dict "metrics" .Values.registry.metrics) }}
{{ end -}}

{{/* Hash of what the ConfigMap holds, so a config change rolls the pods. */}}
{{- define "tsrelay.configChecksum" -}}
{{- printf "%s\n%s" (include "tsrelay.configToml" .) (include "tsrelay.registryYaml" .) | sha256sum -}}
{{- end -}}

{{/* The port of a listen address such as "0.0.0.0:8186" or "[::]:4317". */}}
{{- define "tsrelay.listenPort" -}}
{{- $port := regexFind "[0-9]+$" (toString .) -}}
{{- if not $port -}}
{{- fail (printf "tsrelay config: listen address %q has no port" (toString .)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/*
Container ports, derived from the config so they cannot drift from it: one per
receiver that listens (named after the receiver) and "admin". Rendered as a
JSON list of {name, port}.
*/}}
{{- define "tsrelay.ports" -}}
{{- $ports := list -}}
{{- range $name, $receiver := .Values.receivers -}}
{{- if and $receiver $receiver.listen -}}
{{- $portName := printf "%s%s" (include "tsrelay.namePrefix" $) ($name | lower | replace "_" "-") | trunc 15 | trimSuffix "-" -}}
{{- $appProtocol := get (dict "grpc" "grpc" "http" "http") (toString $receiver.type) -}}
{{- $ports = append $ports (dict "name" $portName "port" (include "tsrelay.listenPort" $receiver.listen | int) "appProtocol" $appProtocol) -}}
{{- end -}}
{{- end -}}
{{- $admin := (.Values.config.admin | default dict).listen | default "0.0.0.0:9188" -}}
{{- $ports = append $ports (dict "name" (printf "%sadmin" (include "tsrelay.namePrefix" .)) "port" (include "tsrelay.listenPort" $admin | int) "appProtocol" "http") -}}
{{- toJson $ports -}}
{{- end -}}

{{- define "tsrelay.env" -}}
{{- range $sinkName, $sink := .Values.sinks -}}
{{- if and $sink $sink.fromSecret -}}
{{- range $key, $ref := $sink.fromSecret }}
- name: {{ printf "TSRELAY_SINKS__%s__%s" $sinkName ($key | replace "." "__") | upper }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "sinks.%s.fromSecret.%s.name (the Secret) is required" $sinkName $key) $ref.name | quote }}
      key: {{ required (printf "sinks.%s.fromSecret.%s.key (the key in the Secret) is required" $sinkName $key) $ref.key | quote }}
      {{- if hasKey $ref "optional" }}
      optional: {{ $ref.optional }}
      {{- end }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.env }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/*
The tsrelay container, as a list item. Shared by mode: deployment and by the
sidecar include, so both run tsrelay the same way.
*/}}
{{- define "tsrelay.container" -}}
{{- $dataDir := .Values.config.data_dir | default "/var/lib/tsrelay" -}}
- name: {{ .Values.containerName | default "tsrelay" }}
  image: {{ include "tsrelay.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - --config
    - /etc/tsrelay/tsrelay.toml
    {{- with .Values.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- range include "tsrelay.ports" . | fromJsonArray }}
    - name: {{ .name }}
      containerPort: {{ .port }}
      protocol: TCP
    {{- end }}
  {{- $env := include "tsrelay.env" . | trim }}
  {{- if $env }}
  env:
    {{- $env | nindent 4 }}
  {{- end }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.probes.liveness.enabled }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ include "tsrelay.namePrefix" . }}admin
      {{- if and .Values.tls.enabled .Values.tls.admin }}
      scheme: HTTPS
      {{- end }}
    {{- toYaml (omit .Values.probes.liveness "enabled") | nindent 4 }}
  {{- end }}
  {{- if .Values.probes.readiness.enabled }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ include "tsrelay.namePrefix" . }}admin
      {{- if and .Values.tls.enabled .Values.tls.admin }}
      scheme: HTTPS
      {{- end }}
    {{- toYaml (omit .Values.probes.readiness "enabled") | nindent 4 }}
  {{- end }}
  {{- if .Values.probes.startup.enabled }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ include "tsrelay.namePrefix" . }}admin
      {{- if and .Values.tls.enabled .Values.tls.admin }}
      scheme: HTTPS
      {{- end }}
    {{- toYaml (omit .Values.probes.startup "enabled") | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ include "tsrelay.namePrefix" . }}config
      mountPath: /etc/tsrelay
      readOnly: true
    - name: {{ include "tsrelay.namePrefix" . }}data
      mountPath: {{ $dataDir }}
    {{- if .Values.auth.enabled }}
    # A whole-Secret mount (no subPath), so updates reach the file and tsrelay re-reads it.
    - name: {{ include "tsrelay.namePrefix" . }}auth
      mountPath: /etc/tsrelay-auth
      readOnly: true
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: {{ include "tsrelay.namePrefix" . }}tls
      mountPath: /etc/tsrelay-tls
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
Volume and port names: plain in mode: deployment; prefixed in a sidecar so
they do not collide with those of the pod tsrelay is added to.
*/}}
{{- define "tsrelay.namePrefix" -}}
{{- if eq .Values.mode "sidecar" -}}tsrelay-{{- end -}}
{{- end -}}

{{/* The volumes the tsrelay container mounts, as list items. */}}
{{- define "tsrelay.volumes" -}}
- name: {{ include "tsrelay.namePrefix" . }}config
  configMap:
    name: {{ include "tsrelay.fullname" . }}
{{- if not (include "tsrelay.dataFromClaimTemplate" .) }}
- name: {{ include "tsrelay.namePrefix" . }}data
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (printf "%s-data" (include "tsrelay.fullname" .)) }}
  {{- else }}
  emptyDir:
    {{- with .Values.persistence.emptyDir }}
    {{- toYaml . | nindent 4 }}
    {{- else }} {}
    {{- end }}
  {{- end }}
{{- end }}
{{- if .Values.auth.enabled }}
- name: {{ include "tsrelay.namePrefix" . }}auth
  secret:
    secretName: {{ .Values.auth.keysSecret }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: {{ include "tsrelay.namePrefix" . }}tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Public sidecar interface. From a chart that has tsrelay as a dependency
(mode: sidecar), with s := (dict "Values" .Values.tsrelay "Release" .Release):

  containers:                 # or initContainers when sidecar.native is true
    - name: app
      ...
    {{- include "tsrelay.sidecar.container" $s | nindent 4 }}
  volumes:
    {{- include "tsrelay.sidecar.volumes" $s | nindent 4 }}
  metadata.annotations:
    {{- include "tsrelay.sidecar.podAnnotations" $s | nindent 4 }}
*/}}
{{- define "tsrelay.sidecar.container" -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "tsrelay.sidecar.container: set tsrelay.mode=sidecar in the including chart's values, so the tsrelay dependency renders its ConfigMap and no Deployment of its own" -}}
{{- end -}}
{{- include "tsrelay.container" . -}}
{{- end -}}

{{- define "tsrelay.sidecar.volumes" -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "tsrelay.sidecar.volumes: set tsrelay.mode=sidecar in the including chart's values" -}}
{{- end -}}
{{- include "tsrelay.volumes" . -}}
{{- end -}}

{{/*
True when the data volume comes from the including StatefulSet's
volumeClaimTemplates (sidecar mode, persistence.claimTemplate).
*/}}
{{- define "tsrelay.dataFromClaimTemplate" -}}
{{- if and (eq .Values.mode "sidecar") .Values.persistence.enabled .Values.persistence.claimTemplate -}}true{{- end -}}
{{- end -}}

{{/*
For a StatefulSet that includes the sidecar with persistence.claimTemplate:
a list item for its volumeClaimTemplates, giving every pod a data claim of
its own (disk queues are never shared).
*/}}
{{- define "tsrelay.sidecar.volumeClaimTemplate" -}}
{{- if not (include "tsrelay.dataFromClaimTemplate" .) -}}
{{- fail "tsrelay.sidecar.volumeClaimTemplate: set tsrelay.persistence.enabled and tsrelay.persistence.claimTemplate to true" -}}
{{- end -}}
- metadata:
    name: tsrelay-data
  spec:
    accessModes:
      {{- toYaml .Values.persistence.accessModes | nindent 6 }}
    {{- with .Values.persistence.storageClassName }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ .Values.persistence.size }}
{{- end -}}

{{- define "tsrelay.sidecar.podAnnotations" -}}
checksum/tsrelay-config: {{ include "tsrelay.configChecksum" . }}
{{- end -}}
