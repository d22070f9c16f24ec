#!/usr/bin/env node
// node-postgres (`pg`) named queries from many clients at once.
//
// Run by tests/it/drivers.rs against pgweir in transaction mode with fewer servers than
// clients. A named query (`{ name, text, values }`) is parsed once per connection and
// afterwards only bound and executed, so later transactions of a client use a
// statement that was prepared on another server connection. Connection parameters
// come from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE. Prints a summary;
// exits non-zero on any error or wrong result.
//
// By hand: npm ci --prefix tests/drivers, then
// PGHOST=127.0.0.1 PGPORT=6432 PGUSER=... PGPASSWORD=... PGDATABASE=... \
//   node tests/drivers/pg_check.js

'use strict';

let pg;
try {
  pg = require('pg');
} catch (err) {
  console.error(
    `node-postgres is not installed (${err.code}): npm ci --prefix tests/drivers (or run .ci/run)`,
  );
  process.exit(1);
}

const CLIENTS = 20;
const ITERATIONS = 40;

class WrongResult extends Error {}

function check(what, got, want) {
  const [g, w] = [JSON.stringify(got), JSON.stringify(want)];
  if (g !== w) throw new WrongResult(`${what}: got ${g}, want ${w}`);
}

const q = {
  add1: (i) => ({ name: 'add1', text: 'SELECT $1::int + 1 AS v', values: [i] }),
  concat: (a, b) => ({ name: 'concat', text: 'SELECT $1::text || $2::text AS v', values: [a, b] }),
  pid: () => ({ name: 'pid', text: 'SELECT pg_backend_pid() AS v', values: [] }),
  insert: (w, n) => ({
    name: 'insert',
    text: 'INSERT INTO node_items (worker, n, label) VALUES ($1, $2, $3)',
    values: [w, n, `w${w}-${n}`],
  }),
  count: (w) => ({
    name: 'count',
    text: 'SELECT count(*)::int AS v FROM node_items WHERE worker = $1',
    values: [w],
  }),
  divide: (d) => ({ name: 'divide', text: 'SELECT 1 / $1::int AS v', values: [d] }),
};

async function value(client, query) {
  const res = await client.query(query);
  return res.rows[0].v;
}

async function iteration(client, w, i, pids) {
  check('add1', await value(client, q.add1(i)), i + 1);
  check('concat', await value(client, q.concat(`w${w}`, `-${i}`)), `w${w}-${i}`);
  pids.add(await value(client, q.pid()));
  await client.query(q.insert(w, i));

  await client.query('BEGIN');
  check('add1 in a transaction', await value(client, q.add1(-i)), 1 - i);
  check('rows of this worker in a transaction', await value(client, q.count(w)), i + 1);
  await client.query('COMMIT');

  if (i % 10 === 0) await rolledBack(client, w, i);
}

// An error inside a transaction rolls back its insert; the named statements still work.
async function rolledBack(client, w, i) {
  await client.query('BEGIN');
  await client.query(q.insert(w, 1000 + i));
  let failed = false;
  try {
    await client.query(q.divide(0));
  } catch (err) {
    if (err.code !== '22012') throw err;
    failed = true;
  }
  await client.query('ROLLBACK');
  if (!failed) throw new WrongResult('1 / 0 inside a transaction did not fail');
  check('divide after the error', await value(client, q.divide(1)), 1);
  check('rows after the rollback', await value(client, q.count(w)), i + 1);
}

async function worker(w, errors, pids) {
  const client = new pg.Client({ connectionTimeoutMillis: 10000 });
  try {
    await client.connect();
    for (let i = 0; i < ITERATIONS; i++) await iteration(client, w, i, pids);
  } catch (err) {
    errors.push(`worker ${w}: ${err.stack || err}`);
  } finally {
    await client.end().catch(() => {});
  }
}

async function withClient(use) {
  const client = new pg.Client({ connectionTimeoutMillis: 10000 });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

async function main() {
  const missing = ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE'].filter((v) => !process.env[v]);
  if (missing.length) {
    console.error(`set ${missing.join(', ')} (libpq environment) to say where to connect`);
    process.exit(1);
  }
  console.log(`node ${process.version}, pg ${require('pg/package.json').version}`);
  const errors = [];
  const pids = new Set();
  try {
    await withClient(async (c) => {
      await c.query('DROP TABLE IF EXISTS node_items');
      await c.query(
        'CREATE TABLE node_items (worker int, n int, label text, PRIMARY KEY (worker, n))',
      );
    });
    await Promise.all(Array.from({ length: CLIENTS }, (_, w) => worker(w, errors, pids)));
    if (errors.length === 0) {
      const rows = await withClient((c) => value(c, 'SELECT count(*)::int AS v FROM node_items'));
      check('node_items rows', rows, CLIENTS * ITERATIONS);
    }
  } catch (err) {
    errors.push(`main: ${err.stack || err}`);
  }
  for (const error of errors) console.log(error);
  console.log(
    `pg: ${CLIENTS} clients x ${ITERATIONS} iterations of named queries, ` +
      `${pids.size} distinct server pids, ${errors.length} failed`,
  );
  process.exit(errors.length ? 1 : 0);
}

main();
