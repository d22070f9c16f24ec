#!/usr/bin/env bash
# Two pgweir builds against each other, with PgBouncer as the yardstick: pgbench -S through
# build A, build B and PgBouncer in turn, ROUNDS times on one Postgres, so drift on a noisy
# machine hits all three alike. The builds swap places every round: with 500 clients the
# second pgweir of a round has measured 10-20% slower whichever build it was. Reports TPS
# and each pooler's CPU time per 100k transactions.
#
#   git stash; cargo build --release; cp target/release/pgweir /tmp/pgweir-before; git stash pop
#   cargo build --release
#   benches/pgbench_ab.sh /tmp/pgweir-before target/release/pgweir
#   MODE=extended CLIENTS=500 ROUNDS=2 DURATION=15 benches/pgbench_ab.sh A B
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || { echo "usage: $0 PGWEIR_BINARY_A PGWEIR_BINARY_B" >&2; exit 2; }
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-50}"
MODE="${MODE:-simple}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

# run LABEL PORT PID: a 2 s warm-up, then a measured run; prints one line.
run() {
    local before after out
    PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T 2 \
        -h 127.0.0.1 -p "$2" -U bench bench >/dev/null 2>&1 || true
    before="$(cpu_ticks "$3")"
    out="$(PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$2" -U bench bench 2>&1)" || { echo "$out" >&2; die "$1: pgbench failed"; }
    after="$(cpu_ticks "$3")"
    awk -v l="$1" -v t=$((after - before)) -v n="$(report_field processed)" \
        -v tps="$(report_field tps)" \
        'BEGIN { printf "| %s | %d | %.2f |\n", l, tps, t * 1000 / n }'
}

main() {
    local a b rows=()
    a="$(realpath "$1")"
    b="$(realpath "$2")"
    prepare_run cleanup
    start_postgres
    start_pgbouncer
    for round in $(seq "$ROUNDS"); do
        local order=("$a" "$b")
        [ $((round % 2)) -eq 0 ] && order=("$b" "$a")
        for bin in "${order[@]}"; do
            say "round $round: $bin"
            PGWEIR_BIN="$bin" start_pgweir scram-sha-256 $((CLIENTS + 100)) ""
            rows+=("$(run "$bin" "$PGWEIR_PORT" "$PGWEIR_PID")")
            stop_pgweir
        done
        say "round $round: pgbouncer"
        rows+=("$(run "pgbouncer $(bouncer_version)" "$PGBOUNCER_PORT" "$(cat "$WORK/pgbouncer.pid")")")
    done
    echo
    echo "pgbench -S -M $MODE -c $CLIENTS -j 2 -T $DURATION, pool $POOL (transaction mode), $(nproc) cores, $(date +%F)"
    echo
    echo "| pooler | TPS | CPU s/100k tx |"
    echo "| --- | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
}

main "$@"
