# Shell helpers shared by the benchmark scripts: throwaway Postgres, ports, process CPU.
# Sourced, not run. Expects PG_BIN and WORK (a temp dir) to be set by the caller;
# start_postgres reads MAX_CONNECTIONS (default 600).

say() { printf '== %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port BASE: the first port from BASE that nothing listens on. Callers use bases below
# Linux's ephemeral range (32768-60999): after a run with thousands of client connections, a
# port there may still be held by a TIME_WAIT socket and fail to bind.
free_port() {
    local port
    for port in $(seq "$1" $(($1 + 200))); do
        port_busy "$port" || { echo "$port"; return 0; }
    done
    die "no free port near $1"
}
install_missing() {
    local pkgs=()
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pgbench" ] || pkgs+=(postgresql-15 postgresql-client-15)
    command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || pkgs+=(pgbouncer)
    if [ ${#pkgs[@]} -gt 0 ]; then
        say "installing ${pkgs[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    command -v cargo >/dev/null 2>&1 || die "Rust is missing: see https://rustup.rs"
}
# prepare_run CLEANUP: installs what is missing, raises the file limit, builds pgweir in
# release mode, makes WORK and arranges for CLEANUP to run on exit.
prepare_run() {
    install_missing
    ulimit -n "$(ulimit -Hn)"
    say "building pgweir (release)"
    cargo build --release --locked >&2
    WORK="$(mktemp -d -t pgweir-bench-XXXXXX)"
    chmod 755 "$WORK"
    trap "$1" EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    set +e
    [ -n "${PGWEIR_PID:-}" ] && kill "$PGWEIR_PID" 2>/dev/null
    [ -f "${WORK:-/nonexistent}/pgbouncer.pid" ] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null
    local node
    for node in data replica; do
        [ -f "${WORK:-/nonexistent}/$node/postmaster.pid" ] &&
            as_pg "$PG_BIN/pg_ctl" -D "$WORK/$node" stop -m immediate >/dev/null 2>&1
    done
    wait 2>/dev/null
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
}
start_postgres() {
    PG_PORT="$(free_port 25500)"
    say "PostgreSQL on 127.0.0.1:$PG_PORT"
    mkdir "$WORK/data"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$WORK/data" "$WORK"
    as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --no-locale -E UTF8 >/dev/null
    cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = ${MAX_CONNECTIONS:-600}
shared_buffers = 256MB
fsync = off
synchronous_commit = off
CONF
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PG_PORT" -U postgres -d postgres)
    "${psql[@]}" -c "CREATE ROLE bench LOGIN PASSWORD 'bench'"
    "${psql[@]}" -c "CREATE DATABASE bench OWNER bench"
    say "pgbench -i -s 10"
    PGPASSWORD=bench "$PG_BIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1
}
# start_replica: a streaming replica of start_postgres's primary (pg_basebackup -R) on a free
# port. Sets REPLICA_PORT; its data directory is $WORK/replica.
start_replica() {
    REPLICA_PORT="$(free_port 25600)"
    say "replica on 127.0.0.1:$REPLICA_PORT"
    as_pg "$PG_BIN/pg_basebackup" -D "$WORK/replica" -R -X stream --checkpoint=fast \
        -h "$WORK" -p "$PG_PORT" -U postgres >/dev/null
    cat >>"$WORK/replica/postgresql.conf" <<CONF
port = $REPLICA_PORT
hot_standby = on
CONF
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/replica" -l "$WORK/replica.log" -w start >/dev/null
}

# start_pgweir AUTH_TYPE MAX_CLIENT_CONN EXTRA_POOL_LINES [EXTRA_DATABASE_LINES
# [EXTRA_PGWEIR_LINES]]: pgweir (release build) on a free port in front of the bench
# database, transaction mode, pool $POOL. Sets PGWEIR_PORT/_PID.
start_pgweir() {
    PGWEIR_PORT="$(free_port 25700)"
    cat >"$WORK/pgweir.toml" <<TOML
[pgweir]
listen_addr = "127.0.0.1"
listen_port = $PGWEIR_PORT
auth_type = "$1"
max_client_conn = $2
log_level = "warn"
${5:-}

[pool]
pool_mode = "transaction"
default_pool_size = $POOL
$3

[databases.bench]
host = "127.0.0.1"
port = $PG_PORT
${4:-}

[users.bench]
password = "bench"
TOML
    "${PGWEIR_BIN:-./target/release/pgweir}" --config "$WORK/pgweir.toml" 2>"$WORK/pgweir.log" &
    PGWEIR_PID=$!
    wait_port "$PGWEIR_PORT" pgweir "$WORK/pgweir.log"
}
# Stops the pgweir start_pgweir started and waits until it has gone.
stop_pgweir() {
    kill "$PGWEIR_PID" 2>/dev/null
    wait "$PGWEIR_PID" 2>/dev/null || true
    PGWEIR_PID=
}

# PGBOUNCER_BIN picks the PgBouncer (e.g. ../shared/anchors/pgbouncer-1.25.2/pgbouncer);
# Debian's otherwise. prefer_anchor makes PgBouncer 1.25.2 from ../shared/anchors the default
# when it is there (the comparison scripts call it; run from the repository's root).
prefer_anchor() {
    local anchor=../shared/anchors/pgbouncer-1.25.2/pgbouncer
    [ -z "${PGBOUNCER_BIN:-}" ] && [ -x "$anchor" ] && PGBOUNCER_BIN="$(realpath "$anchor")"
    return 0
}
bouncer_bin() { [ -n "${PGBOUNCER_BIN:-}" ] && echo "$PGBOUNCER_BIN" || command -v pgbouncer || echo /usr/sbin/pgbouncer; }
bouncer_version() { "$(bouncer_bin)" --version 2>/dev/null | awk 'NR==1 { print $2 }'; }

# True when this PgBouncer keeps prepared statements working in transaction mode (1.21+).
bouncer_prepares() {
    local major minor
    IFS=. read -r major minor _ <<<"$(bouncer_version)"
    [ "${major:-0}" -gt 1 ] || { [ "${major:-0}" -eq 1 ] && [ "${minor:-0}" -ge 21 ]; }
}

# start_pgbouncer [EXTRA_INI_LINES]: PgBouncer (bouncer_bin) on a free port in front of the
# bench database, transaction mode, pool $POOL, BOUNCER_AUTH (default SCRAM) with the bench
# user, at most BOUNCER_MAX_CLIENTS (1000) clients, run under BOUNCER_WRAP (a command and its
# options, e.g. valgrind's) when set. Sets PGBOUNCER_PORT.
start_pgbouncer() {
    PGBOUNCER_PORT="$(free_port 25900)"
    local prepared=""
    bouncer_prepares && prepared="max_prepared_statements = 200"
    echo '"bench" "bench"' >"$WORK/userlist.txt"
    cat >"$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = ${BOUNCER_AUTH:-scram-sha-256}
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = ${BOUNCER_MAX_CLIENTS:-1000}
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
$prepared
${1:-}
INI
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
    local bouncer
    bouncer="$(bouncer_bin)"
    # runuser may reset limits; 1000 clients need more than a default 1024 files.
    local limit="ulimit -n $(ulimit -Hn)"
    if [ -n "${BOUNCER_WRAP:-}" ]; then
        # In the foreground (as a background job): a wrapper like valgrind loses track of a
        # process that daemonizes.
        as_pg sh -c "$limit; exec $BOUNCER_WRAP $bouncer $WORK/pgbouncer.ini" 2>"$WORK/wrap.log" &
    else
        as_pg sh -c "$limit; exec $bouncer -d $WORK/pgbouncer.ini"
    fi
    wait_port "$PGBOUNCER_PORT" pgbouncer "$WORK/pgbouncer.log"
}
# Stops the PgBouncer start_pgbouncer started and waits until it has gone.
stop_pgbouncer() {
    local pid
    pid="$(cat "$WORK/pgbouncer.pid" 2>/dev/null)" || return 0
    kill -INT "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$WORK/pgbouncer.pid"
}

wait_port() {
    for _ in $(seq 100); do
        port_busy "$1" && return 0
        sleep 0.1
    done
    cat "$3" >&2
    die "$2 did not start listening on $1"
}
# report_field NAME: a number from the pgbench report in $out: tps, latency (average ms),
# processed (transactions), failed.
report_field() {
    case "$1" in
        tps) awk '/^tps = / { printf "%.0f", $3 }' <<<"$out" ;;
        latency) awk '/^latency average = / { print $4 }' <<<"$out" ;;
        processed) awk -F': ' '/^number of transactions actually processed/ { print $2 }' <<<"$out" | cut -d/ -f1 ;;
        failed) awk -F': ' '/^number of failed transactions/ { print $2 }' <<<"$out" | cut -d' ' -f1 ;;
    esac
}
# utime + stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the name field may hold spaces, so count from after its closing parenthesis).
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
