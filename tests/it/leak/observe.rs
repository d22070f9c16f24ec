//! After every step, what the client sees of its session must be exactly its model.
//!
//! One simple-protocol query reads every tracked setting and lists the session's
//! SQL prepared statements, advisory locks, temp tables, channels and holdable
//! cursors, then runs each of the client's prepared statements, fetches each cursor
//! and reads each temp table: one query, so one server, and the values are unique to
//! the client, so a look-alike object of another client is caught too. Then one
//! pipeline describes and runs each protocol-level statement. In an aborted
//! transaction, all there is to see is that statements are refused.

use std::collections::BTreeSet;

use super::model::{Model, GUCS, REPORTED, TAG};
use super::session::Client;

/// The session's settings and objects, in one row.
fn state_query() -> String {
    let settings: Vec<String> = GUCS
        .iter()
        .map(|g| format!("current_setting('{}', true)", g.name))
        .collect();
    format!(
        "SELECT pg_backend_pid(), {},
           (SELECT string_agg(name, ' ') FROM pg_prepared_statements WHERE from_sql),
           (SELECT string_agg(((classid::bigint << 32) | objid::bigint)::text, ' ')
              FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1
               AND pid = pg_backend_pid()),
           (SELECT string_agg(relname, ' ') FROM pg_class
             WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r'),
           (SELECT string_agg(c, ' ') FROM pg_listening_channels() c),
           (SELECT string_agg(name, ' ') FROM pg_cursors WHERE is_holdable)",
        settings.join(", ")
    )
}

fn words(column: &Option<String>) -> BTreeSet<String> {
    column
        .iter()
        .flat_map(|s| s.split(' '))
        .map(str::to_string)
        .collect()
}

fn names<'a>(items: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    items.cloned().collect()
}

/// Checks everything the client can see against `m`; returns the backend pid (0 in
/// an aborted transaction, where it cannot be asked).
pub async fn observe(c: &mut Client, m: &Model) -> i32 {
    if m.failed() {
        let reply = c.query("SELECT pg_backend_pid()").await;
        let code = reply.error().map(|(code, _)| code);
        if code.as_deref() != Some("25P02") || reply.status() != b'E' {
            c.fail(format!(
                "in an aborted transaction a query gave {code:?}, status '{}'",
                reply.status() as char
            ));
        }
        return 0;
    }
    let pid = check_state(c, m).await;
    check_protocol_statements(c, m, pid).await;
    for i in REPORTED {
        let want = m.setting(i).unwrap_or_default();
        if c.reported(GUCS[i].name) != want {
            c.fail(format!(
                "last ParameterStatus {} = {:?}, but the session has {want:?} (pid {pid})",
                GUCS[i].name,
                c.reported(GUCS[i].name)
            ));
        }
    }
    pid
}

async fn check_state(c: &mut Client, m: &Model) -> i32 {
    let mut sql = state_query();
    let mut want_values = Vec::new();
    for (name, value) in &m.prepared {
        sql.push_str(&format!("; EXECUTE {name}"));
        want_values.push((format!("EXECUTE {name}"), value));
    }
    for (name, value) in &m.cursors {
        sql.push_str(&format!("; FETCH FIRST FROM {name}"));
        want_values.push((format!("FETCH FIRST FROM {name}"), value));
    }
    for (name, value) in &m.temps {
        sql.push_str(&format!("; SELECT v FROM pg_temp.{name}"));
        want_values.push((format!("SELECT v FROM pg_temp.{name}"), value));
    }
    let reply = c.query(&sql).await;
    if let Some((code, msg)) = reply.error() {
        c.fail(format!("observing the session failed: {code} {msg}"));
    }
    if reply.status() != m.status() {
        c.fail(format!("observing: status '{}'", reply.status() as char));
    }
    let sets = reply.result_sets();
    let pid: i32 = sets[0][0][0].as_deref().unwrap_or("0").parse().unwrap_or(0);
    let wrong = differences(m, &sets, &want_values);
    if !wrong.is_empty() {
        c.fail(format!(
            "the session is not the client's own (backend pid {pid}):\n  {}",
            wrong.join("\n  ")
        ));
    }
    pid
}

/// Everything in the observation's result sets that is not as the model says: the
/// state row first, then one set per (statement, expected value) in `want_values`.
fn differences(
    m: &Model,
    sets: &[Vec<Vec<Option<String>>>],
    want_values: &[(String, &String)],
) -> Vec<String> {
    let row = &sets[0][0];
    let mut wrong = Vec::new();
    for (i, g) in GUCS.iter().enumerate() {
        let mut seen = row[1 + i].clone();
        if i == TAG && seen.as_deref() == Some("") {
            seen = None;
        }
        if seen != m.setting(i) {
            wrong.push(format!(
                "{}: saw {seen:?}, expected {:?}",
                g.name,
                m.setting(i)
            ));
        }
    }
    let at = 1 + GUCS.len();
    let objects = [
        ("SQL prepared statements", names(m.prepared.keys())),
        (
            "advisory locks",
            m.held_keys().iter().map(i64::to_string).collect(),
        ),
        ("temp tables", names(m.temps.keys())),
        ("listening channels", m.channels.clone()),
        ("holdable cursors", names(m.cursors.keys())),
    ];
    for (k, (what, want)) in objects.into_iter().enumerate() {
        let seen = words(&row[at + k]);
        if seen != want {
            wrong.push(format!("{what}: saw {seen:?}, expected {want:?}"));
        }
    }
    for ((what, want), set) in want_values.iter().zip(&sets[1..]) {
        let seen = set.first().and_then(|r| r[0].clone());
        if seen.as_deref() != Some(want.as_str()) {
            wrong.push(format!("{what}: saw {seen:?}, expected {want:?}"));
        }
    }
    wrong
}

/// Describes and runs each protocol-level statement in one pipeline: each must
/// exist and answer with its own column name and value.
async fn check_protocol_statements(c: &mut Client, m: &Model, pid: i32) {
    if m.protocol.is_empty() {
        return;
    }
    for name in m.protocol.keys() {
        c.wire().describe(b'S', name).bind("", name).execute("");
    }
    c.wire().sync();
    let reply = c.exchange().await;
    if let Some((code, msg)) = reply.error() {
        c.fail(format!(
            "running the client's statements {:?} failed: {code} {msg} (last pid {pid})",
            m.protocol.keys().collect::<Vec<_>>()
        ));
    }
    let want: Vec<Option<String>> = m.protocol.values().cloned().map(Some).collect();
    let want_names: Vec<String> = m.protocol.values().cloned().collect();
    if reply.values() != want || reply.column_names() != want_names {
        c.fail(format!(
            "the client's statements {:?} answered {:?} with columns {:?}, expected {want:?} \
             (last pid {pid})",
            m.protocol.keys().collect::<Vec<_>>(),
            reply.values(),
            reply.column_names()
        ));
    }
    if reply.status() != m.status() {
        c.fail(format!("statements: status '{}'", reply.status() as char));
    }
}
