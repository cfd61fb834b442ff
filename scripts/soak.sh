#!/usr/bin/env bash
# Soak test (not part of CI): mixed pgbench traffic with client churn through a release
# build of the proxy, sampling the proxy's RSS and open file descriptors; fails if either
# keeps growing.
#
#   bash scripts/soak.sh [DURATION_SECONDS]        default 600
#
# Environment: SOAK_INTERVAL (sampling period, s, default 5), SOAK_CLIENTS (steady pgbench
# clients, default 8), SOAK_CHURN_CLIENTS (clients reconnecting for every transaction,
# default 4), SOAK_KEEP=1 keeps the work folder. Uses the local primary + replica of
# scripts/pgcluster.sh (started here, and stopped at the end, if it is not running).
# All traffic stays on 127.0.0.1 and every load stops by itself after DURATION.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
DURATION="${1:-600}"
INTERVAL="${SOAK_INTERVAL:-5}"
CLIENTS="${SOAK_CLIENTS:-8}"
CHURN="${SOAK_CHURN_CLIENTS:-4}"
PGCLUSTER=(bash "$REPO_ROOT/scripts/pgcluster.sh")

log() { printf '=== %s\n' "$*" >&2; }
die() {
    printf 'soak.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ "$DURATION" =~ ^[0-9]+$ ]] && ((DURATION >= 30)) || die "duration must be >= 30 seconds"
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

WORK="$(mktemp -d -t pgpool-soak-XXXXXX)"
PROXY_PID=""
cluster_started_here=0
DB="soak_$$"
cleanup() {
    local rc=$?
    set +e
    if [[ -n "$PROXY_PID" ]]; then
        kill "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
    fi
    if [[ -n "${PGRS_PRIMARY_PORT:-}" ]]; then
        "$PSQL" -X -q -h 127.0.0.1 -p "$PGRS_PRIMARY_PORT" -U postgres -d postgres \
            -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    fi
    if ((cluster_started_here)); then
        "${PGCLUSTER[@]}" stop >/dev/null 2>&1
    fi
    if [[ "${SOAK_KEEP:-0}" != 1 ]]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT

log "building the release binary"
cargo build --release --quiet --bin pgpool
BIN="$REPO_ROOT/target/release/pgpool"

"${PGCLUSTER[@]}" status >/dev/null 2>&1 || cluster_started_here=1
"${PGCLUSTER[@]}" start >/dev/null
while IFS= read -r line; do
    [[ "$line" == PGRS_*=* ]] && export "${line?}"
done < <("${PGCLUSTER[@]}" env)
PSQL="$PGRS_PG_BIN/psql"
PGBENCH="$PGRS_PG_BIN/pgbench"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT="$(free_port)"
cat >"$WORK/pgpool.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
pcp_listen_addresses = ''
pcp_port = $(free_port)
metrics_port = $(free_port)
pid_file_name = '$WORK/pgpool.pid'
logdir = '$WORK'
backend_clustering_mode = 'streaming_replication'
backend_hostname0 = '127.0.0.1'
backend_port0 = $PGRS_PRIMARY_PORT
backend_weight0 = 1
backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'
backend_hostname1 = '127.0.0.1'
backend_port1 = $PGRS_REPLICA_PORT
backend_weight1 = 1
backend_flag1 = 'DISALLOW_TO_FAILOVER'
num_init_children = 64
sr_check_period = 0
health_check_period = 0
failover_on_backend_error = off
log_min_messages = warning
EOF

log "preparing database $DB"
"$PSQL" -X -q -h 127.0.0.1 -p "$PGRS_PRIMARY_PORT" -U postgres -d postgres -c "create database $DB"
"$PGBENCH" -q -i -s 2 -h 127.0.0.1 -p "$PGRS_PRIMARY_PORT" -U postgres "$DB" >/dev/null 2>&1

# Reads go to the replica too: wait (bounded) until it has replayed the tables.
for i in $(seq 300); do
    "$PSQL" -X -q -h 127.0.0.1 -p "$PGRS_REPLICA_PORT" -U postgres -d "$DB" \
        -c "select 1 from pgbench_branches limit 1" >/dev/null 2>&1 && break
    ((i < 300)) || die "the replica did not replay the pgbench tables"
    sleep 0.2
done

"$BIN" -n -f "$WORK/pgpool.conf" >"$WORK/pgpool.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
kill -0 "$PROXY_PID" 2>/dev/null || die "proxy did not start: $(cat "$WORK/pgpool.log")"

bench() {
    "$PGBENCH" -n -h 127.0.0.1 -p "$PORT" -U postgres -T "$DURATION" "$@" "$DB"
}
log "soaking for ${DURATION}s: $CLIENTS steady clients (tpcb-like + select-only, simple and extended), $CHURN reconnecting"
bench -c "$CLIENTS" -j 2 -b tpcb-like@1 -b select-only@4 >"$WORK/steady.out" 2>&1 &
STEADY=$!
bench -c 2 -M extended -S >"$WORK/extended.out" 2>&1 &
EXTENDED=$!
bench -C -c "$CHURN" -S >"$WORK/churn.out" 2>&1 &
CHURN_PID=$!

SAMPLES="$WORK/samples.csv"
echo "seconds,rss_kb,fds" >"$SAMPLES"
start=$SECONDS
while kill -0 "$STEADY" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PROXY_PID/status" 2>/dev/null || echo 0)
    fds=$(find "/proc/$PROXY_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "$((SECONDS - start)),$rss,$fds" >>"$SAMPLES"
    sleep "$INTERVAL"
done
status=0
wait "$STEADY" || status=1
wait "$EXTENDED" || status=1
wait "$CHURN_PID" || status=1
kill -0 "$PROXY_PID" 2>/dev/null || die "the proxy died: $(tail -20 "$WORK/pgpool.log")"
# Once the clients have left, every client and backend socket must be closed again.
sleep 2
idle_fds=$(find "/proc/$PROXY_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)

for f in steady extended churn; do
    printf '%-9s %s\n' "$f:" "$(grep -E '^(tps|number of failed|number of transactions actually)' "$WORK/$f.out" | tr '\n' ' ')"
done
((status == 0)) || die "pgbench failed: $(tail -5 "$WORK"/*.out)"

# Growth test: after a warm-up (the first quarter), the mean of the last quarter of the
# samples may exceed the mean of the second quarter only by a small margin.
python3 - "$SAMPLES" "$idle_fds" <<'EOF'
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_kb"]), int(r["fds"])) for r in csv.DictReader(open(sys.argv[1]))]
idle_fds = int(sys.argv[2])
if len(rows) < 8:
    sys.exit(f"soak.sh: only {len(rows)} samples; run longer")
q = len(rows) // 4
def mean(xs): return sum(xs) / len(xs)
rss2, rss4 = mean([r[1] for r in rows[q:2*q]]), mean([r[1] for r in rows[3*q:]])
fd2, fd4 = mean([r[2] for r in rows[q:2*q]]), mean([r[2] for r in rows[3*q:]])
print(f"samples: {len(rows)} over {rows[-1][0]} s")
print(f"RSS kB: first {rows[0][1]}, min {min(r[1] for r in rows)}, max {max(r[1] for r in rows)}, "
      f"last {rows[-1][1]}; mean 2nd quarter {rss2:.0f}, last quarter {rss4:.0f}")
print(f"open fds: first {rows[0][2]}, min {min(r[2] for r in rows)}, max {max(r[2] for r in rows)}, "
      f"last {rows[-1][2]}; mean 2nd quarter {fd2:.1f}, last quarter {fd4:.1f}; after the clients left {idle_fds}")
bad = []
if rss4 > rss2 * 1.2 + 4096:
    bad.append(f"RSS grew from {rss2:.0f} to {rss4:.0f} kB")
if fd4 > fd2 + 16:
    bad.append(f"open fds grew from {fd2:.1f} to {fd4:.1f}")
if idle_fds > rows[0][2] + 16:
    bad.append(f"{idle_fds} fds still open after the clients left (first sample {rows[0][2]})")
if bad:
    sys.exit("soak.sh: FAILED: " + "; ".join(bad))
print("soak.sh: passed")
EOF
