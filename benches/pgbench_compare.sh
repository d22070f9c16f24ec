#!/usr/bin/env bash
# pgweir vs PgBouncer vs direct Postgres on one machine in one run: pgbench -S TPS and each
# pooler's CPU per transaction (user and system apart), by client count and -M mode, as a
# Markdown table and a plot.
#
#   benches/pgbench_compare.sh                                  # 50/500/2000 clients, 20 s each
#   CLIENT_COUNTS=50 MODES=simple DURATION=5 benches/pgbench_compare.sh   # a quick look
#   PGBOUNCER_BIN=/usr/sbin/pgbouncer benches/pgbench_compare.sh          # Debian's 1.18
#
# A throwaway PostgreSQL gets `pgbench -i -s 10`. For each mode and client count,
# `pgbench -S -M MODE -c N -j 2 -P 1` runs through pgweir (built here in release mode) and
# through PgBouncer (1.25.2 from ../shared/anchors when present, else Debian's), both pool
# $POOL in transaction mode with SCRAM, and straight against Postgres with at most
# DIRECT_MAX clients (Postgres itself cannot take thousands). The poolers go in alternating
# order each ROUND. Only the steady state counts: WARM seconds for the logins, then DURATION
# seconds over which TPS comes from pgbench's progress lines and CPU from /proc/PID/stat.
# Writes bench-results/compare.{tsv,md,png} (OUT picks the directory); the plot needs
# gnuplot, which is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20}"
WARM="${WARM:-8}"
ROUNDS="${ROUNDS:-1}"
MODES="${MODES:-simple extended prepared}"
CLIENT_COUNTS="${CLIENT_COUNTS:-50 500 2000}"
DIRECT_MAX="${DIRECT_MAX:-500}"
OUT="${OUT:-bench-results}"
POOL=40
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh
prefer_anchor

# user and system CPU ticks of a process.
cpu_split() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }

# run_one LABEL MODE CLIENTS PORT PID(or -): appends one tab-separated row to $TSV.
run_one() {
    local label="$1" mode="$2" clients="$3" port="$4" pid="$5" u0=0 s0=0 u1=0 s1=0
    say "$label: pgbench -S -M $mode -c $clients"
    PGPASSWORD=bench "$PG_BIN/pgbench" -n -S -M "$mode" -c "$clients" -j 2 -P 1 \
        -T $((WARM + DURATION + 1)) -h 127.0.0.1 -p "$port" -U bench bench \
        >"$WORK/run.out" 2>"$WORK/run.progress" &
    local bench=$!
    sleep "$WARM"
    [ "$pid" != - ] && read -r u0 s0 < <(cpu_split "$pid")
    sleep "$DURATION"
    [ "$pid" != - ] && read -r u1 s1 < <(cpu_split "$pid")
    wait "$bench" || { cat "$WORK/run.out" "$WORK/run.progress" >&2; die "$label -M $mode failed"; }
    # Progress lines: "progress: 9.0 s, 10123.4 tps, lat ...": the transactions of the window.
    awk -v w="$WARM" -v d="$DURATION" -v l="$label" -v m="$mode" -v c="$clients" \
        -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" -v cpu="$pid" '
        /^progress:/ { t = $2 + 0; if (t > w && t <= w + d) { n += $4; k++ } }
        END {
            if (k == 0) exit 1
            if (cpu == "-") printf "%s\t%s\t%d\t%.0f\tn/a\tn/a\n", l, m, c, n / k
            else printf "%s\t%s\t%d\t%.0f\t%.1f\t%.1f\n", l, m, c, n / k, u / hz / n * 1e6, s / hz / n * 1e6
        }' "$WORK/run.progress" >>"$TSV" || die "$label -M $mode: no progress lines"
}

