#!/usr/bin/env bash
# Fuzzes one target with AFL++ for a while, then merges what it found into the kept corpus.
#   fuzz/run.sh TARGET [SECONDS]      (default 600 s)
# Needs `cargo install cargo-afl` (it builds AFL++ itself on first use). The build lives in
# ~/.cache/uplink/fuzz-target, the findings in fuzz/out/TARGET (crashes under crashes/).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uplink/fuzz-target}"
cargo afl build --release
binary="$CARGO_TARGET_DIR/release/uplink-fuzz"
out="out/$target"
mkdir -p "$out"
# No UI (logs to a file), no CPU pinning (the machine may be shared), stop after SECONDS.
AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
  cargo afl fuzz -V "$seconds" -i "corpus/$target" -o "$out" -- "$binary" "$target" \
  > "$out/afl.log" 2>&1 || true
grep -E "execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg" "$out/default/fuzzer_stats" || true
# Keep the smallest inputs that cover what the queue covers (AFL++'s afl-cmin.bash, from the
# AFL++ cargo-afl built: its Python afl-cmin finds no coverage in a persistent-mode target).
afl_bin=$(dirname "$(ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/*/*/afl/bin/afl-fuzz | head -1)")
merged=$(mktemp -d)
rmdir "$merged"
if PATH="$afl_bin:$PATH" AFL_PATH="$afl_bin" "$afl_bin/afl-cmin.bash" -i "$out/default/queue" \
    -o "$merged" -- "$binary" "$target" >/dev/null 2>&1 && compgen -G "$merged/*" >/dev/null; then
  rm -f "corpus/$target"/*
  # Names without AFL's colons and commas, which some file systems refuse.
  for f in "$merged"/*; do cp "$f" "corpus/$target/$(sha1sum "$f" | cut -c1-16)"; done
fi
rm -rf "$merged"
echo "corpus/$target: $(ls "corpus/$target" | wc -l) inputs"
ls "$out/default/crashes" 2>/dev/null | grep -v README || echo "no crashes"
