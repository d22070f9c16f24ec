//! The relay's two inspectors: what pgweir looks at in each message flowing between a
//! client and its server, and what it changes. Client to server: Terminate, the
//! ReadyForQuery each request is owed, statement names ([`Rewriter`]) and statements that
//! touch session state ([`crate::sql::analyze`]). Server to client: ReadyForQuery status,
//! ParameterStatus, and the replies [`Pending`] accounts for. [`drain_client`] runs the
//! client side over what the client sent, for the relay.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::link::Link;
use super::relay::Session;
use super::routing::RouteCheck;
use super::state::Watch;
use super::txn::TxnTracker;
use crate::config::PoolMode;
use crate::error::SqlState;
use crate::prepared::{
    Analysis, Caches, ClientStatements, Pending, Registry, Rewriter, ServerStatements,
};
use crate::protocol::framer::{Disposition, Framer, Inspector, View, Want, MAX_INSPECTED_BODY};
use crate::protocol::{be, fe, split_cstr, ProtocolError, TxStatus};
use crate::server::ServerParams;
use crate::sql::{self, Classification, Effects, PinReason, Pins, ReadOnlyFunctions};
use crate::stats::{Clock, GroupStats};

/// Parse and Query messages up to this size are seen whole: a Parse's text is what pgweir
/// prepares on the next server, a Query's is analysed in full. Larger named statements are
/// refused; a larger Query is treated as one that may do anything.
pub const MAX_PARSE_BODY: usize = 16 * 1024 * 1024;
/// Custom setting names remembered per client, so a client inventing names cannot grow
/// the check query without bound.
const MAX_CUSTOM_NAMES: usize = 64;

/// Session-state bookkeeping the client side updates; absent in session mode, where the
/// client keeps its server and nothing needs to follow it.
pub struct Tracking<'a> {
    pub registry: &'a Registry,
    pub rw: Rewriter<'a>,
    pub watch: &'a mut Watch,
    /// What the client is pinned by now.
    pub pins: Pins,
    pub pinning: Pinning,
    pub custom_names: &'a mut Vec<String>,
    /// Pins no check can lift (LOAD, a setting pgweir cannot read back): they last as long
    /// as the client.
    pub sticky: &'a mut Pins,
    /// False while the client has `standard_conforming_strings` off: then backslashes
    /// escape quotes in plain strings, the lexer could be fooled, and every statement is
    /// treated as one that may do anything.
    pub lexable: bool,
    /// Set when the database routes reads: named statements are classified once, when
    /// registered, and Binds routed by what was found.
    pub route_functions: Option<&'a ReadOnlyFunctions>,
}

/// Whether a statement that creates state tying the client to its server may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    Allowed,
    /// `pin_session_state = false`.
    Off,
    /// The server is a replica chosen for this transaction only: the client's writes must
    /// be free to go to the primary afterwards.
    OnReplica,
}

/// Client-to-server messages.
pub struct ClientSide<'a> {
    pub tracker: &'a mut TxnTracker,
    pub terminated: &'a mut bool,
    pub tracking: Option<Tracking<'a>>,
    /// Present when the database routes reads to replicas (never in session mode).
    pub route: Option<RouteCheck<'a>>,
    pub clock: &'a mut Clock,
}

