#!/usr/bin/env python3
"""The soak benchmark's traffic (run by benches/soak.sh; the ledger check is check.py).

`driver.py`: CLIENTS asyncpg connections through pgweir until DURATION seconds after
T0, each looping over a weighted mix: point reads (prepared, routed to the replica),
read-only transactions, ledger writes in explicit transactions, COPY into the ledger,
deliberate ROLLBACKs, transactions that fail on an error or a cancel before COMMIT,
clients that vanish (terminate()) inside a transaction, and statement cancels (asyncpg
sends a CancelRequest when `timeout=` expires). Every ledger id is client-generated and
gets exactly one outcome line in OUT/outcomes.csv (id,status,kind): `committed` (COMMIT
answered COMMIT), `failed` (an error, or COMMIT answered ROLLBACK), `rolledback`,
`vanished`, or `ambiguous` (the connection broke or timed out during COMMIT). Clients
reconnect after errors. Writes OUT/progress.csv every 10 s, OUT/errors.csv (each error:
time, SQLSTATE or exception class, action, message) and OUT/driver.json (totals).
"""

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import sys
import time

try:
    import asyncpg
except ImportError:
    sys.exit("asyncpg is missing: pip install 'asyncpg>=0.29,<0.33'")

ACTIONS = {  # name: weight
    "read": 40, "read_txn": 5, "write": 22, "copy": 6, "rollback": 6,
    "error_txn": 4, "cancel_txn": 3, "vanish": 3, "cancel": 5,
}
INSERT = "INSERT INTO ledger (id, client, amount, via) VALUES ($1, $2, $3, $4)"
READ = "SELECT abalance, pg_is_in_recovery() FROM pgbench_accounts WHERE aid = $1"
OP_TIMEOUT = 30  # asyncpg timeout= for ordinary statements (expiry sends a cancel)
WATCHDOG = 60  # one action may take this long before the client gives up on it
TIMED = ("read", "read_txn", "write", "copy", "rollback", "error_txn")  # no deliberate waits
ERRORS_CAP = 100_000


class Tx:
    """The ledger ids of one transaction and how far it got."""

    def __init__(self):
        self.ids, self.commit_sent, self.done = [], False, False


