#!/usr/bin/env bash
# Replica read routing on one machine in one run: pgbench -S through pgweir with
# read_routing = "off" (everything on the primary) and "auto" (reads on a streaming
# replica), and the classifier's cost per statement.
#
#   benches/pgbench_replica.sh              # 30 s per run
#   DURATION=10 benches/pgbench_replica.sh  # a quick look
#
# A throwaway primary (pgbench -i -s 10) and a streaming replica cloned from it with
# pg_basebackup -R run on this machine; pgweir (release build, pool $POOL per node,
# transaction mode) sits in front. `pgbench -S -M simple -c $CLIENTS -j 2` runs against
# each configuration, then `cargo bench --bench classify` prints the classifier's cost.
# On a 2-core machine the primary and the replica share the same cores, so "auto" shows
# what routing costs more than what a second machine would gain.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-30}"
CLIENTS="${CLIENTS:-100}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

# run ROUTING -> one Markdown row
run() {
    local routing="$1" out tps lat txs on_replica
    start_pgweir scram-sha-256 1000 "" "replicas = [{ host = \"127.0.0.1\", port = $REPLICA_PORT }]
read_routing = \"$routing\""
    sleep 1
    say "read_routing = $routing: pgbench -S -c $CLIENTS -j 2 -T $DURATION"
    out="$(PGPASSWORD=bench "$PG_BIN/pgbench" -S -c "$CLIENTS" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$PGWEIR_PORT" -U bench bench 2>&1)" || { echo "$out" >&2; die "pgbench failed"; }
    on_replica="$(PGPASSWORD=bench "$PG_BIN/psql" -X -A -t -h 127.0.0.1 -p "$PGWEIR_PORT" \
        -U bench -d bench -c "SELECT pg_is_in_recovery()")"
    kill "$PGWEIR_PID"
    wait "$PGWEIR_PID" 2>/dev/null || true
    PGWEIR_PID=
    tps="$(report_field tps)"
    lat="$(report_field latency)"
    txs="$(report_field processed)"
    echo "| $routing | $on_replica | $txs | $tps | $lat |"
}

main() {
    prepare_run cleanup
    start_postgres
    start_replica
    sleep 1
    local rows=()
    rows+=("$(run off)")
    rows+=("$(run auto)")
    echo
    echo "pgbench -S -M simple -c $CLIENTS -j 2 -T $DURATION, scale 10, pool $POOL per node, $(nproc) cores, $(date -u +%F)"
    echo
    echo "| read_routing | a read after the run on a replica | transactions | TPS | avg latency ms |"
    echo "| --- | --- | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
    echo
    cargo bench --bench classify 2>/dev/null
}

main "$@"
