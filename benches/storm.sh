#!/usr/bin/env bash
# The seeds' exam-start storm (issue 18 item 1): CLIENTS clients log in with SCRAM at once
# through PROCS pooler processes sharing one port (so_reuseport), then each runs `pgbench -S`
# for DURATION seconds. Reports the time until all were in (against LOGIN_WINDOW), the
# failures, each pooler process's share of the clients, its resident memory and its CPU per
# login, and the CPU pgbench itself spent logging in (libpq's PBKDF2).
#
#   benches/storm.sh                                          # 50,000 clients, 3 pgweir processes
#   CLIENTS=6000 DURATION=10 benches/storm.sh                 # a quick look
#   POOLERS="pgweir pgbouncer" ROUNDS=2 benches/storm.sh      # PgBouncer on the same storm, alternating
#   ITERATIONS=512 benches/storm.sh                           # a LOWERED-iteration verifier (labelled)
#
# Setup. A throwaway PostgreSQL 15 (max_connections PROCS x POOL + 40, `pgbench -i -s 10`).
# The bench role's SCRAM verifier is copied from pg_authid into each pooler (pgweir's
# `[users.bench] password`, PgBouncer's userlist.txt), so neither derives keys per login and
# both log in to Postgres by pass-through. Its iteration count is Postgres' default 4096;
# ITERATIONS sets another (the verifier is made here and stored in Postgres too), and every
# line of the report then says so. PROCS pooler processes (pgweir built here in release mode;
# PgBouncer 1.25.2 from ../shared/anchors when present) listen on one port with
# so_reuseport, in transaction mode with default_pool_size POOL (20) each,
# log_connections/log_disconnections off, each pgweir with its own metrics_addr.
#
# The storm. BENCHES pgbench processes (default: enough that each has at most 15,000
# clients, at least 3) start together, `-S -M simple -c CLIENTS/BENCHES -j JOBS -T DURATION`.
# pgbench connects its clients serially per thread, so JOBS (16) per process is how many of
# its logins are in flight; all of a process's clients are in before its DURATION starts.
# Two limits shape this: each process (pgbench and pooler) may hold at most `ulimit -Hn`
# (here 20,000) files, and one client address may open at most as many connections to one
# destination address and port as net.ipv4.ip_local_port_range has ports (28,232 by
# default). So the poolers listen on 127.0.0.1 ... 127.0.0.BENCHES and pgbench process j
# connects to 127.0.0.j: each destination gets CLIENTS/BENCHES connections, and the range is
# left alone (the script only reads it).
#
# Measured. Every SAMPLE (1) seconds: each pooler's logged-in clients, logins and
# transactions (pgweir's /metrics; for PgBouncer its open sockets), its CPU (utime + stime
# from /proc/PID/stat) and RSS, each pgbench's CPU, and the machine's busy CPU (/proc/stat).
# The login phase ends when the last pgbench reports its "initial connection time"; CPU per
# login is each process's CPU until then divided by the logins it took. Failures: pgbench
# exit codes, aborted clients, failed connections and transactions, and each pgweir's
# authentication failures. The series and pgbench's output go to bench-results/storm-TIME/.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-50000}"
PROCS="${PROCS:-3}"
LOGIN_WINDOW="${LOGIN_WINDOW:-30}"
DURATION="${DURATION:-30}"
# pgbench's -T counts from its start, logins included: it gets LOGIN_MAX + DURATION, so
# clients that are all in within LOGIN_MAX seconds run transactions for DURATION or more.
LOGIN_MAX="${LOGIN_MAX:-$(( CLIENTS * 3 / 1000 > LOGIN_WINDOW ? CLIENTS * 3 / 1000 : LOGIN_WINDOW ))}"
JOBS="${JOBS:-16}"
POOL="${POOL:-20}"
# Worker threads per pgweir process: the cores shared out, as PgBouncer's one thread per
# process is; more threads than cores only adds switching.
WORKERS="${WORKERS:-$(( $(nproc) / PROCS > 0 ? $(nproc) / PROCS : 1 ))}"
ITERATIONS="${ITERATIONS:-4096}"
POOLERS="${POOLERS:-pgweir}"
ROUNDS="${ROUNDS:-1}"
SAMPLE="${SAMPLE:-1}"
# On a shared machine: wait up to this many seconds before each storm for cargo and rustc
# processes (someone's build) to end. The report shows the CPU others took anyway.
WAIT_QUIET="${WAIT_QUIET:-0}"
BENCHES="${BENCHES:-$(( (CLIENTS + 14999) / 15000 > 3 ? (CLIENTS + 14999) / 15000 : 3 ))}"
PG_BIN=/usr/lib/postgresql/15/bin
MAX_CONNECTIONS=$((PROCS * POOL + 40))
HZ="$(getconf CLK_TCK)"

