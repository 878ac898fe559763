{{/*
signet.toml: the user's tunables (.Values.settings) plus what the chart owns — listen
addresses, file paths of mounted secrets, the verifier's identity. The names of the keys
the binaries read are all in "signet.settings"; the store and the bus come from
SIGNET_STORE / SIGNET_BUS environment variables instead (their URLs carry passwords).

Helm's own toToml is not used: Helm 4 reads numbers in values.yaml as floats and toToml
then writes `16.0`, which a Rust integer setting refuses. "signet.toml.value" writes
whole numbers as integers.
*/}}

{{/* One receiver's settings (JSON) from its values. Input: dict "r" VALUES "file" PATH. */}}
{{- define "signet.receiverSettings" -}}
{{- $r := .r -}}
{{- $rs := dict -}}
{{- if eq $r.auth "token" }}{{ $_ := set $rs "token_file" .file }}{{ end -}}
{{- if eq $r.auth "hmac" }}{{ $_ := set $rs "hmac_secret_file" .file }}{{ end -}}
{{- if eq $r.auth "url-secret" }}{{ $_ := set $rs "url_secret_file" .file }}{{ end -}}
{{- if eq $r.auth "insecure-no-auth" }}{{ $_ := set $rs "insecure_no_auth" true }}{{ end -}}
{{- if and $r.tokenHeader (eq $r.auth "token") }}{{ $_ := set $rs "token_header" $r.tokenHeader }}{{ end -}}
{{- if $r.registry }}{{ $_ := set $rs "registry" $r.registry }}{{ end -}}
{{- if $r.eventHosts }}{{ $_ := set $rs "event_hosts" $r.eventHosts }}{{ end -}}
{{- if $r.repositories }}{{ $_ := set $rs "repositories" $r.repositories }}{{ end -}}
{{- if and (eq $r.auth "hmac") (kindIs "bool" $r.allowGithubSignature) }}{{ $_ := set $rs "allow_github_signature" $r.allowGithubSignature }}{{ end -}}
{{- toJson $rs -}}
{{- end -}}

{{- define "signet.settings" -}}
{{- $v := .Values -}}
{{- $s := deepCopy $v.settings -}}
{{- $secrets := include "signet.paths.secrets" . -}}
{{- $_ := set $s "data_dir" (include "signet.paths.data" .) -}}
{{- range $section := list "gateway" "signer" "verifier" "registry" "webhooks" }}
{{- if not (hasKey $s $section) }}{{ $_ := set $s $section dict }}{{ end }}
{{- end }}
{{- if $v.adminToken.secretName }}
{{- $_ := set $s "admin_token_file" (printf "%s/admin/token" $secrets) -}}
{{- end }}
{{- if or $v.gateway.enabled $v.signer.enabled }}
{{- $_ := set $s "control_plane" (dict "signing_key" $v.controlPlane.signingKey) -}}
{{- end }}
{{- if $v.gateway.enabled }}
{{- $_ := set $s.gateway "listen" (printf "0.0.0.0:%v" $v.gateway.port) -}}
{{- $_ := set $s.gateway "admin_listen" (printf "0.0.0.0:%v" $v.gateway.adminPort) -}}
{{- if $v.gateway.tls.enabled }}
{{- $_ := set $s.gateway "tls_cert" (printf "%s/tls.crt" (include "signet.paths.tls" .)) -}}
{{- $_ := set $s.gateway "tls_key" (printf "%s/tls.key" (include "signet.paths.tls" .)) -}}
{{- end }}
{{- end }}
{{- if $v.signer.enabled }}
{{- $_ := set $s.signer "admin_listen" (printf "0.0.0.0:%v" $v.signer.adminPort) -}}
{{- end }}
{{- if $v.verifier.enabled }}
{{- $_ := set $s.verifier "listen" (printf "0.0.0.0:%v" $v.verifier.port) -}}
{{- $_ := set $s.verifier "admin_listen" (printf "0.0.0.0:%v" $v.verifier.adminPort) -}}
{{- $_ := set $s.verifier "cluster" (required "verifier.cluster: name the cluster this verifier enforces policies for (as in `signet policy create --cluster`)" $v.verifier.cluster) -}}
{{- $_ := set $s.verifier "gateway" (include "signet.gatewayUrl" .) -}}
{{- $_ := set $s.verifier "token_file" (printf "%s/verifier/token" $secrets) -}}
{{- $_ := set $s.verifier "tls_cert" (printf "%s/tls.crt" (include "signet.paths.tls" .)) -}}
{{- $_ := set $s.verifier "tls_key" (printf "%s/tls.key" (include "signet.paths.tls" .)) -}}
{{- /* The last trust bundle survives a container restart (not a pod replacement). */ -}}
{{- $_ := set $s.verifier "state_dir" (include "signet.paths.data" .) -}}
{{- $_ := set $s.verifier "control_plane_keys" (list (printf "%s/control-plane-keys.pem" (include "signet.paths.config" .))) -}}
{{- $_ := set $s.verifier "client_auth" $v.verifier.clientAuth.mode -}}
{{- $_ := set $s.verifier "inventory" (dict "enabled" $v.verifier.inventory.enabled "namespaces" $v.verifier.inventory.namespaces) -}}
{{- if include "signet.verifier.gatewayCaSecret" . }}
{{- $_ := set $s.verifier "gateway_ca" (printf "%s/ca.crt" (include "signet.paths.gatewayCa" .)) -}}
{{- end }}
{{- if include "signet.verifier.clientCaSecret" . }}
{{- $_ := set $s.verifier "client_ca" (printf "%s/ca.crt" (include "signet.paths.clientCa" .)) -}}
{{- end }}
{{- end }}
{{- if or $v.registry.dockerConfigSecret $v.registry.verifierDockerConfigSecret }}
{{- $_ := set $s.registry "docker_config" (printf "%s/docker/config.json" $secrets) -}}
{{- end }}
{{- $creds := list -}}
{{- range $i, $c := $v.registry.credentials }}
{{- $entry := dict "host" $c.host -}}
{{- if $c.username }}{{ $_ := set $entry "username" $c.username }}{{ end -}}
{{- if $c.passwordSecret }}{{ $_ := set $entry "password_file" (printf "%s/registry/%d/password" $secrets $i) }}{{ end -}}
{{- if $c.tokenSecret }}{{ $_ := set $entry "token_file" (printf "%s/registry/%d/token" $secrets $i) }}{{ end -}}
{{- if $c.realmHosts }}{{ $_ := set $entry "realm_hosts" $c.realmHosts }}{{ end -}}
{{- $creds = append $creds $entry -}}
{{- end }}
{{- if $creds }}{{ $_ := set $s.registry "credentials" $creds }}{{ end -}}
{{- if $v.gateway.enabled }}
{{- range $name := list "distribution" "harbor" "acr" "generic" }}
{{- $r := index $v.webhooks $name }}
{{- if $r.enabled }}
{{- $file := printf "%s/webhooks/%s/%s" $secrets $name $r.auth -}}
{{- $_ := set $s.webhooks $name (include "signet.receiverSettings" (dict "r" $r "file" $file) | fromJson) -}}
{{- end }}
{{- end }}
{{- $named := dict -}}
{{- range $r := $v.webhooks.receivers }}
{{- $file := printf "%s/webhooks/receivers/%s/%s" $secrets $r.name $r.auth -}}
{{- $rs := include "signet.receiverSettings" (dict "r" $r "file" $file) | fromJson -}}
{{- $_ := set $rs "kind" $r.kind -}}
{{- $_ := set $named $r.name $rs -}}
{{- end }}
{{- if $named }}{{ $_ := set $s.webhooks "receivers" $named }}{{ end -}}
{{- end }}
{{- toJson $s -}}
{{- end -}}

