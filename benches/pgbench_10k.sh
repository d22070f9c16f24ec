#!/usr/bin/env bash
# The seeds' scenario side by side: 10,000 clients onto 150 server connections plus a reserve
# of 10, through pgweir and through PgBouncer, in one run on one Postgres.
#
#   benches/pgbench_10k.sh                                       # 10,000 clients, 60 s, 2 rounds
#   CLIENTS=2000 DURATION=10 ROUNDS=1 benches/pgbench_10k.sh     # a quick look
#   PGBOUNCER_BIN=/usr/sbin/pgbouncer benches/pgbench_10k.sh     # Debian's 1.18
#
# A throwaway PostgreSQL (max_connections 300) gets `pgbench -i -s 10`. Each pooler (pgweir
# built here in release mode; PgBouncer 1.25.2 from ../shared/anchors when present, else
# Debian's) runs with default_pool_size 150, reserve_pool_size 10 (timeout 5 s), transaction
# mode and md5 client auth (so 10,000 logins don't spend a minute in client-side SCRAM), and
# is started fresh for its turn so its peak memory is its own. `pgbench -S -c $CLIENTS -j 2
# -T $DURATION` runs through it with per-transaction logging for the p99, while
# pg_stat_activity is polled for the most backends the bench role ever had. The poolers go in
# alternating order each ROUND. Prints TPS, average and p99 latency, failed transactions,
# peak server connections, the pooler's CPU per transaction and its peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-60}"
CLIENTS="${CLIENTS:-10000}"
ROUNDS="${ROUNDS:-2}"
POOL=150
RESERVE=10
PG_BIN=/usr/lib/postgresql/15/bin
MAX_CONNECTIONS=300

# shellcheck source=benches/common.sh
source benches/common.sh
prefer_anchor

# Polls pg_stat_activity until $WORK/stop exists; leaves the peak in $WORK/peak.
watch_backends() {
    local peak=0 n
    while [ ! -e "$WORK/stop" ]; do
        n="$("$PG_BIN/psql" -X -Atq -h "$WORK" -p "$PG_PORT" -U postgres -d postgres \
            -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'" 2>/dev/null || echo 0)"
        [ "$n" -gt "$peak" ] && peak="$n"
        echo "$peak" >"$WORK/peak"
        sleep 0.5
    done
}

rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# run_one LABEL PORT PID: one pooler's row of the table.
run_one() {
    local label="$1" port="$2" pid="$3" out
    rm -f "$WORK/stop" "$WORK"/tx.*
    echo 0 >"$WORK/peak"
    watch_backends &
    local watcher=$! ticks
    ticks="$(cpu_ticks "$pid")"
    say "$label: pgbench -S -c $CLIENTS -j 2 -T $DURATION"
    out="$(cd "$WORK" && PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -c "$CLIENTS" -j 2 -T "$DURATION" \
        --log --log-prefix="$WORK/tx" -h 127.0.0.1 -p "$port" -U bench bench 2>&1)" ||
        { echo "$out" >&2; die "$label: pgbench failed"; }
    ticks=$(($(cpu_ticks "$pid") - ticks))
    touch "$WORK/stop"
    wait "$watcher"
    local p99
    # Per-transaction log: column 3 is the latency in microseconds.
    p99="$(cat "$WORK"/tx.* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.0f", v[i] / 1000 }')"
    awk -v l="$label" -v tps="$(report_field tps)" -v lat="$(report_field latency)" -v p99="$p99" \
        -v f="$(report_field failed)" -v peak="$(cat "$WORK/peak")" -v t="$ticks" \
        -v hz="$(getconf CLK_TCK)" -v n="$(report_field processed)" \
        -v hwm="$(rss_kib "$pid" VmHWM)" -v rss="$(rss_kib "$pid" VmRSS)" 'BEGIN {
            printf "| %s | %s | %.0f | %s | %s | %s | %.1f | %d (%d) |\n",
                l, tps, lat, p99, f, peak, t / hz / n * 1e6, hwm / 1024, rss / 1024 }'
}

turn() {
    case "$1" in
        pgweir)
            start_pgweir md5 $((CLIENTS + 100)) "reserve_pool_size = $RESERVE
reserve_pool_timeout = 5"
            run_one "pgweir $(git rev-parse --short HEAD)" "$PGWEIR_PORT" "$PGWEIR_PID"
            stop_pgweir
            ;;
        pgbouncer)
            BOUNCER_AUTH=md5 BOUNCER_MAX_CLIENTS=$((CLIENTS + 100)) start_pgbouncer \
                "reserve_pool_size = $RESERVE
reserve_pool_timeout = 5"
            run_one "PgBouncer $(bouncer_version)" "$PGBOUNCER_PORT" "$(cat "$WORK/pgbouncer.pid")"
            stop_pgbouncer
            ;;
    esac
}

main() {
    prepare_run cleanup
    start_postgres
    echo
    echo "pgbench -S -c $CLIENTS -j 2 -T $DURATION, pool $POOL + reserve $RESERVE (transaction mode, md5), $(nproc) cores, $(date -u +%F)"
    echo
    echo "| pooler | TPS | avg latency ms | p99 latency ms | failed tx | peak server conns (limit $((POOL + RESERVE))) | pooler µs CPU/tx | peak RSS MiB (at end) |"
    echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            turn pgweir
            turn pgbouncer
        else
            turn pgbouncer
            turn pgweir
        fi
    done
}

main "$@"
