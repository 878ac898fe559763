#!/usr/bin/env bash
# Builds the real Kubernetes-ecosystem programs the end-to-end tests run (kube-apiserver,
# kube-controller-manager, kubectl, etcd, cosign 2 and cosign 3, notation, Jaeger for the
# telemetry test, AWS's EC2 metadata mock for the cloud credentials test, and olareg, a
# registry with the OCI 1.1 referrers API) from their Go modules at the versions pinned in
# scripts/tools.versions, and caches them:
#   $SIGNET_TOOLS_DIR/<tool>-<version>/<tool>   the binaries, one directory per version
#   $SIGNET_TOOLS_DIR/bin/<tool>                links to the pinned ones (tests look here)
# SIGNET_TOOLS_DIR defaults to ~/.cache/signet-tools (as for scripts/check-helm.sh).
# A cached binary is kept when its own version command reports the pinned version, and
# rebuilt otherwise; so where this already ran it takes seconds and never runs `go`.
#
# Why from source: no registry reachable here (Go module proxy, crates.io, PyPI, npm,
# Debian) ships these programs at chosen versions, but the Go module proxy serves their
# source. Why a scratch module per source instead of `go install pkg@version`:
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apimachinery, ...) at
# v0.0.0 and points them into its own ./staging with replace lines, which only work inside
# its repository, and `go install pkg@version` refuses modules with replace lines. So a
# throwaway module under $SIGNET_TOOLS_DIR/.src requires the source module and replaces
# every staging module with its real release (v0.MINOR.PATCH for v1.MINOR.PATCH).
#
# Usage: scripts/tools.sh              build what is missing; a summary, then the bin dir
#        scripts/tools.sh --path       the same; stdout is only the bin dir
#        scripts/tools.sh --print-env  the same; stdout is only export lines, for
#                                      eval "$(scripts/tools.sh --print-env)":
#                                      SIGNET_TOOLS_BIN, SIGNET_KUBE_APISERVER,
#                                      SIGNET_KUBE_CONTROLLER_MANAGER, SIGNET_KUBECTL,
#                                      SIGNET_ETCD, SIGNET_COSIGN, SIGNET_COSIGN3,
#                                      SIGNET_NOTATION, SIGNET_JAEGER,
#                                      SIGNET_EC2_METADATA_MOCK, SIGNET_OLAREG
# Progress goes to stderr so that stdout stays parseable.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools.versions
. scripts/tools.versions

TOOLS_DIR="${SIGNET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}"
BIN_DIR="$TOOLS_DIR/bin"
ALL_TOOLS=(etcd kube-apiserver kube-controller-manager kubectl cosign cosign3 notation jaeger
  ec2-metadata-mock olareg)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }
duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
mib() { echo "$(($(stat -c %s "$1") / 1048576)) MiB"; }

version_of() { # tool
  case "$1" in
    kube-apiserver | kube-controller-manager | kubectl) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    cosign) echo "$COSIGN_VERSION" ;;
    cosign3) echo "$COSIGN3_VERSION" ;;
    notation) echo "$NOTATION_VERSION" ;;
    jaeger) echo "$JAEGER_VERSION" ;;
    ec2-metadata-mock) echo "$EC2_METADATA_MOCK_VERSION" ;;
    olareg) echo "$OLAREG_VERSION" ;;
    *) die "unknown tool $1" ;;
  esac
}
binary_of() { echo "$TOOLS_DIR/$1-$(version_of "$1")/$1"; }

# The module paths carry the major version (/v3, /v2), so they follow the pinned version.
etcd_module() { echo "go.etcd.io/etcd/server/${ETCD_VERSION%%.*}"; }
cosign_module() { echo "github.com/sigstore/cosign/${COSIGN_VERSION%%.*}"; }
cosign3_module() { echo "github.com/sigstore/cosign/${COSIGN3_VERSION%%.*}"; }

# True when the binary runs and its own version command names the pinned version: this
# catches a missing, truncated or foreign binary, and one built without the version
# ldflags (kubectl warns about version skew against an apiserver reporting v0.0.0).
reports_version() { # tool binary
  local v out
  v="$(version_of "$1")"
  [ -x "$2" ] || return 1
  case "$1" in
    kube-apiserver | kube-controller-manager)
      out="$(timeout 30 "$2" --version 2>&1)" && grep -qx "Kubernetes $v" <<<"$out" ;;
    kubectl)
      out="$(timeout 30 "$2" version --client 2>&1)" && grep -qx "Client Version: $v" <<<"$out" ;;
    etcd)
      out="$(timeout 30 "$2" --version 2>&1)" && grep -qx "etcd Version: ${v#v}" <<<"$out" ;;
    cosign | cosign3)
      out="$(timeout 30 "$2" version 2>&1)" && grep -Eqx "GitVersion: +$v" <<<"$out" ;;
    notation)
      # "v1.3.2+unreleased" when built without the release's empty BuildMetadata.
      out="$(timeout 30 "$2" version 2>&1)" && grep -Eqx "Version: +$v" <<<"$out" ;;
    jaeger)
      out="$(timeout 30 "$2" version 2>/dev/null)" && grep -q "\"gitVersion\":\"$v\"" <<<"$out" ;;
    ec2-metadata-mock)
      # Its version is embedded from the module's version.txt: nothing to stamp.
      out="$(timeout 30 "$2" --version 2>&1)" && grep -qx "$v" <<<"$out" ;;
    olareg)
      out="$(timeout 30 "$2" version --format '{{.VCSTag}}' 2>&1)" && grep -qx "$v" <<<"$out" ;;
  esac
}

