{{/*
Names, labels and the pieces every workload shares. Paths inside the pods are fixed here
so the ConfigMap and the volume mounts cannot disagree.
*/}}

{{- define "signet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-gateway. Input: dict "root" $ "component" "gateway". */}}
{{- define "signet.componentName" -}}
{{- printf "%s-%s" (include "signet.fullname" .root | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "signet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "signet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: signet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Input: dict "root" $ "component" "gateway". */}}
{{- define "signet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Input: dict "root" $ "component" "gateway". */}}
{{- define "signet.componentLabels" -}}
{{ include "signet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Input: dict "root" $ "component" "gateway". */}}
{{- define "signet.serviceAccountName" -}}
{{- $c := index .root.Values .component -}}
{{- if $c.serviceAccount.create -}}
{{- default (include "signet.componentName" .) $c.serviceAccount.name -}}
{{- else -}}
{{- default "default" $c.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "signet.image" -}}
{{- $repo := required "image.repository: set it to where you pushed the signet image (docs/operate.md, \"Build the image\")" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where things live inside every pod. */}}
{{- define "signet.paths.config" -}}/etc/signet/config{{- end -}}
{{- define "signet.paths.tls" -}}/etc/signet/tls{{- end -}}
{{- define "signet.paths.clientCa" -}}/etc/signet/client-ca{{- end -}}
{{- define "signet.paths.gatewayCa" -}}/etc/signet/gateway-ca{{- end -}}
{{- define "signet.paths.secrets" -}}/var/run/secrets/signet{{- end -}}
{{- define "signet.paths.kms" -}}/var/run/secrets/signet-kms{{- end -}}
{{- define "signet.paths.vault" -}}/var/run/secrets/signet-vault{{- end -}}
{{- define "signet.paths.data" -}}/var/lib/signet{{- end -}}

{{- define "signet.storeSecret" -}}
{{- required "store.existingSecret: name the Secret that holds the PostgreSQL URL (the gateway and the signer need it)" .Values.store.existingSecret -}}
{{- end -}}

{{- define "signet.busSecret" -}}
{{- required "bus.existingSecret: name the Secret that holds the bus URL (amqp://, amqps:// or nats://)" .Values.bus.existingSecret -}}
{{- end -}}

{{/* The gateway URL verifiers use. */}}
{{- define "signet.gatewayUrl" -}}
{{- if .Values.verifier.gateway.url -}}
{{- .Values.verifier.gateway.url -}}
{{- else if .Values.gateway.enabled -}}
{{- printf "%s://%s.%s.svc:%v" (ternary "https" "http" .Values.gateway.tls.enabled) (include "signet.componentName" (dict "root" . "component" "gateway")) .Release.Namespace .Values.gateway.port -}}
{{- else -}}
{{- fail "verifier.gateway.url: a verifier without this release's gateway must name the gateway it reads trust bundles from" -}}
{{- end -}}
{{- end -}}

{{/* Everything a pod of this component reads from files, as projected-volume sources.
Input: dict "root" $ "component" "gateway". Empty when there is nothing to mount. */}}
{{- define "signet.secretSources" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- if eq .component "gateway" }}
{{- range $name := list "distribution" "harbor" "acr" "generic" }}
{{- $r := index $v.webhooks $name }}
{{- if and $r.enabled (ne $r.auth "insecure-no-auth") }}
- secret:
    name: {{ required (printf "webhooks.%s.secretName: name the Secret holding the receiver's %s" $name $r.auth) $r.secretName }}
    items:
      - key: {{ $r.secretKey }}
        path: webhooks/{{ $name }}/{{ $r.auth }}
{{- end }}
{{- end }}
{{- range $r := $v.webhooks.receivers }}
{{- if ne $r.auth "insecure-no-auth" }}
- secret:
    name: {{ required (printf "webhooks.receivers[%s].secretName: name the Secret holding the receiver's %s" $r.name $r.auth) $r.secretName }}
    items:
      - key: {{ $r.secretKey | default $r.auth }}
        path: webhooks/receivers/{{ $r.name }}/{{ $r.auth }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .component "verifier" }}
- secret:
    name: {{ required "verifier.gateway.tokenSecret.name: name the Secret holding the verifier-role API token" $v.verifier.gateway.tokenSecret.name }}
    items:
      - key: {{ $v.verifier.gateway.tokenSecret.key }}
        path: verifier/token
{{- end }}
{{- $dockerConfig := $v.registry.dockerConfigSecret }}
{{- if and (eq .component "verifier") $v.registry.verifierDockerConfigSecret }}
{{- $dockerConfig = $v.registry.verifierDockerConfigSecret }}
{{- end }}
{{- if $dockerConfig }}
- secret:
    name: {{ $dockerConfig }}
    items:
      - key: .dockerconfigjson
        path: docker/config.json
{{- end }}
{{- range $i, $c := $v.registry.credentials }}
{{- if $c.passwordSecret }}
- secret:
    name: {{ $c.passwordSecret.name }}
    items:
      - key: {{ $c.passwordSecret.key }}
        path: registry/{{ $i }}/password
{{- end }}
{{- if $c.tokenSecret }}
- secret:
    name: {{ $c.tokenSecret.name }}
    items:
      - key: {{ $c.tokenSecret.key }}
        path: registry/{{ $i }}/token
{{- end }}
{{- end }}
{{- if $v.adminToken.secretName }}
- secret:
    name: {{ $v.adminToken.secretName }}
    items:
      - key: {{ $v.adminToken.secretKey }}
        path: admin/token
{{- end }}
{{- end -}}

{{/* Container environment for a component. Input: dict "root" $ "component" "gateway". */}}
{{- define "signet.env" -}}
{{- $v := .root.Values -}}
{{- $c := index $v .component -}}
{{- if has .component (list "gateway" "signer") }}
- name: SIGNET_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "signet.storeSecret" .root }}
      key: {{ $v.store.key }}
{{- end }}
- name: SIGNET_BUS
  valueFrom:
    secretKeyRef:
      name: {{ if eq .component "verifier" }}{{ required "bus.verifierExistingSecret: name a Secret with consume-only bus credentials for the verifiers" $v.bus.verifierExistingSecret }}{{ else }}{{ include "signet.busSecret" .root }}{{ end }}
      key: {{ $v.bus.key }}
{{- if has .component (list "gateway" "signer") }}
{{- range $k := keys $v.kms.env | sortAlpha }}
- name: {{ $k }}
  value: {{ index $v.kms.env $k | toString | quote }}
{{- end }}
{{- $vault := $v.kms.vault }}
{{- if ne $vault.auth "token" }}
- name: SIGNET_VAULT_AUTH
  value: {{ $vault.auth }}
{{- with $vault.mount }}
- name: SIGNET_VAULT_AUTH_MOUNT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq $vault.auth "kubernetes" }}
- name: SIGNET_VAULT_ROLE
  value: {{ $vault.role | quote }}
- name: SIGNET_VAULT_KUBERNETES_TOKEN_FILE
  value: {{ include "signet.paths.vault" .root }}/token
{{- else if eq $vault.auth "approle" }}
- name: SIGNET_VAULT_ROLE_ID
  valueFrom:
    secretKeyRef:
      name: {{ $vault.approleSecret }}
      key: role-id
- name: SIGNET_VAULT_SECRET_ID_FILE
  value: {{ include "signet.paths.vault" .root }}/secret-id
{{- end }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every pod has; input as above. */}}
{{- define "signet.volumes" -}}
{{- $v := .root.Values -}}
- name: config
  configMap:
    name: {{ include "signet.fullname" .root }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: data
  emptyDir:
    sizeLimit: 64Mi
{{- $sources := include "signet.secretSources" . | trim }}
{{- if $sources }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
{{ $sources | indent 6 }}
{{- end }}
{{- $kmsFiles := include "signet.kmsFilesSecret" . }}
{{- if $kmsFiles }}
- name: kms
  secret:
    secretName: {{ $kmsFiles }}
    defaultMode: 0440
{{- end }}
{{- if and (has .component (list "gateway" "signer")) (ne $v.kms.vault.auth "token") }}
{{- if eq $v.kms.vault.auth "kubernetes" }}
# A service account token for Vault's Kubernetes login alone: its own audience, an hour
# long, renewed by kubelet (the pod otherwise has no token).
- name: vault
  projected:
    defaultMode: 0440
    sources:
      - serviceAccountToken:
          audience: {{ $v.kms.vault.tokenAudience | quote }}
          expirationSeconds: 3600
          path: token
{{- else }}
- name: vault
  secret:
    secretName: {{ $v.kms.vault.approleSecret }}
    defaultMode: 0440
    items:
      - key: secret-id
        path: secret-id
{{- end }}
{{- end }}
{{- if and (eq .component "gateway") $v.gateway.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "signet.gateway.tlsSecret" .root }}
    defaultMode: 0440
{{- end }}
{{- if eq .component "verifier" }}
- name: tls
  secret:
    secretName: {{ include "signet.verifier.tlsSecret" .root }}
    defaultMode: 0440
{{- $gatewayCa := include "signet.verifier.gatewayCaSecret" .root }}
{{- if $gatewayCa }}
# Only the CA certificate of the gateway's Secret: its key stays out.
- name: gateway-ca
  secret:
    secretName: {{ $gatewayCa }}
    defaultMode: 0440
    items:
      - key: {{ default "ca.crt" $v.verifier.gateway.caSecret.key }}
        path: ca.crt
{{- end }}
{{- $clientCa := include "signet.verifier.clientCaSecret" .root }}
{{- if $clientCa }}
# Only the CA certificate: the CA's key (cert-manager keeps it in the same Secret) stays out.
- name: client-ca
  secret:
    secretName: {{ $clientCa }}
    defaultMode: 0440
    items:
      - key: {{ if $v.verifier.clientAuth.caSecret.name }}{{ $v.verifier.clientAuth.caSecret.key }}{{ else }}ca.crt{{ end }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- define "signet.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: config
  mountPath: {{ include "signet.paths.config" .root }}
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ include "signet.paths.data" .root }}
{{- if include "signet.secretSources" . | trim }}
- name: secrets
  mountPath: {{ include "signet.paths.secrets" .root }}
  readOnly: true
{{- end }}
{{- if include "signet.kmsFilesSecret" . }}
- name: kms
  mountPath: {{ include "signet.paths.kms" .root }}
  readOnly: true
{{- end }}
{{- if and (has .component (list "gateway" "signer")) (ne $v.kms.vault.auth "token") }}
- name: vault
  mountPath: {{ include "signet.paths.vault" .root }}
  readOnly: true
{{- end }}
{{- if and (eq .component "gateway") $v.gateway.tls.enabled }}
- name: tls
  mountPath: {{ include "signet.paths.tls" .root }}
  readOnly: true
{{- end }}
{{- if eq .component "verifier" }}
- name: tls
  mountPath: {{ include "signet.paths.tls" .root }}
  readOnly: true
{{- if include "signet.verifier.gatewayCaSecret" .root }}
- name: gateway-ca
  mountPath: {{ include "signet.paths.gatewayCa" .root }}
  readOnly: true
{{- end }}
{{- if include "signet.verifier.clientCaSecret" .root }}
- name: client-ca
  mountPath: {{ include "signet.paths.clientCa" .root }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* A ServiceAccount's annotations: the user's, plus the cloud identities of kms.aws and
kms.alibaba for the gateway and the signer (the components that reach the KMS). Input:
dict "root" "component". */}}
{{- define "signet.serviceAccountAnnotations" -}}
{{- $v := .root.Values -}}
{{- $a := deepCopy (default dict (index $v .component).serviceAccount.annotations) -}}
{{- if has .component (list "gateway" "signer") -}}
{{- with $v.kms.aws.roleArn }}{{ $_ := set $a "eks.amazonaws.com/role-arn" . }}{{ end -}}
{{- with $v.kms.alibaba.rrsaRoleName }}{{ $_ := set $a "pod-identity.alibabacloud.com/role-name" . }}{{ end -}}
{{- end -}}
{{- if $a }}{{ toYaml $a }}{{ end -}}
{{- end -}}

{{/* The KMS Secrets a component gets: none for the verifier, the gateway's own if set. */}}
{{- define "signet.kmsFilesSecret" -}}
{{- $k := .root.Values.kms -}}
{{- if eq .component "gateway" }}{{ default $k.filesSecret $k.gatewayFilesSecret }}
{{- else if eq .component "signer" }}{{ $k.filesSecret }}
{{- end -}}
{{- end -}}

{{- define "signet.kmsEnvSecret" -}}
{{- $k := .root.Values.kms -}}
{{- if eq .component "gateway" }}{{ default $k.envFromSecret $k.gatewayEnvFromSecret }}
{{- else if eq .component "signer" }}{{ $k.envFromSecret }}
{{- end -}}
{{- end -}}

{{/* The Secret holding the client CA the verifier checks the API server's certificate
against: the user's, or the one the chart has cert-manager make; empty with mode off. */}}
{{- define "signet.verifier.clientCaSecret" -}}
{{- $ca := .Values.verifier.clientAuth -}}
{{- if ne $ca.mode "off" -}}
{{- if $ca.caSecret.name -}}
{{- $ca.caSecret.name -}}
{{- else if and $ca.certManager.enabled .Values.verifier.tls.certManager.enabled -}}
{{- printf "%s-client-ca" (include "signet.componentName" (dict "root" . "component" "verifier")) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the CA the verifier pins for the gateway's certificate: the
user's, or the gateway's own certificate Secret (its ca.crt) when the verifier talks to
this release's gateway over HTTPS; empty otherwise (system roots, or plain HTTP). */}}
{{- define "signet.verifier.gatewayCaSecret" -}}
{{- $v := .Values -}}
{{- if $v.verifier.gateway.caSecret.name -}}
{{- $v.verifier.gateway.caSecret.name -}}
{{- else if and (not $v.verifier.gateway.url) $v.gateway.enabled $v.gateway.tls.enabled -}}
{{- include "signet.gateway.tlsSecret" . -}}
{{- end -}}
{{- end -}}

{{- define "signet.gateway.tlsSecret" -}}
{{- if .Values.gateway.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "signet.componentName" (dict "root" . "component" "gateway")) -}}
{{- else -}}
{{- required "gateway.tls.existingSecret: without cert-manager, name a kubernetes.io/tls Secret for the gateway's Service (or set gateway.tls.enabled false)" .Values.gateway.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* A private CA of cert-manager's making: a self-signed Issuer, the CA Certificate it
signs (Secret NAME), and a CA Issuer NAME that issues from it. Input: dict "ctx" (the
component context) "name" NAME "root" (the self-signed Issuer's name) "why" (a comment
line). */}}
{{- define "signet.certManager.ca" -}}
{{- $ctx := .ctx -}}
# {{ .why }}
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: {{ .root }}
  namespace: {{ $ctx.root.Release.Namespace }}
  labels:
    {{- include "signet.componentLabels" $ctx | nindent 4 }}
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ .name }}
  namespace: {{ $ctx.root.Release.Namespace }}
  labels:
    {{- include "signet.componentLabels" $ctx | nindent 4 }}
