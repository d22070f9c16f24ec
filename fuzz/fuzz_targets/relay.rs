//! Both directions of a linked client and server through the relay's own inspectors
//! (`client::inspect::ClientSide` and `ServerSide`), wired as `client::relay` wires them:
//! the client's Query, Parse, Bind, Describe and Close messages analysed, rewritten and
//! routed (statement renaming, pinning refusals, replica holds), the server's replies
//! unwinding that bookkeeping, ReadyForQuery, ParameterStatus and FATAL errors followed.
//! Where the relay would move a held message to another server, the harness lets it pass
//! (as inside a transaction).
//!
//! Input: a flags byte (bits 0-1 pool mode, 2-3 max_prepared_statements 0/1/2/100, 4 route
//! to replicas, 5 the link is a replica holding writes, 6 standard_conforming_strings off,
//! 7 pin_session_state off), then segments: a 2-byte big-endian header whose top bit says
//! the server sent it (else the client) and whose low 15 bits are its length, then that
//! many bytes, appended to that side's buffer and drained.
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgweir::client::inspect::{
    ClientSide, FatalWatch, Pinning, ServerSide, ServerTracking, Tracking,
};
use pgweir::client::routing::{LinkRoute, RouteCheck};
use pgweir::client::state::Watch;
use pgweir::client::txn::TxnTracker;
use pgweir::config::{Histograms, PoolMode};
use pgweir::pool::Node;
use pgweir::prepared::{ClientStatements, Pending, Registry, Rewriter, ServerStatements};
use pgweir::protocol::framer::{Framer, OutQueue};
use pgweir::protocol::TxStatus;
use pgweir::server::ServerParams;
use pgweir::sql::{Classification, Pins, ReadOnlyFunctions};
use pgweir::stats::{Clock, GroupStats};

struct Shared {
    stats: GroupStats,
    functions: ReadOnlyFunctions,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| Shared {
        stats: GroupStats::new("db", "u", Histograms::Off),
        functions: ReadOnlyFunctions::new(["f".to_owned()]),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let sh = shared();
    let mode = match flags & 3 {
        0 => PoolMode::Session,
        1 | 3 => PoolMode::Transaction,
        _ => PoolMode::Statement,
    };
    let max = [0, 1, 2, 100][usize::from((flags >> 2) & 3)];
    let routes = flags & 0x10 != 0 && mode != PoolMode::Session;
    let lexable = flags & 0x40 == 0;
    let hold_writes = flags & 0x20 != 0;
    let pin_session_state = flags & 0x80 == 0;

    // One session's state, as client::relay keeps it.
    let registry = Registry::default();
    let mut statements = ClientStatements::default();
    let mut server_statements = ServerStatements::default();
    let mut pending = Pending::default();
    let mut tracker = TxnTracker::default();
    let mut watch = Watch::default();
    let mut terminated = false;
    let mut custom_names = Vec::new();
    let mut sticky = Pins::default();
    let mut route = LinkRoute::new(
        if hold_writes {
            Node::Replica(0)
        } else {
            Node::Primary
        },
        hold_writes,
    );
    let mut unnamed = Classification::UNKNOWN;
    let mut clock = Clock::default();
    let mut violation = false;
    let mut sparams = ServerParams::default();
    let mut reported = ServerParams::default();
    let mut fatal = FatalWatch {
        armed: true,
        ..FatalWatch::default()
    };
    let (mut cframer, mut sframer) = (Framer::default(), Framer::default());
    let (mut cbuf, mut sbuf) = (BytesMut::new(), BytesMut::new());
    let (mut to_server, mut to_client) = (OutQueue::default(), OutQueue::default());
    let (mut client_broken, mut server_broken) = (false, false);

    while let [a, b, tail @ ..] = rest {
        let from_server = a & 0x80 != 0;
        let len = (usize::from(a & 0x7f) << 8 | usize::from(*b)).min(tail.len());
        let (segment, next) = tail.split_at(len);
        rest = next;
        if from_server && !server_broken {
            sbuf.extend_from_slice(segment);
            let tracking = (mode != PoolMode::Session).then_some(ServerTracking {
                pending: &mut pending,
                client: &mut statements,
                server: &mut server_statements,
            });
            let mut side = ServerSide {
                tracker: &mut tracker,
                violation: &mut violation,
                sparams: &mut sparams,
                client: &mut reported,
                mode,
                tracking,
                fatal: &mut fatal,
                clock: &mut clock,
                stats: &sh.stats,
            };
            server_broken = sframer.drain(&mut sbuf, &mut side, &mut to_client).is_err();
        } else if !from_server && !client_broken && !terminated {
            cbuf.extend_from_slice(segment);
            if route.held.is_some() {
                route.pass_held();
            }
            let pinning = match (pin_session_state, route.hold_writes) {
                (_, true) => Pinning::OnReplica,
                (true, false) => Pinning::Allowed,
                (false, false) => Pinning::Off,
            };
            route.wrote |= routes && !lexable && !cbuf.is_empty();
            let route_check = (routes && lexable).then_some(RouteCheck {
                functions: &sh.functions,
                link: &mut route,
                unnamed: &mut unnamed,
            });
            let tx_failed = tracker.status() == TxStatus::Failed;
            let tracking = (mode != PoolMode::Session).then(|| Tracking {
                registry: &registry,
                rw: Rewriter {
                    client: &mut statements,
                    server: &mut server_statements,
                    pending: &mut pending,
                    max,
                    tx_failed,
                    counts: &sh.stats.prepared,
                },
                watch: &mut watch,
                pins: Pins::default(),
                pinning,
                custom_names: &mut custom_names,
                sticky: &mut sticky,
                lexable,
                route_functions: routes.then_some(&sh.functions),
            });
            let mut side = ClientSide {
                tracker: &mut tracker,
                terminated: &mut terminated,
                tracking,
                route: route_check,
                clock: &mut clock,
            };
            client_broken = cframer.drain(&mut cbuf, &mut side, &mut to_server).is_err();
        }
        // What was forwarded is gone, as if written to the socket.
        to_server.clear();
        to_client.clear();
    }
});
