//! Replica routing for one client, without I/O: which node a request goes to
//! ([`decide`], from [`scan_request`] over the bytes the client sent), what a linked replica
//! must not receive ([`RouteCheck`], asked by the client-side inspector before each message),
//! the `SET pgweir.route` override pgweir answers itself ([`route_reply`]), and which requests
//! may be sent again to another node when a replica fails under them ([`retry_window`]).
//!
//! Used by [`super::acquire`] before a server is taken and by the relay while linked. The
//! statement classifier is [`crate::sql::route`]; node health and freshness are
//! [`crate::pool::PoolGroup::choose`]'s.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::{Node, PoolMode};
use crate::error::{Severity, SqlState};
use crate::pool::Policy;
use crate::prepared::ClientStatements;
use crate::protocol::framer::View;
use crate::protocol::{backend, fe, split_cstr, TxStatus};
use crate::sql::{
    classify, ends_transaction, may_write, route_setting, Classification, Hint, ReadOnlyFunctions,
    RouteSetting, Verdict,
};

use super::inspect::MAX_PARSE_BODY;

/// Requests at most this large are kept until their answer starts, so they can be sent
/// again to another node if the replica fails under them.
const MAX_RETRY_REQUEST: usize = 64 * 1024;

/// A client's routing state across transactions.
#[derive(Debug, Default)]
pub struct ClientRoute {
    /// `SET pgweir.route`, once the client has sent it.
    pub setting: Option<RouteSetting>,
    /// When the client's last transaction that wrote on the primary ended: replicas serve
    /// it only once they have replayed past that point.
    pub wrote_at: Option<Instant>,
    /// The classification of the client's unnamed statement, for the Binds that use it.
    pub unnamed: Classification,
    /// The next request goes to the primary: it failed on a replica before any answer.
    pub primary_next: bool,
}

/// What the relay tracks about routing on one link.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkRoute {
    pub node: Node,
    /// On a replica reached by per-transaction routing: a request not proven read-only is
    /// held back for the primary.
    pub hold_writes: bool,
    /// Something not proven read-only was sent (on the primary: the client may have written).
    pub wrote: bool,
    /// The message at the front of the client's buffer waits for the link to go quiet.
    pub held: Option<Held>,
    /// A Query, Parse, Bind or FunctionCall has been sent: the request the link was
    /// chosen for has begun, and later requests are checked.
    started: bool,
    /// The next checked message goes to this server whatever it is (a held message let
    /// through inside a read-only transaction).
    pass: bool,
}

impl LinkRoute {
    pub fn new(node: Node, hold_writes: bool) -> Self {
        LinkRoute {
            node,
            hold_writes,
            ..LinkRoute::default()
        }
    }

    /// Lets the held message through to this server (the link is inside a transaction,
    /// which cannot move).
    pub fn pass_held(&mut self) {
        self.held = None;
        self.pass = true;
    }
}

/// Why a message was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// It starts a request that may write (or an extended-protocol batch, whose later
    /// messages cannot be seen yet), and the link is a replica: once the link is idle the
    /// request is routed afresh; inside a (read-only) transaction it goes to the replica.
    Request,
    /// `SET pgweir.route`, answered by pgweir once everything before it is answered.
    Setting(RouteSetting),
}

/// The client-side inspector's routing questions, asked before a message is counted.
pub struct RouteCheck<'a> {
    pub functions: &'a ReadOnlyFunctions,
    pub link: &'a mut LinkRoute,
    pub unnamed: &'a mut Classification,
}

