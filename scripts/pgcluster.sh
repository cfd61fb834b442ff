#!/usr/bin/env bash
# Local PostgreSQL primary + streaming replica on loopback, for the integration tests, the
# quick start and the benchmarks.
#
#   scripts/pgcluster.sh start            start both (idempotent; installs PostgreSQL if missing)
#   scripts/pgcluster.sh stop             stop both (fast mode)
#   scripts/pgcluster.sh status           show both; exit 0 only when both run and the replica streams
#   scripts/pgcluster.sh env              print PGRS_PRIMARY_PORT=… PGRS_REPLICA_PORT=… PGRS_PG_BIN=…
#   scripts/pgcluster.sh psql [--replica] [psql args]   psql as postgres on the primary (or replica)
#
# Environment:
#   PGRS_CLUSTER_DIR   cluster folder (default <repo>/target/pgcluster)
#   PGRS_PRIMARY_PORT, PGRS_REPLICA_PORT
#                      ports; otherwise free loopback ports are picked at first start and
#                      remembered in <dir>/ports.env
#   PGRS_PG_BIN        PostgreSQL bin folder (default: newest /usr/lib/postgresql/*/bin)
#   PGRS_WAIT_SECS     bound for every wait (default 60)
#
# The servers are built for test speed, not durability (fsync off), and trust every local
# connection except members of the md5_users / scram_users / password_users groups, which
# must authenticate with that method, so tests can choose what the backends demand.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${PGRS_CLUSTER_DIR:-$REPO_ROOT/target/pgcluster}"
WAIT_SECS="${PGRS_WAIT_SECS:-60}"
PG_OS_USER=postgres
REPLICA_APP_NAME=pgrs_replica

PRIMARY_PORT=""
REPLICA_PORT=""
PG_BIN=""

log() { printf 'pgcluster: %s\n' "$*" >&2; }
die() {
    printf 'pgcluster: ERROR: %s\n' "$*" >&2
    exit 1
}

# Print the end of a server log so a failure explains itself.
log_tail() {
    local file="$1"
    if [[ -f "$file" ]]; then
        printf -- '--- last lines of %s ---\n' "$file" >&2
        tail -n 40 "$file" >&2 || true
        printf -- '---\n' >&2
    fi
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a PostgreSQL tool as the postgres OS user: the server refuses to run as root.
# The lock descriptor is closed so a server started here cannot hold the lock forever.
as_pg() {
    if is_root; then
        runuser -u "$PG_OS_USER" -- "$@" 9>&-
    else
        "$@" 9>&-
    fi
}

# ---------------------------------------------------------------- installation ---

find_pg_bin() {
    if [[ -n "${PGRS_PG_BIN:-}" ]]; then
        [[ -x "$PGRS_PG_BIN/initdb" ]] || die "PGRS_PG_BIN=$PGRS_PG_BIN has no initdb"
        printf '%s\n' "$PGRS_PG_BIN"
        return 0
    fi
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)"
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        printf '%s\n' "$dir"
        return 0
    fi
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$dir" && -x "$dir/initdb" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    return 1
}

# apt-get as root, or through passwordless sudo; never prompts.
apt_get() {
    local prefix=()
    if ! is_root; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            prefix=(sudo -n)
        else
            die "PostgreSQL is not installed and this user cannot run apt-get; install the 'postgresql' package or run as root"
        fi
    fi
    "${prefix[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 ||
        die "no PostgreSQL server binaries found and no apt-get to install them; set PGRS_PG_BIN"
    log "PostgreSQL server binaries not found: installing postgresql from Debian packages"
    apt_get update
    apt_get install --no-install-recommends postgresql postgresql-contrib
}

ensure_pg_bin() {
    if ! PG_BIN="$(find_pg_bin)"; then
        install_postgres
        PG_BIN="$(find_pg_bin)" || die "PostgreSQL was installed but no server binaries were found"
    fi
}

ensure_os_user() {
    is_root || return 0
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        log "creating OS user $PG_OS_USER"
        useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
            --shell /usr/sbin/nologin "$PG_OS_USER"
    fi
}

# As root, hand the cluster folder to postgres and make every parent traversable for it.
prepare_dir_for_pg() {
    is_root || return 0
    chown "$PG_OS_USER:" "$CLUSTER_DIR" "$CLUSTER_DIR/run"
    local dir="$CLUSTER_DIR"
    while [[ "$dir" != "/" ]]; do
        dir="$(dirname "$dir")"
        if ! runuser -u "$PG_OS_USER" -- test -x "$dir"; then
            log "making $dir traversable for $PG_OS_USER"
            chmod o+x "$dir"
        fi
    done
}

