{{/*
Checks that need more than one value at a time, all reported together so an install is
fixed in one round trip (values.schema.json has already checked names and types).
Every template includes it first, so whichever Helm renders first reports the list.
*/}}
{{- define "signet.validate" -}}
{{- $v := .Values -}}
{{- $p := list -}}
{{- if not (or $v.gateway.enabled $v.signer.enabled $v.verifier.enabled) -}}
{{- $p = append $p "gateway.enabled, signer.enabled, verifier.enabled: enable at least one component" -}}
{{- end -}}
{{- if not $v.image.repository -}}
{{- $p = append $p "image.repository: set it to where you pushed the signet image (docs/operate.md, \"Build the image\")" -}}
{{- end -}}
{{- if and (or $v.gateway.enabled $v.signer.enabled) (not $v.store.existingSecret) -}}
{{- $p = append $p "store.existingSecret: name the Secret holding the PostgreSQL URL (the gateway and the signer need it)" -}}
{{- end -}}
{{- if not $v.bus.existingSecret -}}
{{- $p = append $p "bus.existingSecret: name the Secret holding the bus URL (amqp://, amqps:// or nats://); every component needs the bus" -}}
{{- end -}}
{{- range $name := list "distribution" "harbor" "acr" "generic" -}}
{{- $r := index $v.webhooks $name -}}
{{- if $r.enabled -}}
{{- if not $v.gateway.enabled -}}
{{- $p = append $p (printf "webhooks.%s.enabled: receivers run in the gateway; enable gateway too" $name) -}}
{{- end -}}
{{- if and (ne $r.auth "insecure-no-auth") (not $r.secretName) -}}
{{- $p = append $p (printf "webhooks.%s.secretName: name the Secret holding the receiver's %s (auth: %s)" $name $r.auth $r.auth) -}}
{{- end -}}
{{- if and $r.tokenHeader (ne $r.auth "token") -}}
{{- $p = append $p (printf "webhooks.%s.tokenHeader: only applies with auth: token" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (or $v.gateway.enabled $v.signer.enabled) $v.registry.verifierDockerConfigSecret (not $v.registry.dockerConfigSecret) -}}
{{- $p = append $p "registry.dockerConfigSecret: the gateway and signer read the docker config too; set it when verifierDockerConfigSecret is set" -}}
{{- end -}}
{{- range $i, $c := $v.registry.credentials -}}
{{- $basic := or $c.username $c.passwordSecret -}}
{{- if and $basic $c.tokenSecret -}}
{{- $p = append $p (printf "registry.credentials[%d]: set username with passwordSecret, or tokenSecret, not both" $i) -}}
{{- else if and $basic (not (and $c.username $c.passwordSecret)) -}}
{{- $p = append $p (printf "registry.credentials[%d]: username and passwordSecret go together" $i) -}}
{{- else if not (or $basic $c.tokenSecret) -}}
{{- $p = append $p (printf "registry.credentials[%d]: set username with passwordSecret, or tokenSecret" $i) -}}
{{- end -}}
{{- end -}}
{{- if $v.verifier.enabled -}}
{{- $vf := $v.verifier -}}
{{- if not $vf.cluster -}}
{{- $p = append $p "verifier.cluster: name the cluster this verifier enforces policies for (as in `signet policy create --cluster`)" -}}
{{- end -}}
{{- if not $vf.gateway.tokenSecret.name -}}
{{- $p = append $p "verifier.gateway.tokenSecret.name: name the Secret holding a verifier-role API token (`signet token create --role verifier --cluster <cluster>`)" -}}
{{- end -}}
{{- if and (not $v.gateway.enabled) (not $vf.gateway.url) -}}
{{- $p = append $p "verifier.gateway.url: a verifier without this release's gateway must name the gateway it reads trust bundles from" -}}
{{- end -}}
{{- if $vf.tls.certManager.enabled -}}
{{- if or $vf.tls.existingSecret $vf.tls.caBundle -}}
{{- $p = append $p "verifier.tls: use either certManager.enabled or existingSecret with caBundle, not both" -}}
{{- end -}}
{{- else -}}
{{- if not $vf.tls.existingSecret -}}
{{- $p = append $p "verifier.tls.existingSecret: without cert-manager, name a kubernetes.io/tls Secret for the verifier's Service" -}}
{{- end -}}
{{- if not $vf.tls.caBundle -}}
{{- $p = append $p "verifier.tls.caBundle: without cert-manager, give the base64 PEM of the CA that signed the verifier's certificate" -}}
{{- end -}}
{{- end -}}
{{- /* The verifier must answer before the API server gives up, or the API server's
failurePolicy decides instead of the policy's mode. Plain "Ns"/"Nms" budgets are checked. */ -}}
{{- $budget := toString (dig "verifier" "decision_budget" "3s" $v.settings) -}}
{{- $ms := 0 -}}
{{- if regexMatch "^[0-9]+ms$" $budget -}}{{- $ms = trimSuffix "ms" $budget | int -}}
{{- else if regexMatch "^[0-9]+s$" $budget -}}{{- $ms = mul (trimSuffix "s" $budget | int) 1000 -}}
{{- end -}}
{{- if ge (int $ms) (mul (int $vf.webhook.timeoutSeconds) 1000 | int) -}}
{{- $p = append $p (printf "verifier.webhook.timeoutSeconds: %v must be more than settings.verifier.decision_budget (%s), so the verifier decides before the API server gives up" $vf.webhook.timeoutSeconds $budget) -}}
{{- end -}}
{{- $ca := $vf.clientAuth -}}
{{- if and (ne $ca.mode "off") (not $ca.caSecret.name) (not (and $ca.certManager.enabled $vf.tls.certManager.enabled)) -}}
{{- $p = append $p (printf "verifier.clientAuth.caSecret.name: with clientAuth.mode %s and without cert-manager, name the Secret holding the PEM of the CA that issued the API server's client certificate (docs/verifier.md), or set clientAuth.mode off" $ca.mode) -}}
{{- end -}}
{{- if and (eq $ca.mode "require") (eq $vf.probePort "https") -}}
{{- $p = append $p "verifier.probePort: the kubelet's https probes carry no client certificate, which clientAuth.mode require refuses; use probePort admin" -}}
{{- end -}}
{{- if and $vf.replicas (lt (int $vf.replicas) 2) (eq $vf.webhook.failurePolicy "Fail") -}}
{{- $p = append $p "verifier.replicas: with webhook.failurePolicy Fail, run at least 2 verifiers, or one restart blocks every matching workload" -}}
{{- end -}}
{{- end -}}
{{- if $p -}}
{{- fail (printf "\n\nsignet chart: %d value(s) to fix:\n  - %s\n" (len $p) (join "\n  - " $p)) -}}
{{- end -}}
{{- end -}}
