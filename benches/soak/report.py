#!/usr/bin/env python3
"""The soak benchmark's summary (run by benches/soak.sh): `report.py OUT DURATION_S POOL`.

Reads OUT/samples.csv, progress.csv, events.csv, errors.csv, driver.json and check.json
and prints Markdown: the ledger check, the traffic (actions, TPS, anomalies), errors by
SQLSTATE (each error counted as during an event or in a quiet stretch), and pgweir's RSS,
fds and servers early against late. "Flat" compares the mean of the warm-up window
[D/6, D/3] with the mean of the last window [5D/6, D] (for an hour: the second ten minutes
against the last ten). Also writes OUT/events.gp, the event markers for plot.gp.
"""

import csv
import json
import os
import statistics
import sys

out, dur, pool = sys.argv[1], float(sys.argv[2]), sys.argv[3]


def load_csv(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def load_json(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else {}


def num(v):
    try:
        x = float(v)
        return None if x != x else x  # NaN -> None
    except (TypeError, ValueError):
        return None


samples, progress = load_csv("samples.csv"), load_csv("progress.csv")
events, errors = load_csv("events.csv"), load_csv("errors.csv")
driver, check = load_json("driver.json"), load_json("check.json")
counts = driver.get("counts", {})

# --- event windows: errors inside them are expected, the rest happened in quiet time ---
ev = [(float(e["t"]), e["event"]) for e in events]
first = lambda name: next((t for t, e in ev if e == name), None)  # noqa: E731
windows = []
if first("pg-restart") is not None:
    windows.append(("pg restart", first("pg-restart"), (first("pg-restarted") or first("pg-restart")) + 30))
if first("replica-stop") is not None:
    windows.append(("replica down", first("replica-stop"), (first("replica-start") or dur) + 30))
windows += [("reload", t, t + 10) for t, e in ev if e.startswith("reload")]


def window_of(t):
    return next((name for name, a, b in windows if a <= t <= b), "quiet")


lines = []
w = lines.append
cores = os.cpu_count()
w(f"## Soak: {dur / 60:g} min, {driver.get('clients', '?')} clients, pool {pool} per node, "
  f"{cores} cores")
w("")
w("Events (s from the start): " + "; ".join(
    f"{e['event']} {float(e['t']):.0f}" + (f" ({e['detail']})" if e["event"].startswith("reload-failed") else "")
    for e in events if e["event"] not in ("start",)))
w("")

# --- ledger ---
w("### Ledger")
w("")
if check:
    w("| outcome the client saw | ids | in the ledger |")
    w("| --- | ---: | ---: |")
    for status, v in sorted(check["by_status"].items()):
        w(f"| {status} | {v['ids']} | {v['in_ledger']} |")
    w("")
    verdict = "**OK**" if check["ok"] else "**FAILED**"
    w(f"{verdict}: {check['ledger_rows']} ledger rows; committed ids missing: "
      f"{check['committed_missing']}; failed, rolled-back or vanished ids present: "
      f"{check['not_committed_present']}; ambiguous (connection lost during COMMIT): "
      f"{check['ambiguous_present']} present, {check['ambiguous_absent']} absent; rows no client "
      f"recorded: {check['unrecorded_in_ledger']}; duplicate outcomes: {check['duplicate_outcomes']}.")
    for key in ("examples_missing", "examples_present"):
        if check.get(key):
            w(f"{key}: {check[key]}")
else:
    w("**no check.json**: the ledger check did not run.")
w("")

# --- traffic ---
w("### Traffic")
w("")
w("| action | completed |")
w("| --- | ---: |")
for action in driver.get("actions", {}):
    w(f"| {action} | {counts.get('ok_' + action, 0)} |")
tps = [num(p["tps"]) for p in progress[1:-1] if num(p["t"]) is not None and num(p["t"]) <= dur]
reads = counts.get("reads_replica", 0) + counts.get("reads_primary", 0)
w("")
if tps:
    w(f"Completed actions: {counts.get('ok', 0)}, {counts.get('ok', 0) / dur:.0f} per second on average; "
      f"10-s intervals: median {statistics.median(tps):.0f}, min {min(tps):.0f}, max {max(tps):.0f}. "
      f"Committed write transactions: {counts.get('committed', 0)}. Point reads on the replica: "
      f"{100 * counts.get('reads_replica', 0) / max(reads, 1):.0f}% of {reads}. "
      f"Logins: {counts.get('connects', 0)}. Think time {driver.get('think_ms')} ms.")
p99 = [(num(p["p99_ms"]), num(p["t"])) for p in progress if num(p["p99_ms"]) is not None]
worst = max(((num(p["max_ms"]), num(p["t"])) for p in progress if num(p["max_ms"]) is not None), default=None)
if p99:
    w(f"Latency of reads, writes, COPY and rollbacks (successful ones): p99 per 10 s, median "
      f"{statistics.median(x for x, _ in p99):.0f} ms, worst {max(p99)[0]:.0f} ms (at {max(p99)[1]:.0f} s); "
      f"slowest single action {worst[0]:.0f} ms (interval ending {worst[1]:.0f} s).")
    slow = {}
    for p in progress:  # an interval counts in the window its middle falls in
        if num(p.get("slow_1s")):
            where = window_of(num(p["t"]) - 5)
            slow[where] = slow.get(where, 0) + int(num(p["slow_1s"]))
    w("Such actions that took over 1 s: " + (", ".join(f"{k}: {v}" for k, v in sorted(slow.items())) or "none")
      + " (by the event window of their 10-s interval).")
anomalies = ["read_your_writes_miss", "aborted_txn_committed", "cancelled_txn_committed",
             "commit_tag_not_commit", "stuck_clients", "cancel_not_needed", "cancel_dropped"]
w("Anomalies: " + ", ".join(f"{a} {counts.get(a, 0)}" for a in anomalies) + ". (cancel_dropped: an "
  "autocommit pg_sleep(1) cancelled after 0.1 s and the SELECT 1 after it took over 0.95 s, so the "
  "sleep most likely ran in full: its CancelRequest came while it was queued for a server, and pgweir "
  "drops a cancel from a client holding no server, as its README says and as PgBouncer does. A cancel "
  "inside a transaction, where the client holds its server, that failed to land would show as "
  "cancelled_txn_committed.)")
if driver.get("anomalies"):
    first_ones = {}
    for x in driver["anomalies"]:
        first_ones.setdefault(x["what"], []).append(x["t"])
    w("Their first times (s): " + "; ".join(f"{k} {v}" for k, v in first_ones.items()) + ".")
w("")

# --- errors ---
w("### Errors by SQLSTATE (or driver exception)")
w("")
codes = driver.get("codes", {})
if codes:
    per = {}
    for e in errors:
        per.setdefault(e["code"], {}).setdefault(window_of(float(e["t"])), 0)
        per[e["code"]][window_of(float(e["t"]))] += 1
    w("| code | count | where (event window: count) | first s | last s | first message |")
    w("| --- | ---: | --- | ---: | ---: | --- |")
    for code, c in sorted(codes.items(), key=lambda kv: -kv[1]["n"]):
        where = ", ".join(f"{k}: {v}" for k, v in sorted(per.get(code, {}).items()))
        w(f"| {code} | {c['n']} | {where} | {c['first']:.0f} | {c['last']:.0f} | {c['sample'].replace('|', '/')} |")
    quiet = sum(v.get("quiet", 0) for v in per.values())
    w("")
    w(f"Errors in quiet time (not within a restart, replica outage or 10 s after a reload): {quiet}.")
else:
    w("None.")
w("")

# --- pgweir's resources ---
w("### pgweir: memory, descriptors, servers (sampled every 10 s)")
w("")
cols = [("rss_kib", "RSS MiB", 1 / 1024), ("fds", "open fds", 1), ("pgweir_servers", "servers (SHOW SERVERS)", 1),
        ("primary_backends", "bench backends on the primary", 1), ("replica_backends", "bench backends on the replica", 1)]
during = [s for s in samples if float(s["t"]) <= dur]
after = [s for s in samples if float(s["t"]) > dur]


def series(rows, col, a=0, b=float("inf")):
    return [num(s[col]) for s in rows if a <= float(s["t"]) <= b and num(s[col]) is not None]


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


warm_a, warm_b, last_a = dur / 6, dur / 3, dur * 5 / 6
w(f"| | first | warm-up mean ({warm_a:.0f}-{warm_b:.0f} s) | last mean ({last_a:.0f}-{dur:.0f} s) "
  "| max | clients gone |")
w("| --- | ---: | ---: | ---: | ---: | ---: |")
flat = {}
for col, label, k in cols:
    allv = series(during, col)
    warm, last = series(during, col, warm_a, warm_b), series(during, col, last_a, dur)
    mw = statistics.mean(warm) * k if warm else None
    ml = statistics.mean(last) * k if last else None
    gone = series(after, col)
    w(f"| {label} | {fmt(allv[0] * k if allv else None)} | {fmt(mw)} | {fmt(ml)} | "
      f"{fmt(max(allv) * k if allv else None)} | {fmt(gone[-1] * k if gone else None)} |")
    flat[col] = (mw, ml)
w("")
(rw, rl), (fw, fl) = flat["rss_kib"], flat["fds"]
if None not in (rw, rl, fw, fl):
    rss_flat = rl - rw <= max(2.0, 0.05 * rw)
    fds_flat = fl - fw <= 5
    w(f"RSS {rl - rw:+.1f} MiB ({100 * (rl - rw) / rw:+.1f}%) and fds {fl - fw:+.1f} from the warm-up "
      f"window to the last: {'flat' if rss_flat and fds_flat else 'NOT flat'} "
      "(flat: RSS within max(2 MiB, 5%), fds within 5).")

for t, e in ev:
    detail = next(x["detail"] for x in events if x["event"] == e and float(x["t"]) == t)
    if e == "leftover-clients":
        leak = "**LEAK**: " if detail not in ("0", "-1") else ""
        w(f"{leak}Clients pgweir still held 12 s after the driver exited: {detail} (SHOW CLIENTS, the "
          "console aside; end-state.txt has SHOW CLIENTS, SERVERS and POOLS and pg_stat_activity then).")
    if e == "pgweir-stopped":
        w(f"pgweir's shutdown at the end: {detail} (shutdown_timeout is 30 s).")
print("\n".join(lines))

# --- event markers for plot.gp: reloads thin and unlabelled, the rest labelled ---
with open(os.path.join(out, "events.gp"), "w") as f:
    for t, e in ev:
        x = t / 60
        if e.startswith("reload"):
            f.write(f"set arrow from first {x}, graph 0 to first {x}, graph 1 nohead dt 1 lw 1 lc rgb '#aaaaaa'\n")
        elif e in ("pg-restart", "replica-stop", "replica-start", "pgweir-died"):
            f.write(f"set arrow from first {x}, graph 0 to first {x}, graph 1 nohead dt 2 lw 1.5 lc rgb '#cc0000'\n")
            f.write(f"set label '{e}' at first {x}, graph 0.04 left rotate by 90 offset -1.2,0 "
                    "font ',8' tc rgb '#cc0000'\n")
