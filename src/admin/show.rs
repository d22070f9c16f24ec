//! SHOW POOLS, DATABASES, USERS, LISTS, STATE, VERSION and HELP, with PgBouncer's
//! columns in PgBouncer's order and types, and [`write`](fn@write), which sends each SHOW
//! to the file that answers it. Columns for things pgweir does not have (cancel-request
//! queues, tested servers, DNS, peers, suspending) are there with 0 or NULL, so tools that
//! read them by name or position work.

use std::collections::HashMap;

use bytes::BytesMut;

use super::parse::Show;
use super::result::{notice, ResultSet, Type, Value};
use super::{fleet, internals, settings, sockets, stats};
use crate::app::App;
use crate::clients::ClientState;
use crate::config::Node;
use crate::pool::state::Snapshot;

/// Answers one SHOW into `out`.
pub fn write(app: &App, what: Show, out: &mut BytesMut) {
    match what {
        Show::Pools => pools(app, out),
        Show::Stats => stats::stats(app, out),
        Show::StatsTotals => stats::stats_totals(app, out),
        Show::Clients => sockets::clients(app, out),
        Show::Servers => sockets::servers(app, out),
        Show::Databases => databases(app, out),
        Show::Users => users(app, out),
        Show::Config => settings::config(app, out),
        Show::Lists => lists(app, out),
        Show::State => state(app, out),
        Show::Version => version(out),
        Show::Help => help(out),
        Show::Fds => internals::fds(app, out),
        Show::Sockets => internals::sockets(app, false, out),
        Show::ActiveSockets => internals::sockets(app, true, out),
        Show::Mem => internals::mem(out),
        Show::DnsHosts => internals::none(&internals::DNS_HOSTS, out),
        Show::DnsZones => internals::none(&internals::DNS_ZONES, out),
        Show::Peers => internals::none(&internals::PEERS, out),
        Show::Totals => stats::totals_all(app, out),
        Show::StatsAverages => stats::stats_averages(app, out),
        Show::Fleet => fleet::fleet(app, out),
    }
}

pub const POOLS: [(&str, Type); 19] = [
    ("database", Type::Text),
    ("user", Type::Text),
    ("cl_active", Type::Int4),
    ("cl_waiting", Type::Int4),
    ("cl_active_cancel_req", Type::Int4),
    ("cl_waiting_cancel_req", Type::Int4),
    ("sv_active", Type::Int4),
    ("sv_active_cancel", Type::Int4),
    ("sv_being_canceled", Type::Int4),
    ("sv_idle", Type::Int4),
    ("sv_used", Type::Int4),
    ("sv_tested", Type::Int4),
    ("sv_login", Type::Int4),
    ("maxwait", Type::Int4),
    ("maxwait_us", Type::Int4),
    ("pool_mode", Type::Text),
    ("load_balance_hosts", Type::Text),
    // pgweir's own: `primary`, `replica0`, ... for databases with replicas.
    ("node", Type::Text),
    // pgweir's own: logins Postgres refused for a connection limit (53300).
    ("sv_refused", Type::Int8),
];

/// One row per pool, and a database with replicas has a pool per node, its `database`
/// named for the node ([`Node::console_name`]: `app/replica0`), so no two rows share a
/// (database, user). Clients are not tied to a node until they wait for one, so `cl_active`
/// (clients logged in and not waiting) is on the primary's row, `cl_waiting` on the row of
/// the node waited for.
fn pools(app: &App, out: &mut BytesMut) {
    let active = clients_by_pool(app);
    let mut groups = app.pools.groups();
    groups.sort_by(|a, b| {
        (&a.stats.database, &a.stats.user).cmp(&(&b.stats.database, &b.stats.user))
    });
    let mut rs = ResultSet::new(out, &POOLS);
    for group in &groups {
        let key = (group.stats.database.clone(), group.stats.user.clone());
        for (node, pool) in group.pools() {
            let s = pool.snapshot();
            let cl_active = match node {
                Node::Primary => active.get(&key).copied().unwrap_or(0),
                Node::Replica(_) => 0,
            };
            let wait = s.max_wait;
            rs.row([
                node.console_name(&key.0).into(),
                key.1.as_str().into(),
                cl_active.into(),
                s.waiting.into(),
                0usize.into(),
                0usize.into(),
                s.active.into(),
                0usize.into(),
                0usize.into(),
                s.idle.into(),
                s.used.into(),
                0usize.into(),
                s.login.into(),
                clamp(wait.as_secs()).into(),
                wait.subsec_micros().into(),
                pool.mode().as_str().into(),
                Value::Null,
                node.label().into(),
                s.refused.into(),
            ]);
        }
    }
    rs.finish();
}

