//! Differential raw-protocol scripts for the prepared-statement tests: a script runs straight
//! against Postgres and through pgweir, and the two transcripts must match. A rotating
//! target parks the two servers of a pool of 2 in open transactions of two holder clients
//! and lends one at a time, so a script's next transaction lands on a known server
//! ([`Target::next_server`]).

use std::future::Future;

use super::wire::{Msg, Wire};
use super::{cluster, within, Pgweir, TEST_DB, TRUST_USER};

/// A transaction-mode pgweir that lets [`Wire`] in without a password.
pub fn trust_pgweir(pool_size: usize) -> Pgweir {
    Pgweir::builder()
        .auth_type("trust")
        .pool_size(pool_size)
        .start()
}

/// Where a script runs: straight on Postgres, or through pgweir.
pub struct Target {
    port: u16,
    pooled: bool,
    /// Present only through a pgweir whose pool holds exactly 2 servers.
    rotation: Option<Rotation>,
}

/// Two holder clients that keep the pool's two servers in open transactions; `lent`
/// is the holder whose server was last handed back, the only one the script can get.
pub struct Rotation {
    port: u16,
    holders: Vec<(Wire, i32)>,
    lent: Option<usize>,
}

impl Target {
    pub fn direct() -> Target {
        Target {
            port: cluster().port,
            pooled: false,
            rotation: None,
        }
    }

    pub fn pooled(pgweir: &Pgweir, rotate: bool) -> Target {
        Target {
            port: pgweir.port,
            pooled: true,
            rotation: rotate.then(|| Rotation {
                port: pgweir.port,
                holders: Vec::new(),
                lent: None,
            }),
        }
    }

    pub async fn login(&self) -> Wire {
        Wire::startup(self.port, TRUST_USER.name, TEST_DB).await.0
    }

    /// Makes the other server of the pool the only free one, so the script's next
    /// transaction runs there. A no-op straight on Postgres or without rotation. Never
    /// call it while the script's client is inside a transaction block: the holder
    /// taking back the lent server would wait for it forever.
    pub async fn next_server(&mut self) {
        if let Some(rotation) = &mut self.rotation {
            rotation.advance().await;
        }
    }

    /// Asserts that `wire`'s transactions run on the server lent last.
    pub async fn check_server(&self, wire: &mut Wire) {
        let Some(rotation) = &self.rotation else {
            return;
        };
        let Some(lent) = rotation.lent else {
            return;
        };
        let pid = query_value(wire, "SELECT pg_backend_pid()").await;
        assert_eq!(
            pid,
            rotation.holders[lent].1.to_string(),
            "the script's transaction did not run on the lent server"
        );
    }

    /// Prepared statements existing on the server a fresh client gets: the pool's
    /// only server when the pool has one. None straight on Postgres.
    pub async fn server_statements(&self) -> Option<i64> {
        if !self.pooled {
            return None;
        }
        let mut wire = self.login().await;
        let count = query_value(&mut wire, "SELECT count(*) FROM pg_prepared_statements").await;
        Some(count.parse().expect("a count"))
    }
}

impl Rotation {
    pub async fn advance(&mut self) {
        if self.holders.is_empty() {
            for _ in 0..2 {
                let mut wire = Wire::startup(self.port, TRUST_USER.name, TEST_DB).await.0;
                let pid = hold(&mut wire).await;
                self.holders.push((wire, pid));
            }
            assert_ne!(self.holders[0].1, self.holders[1].1, "two servers");
        }
        if let Some(back) = self.lent {
            let pid = hold(&mut self.holders[back].0).await;
            assert_eq!(pid, self.holders[back].1, "the pool changed its servers");
        }
        let next = self.lent.map_or(0, |last| 1 - last);
        let holder = &mut self.holders[next].0;
        assert_eq!(roundtrip(holder.query("COMMIT")).await, "C COMMIT | Z I");
        self.lent = Some(next);
    }
}

/// Opens a transaction that holds a server; returns that server's pid.
pub async fn hold(wire: &mut Wire) -> i32 {
    let pid = query_value(wire, "BEGIN; SELECT pg_backend_pid()").await;
    pid.parse().expect("a pid")
}