impl Inspector for ClientSide<'_> {
    fn wants(&self, tag: u8) -> Want {
        if self.tracking.is_none() {
            return Want::NOTHING;
        }
        match tag {
            // A Bind's names are as long as the Parse's may be; its data is streamed.
            fe::BIND => Want {
                whole: MAX_INSPECTED_BODY,
                prefix: MAX_PARSE_BODY,
                through_nuls: 2,
            },
            fe::PARSE | fe::QUERY => Want {
                whole: MAX_PARSE_BODY,
                prefix: MAX_INSPECTED_BODY,
                through_nuls: 0,
            },
            fe::DESCRIBE | fe::CLOSE => Want::SMALL,
            _ => Want::NOTHING,
        }
    }

    fn on_message(&mut self, tag: u8, len: usize, body: View<'_>) -> Disposition {
        if !fe::is_known(tag) {
            return Disposition::Refuse;
        }
        if tag == fe::TERMINATE {
            *self.terminated = true;
            return Disposition::Drop;
        }
        if let (Some(route), Some(t)) = (self.route.as_mut(), self.tracking.as_ref()) {
            if route.hold(tag, body, t.rw.client, self.tracker.in_batch()) {
                return Disposition::Hold;
            }
        }
        if matches!(tag, fe::QUERY | fe::SYNC | fe::FUNCTION_CALL) {
            self.clock.request_sent(Instant::now());
        }
        let ignored_syncs = self.tracker.client_sent(tag);
        let Some(t) = self.tracking.as_mut() else {
            return Disposition::Forward;
        };
        t.rw.pending.forget_ignored_syncs(ignored_syncs);
        match tag {
            fe::QUERY => t.query(body),
            fe::SYNC => {
                t.rw.ready_owed();
                Disposition::Forward
            }
            fe::FUNCTION_CALL => {
                // A fast-path call may be set_config or an advisory lock: read back.
                t.watch.settings = true;
                t.watch.pins = true;
                t.rw.ready_owed();
                Disposition::Forward
            }
            fe::PARSE => t.parse(body),
            fe::BIND => {
                let r = t.rw.bind(len, body);
                if let Some(stmt) = r.stmt {
                    t.note(&stmt.effects, &stmt.custom_names);
                }
                r.disposition
            }
            fe::DESCRIBE => t.rw.describe(body),
            fe::EXECUTE => {
                t.rw.execute();
                Disposition::Forward
            }
            fe::CLOSE => t.rw.close(body),
            _ => Disposition::Forward,
        }
    }
}

impl Tracking<'_> {
    fn query(&mut self, body: View<'_>) -> Disposition {
        self.rw.query_sent();
        let Some(text) = body.whole() else {
            // Too large to analyse: assume the worst.
            self.note(&Effects::UNKNOWN, &[]);
            self.rw.ready_owed();
            return Disposition::Forward;
        };
        let text = text.strip_suffix(b"\0").unwrap_or(text);
        if !self.lexable {
            self.note(&Effects::UNKNOWN, &[]);
            self.rw.ready_owed();
            return Disposition::Forward;
        }
        let e = sql::analyze(text);
        if e.may_unpin {
            let name = sql::deallocated_name(text);
            if let Some(done) = name.and_then(|n| self.rw.deallocate(n.as_bytes())) {
                return done;
            }
        }
        if let Some(err) = self.refusal(&e) {
            return self.rw.fail_query(err);
        }
        self.note(&e, &custom_names(&e, text));
        self.rw.ready_owed();
        Disposition::Forward
    }

    fn parse(&mut self, body: View<'_>) -> Disposition {
        let Some(whole) = body.whole() else {
            return self.oversized_parse(body);
        };
        let Some((name, key)) = split_cstr(whole) else {
            return self.rw.fail(crate::prepared::error(
                SqlState::PROTOCOL_VIOLATION,
                "invalid Parse message format",
            ));
        };
        let text = split_cstr(key).map_or(key, |(q, _)| q);
        if !self.lexable {
            self.note(&Effects::UNKNOWN, &[]);
        }
        if name.is_empty() || self.rw.max == 0 {
            let e = sql::analyze(text);
            if e.may_unpin && name.is_empty() {
                let target = sql::deallocated_name(text);
                if let Some(done) = target.and_then(|n| self.rw.deallocate_parse(n.as_bytes())) {
                    return done;
                }
            }
            if let Some(err) = self.refusal(&e) {
                if name.is_empty() {
                    self.rw.client.unnamed = None;
                }
                return self.rw.fail(err);
            }
            self.note(&e, &custom_names(&e, text));
            return if name.is_empty() {
                self.rw.parse_unnamed(Some(whole))
            } else {
                self.rw.parse_forwarded()
            };
        }
        let functions = self.route_functions;
        let stmt = self.registry.intern(key, || analysis(text, functions));
        if let Some(err) = self.refusal(&stmt.effects) {
            return self.rw.fail(err);
        }
        self.rw.parse_named(name, stmt)
    }

    /// A Parse too large to keep: the unnamed statement passes through (usable on this
    /// server only), a named one is refused.
    fn oversized_parse(&mut self, body: View<'_>) -> Disposition {
        let unnamed = body.bytes().is_some_and(|b| b.first() == Some(&0));
        if unnamed || self.rw.max == 0 {
            self.note(&Effects::UNKNOWN, &[]);
            return if unnamed {
                self.rw.parse_unnamed(None)
            } else {
                self.rw.parse_forwarded()
            };
        }
        self.rw.fail(crate::prepared::error(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            &format!(
                "prepared statement is too large for pgweir (over {} MB); use the unnamed statement",
                MAX_PARSE_BODY >> 20
            ),
        ))
    }

    /// The error for a statement that would pin the client where pinning is not allowed.
    fn refusal(&self, e: &Effects) -> Option<Bytes> {
        let reason = e.pins.iter().next()?;
        let why = match self.pinning {
            Pinning::Allowed => return None,
            Pinning::Off => {
                "on this database: it would tie the session to one server \
                             connection, and pin_session_state is off"
            }
            Pinning::OnReplica => {
                "in a transaction routed to a replica: it would tie the \
                                   session to the replica; run it on the primary (hint it \
                                   with /* pgweir:primary */)"
            }
        };
        Some(crate::prepared::error(
            SqlState::FEATURE_NOT_SUPPORTED,
            &format!("{} is not supported {why}", reason.as_str()),
        ))
    }

    /// Accounts for a statement about to run, with the custom settings it names.
    fn note(&mut self, e: &Effects, names: &[String]) {
        self.watch.note(e, !self.pins.is_empty());
        for sticky in [PinReason::Load, PinReason::UntrackedSetting] {
            if e.pins.contains(sticky) {
                self.sticky.insert(sticky);
            }
        }
        for name in names {
            if self.custom_names.contains(name) {
                continue;
            }
            if self.custom_names.len() == MAX_CUSTOM_NAMES {
                // More names than pgweir reads back: keep the client where they are.
                self.sticky.insert(PinReason::UntrackedSetting);
                self.watch.pins = true;
                break;
            }
            self.custom_names.push(name.clone());
        }
        if e.drops_all_prepared && self.rw.max > 0 {
            self.rw.clear_all();
        }
    }
}

