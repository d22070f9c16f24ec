#!/usr/bin/env python3
"""The soak benchmark's ledger check (run by benches/soak.sh once the traffic has stopped).

`check.py --port PRIMARY_PORT --out OUT`: loads OUT/outcomes.csv (id,status,kind, one line
per ledger id the driver generated) into a temporary table on the primary, next to the
ledger, and writes OUT/check.json: per status the ids and how many are in the ledger;
committed ids missing, failed/rolled-back/vanished ids present, ambiguous ids (connection
lost during COMMIT) either way, ledger rows no client recorded, duplicate outcomes; `ok`
when the first two, the unrecorded rows and the duplicates are all zero. Prints the counts;
exits 1 when not ok.
"""

import argparse
import asyncio
import json
import os
import sys

import asyncpg


async def check(a):
    conn = await asyncpg.connect(host=a.host, port=a.port, user="bench", password="bench",
                                 database="bench")
    await conn.execute("CREATE TEMP TABLE outcome (id bigint, status text, kind text)")
    await conn.copy_to_table("outcome", source=os.path.join(a.out, "outcomes.csv"), format="csv")
    await conn.execute("ANALYZE outcome")
    rows = await conn.fetch("""SELECT o.status, count(*) AS ids, count(l.id) AS in_ledger
        FROM outcome o LEFT JOIN ledger l USING (id) GROUP BY 1 ORDER BY 1""")
    by = {r["status"]: {"ids": r["ids"], "in_ledger": r["in_ledger"]} for r in rows}
    get = lambda s, k: by.get(s, {}).get(k, 0)  # noqa: E731
    res = {
        "by_status": by,
        "ledger_rows": await conn.fetchval("SELECT count(*) FROM ledger"),
        "committed_missing": get("committed", "ids") - get("committed", "in_ledger"),
        "not_committed_present": sum(get(s, "in_ledger") for s in ("failed", "rolledback", "vanished")),
        "ambiguous_present": get("ambiguous", "in_ledger"),
        "ambiguous_absent": get("ambiguous", "ids") - get("ambiguous", "in_ledger"),
        "unrecorded_in_ledger": await conn.fetchval(
            "SELECT count(*) FROM ledger l WHERE NOT EXISTS (SELECT 1 FROM outcome o WHERE o.id = l.id)"),
        "duplicate_outcomes": await conn.fetchval("SELECT count(*) - count(DISTINCT id) FROM outcome"),
        "examples_missing": [r[0] for r in await conn.fetch(
            "SELECT id FROM outcome o WHERE status = 'committed' AND NOT EXISTS "
            "(SELECT 1 FROM ledger l WHERE l.id = o.id) ORDER BY id LIMIT 10")],
        "examples_present": [dict(r) for r in await conn.fetch(
            "SELECT o.id, o.status, o.kind FROM outcome o JOIN ledger l USING (id) "
            "WHERE o.status IN ('failed', 'rolledback', 'vanished') ORDER BY id LIMIT 10")],
    }
    res["ok"] = not (res["committed_missing"] or res["not_committed_present"]
                     or res["unrecorded_in_ledger"] or res["duplicate_outcomes"])
    await conn.close()
    with open(os.path.join(a.out, "check.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("examples")}))
    return 0 if res["ok"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    return asyncio.run(check(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