# ---------------------------------------------------------------- ports ---

port_in_use() {
    # A successful connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Random port below Linux's ephemeral range (32768+), so client sockets never take it.
pick_free_port() {
    local avoid="${1:-0}" port tries=0
    while ((tries < 200)); do
        port=$((15000 + RANDOM % 17000))
        tries=$((tries + 1))
        [[ "$port" == "$avoid" ]] && continue
        port_in_use "$port" && continue
        printf '%s\n' "$port"
        return 0
    done
    die "could not find a free loopback port"
}

# Ports: environment first, then the remembered ones, else fresh free ones.
resolve_ports() {
    local saved_primary="" saved_replica=""
    if [[ -f "$CLUSTER_DIR/ports.env" ]]; then
        saved_primary="$(sed -n 's/^PGRS_PRIMARY_PORT=//p' "$CLUSTER_DIR/ports.env")"
        saved_replica="$(sed -n 's/^PGRS_REPLICA_PORT=//p' "$CLUSTER_DIR/ports.env")"
    fi
    PRIMARY_PORT="${PGRS_PRIMARY_PORT:-$saved_primary}"
    REPLICA_PORT="${PGRS_REPLICA_PORT:-$saved_replica}"
    [[ -n "$PRIMARY_PORT" ]] || PRIMARY_PORT="$(pick_free_port)"
    [[ -n "$REPLICA_PORT" ]] || REPLICA_PORT="$(pick_free_port "$PRIMARY_PORT")"
    [[ "$PRIMARY_PORT" != "$REPLICA_PORT" ]] || die "primary and replica ports are both $PRIMARY_PORT"
}

write_ports_env() {
    local tmp="$CLUSTER_DIR/ports.env.tmp"
    {
        printf 'PGRS_PRIMARY_PORT=%s\n' "$PRIMARY_PORT"
        printf 'PGRS_REPLICA_PORT=%s\n' "$REPLICA_PORT"
        printf 'PGRS_PG_BIN=%s\n' "$PG_BIN"
    } >"$tmp"
    mv -f "$tmp" "$CLUSTER_DIR/ports.env"
}

# ---------------------------------------------------------------- server state ---

# Running = postmaster.pid names a live postgres process. A stale file (crash, reboot, a
# recycled pid) is removed so the next start is not refused.
is_running() {
    local data="$1" pid comm state
    [[ -f "$data/postmaster.pid" ]] || return 1
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == postgres || "$comm" == postmaster ]] || return 1
    # A killed postmaster nobody reaped yet is a zombie: dead for our purposes.
    state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 1)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

remove_stale_pid() {
    local data="$1"
    if [[ -f "$data/postmaster.pid" ]] && ! is_running "$data"; then
        log "removing stale $data/postmaster.pid"
        rm -f "$data/postmaster.pid"
    fi
}

# One psql query as postgres over loopback; prints the unaligned result.
query() {
    local port="$1" sql="$2"
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U postgres \
        -d postgres -v ON_ERROR_STOP=1 -c "$sql" 2>/dev/null
}

replica_streams() {
    [[ "$(query "$REPLICA_PORT" 'select pg_is_in_recovery()' || true)" == "t" ]] || return 1
    local n
    n="$(query "$PRIMARY_PORT" "select count(*) from pg_stat_replication
        where application_name = '$REPLICA_APP_NAME' and state = 'streaming'" || true)"
    [[ "$n" =~ ^[1-9] ]]
}

# Poll a command once every 0.1 s until it succeeds or WAIT_SECS pass.
wait_for() {
    local what="$1" logfile="$2"
    shift 2
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log_tail "$logfile"
            die "timed out after ${WAIT_SECS}s waiting for $what"
        fi
        sleep 0.1
    done
}

ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -U postgres -p "$1" -t 2 >/dev/null 2>&1; }

# ---------------------------------------------------------------- configuration ---

write_primary_conf() {
    local data="$CLUSTER_DIR/primary"
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- written by scripts/pgcluster.sh: test speed, not durability ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR/run'
max_connections = 300
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
ssl = off
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
include_if_exists = 'pgrs_node.conf'
EOF
    as_pg tee "$data/pg_hba.conf" >/dev/null <<'EOF'
# Written by scripts/pgcluster.sh. Members of the *_users groups must use that method.
local   all          all                          trust
host    replication  all             127.0.0.1/32 trust
host    all          +md5_users      127.0.0.1/32 md5
host    all          +scram_users    127.0.0.1/32 scram-sha-256
host    all          +password_users 127.0.0.1/32 password
host    all          all             127.0.0.1/32 trust
host    all          all             ::1/128      trust
EOF
}