class Driver:
    def __init__(self, a):
        self.a = a
        self.stop_at = a.t0 + a.duration
        self.next_id = 1
        self.count = collections.Counter()  # ok_<action>, committed, errors, ...
        self.status = collections.Counter()  # outcome status -> ids
        self.codes = {}  # code -> {n, first, last, sample}
        self.anomalies = []
        self.latencies = []  # ms of the TIMED actions completed in this 10-s interval
        self.outcomes = open(os.path.join(a.out, "outcomes.csv"), "w")
        self.errors = open(os.path.join(a.out, "errors.csv"), "w")
        self.errors.write("t,code,action,message\n")

    def now(self):
        return time.time() - self.a.t0

    def ids(self, tx, n):
        new = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        tx.ids += new
        return new

    def record(self, tx, status, kind):
        tx.done = True
        for i in tx.ids:
            self.outcomes.write(f"{i},{status},{kind}\n")
        self.status[status] += len(tx.ids)
        if status == "committed":
            self.count["committed"] += 1

    def error(self, e, action):
        code = getattr(e, "sqlstate", None) or type(e).__name__
        msg = " ".join(str(e).split())[:160]
        t = round(self.now(), 1)
        c = self.codes.setdefault(code, {"n": 0, "first": t, "last": t, "sample": msg})
        c["n"] += 1
        c["last"] = t
        self.count["errors"] += 1
        if self.count["errors"] <= ERRORS_CAP:
            self.errors.write(f"{t},{code},{action},{json.dumps(msg)}\n")

    def anomaly(self, what):
        self.count[what] += 1
        if self.count[what] <= 10:  # the first ten of each kind, with their times
            self.anomalies.append({"t": round(self.now(), 1), "what": what})

    async def connect(self, action="connect"):
        delay = 0.2
        while time.time() < self.stop_at:
            try:
                conn = await asyncpg.connect(
                    host=self.a.host, port=self.a.port, user="bench", password="bench",
                    database="bench", timeout=10, server_settings={"application_name": "soak"})
                self.count["connects"] += 1
                return conn
            except Exception as e:  # noqa: BLE001 - every failure is counted and retried
                self.error(e, action)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        return None

    # --- the actions: each ends its transaction itself; exceptions go to client() ---

    async def read(self, conn, tx):
        row = await conn.fetchrow(READ, random.randint(1, 1_000_000), timeout=OP_TIMEOUT)
        self.count["reads_replica" if row[1] else "reads_primary"] += 1

    async def read_txn(self, conn, tx):
        await conn.execute("BEGIN READ ONLY", timeout=OP_TIMEOUT)
        for _ in range(2):
            await conn.fetchrow(READ, random.randint(1, 1_000_000), timeout=OP_TIMEOUT)
        await conn.execute("COMMIT", timeout=OP_TIMEOUT)

    async def begin_insert(self, conn, tx, client, via, n=1):
        await conn.execute("BEGIN", timeout=OP_TIMEOUT)
        for i in self.ids(tx, n):
            await conn.execute(INSERT, i, client, random.randint(1, 1000), via, timeout=OP_TIMEOUT)

    async def commit(self, conn, tx, kind):
        tx.commit_sent = True
        tag = await conn.execute("COMMIT", timeout=OP_TIMEOUT)
        self.record(tx, "committed" if tag == "COMMIT" else "failed", kind)
        return tag

    async def write(self, conn, tx, client):
        await self.begin_insert(conn, tx, client, "write")
        await conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1",
                           random.randint(1, 1_000_000), timeout=OP_TIMEOUT)
        if await self.commit(conn, tx, "write") != "COMMIT":
            self.anomaly("commit_tag_not_commit")
        elif random.random() < 0.2:  # read-your-writes, possibly from the replica
            n = await conn.fetchval("SELECT count(*) FROM ledger WHERE id = $1", tx.ids[0],
                                    timeout=OP_TIMEOUT)
            if n != 1:
                self.anomaly("read_your_writes_miss")

    async def copy(self, conn, tx, client):
        await conn.execute("BEGIN", timeout=OP_TIMEOUT)
        rows = [(i, client, random.randint(1, 1000), "copy") for i in self.ids(tx, random.randint(2, 5))]
        await conn.copy_records_to_table("ledger", records=rows,
                                         columns=["id", "client", "amount", "via"], timeout=OP_TIMEOUT)
        await self.commit(conn, tx, "copy")

    async def rollback(self, conn, tx, client):
        await self.begin_insert(conn, tx, client, "rollback")
        await conn.execute("ROLLBACK", timeout=OP_TIMEOUT)
        self.record(tx, "rolledback", "rollback")

    async def error_txn(self, conn, tx, client):
        await self.begin_insert(conn, tx, client, "error_txn")
        try:
            await conn.fetchval("SELECT 1 / (random() * 0)::int", timeout=OP_TIMEOUT)
        except asyncpg.DivisionByZeroError:
            pass
        if await self.commit(conn, tx, "error_txn") == "COMMIT":
            self.anomaly("aborted_txn_committed")

    async def cancel_txn(self, conn, tx, client):
        await self.begin_insert(conn, tx, client, "cancel_txn")
        try:
            await conn.fetchval("SELECT pg_sleep(3)", timeout=0.1)
        except asyncio.TimeoutError:
            pass
        if await self.commit(conn, tx, "cancel_txn") == "COMMIT":
            self.anomaly("cancelled_txn_committed")

    async def vanish(self, conn, tx, client):
        await self.begin_insert(conn, tx, client, "vanish")
        if random.random() < 0.5:  # vanish while the server is busy with a statement
            busy = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(0.5)"))
            await asyncio.sleep(0.05)
            conn.terminate()
            await asyncio.gather(busy, return_exceptions=True)
        else:  # vanish while idle in the transaction
            conn.terminate()
        self.record(tx, "vanished", "vanish")

    async def cancel(self, conn, tx):
        start = time.monotonic()
        try:
            await conn.fetchval("SELECT pg_sleep(1)", timeout=0.1)
            self.anomaly("cancel_not_needed")
        except asyncio.TimeoutError:
            pass
        await conn.fetchval("SELECT 1", timeout=OP_TIMEOUT)  # waits for the cancelled query
        if time.monotonic() - start > 0.95:  # it ran in full: the cancel came while it was
            self.anomaly("cancel_dropped")  # queued for a server, and pgweir drops those

    async def client(self, n):
        names, weights = list(ACTIONS), list(ACTIONS.values())
        conn = await self.connect()
        while conn is not None and time.time() < self.stop_at:
            action = random.choices(names, weights)[0]
            fn = getattr(self, action)
            tx = Tx()
            try:
                args = (conn, tx) if action in ("read", "read_txn", "cancel") else (conn, tx, n)
                start = time.monotonic()
                await asyncio.wait_for(fn(*args), WATCHDOG)
                if action in TIMED:
                    self.latencies.append(1000 * (time.monotonic() - start))
                self.count["ok"] += 1
                self.count["ok_" + action] += 1
            except asyncio.CancelledError:
                if tx.ids and not tx.done:
                    self.record(tx, "ambiguous" if tx.commit_sent else "failed", action)
                raise
            except Exception as e:  # noqa: BLE001 - counted by code, then the client goes on
                self.error(e, action)
                if tx.ids and not tx.done:
                    self.record(tx, "ambiguous" if tx.commit_sent else "failed", action)
                conn = await self.recover(conn, e)
                continue
            if conn.is_closed():
                conn = await self.connect("reconnect")
            await asyncio.sleep(random.uniform(0, 2 * self.a.think_ms / 1000))
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except Exception:  # noqa: BLE001 - leaving anyway
                conn.terminate()

    async def recover(self, conn, e):
        """After an error: roll back an open transaction, or start over on a new connection.

        Only an error the server sent leaves the connection usable; after a timeout (the
        watchdog may have interrupted asyncpg mid-exchange) or a driver error it is dropped."""
        if isinstance(e, asyncpg.PostgresError) and not conn.is_closed():
            try:
                if conn.is_in_transaction():
                    await conn.execute("ROLLBACK", timeout=5)
                await asyncio.sleep(0.25)  # no tight loop on errors that come back at once
                return conn
            except Exception as e:  # noqa: BLE001
                self.error(e, "recover")
        conn.terminate()
        await asyncio.sleep(0.2)
        return await self.connect("reconnect")

    async def progress(self):
        with open(os.path.join(self.a.out, "progress.csv"), "w") as f:
            f.write("t,ok,tps,committed,errors,errors_10s,reads_replica,reads_primary,connects,"
                    "p50_ms,p99_ms,max_ms,slow_1s\n")
            last_t, last_ok, last_err = self.now(), 0, 0
            while True:
                await asyncio.sleep(10 - (self.now() % 10))
                t, c = self.now(), self.count
                lat, self.latencies = sorted(self.latencies), []
                pct = lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))]:.1f}" if lat else "NaN"  # noqa: E731
                f.write(f"{t:.1f},{c['ok']},{(c['ok'] - last_ok) / max(t - last_t, 0.1):.1f},"
                        f"{c['committed']},{c['errors']},{c['errors'] - last_err},"
                        f"{c['reads_replica']},{c['reads_primary']},{c['connects']},"
                        f"{pct(0.5)},{pct(0.99)},{pct(1.0)},{sum(x > 1000 for x in lat)}\n")
                f.flush()
                self.outcomes.flush()
                self.errors.flush()
                last_t, last_ok, last_err = t, c["ok"], c["errors"]


