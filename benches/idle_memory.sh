#!/usr/bin/env bash
# Memory per idle logged-in client, pgweir next to PgBouncer: CLIENTS clients log in (md5)
# and stay idle (a pgbench script that only sleeps), and each pooler's resident memory is
# read before they come, once all of them are in, and after they have left.
#
#   PGBOUNCER_BIN=../shared/anchors/pgbouncer-1.25.2/pgbouncer benches/idle_memory.sh
#   CLIENTS=2000 ROUNDS=1 benches/idle_memory.sh     # a quick look
#
# Each round runs both poolers, in alternating order. pgbench keeps CLIENTS sockets open in
# one process, so CLIENTS stays under the 20,000 open files a process may hold here.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-15000}"
ROUNDS="${ROUNDS:-2}"
HOLD="${HOLD:-20}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
open_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# measure LABEL PORT PID: one pooler's line of the table.
measure() {
    local before all after start logged_in
    sleep 1
    before="$(rss_kib "$3")"
    printf '\\sleep %s s\n' "$((HOLD + 60))" >"$WORK/sleep.sql"
    start=$(date +%s.%N)
    PGPASSWORD=bench "$PG_BIN/pgbench" -n -f "$WORK/sleep.sql" -c "$CLIENTS" -j 2 -t 1 \
        -h 127.0.0.1 -p "$2" -U bench bench >"$WORK/pgbench.out" 2>&1 &
    local bench=$!
    # Every client is in once the pooler holds a socket for each.
    until [ "$(open_fds "$3")" -ge "$CLIENTS" ]; do
        kill -0 "$bench" 2>/dev/null || { cat "$WORK/pgbench.out" >&2; die "$1: pgbench ended early"; }
        sleep 0.5
    done
    logged_in=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    sleep "$HOLD"
    all="$(rss_kib "$3")"
    kill "$bench" 2>/dev/null
    wait "$bench" 2>/dev/null || true
    sleep 3
    after="$(rss_kib "$3")"
    awk -v l="$1" -v b="$before" -v a="$all" -v f="$after" -v n="$CLIENTS" -v t="$logged_in" \
        'BEGIN { printf "| %s | %d | %d | %.2f | %d | %s |\n", l, b / 1024, a / 1024, (a - b) / n, f / 1024, t }'
}

main() {
    prepare_run cleanup
    MAX_CONNECTIONS=100 start_postgres
    start_pgweir md5 $((CLIENTS + 100)) ""
    BOUNCER_AUTH=md5 BOUNCER_MAX_CLIENTS=$((CLIENTS + 100)) start_pgbouncer
    local bouncer_pid
    bouncer_pid="$(cat "$WORK/pgbouncer.pid")"
    echo
    echo "$CLIENTS idle clients (md5), pgweir $(git rev-parse --short HEAD) vs PgBouncer $(bouncer_version), $(nproc) cores, $(date -u +%F)"
    echo
    echo "| pooler | RSS before MiB | RSS with clients MiB | KiB per client | RSS after they left MiB | seconds to log all in |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            measure pgweir "$PGWEIR_PORT" "$PGWEIR_PID"
            measure "PgBouncer $(bouncer_version)" "$PGBOUNCER_PORT" "$bouncer_pid"
        else
            measure "PgBouncer $(bouncer_version)" "$PGBOUNCER_PORT" "$bouncer_pid"
            measure pgweir "$PGWEIR_PORT" "$PGWEIR_PID"
        fi
    done
}

main "$@"