# Per-node settings live in their own file, rewritten at every start, so a port given in
# the environment wins and the replica keeps its own port after pg_basebackup copied ours.
write_node_conf() {
    local data="$1" port="$2" name="$3" ssl=off
    ensure_server_cert "$data" && ssl=on
    printf "port = %s\ncluster_name = '%s'\nssl = %s\n" "$port" "$name" "$ssl" |
        as_pg tee "$data/pgrs_node.conf" >/dev/null
}

# A self-signed server certificate (server.crt/server.key, PostgreSQL's default names), so
# the servers accept TLS and tests can see the proxy's backend connections encrypted.
ensure_server_cert() {
    local data="$1"
    [[ -f "$data/server.crt" && -f "$data/server.key" ]] && return 0
    command -v openssl >/dev/null 2>&1 || return 1
    as_pg openssl req -nodes -new -x509 -days 3650 -subj /CN=localhost \
        -keyout "$data/server.key" -out "$data/server.crt" >/dev/null 2>&1 || return 1
    as_pg chmod 600 "$data/server.key"
}

# A cluster made before TLS was turned on gets it with a reload (ssl is reloadable).
ensure_ssl_on() {
    local data="$1" port="$2" name="$3"
    [[ "$(query "$port" 'show ssl' || true)" == on ]] && return 0
    write_node_conf "$data" "$port" "$name"
    as_pg "$PG_BIN/pg_ctl" -D "$data" reload >/dev/null || true
}

# ---------------------------------------------------------------- start ---

start_server() {
    local data="$1" port="$2" logfile="$3" name="$4"
    if is_running "$data"; then
        ready "$port" && return 0
        log "$name runs but does not answer on port $port: restarting it"
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t "$WAIT_SECS" stop >/dev/null ||
            die "could not stop $name"
    fi
    remove_stale_pid "$data"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t "$WAIT_SECS" start >/dev/null; then
        log_tail "$logfile"
        die "$name did not start (data folder $data, port $port)"
    fi
    wait_for "$name to accept connections on port $port" "$logfile" ready "$port"
}

init_primary() {
    local data="$CLUSTER_DIR/primary"
    log "initialising the primary in $data"
    rm -rf "$data" "$CLUSTER_DIR/replica"
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-sync >"$CLUSTER_DIR/initdb.log" 2>&1; then
        log_tail "$CLUSTER_DIR/initdb.log"
        die "initdb failed"
    fi
    write_primary_conf
}

