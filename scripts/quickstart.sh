#!/usr/bin/env bash
# Starts a local primary + streaming replica and pgpool-rs on port 9999 in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bash scripts/pgcluster.sh start
eval "$(bash scripts/pgcluster.sh env | sed 's/^/export /')"
dir="${PGRS_CLUSTER_DIR:-$PWD/target/pgcluster}"
cat > "$dir/pgpool.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 9999
unix_socket_directories = '$dir'
sr_check_period = 0
backend_hostname0 = '127.0.0.1'
backend_port0 = $PGRS_PRIMARY_PORT
backend_weight0 = 1
backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'
backend_hostname1 = '127.0.0.1'
backend_port1 = $PGRS_REPLICA_PORT
backend_weight1 = 1
backend_flag1 = 'DISALLOW_TO_FAILOVER'
CONF
echo "connect with: psql -h 127.0.0.1 -p 9999 -U postgres postgres"
exec target/release/pgpool -n -f "$dir/pgpool.conf"
