#!/usr/bin/env bash
# pgweir quickstart: one command on a fresh Debian/Ubuntu machine with Rust installed.
#
# 1. Installs PostgreSQL (server and client, via apt) if it is missing.
# 2. Builds pgweir in release mode (a few minutes the first time; cargo's progress is shown).
# 3. Starts a throwaway PostgreSQL on 127.0.0.1:5432 in a temp dir, with role `pgweir`
#    (password `pgweir`) and database `pgbench`, and pgweir on 127.0.0.1:6432 with
#    config/pgweir.toml (console user `admin`, password `admin`; /metrics on 127.0.0.1:9930).
# 4. Runs `pgbench -S` (select-only) for 10 s straight against Postgres and 10 s through
#    pgweir, with the same clients, and prints TPS and latency for both.
# 5. Leaves pgweir running and prints the connection string, the console command and the
#    metrics URL. Ctrl-C stops pgweir and Postgres and deletes the temp dir.
#
# Environment: PGWEIR_PG_PORT (5432), PGWEIR_PORT (6432), PGWEIR_METRICS_PORT (9930) when a
# port is taken; PGWEIR_PG_BIN, a PostgreSQL bin directory to use instead of looking for one;
# BENCH_CLIENTS (50) and BENCH_SECONDS (10, 0 skips the comparison).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT="${PGWEIR_PG_PORT:-5432}"
PGWEIR_PORT="${PGWEIR_PORT:-6432}"
METRICS_PORT="${PGWEIR_METRICS_PORT:-9930}"
BENCH_CLIENTS="${BENCH_CLIENTS:-50}"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
CONFIG=config/pgweir.toml

# The names in config/pgweir.toml (tests/it/first_hour.rs holds these lines to that file).
APP_USER="pgweir"
APP_PASSWORD="pgweir"
APP_DB="pgbench"
ADMIN_USER="admin"
ADMIN_PASSWORD="admin"
POOL_SIZE=20

say() { printf '\n== %s\n' "$*"; }
die() {
    printf '\nquickstart: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "installing PostgreSQL needs root and sudo is not installed; run as root or install PostgreSQL yourself"
    fi
}

# Runs a PostgreSQL server program; Postgres refuses to run as root, so as root it runs as
# the `postgres` OS user (as the test harness does).
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_port() {
    local port="$1" what="$2" var="$3"
    case "$port" in
        '' | *[!0-9]*) die "$var=$port is not a port number" ;;
    esac
    if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        die "$var=$port is not a port number (1-65535)"
    fi
    if port_busy "$port"; then
        die "port $port ($what) is in use on 127.0.0.1; rerun with $var=<a free port>, e.g. $var=$((port + 10)) $0"
    fi
}

has_pg_programs() {
    local program
    for program in initdb pg_ctl psql pgbench; do
        [ -x "$1/$program" ] || return 1
    done
}

find_pg_bindir() {
    local dir
    for dir in /usr/lib/postgresql/15/bin $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -Vr) \
        "$(pg_config --bindir 2>/dev/null || true)"; do
        if [ -n "$dir" ] && has_pg_programs "$dir"; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL (initdb, pg_ctl, psql, pgbench) was not found and there is no apt-get to install it; install it and set PGWEIR_PG_BIN to its bin directory"
    say "installing PostgreSQL (apt-get install postgresql-15 postgresql-client-15, or the distribution's version)"
    as_root apt-get update -qq
    if apt-cache show postgresql-15 >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15
    else
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client postgresql-contrib
    fi
    # The package starts its own cluster on 5432; this script brings its own.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header | while read -r version name port status _rest; do
            if [ "$status" = online ] && [ "$port" = "$PG_PORT" ]; then
                as_root pg_ctlcluster "$version" "$name" stop
            fi
        done
    fi
}

