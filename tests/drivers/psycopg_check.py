#!/usr/bin/env python3
"""psycopg 3 with every query server-side prepared, from many threads at once.

Run by tests/it/drivers.rs against pgweir in transaction mode with fewer servers than
clients, so a client's consecutive transactions land on different server connections
while psycopg believes its named statements (`_pg3_N`) live in one session. Connection
parameters come from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGDATABASE). Every worker checks each result it gets; the main thread checks the
table contents at the end. Prints a summary; exits non-zero on any error or wrong
result.

By hand: PGHOST=127.0.0.1 PGPORT=6432 PGUSER=... PGPASSWORD=... PGDATABASE=...
python3 tests/drivers/psycopg_check.py
"""

import os
import sys
import threading
import traceback
from decimal import Decimal

try:
    import psycopg
    from psycopg import capabilities
except ImportError:
    sys.exit(
        "psycopg 3 is not installed for this python3: "
        "pip install 'psycopg[binary]>=3.2,<3.4' (or run .ci/run)"
    )

CLIENTS = 20
ITERATIONS = 40
# Odd workers keep at most this many statements, so psycopg evicts the oldest ones
# (protocol Close with libpq >= 17, `DEALLOCATE name` before).
SMALL_CACHE = 4
SHAPES = 6


class WrongResult(Exception):
    pass


def check(what, got, want):
    if got != want:
        raise WrongResult(f"{what}: got {got!r}, want {want!r}")


def connect():
    return psycopg.connect(autocommit=True, prepare_threshold=0)


def setup():
    with connect() as conn:
        conn.execute("DROP TABLE IF EXISTS psy_items, psy_many")
        conn.execute(
            "CREATE TABLE psy_items (worker int, n int, label text, amount numeric,"
            " PRIMARY KEY (worker, n))"
        )
        conn.execute("CREATE TABLE psy_many (worker int, n int, PRIMARY KEY (worker, n))")


def one_iteration(conn, w, i, pids):
    check("int + 1", conn.execute("SELECT %s::int + 1", (i,), prepare=True).fetchone()[0], i + 1)
    for k in range(SHAPES):
        got = conn.execute(f"SELECT %s::int * {k + 2}", (i,)).fetchone()[0]
        check(f"shape {k}", got, i * (k + 2))
    row = conn.execute(
        "SELECT %s::text || %s::text, %s::numeric * 2, %s::bytea, %s::int IS NULL",
        (f"w{w}", f"-{i}", Decimal("1.25"), b"\x00\xff", None),
    ).fetchone()
    check("mixed types", row, (f"w{w}-{i}", Decimal("2.50"), b"\x00\xff", True))
    pids.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    conn.execute(
        "INSERT INTO psy_items (worker, n, label) VALUES (%s, %s, %s)", (w, i, f"w{w}-{i}")
    )
    with conn.transaction():
        conn.execute(
            "UPDATE psy_items SET amount = %s WHERE worker = %s AND n = %s", (Decimal(i), w, i)
        )
        count = conn.execute("SELECT count(*) FROM psy_items WHERE worker = %s", (w,)).fetchone()
        check("rows of this worker inside the transaction", count[0], i + 1)

    if i % 10 == 0:
        rolled_back(conn, w, i)
    if i % 5 == 0:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO psy_many (worker, n) VALUES (%s, %s)",
                [(w, i * 10 + j) for j in range(10)],
            )
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int * 3", (j,)) for j in range(5)]
        check("pipelined", [c.fetchone()[0] for c in curs], [j * 3 for j in range(5)])


def rolled_back(conn, w, i):
    """An error inside a transaction rolls back its insert; the session goes on."""
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO psy_items (worker, n, label) VALUES (%s, %s, %s)",
                (w, 1000 + i, "rolled back"),
            )
            conn.execute("SELECT 1 / %s::int", (0,))
    except psycopg.errors.DivisionByZero:
        pass
    else:
        raise WrongResult("1 / 0 inside a transaction did not fail")
    gone = conn.execute(
        "SELECT count(*) FROM psy_items WHERE worker = %s AND n = %s", (w, 1000 + i)
    ).fetchone()[0]
    check("row of the rolled-back transaction", gone, 0)


def worker(w, errors, pids):
    try:
        with connect() as conn:
            if w % 2:
                conn.prepared_max = SMALL_CACHE
            for i in range(ITERATIONS):
                one_iteration(conn, w, i, pids)
    except Exception:
        errors.append(f"worker {w}:\n{traceback.format_exc()}")


def verify_tables():
    with connect() as conn:
        items, amounts = conn.execute("SELECT count(*), sum(amount) FROM psy_items").fetchone()
        check("psy_items rows", items, CLIENTS * ITERATIONS)
        check("sum of amounts", amounts, Decimal(CLIENTS * sum(range(ITERATIONS))))
        many = conn.execute("SELECT count(*) FROM psy_many").fetchone()[0]
        check("psy_many rows", many, CLIENTS * len(range(0, ITERATIONS, 5)) * 10)


def main():
    missing = [v for v in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE") if not os.environ.get(v)]
    if missing:
        sys.exit(f"set {', '.join(missing)} (libpq environment) to say where to connect")
    print(
        f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()} ({psycopg.pq.__impl__}), "
        f"protocol Close: {capabilities.has_send_close_prepared()}"
    )
    errors, pids = [], set()
    try:
        setup()
        threads = [
            threading.Thread(target=worker, args=(w, errors, pids)) for w in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not errors:
            verify_tables()
    except Exception:
        errors.append(f"main:\n{traceback.format_exc()}")
    for error in errors:
        print(error)
    print(
        f"psycopg: {CLIENTS} clients x {ITERATIONS} iterations, prepare_threshold=0, "
        f"{len(pids)} distinct server pids, {len(errors)} failed"
    )
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
