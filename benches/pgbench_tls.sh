#!/usr/bin/env bash
# What client TLS costs, through pgweir and through PgBouncer with the same certificate.
#
#   benches/pgbench_tls.sh                # 15 s per run (about 3 minutes in all)
#   DURATION=5 benches/pgbench_tls.sh     # a quick look
#
# A throwaway PostgreSQL gets `pgbench -i -s 10`; openssl makes a self-signed ECDSA P-256
# certificate for localhost. pgweir (release build) and Debian's PgBouncer both serve it with
# client_tls_sslmode = prefer, so one instance of each takes plaintext and TLS clients alike:
# pgbench picks with PGSSLMODE=disable or require. Both connect to Postgres in plaintext (the
# throwaway cluster has no TLS). Two workloads, each with TLS off and on:
#   steady:  pgbench -S -c $CLIENTS -j 2: TLS on the data path only;
#   connect: pgbench -S -C -c $CONNECT_CLIENTS -j 2: a new connection per transaction, so a
#            TLS handshake and a SCRAM login each time.
# Prints a Markdown table with TPS, average latency and each pooler's CPU seconds per 100k
# transactions. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-50}"
CONNECT_CLIENTS="${CONNECT_CLIENTS:-8}"
POOL=20
PG_BIN=/usr/lib/postgresql/15/bin

# shellcheck source=benches/common.sh
source benches/common.sh

make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
    # PgBouncer runs as postgres and must read them.
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$WORK/tls.key" "$WORK/tls.crt"
    chmod 600 "$WORK/tls.key"
}

# run_one LABEL WORKLOAD SSLMODE PORT PID -> one Markdown row on stdout
run_one() {
    local label="$1" workload="$2" sslmode="$3" port="$4" pid="$5" before after out args
    case "$workload" in
        steady) args=(-c "$CLIENTS") ;;
        connect) args=(-C -c "$CONNECT_CLIENTS") ;;
    esac
    say "$label: $workload, PGSSLMODE=$sslmode: pgbench -S ${args[*]} -j 2 -T $DURATION"
    before="$(cpu_ticks "$pid")"
    out="$(PGSSLMODE="$sslmode" PGPASSWORD=bench "$PG_BIN/pgbench" -S "${args[@]}" -j 2 \
        -T "$DURATION" -h 127.0.0.1 -p "$port" -U bench bench 2>&1)" ||
        { echo "$out" >&2; die "$label $workload $sslmode failed"; }
    after="$(cpu_ticks "$pid")"
    local tps lat txs failed cpu=n/a tls=off
    tps="$(report_field tps)"
    lat="$(report_field latency)"
    txs="$(report_field processed)"
    failed="$(report_field failed)"
    [ "$sslmode" = require ] && tls=on
    if [ "${txs:-0}" -gt 0 ]; then
        cpu="$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$txs" \
            'BEGIN { printf "%.2f", t / hz / n * 100000 }')"
    fi
    echo "| $label | $workload | $tls | $tps | $lat | $cpu | ${failed:-0} |"
}

main() {
    prepare_run cleanup
    start_postgres
    make_cert
    start_pgweir scram-sha-256 1000 "" "" "client_tls_sslmode = \"prefer\"
client_tls_cert_file = \"$WORK/tls.crt\"
client_tls_key_file = \"$WORK/tls.key\""
    start_pgbouncer "client_tls_sslmode = prefer
client_tls_cert_file = $WORK/tls.crt
client_tls_key_file = $WORK/tls.key"
    local bouncer rows=()
    bouncer="pgbouncer $(bouncer_version)"
    for workload in steady connect; do
        for sslmode in disable require; do
            rows+=("$(run_one pgweir "$workload" "$sslmode" "$PGWEIR_PORT" "$PGWEIR_PID")")
            rows+=("$(run_one "$bouncer" "$workload" "$sslmode" "$PGBOUNCER_PORT" \
                "$(cat "$WORK/pgbouncer.pid")")")
        done
    done
    echo
    echo "pgbench -S -j 2 -T $DURATION, scale 10, pool $POOL (transaction mode), steady: $CLIENTS clients, connect (-C): $CONNECT_CLIENTS clients, TLS 1.3 ECDSA P-256, $(nproc) cores, $(date -u +%F)"
    echo
    echo "| target | workload | client TLS | TPS | avg latency ms | CPU s/100k tx | failed |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
}

main "$@"