# shellcheck source=benches/common.sh
source benches/common.sh
prefer_anchor

POOLER_PIDS=()
METRICS_PORTS=()
BENCH_RUNNERS=()
SAMPLER_PID=

# cleanup (common.sh) stops one pgweir, one PgBouncer and Postgres; this stops the rest first.
storm_cleanup() {
    set +e
    [ -n "${WORK:-}" ] && touch "$WORK/stop" 2>/dev/null
    local pid f
    for pid in "${BENCH_RUNNERS[@]}"; do kill "$pid" 2>/dev/null; done
    for f in "${WORK:-/nonexistent}"/bench-*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
    stop_poolers
    cleanup
}

# --- poolers -------------------------------------------------------------------------------

listen_addrs() {
    local j addrs=()
    for j in $(seq "$BENCHES"); do addrs+=("127.0.0.$j"); done
    local IFS=,
    echo "${addrs[*]}"
}

# start_pgweirs PORT: PROCS pgweir processes on 127.0.0.1..BENCHES:PORT, one config file,
# each with its own metrics_addr (from METRICS_ADDR) and no Unix socket.
start_pgweirs() {
    local port="$1" i mport
    cat >"$WORK/pgweir.toml" <<TOML
[pgweir]
listen_addr = "$(listen_addrs | sed 's/,/, /g')"
listen_port = $port
so_reuseport = true
auth_type = "scram-sha-256"
max_client_conn = $MAX_CLIENT_CONN
workers = $WORKERS
log_level = "info"
log_connections = false
log_disconnections = false
metrics_addr = "\${METRICS_ADDR}"

[pool]
pool_mode = "transaction"
default_pool_size = $POOL

[databases.bench]
host = "127.0.0.1"
port = $PG_PORT

[users.bench]
password = "$VERIFIER"
TOML
    POOLER_PIDS=()
    METRICS_PORTS=()
    for i in $(seq 0 $((PROCS - 1))); do
        mport="$(free_port $((26100 + 10 * i)))"
        METRICS_ADDR="127.0.0.1:$mport" "${PGWEIR_BIN:-./target/release/pgweir}" \
            --config "$WORK/pgweir.toml" 2>"$WORK/pgweir-$i.log" &
        POOLER_PIDS+=($!)
        METRICS_PORTS+=("$mport")
        wait_port "$mport" "pgweir $i" "$WORK/pgweir-$i.log"
    done
    wait_port "$port" pgweir "$WORK/pgweir-0.log"
}

