#!/usr/bin/env bash
# Quick start: build pgpool-rs, start the local primary + streaming replica, and run the proxy
# in the foreground on 127.0.0.1:9999 in front of them. Ctrl-C stops the proxy (and the
# cluster, if this script started it).
#
#   scripts/quickstart.sh
#
# PGRS_PROXY_PORT changes the proxy port; PGRS_CLUSTER_DIR and the other PGRS_* variables
# are passed on to scripts/pgcluster.sh.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PGCLUSTER=(bash "$REPO_ROOT/scripts/pgcluster.sh")
PROXY_PORT="${PGRS_PROXY_PORT:-9999}"

cargo build --release --bin pgpool

cluster_started_here=0
"${PGCLUSTER[@]}" status >/dev/null 2>&1 || cluster_started_here=1
cleanup() {
    if ((cluster_started_here)); then
        "${PGCLUSTER[@]}" stop || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"${PGCLUSTER[@]}" start

CLUSTER_DIR="${PGRS_CLUSTER_DIR:-$REPO_ROOT/target/pgcluster}"
CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd)"
PRIMARY_PORT="$("${PGCLUSTER[@]}" env | sed -n 's/^PGRS_PRIMARY_PORT=//p')"
REPLICA_PORT="$("${PGCLUSTER[@]}" env | sed -n 's/^PGRS_REPLICA_PORT=//p')"
CONF="$CLUSTER_DIR/pgpool.conf"

# Same shape as the Kubernetes ConfigMap: node 0 = primary, node 1 = replica, weights 1/1.
cat >"$CONF" <<CONF
# written by scripts/quickstart.sh
listen_addresses = '127.0.0.1'
port = $PROXY_PORT
unix_socket_directories = '$CLUSTER_DIR'
pcp_socket_dir = '$CLUSTER_DIR'
pid_file_name = '$CLUSTER_DIR/pgpool.pid'
logdir = '$CLUSTER_DIR'
backend_clustering_mode = 'streaming_replication'
backend_hostname0 = '127.0.0.1'
backend_port0 = $PRIMARY_PORT
backend_weight0 = 1
backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'
backend_hostname1 = '127.0.0.1'
backend_port1 = $REPLICA_PORT
backend_weight1 = 1
backend_flag1 = 'DISALLOW_TO_FAILOVER'
backend_application_name1 = 'pgrs_replica'
sr_check_period = 0
health_check_period = 0
failover_on_backend_error = off
load_balance_mode = on
CONF

cat <<MSG

pgpool-rs on 127.0.0.1:$PROXY_PORT  ->  primary 127.0.0.1:$PRIMARY_PORT, replica 127.0.0.1:$REPLICA_PORT
config: $CONF
connect with:

    psql -h 127.0.0.1 -p $PROXY_PORT -U postgres postgres

Ctrl-C stops it.

MSG
"$REPO_ROOT/target/release/pgpool" -n -f "$CONF"
