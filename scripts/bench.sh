#!/usr/bin/env bash
# Side-by-side benchmark: pgbench on loopback straight to PostgreSQL ("direct", the limit),
# through PgBouncer (session mode), through Pgpool-II and through pgpool-rs, in alternating
# rounds of one run, so every proxy is compared with direct under the same background load.
# The transaction-pooling scenarios (txn_*) instead put 64 clients on 8 backend connections
# through a second PgBouncer (pool_mode = transaction) and a second pgpool-rs (pool_mode =
# transaction, every query to the primary, as PgBouncer does), with direct at 64 clients as
# the reference; there the ratio is to PgBouncer's transaction mode.
#
#   scripts/bench.sh            full mode: pgbench -T 20, 3 rounds, every scenario (~30 min)
#   scripts/bench.sh --quick    -T 5, 1 round, fewer scenarios (< 4 min)
#   --keep-cluster              leave the benchmark's primary + replica running afterwards
#
# Starts its own primary + streaming replica (scripts/pgcluster.sh in PGRS_CLUSTER_DIR,
# default target/bench-cluster, so it never disturbs the tests' cluster), installs PgBouncer
# and Pgpool-II from Debian's packages when missing (their services are kept from running),
# builds pgpool-rs in release mode, runs each proxy on free loopback ports from a temporary
# folder, and writes the tables to target/bench/results-<date>.md.
#
# Measured per scenario and target: median TPS, its ratio to direct (txn_*: also to PgBouncer
# in transaction mode) in the same round, p50 and p99 transaction latency (pgbench --log), and
# the proxy's own CPU per transaction (utime + stime of all its processes from /proc, children
# it reaped included). A run the proxy cannot serve (PgBouncer 1.18 has no protocol-level
# prepared statements in transaction mode) is recorded as unsupported, not as an error.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO_ROOT/scripts/bench"
export PGRS_CLUSTER_DIR="${PGRS_CLUSTER_DIR:-$REPO_ROOT/target/bench-cluster}"
OUT_DIR="$REPO_ROOT/target/bench"
TARGETS=(direct pgbouncer pgpool2 pgpool-rs)
TXN_TARGETS=(direct pgbouncer-txn pgpool-rs-txn)
# Backend connections of each transaction-mode proxy (default_pool_size of both).
TXN_POOL_SIZE=8
SCALE=10
# pgpool-rs's setting for one event loop, like PgBouncer's single process.
ONE_LOOP="worker_threads = 1"
DB=bench

MODE=full
KEEP_CLUSTER=0
for arg in "$@"; do
    case "$arg" in
    --quick) MODE=quick ;;
    --keep-cluster) KEEP_CLUSTER=1 ;;
    *)
        printf 'usage: %s [--quick] [--keep-cluster]\n' "$0" >&2
        exit 2
        ;;
    esac
done

if [[ "$MODE" == quick ]]; then
    DURATION=5 ROUNDS=1 IDLE_CLIENTS=10000 COPY_REPEAT=1
    SCENARIOS=(select_simple select_prepared tpcb connect idle copy txn_extended txn_prepared)
else
    DURATION=20 ROUNDS=3 IDLE_CLIENTS=10000 COPY_REPEAT=11
    SCENARIOS=(select_simple select_extended select_prepared tpcb connect idle copy
        txn_extended txn_prepared)
fi

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    exit 1
}

# shellcheck source=scripts/bench/lib.sh
source "$HERE/lib.sh"

# pgbench options per scenario (the database is appended).
pgbench_args() {
    case "$1" in
    select_simple) echo "-S -M simple -c 16 -j 2" ;;
    select_extended) echo "-S -M extended -c 16 -j 2" ;;
    select_prepared) echo "-S -M prepared -c 16 -j 2" ;;
    tpcb) echo "-M simple -c 16 -j 2" ;;
    connect) echo "-C -S -M simple -c 8 -j 2" ;;
    txn_extended) echo "-S -M extended -c 64 -j 2" ;;
    txn_prepared) echo "-S -M prepared -c 64 -j 2" ;;
    esac
}

# The targets a scenario runs against. pgpool-rs runs on one event loop (worker_threads = 1)
# as PgBouncer does; pgpool-rs-mt, at its default of one worker thread per CPU, joins the
# steady-load scenarios.
targets_of() {
    case "$1" in
    txn_*) printf '%s\n' "${TXN_TARGETS[@]}" ;;
    select_* | tpcb) printf '%s\n' "${TARGETS[@]}" pgpool-rs-mt ;;
    *) printf '%s\n' "${TARGETS[@]}" ;;
    esac
}

LABELS=(
    "select_simple=-S -M simple -c16"
    "select_extended=-S -M extended -c16"
    "select_prepared=-S -M prepared -c16"
    "tpcb=tpcb-like -c16"
    "connect=-C -S -c8"
    "txn_extended=txn -S -M extended -c64"
    "txn_prepared=txn -S -M prepared -c64"
)

