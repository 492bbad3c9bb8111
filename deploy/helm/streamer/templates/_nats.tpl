{{/* nats.conf of the bundled NATS; server_name and the password come from the pod's env. */}}
{{- define "streamer.natsConf" -}}
{{- $name := include "streamer.natsName" . }}
{{- $ports := dict "client" (int .Values.nats.ports.client) "cluster" (int .Values.nats.ports.cluster) "monitoring" (int .Values.nats.ports.monitoring) }}
server_name: $SERVER_NAME
port: {{ $ports.client }}
http_port: {{ $ports.monitoring }}
pid_file: /var/run/nats/nats.pid
lame_duck_duration: 30s
lame_duck_grace_period: 10s
# Room above the services' MAX_MESSAGE_BYTES for headers.
max_payload: {{ add (int64 .Values.config.maxMessageBytes) 65536 }}
jetstream {
  store_dir: /data
  max_memory_store: {{ .Values.nats.jetstream.maxMemoryStore }}
  max_file_store: {{ .Values.nats.jetstream.maxFileStore }}
}
{{- if .Values.nats.cluster.enabled }}
cluster {
  name: {{ $name }}
  port: {{ $ports.cluster }}
  connect_retries: 120
  routes: [
    {{- range $i := until (int .Values.nats.cluster.replicas) }}
    nats://{{ $name }}-{{ $i }}.{{ $name }}-headless.{{ $.Release.Namespace }}.svc.{{ $.Values.clusterDomain }}:{{ $ports.cluster }}
    {{- end }}
  ]
}
{{- end }}
{{- if .Values.nats.auth.enabled }}
authorization {
  user: {{ .Values.nats.auth.user | quote }}
  password: $NATS_PASSWORD
}
{{- end }}
{{- end }}