# start_pgbouncers PORT: PROCS PgBouncers with so_reuseport on the same addresses, each with
# its own pidfile and log and no Unix socket (which they could not share).
start_pgbouncers() {
    local port="$1" i bouncer limit
    bouncer="$(bouncer_bin)"
    limit="ulimit -n $(ulimit -Hn)"
    printf '"bench" "%s"\n' "$VERIFIER" >"$WORK/userlist.txt"
    POOLER_PIDS=()
    METRICS_PORTS=()
    for i in $(seq 0 $((PROCS - 1))); do
        cat >"$WORK/pgbouncer-$i.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench user=bench password=bench

[pgbouncer]
listen_addr = $(listen_addrs)
listen_port = $port
so_reuseport = 1
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = $MAX_CLIENT_CONN
log_connections = 0
log_disconnections = 0
logfile = $WORK/pgbouncer-$i.log
pidfile = $WORK/pgbouncer-$i.pid
INI
        chown postgres:postgres "$WORK/userlist.txt" "$WORK/pgbouncer-$i.ini" 2>/dev/null || true
        as_pg sh -c "$limit; exec $bouncer -d $WORK/pgbouncer-$i.ini"
        for _ in $(seq 100); do [ -s "$WORK/pgbouncer-$i.pid" ] && break; sleep 0.1; done
        [ -s "$WORK/pgbouncer-$i.pid" ] || { cat "$WORK/pgbouncer-$i.log" >&2; die "pgbouncer $i did not start"; }
        POOLER_PIDS+=("$(cat "$WORK/pgbouncer-$i.pid")")
    done
    wait_port "$port" pgbouncer "$WORK/pgbouncer-0.log"
}

stop_poolers() {
    local pid
    for pid in "${POOLER_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${POOLER_PIDS[@]}"; do
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    POOLER_PIDS=()
    rm -f "${WORK:-/nonexistent}"/pgbouncer-*.pid
    return 0
}

# --- sampling ------------------------------------------------------------------------------