async def run(a):
    d = Driver(a)
    # SIGTERM (soak.sh gives up early, or is interrupted): stop now, still write the results.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(d, "stop_at", 0))
    reporter = asyncio.ensure_future(d.progress())
    clients = [asyncio.ensure_future(d.client(n)) for n in range(a.clients)]
    done, pending = await asyncio.wait(clients, timeout=a.t0 + a.duration - time.time() + 60)
    for task in pending:  # stuck past the grace period: cancelled, counted as "stuck"
        task.cancel()
        d.count["stuck_clients"] += 1
    await asyncio.gather(*clients, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            d.error(task.exception(), "client_crashed")
    await asyncio.sleep(10 - (d.now() % 10) + 0.5)  # one last progress line
    reporter.cancel()
    d.outcomes.close()
    d.errors.close()
    with open(os.path.join(a.out, "driver.json"), "w") as f:
        json.dump({"counts": d.count, "outcomes": d.status, "codes": d.codes,
                   "anomalies": d.anomalies, "actions": ACTIONS, "clients": a.clients,
                   "think_ms": a.think_ms}, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--duration", type=float, default=180)
    p.add_argument("--t0", type=float, default=time.time())
    p.add_argument("--think-ms", type=float, default=50)
    a = p.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the soak driver only talks to this machine")
    asyncio.run(run(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
