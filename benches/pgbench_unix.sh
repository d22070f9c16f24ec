#!/usr/bin/env bash
# Unix-domain sockets next to TCP, through pgweir and through PgBouncer (1.25.2 from
# ../shared/anchors when present, Debian's otherwise).
#
#   benches/pgbench_unix.sh                 # 15 s per run, two rounds (about 4 minutes)
#   DURATION=5 ROUNDS=1 benches/pgbench_unix.sh
#
# A throwaway PostgreSQL (scale 10) listens on 127.0.0.1 and on a socket in the work dir. Each
# pooler serves two databases for it: `bench` over TCP and `bench_unix` through the socket
# directory, and listens on TCP and on a socket of its own. pgbench -S -c $CLIENTS -j 2 then
# runs all-TCP (client -h 127.0.0.1, pooler to Postgres over TCP) and all-Unix (client -h DIR,
# pooler to Postgres over its socket). Rounds alternate the order of the poolers. Prints a
# Markdown table with TPS, average latency and each pooler's CPU seconds per 100k
# transactions. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-50}"
ROUNDS="${ROUNDS:-2}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

# run_one LABEL TRANSPORT HOST DB PID -> one Markdown row on stdout
run_one() {
    local label="$1" transport="$2" host="$3" db="$4" pid="$5" port="$6" before after out
    say "$label over $transport: pgbench -S -c $CLIENTS -j 2 -T $DURATION"
    before="$(cpu_ticks "$pid")"
    out="$(PGSSLMODE=disable PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -c "$CLIENTS" -j 2 \
        -T "$DURATION" -h "$host" -p "$port" -U bench "$db" 2>&1)" ||
        { echo "$out" >&2; die "$label over $transport failed"; }
    after="$(cpu_ticks "$pid")"
    local tps lat txs cpu=n/a
    tps="$(report_field tps)"
    lat="$(report_field latency)"
    txs="$(report_field processed)"
    if [ "${txs:-0}" -gt 0 ]; then
        cpu="$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$txs" \
            'BEGIN { printf "%.2f", t / hz / n * 100000 }')"
    fi
    echo "| $label | $transport | $tps | $lat | $cpu |"
}

# Both transports through one pooler: LABEL PORT SOCKET_DIR PID
both() {
    run_one "$1" tcp 127.0.0.1 bench "$4" "$2"
    run_one "$1" unix "$3" bench_unix "$4" "$2"
}

main() {
    prefer_anchor
    prepare_run cleanup
    start_postgres
    mkdir -p "$WORK/pgweir-sock" "$WORK/bouncer-sock"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$WORK/bouncer-sock"
    start_pgweir scram-sha-256 1000 "" "
[databases.bench_unix]
host = \"$WORK\"
port = $PG_PORT
dbname = \"bench\"" "unix_socket_dir = \"$WORK/pgweir-sock\""
    start_pgbouncer "unix_socket_dir = $WORK/bouncer-sock
[databases]
bench_unix = host=$WORK port=$PG_PORT dbname=bench"
    local bouncer bouncer_pid rows=()
    bouncer="pgbouncer $(bouncer_version)"
    bouncer_pid="$(cat "$WORK/pgbouncer.pid")"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            mapfile -t -O "${#rows[@]}" rows < <(both pgweir "$PGWEIR_PORT" "$WORK/pgweir-sock" "$PGWEIR_PID")
            mapfile -t -O "${#rows[@]}" rows < <(both "$bouncer" "$PGBOUNCER_PORT" "$WORK/bouncer-sock" "$bouncer_pid")
        else
            mapfile -t -O "${#rows[@]}" rows < <(both "$bouncer" "$PGBOUNCER_PORT" "$WORK/bouncer-sock" "$bouncer_pid")
            mapfile -t -O "${#rows[@]}" rows < <(both pgweir "$PGWEIR_PORT" "$WORK/pgweir-sock" "$PGWEIR_PID")
        fi
    done
    echo
    echo "pgbench -S -c $CLIENTS -j 2 -T $DURATION, scale 10, pool $POOL (transaction mode), SCRAM client login, $ROUNDS rounds alternating order, $(nproc) cores, $(date -u +%F)"
    echo "tcp: client and server connections over 127.0.0.1; unix: both over Unix sockets"
    echo
    echo "| target | transport | TPS | avg latency ms | CPU s/100k tx |"
    echo "| --- | --- | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
}

main "$@"