status_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# One pooler's columns: clients, logins, transactions, CPU ticks, RSS KiB.
pooler_columns() {
    local kind="$1" i="$2" pid="${POOLER_PIDS[$2]}" counts
    if [ "$kind" = pgweir ]; then
        counts="$(curl -s -m 5 "http://127.0.0.1:${METRICS_PORTS[$i]}/metrics" | awk '
            /^pgweir_clients\{/ { c += $NF }
            /^pgweir_client_logins_total\{/ { l += $NF }
            /^pgweir_transactions_total\{/ { t += $NF }
            END { printf "%d\t%d\t%d", c, l, t }')"
    else
        # PgBouncer has no /metrics: its open sockets less the few it holds anyway.
        local fds
        fds="$(ls -U "/proc/$pid/fd" 2>/dev/null | wc -l)"
        counts="$(printf '%d\t%d\t0' "$fds" "$fds")"
    fi
    printf '\t%s\t%s\t%s' "$counts" "$(cpu_ticks "$pid" 2>/dev/null || echo 0)" "$(status_kib "$pid" VmRSS)"
}

# sample KIND: one line: time, machine busy and idle ticks, pooler_columns per pooler, CPU
# ticks per pgbench (0 before it started).
sample() {
    local kind="$1" i j pid
    printf '%s' "$(date +%s.%N)"
    awk '/^cpu / { printf "\t%d\t%d", $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat
    for i in "${!POOLER_PIDS[@]}"; do pooler_columns "$kind" "$i"; done
    for j in $(seq "$BENCHES"); do
        pid="$(cat "$WORK/bench-$j.pid" 2>/dev/null || echo 0)"
        printf '\t%s' "$(cpu_ticks "$pid" 2>/dev/null || echo 0)"
    done
    echo
}

# sampler KIND FILE: a sample every SAMPLE seconds until $WORK/stop exists, at a higher
# priority than the storm so that a saturated machine does not stretch the interval.
sampler() {
    set +e +o pipefail
    renice -n -10 -p "$BASHPID" >/dev/null 2>&1 || true
    while [ ! -e "$WORK/stop" ]; do
        sample "$1" >>"$2"
        sleep "$SAMPLE"
    done
}

# --- one storm -----------------------------------------------------------------------------

num() { [ -n "$1" ] && echo "$1" || echo 0; }

# storm KIND ROUND: start the poolers, run the storm, print the summary rows.
storm() {
    local kind="$1" round="$2" port label j
    # A port of its own for each turn: the last turn's clients left TIME_WAIT sockets behind.
    local offset=0
    [ "$kind" = pgbouncer ] && offset=10
    port="$(free_port $((25700 + 20 * round + offset)))"
    if [ "$kind" = pgweir ]; then
        start_pgweirs "$port"
        label="pgweir $(git rev-parse --short HEAD)"
        # The binary is built from the working tree: say so when its code differs from HEAD.
        git diff --quiet HEAD -- src Cargo.toml Cargo.lock || label="$label+wip"
    else
        start_pgbouncers "$port"
        label="PgBouncer $(bouncer_version)"
    fi
    local tag="$kind-r$round" per=$((CLIENTS / BENCHES)) waited=0
    while [ "$waited" -lt "$WAIT_QUIET" ] && pgrep -x 'cargo|rustc' >/dev/null; do
        [ "$waited" -eq 0 ] && say "waiting up to ${WAIT_QUIET}s for cargo/rustc to end"
        sleep 5
        waited=$((waited + 5))
    done
    rm -f "$WORK/stop" "$WORK"/bench-* "$WORK/series.tsv"
    sleep 1
    local t0
    sample "$kind" >"$WORK/series.tsv"
    t0="$(date +%s.%N)"
    BENCH_RUNNERS=()
    for j in $(seq "$BENCHES"); do
        local n=$per
        [ "$j" -eq "$BENCHES" ] && n=$((CLIENTS - per * (BENCHES - 1)))
        (
            rc=0
            PGPASSWORD=bench sh -c 'echo $$ >"$1"; shift; exec "$@"' _ "$WORK/bench-$j.pid" \
                "$PG_BIN/pgbench" -n -S -M simple -c "$n" -j "$JOBS" -T $((LOGIN_MAX + DURATION)) -P 1 \
                -h "127.0.0.$j" -p "$port" -U bench bench >"$WORK/bench-$j.out" 2>&1 || rc=$?
            echo "$rc" >"$WORK/bench-$j.rc"
            times >"$WORK/bench-$j.times"
        ) &
        BENCH_RUNNERS+=($!)
    done
    for j in $(seq "$BENCHES"); do
        until [ -s "$WORK/bench-$j.pid" ]; do sleep 0.01; done
    done
    sampler "$kind" "$WORK/series.tsv" &
    SAMPLER_PID=$!
    local runner
    for runner in "${BENCH_RUNNERS[@]}"; do wait "$runner" || true; done
    BENCH_RUNNERS=()
    local hwm=()
    for j in "${!POOLER_PIDS[@]}"; do hwm+=("$(status_kib "${POOLER_PIDS[$j]}" VmHWM)"); done
    # pgweir's authentication failures, before the processes go; its whole /metrics is kept.
    local authfail=0 errors=0
    if [ "$kind" = pgweir ]; then
        for j in "${!POOLER_PIDS[@]}"; do
            curl -s -m 10 "http://127.0.0.1:${METRICS_PORTS[$j]}/metrics" >"$WORK/metrics-$j.txt" || true
            authfail=$((authfail + $(awk '/^pgweir_client_auth_failures_total\{/ { s += $NF } END { print s + 0 }' "$WORK/metrics-$j.txt")))
        done
    fi
    touch "$WORK/stop"
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    stop_poolers
    # Lines that tell of a problem (pgweir logs at info here, but with connection and
    # disconnection lines off only "closing client connection" and the like remain).
    errors="$(cat "$WORK"/pgweir-*.log "$WORK"/pgbouncer-*.log 2>/dev/null |
        grep -ciE 'error|warn|fatal|closing client' || true)"

    local keep="$RESULTS/$tag"
    mkdir -p "$keep"
    cp "$WORK"/bench-*.out "$WORK/series.tsv" "$keep/"
    cp "$WORK"/pgweir-*.log "$WORK"/pgbouncer-*.log "$WORK"/metrics-*.txt "$keep/" 2>/dev/null || true
    rm -f "$WORK"/metrics-*.txt "$WORK"/pgweir-*.log

    # pgbench's own numbers.
    local rc=0 conn_ms=() tps=0 tx=0 failed=0 aborted=0 connfail=0 bench_cpu=0 lat=()
    for j in $(seq "$BENCHES"); do
        local f="$WORK/bench-$j.out" v
        [ "$(cat "$WORK/bench-$j.rc")" = 0 ] || rc=$((rc + 1))
        v="$(awk '/^initial connection time = / { print $5 }' "$f")"
        conn_ms+=("${v:-NA}")
        out="$(cat "$f")"
        tps="$(awk -v a="$tps" -v b="$(report_field tps)" 'BEGIN { print a + b }')"
        tx=$((tx + $(num "$(report_field processed)")))
        failed=$((failed + $(num "$(report_field failed)")))
        lat+=("$(report_field latency)")
        aborted=$((aborted + $(grep -c 'client [0-9]* aborted' "$f" || true)))
        connfail=$((connfail + $(grep -ciE 'connection to server .* failed|cannot create connection' "$f" || true)))
        bench_cpu="$(awk -v a="$bench_cpu" 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, p, /m|s/); a += p[1] * 60 + p[2] } } END { print a }' "$WORK/bench-$j.times")"
    done
    local conn_max conns
    conn_max="$(printf '%s\n' "${conn_ms[@]}" | awk '$1 == "NA" { na = 1 } $1 > m { m = $1 } END { if (na) print "NA"; else printf "%.1f", m / 1000 }')"
    conns="$(printf '%s\n' "${conn_ms[@]}" | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), ($1 == "NA") ? "NA" : sprintf("%.1f", $1 / 1000) }')"
    # TPS over the DURATION seconds after the last pgbench had all its clients in, from each
    # pgbench's progress lines (its first line after the logins averages over them: skipped).
    local wtps="NA" wsec=0
    if [ "$conn_max" != NA ]; then
        read -r wtps wsec < <(awk -v from="$conn_max" -v d="$DURATION" '
            /^progress: / { x = $2 + 0; if (x > from + 1 && x <= from + 1 + d) { s[FILENAME] += $4; c[FILENAME]++ } }
            END { for (f in s) { tot += s[f] / c[f]; if (c[f] > m) m = c[f] }; printf "%.0f %d\n", tot, m }' "$WORK"/bench-*.out)
    fi

    awk -F'\t' -v t0="$t0" -v tin="$conn_max" -v procs="$PROCS" -v benches="$BENCHES" \
        -v clients="$CLIENTS" -v hz="$HZ" -v label="$label" -v kind="$kind" -v round="$round" \
        -v window="$LOGIN_WINDOW" -v rc="$rc" -v tps="$tps" -v wtps="$wtps" -v wsec="$wsec" -v tx="$tx" -v failed="$failed" \
        -v aborted="$aborted" -v connfail="$connfail" -v authfail="$authfail" -v errors="$errors" \
        -v bench_cpu="$bench_cpu" -v hwm="${hwm[*]}" -v iters="$ITERATIONS" \
        -v conns="$conns" -v lats="${lat[*]}" -v summary="$WORK/summary.md" \
        -v detail="$WORK/detail.md" -v curve="$WORK/curve.md" '
        { n = NR; t[n] = $1 - t0; busy[n] = $2; idle[n] = $3
          for (i = 0; i < procs; i++) { b = 4 + 5 * i
              cl[n, i] = $b; lg[n, i] = $(b + 1); tr[n, i] = $(b + 2); cpu[n, i] = $(b + 3); rss[n, i] = $(b + 4) }
          for (j = 0; j < benches; j++) bc[n, j] = $(4 + 5 * procs + j) }
        END {
            # The row that ends the login phase: the first sample after the last pgbench
            # reported its connection time, else (a pgbench failed) the peak of clients.
            rin = n; all = (kind == "pgweir") ? "never" : "n/a"
            for (r = 1; r <= n; r++) {
                s = 0; for (i = 0; i < procs; i++) s += cl[r, i]
                if (kind == "pgweir" && all == "never" && s >= clients) all = sprintf("%.0f", t[r])
            }
            if (tin != "NA") { for (r = n; r >= 1; r--) if (t[r] >= tin) rin = r }
            else { best = -1; for (r = 1; r <= n; r++) { s = 0; for (i = 0; i < procs; i++) s += cl[r, i]; if (s > best) { best = s; rin = r } } }
            bcpu = 0; for (j = 0; j < benches; j++) if (bc[rin, j] != "NA") bcpu += bc[rin, j]
            machine = (busy[rin] - busy[1]) / (busy[rin] + idle[rin] - busy[1] - idle[1])
            pcpu = 0; plog = 0; ptx = 0
            split(hwm, hw, " ")
            for (i = 0; i < procs; i++) {
                logins = (kind == "pgweir") ? lg[rin, i] - lg[1, i] : cl[rin, i] - cl[1, i]
                c = cpu[rin, i] - cpu[1, i]; pcpu += c; plog += logins; ptx += tr[rin, i] - tr[1, i]
                printf "| %s | %d | %d | %s%d | %.0f%% | %.3f | %d | %d | %s |\n", label, round, i,
                    kind == "pgweir" ? "" : "≈", logins, 100 * logins / clients,
                    logins ? c / hz / logins * 1000 : 0, rss[rin, i] / 1024, hw[i + 1] / 1024,
                    (kind == "pgweir") ? tr[n, i] - tr[rin, i] : "n/a" >> detail
            }
            # What neither the poolers nor pgbench used of the machine (Postgres, the sampler,
            # anything else running).
            others = (busy[rin] - busy[1] - pcpu - bcpu) / (busy[rin] + idle[rin] - busy[1] - idle[1])
            lowered = (iters == 4096) ? "" : sprintf(" (LOWERED: %d iterations)", iters)
            printf "| %s%s | %d | %s | %s | %s | %s | %d / %d / %d / %d / %d | %d | %s (%d s) | %.0f | %.0f | %.3f | %.3f | %.0f%% | %.0f%% | %d |\n",
                label, lowered, round, tin, all, (tin != "NA" && tin <= window) ? "yes" : "no", conns,
                rc, connfail, aborted, failed, authfail, errors, wtps, wsec, tps, tx, plog ? pcpu / hz / plog * 1000 : 0,
                bcpu / hz / clients * 1000, 100 * machine, 100 * others, bench_cpu >> summary
            # The login curve: clients in every 5 s (every sample up to the end).
            line = "| " label " | " round " |"
            for (r = 1; r <= n; r++) if (r == rin || (t[r] >= next5)) {
                s = 0; for (i = 0; i < procs; i++) s += cl[r, i]
                line = line sprintf(" %.0fs: %d", t[r], s) (r == rin ? "*" : "") ";"
                next5 = (int(t[r] / 5) + 1) * 5
                if (r > rin + 2) break
            }
            print line " |" >> curve
        }' "$WORK/series.tsv"
    say "$label round $round: all in after ${conn_max}s (pgbench), ${tps} TPS, pgbench exits non-zero: $rc"
}

main() {
    [ "$BENCHES" -ge 1 ] && [ $((CLIENTS / BENCHES)) -ge "$JOBS" ] || die "need at least JOBS clients per pgbench"
    local hard per range
    hard="$(ulimit -Hn)"
    per=$(((CLIENTS + BENCHES - 1) / BENCHES))
    [ "$per" -lt $((hard - 100)) ] || die "$per clients per pgbench: over the $hard files a process may open; raise BENCHES"
    range="$(sysctl -n net.ipv4.ip_local_port_range | awk '{ print $2 - $1 + 1 }')"
    [ "$per" -lt "$range" ] || die "$per connections to one address: over the $range ephemeral ports; raise BENCHES"
    [ "$BENCHES" -le 254 ] || die "at most 254 pgbench processes"
    MAX_CLIENT_CONN=$((CLIENTS + 100 < hard - 500 ? CLIENTS + 100 : hard - 500))
    prepare_run storm_cleanup
    RESULTS="bench-results/storm-$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$RESULTS"
    start_postgres
    local psql=("$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 -h "$WORK" -p "$PG_PORT" -U postgres -d postgres)
    if [ "$ITERATIONS" != 4096 ]; then
        say "LOWERED: a SCRAM verifier with $ITERATIONS iterations for bench"
        local v
        v="$(python3 - "$ITERATIONS" <<'PY'
import base64, hashlib, hmac, os, sys
it = int(sys.argv[1]); salt = os.urandom(16)
salted = hashlib.pbkdf2_hmac("sha256", b"bench", salt, it)
ck = hmac.new(salted, b"Client Key", "sha256").digest()
sk = hmac.new(salted, b"Server Key", "sha256").digest()
b = lambda x: base64.b64encode(x).decode()
print(f"SCRAM-SHA-256${it}:{b(salt)}${b(hashlib.sha256(ck).digest())}:{b(sk)}")
PY
)"
        "${psql[@]}" -c "ALTER ROLE bench PASSWORD '$v'"
    fi
    VERIFIER="$("${psql[@]}" -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")"
    case "$VERIFIER" in "SCRAM-SHA-256\$$ITERATIONS:"*) ;; *) die "bench's secret is not a SCRAM verifier with $ITERATIONS iterations" ;; esac

    local r kind order
    for r in $(seq "$ROUNDS"); do
        order="$POOLERS"
        [ $((r % 2)) -eq 0 ] && order="$(tr ' ' '\n' <<<"$POOLERS" | tac | tr '\n' ' ')"
        for kind in $order; do storm "$kind" "$r"; done
    done

    {
        echo
        echo "Storm: $CLIENTS SCRAM clients ($ITERATIONS iterations$([ "$ITERATIONS" = 4096 ] || echo ', LOWERED')) through $PROCS processes on one port (so_reuseport), pool $POOL each, transaction mode;"
        echo "$BENCHES pgbench processes (-S -M simple -c $((CLIENTS / BENCHES)) -j $JOBS -T $((LOGIN_MAX + DURATION)) -P 1), one per address 127.0.0.1-$BENCHES; $(nproc) cores, $(date -u +%F);"
        echo "ip_local_port_range $(sysctl -n net.ipv4.ip_local_port_range | tr '\t' '-') (not changed), ulimit -Hn $hard. Series and pgbench output: $RESULTS/"
        echo
        echo "| pooler | round | s until all in (pgbench) | s until all in (samples) | within ${LOGIN_WINDOW} s | pgbench initial connection s, each | failures: pgbench exits≠0 / failed connects / aborted / failed tx / auth failures | error, warning and closing-client lines in pooler logs | TPS in the $DURATION s after all in (s covered) | TPS (pgbench, sum, all of its -T after its logins) | transactions | pooler CPU ms per login | pgbench CPU ms per login | machine CPU busy in login phase | of it not poolers or pgbench | pgbench CPU s, whole run |"
        echo "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        cat "$WORK/summary.md"
        echo
        echo "| pooler | round | process | logins | share | CPU ms per login | RSS MiB at all-in | peak RSS MiB (VmHWM) | transactions after all-in |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        cat "$WORK/detail.md"
        echo
        echo "Clients logged in over time (samples; * the end of the login phase):"
        echo
        echo "| pooler | round | clients in |"
        echo "| --- | ---: | --- |"
        cat "$WORK/curve.md"
        echo
        echo "Warnings and errors in the poolers' logs: see $RESULTS/*/"
    } | tee "$RESULTS/summary.md"
}

main "$@"