/// The first column of the only row a simple query returns.
pub async fn query_value(wire: &mut Wire, sql: &str) -> String {
    wire.query(sql).send().await;
    let msgs = wire.until_ready().await;
    let row = msgs.iter().find(|m| m.tag == b'D');
    let value = row.and_then(|row| columns(row).into_iter().next().flatten());
    value.unwrap_or_else(|| panic!("{sql}: no value in {:?}", transcript(&msgs)))
}

/// Sends everything queued and renders the answer up to ReadyForQuery.
pub async fn roundtrip(wire: &mut Wire) -> String {
    wire.send().await;
    transcript(&wire.until_ready().await)
}

pub fn transcript(msgs: &[Msg]) -> String {
    msgs.iter()
        .filter_map(render)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// One message as text; None for the kinds a pooler may add, drop or change.
pub fn render(msg: &Msg) -> Option<String> {
    let body = &msg.body;
    Some(match msg.tag {
        b'S' | b'K' | b'N' => return None,
        b'E' => format!(
            "E {} {}",
            msg.sqlstate().unwrap_or_default(),
            msg.message().unwrap_or_default()
        ),
        b'D' => {
            let values: Vec<String> = columns(msg)
                .into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect();
            format!("D {}", values.join(","))
        }
        b'C' => format!("C {}", String::from_utf8_lossy(&body[..body.len() - 1])),
        b'Z' => format!("Z {}", body[0] as char),
        b'T' => format!("T {}", row_description(body)),
        b't' => {
            let oids: Vec<String> = body[2..]
                .chunks(4)
                .map(|oid| u32::from_be_bytes(oid.try_into().unwrap()).to_string())
                .collect();
            format!("t {}", oids.join(","))
        }
        tag if body.is_empty() => (tag as char).to_string(),
        tag => format!("{} {:?}", tag as char, body),
    })
}

/// Every column of a DataRow as text (None for NULL).
pub fn columns(msg: &Msg) -> Vec<Option<String>> {
    let count = i16::from_be_bytes(msg.body[0..2].try_into().unwrap());
    let mut at = 2;
    (0..count)
        .map(|_| {
            let len = i32::from_be_bytes(msg.body[at..at + 4].try_into().unwrap());
            at += 4;
            (len >= 0).then(|| {
                let value = &msg.body[at..at + len as usize];
                at += len as usize;
                String::from_utf8_lossy(value).into_owned()
            })
        })
        .collect()
}

/// `name:type_oid` of every field of a RowDescription.
pub fn row_description(body: &[u8]) -> String {
    let count = i16::from_be_bytes(body[0..2].try_into().unwrap());
    let mut at = 2;
    let fields: Vec<String> = (0..count)
        .map(|_| {
            let end = at + body[at..].iter().position(|b| *b == 0).unwrap();
            let name = String::from_utf8_lossy(&body[at..end]).into_owned();
            let oid = u32::from_be_bytes(body[end + 7..end + 11].try_into().unwrap());
            at = end + 19;
            format!("{name}:{oid}")
        })
        .collect();
    fields.join(",")
}

/// Runs `script` straight on Postgres, asserts the transcript is `expected`, then runs
/// it through pgweir (rotating between its 2 servers if `rotate`) and asserts the same.
pub async fn differential<F, Fut, S>(pgweir: &Pgweir, rotate: bool, expected: &[S], script: F)
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = Vec<String>>,
    S: AsRef<str>,
{
    let direct = within(120, "script on Postgres", script(Target::direct())).await;
    let expected: Vec<&str> = expected.iter().map(AsRef::as_ref).collect();
    assert_eq!(direct, expected, "Postgres itself answers otherwise");
    let target = Target::pooled(pgweir, rotate);
    let pooled = within(120, "script through pgweir", script(target)).await;
    assert_eq!(pooled, direct, "pgweir answers otherwise than Postgres");
}

/// The transcript of Bind + Execute + Sync of a one-row, one-column statement.
pub fn row(value: impl std::fmt::Display) -> String {
    format!("2 | D {value} | C SELECT 1 | Z I")
}

/// Postgres's answer to naming a statement the session does not have, up to Sync.
pub fn missing(name: &str) -> String {
    format!("E 26000 prepared statement \"{name}\" does not exist | Z I")
}

/// Postgres's error for a Parse of a name the session already has.
pub fn exists(name: &str) -> String {
    format!("E 42P05 prepared statement \"{name}\" already exists")
}
