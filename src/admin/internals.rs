//! The SHOW commands about PgBouncer's internals, with PgBouncer 1.25's columns and what
//! pgweir can truthfully put in them:
//!
//! - FDS: the listening sockets (PgBouncer lists them as task `pooler`, and also every
//!   connection's descriptor and secrets for its online restart, which pgweir does not have).
//! - SOCKETS and ACTIVE_SOCKETS: SHOW CLIENTS' and SHOW SERVERS' rows (states as `cl_*` and
//!   `sv_*`), with the buffer columns NULL: pgweir does not track buffer positions per socket.
//!   ACTIVE_SOCKETS has the clients and servers in a transaction.
//! - MEM: PgBouncer's object caches have no counterpart; one row tells the process's
//!   resident memory (`size` a page, `used` pages, `memtotal` bytes).
//! - DNS_HOSTS, DNS_ZONES, PEERS: no rows: pgweir keeps no DNS cache (it resolves at
//!   connect) and has no `[peers]`.

use bytes::BytesMut;

use super::result::{ResultSet, Type, Value};
use super::show::clamp;
use super::sockets::{client_rows, server_rows, CLIENTS};
use crate::app::App;

pub const FDS: [(&str, Type); 15] = [
    ("fd", Type::Int4),
    ("task", Type::Text),
    ("user", Type::Text),
    ("database", Type::Text),
    ("addr", Type::Text),
    ("port", Type::Int4),
    ("cancel", Type::Int8),
    ("link", Type::Int4),
    ("client_encoding", Type::Text),
    ("std_strings", Type::Text),
    ("datestyle", Type::Text),
    ("timezone", Type::Text),
    ("password", Type::Text),
    ("scram_client_key", Type::Bytea),
    ("scram_server_key", Type::Bytea),
];

pub fn fds(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &FDS);
    for l in app.listening.get().into_iter().flatten() {
        let mut row = vec![
            l.fd.into(),
            "pooler".into(),
            Value::Null,
            Value::Null,
            l.addr.as_str().into(),
            l.port.into(),
            0usize.into(),
            0usize.into(),
        ];
        row.resize(FDS.len(), Value::Null);
        rs.row(row);
    }
    rs.finish();
}

/// SHOW SOCKETS' columns: SHOW CLIENTS', then the buffer positions.
pub const SOCKETS: [(&str, Type); 28] = {
    let mut columns = [("", Type::Int4); 28];
    let mut i = 0;
    while i < CLIENTS.len() {
        columns[i] = CLIENTS[i];
        i += 1;
    }
    let buffers = [
        "recv_pos",
        "pkt_pos",
        "pkt_remain",
        "send_pos",
        "send_remain",
        "pkt_avail",
        "send_avail",
    ];
    let mut j = 0;
    while j < buffers.len() {
        columns[CLIENTS.len() + j] = (buffers[j], Type::Int4);
        j += 1;
    }
    columns
};

/// Where SHOW CLIENTS and SHOW SERVERS have the state.
const STATE: usize = 4;

/// Every client and server (`active_only`: those in a transaction).
pub fn sockets(app: &App, active_only: bool, out: &mut BytesMut) {
    let clients = client_rows(app).into_iter().map(|r| ("cl_", r));
    let servers = server_rows(app).into_iter().map(|mut r| {
        r.truncate(CLIENTS.len());
        ("sv_", r)
    });
    let mut rs = ResultSet::new(out, &SOCKETS);
    for (prefix, mut row) in clients.chain(servers) {
        let Value::Text(state) = &row[STATE] else {
            continue;
        };
        if active_only && state != "active" {
            continue;
        }
        row[STATE] = format!("{prefix}{state}").into();
        row.resize(SOCKETS.len(), Value::Null);
        rs.row(row);
    }
    rs.finish();
}

pub const MEM: [(&str, Type); 5] = [
    ("name", Type::Text),
    ("size", Type::Int4),
    ("used", Type::Int4),
    ("free", Type::Int4),
    ("memtotal", Type::Int4),
];

pub fn mem(out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &MEM);
    if let Some((page, pages)) = resident() {
        let bytes = clamp(page.saturating_mul(pages));
        rs.row([
            "resident".into(),
            clamp(page).into(),
            clamp(pages).into(),
            0usize.into(),
            bytes.into(),
        ]);
    }
    rs.finish();
}

/// The page size and the resident pages of this process (`/proc/self/statm`).
fn resident() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some((u64::try_from(page).ok()?, pages))
}

pub const DNS_HOSTS: [(&str, Type); 3] = [
    ("hostname", Type::Text),
    ("ttl", Type::Int8),
    ("addrs", Type::Text),
];

pub const DNS_ZONES: [(&str, Type); 3] = [
    ("zonename", Type::Text),
    ("serial", Type::Int8),
    ("count", Type::Int4),
];

pub const PEERS: [(&str, Type); 4] = [
    ("peer_id", Type::Int4),
    ("host", Type::Text),
    ("port", Type::Int4),
    ("pool_size", Type::Int4),
];

/// A result with `columns` and no rows: what pgweir does not have.
pub fn none(columns: &[(&str, Type)], out: &mut BytesMut) {
    ResultSet::new(out, columns).finish();
}
