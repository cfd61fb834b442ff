# Helpers of scripts/bench.sh: the cluster, the proxies' lifecycles, and the /proc
# readings (CPU ticks and resident memory summed over a process group). Sourced, not run.
# Every proxy is started with setsid, so its process group id is its pid and all its
# processes (Pgpool-II's children, runuser + pgbouncer) are found through that group.

CLK_TCK="$(getconf CLK_TCK)"
PGPOOL2_CHILDREN=64
PG_OS_USER=postgres
declare -A PORT PGID

is_root() { [[ "$(id -u)" -eq 0 ]]; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A random free port below Linux's ephemeral range, never one handed out before in this run.
USED_PORTS=" "
pick_free_port() {
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((15000 + RANDOM % 17000))
        [[ "$USED_PORTS" == *" $port "* ]] && continue
        port_in_use "$port" && continue
        USED_PORTS+="$port "
        printf '%s\n' "$port"
        return 0
    done
    die "no free loopback port found"
}

# Poll (bounded, 0.1 s steps) until `pg_isready` answers on the port.
wait_port() {
    local what="$1" port="$2" logfile="$3" i
    for ((i = 0; i < 300; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d "$DB" -t 1 && return 0
        sleep 0.1
    done
    [[ -f "$logfile" ]] && tail -n 30 "$logfile" >&2
    die "$what did not accept connections on port $port"
}

start_cluster() {
    bash "$REPO_ROOT/scripts/pgcluster.sh" start
    eval "$(bash "$REPO_ROOT/scripts/pgcluster.sh" env)"
    PRIMARY_PORT="$PGRS_PRIMARY_PORT" REPLICA_PORT="$PGRS_REPLICA_PORT" PG_BIN="$PGRS_PG_BIN"
    PGBENCH="$PG_BIN/pgbench" PSQL="$PG_BIN/psql"
    PORT[direct]="$PRIMARY_PORT"
    PGID[direct]=""
}

stop_cluster() {
    if ((KEEP_CLUSTER)); then
        log "leaving the cluster in $PGRS_CLUSTER_DIR running (scripts/pgcluster.sh stop)"
    else
        bash "$REPO_ROOT/scripts/pgcluster.sh" stop || true
    fi
}

# A Debian service started by the package install would hold ports and CPU: stop it with
# its own init script (policy-rc.d usually prevents the start in the first place).
stop_debian_service() {
    local name="$1" pidfile="$2"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$name" 2>/dev/null; then
        systemctl stop "$name" || true
    elif [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        "/etc/init.d/$name" stop || true
    fi
}

ensure_packages() {
    local missing=()
    command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
    [[ -x /usr/sbin/pgpool ]] || missing+=(pgpool2)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} from Debian's packages"
        local prefix=()
        is_root || prefix=(sudo -n)
        "${prefix[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends "${missing[@]}" >&2 ||
            die "could not install ${missing[*]}"
    fi
    stop_debian_service pgbouncer /var/run/postgresql/pgbouncer.pid
    stop_debian_service pgpool2 /var/run/postgresql/pgpool.pid
    PGBOUNCER_BIN="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
}

build_pgpool_rs() {
    log "building pgpool-rs (release)"
    (cd "$REPO_ROOT" && cargo build --release --quiet --bin pgpool) || die "cargo build failed"
    PGPOOL_RS_BIN="$REPO_ROOT/target/release/pgpool"
}

# pgbench tables at scale $SCALE in their own database; the replica must have replayed
# them before reads are balanced to it.
init_pgbench_db() {
    local have
    have="$("$PSQL" -X -At -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres \
        -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")"
    if [[ "$have" == 1 ]] && "$PSQL" -X -At -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d "$DB" \
        -c "SELECT count(*) = $SCALE FROM pgbench_branches" 2>/dev/null | grep -q t; then
        log "pgbench tables at scale $SCALE already present"
    else
        log "pgbench -i -s $SCALE"
        "$PSQL" -X -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres \
            -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
        "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres "$DB" >/dev/null 2>&1 ||
            die "pgbench -i failed"
    fi
    local lsn i
    lsn="$("$PSQL" -X -At -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres \
        -c "SELECT pg_current_wal_lsn()")"
    for ((i = 0; i < 600; i++)); do
        [[ "$("$PSQL" -X -At -h 127.0.0.1 -p "$REPLICA_PORT" -U postgres -d postgres \
            -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" == t ]] && return 0
        sleep 0.1
    done
    die "the replica did not catch up with the primary"
}

fill_template() {
    local template="$1" dest="$2" port="$3" children="${4:-$PGPOOL2_CHILDREN}"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$(dirname "$dest")|g" \
        -e "s|@PCP_PORT@|$(pick_free_port)|g" -e "s|@PRIMARY_PORT@|$PRIMARY_PORT|g" \
        -e "s|@REPLICA_PORT@|$REPLICA_PORT|g" -e "s|@CHILDREN@|$children|g" \
        -e "s|@MAX_CLIENTS@|$((IDLE_CLIENTS + 1000))|g" "$template" >"$dest"
}

# start_pgbouncer NAME POOL_MODE POOL_SIZE: one PgBouncer instance, known as target NAME.
start_pgbouncer() {
    local name="$1" mode="$2" size="$3" dir="$RUN_DIR/$1" port
    port="$(pick_free_port)"
    mkdir -p "$dir"
    fill_template "$HERE/pgbouncer.ini.in" "$dir/pgbouncer.ini" "$port"
    sed -i -e "s|@POOL_MODE@|$mode|g" -e "s|@POOL_SIZE@|$size|g" "$dir/pgbouncer.ini"
    # PgBouncer refuses to run as root.
    local runas=()
    if is_root; then
        chown -R "$PG_OS_USER:" "$dir"
        runas=(runuser -u "$PG_OS_USER" --)
    fi
    # runuser's PAM session lowers the open-files limit; the idle clients need thousands.
    setsid "${runas[@]}" sh -c 'ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$2" "$3"' \
        sh "$(ulimit -Hn)" "$PGBOUNCER_BIN" "$dir/pgbouncer.ini" </dev/null >>"$dir/stdout.log" 2>&1 &
    PGID[$name]=$!
    PORT[$name]="$port"
    wait_port "$name" "$port" "$dir/pgbouncer.log"
    log "PgBouncer $("$PGBOUNCER_BIN" --version | head -n 1) on 127.0.0.1:$port ($mode mode, pool size $size)"
}

start_pgpool2() {
    local dir="$RUN_DIR/pgpool2" port
    port="$(pick_free_port)"
    mkdir -p "$dir"
    fill_template "$HERE/pgpool.conf.in" "$dir/pgpool.conf" "$port"
    : >"$dir/pcp.conf"
    setsid /usr/sbin/pgpool -n -D -f "$dir/pgpool.conf" -F "$dir/pcp.conf" \
        </dev/null >>"$dir/pgpool.log" 2>&1 &
    PGID[pgpool2]=$!
    PORT[pgpool2]="$port"
    wait_port "Pgpool-II" "$port" "$dir/pgpool.log"
    log "Pgpool-II on 127.0.0.1:$port ($PGPOOL2_CHILDREN children)"
}

# start_pgpool_rs CHILDREN NAME [LINE...]: one pgpool-rs instance, known as target NAME. It
# reads the same pgpool.conf as Pgpool-II; num_init_children (CHILDREN) is its cap on client
# sessions; each LINE is appended to its pgpool.conf (the last assignment of a name wins).
start_pgpool_rs() {
    local children="$1" name="$2" dir="$RUN_DIR/$2" port
    shift 2
    port="${PORT[$name]:-$(pick_free_port)}"
    mkdir -p "$dir"
    fill_template "$HERE/pgpool.conf.in" "$dir/pgpool.conf" "$port" "$children"
    printf '%s\n' 'metrics_port = 0' "$@" >>"$dir/pgpool.conf"
    # One socket per idle client: raise the open-files limit to the hard limit.
    setsid sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"' sh \
        "$PGPOOL_RS_BIN" -n -f "$dir/pgpool.conf" </dev/null >>"$dir/pgpool.log" 2>&1 &
    PGID[$name]=$!
    PORT[$name]="$port"
    wait_port "$name" "$port" "$dir/pgpool.log"
    (($#)) && log "$name on 127.0.0.1:$port ($*)"
    return 0
}

# Stop a proxy we started: SIGTERM to its process group, then wait (bounded) for it to go.
stop_group() {
    local pgid="$1" i
    [[ -n "$pgid" ]] || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

restart_pgpool_rs() {
    stop_group "${PGID[pgpool-rs]:-}"
    start_pgpool_rs "$1" pgpool-rs "$ONE_LOOP"
}

cleanup() {
    local target
    for target in pgbouncer pgbouncer-txn pgpool2 pgpool-rs pgpool-rs-mt pgpool-rs-txn; do
        stop_group "${PGID[$target]:-}"
    done
    stop_cluster
    [[ -n "${RUN_DIR:-}" ]] && rm -rf "$RUN_DIR"
}

target_port() { printf '%s\n' "${PORT[$1]}"; }
target_pgid() { printf '%s\n' "${PGID[$1]:-}"; }

group_pids() {
    local pgid="$1"
    [[ -n "$pgid" ]] || return 0
    all_stats | awk -v g="$pgid" '{ pid = $1; sub(/^.*\) /, ""); if ($3 == g) print pid }'
}

# Every process's /proc/<pid>/stat line; processes that exit meanwhile are skipped.
all_stats() { grep -h '' /proc/[0-9]*/stat 2>/dev/null || true; }

# utime + stime of every process in the group, plus cutime + cstime (children that exited
# and were reaped), in clock ticks.
cpu_ticks() {
    local pgid="$1"
    [[ -n "$pgid" ]] || {
        echo 0
        return 0
    }
    all_stats | awk -v g="$pgid" '{ sub(/^.*\) /, ""); if ($3 == g) t += $12 + $13 + $14 + $15 }
        END { print t + 0 }'
}

group_rss_kib() {
    local pid total=0 kib
    for pid in $(group_pids "$1"); do
        kib="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${kib:-0}))
    done
    printf '%s\n' "$total"
}

# Writes the largest group RSS seen (sampled every 0.05 s) to $2 until killed.
sample_peak_rss() {
    local pgid="$1" file="$2" peak=0 now
    trap 'exit 0' TERM
    while true; do
        now="$(group_rss_kib "$pgid")"
        if ((now > peak)); then
            peak=$now
            printf '%s\n' "$peak" >"$file"
        fi
        sleep 0.05
    done
}

# p50 and p99 of the per-transaction latencies pgbench --log wrote (third field, µs).
latency_percentiles() {
    cat "$1"/tx* 2>/dev/null | awk '{ print $3 }' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) exit
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "p50_ms %.3f\np99_ms %.3f\n", v[i50] / 1000, v[i99] / 1000
        }'
}

machine_line() {
    local model mem
    model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    mem="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    printf '%s CPUs (nproc), %s, %s RAM, Linux %s\n' "$(nproc)" "${model:-unknown CPU}" "$mem" "$(uname -r)"
}

versions_line() {
    printf 'PostgreSQL %s, %s, %s, pgpool-rs %s\n' \
        "$("$PG_BIN/postgres" --version | awk '{ print $3 }')" \
        "$("$PGBOUNCER_BIN" --version | head -n 1)" \
        "$(/usr/sbin/pgpool --version 2>&1 | head -n 1)" \
        "$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}
