//! What replica routing costs per statement: `cargo bench --bench classify` times
//! [`pgweir::sql::classify`] on short statements (pgbench's, a join, a write) and on a
//! 10 MB statement (a 100,000-item IN list of 100-byte strings), and prints ns per call.
//! A plain timing loop: the numbers are for comparing, on one machine, in one run.

use std::hint::black_box;
use std::time::Instant;

use pgweir::sql::{classify, ReadOnlyFunctions};

/// Runs `sql` through the classifier `iterations` times and returns ns per call.
fn per_call(sql: &[u8], iterations: u32, functions: &ReadOnlyFunctions) -> f64 {
    for _ in 0..iterations.min(100) {
        black_box(classify(black_box(sql), functions));
    }
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(classify(black_box(sql), functions));
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn in_list(items: usize) -> String {
    let mut sql = String::from("SELECT id, name FROM accounts WHERE name IN (");
    for i in 0..items {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("'{i:0>96}'"));
    }
    sql.push(')');
    sql
}

fn main() {
    let functions = ReadOnlyFunctions::default();
    let short: [(&str, &str); 4] = [
        (
            "pgbench -S",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
        ),
        (
            "join + functions",
            "SELECT a.id, lower(b.name), count(*) FROM a JOIN b ON a.id = b.a_id \
             WHERE a.created > now() - interval '1 day' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10",
        ),
        (
            "write",
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 4711",
        ),
        (
            "comment + dollar quote",
            "/* pgweir:replica */ SELECT $q$it's ; INSERT$q$ AS text, E'a\\'b' FROM t",
        ),
    ];
    println!("| statement | bytes | ns per call |");
    println!("|---|---:|---:|");
    for (name, sql) in short {
        let ns = per_call(sql.as_bytes(), 1_000_000, &functions);
        println!("| {name} | {} | {ns:.0} |", sql.len());
    }
    let big = in_list(100_000);
    let ns = per_call(big.as_bytes(), 10, &functions);
    println!(
        "| 100,000-item IN list | {} | {:.1} ms ({:.2} ns/byte) |",
        big.len(),
        ns / 1e6,
        ns / big.len() as f64
    );
}