# Every go command runs niced (developers compile Rust beside it, and a test run may be
# waiting on it), outside any go.work, with the module's own settings rather than the
# caller's GOFLAGS, and without cgo: all ten are static binaries upstream too.
go_() { nice -n 10 env GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 go "$@"; }

# The commit time of a module version, as buildDate: it keeps the binaries reproducible.
module_time() { # module@version
  go_ list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$1"
}

# The modules that k8s.io/kubernetes's go.mod requires at v0.0.0: its staging modules.
staging_modules() { # path-to-go.mod
  awk '/^require \(/ { r = 1; next }
       r && /^\)/ { r = 0 }
       r && $2 == "v0.0.0" { print $1 }
       $1 == "require" && $3 == "v0.0.0" { print $2 }' "$1"
}

# Runs go in the scratch module $SRC with its output in $LOG (go get prints a line per
# module, hundreds for Kubernetes); a failure shows the end of the log.
go_logged() { # go arguments...
  if ! (cd "$SRC" && go_ "$@") >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die "go $* failed in $SRC (whole log: $LOG)"
  fi
}

# Creates the scratch module of one source (kubernetes, etcd, cosign, cosign3, notation,
# jaeger, ec2-metadata-mock or olareg) under
# $TOOLS_DIR/.src, fresh, once per run, and leaves its directory in $SRC. The `go get` of
# the program packages (not just the module) records every checksum their build needs.
declare -A PREPARED=()
prepare() { # source
  SRC="$TOOLS_DIR/.src/$1"
  LOG="$TOOLS_DIR/.src/$1.log"
  [ -n "${PREPARED[$1]:-}" ] && return 0
  local gomod staging m
  local -a replaces=() packages=()
  rm -rf "$SRC" && mkdir -p "$SRC" && : >"$LOG"
  go_logged mod init "signet-tools-$1"
  case "$1" in
    kubernetes)
      staging="v0.${KUBERNETES_VERSION#v1.}"
      go_logged mod download "k8s.io/kubernetes@$KUBERNETES_VERSION"
      gomod="$(cd "$SRC" && go_ list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$KUBERNETES_VERSION")"
      for m in $(staging_modules "$gomod"); do replaces+=("-replace=$m=$m@$staging"); done
      [ ${#replaces[@]} -gt 0 ] || die "found no staging modules (k8s.io/* v0.0.0) in $gomod"
      go_logged mod edit "${replaces[@]}"
      packages=(k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kubectl}"@$KUBERNETES_VERSION")
      ;;
    etcd) packages=("$(etcd_module)@$ETCD_VERSION") ;;
    cosign) packages=("$(cosign_module)/cmd/cosign@$COSIGN_VERSION") ;;
    # Its own scratch module: beside cosign 2 the two would share one set of dependencies.
    cosign3) packages=("$(cosign3_module)/cmd/cosign@$COSIGN3_VERSION") ;;
    notation) packages=("github.com/notaryproject/notation/cmd/notation@$NOTATION_VERSION") ;;
    jaeger) packages=("github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION") ;;
    ec2-metadata-mock) packages=("github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$EC2_METADATA_MOCK_VERSION") ;;
    olareg) packages=("github.com/olareg/olareg/cmd/olareg@$OLAREG_VERSION") ;;
  esac
  go_logged get "${packages[@]}"
  PREPARED[$1]=1
}