check_tools() {
    command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is not installed. Get it from https://rustup.rs \
(curl --proto '=https' -sSf https://sh.rustup.rs | sh), then run this script again."
    [ -f "$CONFIG" ] || die "$CONFIG is missing (run this script from a pgweir checkout)"
    case "$BENCH_CLIENTS$BENCH_SECONDS" in
        *[!0-9]*) die "BENCH_CLIENTS and BENCH_SECONDS must be whole numbers" ;;
    esac
    [ "$BENCH_CLIENTS" -ge 1 ] || die "BENCH_CLIENTS must be at least 1"
    check_port "$PG_PORT" "for the throwaway PostgreSQL" PGWEIR_PG_PORT
    check_port "$PGWEIR_PORT" "pgweir's listen_port" PGWEIR_PORT
    check_port "$METRICS_PORT" "pgweir's metrics_addr" PGWEIR_METRICS_PORT
    if [ "$PG_PORT" = "$PGWEIR_PORT" ] || [ "$PG_PORT" = "$METRICS_PORT" ] ||
        [ "$PGWEIR_PORT" = "$METRICS_PORT" ]; then
        die "PGWEIR_PG_PORT, PGWEIR_PORT and PGWEIR_METRICS_PORT must differ"
    fi
    if [ -n "${PGWEIR_PG_BIN:-}" ]; then
        has_pg_programs "$PGWEIR_PG_BIN" ||
            die "PGWEIR_PG_BIN=$PGWEIR_PG_BIN lacks one of initdb, pg_ctl, psql, pgbench"
        PG_BIN="$PGWEIR_PG_BIN"
    elif ! PG_BIN="$(find_pg_bindir)"; then
        install_postgres
        PG_BIN="$(find_pg_bindir)" || die "PostgreSQL was installed but initdb, pg_ctl, psql or pgbench is still missing"
        # The package's own cluster may have taken the port.
        check_port "$PG_PORT" "for the throwaway PostgreSQL" PGWEIR_PG_PORT
    fi
    if is_root; then
        command -v runuser >/dev/null 2>&1 || die "running as root needs runuser (util-linux) to start PostgreSQL as the postgres user"
        id postgres >/dev/null 2>&1 ||
            die "running as root, PostgreSQL must run as the postgres OS user, which does not exist; create it (useradd --system --user-group postgres) or run as an ordinary user"
    fi
    PSQL=psql
    command -v psql >/dev/null 2>&1 || PSQL="$PG_BIN/psql"
}

# Stops whatever this script started and deletes the temp dir, on every exit path.
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    set +e
    trap '' INT TERM HUP
    if [ -n "${PGWEIR_PID:-}" ] && kill -0 "$PGWEIR_PID" 2>/dev/null; then
        say "stopping pgweir (pid $PGWEIR_PID)"
        kill -TERM "$PGWEIR_PID" 2>/dev/null
    fi
    [ -n "${PGWEIR_PID:-}" ] && wait "$PGWEIR_PID" 2>/dev/null
    if [ -z "${PG_PID:-}" ] && [ -n "${WORK:-}" ] && [ -f "$WORK/data/postmaster.pid" ]; then
        PG_PID="$(head -n 1 "$WORK/data/postmaster.pid")"
    fi
    if [ -n "${PG_PID:-}" ]; then
        say "stopping PostgreSQL (pid $PG_PID)"
        [ -f "$WORK/data/postmaster.pid" ] &&
            as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m fast -w -t 30 >/dev/null 2>&1
        for _ in $(seq 300); do
            kill -0 "$PG_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$PG_PID" 2>/dev/null && kill -KILL "$PG_PID" 2>/dev/null
    fi
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        rm -rf "$WORK" && say "removed $WORK; nothing this script started is left"
    fi
    exit "$status"
}

