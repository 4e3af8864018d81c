#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every target in fuzz/, one after the other,
# one process each, SECONDS each (default 60):
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz from crates.io if it is missing. The machine's stable toolchain builds the
# targets with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs `-Z` flags). Each run starts from
# fuzz/corpus/TARGET (kept between runs, not committed) plus the committed seeds in
# fuzz/seeds/TARGET, with the dictionary in fuzz/dicts/TARGET.dict. A crash is saved under
# fuzz/artifacts/TARGET/; replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET FILE`.
# Prints executions, seconds and crashes per target; exits 1 if any target crashed.
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
all_targets=(scim_filter scim_patch scim_body config_load)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz: not installed; installing it from crates.io"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# The longest input each target is given: past the filter length cap (8192 bytes), and room
# for a body or a config several kilobytes long.
max_len() {
  case "$1" in
    scim_filter) echo 9000 ;;
    *) echo 16384 ;;
  esac
}

echo "== building the fuzz targets (release, debug assertions, AddressSanitizer)"
cargo fuzz build

summary=()
failed=0
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  log="fuzz/artifacts/$target.log"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  dict=()
  [ -f "fuzz/dicts/$target.dict" ] && dict=("-dict=fuzz/dicts/$target.dict")
  echo "== $target: ${seconds}s"
  start=$SECONDS
  status=0
  cargo fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
  elapsed=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  # libFuzzer's own time ("Done N runs in S second(s)"), without the build.
  fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  crashes=$(find "fuzz/artifacts/$target" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  [ -n "$done_line" ] && echo "$done_line"
  if ((status != 0)); then
    failed=1
    echo "$target: libFuzzer stopped with status $status; the end of $log:"
    tail -n 40 "$log"
  fi
  summary+=("$(printf '%-12s %12s execs in %5ss (%ss with the build)  %s artifact(s) in fuzz/artifacts/%s' \
    "$target" "${execs:-?}" "${fuzzed:-?}" "$elapsed" "$crashes" "$target")")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
