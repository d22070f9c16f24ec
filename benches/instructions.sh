#!/usr/bin/env bash
# Instructions per transaction, pgweir next to PgBouncer: each pooler runs under valgrind's
# callgrind, which counts the instructions it executes (this VM exposes no hardware
# counters to `perf stat`). After a warm-up that does the logins, counting is switched on
# for one `pgbench -S -M $MODE -c $CLIENTS -j 2 -T $DURATION` run and the count is divided
# by the transactions it made. The poolers run about fifty times slower under callgrind, so
# only the count per transaction means anything, not the TPS.
#
#   benches/instructions.sh
#   MODE=prepared CLIENTS=500 benches/instructions.sh
#   PGWEIR_BIN=/tmp/pgweir-before benches/instructions.sh    # another build
#
# Leaves each pooler's profile in bench-results/callgrind.{pgweir,pgbouncer} (OUT picks the
# directory) for `callgrind_annotate`. Needs valgrind, which is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-50}"
MODE="${MODE:-simple}"
OUT="${OUT:-bench-results}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh
prefer_anchor

# as_owner PID COMMAND...: runs COMMAND as the user PID runs as (callgrind_control reaches
# only its own user's processes).
as_owner() {
    local user
    user="$(ps -o user= -p "$1")"
    shift
    if [ "$user" = "$(id -un)" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

# count LABEL PORT PID: the instructions per transaction of one pooler's measured run.
count() {
    local out
    PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T 5 \
        -h 127.0.0.1 -p "$2" -U bench bench >/dev/null 2>&1 || true
    as_owner "$3" callgrind_control -i on "$3" >/dev/null
    out="$(PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$2" -U bench bench 2>&1)" || { echo "$out" >&2; die "$1: pgbench failed"; }
    as_owner "$3" callgrind_control -d "$3" >/dev/null
    # A dump on request is named after the process with a sequence number: cg.PID.1.
    local dump
    dump="$(ls -t "$WORK"/cg.*.* 2>/dev/null | head -1)"
    [ -n "$dump" ] || die "$1: callgrind wrote no profile"
    cp "$dump" "$OUT/callgrind.$4"
    awk -v l="$1" -v n="$(report_field processed)" '/^(summary|totals):/ { ir = $2 }
        END { printf "| %s | %d | %.0f |\n", l, n, ir / n }' "$dump"
    rm -f "$WORK"/cg.*
}

main() {
    command -v valgrind >/dev/null 2>&1 || {
        say "installing valgrind"
        as_root apt-get install -y -qq valgrind >/dev/null
    }
    prepare_run cleanup
    mkdir -p "$OUT"
    start_postgres
    local vg=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$WORK/cg.%p")
    local bin label="pgweir $(git rev-parse --short HEAD)"
    bin="$(realpath "${PGWEIR_BIN:-target/release/pgweir}")"
    [ -n "${PGWEIR_BIN:-}" ] && label="pgweir $PGWEIR_BIN"
    printf '#!/bin/sh\nexec %s %s "$@"\n' "${vg[*]}" "$bin" >"$WORK/pgweir-vg"
    chmod +x "$WORK/pgweir-vg"
    PGWEIR_BIN="$WORK/pgweir-vg" start_pgweir scram-sha-256 $((CLIENTS + 100)) ""
    local rows=()
    rows+=("$(count "$label" "$PGWEIR_PORT" "$PGWEIR_PID" pgweir)")
    stop_pgweir
    BOUNCER_WRAP="${vg[*]}" start_pgbouncer
    rows+=("$(count "PgBouncer $(bouncer_version)" "$PGBOUNCER_PORT" "$(cat "$WORK/pgbouncer.pid")" pgbouncer)")
    stop_pgbouncer
    echo
    echo "pgbench -S -M $MODE -c $CLIENTS -j 2 -T $DURATION, pool $POOL (transaction mode, SCRAM), under callgrind, $(date -u +%F)"
    echo
    echo "| pooler | transactions counted | instructions per transaction |"
    echo "| --- | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
}

main "$@"
