#!/usr/bin/env bash
# Reproduces the pgweir vs PgBouncer vs direct table on one machine in one run.
#
#   benches/pgbench_compare.sh                            # 30 s per run (about 5 minutes in all)
#   DURATION=5 benches/pgbench_compare.sh                 # a quick look
#   MODES=prepared DURATION=5 benches/pgbench_compare.sh  # only some of the -M modes
#
# A throwaway PostgreSQL (max_connections 600) gets `pgbench -i -s 10`. Then
# `pgbench -S -c 500 -j 2 -T $DURATION` runs with -M simple, -M extended and
# -M prepared through pgweir (built here in release mode) and through Debian's
# PgBouncer, both with a pool of 20 in transaction mode and max_client_conn 1000, and
# `pgbench -S -c 20` runs straight against Postgres. PgBouncer keeps prepared
# statements working in transaction mode only from 1.21 (max_prepared_statements);
# an older one gets "n/a" in the prepared row instead of a run that would fail. Each
# pooler's CPU time (utime + stime from /proc/PID/stat, all threads) is sampled
# around its run and reported per 100k transactions. Prints a Markdown table at the
# end. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-30}"
MODES="${MODES:-simple extended prepared}"
CLIENTS="${CLIENTS:-500}"
DIRECT_CLIENTS=20
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

# run_one LABEL MODE CLIENTS PORT PID(or -) -> one Markdown row on stdout
run_one() {
    local label="$1" mode="$2" clients="$3" port="$4" pid="$5" before after out
    say "$label: pgbench -S -M $mode -c $clients -j 2 -T $DURATION"
    [ "$pid" != - ] && before="$(cpu_ticks "$pid")"
    out="$(PGPASSWORD=bench "$PG_BIN/pgbench" -S -M "$mode" -c "$clients" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$port" -U bench bench 2>&1)" || { echo "$out" >&2; die "$label -M $mode failed"; }
    [ "$pid" != - ] && after="$(cpu_ticks "$pid")"
    local tps lat txs cpu=n/a
    tps="$(report_field tps)"
    lat="$(report_field latency)"
    txs="$(report_field processed)"
    if [ "$pid" != - ] && [ "${txs:-0}" -gt 0 ]; then
        cpu="$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$txs" \
            'BEGIN { printf "%.2f", t / hz / n * 100000 }')"
    fi
    echo "| $label | $mode | $clients | $tps | $lat | $cpu |"
}

main() {
    prepare_run cleanup
    start_postgres
    start_pgweir scram-sha-256 1000 ""
    start_pgbouncer
    local rows=()
    local bouncer
    bouncer="pgbouncer $(bouncer_version)"
    for mode in $MODES; do
        rows+=("$(run_one pgweir "$mode" "$CLIENTS" "$PGWEIR_PORT" "$PGWEIR_PID")")
        if [ "$mode" = prepared ] && ! bouncer_prepares; then
            rows+=("| $bouncer | $mode | $CLIENTS | n/a (PgBouncer <1.21) | n/a | n/a |")
        else
            rows+=("$(run_one "$bouncer" "$mode" "$CLIENTS" "$PGBOUNCER_PORT" \
                "$(cat "$WORK/pgbouncer.pid")")")
        fi
        rows+=("$(run_one "postgres (direct)" "$mode" "$DIRECT_CLIENTS" "$PG_PORT" -)")
    done
    echo
    echo "pgbench -S -j 2 -T $DURATION, scale 10, pool $POOL (transaction mode), $(nproc) cores, $(date -u +%F)"
    echo
    echo "| target | mode | clients | TPS | avg latency ms | CPU s/100k tx |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
}

main "$@"
