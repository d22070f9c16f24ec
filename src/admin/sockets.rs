//! SHOW CLIENTS and SHOW SERVERS: one row per connection, in PgBouncer's socket columns.
//! Clients come from the [`crate::clients::ClientRegistry`] registry (console clients included, as
//! PgBouncer lists them), servers from each pool ([`crate::pool::Pool::servers`]).
//!
//! A client's `request_time` is when it last asked for a server (a pinned client's
//! transactions on the server it keeps do not count), and `wait`/`wait_us` how long it has
//! been waiting for one, if it is (seconds, and the microseconds beyond them).
//!
//! What pgweir does not track is shown empty rather than guessed: no `link` between a
//! client and its server, no `application_name` per client, no count of
//! `prepared_statements` per connection, no TLS, no replication connections
//! (`replication` is always `none`). A client's
//! `local_addr`/`local_port` are the configured listen address and port (`unix` on the
//! Unix socket, where `addr` is `unix` too and `port` pgweir's, as PgBouncer shows them); an active
//! server's `local_addr`/`local_port` are NULL (see [`crate::pool::servers::ServerInfo`]).
//! Servers still logging in have no row. `id` is `int8` where PgBouncer has `int4`: ids
//! are never reused, and a busy pooler can count past 2^31 connections.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;

use super::result::{timestamp, ResultSet, Type, Value};
use super::show::clamp;
use crate::app::App;
use crate::clients::ClientState;
use crate::config::{GeneralConfig, Node};
use crate::net::addr::Addr;
use crate::pool::servers::ServerInfo;

pub const CLIENTS: [(&str, Type); 21] = [
    ("type", Type::Text),
    ("user", Type::Text),
    ("database", Type::Text),
    ("replication", Type::Text),
    ("state", Type::Text),
    ("addr", Type::Text),
    ("port", Type::Int4),
    ("local_addr", Type::Text),
    ("local_port", Type::Int4),
    ("connect_time", Type::Text),
    ("request_time", Type::Text),
    ("wait", Type::Int4),
    ("wait_us", Type::Int4),
    ("close_needed", Type::Int4),
    ("ptr", Type::Text),
    ("link", Type::Text),
    ("remote_pid", Type::Int4),
    ("tls", Type::Text),
    ("application_name", Type::Text),
    ("prepared_statements", Type::Int4),
    ("id", Type::Int8),
];

/// SHOW SERVERS has the same columns, and the node at the end.
pub const SERVERS: [(&str, Type); 22] = {
    let mut columns = [("node", Type::Text); 22];
    let mut i = 0;
    while i < CLIENTS.len() {
        columns[i] = CLIENTS[i];
        i += 1;
    }
    columns
};

/// PgBouncer's client states: a client holding a server is `active`, one queued for a
/// server `waiting`, any other `idle`.
fn client_state(s: ClientState) -> &'static str {
    match s {
        ClientState::Idle => "idle",
        ClientState::Waiting => "waiting",
        ClientState::Active | ClientState::Pinned => "active",
    }
}

pub fn clients(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &CLIENTS);
    for row in client_rows(app) {
        rs.row(row);
    }
    rs.finish();
}

/// Every client, by id, as SHOW CLIENTS shows it (and SHOW SOCKETS starts from).
pub fn client_rows(app: &App) -> Vec<Vec<Value>> {
    let mut all = app.clients.all();
    all.sort_by_key(|c| c.id);
    let g = &app.config().pgweir;
    let mut rows = Vec::with_capacity(all.len());
    for c in all {
        let head = [
            "C".into(),
            c.user.as_str().into(),
            c.database.as_str().into(),
            "none".into(),
            client_state(c.state()).into(),
            c.addr.host().into(),
            c.addr.port().into(),
            local_host(&c.addr, g).into(),
            g.listen_port.into(),
            timestamp(c.connected).into(),
            timestamp(c.request_time()).into(),
        ];
        let mut tail = socket_tail(c.id, 0, false, &c.tls);
        [tail[0], tail[1]] = wait_columns(c.waiting_for().unwrap_or_default());
        rows.push(head.into_iter().chain(tail).collect());
    }
    rows
}