/// Logged-in clients that are not waiting for a server, by the pool they use: (database,
/// server user), the server user being the database's forced `user` when it has one.
fn clients_by_pool(app: &App) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    let config = app.config();
    for c in app.clients.all() {
        let Some(db) = config.databases.get(&c.database) else {
            continue;
        };
        if c.state() == ClientState::Waiting {
            continue;
        }
        let user = db.user.clone().unwrap_or_else(|| c.user.clone());
        *counts.entry((c.database.clone(), user)).or_insert(0) += 1;
    }
    counts
}

/// An int4 column's value from a count that could in theory be larger.
pub fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Server connections a snapshot counts: handed out, idle, or logging in.
fn open(s: &Snapshot) -> usize {
    s.active + s.idle + s.used + s.login
}

pub const DATABASES: [(&str, Type); 17] = [
    ("name", Type::Text),
    ("host", Type::Text),
    ("port", Type::Int4),
    ("database", Type::Text),
    ("force_user", Type::Text),
    ("pool_size", Type::Int4),
    ("min_pool_size", Type::Int4),
    // PgBouncer 1.24 renamed it `reserve_pool_size`; every pgbouncer_exporter reads this
    // name, and the newer ones break on both (see the README's console versions).
    ("reserve_pool", Type::Int4),
    ("server_lifetime", Type::Int4),
    ("pool_mode", Type::Text),
    ("load_balance_hosts", Type::Text),
    ("max_connections", Type::Int4),
    ("current_connections", Type::Int4),
    ("max_client_connections", Type::Int4),
    ("current_client_connections", Type::Int4),
    ("paused", Type::Int4),
    ("disabled", Type::Int4),
];

/// One row per configured database: where its primary is and its database-level
/// settings (`pool_mode` only when the database overrides it, as in PgBouncer), then one
/// per replica, named as SHOW POOLS names it (`app/replica0`), with its address.
/// `current_connections` counts the connections to that node, as `max_connections`
/// limits them per server.
fn databases(app: &App, out: &mut BytesMut) {
    let (cfg, pools) = (&app.config(), app.pools.all());
    let clients = app.clients.all();
    let mut rs = ResultSet::new(out, &DATABASES);
    for (name, db) in &cfg.databases {
        let nodes = std::iter::once((Node::Primary, db.host.as_str(), db.port));
        let replicas = (db.replicas.iter().enumerate())
            .map(|(i, r)| (Node::Replica(i), r.host.as_str(), r.port));
        for (node, host, port) in nodes.chain(replicas) {
            let servers: usize = (pools.iter())
                .filter(|p| &p.key.database == name && p.key.node == node)
                .map(|p| open(&p.snapshot()))
                .sum();
            let lifetime = db.server_lifetime.unwrap_or(cfg.pool.server_lifetime);
            rs.row([
                node.console_name(name).into(),
                host.into(),
                port.into(),
                db.dbname.as_str().into(),
                db.user.as_deref().into(),
                db.pool_size.unwrap_or(cfg.pool.pool_size).into(),
                db.min_pool_size.unwrap_or(cfg.pool.min_pool_size).into(),
                db.reserve_pool_size
                    .unwrap_or(cfg.pool.reserve_pool_size)
                    .into(),
                clamp(lifetime.as_secs()).into(),
                db.pool_mode.map(|m| m.as_str()).into(),
                Value::Null,
                db.max_db_connections
                    .unwrap_or(cfg.pool.max_db_connections)
                    .into(),
                servers.into(),
                cfg.pgweir.max_db_client_connections.into(),
                (clients.iter())
                    .filter(|c| &c.database == name && node == Node::Primary)
                    .count()
                    .into(),
                usize::from(app.pools.control.is_paused(name)).into(),
                usize::from(app.pools.control.is_disabled(name)).into(),
            ]);
        }
    }
    rs.finish();
}