spec:
  isCA: true
  commonName: {{ .name }}
  secretName: {{ .name }}
  # The CA outlives many leaf certificates, so their renewal never changes what is pinned.
  duration: 43800h
  renewBefore: 720h
  privateKey:
    algorithm: ECDSA
    size: 256
  issuerRef:
    name: {{ .root }}
    kind: Issuer
    group: cert-manager.io
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: {{ .name }}
  namespace: {{ $ctx.root.Release.Namespace }}
  labels:
    {{- include "signet.componentLabels" $ctx | nindent 4 }}
spec:
  ca:
    secretName: {{ .name }}
{{- end -}}

{{- define "signet.verifier.tlsSecret" -}}
{{- if .Values.verifier.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "signet.componentName" (dict "root" . "component" "verifier")) -}}
{{- else -}}
{{- required "verifier.tls.existingSecret: without cert-manager, name a kubernetes.io/tls Secret for the verifier's Service" .Values.verifier.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Pod spec parts that do not depend on the component's ports. Input as above. */}}
{{- define "signet.podCommon" -}}
{{- $root := .root -}}
{{- $c := index $root.Values .component -}}
serviceAccountName: {{ include "signet.serviceAccountName" . }}
{{- if and (eq .component "verifier") $root.Values.verifier.inventory.enabled }}
# The verifier's inventory watches Pods (read-only RBAC in rbac.yaml).
automountServiceAccountToken: true
{{- else }}
# This component calls no Kubernetes API: no token in the pod.
automountServiceAccountToken: false
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
securityContext:
{{ toYaml $root.Values.podSecurityContext | indent 2 }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
topologySpreadConstraints:
{{- if $c.topologySpreadConstraints }}
{{ toYaml $c.topologySpreadConstraints | indent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
{{ include "signet.selectorLabels" . | indent 8 }}
{{- end }}
volumes:
{{ include "signet.volumes" . | indent 2 }}
{{- end -}}

{{/* Probes on the named port. Input: dict "port" "admin" "scheme" "HTTP". */}}
{{- define "signet.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}, scheme: {{ .scheme }}}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}, scheme: {{ .scheme }}}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}, scheme: {{ .scheme }}}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- end -}}

{{/* Pod annotations: roll pods when the settings change. */}}
{{- define "signet.podAnnotations" -}}
checksum/config: {{ include "signet.settingsToml" .root | sha256sum }}
{{- with (index .root.Values .component).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