# One pgbench run; appends `round scenario target metric value` lines to $RAW.
run_pgbench() {
    local round="$1" scenario="$2" target="$3"
    local port pgid logdir out before after
    port="$(target_port "$target")"
    pgid="$(target_pgid "$target")"
    logdir="$RUN_DIR/pgbench.$scenario.$target.$round"
    mkdir -p "$logdir"
    before="$(cpu_ticks "$pgid")"
    # shellcheck disable=SC2046
    if ! out="$("$PGBENCH" -n -h 127.0.0.1 -p "$port" -U postgres -T "$DURATION" \
        $(pgbench_args "$scenario") --log --log-prefix="$logdir/tx" "$DB" 2>&1)" ||
        [[ "$out" == *"Run was aborted"* ]]; then
        record_failure "$round" "$scenario" "$target" "$out"
        rm -rf "$logdir"
        return 0
    fi
    after="$(cpu_ticks "$pgid")"
    local tps txs
    tps="$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)"
    txs="$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')"
    [[ -n "$tps" && -n "$txs" && "$txs" -gt 0 ]] || {
        log "pgbench $scenario via $target printed no TPS"
        return 0
    }
    {
        printf '%s %s %s tps %s\n' "$round" "$scenario" "$target" "$tps"
        latency_percentiles "$logdir" | while read -r metric value; do
            printf '%s %s %s %s %s\n' "$round" "$scenario" "$target" "$metric" "$value"
        done
        if [[ -n "$pgid" ]]; then
            printf '%s %s %s cpu_us_per_tx %s\n' "$round" "$scenario" "$target" \
                "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$txs" \
                    'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
        fi
    } >>"$RAW"
    rm -rf "$logdir"
    log "round $round $scenario via $target: $tps TPS"
}

# A pgbench run that failed goes into the results as "unsupported" when the proxy lost the
# clients' prepared statements (a statement prepared on one backend connection and used on
# another: PgBouncer before 1.21 in transaction mode), else as "failed"; the run goes on.
record_failure() {
    local round="$1" scenario="$2" target="$3" out="$4" metric=pgbench_failed
    if grep -Eq 'prepared statement "[^"]*" (does not|already) exist' <<<"$out"; then
        metric=unsupported
    fi
    printf '%s %s %s %s 1\n' "$round" "$scenario" "$target" "$metric" >>"$RAW"
    log "round $round $scenario via $target: $metric; pgbench said:"
    grep -m 3 -E 'ERROR|FATAL|error|aborted' <<<"$out" >&2 || printf '%s\n' "$out" | tail -n 5 >&2
}

# Idle clients held through the proxy (10,000 by default): proxy memory per held client, and
# the connect + authenticate + first query latency of fresh clients (median and p99 of 50)
# while they are held; direct only times fresh clients (no proxy, and max_connections is
# far below the idle count). The open-files limit must cover the clients on both sides.
run_idle() {
    local round="$1" target="$2" port pids clients="$IDLE_CLIENTS" out
    if [[ "$target" == pgpool2 ]]; then
        log "idle via pgpool2: skipped (one child process per client; $PGPOOL2_CHILDREN children)"
        return 0
    fi
    [[ "$target" == direct ]] && clients=0
    [[ "$target" == pgpool-rs ]] && restart_pgpool_rs $((IDLE_CLIENTS + 64))
    port="$(target_port "$target")"
    pids="$(group_pids "$(target_pgid "$target")" | paste -sd, -)"
    # Every held client is an open socket here too.
    if ! out="$(ulimit -n "$(ulimit -Hn)" 2>/dev/null
        python3 "$HERE/idle.py" --port "$port" --db "$DB" --clients "$clients" \
            --fresh 50 --pids "$pids")"; then
        log "idle via $target failed"
        [[ "$target" == pgpool-rs ]] && restart_pgpool_rs 64
        return 0
    fi
    [[ "$target" == pgpool-rs ]] && restart_pgpool_rs 64
    printf '%s\n' "$out" | while read -r metric value; do
        printf '%s idle %s %s %s\n' "$round" "$target" "$metric" "$value"
    done >>"$RAW"
    log "round $round idle via $target: $(printf '%s' "$out" | tr '\n' ' ')"
}

