{{/* Names and labels. */}}
{{- define "adaptlog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "adaptlog.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "adaptlog.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "adaptlog.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "adaptlog.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "adaptlog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (stream, inference, trainer, topics): pass (dict "root" $ "component" "x"). */}}
{{- define "adaptlog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adaptlog.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "adaptlog.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "adaptlog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "adaptlog.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "adaptlog.registryClaim" -}}
{{- default (printf "%s-registry" (include "adaptlog.fullname" .)) .Values.registry.existingClaim -}}
{{- end -}}

{{- define "adaptlog.labelsClaim" -}}
{{- default (printf "%s-labels" (include "adaptlog.fullname" .)) .Values.labels.existingClaim -}}
{{- end -}}

{{/*
The environment every adaptlog container shares: Kafka connection and security, topics and the operations port.
Only ADAPTLOG_* settings (stream/settings.py); the tests check each name against the code.
*/}}
{{- define "adaptlog.kafkaEnv" -}}
- name: ADAPTLOG_BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required (host:port[,host:port])" .Values.kafka.bootstrapServers | quote }}
- name: ADAPTLOG_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: ADAPTLOG_CLIENT_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: ADAPTLOG_GROUP_PREFIX
  value: {{ .Values.kafka.groupPrefix | quote }}
- name: ADAPTLOG_INTERNAL_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: ADAPTLOG_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: ADAPTLOG_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
{{- if .Values.kafka.sasl.enabled }}
- name: ADAPTLOG_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
{{- if eq .Values.kafka.sasl.mechanism "OAUTHBEARER" }}
{{- /* a file kept fresh by a projected token or a sidecar, mounted with extraVolumes / extraVolumeMounts */}}
- name: ADAPTLOG_SASL_OAUTH_TOKEN_FILE
  value: {{ required "kafka.sasl.oauthTokenFile is required with kafka.sasl.mechanism OAUTHBEARER" .Values.kafka.sasl.oauthTokenFile | quote }}
{{- else }}
- name: ADAPTLOG_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.enabled" .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: ADAPTLOG_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end }}
{{- with .Values.kafka.consumerOptions }}
- name: ADAPTLOG_CONSUMER_OPTIONS
  value: {{ toJson . | quote }}
{{- end }}
{{- with .Values.kafka.producerOptions }}
- name: ADAPTLOG_PRODUCER_OPTIONS
  value: {{ toJson . | quote }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: ADAPTLOG_SSL_CAFILE
  value: /etc/adaptlog/tls/{{ .Values.kafka.tls.caKey }}
{{- if .Values.kafka.tls.certKey }}
- name: ADAPTLOG_SSL_CERTFILE
  value: /etc/adaptlog/tls/{{ .Values.kafka.tls.certKey }}
- name: ADAPTLOG_SSL_KEYFILE
  value: /etc/adaptlog/tls/{{ .Values.kafka.tls.keyKey }}
{{- end }}
{{- end }}
{{- range $name, $topic := .Values.kafka.topics }}
- name: ADAPTLOG_TOPICS__{{ $name | upper }}
  value: {{ $topic | quote }}
{{- end }}
{{- if .Values.kafka.inputTopics }}
- name: ADAPTLOG_INPUT_TOPICS
  value: {{ .Values.kafka.inputTopics | toJson | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The workers' environment: the shared one and the systems file. */}}
{{- define "adaptlog.env" -}}
{{ include "adaptlog.kafkaEnv" . }}
{{- if .Values.systems }}
- name: ADAPTLOG_SYSTEMS_FILE
  value: /etc/adaptlog/systems.yaml
{{- end }}
{{- end -}}

{{/* Volumes the workers mount: a writable /tmp (the root filesystem is read-only), TLS, the systems file. */}}
{{- define "adaptlog.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ required "kafka.tls.existingSecret is required with kafka.tls.enabled" .Values.kafka.tls.existingSecret }}
{{- end }}
{{- if .Values.systems }}
- name: systems
  configMap:
    name: {{ include "adaptlog.fullname" . }}-systems
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "adaptlog.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/adaptlog/tls
  readOnly: true
{{- end }}
{{- if .Values.systems }}
- name: systems
  mountPath: /etc/adaptlog/systems.yaml
  subPath: systems.yaml
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ADAPTLOG_<SECTION>__<KEY> for each key of a settings map: pass (dict "section" "INFERENCE" "settings" map). */}}
{{- define "adaptlog.sectionEnv" -}}
{{- range $key, $value := .settings }}
- name: ADAPTLOG_{{ if $.section }}{{ $.section }}__{{ end }}{{ $key | upper }}
  value: {{ if or (kindIs "slice" $value) (kindIs "map" $value) }}{{ $value | toJson | quote }}{{ else }}{{ $value | toString | quote }}{{ end }}
{{- end }}
{{- end -}}

{{/* The operations port and the probes of a long-running container. */}}
{{- define "adaptlog.opsContainerParts" -}}
ports:
  - name: ops
    containerPort: {{ .Values.metrics.port }}
    protocol: TCP
startupProbe:
  httpGet:
    path: /healthz
    port: ops
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: ops
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: ops
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
{{- end -}}

{{/* Pod-level scheduling and security of a component: pass (dict "root" $ "spec" .Values.<component>). */}}
{{- define "adaptlog.podCommon" -}}
serviceAccountName: {{ include "adaptlog.serviceAccountName" .root }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
