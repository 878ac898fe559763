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
{{- if and (or $v.gateway.enabled $v.signer.enabled) (not $v.bus.existingSecret) -}}
{{- $p = append $p "bus.existingSecret: name the Secret holding the bus URL (amqp://, amqps:// or nats://); the gateway and the signer publish on it" -}}
{{- end -}}
{{- if and (eq $v.kms.vault.auth "kubernetes") (not $v.kms.vault.role) -}}
{{- $p = append $p "kms.vault.role: name the Vault role bound to the gateway's and the signer's ServiceAccounts (kms.vault.auth: kubernetes)" -}}
{{- end -}}
{{- if and (eq $v.kms.vault.auth "approle") (not $v.kms.vault.approleSecret) -}}
{{- $p = append $p "kms.vault.approleSecret: name a Secret with keys role-id and secret-id (kms.vault.auth: approle)" -}}
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
{{- if and (ne $name "generic") (not $r.registry) -}}
{{- $p = append $p (printf "webhooks.%s.registry: name the registry host this receiver speaks for; events naming another host are refused" $name) -}}
{{- end -}}
{{- if and (kindIs "bool" $r.allowGithubSignature) (ne $r.auth "hmac") -}}
{{- $p = append $p (printf "webhooks.%s.allowGithubSignature: only applies with auth: hmac" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $r := $v.webhooks.receivers -}}
{{- if not $v.gateway.enabled -}}
{{- $p = append $p (printf "webhooks.receivers[%s]: receivers run in the gateway; enable gateway too" $r.name) -}}
{{- end -}}
{{- if hasKey $seen $r.name -}}
{{- $p = append $p (printf "webhooks.receivers[%s]: two receivers have this name" $r.name) -}}
{{- end -}}
{{- $_ := set $seen $r.name true -}}
{{- if and (ne $r.auth "insecure-no-auth") (not $r.secretName) -}}
{{- $p = append $p (printf "webhooks.receivers[%s].secretName: name the Secret holding the receiver's %s (auth: %s)" $r.name $r.auth $r.auth) -}}
{{- end -}}
{{- if and (ne $r.kind "generic") (not $r.registry) -}}
{{- $p = append $p (printf "webhooks.receivers[%s].registry: name the registry host this receiver speaks for" $r.name) -}}
{{- end -}}
{{- if and $r.tokenHeader (ne $r.auth "token") -}}
{{- $p = append $p (printf "webhooks.receivers[%s].tokenHeader: only applies with auth: token" $r.name) -}}
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
{{- if and (or $v.gateway.enabled $v.signer.enabled) (not $v.controlPlane.signingKey) -}}
{{- $p = append $p "controlPlane.signingKey: name the KMS key that seals trust bundles and events (awskms://…, hashivault://…, alikms://…); the gateway and the signer refuse to start without it" -}}
{{- end -}}
{{- if $v.verifier.enabled -}}
{{- $vf := $v.verifier -}}
{{- if not $vf.controlPlaneKeys -}}
{{- $p = append $p "verifier.controlPlaneKeys: give the control plane's public key (PEM, `signet control-plane key`); the verifier trusts nothing it did not seal" -}}
{{- end -}}
{{- range $i, $k := $vf.controlPlaneKeys -}}
{{- if not (contains "-----BEGIN" $k) -}}
{{- $p = append $p (printf "verifier.controlPlaneKeys[%d]: not a PEM public key" $i) -}}
{{- end -}}
{{- end -}}
{{- if not $v.bus.verifierExistingSecret -}}
{{- $p = append $p "bus.verifierExistingSecret: name a Secret with bus credentials that may only consume events; verifiers never get the gateway's publishing credentials" -}}
{{- else if eq $v.bus.verifierExistingSecret $v.bus.existingSecret -}}
{{- $p = append $p "bus.verifierExistingSecret: must not be bus.existingSecret (the gateway's credentials publish events); give verifiers consume-only credentials" -}}
{{- end -}}
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
