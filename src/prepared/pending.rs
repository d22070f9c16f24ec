//! The responses a server still owes for the messages pgweir sent it, in order, as far as
//! prepared statements need them: which ParseComplete and CloseComplete go to the client and
//! which were pgweir's own, which ErrorResponse stands in for an error pgweir raises itself,
//! and what to undo when a batch fails. The server answers in order and, after an error,
//! skips everything up to the next Sync; that is all this queue relies on.
//!
//! pgweir never invents a response out of order: where it has nothing to forward (a Parse
//! of a statement the server already has, a client's Close) it sends the server a harmless
//! Close of a statement that never exists and passes the CloseComplete on as the reply the
//! client expects. Where pgweir must raise an error itself, it sends a Parse that fails, so
//! the server aborts the transaction and skips to Sync exactly as for a real error, and the
//! client gets pgweir's ErrorResponse in its place.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::cache::ServerStatements;
use super::registry::{Statement, StatementId};
use super::unnamed::UnnamedUndo;
use super::{ClientStatements, Prepared, SavedNames};
use crate::error::SqlState;
use crate::protocol::framer::Disposition;
use crate::protocol::{backend, be};

/// What to pass to the client when an expected reply arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Forward,
    Swallow,
    /// These bytes instead: a CloseComplete answering a message pgweir did not forward
    /// (ParseComplete for a Parse, CommandComplete for a SQL DEALLOCATE).
    Instead(Bytes),
}

/// Bookkeeping to reverse when the server skips or fails the message. Kept boxed, and only
/// when there is any, so the queue's entries stay small.
#[derive(Debug, Default)]
pub struct Undo {
    /// The client's statement names as they were before the message.
    pub client: Option<ClientUndo>,
    /// A statement recorded as prepared on the server that will not be.
    pub server: Option<StatementId>,
    /// The message changed the client's or the server's unnamed statement.
    pub unnamed: Option<UnnamedUndo>,
}

impl Undo {
    /// As an entry of the queue holds it.
    pub fn boxed(self) -> Option<Box<Undo>> {
        let empty = self.client.is_none() && self.server.is_none() && self.unnamed.is_none();
        (!empty).then(|| Box::new(self))
    }
}

#[derive(Debug)]
pub enum ClientUndo {
    /// The message added this name.
    Unmap(Bytes),
    /// The message removed this name.
    Remap(Bytes, Prepared),
}

/// One response the server owes.
#[derive(Debug)]
pub enum Expect {
    /// `stmt`: the registered statement it prepares, marked valid when it succeeds.
    Parse {
        reply: Reply,
        undo: Option<Box<Undo>>,
        stmt: Option<Arc<Statement>>,
    },
    /// `generation`: of the server's copy of `stmt` the Bind runs.
    Bind {
        stmt: Option<Arc<Statement>>,
        generation: u32,
    },
    /// A Describe of a statement or portal, answered by RowDescription or NoData (after a
    /// ParameterDescription for a statement), which become `rows`.
    Describe {
        stmt: Option<Arc<Statement>>,
        generation: u32,
        rows: Reply,
    },
    /// An Execute, answered by CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    Close {
        reply: Reply,
        undo: Option<Box<Undo>>,
    },
    /// A Parse sent to fail; its ErrorResponse is replaced by this one.
    Failure { error: Bytes },
    /// A statement that drops every prepared statement (DEALLOCATE ALL, DISCARD ALL) was
    /// sent, and the caches were cleared at once so later messages are rewritten for the
    /// cleared state; if it fails, the client gets its statements back.
    Cleared { restore: SavedNames },
    /// ReadyForQuery, owed for each Sync, Query and FunctionCall.
    Ready,
}

/// Entries a spare queue keeps room for.
const SPARE_ENTRIES: usize = 64;

/// Responses owed by one server to one client, oldest first.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<Expect>,
}

