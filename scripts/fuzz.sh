#!/usr/bin/env bash
# Fuzzes every parser of network bytes or operator text (fuzz/fuzz_targets) with cargo fuzz.
#   scripts/fuzz.sh            each target for 30 s with a fixed seed (what CI runs)
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh    a longer hunt
# Crashes are saved by libFuzzer under fuzz/artifacts/TARGET/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo fuzz needs nightly flags (-Zsanitizer); use a nightly toolchain when one is installed,
# else let the stable compiler accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi
# Build every target first, so that a build failure is shown whole (the runs below keep only
# libFuzzer's final lines).
"${FUZZ[@]}" build
for target in $("${FUZZ[@]}" list); do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
  log="fuzz/target/$target.log"
  if ! "${FUZZ[@]}" run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -seed=1 -print_final_stats=1 >"$log" 2>&1; then
    # The failure whole: libFuzzer's report of the panic and the input that caused it.
    grep -v -E '^#[0-9]+' "$log" | tail -60 >&2
    for crash in fuzz/artifacts/"$target"/*; do
      [ -f "$crash" ] && { echo "input $crash:" >&2; od -A x -t x1z "$crash" | head -20 >&2; }
    done
    exit 1
  fi
  tail -8 "$log"
done
