#!/usr/bin/env bash
# Runs each cargo-fuzz target (crate/fuzz: `npy`, the .npy parser; `persist`, the save-file loader)
# for a bounded time and prints libFuzzer's final statistics.
#
#   npm run fuzz                 # 60 s per target
#   FUZZ_SECONDS=300 npm run fuzz
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`), and `npm run build` (the
# seed corpus is written with the built addon). A single allocation above 512 MB counts as a crash,
# so a size taken from a header without checking it against the input fails loudly.
# Findings land in crate/fuzz/artifacts/<target>/; turn each into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-${1:-60}}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz with a nightly toolchain is required: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
  exit 2
fi
node tools/fuzz-seeds.mjs crate/fuzz/corpus-seeds
mkdir -p target
status=0
for t in npy persist; do
  mkdir -p "crate/fuzz/corpus/$t"
  echo "== fuzz target $t for ${secs}s"
  (cd crate && cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/corpus-seeds/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1) \
    2>&1 | tee "target/fuzz-$t.log" | grep -E '^(#[0-9]+ +DONE|stat::|==[0-9]+==|SUMMARY|Done )' || true
  if ! grep -q 'Done [0-9]* runs' "target/fuzz-$t.log"; then
    echo "fuzz target $t: FAILED (see target/fuzz-$t.log and crate/fuzz/artifacts/$t/)" >&2
    status=1
  fi
done
exit $status
