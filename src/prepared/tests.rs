//! Rewriter and Pending together, without sockets: client messages in, bytes for the server
//! out, then the server's replies in and what the client gets out.

use super::*;
use crate::protocol::framer::{Disposition, View};

#[derive(Default)]
struct World {
    registry: Registry,
    client: ClientStatements,
    server: ServerStatements,
    pending: Pending,
    counts: CacheCounts,
}

impl World {
    fn rw(&mut self, max: usize) -> Rewriter<'_> {
        Rewriter {
            client: &mut self.client,
            server: &mut self.server,
            pending: &mut self.pending,
            max,
            tx_failed: false,
            counts: &self.counts,
        }
    }

    fn parse(&mut self, name: &str, sql: &str) -> Disposition {
        let key = [sql.as_bytes(), b"\0\0\0"].concat();
        let stmt = self.registry.intern(&key, Analysis::default);
        self.rw(2).parse_named(name.as_bytes(), stmt)
    }

    fn bind(&mut self, name: &str) -> Disposition {
        let body = [b"\0", name.as_bytes(), b"\0\0\0\0\0\0\0"].concat();
        self.rw(2)
            .bind(5 + body.len(), View::Whole(&body))
            .disposition
    }

    /// Feeds server replies by tag; returns what reaches the client, as tags.
    fn reply(&mut self, tags: &str) -> String {
        let mut seen = String::new();
        for t in tags.bytes() {
            let body: &[u8] = match t {
                b'Z' => b"I",
                b'E' => b"SERROR\0C42601\0Msyntax error\0\0",
                _ => b"",
            };
            let mut caches = Caches {
                client: &mut self.client,
                server: &mut self.server,
            };
            match self.pending.on_server(t, Some(body), &mut caches) {
                Disposition::Forward => seen.push(t as char),
                Disposition::Drop | Disposition::Hold | Disposition::Refuse => {}
                Disposition::Replace { with, .. } => seen.push(with[0] as char),
            }
        }
        seen
    }
}

/// The message tags in bytes sent to the server.
fn sent(d: &Disposition) -> String {
    let Disposition::Replace { with, .. } = d else {
        return "forwarded".into();
    };
    let mut tags = String::new();
    let mut rest: &[u8] = with;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        tags.push(rest[0] as char);
        rest = &rest[(1 + len).min(rest.len())..];
    }
    tags
}

#[test]
fn a_new_statement_is_closed_then_parsed_and_only_its_parse_complete_shows() {
    let mut w = World::default();
    assert_eq!(sent(&w.parse("s1", "SELECT 1")), "CP");
    w.rw(2).ready_owed();
    assert_eq!(w.reply("31Z"), "1Z");
    assert_eq!(w.server.len(), 1);
}

#[test]
fn a_statement_the_server_has_gets_a_stand_in_close_answered_as_parse_complete() {
    let mut w = World::default();
    w.parse("a", "SELECT 1");
    w.reply("31");
    assert_eq!(sent(&w.parse("b", "SELECT 1")), "C");
    assert_eq!(w.reply("3"), "1");
}

#[test]
fn binding_on_a_server_without_the_statement_prepares_it_unseen() {
    let mut w = World::default();
    w.parse("s", "SELECT 1");
    w.reply("31");
    w.server.clear();
    assert_eq!(sent(&w.bind("s")), "CPB");
    assert_eq!(w.reply("312"), "2");
    assert_eq!(sent(&w.bind("s")), "B");
    let counts = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (counts(&w.counts.hits), counts(&w.counts.misses)),
        (1, 2),
        "the Parse and the first Bind missed, the second Bind hit"
    );
}

#[test]
fn a_reused_name_fails_in_order_and_keeps_the_first_statement() {
    let mut w = World::default();
    w.parse("s", "SELECT 1");
    w.reply("31");
    assert_eq!(sent(&w.parse("s", "SELECT 2")), "P");
    assert_eq!(w.reply("E"), "E");
    assert!(w.client.get(b"s").is_some());
}

#[test]
fn an_error_before_a_parse_undoes_it() {
    let mut w = World::default();
    assert_eq!(sent(&w.bind("nope")), "P", "unknown name: a failing Parse");
    w.parse("s", "SELECT 1");
    w.rw(2).ready_owed();
    assert_eq!(w.reply("EZ"), "EZ");
    assert!(
        w.client.get(b"s").is_none(),
        "the skipped Parse never happened"
    );
    assert!(w.server.is_empty());
}

#[test]
fn the_least_recently_used_statement_is_closed_to_make_room() {
    let mut w = World::default();
    for (i, sql) in ["SELECT 1", "SELECT 2", "SELECT 3"].iter().enumerate() {
        let d = w.parse(&format!("s{i}"), sql);
        if i == 2 {
            assert_eq!(sent(&d), "CCP", "evict one, close own name, parse");
            assert_eq!(w.reply("331"), "1");
        } else {
            w.reply("31");
        }
    }
    assert_eq!(w.server.len(), 2);
}