# COPY pgbench_accounts ($COPY_REPEAT times over: ~1 GB in full mode) TO STDOUT through the
# target, sampling the proxy's RSS meanwhile.
run_copy() {
    local round="$1" target="$2" port pgid start end bytes rss_before peak_file sampler
    port="$(target_port "$target")"
    pgid="$(target_pgid "$target")"
    peak_file="$RUN_DIR/copy_peak"
    rss_before=0
    if [[ -n "$pgid" ]]; then
        rss_before="$(group_rss_kib "$pgid")"
        sample_peak_rss "$pgid" "$peak_file" &
        sampler=$!
    fi
    start="$(date +%s%N)"
    bytes="$("$PSQL" -X -q -h 127.0.0.1 -p "$port" -U postgres -d "$DB" \
        -c "COPY (SELECT a.* FROM pgbench_accounts a, generate_series(1, $COPY_REPEAT)) TO STDOUT" |
        wc -c)"
    end="$(date +%s%N)"
    if [[ -n "$pgid" ]]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
    fi
    awk -v r="$round" -v t="$target" -v b="$bytes" -v ns=$((end - start)) \
        -v before="$rss_before" -v peak="$(cat "$peak_file" 2>/dev/null || echo 0)" \
        -v proxy="${pgid:+1}" 'BEGIN {
            s = ns / 1e9
            printf "%s copy %s seconds %.3f\n", r, t, s
            printf "%s copy %s mb_per_s %.1f\n", r, t, b / 1e6 / s
            if (proxy) {
                printf "%s copy %s rss_before_mib %.1f\n", r, t, before / 1024
                g = peak > before ? (peak - before) / 1024 : 0
                printf "%s copy %s rss_growth_mib %.1f\n", r, t, g
            }
        }' >>"$RAW"
    rm -f "$peak_file"
    log "round $round copy via $target: $bytes bytes in $(((end - start) / 1000000)) ms"
}

run_round() {
    local round="$1" scenario target i n targets
    for scenario in "${SCENARIOS[@]}"; do
        mapfile -t targets < <(targets_of "$scenario")
        n=${#targets[@]}
        # Rotate the order every round so no target always runs first (cold) or last.
        for ((i = 0; i < n; i++)); do
            target="${targets[$(((i + round - 1) % n))]}"
            case "$scenario" in
            idle) run_idle "$round" "$target" ;;
            copy) run_copy "$round" "$target" ;;
            *) run_pgbench "$round" "$scenario" "$target" ;;
            esac
        done
    done
}

write_results() {
    local file="$OUT_DIR/results-$(date +%Y-%m-%d-%H%M).md"
    {
        printf '# pgpool-rs side-by-side benchmark (%s mode, %s)\n\n' "$MODE" "$(date -u '+%Y-%m-%d %H:%M UTC')"
        printf 'Machine: %s\n\n' "$(machine_line)"
        printf 'Versions: %s\n\n' "$(versions_line)"
        printf 'pgbench scale %s, -T %s s, %s round(s), medians over rounds; ratio = proxy / direct in the same round.\n' \
            "$SCALE" "$DURATION" "$ROUNDS"
        printf 'pgbench runs on the same machine as the servers and proxies.\n'
        printf 'Transaction pooling (txn_*): PgBouncer and pgpool-rs with pool_mode = transaction and default_pool_size = %s,\n' \
            "$TXN_POOL_SIZE"
        printf 'pgpool-rs with backend_weight1 = 0 (every query to the primary, like PgBouncer); ratios to pgbouncer-txn and to direct.\n'
        printf 'pgpool-rs and pgpool-rs-txn run with %s (one event loop, as PgBouncer); pgpool-rs-mt with the default (one worker per CPU).\n\n' \
            "$ONE_LOOP"
        python3 "$HERE/report.py" "$RAW" "${LABELS[@]}"
    } >"$file"
    cat "$file"
    log "results written to $file (raw figures: $RAW)"
}

main() {
    command -v python3 >/dev/null 2>&1 || die "python3 is needed for the idle clients and the report"
    mkdir -p "$OUT_DIR"
    RUN_DIR="$(mktemp -d /tmp/pgrs-bench.XXXXXX)"
    chmod 755 "$RUN_DIR"
    RAW="$OUT_DIR/raw-$(date +%Y-%m-%d-%H%M%S).tsv"
    : >"$RAW"
    trap cleanup EXIT
    start_cluster
    ensure_packages
    build_pgpool_rs
    init_pgbench_db
    start_pgbouncer pgbouncer session 100
    start_pgpool2
    start_pgpool_rs 64 pgpool-rs "$ONE_LOOP"
    start_pgpool_rs 64 pgpool-rs-mt
    if [[ " ${SCENARIOS[*]} " == *" txn_"* ]]; then
        start_pgbouncer pgbouncer-txn transaction "$TXN_POOL_SIZE"
        # Twice the clients as the session cap, so pgbench never waits for a slot.
        start_pgpool_rs 128 pgpool-rs-txn "pool_mode = 'transaction'" \
            "default_pool_size = $TXN_POOL_SIZE" "backend_weight1 = 0" "$ONE_LOOP"
    fi
    log "$MODE mode: ${#SCENARIOS[@]} scenarios, ${#TARGETS[@]} targets (txn_*: ${#TXN_TARGETS[@]}), $ROUNDS round(s), -T $DURATION"
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        run_round "$round"
    done
    write_results
}

main
