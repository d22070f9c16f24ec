#!/usr/bin/env bash
# 10,000 clients onto 150 server connections: what issue 3 asks pgweir to hold.
#
#   benches/pgbench_10k.sh                         # 10,000 clients for 60 s
#   CLIENTS=2000 DURATION=10 benches/pgbench_10k.sh  # a quick look
#
# A throwaway PostgreSQL (max_connections 300) gets `pgbench -i -s 10`; pgweir runs with
# default_pool_size 150, reserve_pool_size 10 (timeout 5s), transaction mode and md5 client
# auth (so 10,000 logins don't spend a minute in client-side SCRAM). Then
# `pgbench -S -c $CLIENTS -j 2 -T $DURATION` runs through pgweir with per-transaction
# logging for the p99. While it runs, pg_stat_activity is polled for the most backends
# the bench role ever had. Prints TPS, average and p99 latency, failed transactions, peak
# server connections, and pgweir's resident memory (current and peak).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-60}"
CLIENTS="${CLIENTS:-10000}"
POOL=150
RESERVE=10
PG_BIN=/usr/lib/postgresql/15/bin
MAX_CONNECTIONS=300

# shellcheck source=benches/common.sh
source benches/common.sh

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

main() {
    prepare_run cleanup
    start_postgres
    start_pgweir md5 $((CLIENTS + 100)) "reserve_pool_size = $RESERVE
reserve_pool_timeout = 5"
    watch_backends &
    local watcher=$!
    say "pgbench -S -c $CLIENTS -j 2 -T $DURATION through pgweir (pool $POOL + reserve $RESERVE)"
    local out
    out="$(cd "$WORK" && PGPASSWORD=bench "$PG_BIN/pgbench" -S -c "$CLIENTS" -j 2 -T "$DURATION" \
        --log --log-prefix="$WORK/tx" -h 127.0.0.1 -p "$PGWEIR_PORT" -U bench bench 2>&1)" ||
        { echo "$out" >&2; die "pgbench failed"; }
    touch "$WORK/stop"
    wait "$watcher"
    local tps lat failed p99
    tps="$(report_field tps)"
    lat="$(report_field latency)"
    failed="$(report_field failed)"
    # Per-transaction log: column 3 is the latency in microseconds.
    p99="$(cat "$WORK"/tx.* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000 }')"
    echo
    echo "pgbench -S -c $CLIENTS -j 2 -T $DURATION through pgweir, pool $POOL + reserve $RESERVE, $(nproc) cores, $(date -u +%F)"
    echo
    echo "| TPS | avg latency ms | p99 latency ms | failed tx | peak server conns (limit $((POOL + RESERVE))) | pgweir RSS MiB (peak) |"
    echo "| ---: | ---: | ---: | --- | ---: | ---: |"
    printf '| %s | %s | %s | %s | %s | %s (%s) |\n' "$tps" "$lat" "$p99" "$failed" "$(cat "$WORK/peak")" \
        "$(($(rss_kib "$PGWEIR_PID" VmRSS) / 1024))" "$(($(rss_kib "$PGWEIR_PID" VmHWM) / 1024))"
}

main "$@"