/// The caches a server's replies update.
pub struct Caches<'a> {
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Responses owed now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Empty, and no bigger than an ordinary link needs, to be kept for the next link.
    pub fn emptied(mut self) -> Self {
        self.queue.clear();
        self.queue.shrink_to(SPARE_ENTRIES);
        self
    }

    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    /// The server ignored the last `n` Syncs (sent while it was in COPY FROM STDIN).
    pub fn forget_ignored_syncs(&mut self, mut n: u32) {
        let mut i = self.queue.len();
        while n > 0 && i > 0 {
            i -= 1;
            if matches!(self.queue[i], Expect::Ready) {
                self.queue.remove(i);
                n -= 1;
            }
        }
    }

    /// Handles one message from the server; `body` is its whole body when it was small
    /// enough to see. Only ParseComplete, BindComplete, CloseComplete, ErrorResponse and
    /// ReadyForQuery matter here; everything else is forwarded.
    pub fn on_server(&mut self, tag: u8, body: Option<&[u8]>, c: &mut Caches<'_>) -> Disposition {
        match tag {
            be::PARSE_COMPLETE => match self.pop_reply() {
                Some(Expect::Parse { reply, stmt, .. }) => {
                    if let Some(s) = stmt {
                        s.mark_valid();
                    }
                    disposition(reply)
                }
                other => self.out_of_step(tag, other),
            },
            be::BIND_COMPLETE => match self.pop_reply() {
                Some(Expect::Bind { .. }) => Disposition::Forward,
                other => self.out_of_step(tag, other),
            },
            be::ROW_DESCRIPTION | be::NO_DATA => match self.queue.front() {
                Some(Expect::Describe { .. }) => match self.queue.pop_front() {
                    Some(Expect::Describe { rows, .. }) => disposition(rows),
                    _ => Disposition::Forward,
                },
                _ => Disposition::Forward,
            },
            be::COMMAND_COMPLETE | be::EMPTY_QUERY | be::PORTAL_SUSPENDED => {
                if matches!(self.queue.front(), Some(Expect::Execute)) {
                    self.queue.pop_front();
                }
                Disposition::Forward
            }
            be::CLOSE_COMPLETE => match self.pop_reply() {
                Some(Expect::Close { reply, .. }) => disposition(reply),
                other => self.out_of_step(tag, other),
            },
            be::ERROR_RESPONSE => self.on_error(body, c),
            be::READY_FOR_QUERY => {
                // Anything still owed before this ReadyForQuery was skipped after an error;
                // a clearing statement that got this far succeeded.
                self.skip_to_ready(c, false);
                self.queue.pop_front();
                Disposition::Forward
            }
            _ => Disposition::Forward,
        }
    }

    /// An error fails the message at the front and makes the server skip the rest of the
    /// batch: their bookkeeping is undone up to the next ReadyForQuery.
    fn on_error(&mut self, body: Option<&[u8]>, c: &mut Caches<'_>) -> Disposition {
        let code = body.and_then(error_code);
        let mut disposition = Disposition::Forward;
        match self.queue.front() {
            // An aborted transaction refuses the Parse before pgweir's reason applies, as
            // Postgres would have refused the client's message: then the server's error stands.
            Some(Expect::Failure { error })
                if code.as_deref() != Some(SqlState::IN_FAILED_SQL_TRANSACTION.0) =>
            {
                disposition = Disposition::Replace {
                    with: error.clone(),
                    head: usize::MAX,
                };
            }
            Some(
                Expect::Bind {
                    stmt: Some(stmt),
                    generation,
                }
                | Expect::Describe {
                    stmt: Some(stmt),
                    generation,
                    ..
                },
            ) if code.as_deref() == Some(SqlState::FEATURE_NOT_SUPPORTED.0)
                && body.is_some_and(|b| contains(b, b"cached plan must not change")) =>
            {
                // A DDL changed the statement's result: every server's copy is stale, so
                // each prepares it afresh (after a Close) on its next use, and every client
                // that prepared it before gets this error from then on, as from Postgres.
                stmt.invalidate(*generation);
                c.server.remove(stmt.id);
            }
            _ => {}
        }
        if code.as_deref() == Some(SqlState::INVALID_SQL_STATEMENT_NAME.0) {
            // One of pgweir's statements is gone behind its back (a client's SQL
            // DEALLOCATE of the internal name): forget it, so the next use prepares it.
            if let Some(id) = body.and_then(missing_internal) {
                c.server.remove(id);
            }
        }
        self.skip_to_ready(c, true);
        disposition
    }

    /// The entry a ParseComplete, BindComplete or CloseComplete answers; a clearing
    /// statement before it has succeeded.
    fn pop_reply(&mut self) -> Option<Expect> {
        loop {
            match self.queue.pop_front() {
                Some(Expect::Cleared { .. }) => {}
                other => return other,
            }
        }
    }

    /// Drops what is owed up to (not including) the next ReadyForQuery: the server skipped
    /// those messages, so their bookkeeping is undone, newest first, as a Close and a Parse
    /// of the same name must unwind in reverse.
    /// `failed`: an error ended the batch, so a clearing statement in it is undone too, and
    /// the first message owed is the one that failed.
    fn skip_to_ready(&mut self, c: &mut Caches<'_>, failed: bool) {
        let mut undone = Vec::new();
        let mut first = failed;
        while let Some(e) = self.queue.front() {
            if matches!(e, Expect::Ready) {
                break;
            }
            match self.queue.pop_front() {
                Some(Expect::Parse { undo, .. } | Expect::Close { undo, .. }) => {
                    if let Some(undo) = undo {
                        undone.push((*undo, first));
                    }
                }
                Some(Expect::Cleared { restore }) if failed => c.client.restore_names(restore),
                _ => {}
            }
            first = false;
        }
        for (undo, failed) in undone.into_iter().rev() {
            undo_into(undo, c, failed);
        }
    }

    /// A reply that matches nothing expected: pass it on and resynchronise at the next
    /// ReadyForQuery rather than guess.
    fn out_of_step(&mut self, tag: u8, popped: Option<Expect>) -> Disposition {
        tracing::warn!(
            tag = %char::from(tag),
            expected = ?popped,
            "server reply out of step with pgweir's bookkeeping"
        );
        Disposition::Forward
    }
}

fn disposition(reply: Reply) -> Disposition {
    match reply {
        Reply::Forward => Disposition::Forward,
        Reply::Swallow => Disposition::Drop,
        Reply::Instead(with) => Disposition::Replace {
            with,
            head: usize::MAX,
        },
    }
}

/// `failed`: the message failed rather than being skipped.
fn undo_into(undo: Undo, c: &mut Caches<'_>, failed: bool) {
    if let Some(id) = undo.server {
        c.server.remove(id);
    }
    match undo.client {
        Some(ClientUndo::Unmap(name)) => {
            c.client.remove(&name);
        }
        Some(ClientUndo::Remap(name, prepared)) => c.client.restore(name, prepared),
        None => {}
    }
    if let Some(unnamed) = undo.unnamed {
        unnamed.apply(&mut c.client.unnamed, &mut c.server.unnamed, failed);
    }
}

/// The statement of a "prepared statement \"pgweir_N\" does not exist" error.
fn missing_internal(body: &[u8]) -> Option<StatementId> {
    let message = backend::parse_error_fields(body).1?;
    let digits = message.strip_prefix("prepared statement \"pgweir_")?;
    let end = digits.find('"')?;
    digits[..end].parse().ok().map(StatementId)
}

fn error_code(body: &[u8]) -> Option<String> {
    backend::parse_error_fields(body).0
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