/// A client's `local_addr`: `unix` on the socket, the configured `listen_addr` over TCP.
fn local_host(addr: &Addr, g: &GeneralConfig) -> String {
    match addr {
        Addr::Tcp(_) => g.listen_addr.to_string(),
        Addr::Unix { .. } => addr.host(),
    }
}

/// `wait` and `wait_us`: whole seconds, and the microseconds beyond them, as PgBouncer
/// splits a wait.
fn wait_columns(waited: Duration) -> [Value; 2] {
    [
        clamp(waited.as_secs()).into(),
        (waited.subsec_micros() as i32).into(),
    ]
}

/// The columns from `wait` to `id`, the same for clients and servers.
/// `close_needed`: a server RECONNECT marked, closed when it is released.
fn socket_tail(id: u64, remote_pid: i32, close_needed: bool, tls: &str) -> [Value; 10] {
    [
        0usize.into(),
        0usize.into(),
        usize::from(close_needed).into(),
        format!("{id:#x}").into(),
        "".into(),
        remote_pid.into(),
        tls.into(),
        "".into(),
        0usize.into(),
        id.into(),
    ]
}

pub fn servers(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &SERVERS);
    for row in server_rows(app) {
        rs.row(row);
    }
    rs.finish();
}

/// Every server connection of every pool, database by database, primary first, as SHOW
/// SERVERS shows it (the node last).
pub fn server_rows(app: &App) -> Vec<Vec<Value>> {
    let mut groups = app.pools.groups();
    groups.sort_by(|a, b| {
        (&a.stats.database, &a.stats.user).cmp(&(&b.stats.database, &b.stats.user))
    });
    let mut rows = Vec::new();
    for group in &groups {
        for (node, pool) in group.pools() {
            for s in pool.servers() {
                rows.push(server_row(&pool.key.database, &pool.key.user, node, &s));
            }
        }
    }
    rows
}

fn server_row(database: &str, user: &str, node: Node, s: &ServerInfo) -> Vec<Value> {
    let local = |f: fn(&SocketAddr) -> Value| s.local_addr.as_ref().map_or(Value::Null, f);
    let mut row = vec![
        "S".into(),
        user.into(),
        node.console_name(database).into(),
        "none".into(),
        s.state.as_str().into(),
        s.addr.host().into(),
        s.addr.port().into(),
        local(|a| a.ip().to_string().into()),
        local(|a| a.port().into()),
        timestamp(s.connected).into(),
        timestamp(s.since).into(),
    ];
    let tls = s.tls.map(|t| t.to_string()).unwrap_or_default();
    row.extend(socket_tail(s.id, s.remote_pid, s.close_needed, &tls));
    row.push(node.label().into());
    row
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::pool::servers::ServerState;

    #[test]
    fn server_rows_fill_every_column_and_end_with_the_node() {
        let now = SystemTime::now();
        let info = ServerInfo {
            id: 9,
            state: ServerState::Used,
            remote_pid: 4242,
            addr: Addr::Tcp("10.0.0.1:5432".parse().unwrap()),
            local_addr: None,
            connected: now,
            since: now,
            close_needed: true,
            tls: None,
        };
        let row = server_row("db", "u", Node::Replica(1), &info);
        assert_eq!(row.len(), SERVERS.len());
        let at = |name: &str| &row[SERVERS.iter().position(|(n, _)| *n == name).unwrap()];
        assert_eq!(at("state"), &Value::from("used"));
        assert_eq!(at("addr"), &Value::from("10.0.0.1"));
        assert_eq!(at("local_addr"), &Value::Null);
        assert_eq!(at("remote_pid"), &Value::from(4242));
        assert_eq!(at("id"), &Value::from(9u64));
        assert_eq!(at("node"), &Value::from("replica1"));
        assert_eq!(at("close_needed"), &Value::from(1usize));
        assert_eq!(SERVERS[..CLIENTS.len()], CLIENTS);
    }

    #[test]
    fn a_wait_is_split_into_seconds_and_microseconds() {
        let waited = Duration::from_micros(3_000_250);
        assert_eq!(wait_columns(waited), [Value::from(3), Value::from(250)]);
        assert_eq!(
            wait_columns(Duration::ZERO),
            [Value::from(0), Value::from(0)]
        );
    }
}