# Group roles that pick the authentication method pg_hba demands of their members.
create_auth_groups() {
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null <<'EOF' || die "could not create the auth group roles"
DO $$
DECLARE g text;
BEGIN
  FOREACH g IN ARRAY ARRAY['md5_users', 'scram_users', 'password_users'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', g);
    END IF;
  END LOOP;
END
$$;
EOF
}

init_replica() {
    local data="$CLUSTER_DIR/replica"
    log "cloning the replica from the primary with pg_basebackup"
    rm -rf "$data"
    if ! as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$data" \
        -R -X stream -c fast --no-sync >"$CLUSTER_DIR/basebackup.log" 2>&1; then
        log_tail "$CLUSTER_DIR/basebackup.log"
        die "pg_basebackup from the primary failed"
    fi
}

# The replica follows the primary's current port even if it changed since the clone.
point_replica_at_primary() {
    local auto="$CLUSTER_DIR/replica/postgresql.auto.conf"
    if ! grep -q "port=$PRIMARY_PORT " "$auto"; then
        as_pg sed -i -E "s/port=[0-9]+ /port=$PRIMARY_PORT /" "$auto"
    fi
}

both_healthy() {
    is_running "$CLUSTER_DIR/primary" && is_running "$CLUSTER_DIR/replica" &&
        ready "$PRIMARY_PORT" && ready "$REPLICA_PORT" && replica_streams
}

start_locked() {
    ensure_pg_bin
    resolve_ports
    if [[ -f "$CLUSTER_DIR/ports.env" ]] && both_healthy; then
        cd "$CLUSTER_DIR"
        ensure_ssl_on "$CLUSTER_DIR/primary" "$PRIMARY_PORT" pgrs_primary
        ensure_ssl_on "$CLUSTER_DIR/replica" "$REPLICA_PORT" "$REPLICA_APP_NAME"
        write_ports_env
        return 0
    fi
    ensure_os_user
    prepare_dir_for_pg
    cd "$CLUSTER_DIR" # postgres may not be allowed into the caller's directory
    [[ -f "$CLUSTER_DIR/primary/PG_VERSION" ]] || init_primary
    write_node_conf "$CLUSTER_DIR/primary" "$PRIMARY_PORT" pgrs_primary
    start_server "$CLUSTER_DIR/primary" "$PRIMARY_PORT" "$CLUSTER_DIR/primary.log" primary
    create_auth_groups
    if [[ ! -f "$CLUSTER_DIR/replica/PG_VERSION" || ! -f "$CLUSTER_DIR/replica/standby.signal" ]]; then
        init_replica
    fi
    write_node_conf "$CLUSTER_DIR/replica" "$REPLICA_PORT" "$REPLICA_APP_NAME"
    point_replica_at_primary
    start_server "$CLUSTER_DIR/replica" "$REPLICA_PORT" "$CLUSTER_DIR/replica.log" replica
    wait_for "the replica to stream from the primary" "$CLUSTER_DIR/replica.log" replica_streams
    write_ports_env
    log "primary on 127.0.0.1:$PRIMARY_PORT, replica on 127.0.0.1:$REPLICA_PORT (folder $CLUSTER_DIR)"
}

# ---------------------------------------------------------------- stop / status ---

stop_server() {
    local data="$1" name="$2"
    if is_running "$data"; then
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t "$WAIT_SECS" stop >/dev/null ||
            die "could not stop $name"
        log "stopped $name"
    else
        remove_stale_pid "$data"
    fi
}

stop_locked() {
    [[ -d "$CLUSTER_DIR/primary" || -d "$CLUSTER_DIR/replica" ]] || return 0
    PG_BIN="$(find_pg_bin)" || die "no PostgreSQL binaries found to stop the cluster"
    cd "$CLUSTER_DIR"
    stop_server "$CLUSTER_DIR/replica" replica
    stop_server "$CLUSTER_DIR/primary" primary
}

status() {
    PG_BIN="$(find_pg_bin)" || die "PostgreSQL is not installed"
    if [[ ! -f "$CLUSTER_DIR/ports.env" && -z "${PGRS_PRIMARY_PORT:-}" ]]; then
        printf 'no cluster in %s\n' "$CLUSTER_DIR"
        return 3
    fi
    resolve_ports
    local ok=0 name data port
    for name in primary replica; do
        data="$CLUSTER_DIR/$name"
        port="$PRIMARY_PORT"
        [[ "$name" == replica ]] && port="$REPLICA_PORT"
        if is_running "$data" && ready "$port"; then
            printf '%-8s running  127.0.0.1:%s  in_recovery=%s\n' "$name" "$port" \
                "$(query "$port" 'select pg_is_in_recovery()' || echo '?')"
        else
            printf '%-8s stopped  (port %s, folder %s)\n' "$name" "$port" "$data"
            ok=3
        fi
    done
    if ((ok == 0)) && ! replica_streams; then
        printf 'replica is not streaming from the primary\n'
        ok=3
    fi
    return "$ok"
}

print_env() {
    [[ -f "$CLUSTER_DIR/ports.env" ]] ||
        die "no cluster in $CLUSTER_DIR yet: run scripts/pgcluster.sh start"
    cat "$CLUSTER_DIR/ports.env"
}

run_psql() {
    PG_BIN="$(find_pg_bin)" || die "PostgreSQL is not installed"
    [[ -f "$CLUSTER_DIR/ports.env" || -n "${PGRS_PRIMARY_PORT:-}" ]] ||
        die "no cluster in $CLUSTER_DIR yet: run scripts/pgcluster.sh start"
    resolve_ports
    local port="$PRIMARY_PORT"
    if [[ "${1:-}" == "--replica" ]]; then
        port="$REPLICA_PORT"
        shift
    fi
    exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# Serialise start/stop between concurrent callers (parallel test binaries).
with_lock() {
    exec 9>>"$CLUSTER_DIR/.lock"
    flock -w 900 9 || die "timed out waiting for the lock on $CLUSTER_DIR/.lock"
    "$@"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
    start)
        mkdir -p "$CLUSTER_DIR/run"
        CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd)"
        with_lock start_locked
        ;;
    stop)
        [[ -d "$CLUSTER_DIR" ]] || return 0
        CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd)"
        with_lock stop_locked
        ;;
    status) status ;;
    env) print_env ;;
    psql) run_psql "$@" ;;
    *)
        printf 'usage: %s start|stop|status|env|psql [--replica] [psql args]\n' "$0" >&2
        exit 2
        ;;
    esac
}

main "$@"
