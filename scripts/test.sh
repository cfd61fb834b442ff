#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what is missing, starts a local
# primary + streaming replica once for every test binary, runs the checks and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cc >/dev/null 2>&1; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential
fi
# pgpool2 brings Pgpool-II's own pg_md5/pg_enc/pcp_* tools as peers; optional.
if ! command -v pg_md5 >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgpool2) >/dev/null 2>&1 || true
fi

export PGRS_CLUSTER_DIR="${PGRS_CLUSTER_DIR:-$PWD/target/test-cluster}"
started_here=0
if ! bash scripts/pgcluster.sh status >/dev/null 2>&1; then started_here=1; fi
bash scripts/pgcluster.sh start
if [ "$started_here" -eq 1 ]; then trap 'bash scripts/pgcluster.sh stop || true' EXIT; fi
eval "$(bash scripts/pgcluster.sh env | sed 's/^/export /')"

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