impl RouteCheck<'_> {
    /// Classifies a Query, Parse or Bind (a FunctionCall may write); true when it must be
    /// held. `in_batch`: extended-protocol messages were sent since the last Sync, which
    /// this one joins, so it cannot wait for them to be answered.
    pub fn hold(
        &mut self,
        tag: u8,
        body: View<'_>,
        statements: &ClientStatements,
        in_batch: bool,
    ) -> bool {
        let (class, text) = match tag {
            fe::QUERY => {
                let text = body.whole().map(|t| t.strip_suffix(b"\0").unwrap_or(t));
                if let Some(setting) = text.and_then(route_setting).filter(|_| !in_batch) {
                    self.link.held = Some(Held::Setting(setting));
                    return true;
                }
                let class = text.map_or(Classification::UNKNOWN, |t| classify(t, self.functions));
                (class, text)
            }
            fe::PARSE => (parse_class(body, self.functions).1, parse_text(body)),
            fe::BIND => (bind_class(body, statements, *self.unnamed), None),
            fe::FUNCTION_CALL => (Classification::UNKNOWN, None),
            _ => return false,
        };
        if self.must_hold(tag, class, text, in_batch) {
            self.link.held = Some(Held::Request);
            return true;
        }
        if tag == fe::PARSE && !parse_class(body, self.functions).0 {
            *self.unnamed = class;
        }
        self.link.wrote |= class.verdict == Verdict::Primary && text.is_none_or(may_write);
        false
    }

    /// Whether a replica link must not take this message now. The request the link was
    /// chosen for, and messages joining an open batch, always go (the batch cannot be split
    /// between servers); a new request goes if proven read-only, a transaction end too;
    /// a new extended-protocol batch waits, as its later messages are not seen yet.
    fn must_hold(
        &mut self,
        tag: u8,
        class: Classification,
        text: Option<&[u8]>,
        in_batch: bool,
    ) -> bool {
        let first = !std::mem::replace(&mut self.link.started, true);
        let pass = std::mem::take(&mut self.link.pass);
        if !self.link.hold_writes || first || in_batch || pass {
            return false;
        }
        let new_batch = tag == fe::PARSE || tag == fe::BIND;
        new_batch || !(class.replica_ok() || text.is_some_and(ends_transaction))
    }
}

/// Whether a Parse names its statement, and how its text classifies.
fn parse_class(body: View<'_>, functions: &ReadOnlyFunctions) -> (bool, Classification) {
    let named = body.bytes().is_some_and(|b| b.first() != Some(&0));
    let class = parse_text(body).map_or(Classification::UNKNOWN, |t| classify(t, functions));
    (named, class)
}

/// The SQL text of a Parse seen whole.
fn parse_text(body: View<'_>) -> Option<&[u8]> {
    let (_name, rest) = split_cstr(body.whole()?)?;
    Some(split_cstr(rest).map_or(rest, |(q, _)| q))
}

/// The classification a Bind runs with: its statement's, kept when it was parsed.
fn bind_class(
    body: View<'_>,
    statements: &ClientStatements,
    unnamed: Classification,
) -> Classification {
    let name = body
        .bytes()
        .and_then(split_cstr)
        .and_then(|(_portal, rest)| split_cstr(rest))
        .map(|(name, _)| name);
    match name {
        Some([]) => unnamed,
        Some(name) => statements
            .get(name)
            .map_or(Classification::UNKNOWN, |s| s.route),
        None => Classification::UNKNOWN,
    }
}

/// What the front of a client's buffer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The first request is not complete yet.
    NeedMore,
    /// The first request (up to its Sync, Flush or the end of its Query), classified.
    Request(Classification),
    /// `SET pgweir.route` as a Query of `len` bytes.
    Setting(RouteSetting, usize),
}

