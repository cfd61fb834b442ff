#!/usr/bin/env bash
# The test command: installs what is missing, starts the local primary + replica once for all
# test binaries, then runs rustfmt, clippy, the module-cycle check and the whole test suite.
#
#   bash scripts/test.sh
#
# Works unattended on a fresh Debian machine as root (CI) and as a developer with PostgreSQL
# already installed. The cluster is stopped at the end only if this script started it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PGCLUSTER=(bash "$REPO_ROOT/scripts/pgcluster.sh")

log() { printf '\n=== %s\n' "$*" >&2; }
die() {
    printf 'test.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

have_pg_server() {
    [[ -n "${PGRS_PG_BIN:-}" && -x "${PGRS_PG_BIN:-}/initdb" ]] && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

apt_get() {
    local prefix=()
    if ! is_root; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
            die "missing packages ($*) and no root or passwordless sudo to install them"
        prefix=(sudo -n)
    fi
    "${prefix[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"
}

# Package installs must not start services (Debian would start pgpool on 9999 and a
# PostgreSQL on 5432): a policy-rc.d that says "no" is in place while apt runs.
POLICY_RC=/usr/sbin/policy-rc.d
remove_policy_rc=0
forbid_service_start() {
    if is_root && [[ ! -e "$POLICY_RC" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        remove_policy_rc=1
    fi
}
allow_service_start() {
    if ((remove_policy_rc)); then
        rm -f "$POLICY_RC"
        remove_policy_rc=0
    fi
}

install_missing_packages() {
    local need=()
    command -v cc >/dev/null 2>&1 || need+=(build-essential)
    have_pg_server || need+=(postgresql postgresql-contrib)
    # pgpool2 only brings peer tools (pg_md5, pg_enc, pcp_*) for comparisons: optional.
    local want_pgpool=0
    command -v pg_md5 >/dev/null 2>&1 || want_pgpool=1
    if ((${#need[@]} == 0 && want_pgpool == 0)); then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        ((${#need[@]} == 0)) && return 0
        die "missing ${need[*]} and no apt-get to install them"
    fi
    if ((${#need[@]} == 0)) && ! is_root && ! sudo -n true 2>/dev/null; then
        return 0 # only the optional pgpool2 is missing and we cannot install it
    fi
    local what="${need[*]}"
    ((want_pgpool)) && what="$what pgpool2 (optional)"
    log "installing packages: $what"
    forbid_service_start
    trap allow_service_start EXIT
    apt_get update
    if ((${#need[@]})); then
        apt_get install --no-install-recommends "${need[@]}"
    fi
    if ((want_pgpool)); then
        apt_get install --no-install-recommends pgpool2 ||
            printf 'test.sh: pgpool2 could not be installed; continuing without it\n' >&2
    fi
    allow_service_start
}

# The metrics test validates /metrics with Python's strict OpenMetrics parser when it is
# installed; it falls back to a lenient Rust parser otherwise, so this is best effort.
install_python_parser() {
    command -v python3 >/dev/null 2>&1 || return 0
    python3 -c 'import prometheus_client' 2>/dev/null && return 0
    log "installing the Python prometheus_client parser (optional)"
    python3 -m pip install -q --user prometheus_client 2>/dev/null ||
        python3 -m pip install -q --user --break-system-packages prometheus_client 2>/dev/null ||
        printf 'test.sh: prometheus_client not installed; the strict metrics check is skipped\n' >&2
}

# The libpq pipeline test drives psycopg 3 (its binary wheel bundles a libpq with pipeline
# mode); without it that one test says it is skipped.
install_psycopg() {
    command -v python3 >/dev/null 2>&1 || return 0
    python3 -c 'import psycopg' 2>/dev/null && return 0
    log "installing psycopg 3 for the libpq pipeline test (optional)"
    python3 -m pip install -q --user 'psycopg[binary]' 2>/dev/null ||
        python3 -m pip install -q --user --break-system-packages 'psycopg[binary]' 2>/dev/null ||
        printf 'test.sh: psycopg not installed; the libpq pipeline test is skipped\n' >&2
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust >= 1.85 (https://rustup.rs); Debian 12's rustc is too old"
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 ||
            die "cargo fmt / cargo clippy missing and no rustup to add them"
        rustup component add rustfmt clippy
    fi
}

cluster_started_here=0
cleanup() {
    local rc=$?
    allow_service_start
    if ((cluster_started_here)); then
        log "stopping the test cluster"
        "${PGCLUSTER[@]}" stop || true
    fi
    exit "$rc"
}

start_cluster() {
    if ! "${PGCLUSTER[@]}" status >/dev/null 2>&1; then
        cluster_started_here=1
    fi
    trap cleanup EXIT
    log "starting the local primary + replica"
    "${PGCLUSTER[@]}" start
    # Every test binary uses this one cluster instead of starting its own.
    local line
    while IFS= read -r line; do
        [[ "$line" == PGRS_*=* ]] && export "${line?}"
    done < <("${PGCLUSTER[@]}" env)
    printf 'primary 127.0.0.1:%s  replica 127.0.0.1:%s\n' "$PGRS_PRIMARY_PORT" "$PGRS_REPLICA_PORT"
}

main() {
    if [[ "${CI:-}" == true ]]; then
        export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
    fi
    export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
    ensure_rust
    install_missing_packages
    install_python_parser
    install_psycopg
    start_cluster

    local failed=()
    log "cargo fmt --check"
    cargo fmt --all -- --check || failed+=("cargo fmt --check")
    log "cargo clippy --all-targets -- -D warnings"
    cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy")
    log "scripts/modcycles.py (no import cycle between folders)"
    python3 scripts/modcycles.py || failed+=("scripts/modcycles.py")
    bash scripts/validate-k8s.sh || failed+=("scripts/validate-k8s.sh")
    log "cargo test --all-targets"
    cargo test --all-targets || failed+=("cargo test")
    log "fuzz pass (PGRS_FUZZ_SECONDS per target, 0 skips)"
    [[ "${PGRS_FUZZ_SECONDS:-15}" == 0 ]] || bash scripts/fuzz.sh "${PGRS_FUZZ_SECONDS:-15}" || failed+=("fuzz")

    if ((${#failed[@]})); then
        log "FAILED: ${failed[*]}"
        return 1
    fi
    log "all checks passed"
}

main "$@"