pub const USERS: [(&str, Type); 8] = [
    ("name", Type::Text),
    ("pool_size", Type::Text),
    ("reserve_pool_size", Type::Text),
    ("pool_mode", Type::Text),
    ("max_user_connections", Type::Int4),
    ("current_connections", Type::Int4),
    ("max_user_client_connections", Type::Int4),
    ("current_client_connections", Type::Int4),
];

/// One row per user of `[users]` and the auth file (never their secrets): its overrides
/// (NULL when it has none, as PgBouncer shows them) and its server and client connections
/// over every pool.
fn users(app: &App, out: &mut BytesMut) {
    let (cfg, pools) = (&app.config(), app.pools.all());
    let clients = app.clients.all();
    let mut names: Vec<String> = app.users().names().map(str::to_owned).collect();
    names.sort();
    let none = crate::config::UserConfig::default();
    let mut rs = ResultSet::new(out, &USERS);
    for name in &names {
        let u = cfg.users.get(name).unwrap_or(&none);
        let servers: usize = (pools.iter())
            .filter(|p| &p.key.user == name)
            .map(|p| open(&p.snapshot()))
            .sum();
        let text = |n: Option<usize>| n.map(|n| n.to_string());
        rs.row([
            name.as_str().into(),
            text(u.pool_size).into(),
            text(u.reserve_pool_size).into(),
            u.pool_mode.map(|m| m.as_str()).into(),
            u.max_user_connections
                .unwrap_or(cfg.pool.max_user_connections)
                .into(),
            servers.into(),
            cfg.pgweir.max_user_client_connections.into(),
            clients.iter().filter(|c| &c.user == name).count().into(),
        ]);
    }
    rs.finish();
}

pub const LISTS: [(&str, Type); 2] = [("list", Type::Text), ("items", Type::Int4)];

/// PgBouncer's internal list sizes. pgweir keeps no free lists, DNS cache or peers, so
/// those are 0; `used_servers` counts open server connections.
fn lists(app: &App, out: &mut BytesMut) {
    let pools = app.pools.all();
    let servers: usize = pools.iter().map(|p| open(&p.snapshot())).sum();
    let rows = [
        ("databases", app.config().databases.len()),
        ("users", app.config().users.len()),
        ("peers", 0),
        ("pools", pools.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", app.clients.all().len()),
        ("login_clients", 0),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    let mut rs = ResultSet::new(out, &LISTS);
    for (list, items) in rows {
        rs.row([list.into(), items.into()]);
    }
    rs.finish();
}

pub const STATE: [(&str, Type); 2] = [("key", Type::Text), ("value", Type::Text)];

/// `active` is no once shutdown has begun, `paused` yes while every database is paused;
/// suspending does not exist in pgweir.
fn state(app: &App, out: &mut BytesMut) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut rs = ResultSet::new(out, &STATE);
    for (key, on) in [
        ("active", app.accepting()),
        ("paused", app.paused()),
        ("suspended", false),
    ] {
        rs.row([key.into(), yes_no(on).into()]);
    }
    rs.finish();
}

pub const VERSION: [(&str, Type); 1] = [("version", Type::Text)];

fn version(out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &VERSION);
    rs.row([format!("pgweir {}", env!("CARGO_PKG_VERSION")).into()]);
    rs.finish();
}

/// As in PgBouncer: a notice listing the commands, and no rows.
fn help(out: &mut BytesMut) {
    let detail = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\
                  \n\tSHOW LISTS|STATE|FDS|SOCKETS|ACTIVE_SOCKETS|MEM|DNS_HOSTS|DNS_ZONES|PEERS\
                  \n\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|FLEET\
                  \n\tSET key = arg\
                  \n\tRELOAD\
                  \n\tPAUSE [<db>]\
                  \n\tRESUME [<db>]\
                  \n\tDISABLE <db>\
                  \n\tENABLE <db>\
                  \n\tRECONNECT [<db>]\
                  \n\tKILL [<db>]\
                  \n\tKILL_CLIENT <client_id>\
                  \n\tSHUTDOWN\
                  \n\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\
                  \n\tWAIT_CLOSE [<db>]";
    notice(out, "Console usage", detail);
    crate::protocol::backend::command_complete(out, "SHOW");
}
