#!/usr/bin/env python3
"""asyncpg with its default statement cache, from many connections at once.

Run by tests/it/drivers.rs against pgweir in transaction mode with fewer servers than
clients. asyncpg prepares every query as a named statement (`__asyncpg_stmt_N__`)
and reuses it from its cache, so consecutive transactions of one connection use
statements that were prepared on another server connection. Phase one runs one
worker per connection; phase two shares an `asyncpg.create_pool` between more tasks
than it has connections, so connections are released (and reset) and reacquired.
Connection parameters come from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
Prints a summary; exits non-zero on any error or wrong result.

By hand: PGHOST=127.0.0.1 PGPORT=6432 PGUSER=... PGPASSWORD=... PGDATABASE=...
python3 tests/drivers/asyncpg_check.py
"""

import asyncio
import os
import sys
import traceback

try:
    import asyncpg
except ImportError:
    sys.exit(
        "asyncpg is not installed for this python3: "
        "pip install 'asyncpg>=0.29,<0.33' (or run .ci/run)"
    )

CLIENTS = 20
ITERATIONS = 40
POOL_TASKS = 60


class WrongResult(Exception):
    pass


def check(what, got, want):
    if got != want:
        raise WrongResult(f"{what}: got {got!r}, want {want!r}")


async def setup(conn):
    await conn.execute("DROP TABLE IF EXISTS apg_items, apg_many")
    await conn.execute(
        "CREATE TABLE apg_items (worker int, n int, label text, PRIMARY KEY (worker, n))"
    )
    await conn.execute("CREATE TABLE apg_many (worker int, n int, PRIMARY KEY (worker, n))")


async def one_iteration(conn, stmt, w, i, pids):
    check("fetchval", await conn.fetchval("SELECT $1::int + 1", i), i + 1)
    rows = await conn.fetch("SELECT g, g * $1::int FROM generate_series(1, $2::int) g", w, 3)
    check("fetch", [tuple(r) for r in rows], [(g, g * w) for g in range(1, 4)])
    check("prepared fetchval", await stmt.fetchval(f"w{w}", f"-{i}"), f"w{w}-{i}")
    check("prepared fetch", [tuple(r) for r in await stmt.fetch("a", "b")], [("ab",)])
    pids.add(await conn.fetchval("SELECT pg_backend_pid()"))

    await conn.execute(
        "INSERT INTO apg_items (worker, n, label) VALUES ($1, $2, $3)", w, i, f"w{w}-{i}"
    )
    async with conn.transaction():
        await conn.execute(
            "UPDATE apg_items SET label = upper(label) WHERE worker = $1 AND n = $2", w, i
        )
        count = await conn.fetchval("SELECT count(*) FROM apg_items WHERE worker = $1", w)
        check("rows of this worker inside the transaction", count, i + 1)
        check("prepared inside a transaction", await stmt.fetchval("x", "y"), "xy")

    if i % 10 == 0:
        await rolled_back(conn, w, i)
    if i % 5 == 0:
        await conn.executemany(
            "INSERT INTO apg_many (worker, n) VALUES ($1, $2)", [(w, i * 10 + j) for j in range(10)]
        )
        async with conn.transaction():
            got = [r[0] async for r in conn.cursor("SELECT generate_series(1, $1::int)", 25)]
            check("cursor", got, list(range(1, 26)))


async def rolled_back(conn, w, i):
    """An error inside a transaction rolls back its insert; the connection goes on."""
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO apg_items (worker, n, label) VALUES ($1, $2, 'rolled back')",
                w,
                1000 + i,
            )
            await conn.fetchval("SELECT 1 / $1::int", 0)
    except asyncpg.DivisionByZeroError:
        pass
    else:
        raise WrongResult("1 / 0 inside a transaction did not fail")
    gone = await conn.fetchval(
        "SELECT count(*) FROM apg_items WHERE worker = $1 AND n = $2", w, 1000 + i
    )
    check("row of the rolled-back transaction", gone, 0)


async def worker(w, errors, pids):
    try:
        conn = await asyncpg.connect(timeout=10)
        try:
            stmt = await conn.prepare("SELECT $1::text || $2::text")
            for i in range(ITERATIONS):
                await one_iteration(conn, stmt, w, i, pids)
        finally:
            await conn.close()
    except Exception:
        errors.append(f"worker {w}:\n{traceback.format_exc()}")


async def pool_task(pool, t, errors):
    """Acquire, use cached statements (also ones prepared by earlier tasks), release."""
    try:
        async with pool.acquire() as conn:
            check("pool fetchval", await conn.fetchval("SELECT $1::int * 7", t), t * 7)
            async with conn.transaction():
                count = await conn.fetchval(
                    "SELECT count(*) FROM apg_items WHERE worker = $1", t % CLIENTS
                )
                check("pool count", count, ITERATIONS)
            stmt = await conn.prepare("SELECT $1::int - 1")
            check("pool prepared", await stmt.fetchval(t), t - 1)
    except Exception:
        errors.append(f"pool task {t}:\n{traceback.format_exc()}")


async def run(errors, pids):
    conn = await asyncpg.connect(timeout=10)
    try:
        await setup(conn)
    finally:
        await conn.close()
    await asyncio.gather(*(worker(w, errors, pids) for w in range(CLIENTS)))
    if errors:
        return
    async with asyncpg.create_pool(min_size=CLIENTS, max_size=CLIENTS, timeout=10) as pool:
        await asyncio.gather(*(pool_task(pool, t, errors) for t in range(POOL_TASKS)))
    conn = await asyncpg.connect(timeout=10)
    try:
        items = await conn.fetchval("SELECT count(*) FROM apg_items")
        check("apg_items rows", items, CLIENTS * ITERATIONS)
        upper = await conn.fetchval("SELECT count(*) FROM apg_items WHERE label = upper(label)")
        check("updated labels", upper, CLIENTS * ITERATIONS)
        many = await conn.fetchval("SELECT count(*) FROM apg_many")
        check("apg_many rows", many, CLIENTS * len(range(0, ITERATIONS, 5)) * 10)
    finally:
        await conn.close()


def main():
    missing = [v for v in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE") if not os.environ.get(v)]
    if missing:
        sys.exit(f"set {', '.join(missing)} (libpq environment) to say where to connect")
    print(f"asyncpg {asyncpg.__version__}")
    errors, pids = [], set()
    try:
        asyncio.run(run(errors, pids))
    except Exception:
        errors.append(f"main:\n{traceback.format_exc()}")
    for error in errors:
        print(error)
    print(
        f"asyncpg: {CLIENTS} connections x {ITERATIONS} iterations, then {POOL_TASKS} tasks on a "
        f"pool of {CLIENTS}; {len(pids)} distinct server pids, {len(errors)} failed"
    )
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
