#!/usr/bin/env bash
# A night of traffic: a mixed workload through pgweir for DURATION while the world moves
# under it, then a check that the ledger holds exactly what the clients saw committed, and
# whether pgweir's memory and file descriptors stayed flat.
#
#   DURATION=60m benches/soak.sh      # the real run (an hour; also 90s, 2m, 1h, or seconds)
#   DURATION=3m benches/soak.sh       # a quick functional check of the whole cycle
#
# A throwaway primary (pgbench -i -s 10 plus a `ledger` table) and a streaming replica
# (pg_basebackup -R) run here; pgweir (release build, transaction mode, pool $POOL per node,
# SCRAM, read_routing = "auto", server_lifetime 600 s) sits in front. benches/soak/driver.py
# runs CLIENTS (40) asyncpg clients: prepared point reads, read-only transactions, ledger
# writes in explicit transactions, COPY, ROLLBACKs, transactions failed by an error or a
# cancel, clients that vanish mid-transaction and statement cancels, with THINK_MS (50) ms
# of think time on average. Meanwhile: a console RELOAD every min(5 min, DURATION/4) (each
# one flips default_pool_size between POOL and POOL+2), `pg_ctl restart -m fast` of the
# primary at DURATION/2, the replica stopped at 0.7*DURATION and started again up to 90 s
# later. Every 10 s: pgweir's RSS and open fds, the bench user's backends on each node
# (pg_stat_activity) and the servers pgweir lists (SHOW SERVERS).
#
# 12 s after the clients have gone, end-state.txt keeps SHOW CLIENTS/SERVERS/POOLS and each
# node's pg_stat_activity: a client still listed there is a leak (summary.md says LEAK).
# Results go to bench-results/soak-<UTC time>/: summary.md (counts, errors by SQLSTATE,
# RSS/fds early against late, TPS, latency), soak.png (RSS, fds and servers, TPS, errors and
# latency over time, events marked), the CSVs and the three servers' logs. Exits non-zero
# when the ledger check fails (a committed id missing, or a failed, rolled-back or vanished
# one present) or pgweir died; flatness and leftover clients are reported, never fatal. RUST_LOG=info adds pgweir's log of every
# login and disconnection to pgweir.log (about 2 lines per login; a 60m run has ~100k logins).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-60m}"
CLIENTS="${CLIENTS:-40}"
THINK_MS="${THINK_MS:-50}"
POOL="${POOL:-10}"
PG_BIN=/usr/lib/postgresql/15/bin
OUT="bench-results/soak-$(date -u +%Y%m%dT%H%M%SZ)"

# shellcheck source=benches/common.sh
source benches/common.sh

# seconds DURATION: 90, 90s, 3m, 1h -> seconds.
seconds() {
    case "$1" in
        *[0-9]) [[ "$1" =~ ^[0-9]+$ ]] && echo "$1" ;;
        *s) [[ "${1%s}" =~ ^[0-9]+$ ]] && echo "${1%s}" ;;
        *m) [[ "${1%m}" =~ ^[0-9]+$ ]] && echo $((${1%m} * 60)) ;;
        *h) [[ "${1%h}" =~ ^[0-9]+$ ]] && echo $((${1%h} * 3600)) ;;
    esac
}

elapsed() { echo $(($(date +%s) - T0)); }
event() { echo "$(elapsed),$1,${2:-}" >>"$OUT/events.csv"; say "$(elapsed) s: $1 ${2:-}"; }
# node_psql PORT DATABASE SQL [PSQL_OPTIONS]: a query as postgres on the primary or the replica.
node_psql() {
    PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$WORK" -p "$1" \
        -U postgres -d "$2" -c "$3" "${@:4}"
}
# console COMMAND [PSQL_OPTIONS]: the admin console's answer, unaligned rows without headers.
console() {
    PGPASSWORD=bench PGCONNECT_TIMEOUT=3 timeout 20 "$PG_BIN/psql" -X -q -A -t -h 127.0.0.1 \
        -p "$PGWEIR_PORT" -U bench -d pgbouncer -c "$1" "${@:2}"
}