# Builds one tool into its versioned directory, the way its release builds do: static,
# -trimpath, no symbols, and the version stamped where its version command reads it.
build() { # tool
  local tool="$1" v out pkg tags="" ldflags="-s -w" date p start
  v="$(version_of "$tool")"
  out="$(binary_of "$tool")"
  start=$SECONDS
  say "building $tool $v"
  case "$tool" in
    kube-apiserver | kube-controller-manager | kubectl)
      prepare kubernetes
      pkg="k8s.io/kubernetes/cmd/$tool"
      # As hack/lib/golang.sh and hack/lib/version.sh build releases.
      tags="selinux,notest,grpcnotrace"
      date="$(cd "$SRC" && module_time "k8s.io/kubernetes@$v")"
      local major minor
      IFS=. read -r major minor _ <<<"${v#v}"
      for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
        ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
      done
      ;;
    etcd)
      # etcd's version is a constant in go.etcd.io/etcd/api/v3/version: nothing to stamp.
      prepare etcd
      pkg="$(etcd_module)"
      ;;
    cosign)
      prepare cosign
      pkg="$(cosign_module)/cmd/cosign"
      date="$(cd "$SRC" && module_time "$(cosign_module)@$v")"
      p=sigs.k8s.io/release-utils/version
      ldflags+=" -X $p.gitVersion=$v -X $p.gitTreeState=clean -X $p.buildDate=$date"
      ;;
    cosign3)
      # The same program as cosign, installed as cosign3 (-o names the binary).
      prepare cosign3
      pkg="$(cosign3_module)/cmd/cosign"
      date="$(cd "$SRC" && module_time "$(cosign3_module)@$v")"
      p=sigs.k8s.io/release-utils/version
      ldflags+=" -X $p.gitVersion=$v -X $p.gitTreeState=clean -X $p.buildDate=$date"
      ;;
    notation)
      # As its Makefile builds a tagged release: the version is a constant in the source,
      # and an empty BuildMetadata drops the "+unreleased" suffix.
      prepare notation
      pkg=github.com/notaryproject/notation/cmd/notation
      ldflags+=" -X github.com/notaryproject/notation/internal/version.BuildMetadata="
      ;;
    jaeger)
      prepare jaeger
      pkg=github.com/jaegertracing/jaeger/cmd/jaeger
      date="$(cd "$SRC" && module_time "github.com/jaegertracing/jaeger@$v")"
      p=github.com/jaegertracing/jaeger/internal/version
      ldflags+=" -X $p.latestVersion=$v -X $p.date=$date"
      ;;
    ec2-metadata-mock)
      prepare ec2-metadata-mock
      pkg=github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock
      ;;
    olareg)
      # As its Makefile does: the tag is stamped (Go's build info has no tag to offer).
      prepare olareg
      pkg=github.com/olareg/olareg/cmd/olareg
      ldflags+=" -X github.com/olareg/olareg/internal/version.vcsTag=$v"
      ;;
  esac
  mkdir -p "$(dirname "$out")"
  # Built beside the old one and moved over it, so a killed build leaves no half binary.
  (cd "$SRC" && go_ build -trimpath -tags="$tags" -ldflags="$ldflags" -o "$out.new" "$pkg")
  mv -f "$out.new" "$out"
  reports_version "$tool" "$out" || die "$out was built but does not report version $v"
  say "built $tool $v in $(duration $((SECONDS - start))) ($(mib "$out"))"
}

# Points $BIN_DIR/<tool> at the pinned binary; relative, so the cache dir can move, and
# replaced with a rename, so a test reading the link never finds it missing.
link() { # tool
  local rel
  rel="../$1-$(version_of "$1")/$1"
  mkdir -p "$BIN_DIR"
  ln -sfn "$rel" "$BIN_DIR/.$1.new"
  mv -Tf "$BIN_DIR/.$1.new" "$BIN_DIR/$1"
}

main() {
  local mode=summary tool var start=$SECONDS
  case "${1:-}" in
    "") ;;
    --path) mode=path ;;
    --print-env) mode=exports ;;
    -h | --help) usage; return 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  [ $# -le 1 ] || die "one argument at most"

  mkdir -p "$TOOLS_DIR"
  # Two runs at once (two worktrees' tests) would build into the same files: one waits.
  exec 9>"$TOOLS_DIR/.lock"
  flock -n 9 || { say "waiting for another scripts/tools.sh to finish"; flock 9; }

  # One tool at a time: each Kubernetes build alone fills both cores.
  for tool in "${ALL_TOOLS[@]}"; do
    if ! reports_version "$tool" "$(binary_of "$tool")"; then
      command -v go >/dev/null || die "go (1.26 or newer) is needed to build $tool"
      build "$tool"
    fi
    link "$tool"
  done

  case "$mode" in
    summary)
      for tool in "${ALL_TOOLS[@]}"; do
        printf '    %-24s %-8s %7s  %s\n' "$tool" "$(version_of "$tool")" \
          "$(mib "$(binary_of "$tool")")" "$(binary_of "$tool")" >&2
      done
      say "tools ready in $(duration $((SECONDS - start))); tests find them in:"
      echo "$BIN_DIR"
      ;;
    path) echo "$BIN_DIR" ;;
    exports)
      printf 'export SIGNET_TOOLS_BIN=%q\n' "$BIN_DIR"
      for tool in "${ALL_TOOLS[@]}"; do
        var="${tool^^}"
        printf 'export SIGNET_%s=%q\n' "${var//-/_}" "$(binary_of "$tool")"
      done
      ;;
  esac
}

main "$@"
