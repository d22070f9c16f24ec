#!/usr/bin/env bash
# What the Prometheus metrics cost on the hot path: pgbench -S through pgweir without
# `metrics_addr` and with it (scraped every second meanwhile, as Prometheus would more
# slowly), alternating ROUNDS times so drift on a noisy machine hits both alike.
#
#   benches/pgbench_metrics.sh                       # 20 s per run, 2 rounds
#   DURATION=10 ROUNDS=3 benches/pgbench_metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20}"
ROUNDS="${ROUNDS:-2}"
CLIENTS="${CLIENTS:-100}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

# run LABEL PGWEIR_LINES -> TPS on stdout
run() {
    local label="$1" tps out scraper=
    start_pgweir scram-sha-256 1000 "" "" "$2"
    if [ -n "$2" ]; then
        (while sleep 1; do exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT" &&
            printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3 >/dev/null; exec 3<&-; done) &
        scraper=$!
    fi
    say "$label: pgbench -S -c $CLIENTS -j 2 -T $DURATION"
    out="$(PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -c "$CLIENTS" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$PGWEIR_PORT" -U bench bench 2>&1)" || { echo "$out" >&2; die "pgbench failed"; }
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
    kill "$PGWEIR_PID"
    wait "$PGWEIR_PID" 2>/dev/null || true
    PGWEIR_PID=
    tps="$(report_field tps)"
    echo "$tps"
}

main() {
    prepare_run cleanup
    start_postgres
    METRICS_PORT="$(free_port 25950)"
    local off=() on=()
    for _ in $(seq "$ROUNDS"); do
        off+=("$(run "metrics off" "")")
        on+=("$(run "metrics on" "metrics_addr = \"127.0.0.1:$METRICS_PORT\"")")
    done
    local sum_off=0 sum_on=0
    for t in "${off[@]}"; do sum_off=$((sum_off + t)); done
    for t in "${on[@]}"; do sum_on=$((sum_on + t)); done
    echo
    echo "pgbench -S -c $CLIENTS -j 2 -T $DURATION, pool $POOL, $ROUNDS rounds, $(nproc) cores, $(date -u +%F)"
    echo
    echo "| metrics | TPS per round | mean TPS |"
    echo "| --- | --- | ---: |"
    echo "| off | ${off[*]} | $((sum_off / ROUNDS)) |"
    echo "| on (scraped every 1 s) | ${on[*]} | $((sum_on / ROUNDS)) |"
    awk -v a="$sum_off" -v b="$sum_on" 'BEGIN { printf "\ncost: %.1f%% of TPS\n", (a - b) / a * 100 }'
}

main "$@"