# The sampler: one line of samples.csv every 10 s, until it is killed.
sample_loop() {
    set +e
    local k=0 t rss fds primary replica listed
    echo "t,rss_kib,fds,primary_backends,replica_backends,pgweir_servers" >"$OUT/samples.csv"
    while :; do
        t="$(elapsed)"
        rss="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$PGWEIR_PID/status" 2>/dev/null || true)"
        fds="$(find "/proc/$PGWEIR_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        [ -n "$rss" ] || fds=NaN
        q="SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench' AND backend_type = 'client backend'"
        primary="$(node_psql "$PG_PORT" postgres "$q" 2>/dev/null || echo NaN)"
        replica="$(node_psql "$REPLICA_PORT" postgres "$q" 2>/dev/null || echo NaN)"
        listed="$(console "SHOW SERVERS" 2>/dev/null)" && listed="$(awk 'NF { n++ } END { print n + 0 }' <<<"$listed")" || listed=NaN
        echo "$t,${rss:-NaN},$fds,$primary,$replica,$listed" >>"$OUT/samples.csv"
        k=$((k + 1))
        while [ "$(elapsed)" -lt $((k * 10)) ]; do sleep 0.5; done
    done
}

reload() {
    RELOADS=$((RELOADS + 1))
    local size=$((RELOADS % 2 ? POOL + 2 : POOL)) out
    sed -i "s/^default_pool_size = .*/default_pool_size = $size/" "$WORK/pgweir.toml"
    if out="$(console RELOAD 2>&1)"; then
        event reload "default_pool_size $size"
    else
        event reload-failed "$(tr '\n,' '  ' <<<"$out")"
    fi
}

stop_all() {
    set +e
    [ -n "${DRIVER_PID:-}" ] && kill "$DRIVER_PID" 2>/dev/null
    [ -n "${SAMPLER_PID:-}" ] && kill "$SAMPLER_PID" 2>/dev/null
    if [ -n "${WORK:-}" ] && [ -d "${OUT:-/nonexistent}" ]; then
        cp "$WORK/pgweir.log" "$WORK/postgres.log" "$WORK/replica.log" "$OUT/" 2>/dev/null
        [ -f "$OUT/outcomes.csv" ] && gzip -f "$OUT/outcomes.csv"
    fi
    cleanup
}

plot() {
    command -v gnuplot >/dev/null 2>&1 || {
        say "installing gnuplot"
        as_root apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 || { say "no gnuplot: no plot"; return 0; }
    }
    gnuplot -e "dir='$OUT'; dur=$DUR" benches/soak/plot.gp && say "plot: $OUT/soak.png"
}