/// Frames what the client sent and passes it through the client-side inspector, for the
/// server linked now.
pub(super) fn drain_client(
    s: &mut Session,
    link: &mut Link,
    cbuf: &mut BytesMut,
    cframer: &mut Framer,
    server: &mut ServerStatements,
) -> Result<(), ProtocolError> {
    link.active |= !cbuf.is_empty();
    let before = cbuf.len();
    let Link {
        tracker,
        pending,
        watch,
        to_server,
        terminated,
        route,
        clock,
        ..
    } = link;
    let lexable = s.lexable();
    let routes = s.group.routes() && s.pool.mode() != PoolMode::Session;
    // Nothing proves what a client without standard_conforming_strings sends: it may
    // have written.
    route.wrote |= routes && !lexable && !cbuf.is_empty();
    let pinning = match (s.pool.settings().pin_session_state, route.hold_writes) {
        (_, true) => Pinning::OnReplica,
        (true, false) => Pinning::Allowed,
        (false, false) => Pinning::Off,
    };
    let route = (routes && lexable).then(|| RouteCheck {
        functions: &s.group.routing.functions,
        link: route,
        unnamed: &mut s.route.unnamed,
    });
    let tracking = (s.pool.mode() != PoolMode::Session).then(|| Tracking {
        registry: &s.pool.statements,
        rw: Rewriter {
            client: &mut s.statements,
            server,
            pending,
            max: s.pool.max_prepared_statements(),
            tx_failed: tracker.status() == TxStatus::Failed,
            counts: &s.group.stats.prepared,
        },
        watch,
        pins: s.pins,
        pinning,
        custom_names: &mut s.custom_names,
        sticky: &mut s.sticky,
        lexable,
        route_functions: routes.then_some(&s.group.routing.functions),
    });
    let drained = cframer.drain(
        cbuf,
        &mut ClientSide {
            tracker,
            terminated,
            tracking,
            route,
            clock,
        },
        to_server,
    );
    link.received += (before - cbuf.len()) as u64;
    drained
}

/// The custom settings a text with effects `e` names, if it changes settings at all.
/// What a named statement's text does, learnt once when the pool's registry first sees it;
/// `functions` when the pool routes reads to replicas.
pub(super) fn analysis(text: &[u8], functions: Option<&ReadOnlyFunctions>) -> Analysis {
    let effects = sql::analyze(text);
    Analysis {
        custom_names: custom_names(&effects, text),
        effects,
        route: functions.map_or(Classification::UNKNOWN, |f| sql::classify(text, f)),
    }
}