start_postgres() {
    say "starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT ($PG_BIN)"
    WORK="$(mktemp -d -t pgweir-quickstart-XXXXXX)"
    chmod 711 "$WORK"
    mkdir "$WORK/data"
    if is_root; then chown postgres: "$WORK/data"; fi
    as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --no-locale -E UTF8 >"$WORK/initdb.log" 2>&1 ||
        { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
    cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/data'
max_connections = $((BENCH_CLIENTS + POOL_SIZE + 50))
CONF
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/data/postgres.log" -w -t 60 start >/dev/null ||
        { cat "$WORK/data/postgres.log" >&2; die "PostgreSQL did not start (its log is above)"; }
    PG_PID="$(head -n 1 "$WORK/data/postmaster.pid")"
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/data" -p "$PG_PORT" -U postgres -d postgres)
    "${psql[@]}" -c "SET password_encryption = 'scram-sha-256'" \
        -c "CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASSWORD'"
    "${psql[@]}" -c "CREATE DATABASE $APP_DB OWNER $APP_USER"
}

start_pgweir() {
    CONFIG_USED="$CONFIG"
    if [ "$PG_PORT" != 5432 ] || [ "$PGWEIR_PORT" != 6432 ] || [ "$METRICS_PORT" != 9930 ]; then
        CONFIG_USED="$WORK/pgweir.toml"
        sed -e "s/^port = 5432\([^0-9]\|\$\)/port = $PG_PORT\1/" \
            -e "s/^listen_port = 6432\([^0-9]\|\$\)/listen_port = $PGWEIR_PORT\1/" \
            -e "s/^metrics_addr = \"127.0.0.1:9930\"/metrics_addr = \"127.0.0.1:$METRICS_PORT\"/" \
            "$CONFIG" >"$CONFIG_USED"
        if ! grep -q "^port = $PG_PORT\\b" "$CONFIG_USED" ||
            ! grep -q "^listen_port = $PGWEIR_PORT\\b" "$CONFIG_USED" ||
            ! grep -q "^metrics_addr = \"127.0.0.1:$METRICS_PORT\"" "$CONFIG_USED"; then
            die "could not set the ports in a copy of $CONFIG (has it changed?)"
        fi
        say "using $CONFIG_USED: $CONFIG with ports $PGWEIR_PORT (pgweir), $METRICS_PORT (metrics), $PG_PORT (Postgres)"
    fi
    say "starting pgweir on 127.0.0.1:$PGWEIR_PORT (target/release/pgweir --config $CONFIG_USED)"
    # TMPDIR: pgweir's control socket goes in the temp dir too, so nothing outlives it.
    TMPDIR="$WORK" ./target/release/pgweir --config "$CONFIG_USED" >"$WORK/pgweir.log" 2>&1 &
    PGWEIR_PID=$!
    for _ in $(seq 100); do
        if port_busy "$PGWEIR_PORT" && port_busy "$METRICS_PORT"; then return 0; fi
        kill -0 "$PGWEIR_PID" 2>/dev/null || {
            cat "$WORK/pgweir.log" >&2
            die "pgweir exited (its log is above)"
        }
        sleep 0.1
    done
    cat "$WORK/pgweir.log" >&2
    die "pgweir did not start listening on $PGWEIR_PORT and $METRICS_PORT within 10 s"
}

# Runs one pgbench -S and prints "<tps> <latency ms>" from its summary.
pgbench_run() {
    local name="$1" port="$2" out="$WORK/pgbench-$1.txt"
    local jobs
    jobs="$(nproc 2>/dev/null || echo 2)"
    [ "$jobs" -le "$BENCH_CLIENTS" ] || jobs="$BENCH_CLIENTS"
    if ! PGPASSWORD="$APP_PASSWORD" "$PG_BIN/pgbench" -S -n -c "$BENCH_CLIENTS" -j "$jobs" \
        -T "$BENCH_SECONDS" -h 127.0.0.1 -p "$port" -U "$APP_USER" "$APP_DB" >"$out" 2>&1; then
        cat "$out" >&2
        die "pgbench ($name) failed (its output is above)"
    fi
    awk '/^tps = / { tps = $3 } /^latency average = / { lat = $4 }
         END { if (tps == "" || lat == "") exit 1; printf "%.0f %.2f\n", tps, lat }' "$out" ||
        die "could not read TPS and latency from $out"
}

compare() {
    if [ "$BENCH_SECONDS" -eq 0 ]; then
        say "BENCH_SECONDS=0: no pgbench comparison"
        return 0
    fi
    say "pgbench -i (the pgbench tables, scale 1) through pgweir"
    PGPASSWORD="$APP_PASSWORD" "$PG_BIN/pgbench" -i -q -h 127.0.0.1 -p "$PGWEIR_PORT" \
        -U "$APP_USER" "$APP_DB" >"$WORK/pgbench-init.txt" 2>&1 ||
        { cat "$WORK/pgbench-init.txt" >&2; die "pgbench -i through pgweir failed (its output is above)"; }
    say "pgbench -S (select-only), $BENCH_CLIENTS clients, ${BENCH_SECONDS} s straight to Postgres, then ${BENCH_SECONDS} s through pgweir"
    local direct pooled
    direct="$(pgbench_run direct "$PG_PORT")"
    pooled="$(pgbench_run pgweir "$PGWEIR_PORT")"
    # shellcheck disable=SC2086 # word splitting of "<tps> <latency>" is the point
    {
        printf '   %-52s %7s TPS  %6s ms average latency\n' \
            "direct to Postgres ($BENCH_CLIENTS backends)" $direct \
            "through pgweir ($BENCH_CLIENTS clients, a pool of $POOL_SIZE)" $pooled
    }
    cat <<'TEXT'
   On one machine a pooler adds a hop and its own CPU, so pgweir is slower than direct while
   Postgres can hold a backend per client; it pays off when clients outnumber the backends
   Postgres can afford (hundreds to thousands). Measured at 50-2,000 clients, next to
   PgBouncer: docs/bench/compare.md (README: Benchmark).
TEXT
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    check_tools
    say "building pgweir: cargo build --release (the first build takes a few minutes; cargo's progress follows)"
    cargo build --release --locked
    start_postgres
    start_pgweir
    compare
    say "pgweir is running (pid $PGWEIR_PID) in front of the throwaway PostgreSQL 127.0.0.1:$PG_PORT"
    cat <<TEXT
   connect:  $PSQL postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$PGWEIR_PORT/$APP_DB
   console:  $PSQL postgres://$ADMIN_USER:$ADMIN_PASSWORD@127.0.0.1:$PGWEIR_PORT/pgweir -c 'SHOW POOLS'
   metrics:  curl http://127.0.0.1:$METRICS_PORT/metrics
   log:      tail -f $WORK/pgweir.log

   Press Ctrl-C to stop pgweir and PostgreSQL and delete $WORK.
TEXT
    local status=0
    wait "$PGWEIR_PID" || status=$?
    PGWEIR_PID=
    if [ "$status" -eq 0 ]; then
        say "pgweir has stopped (a SHUTDOWN from the console?)"
        exit 0
    fi
    tail -n 5 "$WORK/pgweir.log" >&2
    die "pgweir exited with status $status (the end of its log is above)"
}

main "$@"