main() {
    DUR="$(seconds "$DURATION")" || true
    if [ -z "$DUR" ] || [ "$DUR" -lt 60 ]; then
        die "DURATION=$DURATION: want 60 s or more, as 90s, 3m, 1h"
    fi
    python3 -c 'import asyncpg' 2>/dev/null || {
        say "installing asyncpg"
        PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q "asyncpg>=0.29,<0.33"
    }
    local reload_every=$((DUR / 4 < 300 ? DUR / 4 : 300))
    local restart_at=$((DUR / 2)) stop_at=$((DUR * 7 / 10)) gap=$((DUR / 10))
    [ "$gap" -gt 90 ] && gap=90
    [ "$gap" -lt 10 ] && gap=10
    local start_at=$((stop_at + gap)) next_reload=$((reload_every / 2))
    prepare_run stop_all
    mkdir -p "$OUT"
    MAX_CONNECTIONS=200 start_postgres
    PGPASSWORD=bench "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U bench bench -c \
        "CREATE TABLE ledger (id bigint PRIMARY KEY, client int NOT NULL, amount int NOT NULL,
         via text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
    start_replica
    start_pgweir scram-sha-256 500 "server_lifetime = 600" \
        "replicas = [{ host = \"127.0.0.1\", port = $REPLICA_PORT }]
read_routing = \"auto\"" 'admin_users = ["bench"]'
    RELOADS=0
    T0="$(date +%s)"
    echo "t,event,detail" >"$OUT/events.csv"
    event start "duration ${DUR}s, $CLIENTS clients, pool $POOL, reload every ${reload_every}s"
    python3 benches/soak/driver.py --port "$PGWEIR_PORT" --out "$OUT" --clients "$CLIENTS" \
        --duration "$DUR" --t0 "$T0" --think-ms "$THINK_MS" 2>"$OUT/driver.log" &
    DRIVER_PID=$!
    sample_loop &
    SAMPLER_PID=$!
    local died=""
    while [ "$(elapsed)" -lt "$DUR" ]; do
        if ! kill -0 "$PGWEIR_PID" 2>/dev/null; then
            died=0
            wait "$PGWEIR_PID" || died=$?
            event pgweir-died "exit status $died"
            kill "$DRIVER_PID" 2>/dev/null
            break
        fi
        kill -0 "$DRIVER_PID" 2>/dev/null || { event driver-ended-early; break; }
        if [ "$(elapsed)" -ge "$next_reload" ]; then
            reload
            next_reload=$((next_reload + reload_every))
        fi
        if [ "$restart_at" -gt 0 ] && [ "$(elapsed)" -ge "$restart_at" ]; then
            event pg-restart "pg_ctl restart -m fast"
            as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -m fast restart >/dev/null ||
                event pg-restart-failed
            event pg-restarted
            restart_at=0
        fi
        if [ "$stop_at" -gt 0 ] && [ "$(elapsed)" -ge "$stop_at" ]; then
            event replica-stop "pg_ctl stop -m fast"
            as_pg "$PG_BIN/pg_ctl" -D "$WORK/replica" -w -m fast stop >/dev/null || event replica-stop-failed
            stop_at=0
        fi
        if [ "$start_at" -gt 0 ] && [ "$stop_at" -eq 0 ] && [ "$(elapsed)" -ge "$start_at" ]; then
            event replica-start
            as_pg "$PG_BIN/pg_ctl" -D "$WORK/replica" -l "$WORK/replica.log" -w start >/dev/null ||
                event replica-start-failed
            start_at=0
        fi
        sleep 1
    done
    local driver_rc=0
    wait "$DRIVER_PID" || driver_rc=$?
    DRIVER_PID=
    event end "driver exit $driver_rc"
    sleep 12 # one sample with the clients gone
    # What pgweir still holds once every client has gone (the console's own client aside).
    for what in CLIENTS SERVERS POOLS; do
        echo "SHOW $what:"
        console "SHOW $what" -P tuples_only=off -P format=aligned -P pager=off 2>&1 || true
    done >"$OUT/end-state.txt"
    for port in "$PG_PORT" "$REPLICA_PORT"; do
        echo "pg_stat_activity on port $port:"
        node_psql "$port" postgres "SELECT pid, state, xact_start, state_change, wait_event, left(query, 60) AS query
            FROM pg_stat_activity WHERE usename = 'bench'" -P tuples_only=off -P format=aligned 2>&1 || true
    done >>"$OUT/end-state.txt"
    event leftover-clients "$(($(console "SHOW CLIENTS" | grep -c .) - 1))"
    kill "$SAMPLER_PID" 2>/dev/null
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    say "checking the ledger on the primary"
    local check_rc=0
    python3 benches/soak/check.py --port "$PG_PORT" --out "$OUT" >&2 || check_rc=$?
    [ -n "$died" ] || kill -0 "$PGWEIR_PID" 2>/dev/null || died=1
    local stopping=$SECONDS
    stop_pgweir
    event pgweir-stopped "SIGTERM to exit: $((SECONDS - stopping)) s"
    python3 benches/soak/report.py "$OUT" "$DUR" "$POOL" >"$OUT/summary.md"
    plot
    cat "$OUT/summary.md"
    echo
    echo "Results: $OUT"
    [ -z "$died" ] || die "pgweir died during the run: see $OUT/pgweir.log"
    [ "$check_rc" -eq 0 ] || die "the ledger check failed: see $OUT/check.json"
}

main "$@"