/// Classifies the first request in `buf`: every Query, Parse and Bind in it must allow a
/// replica for the request to go to one.
pub fn scan_request(
    buf: &[u8],
    statements: &ClientStatements,
    functions: &ReadOnlyFunctions,
    mut unnamed: Classification,
) -> Scan {
    let mut class: Option<Classification> = None;
    let mut named: Vec<(&[u8], Classification)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + 5) else {
            return Scan::NeedMore;
        };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_PARSE_BODY {
            return Scan::Request(Classification::UNKNOWN);
        }
        let Some(body) = buf.get(pos + 5..(pos + 1 + len).max(pos + 5)) else {
            return Scan::NeedMore;
        };
        pos += 1 + len.max(4);
        let this = match header[0] {
            fe::QUERY => {
                let text = body.strip_suffix(b"\0").unwrap_or(body);
                if let (None, Some(s)) = (class, route_setting(text)) {
                    return Scan::Setting(s, pos);
                }
                let c = classify(text, functions);
                return Scan::Request(class.map_or(c, |k| k.and(c)));
            }
            fe::PARSE => {
                let (is_named, c) = parse_class(View::Whole(body), functions);
                match split_cstr(body) {
                    Some((name, _)) if is_named => named.push((name, c)),
                    _ => unnamed = c,
                }
                c
            }
            fe::BIND => {
                let in_request = split_cstr(body)
                    .and_then(|(_, rest)| split_cstr(rest))
                    .and_then(|(name, _)| named.iter().find(|(n, _)| *n == name));
                match in_request {
                    Some((_, c)) => *c,
                    None => bind_class(View::Whole(body), statements, unnamed),
                }
            }
            fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => continue,
            fe::SYNC | fe::FLUSH => {
                return Scan::Request(class.unwrap_or(Classification::UNKNOWN));
            }
            _ => return Scan::Request(Classification::UNKNOWN),
        };
        class = Some(class.map_or(this, |k| k.and(this)));
    }
}

/// Where a request should go before health and freshness are considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Primary,
    /// A replica; `with_primary` lets the primary compete (`target = "any"`); `hold_writes`
    /// when chosen per transaction, so later writes are held back for the primary.
    Replicas {
        with_primary: bool,
        hold_writes: bool,
    },
}

/// Applies the session's `SET pgweir.route`, the database's `target` and `read_routing`, and
/// the request's hint and verdict, in that order of precedence.
pub fn decide(
    policy: Policy,
    mode: PoolMode,
    setting: Option<RouteSetting>,
    class: Classification,
) -> Destination {
    if !policy.routes {
        return Destination::Primary;
    }
    let forced = Destination::Replicas {
        with_primary: false,
        hold_writes: false,
    };
    let auto = match setting {
        Some(RouteSetting::Primary) => return Destination::Primary,
        Some(RouteSetting::Replica) => return forced,
        Some(RouteSetting::Auto) => true,
        None => match policy.forced_target {
            Some(with_primary) => {
                return Destination::Replicas {
                    with_primary,
                    hold_writes: false,
                }
            }
            None => policy.auto,
        },
    };
    if !auto || mode == PoolMode::Session || class.hint == Some(Hint::Primary) {
        return Destination::Primary;
    }
    if class.replica_ok() {
        Destination::Replicas {
            with_primary: false,
            hold_writes: true,
        }
    } else {
        Destination::Primary
    }
}

/// pgweir's own answer to `SET pgweir.route`: what Postgres answers a SET, or the error a
/// failed transaction gives any statement.
pub fn route_reply(status: TxStatus) -> Bytes {
    let mut m = BytesMut::new();
    if status == TxStatus::Failed {
        backend::error_response(
            &mut m,
            Severity::Error,
            SqlState::IN_FAILED_SQL_TRANSACTION,
            "current transaction is aborted, commands ignored until end of transaction block",
        );
    } else {
        backend::command_complete(&mut m, "SET");
    }
    backend::ready_for_query(&mut m, status);
    m.freeze()
}

/// A copy of `buf` when it holds only complete messages that can be sent to another server
/// unchanged if the first one fails before answering: Query, unnamed Parse, Bind, Describe,
/// Execute, Sync and Flush, at most [`MAX_RETRY_REQUEST`] bytes in all. Named Parse and Close
/// change what the client has prepared, so a request with them is never repeated.
pub fn retry_window(buf: &[u8]) -> Option<Bytes> {
    if buf.is_empty() || buf.len() > MAX_RETRY_REQUEST {
        return None;
    }
    let mut pos = 0;
    while pos < buf.len() {
        let header = buf.get(pos..pos + 5)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let body = buf.get(pos + 5..pos + 1 + len.max(4))?;
        let ok = match header[0] {
            fe::QUERY | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::SYNC | fe::FLUSH => true,
            fe::PARSE => body.first() == Some(&0),
            _ => false,
        };
        if !ok {
            return None;
        }
        pos += 1 + len.max(4);
    }
    Some(Bytes::copy_from_slice(buf))
}

#[cfg(test)]
mod tests;
