//! One link: a client holding one server for a stretch of its session (a transaction, or
//! longer while pinned). What is owed each way, what waits to be written, the timeouts that
//! run meanwhile, and the tests the relay ([`super::relay`]) asks: is this the release
//! point, may a failed request go elsewhere, has everything been answered.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::inspect::FatalWatch;
use super::routing::LinkRoute;
use super::state::Watch;
use super::txn::TxnTracker;
use super::ClientError;
use crate::config::PoolMode;
use crate::prepared::Pending;
use crate::protocol::framer::{Framer, OutQueue};
use crate::protocol::{fe, TxStatus};
use crate::stats::Clock;

/// Per-link state: what is owed and what is queued for the server.
#[derive(Default)]
pub(super) struct Link {
    pub(super) route: LinkRoute,
    /// FATAL errors of a server going away: before any reply the link ends as if the
    /// server had closed, so the request can go elsewhere; between requests the client
    /// never sees it and the server is not reused.
    pub(super) fatal: FatalWatch,
    /// The client sent more after the link began (a request to be sent again must be the
    /// whole of what the client sent).
    pub(super) client_read: bool,
    /// Bytes of the client's messages taken from its buffer on this link.
    pub(super) received: u64,
    /// Times the link's queries and transactions.
    pub(super) clock: Clock,
    pub(super) tracker: TxnTracker,
    /// Replies owed for prepared-statement bookkeeping.
    pub(super) pending: Pending,
    /// What the client's statements on this link may have changed.
    pub(super) watch: Watch,
    /// The client sent something on this link (a pinned client's link starts idle).
    pub(super) active: bool,
    pub(super) sframer: Framer,
    pub(super) to_server: OutQueue,
    pub(super) terminated: bool,
    /// The client shut its sending side down after whole messages: what it asked for is
    /// still delivered, as Postgres delivers it, then the link ends.
    pub(super) client_eof: bool,
    /// A Flush went to the server since the client was last read for owing too much.
    pub(super) flushed: bool,
    /// Statement mode saw a transaction left open.
    pub(super) violation: bool,
    /// Whether the tracker was quiet at the last look, and since when.
    pub(super) phase: Option<(bool, Instant)>,
}

/// Requests in flight on one link (ReadyForQuery or replies owed) beyond which the client
/// is not read from until some are answered: bounds what a client that sends and never
/// reads costs, as Postgres bounds it by not reading either. A pipelining driver has far
/// fewer in flight.
const MAX_OWED: usize = 1024;

/// A Flush message.
const FLUSH: &[u8] = &[fe::FLUSH, 0, 0, 0, 4];

/// Most spare queues a worker thread keeps (a few kilobytes).
const MAX_SPARES: usize = 64;

thread_local! {
    /// The emptied queues of links that ended on this worker thread, for the next link to
    /// take. A link lasts one transaction, and its queues grow at its first message: without
    /// these every transaction allocated and freed them. Idle clients hold none.
    static SPARES: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
}

/// The parts of a link that allocate.
struct Spare {
    to_server: OutQueue,
    pending: Pending,
    clock: Clock,
}

impl Link {
    pub(super) fn new(route: LinkRoute, retry: bool) -> Self {
        let mut link = Link::default();
        link.route = route;
        link.fatal.armed = retry;
        if let Some(spare) = SPARES.with(|s| s.borrow_mut().pop()) {
            link.to_server = spare.to_server;
            link.pending = spare.pending;
            link.clock = spare.clock;
        }
        link
    }

    /// Whether the request this link began with can be sent again elsewhere: the client
    /// has sent nothing since and nothing of it is left half-forwarded or held.
    pub(super) fn may_retry(&self, cframer: &Framer, cbuf: &BytesMut) -> bool {
        !self.client_read && !cframer.mid_message() && cbuf.is_empty()
    }

    /// Notes a change between busy (a request outstanding) and quiet, for the timeouts.
    pub(super) fn note_phase(&mut self) {
        let quiet = self.tracker.quiet();
        if self.phase.is_none_or(|(q, _)| q != quiet) {
            self.phase = Some((quiet, Instant::now()));
        }
    }

    /// When the current phase runs out under `t`, and the error it ends with.
    pub(super) fn deadline(&self, t: &Timeouts) -> Option<(Instant, ClientError)> {
        let (quiet, since) = self.phase?;
        if !quiet && !t.query.is_zero() {
            return Some((since + t.query, ClientError::QueryTimeout(t.query)));
        }
        let in_tx = self.tracker.status() != TxStatus::Idle;
        if quiet && in_tx && !t.idle_tx.is_zero() {
            return Some((since + t.idle_tx, ClientError::IdleInTransaction(t.idle_tx)));
        }
        None
    }

    /// Whether the client may be read from as far as the answers it is owed go: a client
    /// that sends and never reads must not make pgweir keep track of ever more of them.
    /// Inside a batch (no Sync yet) the server may hold small replies back; a Flush, sent
    /// once per stop, makes it send them, so the client is read again as they arrive.
    pub(super) fn owes_few(&mut self, cframer: &Framer) -> bool {
        let few = (self.tracker.owed() as usize) < MAX_OWED && self.pending.len() < MAX_OWED;
        if few {
            self.flushed = false;
        } else if self.tracker.in_batch() && !self.flushed && !cframer.mid_message() {
            self.to_server.push(Bytes::from_static(FLUSH));
            self.flushed = true;
        }
        few
    }

    /// Everything sent has been answered and nothing is half-way in either direction.
    pub(super) fn answered_all(&self, cframer: &Framer, rbuf: &BytesMut) -> bool {
        self.tracker.quiet()
            && self.to_server.is_empty()
            && !cframer.mid_message()
            && !self.sframer.mid_message()
            && rbuf.is_empty()
    }

    /// `cbuf` holding bytes means the client is part-way through a message (one the
    /// inspector must see more of before it can be sent), which belongs on this server.
    pub(super) fn at_release_point(
        &self,
        mode: PoolMode,
        cframer: &Framer,
        cbuf: &BytesMut,
        rbuf: &BytesMut,
    ) -> bool {
        // A held message waits in `cbuf` for the next server.
        let drained = self.to_server.is_empty()
            && (cbuf.is_empty() || self.route.held.is_some())
            && !cframer.mid_message()
            && !self.sframer.mid_message()
            && rbuf.is_empty();
        drained
            && self.active
            && match mode {
                PoolMode::Transaction => self.tracker.transaction_done(),
                PoolMode::Statement => self.tracker.quiet(),
                PoolMode::Session => false,
            }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if !self.to_server.is_empty() || !self.pending.is_empty() {
            return;
        }
        let spare = Spare {
            to_server: std::mem::take(&mut self.to_server).emptied(),
            pending: std::mem::take(&mut self.pending).emptied(),
            clock: std::mem::take(&mut self.clock).emptied(),
        };
        SPARES.with(|s| {
            let mut spares = s.borrow_mut();
            if spares.len() < MAX_SPARES {
                spares.push(spare);
            }
        });
    }
}

/// The timeouts that apply while a client holds a server (zero: off).
pub(super) struct Timeouts {
    pub(super) query: Duration,
    pub(super) idle_tx: Duration,
}

impl Timeouts {
    pub(super) fn any(&self) -> bool {
        !self.query.is_zero() || !self.idle_tx.is_zero()
    }
}
