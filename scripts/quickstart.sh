#!/usr/bin/env bash
# pgweir quickstart: one command on a fresh Debian/Ubuntu machine.
#
# Installs what is missing (PostgreSQL server and client, via apt), builds pgweir
# in release mode, starts a throwaway PostgreSQL on 127.0.0.1:5432 (override with
# PGWEIR_PG_PORT), creates role `pgweir` (password `pgweir`) and database `pgbench`,
# runs pgweir with config/pgweir.toml on 127.0.0.1:6432 (override with PGWEIR_PORT),
# and runs pgbench through it. Everything it started is stopped and deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT="${PGWEIR_PG_PORT:-5432}"
PGWEIR_PORT="${PGWEIR_PORT:-6432}"
CONFIG=config/pgweir.toml

say() { printf '\n== %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a PostgreSQL server program; Postgres refuses to run as root.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

find_pg_bindir() {
    local dir
    for dir in /usr/lib/postgresql/15/bin $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -Vr); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pgbench" ] && [ -x "$dir/psql" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    say "installing PostgreSQL (apt)"
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
    command -v cargo >/dev/null 2>&1 || die "Rust is not installed. Get it from https://rustup.rs \
(curl --proto '=https' -sSf https://sh.rustup.rs | sh), then run this script again."
    PG_BIN="$(find_pg_bindir)" || { install_postgres; PG_BIN="$(find_pg_bindir)" || die "PostgreSQL install failed"; }
    [ -f "$CONFIG" ] || die "$CONFIG is missing (are you in a pgweir checkout?)"
    port_busy "$PG_PORT" && die "port $PG_PORT is in use; rerun with PGWEIR_PG_PORT=<free port>"
    port_busy "$PGWEIR_PORT" && die "port $PGWEIR_PORT (pgweir's, from $CONFIG) is in use"
    return 0
}

cleanup() {
    set +e
    [ -n "${PGWEIR_PID:-}" ] && kill "$PGWEIR_PID" 2>/dev/null && wait "$PGWEIR_PID" 2>/dev/null
    [ -n "${WORK:-}" ] && [ -f "$WORK/data/postmaster.pid" ] &&
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m fast >/dev/null
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

start_postgres() {
    say "starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
    WORK="$(mktemp -d -t pgweir-quickstart-XXXXXX)"
    chmod 755 "$WORK"
    mkdir "$WORK/data"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$WORK/data"
    as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --no-locale -E UTF8 >/dev/null
    cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/data'
max_connections = 200
CONF
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/data/postgres.log" -w start >/dev/null
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/data" -p "$PG_PORT" -U postgres -d postgres)
    "${psql[@]}" -c "SET password_encryption = 'scram-sha-256'" -c "CREATE ROLE pgweir LOGIN PASSWORD 'pgweir'"
    "${psql[@]}" -c "CREATE DATABASE pgbench OWNER pgweir"
}

start_pgweir() {
    local config="$CONFIG"
    if [ "$PG_PORT" != 5432 ] || [ "$PGWEIR_PORT" != 6432 ]; then
        config="$WORK/pgweir.toml"
        sed -e "s/^port = 5432\([^0-9]\|\$\)/port = $PG_PORT\1/" \
            -e "s/^listen_port = 6432\([^0-9]\|\$\)/listen_port = $PGWEIR_PORT\1/" \
            "$CONFIG" >"$config"
        say "using $config: $CONFIG with ports changed to $PGWEIR_PORT (pgweir), $PG_PORT (Postgres)"
    fi
    say "starting pgweir on 127.0.0.1:$PGWEIR_PORT ($config)"
    ./target/release/pgweir --config "$config" 2>"$WORK/pgweir.log" &
    PGWEIR_PID=$!
    for _ in $(seq 100); do
        port_busy "$PGWEIR_PORT" && return 0
        kill -0 "$PGWEIR_PID" 2>/dev/null || { cat "$WORK/pgweir.log" >&2; die "pgweir exited"; }
        sleep 0.1
    done
    cat "$WORK/pgweir.log" >&2
    die "pgweir did not start listening on $PGWEIR_PORT"
}

run_pgbench() {
    export PGPASSWORD=pgweir
    local target=(-h 127.0.0.1 -p "$PGWEIR_PORT" -U pgweir)
    say "pgbench -i through pgweir"
    "$PG_BIN/pgbench" -i -q "${target[@]}" pgbench
    say "pgbench -c 50 -j 2 -T 10 through pgweir (pool 20, transaction mode)"
    "$PG_BIN/pgbench" -c 50 -j 2 -T 10 -P 2 "${target[@]}" pgbench
}

main() {
    check_tools
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    say "building pgweir (release)"
    cargo build --release --locked 2>&1 | tail -n 3
    start_postgres
    start_pgweir
    run_pgbench
    say "done: pgweir served 50 pgbench clients on a pool of 20 server connections"
}

main "$@"
