#!/usr/bin/env bash
# Memory per idle logged-in client and the cost of a login storm, pgweir next to PgBouncer:
# CLIENTS clients log in at once and stay idle (a pgbench script that only sleeps). For each
# pooler: its resident memory before they come, once all of them are in, and after they have
# left; the time until all were in, the pooler's CPU per login over that time, and the logins
# that failed.
#
#   benches/idle_memory.sh                                   # memory: 15,000 md5 clients
#   AUTH=scram-sha-256 JOBS=64 benches/idle_memory.sh        # the login storm: SCRAM, 64 at once
#   CLIENTS=2000 ROUNDS=1 benches/idle_memory.sh             # a quick look
#
# PgBouncer is 1.25.2 from ../shared/anchors when present (PGBOUNCER_BIN picks another).
# pgbench opens its clients JOBS at a time (one blocking login per thread), so JOBS is how
# many logins are in flight. Each round runs both poolers, in alternating order. pgbench keeps
# CLIENTS sockets open in one process, so CLIENTS stays under the 20,000 open files a process
# may hold here.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-15000}"
ROUNDS="${ROUNDS:-2}"
HOLD="${HOLD:-20}"
AUTH="${AUTH:-md5}"
JOBS="${JOBS:-2}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh
prefer_anchor

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
open_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# measure LABEL PORT PID: one pooler's line of the table.
measure() {
    local before all after start logged_in ticks failed=0
    sleep 1
    before="$(rss_kib "$3")"
    printf '\\sleep %s s\n' "$((HOLD + 60))" >"$WORK/sleep.sql"
    start=$(date +%s.%N)
    ticks="$(cpu_ticks "$3")"
    PGPASSWORD=bench "$PG_BIN/pgbench" -n -f "$WORK/sleep.sql" -c "$CLIENTS" -j "$JOBS" -t 1 \
        -h 127.0.0.1 -p "$2" -U bench bench >"$WORK/pgbench.out" 2>&1 &
    local bench=$!
    # Every client is in once the pooler holds a socket for each; a failed login ends a
    # pgbench thread, so the first one ends the wait.
    until [ "$(open_fds "$3")" -ge "$CLIENTS" ]; do
        failed="$(grep -c 'connection to .* failed' "$WORK/pgbench.out" || true)"
        [ "$failed" -gt 0 ] && break
        kill -0 "$bench" 2>/dev/null || { cat "$WORK/pgbench.out" >&2; die "$1: pgbench ended early"; }
        sleep 0.2
    done
    ticks=$(($(cpu_ticks "$3") - ticks))
    logged_in=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    sleep "$HOLD"
    all="$(rss_kib "$3")"
    kill "$bench" 2>/dev/null
    wait "$bench" 2>/dev/null || true
    sleep 3
    after="$(rss_kib "$3")"
    awk -v l="$1" -v b="$before" -v a="$all" -v f="$after" -v n="$CLIENTS" -v t="$logged_in" \
        -v c="$ticks" -v hz="$(getconf CLK_TCK)" -v x="$failed" 'BEGIN {
            printf "| %s | %d | %d | %.2f | %d | %s | %.3f | %d |\n",
                l, b / 1024, a / 1024, (a - b) / n, f / 1024, t, c / hz / n * 1e3, x }'
}

main() {
    prepare_run cleanup
    MAX_CONNECTIONS=100 start_postgres
    start_pgweir "$AUTH" $((CLIENTS + 100)) ""
    BOUNCER_AUTH="$AUTH" BOUNCER_MAX_CLIENTS=$((CLIENTS + 100)) start_pgbouncer
    local bouncer_pid
    bouncer_pid="$(cat "$WORK/pgbouncer.pid")"
    echo
    echo "$CLIENTS idle clients ($AUTH, $JOBS logging in at once), pgweir $(git rev-parse --short HEAD) vs PgBouncer $(bouncer_version), $(nproc) cores, $(date -u +%F)"
    echo
    echo "| pooler | RSS before MiB | RSS with clients MiB | KiB per client | RSS after they left MiB | seconds to log all in | pooler CPU ms per login | failed logins |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
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
