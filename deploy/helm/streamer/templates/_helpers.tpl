{{/* Names, labels and the pieces every workload shares. */}}

{{- define "streamer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Truncated to 40 characters so that suffixes such as -nats-headless-0 keep names under 63. */}}
{{- define "streamer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streamer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "edge"). */}}
{{- define "streamer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamer.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every object's labels; call with (dict "ctx" $ "component" "edge"). */}}
{{- define "streamer.labels" -}}
helm.sh/chart: {{ include "streamer.chart" .ctx }}
{{ include "streamer.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "streamer.name" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "streamer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image: reference from an image dict; call with (dict "image" .Values.image "default" tag). */}}
{{- define "streamer.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag) }}
{{- end }}
{{- end }}

{{- define "streamer.image" -}}
{{- include "streamer.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) }}
{{- end }}

{{- define "streamer.edgeName" -}}
{{- printf "%s-edge" (include "streamer.fullname" .) }}
{{- end }}

{{- define "streamer.producerName" -}}
{{- printf "%s-producer" (include "streamer.fullname" .) }}
{{- end }}

{{- define "streamer.natsName" -}}
{{- printf "%s-nats" (include "streamer.fullname" .) }}
{{- end }}

{{- define "streamer.natsHost" -}}
{{- printf "%s.%s.svc.%s" (include "streamer.natsName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "streamer.natsAuthSecret" -}}
{{- default (printf "%s-nats-auth" (include "streamer.fullname" .)) .Values.nats.auth.existingSecret }}
{{- end }}

{{/* Secret with the edge's tls.crt, tls.key and ca.crt. */}}
{{- define "streamer.tlsSecret" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret is required when tls.mode=existingSecret" .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "streamer.fullname" .) }}
{{- end }}
{{- end }}

{{/* Secret with the ca.crt that verifies client certificates (mTLS). */}}
{{- define "streamer.clientCASecret" -}}
{{- default (include "streamer.tlsSecret" .) .Values.tls.mtls.clientCASecret }}
{{- end }}

{{/* Secret with the client certificate the helm test presents (mTLS). */}}
{{- define "streamer.clientTlsSecret" -}}
{{- if .Values.tls.mtls.clientSecret }}
{{- .Values.tls.mtls.clientSecret }}
{{- else if eq .Values.tls.mode "existingSecret" }}
{{- fail "tls.mtls.clientSecret is required when tls.mode=existingSecret and tls.mtls.enabled" }}
{{- else }}
{{- printf "%s-client-tls" (include "streamer.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names the edge's server certificate carries. */}}
{{- define "streamer.edgeDnsNames" -}}
{{- $svc := include "streamer.edgeName" . }}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain) "localhost" }}
{{- concat $names .Values.tls.extraDnsNames | uniq | toJson }}
{{- end }}

{{- define "streamer.streamReplicas" -}}
{{- if .Values.config.streamReplicas }}
{{- .Values.config.streamReplicas | int }}
{{- else if and .Values.nats.enabled .Values.nats.cluster.enabled }}
{{- 3 }}
{{- else }}
{{- 1 }}
{{- end }}
{{- end }}

{{- define "streamer.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s:%d" (include "streamer.natsHost" .) (.Values.nats.ports.client | int) }}
{{- else }}
{{- if not .Values.nats.external.urls }}
{{- fail "nats.external.urls is required when nats.enabled=false (nats://host:4222 or tls://host:4222)" }}
{{- end }}
{{- join "," .Values.nats.external.urls }}
{{- end }}
{{- end }}

{{- define "streamer.terminationGracePeriodSeconds" -}}
{{- add .Values.config.shutdownGraceSeconds .Values.preStopSleepSeconds 10 }}
{{- end }}

{{/* One setting as an env value: lists comma-separated, whole numbers without exponent. */}}
{{- define "streamer.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* `- name: PREFIX_KEY` entries for a map of camelCase settings; call with (dict "prefix" "EDGE" "settings" map). */}}
{{- define "streamer.settingsEnv" -}}
{{- range $key, $value := .settings }}
- name: {{ printf "%s_%s" $.prefix (snakecase $key | upper) }}
  value: {{ include "streamer.envValue" $value | quote }}
{{- end }}
{{- end }}

{{/*
Env both services read under their own prefix; call with (dict "ctx" $ "prefix" "EDGE" "component" "edge").
*/}}
{{- define "streamer.sharedEnv" -}}
{{- $ := .ctx }}
{{- $prefix := .prefix }}
{{- $shared := omit $.Values.config "streamReplicas" "shutdownGraceSeconds" }}
- name: {{ $prefix }}_NATS_URL
  value: {{ include "streamer.natsUrl" $ | quote }}
{{- if $.Values.nats.enabled }}
{{- if $.Values.nats.auth.enabled }}
- name: {{ $prefix }}_NATS_USER
  value: {{ $.Values.nats.auth.user | quote }}
- name: {{ $prefix }}_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "streamer.natsAuthSecret" $ }}
      key: password
{{- end }}
{{- else }}
{{- with $.Values.nats.external }}
{{- if .credsKey }}
- name: {{ $prefix }}_NATS_CREDS_FILE
  value: /etc/streamer/nats-creds/{{ .credsKey }}
{{- end }}
{{- if .userKey }}
- name: {{ $prefix }}_NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ required "nats.external.existingSecret is required with userKey" .existingSecret }}
      key: {{ .userKey }}
{{- end }}
{{- if .passwordKey }}
- name: {{ $prefix }}_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "nats.external.existingSecret is required with passwordKey" .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- if .tlsCASecret }}
- name: {{ $prefix }}_NATS_TLS_CA_FILE
  value: /etc/streamer/nats-ca/ca.crt
{{- end }}
{{- if .tlsHandshakeFirst }}
- name: {{ $prefix }}_NATS_TLS_HANDSHAKE_FIRST
  value: "true"
{{- end }}
{{- if .tlsClientSecret }}
- name: {{ $prefix }}_NATS_TLS_CERT_FILE
  value: /etc/streamer/nats-client/tls.crt
- name: {{ $prefix }}_NATS_TLS_KEY_FILE
  value: /etc/streamer/nats-client/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- include "streamer.settingsEnv" (dict "prefix" $prefix "settings" $shared) }}
- name: {{ $prefix }}_STREAM_REPLICAS
  value: {{ include "streamer.streamReplicas" $ | quote }}
- name: {{ $prefix }}_SHUTDOWN_GRACE
  value: {{ printf "%ds" ($.Values.config.shutdownGraceSeconds | int) | quote }}
{{- include "streamer.otelEnv" (dict "ctx" $ "component" .component) }}
{{- end }}

{{- define "streamer.otelEnv" -}}
{{- $ := .ctx }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "streamer-%s" .component | quote }}
{{- with $.Values.otel }}
{{- if .enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "otel.endpoint is required when otel.enabled" .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- $attributes := list (printf "service.namespace=%s" $.Release.Namespace) (printf "service.version=%s" $.Chart.AppVersion) }}
{{- range $key, $value := .resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key $value) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes for the NATS credentials and CA of an external NATS. */}}
{{- define "streamer.natsVolumes" -}}
{{- if not .Values.nats.enabled }}
{{- with .Values.nats.external }}
{{- if .credsKey }}
- name: nats-creds
  secret:
    secretName: {{ required "nats.external.existingSecret is required with credsKey" .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .credsKey }}
        path: {{ .credsKey }}
{{- end }}
{{- if .tlsCASecret }}
- name: nats-ca
  secret:
    secretName: {{ .tlsCASecret }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if .tlsClientSecret }}
- name: nats-client
  secret:
    secretName: {{ .tlsClientSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streamer.natsVolumeMounts" -}}
{{- if not .Values.nats.enabled }}
{{- if .Values.nats.external.credsKey }}
- name: nats-creds
  mountPath: /etc/streamer/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.nats.external.tlsCASecret }}
- name: nats-ca
  mountPath: /etc/streamer/nats-ca
  readOnly: true
{{- end }}
{{- if .Values.nats.external.tlsClientSecret }}
- name: nats-client
  mountPath: /etc/streamer/nats-client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Spread replicas across nodes unless the user says otherwise; call with (dict "ctx" $ "component" "edge" "constraints" list). */}}
{{- define "streamer.topologySpread" -}}
{{- if .constraints }}
{{- toYaml .constraints }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "streamer.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end }}

{{- define "streamer.preStop" -}}
preStop:
  exec:
    command: ["sleep", "{{ .Values.preStopSleepSeconds | int }}"]
{{- end }}

{{/* What the helm test's containers share: resources, hardening, certificates. */}}
{{- define "streamer.testContainerCommon" -}}
resources:
  {{- toYaml .Values.tests.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tls
    mountPath: /etc/streamer/tls
    readOnly: true
  {{- if .Values.tls.mtls.enabled }}
  - name: client
    mountPath: /etc/streamer/client
    readOnly: true
  {{- end }}
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/* Bytes in a Kubernetes memory quantity ("512Mi", "2.5Gi", "1G", "1073741824"), as a float. */}}
{{- define "streamer.quantityBytes" -}}
{{- $quantity := toString . }}
{{- $units := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 }}
{{- $number := regexReplaceAll "[A-Za-z]+$" $quantity "" }}
{{- $unit := trimPrefix $number $quantity }}
{{- if not (and (regexMatch "^[0-9]+(\\.[0-9]+)?$" $number) (hasKey $units $unit)) }}
{{- fail (printf "cannot read the memory quantity %q: use a number with Ki, Mi, Gi, Ti, k, M, G or T" $quantity) }}
{{- end }}
{{- mulf (float64 $number) (get $units $unit) }}
{{- end }}

{{/*
Fails unless the edge's memory limit holds what the edge may hold when every client reads
slowly: per stream, its buffer of data pulled from NATS and two Batches' worth
(EDGE_MAX_BATCH_BYTES, 256 KiB) being encoded and sent by gRPC, plus 128 MiB for the
process. Past the limit the kernel would kill the edge and every stream on it.
*/}}
{{- define "streamer.checkEdgeMemory" -}}
{{- $limit := include "streamer.quantityBytes" .Values.edge.resources.limits.memory | float64 }}
{{- $config := .Values.edge.config }}
{{- $perStream := addf $config.streamBufferBytes 524288 }}
{{- $needed := addf (mulf $config.maxStreams $perStream) 134217728 }}
{{- if gt $needed $limit }}
{{- fail (printf "edge.resources.limits.memory (%s) is less than the edge may hold with slow clients: edge.config.maxStreams (%d) x (streamBufferBytes %d + 512 KiB in gRPC) + 128 MiB = %d Mi. Raise the limit, or lower maxStreams or streamBufferBytes" .Values.edge.resources.limits.memory ($config.maxStreams | int) ($config.streamBufferBytes | int) (divf $needed 1048576.0 | ceil | int)) }}
{{- end }}
{{- end }}

{{/*
Fails unless the data stream allows a consumer for every stream the edges may hold open:
each open stream reads through one, so a call past config.dataMaxConsumers would be
refused (RESOURCE_EXHAUSTED) while the edges still have room.
*/}}
{{- define "streamer.checkDataConsumers" -}}
{{- $edge := .Values.edge }}
{{- $replicas := ternary $edge.autoscaling.maxReplicas $edge.replicaCount $edge.autoscaling.enabled | int }}
{{- $needed := mul $replicas ($edge.config.maxStreams | int) }}
{{- if gt $needed (.Values.config.dataMaxConsumers | int) }}
{{- fail (printf "config.dataMaxConsumers (%d) is less than the streams the edges may hold open: %d edges x edge.config.maxStreams (%d) = %d. Raise dataMaxConsumers, or lower maxStreams" (.Values.config.dataMaxConsumers | int) $replicas ($edge.config.maxStreams | int) $needed) }}
{{- end }}
{{- end }}
