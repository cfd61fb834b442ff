#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time with libFuzzer.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 30 s, all targets
#   FUZZ_MERGE=1 bash scripts/fuzz.sh 300                     also fold new inputs into the
#                                                             committed corpus (minimised)
#
# The committed corpus (fuzz/corpus/<target>) seeds each run; what a run discovers goes to
# fuzz/target/new-corpus/<target> and is kept out of the repository unless FUZZ_MERGE=1.
# A crash stops the script with the failing input under fuzz/artifacts/<target>/: add it to
# fuzz/regressions/<target>/ so tests/fuzz_regressions.rs replays it from then on.
#
# Needs cargo-fuzz (installed here from crates.io when missing) and libFuzzer's nightly-only
# flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. No sanitizer: the code is
# safe Rust, so what we look for is panics (including arithmetic overflow, which stays
# checked) and wrong verdicts, and a plain build is much quicker to compile.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$REPO_ROOT/fuzz"
SECONDS_PER_TARGET="${1:-30}"
shift || true

log() { printf '\n=== %s\n' "$*" >&2; }

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || ((SECONDS_PER_TARGET < 1)); then
    echo "fuzz.sh: seconds per target must be a positive number, not '$SECONDS_PER_TARGET'" >&2
    exit 2
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# CI repeats the same inputs run after run (a fixed seed), so its verdict depends on the code,
# not on luck; by hand every run explores afresh (seed 0 = random). FUZZ_SEED overrides.
if [[ "${CI:-}" == true ]]; then
    SEED="${FUZZ_SEED:-1}"
else
    SEED="${FUZZ_SEED:-0}"
fi

export RUSTC_BOOTSTRAP=1
cd "$FUZZ_DIR"

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

log "building ${#targets[@]} fuzz targets"
cargo fuzz build --sanitizer none

for t in "${targets[@]}"; do
    seeds="$FUZZ_DIR/corpus/$t"
    work="$FUZZ_DIR/target/new-corpus/$t"
    mkdir -p "$seeds" "$work"
    log "fuzzing $t for ${SECONDS_PER_TARGET}s"
    # Inputs up to 4 KiB: enough for any message shape, small enough to stay fast.
    out="$FUZZ_DIR/target/$t.log"
    status=0
    cargo fuzz run --sanitizer none "$t" "$work" "$seeds" -- \
        -max_total_time="$SECONDS_PER_TARGET" -seed="$SEED" -max_len=4096 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$out" 2>&1 || status=$?
    grep -E '^(Done|stat::peak_rss_mb)' "$out" || true
    if ((status != 0)); then
        grep -E -A12 'panicked|ERROR|SUMMARY' "$out" | head -60 >&2 || tail -40 "$out" >&2
        echo "fuzz.sh: $t FAILED; the input is in fuzz/artifacts/$t/ (full log: $out)" >&2
        exit 1
    fi
    if [[ "${FUZZ_MERGE:-0}" == 1 ]]; then
        log "merging new inputs of $t into the committed corpus"
        cargo fuzz cmin --sanitizer none "$t" "$seeds" -- -max_len=4096 >/dev/null 2>&1 || true
        cargo fuzz run --sanitizer none "$t" "$seeds" "$work" -- -merge=1 -max_len=4096 \
            >/dev/null 2>&1
    fi
done
log "fuzzing passed: ${targets[*]}"