poolers() {
    local mode="$1" clients="$2" round="$3" bouncer
    bouncer="PgBouncer $(bouncer_version)"
    local first=(pgweir "$mode" "$clients" "$PGWEIR_PORT" "$PGWEIR_PID")
    local second=("$bouncer" "$mode" "$clients" "$PGBOUNCER_PORT" "$(cat "$WORK/pgbouncer.pid")")
    if [ "$mode" = prepared ] && ! bouncer_prepares; then
        run_one "${first[@]}"
        return
    fi
    if [ $((round % 2)) -eq 1 ]; then
        run_one "${first[@]}"
        run_one "${second[@]}"
    else
        run_one "${second[@]}"
        run_one "${first[@]}"
    fi
}

plot() {
    command -v gnuplot >/dev/null 2>&1 || {
        say "installing gnuplot"
        as_root apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 || { say "no gnuplot: no plot"; return 0; }
    }
    # Means per target, mode and client count, CPU as user + system.
    awk -F'\t' '{ k = $1 "\t" $2 "\t" $3; t[k] += $4; n[k]++; if ($5 != "n/a") { c[k] += $5 + $6 } }
        END { for (k in t) printf "%s\t%.0f\t%s\n", k, t[k] / n[k], (k in c) ? sprintf("%.1f", c[k] / n[k]) : "NaN" }' \
        "$TSV" | sort -t$'\t' -k1,1 -k2,2 -k3,3n >"$WORK/means.tsv"
    local script="$WORK/plot.gp" col=0 mode target
    {
        echo "set terminal pngcairo size 1500,800 font ',10'"
        echo "set output '$OUT/compare.png'"
        echo "set datafile separator '\t'; set logscale x; set key top left; set grid"
        echo "set multiplot layout 2,$(wc -w <<<"$MODES") title 'pgbench -S, pool $POOL, $(nproc) cores, $(date -u +%F)'"
        for row in tps cpu; do
            for mode in $MODES; do
                col=$((col + 1))
                if [ "$row" = tps ]; then
                    echo "set title 'TPS, -M $mode'; set ylabel 'TPS'; set yrange [0:*]"
                else
                    echo "set title 'pooler CPU per transaction, -M $mode'; set ylabel 'µs'; set xlabel 'clients'"
                fi
                local plots=()
                while IFS= read -r target; do
                    local y=4
                    [ "$row" = cpu ] && y=5
                    [ "$row" = cpu ] && [ "$target" = postgres ] && continue
                    plots+=("'$WORK/means.tsv' using (strcol(1) eq '$target' && strcol(2) eq '$mode' ? \$3 : NaN):$y with linespoints title '$target'")
                done < <(cut -f1 "$WORK/means.tsv" | sort -u)
                local joined
                joined="$(printf '%s,' "${plots[@]}")"
                echo "plot ${joined%,}"
            done
        done
        echo "unset multiplot"
    } >"$script"
    gnuplot "$script" && say "plot: $OUT/compare.png"
}

main() {
    prepare_run cleanup
    mkdir -p "$OUT"
    TSV="$OUT/compare.tsv"
    : >"$TSV"
    local max=0 c
    for c in $CLIENT_COUNTS; do [ "$c" -gt "$max" ] && max="$c"; done
    MAX_CONNECTIONS=$((DIRECT_MAX + POOL * 2 + 20)) start_postgres
    start_pgweir scram-sha-256 $((max + 100)) ""
    BOUNCER_MAX_CLIENTS=$((max + 100)) start_pgbouncer
    for round in $(seq "$ROUNDS"); do
        for mode in $MODES; do
            for c in $CLIENT_COUNTS; do
                poolers "$mode" "$c" "$round"
                local direct=$((c < DIRECT_MAX ? c : DIRECT_MAX))
                run_one postgres "$mode" "$direct" "$PG_PORT" -
            done
        done
    done
    {
        echo "pgbench -S -j 2, scale 10, pool $POOL (transaction mode, SCRAM), ${DURATION} s after ${WARM} s of logins, $(nproc) cores, pgweir $(git rev-parse --short HEAD), $(date -u +%F)"
        echo
        echo "| target | mode | clients | TPS | pooler µs CPU/tx user | system |"
        echo "| --- | --- | ---: | ---: | ---: | ---: |"
        awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$TSV"
    } >"$OUT/compare.md"
    cat "$OUT/compare.md"
    plot
}

main "$@"
