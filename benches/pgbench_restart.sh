#!/usr/bin/env bash
# What a Postgres restart costs the clients of pgweir and of PgBouncer, in one run: pgbench
# -M prepared with CLIENTS clients through a pool of POOL in transaction mode, and `pg_ctl
# restart -m fast` on the primary RESTART_AT seconds in. SCRIPT is pgbench's built-in script
# (select-only by default: PgBouncer 1.25.2 stalls on tpcb-like with -M prepared here, all
# its servers left idle in transaction after BEGIN).
#
#   benches/pgbench_restart.sh                 # 4 rounds, 20 s each
#   ROUNDS=2 DURATION=12 benches/pgbench_restart.sh
#
# pgbench's output of each run is kept in OUT (bench-results/restart) as LABEL-ROUND.log.
#
# A client that gets an error is aborted by pgbench, so "aborted clients" counts the
# clients the restart cost; at most POOL of them can have had a transaction on a server
# when Postgres went away. "stalled s" is how many of pgbench's one-second progress lines
# after the restart show no transactions. Each run has a pooler of its own, started fresh;
# the poolers swap places each round. PgBouncer is
# 1.25.2 from ../shared/anchors when present, else Debian's (PGBOUNCER_BIN picks another).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20}"
RESTART_AT="${RESTART_AT:-8}"
ROUNDS="${ROUNDS:-4}"
OUT="${OUT:-bench-results/restart}"
CLIENTS="${CLIENTS:-50}"
SCRIPT="${SCRIPT:-select-only}"
POOL="${POOL:-20}"
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh
prefer_anchor

# run_one LABEL PORT ROUND: one pgbench run with a restart in it -> one Markdown row.
run_one() {
    local label="$1" port="$2" round="$3" aborted codes stalled out
    PGPASSWORD=bench "$PG_BIN/pgbench" -n -b "$SCRIPT" -M prepared -c "$CLIENTS" -j 2 -P 1 -T "$DURATION" \
        -h 127.0.0.1 -p "$port" -U bench bench >"$WORK/run.out" 2>"$WORK/run.err" &
    local bench=$!
    sleep "$RESTART_AT"
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -m fast restart >/dev/null
    wait "$bench" || true
    cp "$WORK/run.err" "$OUT/${label// /-}-$round.log"
    aborted="$(grep -oE 'client [0-9]+ (script [0-9]+ )?aborted' "$WORK/run.err" |
        awk '{ print $2 }' | sort -u | wc -l)"
    # The server's messages that came with the aborts, counted: "3 x terminating ...".
    codes="$(grep -E '(FATAL|ERROR): ' "$WORK/run.err" |
        sed -E 's/.*(FATAL|ERROR): +//; s/ *$//' | cut -c1-60 | sort | uniq -c |
        awk '{ n = $1; $1 = ""; printf "%s%d x%s", sep, n, $0; sep = "; " }')"
    stalled="$(awk -v r="$RESTART_AT" '/^progress:/ && $2 + 0 > r && $4 + 0 == 0 { n++ } END { print n + 0 }' "$WORK/run.err")"
    # shellcheck disable=SC2034 # report_field reads $out
    out="$(cat "$WORK/run.out")"
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$aborted" "$stalled" "$(report_field processed)" "${codes:-none}"
}

# with_pgweir ROUND / with_pgbouncer ROUND: each run gets a pooler of its own, started after
# Postgres is back from the last restart.
with_pgweir() {
    start_pgweir scram-sha-256 1000 ""
    run_one pgweir "$PGWEIR_PORT" "$1"
    stop_pgweir
}
with_pgbouncer() {
    start_pgbouncer
    run_one "PgBouncer $(bouncer_version)" "$PGBOUNCER_PORT" "$1"
    stop_pgbouncer
}

prepare_run cleanup
mkdir -p "$OUT"
start_postgres
say "pgbench -b $SCRIPT -M prepared -c $CLIENTS, pool $POOL, restart at ${RESTART_AT}s of ${DURATION}s, $ROUNDS rounds"
echo "| pooler | aborted clients | stalled s | transactions | errors |"
echo "| --- | ---: | ---: | ---: | --- |"
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        with_pgweir "$round"
        with_pgbouncer "$round"
    else
        with_pgbouncer "$round"
        with_pgweir "$round"
    fi
done