#[test]
fn a_long_bind_keeps_its_tail_and_gets_a_new_head() {
    let mut w = World::default();
    w.parse("s", "SELECT $1");
    w.reply("31");
    let prefix = b"\0s\0\0\0";
    let Disposition::Replace { with, head } = w
        .rw(2)
        .bind(5 + 1_000_000, View::Prefix(prefix))
        .disposition
    else {
        panic!("expected a rewrite");
    };
    assert_eq!(head, 5 + 1 + 2);
    let name = w.client.get(b"s").map(|s| s.name.clone()).unwrap();
    let new_len = u32::from_be_bytes([with[1], with[2], with[3], with[4]]) as usize;
    assert_eq!(new_len, 1_000_004 - 1 + name.len());
    assert_eq!(&with[5..], &[b"\0", &name[..], b"\0"].concat()[..]);
}

#[test]
fn close_forgets_the_name_only_for_the_client() {
    let mut w = World::default();
    w.parse("s", "SELECT 1");
    w.reply("31");
    let body = b"Ss\0";
    assert_eq!(sent(&w.rw(2).close(View::Whole(body))), "C");
    assert_eq!(w.reply("3"), "3");
    assert!(w.client.is_empty());
    assert_eq!(w.server.len(), 1);
}

fn unnamed_parse(w: &mut World, sql: &str) -> Disposition {
    let body = [b"\0", sql.as_bytes(), b"\0\0\0"].concat();
    w.rw(2).parse_unnamed(Some(&body))
}

#[test]
fn the_unnamed_statement_is_parsed_again_on_a_server_holding_another() {
    let mut w = World::default();
    assert_eq!(sent(&unnamed_parse(&mut w, "SELECT 1")), "forwarded");
    w.rw(2).ready_owed();
    assert_eq!(w.reply("1Z"), "1Z");
    assert_eq!(sent(&w.bind("")), "forwarded", "this server holds it");
    w.reply("2");
    // Another server, holding another client's unnamed statement.
    let mut other = World::default();
    unnamed_parse(&mut other, "SELECT 2");
    std::mem::swap(&mut w.server, &mut other.server);
    assert_eq!(sent(&w.bind("")), "P", "the client's Parse goes first");
    assert_eq!(w.reply("12"), "2", "its ParseComplete is pgweir's");
    assert_eq!(sent(&w.bind("")), "forwarded");
    w.rw(2).query_sent();
    assert_eq!(sent(&w.bind("")), "P", "a Query dropped it: 26000");
    assert!(w.client.unnamed.is_none() && w.server.unnamed.is_none());
}

#[test]
fn a_failed_unnamed_parse_leaves_none_and_a_skipped_one_the_old() {
    let mut w = World::default();
    unnamed_parse(&mut w, "SELECT 1");
    w.rw(2).ready_owed();
    w.reply("1Z");
    let old = w.client.unnamed.as_ref().map(|u| u.id);
    assert_eq!(sent(&w.bind("nope")), "P");
    unnamed_parse(&mut w, "SELECT 2");
    w.rw(2).ready_owed();
    assert_eq!(w.reply("EZ"), "EZ");
    assert_eq!(w.client.unnamed.as_ref().map(|u| u.id), old, "skipped");
    unnamed_parse(&mut w, "SELEC");
    w.rw(2).ready_owed();
    assert_eq!(w.reply("EZ"), "EZ");
    assert!(
        w.client.unnamed.is_none() && w.server.unnamed.is_none(),
        "failed"
    );
}

#[test]
fn a_statement_prepared_before_a_ddl_fails_until_prepared_again() {
    let mut w = World::default();
    w.parse("s", "SELECT * FROM t");
    w.reply("31");
    let stmt = w.client.get(b"s").cloned().unwrap();
    stmt.invalidate(stmt.generation());
    for _ in 0..2 {
        assert_eq!(sent(&w.bind("s")), "P", "a failing Parse in its place");
        assert_eq!(w.reply("E"), "E");
    }
    let body = b"Ss\0";
    assert_eq!(
        sent(&w.rw(2).describe(View::Whole(body))),
        "CPDP",
        "a fresh copy is described, then the error raised"
    );
    assert_eq!(
        w.reply("31tTE"),
        "tE",
        "Postgres's order: parameters, then error"
    );
    w.rw(2).close(View::Whole(body));
    w.reply("3");
    assert_eq!(
        sent(&w.parse("s", "SELECT * FROM t")),
        "C",
        "the fresh copy"
    );
    w.reply("3");
    assert_eq!(sent(&w.bind("s")), "B");
}
