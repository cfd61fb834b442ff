#!/usr/bin/env bash
# Runs the differential protocol fuzzer (tests/differential.rs) for as long as asked:
# random client message sequences, each straight against the primary and through the proxy,
# answers and final tables compared. Every difference is printed, shrunk, as a pgproto script.
#
#   bash scripts/difffuzz.sh SECONDS [SEED]     e.g. bash scripts/difffuzz.sh 1800
#
# Without SEED a new one is taken from the clock and printed, so a run can be repeated.
# The test starts its own primary + replica (synchronous, remote_apply) and its own proxies.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TO_RUN="${1:-}"
SEED="${2:-$(date +%s)}"

if ! [[ "$SECONDS_TO_RUN" =~ ^[0-9]+$ ]] || ((SECONDS_TO_RUN < 1)); then
    echo "usage: difffuzz.sh SECONDS [SEED]" >&2
    exit 2
fi
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

echo "difffuzz: ${SECONDS_TO_RUN}s from seed $SEED" >&2
cd "$REPO_ROOT"
PGRS_DIFF_SECONDS="$SECONDS_TO_RUN" PGRS_DIFF_SEED="$SEED" \
    exec cargo test --test differential -- --nocapture