fn custom_names(e: &Effects, text: &[u8]) -> Vec<String> {
    if e.settings {
        sql::custom_setting_names(text)
    } else {
        Vec::new()
    }
}

/// Server-to-client messages.
pub struct ServerSide<'a> {
    pub tracker: &'a mut TxnTracker,
    /// Statement mode saw a transaction left open.
    pub violation: &'a mut bool,
    pub sparams: &'a mut ServerParams,
    /// The client's view of the reported parameters.
    pub client: &'a mut ServerParams,
    pub mode: PoolMode,
    pub tracking: Option<ServerTracking<'a>>,
    pub fatal: &'a mut FatalWatch,
    pub clock: &'a mut Clock,
    pub stats: &'a GroupStats,
}

/// What the relay learns from the FATAL error a server sends on its way out (shutdown,
/// pg_terminate_backend).
#[derive(Debug, Default)]
pub struct FatalWatch {
    /// Nothing of the answer has been passed on yet, and the request may go elsewhere.
    pub armed: bool,
    /// FATAL before any answer, while armed: the request is to be sent again.
    pub before_reply: bool,
    /// FATAL with nothing owed and no transaction open: it is about no request of the
    /// client's, so it is not passed on, and the server is not reused.
    pub between_requests: bool,
}

/// The caches server replies update; absent in session mode.
pub struct ServerTracking<'a> {
    pub pending: &'a mut Pending,
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
}

impl Inspector for ServerSide<'_> {
    fn wants(&self, tag: u8) -> Want {
        match (tag, &self.tracking) {
            (be::READY_FOR_QUERY | be::PARAMETER_STATUS, _) => Want::SMALL,
            (be::ERROR_RESPONSE, _) => Want::SMALL,
            _ => Want::NOTHING,
        }
    }

    fn on_message(&mut self, tag: u8, _len: usize, body: View<'_>) -> Disposition {
        let body = body.whole();
        if tag == be::ERROR_RESPONSE && body.is_some_and(is_fatal) {
            if self.fatal.armed {
                self.fatal.before_reply = true;
                return Disposition::Drop;
            }
            let idle = self.tracker.quiet() && self.tracker.status() == TxStatus::Idle;
            if idle && self.mode != PoolMode::Session {
                self.fatal.between_requests = true;
                return Disposition::Drop;
            }
        }
        self.fatal.armed = false;
        self.tracker.server_sent(tag, body);
        if tag == be::READY_FOR_QUERY {
            self.clock
                .ready(self.tracker.status(), Instant::now(), self.stats);
        }
        if let (be::ERROR_RESPONSE, Some(b)) = (tag, body) {
            if let Some(code) = error_field(b, b'C') {
                self.stats.error(code);
            }
        }
        if let (be::PARAMETER_STATUS, Some(b)) = (tag, body) {
            if let Some((name, value)) = parse_parameter_status(b) {
                self.sparams.set(name, value);
                self.client.set(name, value);
            }
        }
        if let Some(t) = self.tracking.as_mut() {
            let mut caches = Caches {
                client: t.client,
                server: t.server,
            };
            let d = t.pending.on_server(tag, body, &mut caches);
            if d != Disposition::Forward {
                return d;
            }
        }
        if tag == be::READY_FOR_QUERY
            && self.mode == PoolMode::Statement
            && self.tracker.quiet()
            && self.tracker.status() != TxStatus::Idle
        {
            *self.violation = true;
            return Disposition::Drop;
        }
        Disposition::Forward
    }
}

/// Whether an ErrorResponse ends the session (FATAL or PANIC): the server is going away.
/// The untranslated severity (`V`) is preferred; the possibly translated `S` is a fallback.
fn is_fatal(body: &[u8]) -> bool {
    let severity = error_field(body, b'V').or_else(|| error_field(body, b'S'));
    matches!(severity, Some(b"FATAL" | b"PANIC"))
}

/// The value of field `code` of an ErrorResponse body.
fn error_field(body: &[u8], code: u8) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        let (value, next) = split_cstr(tail)?;
        if field == code {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn parse_parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut parts = body.split(|&b| b == 0);
    let name = std::str::from_utf8(parts.next()?).ok()?;
    let value = std::str::from_utf8(parts.next()?).ok()?;
    Some((name, value))
}