{{- define "signet.settingsToml" -}}
# Rendered by the signet Helm chart; change values.yaml, not this file.
{{ include "signet.toml.table" (dict "path" list "map" (include "signet.settings" . | fromJson)) }}
{{- end -}}

{{/* A TOML table: its plain keys first, then one [header] per nested table.
Input: dict "path" (list of keys) "map" (the table). Keys with null values are left out. */}}
{{- define "signet.toml.table" -}}
{{- $path := .path -}}
{{- $m := .map -}}
{{- range $k := keys $m | sortAlpha }}
{{- $val := index $m $k }}
{{- if not (or (kindIs "map" $val) (kindIs "invalid" $val)) }}
{{ include "signet.toml.key" $k }} = {{ include "signet.toml.value" $val }}
{{- end }}
{{- end }}
{{- range $k := keys $m | sortAlpha }}
{{- $val := index $m $k }}
{{- if and (kindIs "map" $val) $val }}
{{- $p := append $path $k }}

[{{ range $i, $part := $p }}{{ if $i }}.{{ end }}{{ include "signet.toml.key" $part }}{{ end }}]
{{- include "signet.toml.table" (dict "path" $p "map" $val) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "signet.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* One TOML value. JSON string escapes are valid TOML basic-string escapes. */}}
{{- define "signet.toml.value" -}}
{{- $x := . -}}
{{- if kindIs "string" $x -}}{{ toJson $x }}
{{- else if kindIs "bool" $x -}}{{ $x }}
{{- else if or (kindIs "float64" $x) (kindIs "float32" $x) -}}
{{- if eq (floor $x) (float64 $x) -}}{{ int64 $x }}{{- else -}}{{ $x }}{{- end -}}
{{- else if kindIs "slice" $x -}}
[{{ range $i, $e := $x }}{{ if $i }}, {{ end }}{{ include "signet.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $x -}}
{ {{- range $i, $k := keys $x | sortAlpha }}{{ if $i }},{{ end }} {{ include "signet.toml.key" $k }} = {{ include "signet.toml.value" (index $x $k) }}{{ end }} }
{{- else -}}{{ $x }}
{{- end -}}
{{- end -}}
