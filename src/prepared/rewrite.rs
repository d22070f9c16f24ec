//! Rewriting a client's extended-protocol messages for the server it holds now: statement
//! names become internal names, a statement missing on this server is prepared first (its
//! ParseComplete swallowed), and every message that gets a reply is entered in [`Pending`]
//! in the order it is sent. The client's unnamed statement is made sure of the same way
//! ([`super::unnamed`]). Portal names are never touched: in Postgres a portal lives only as
//! long as its transaction, and a transaction never moves between servers (a client is
//! linked to one server from its first message until ReadyForQuery reports it idle).
//!
//! Named statements and row shapes: Postgres keeps each session's statements until it
//! closes them, and answers a Bind or Describe of one whose result type a DDL changed with
//! 0A000, every time, until the session prepares it again. pgweir keeps each client's names
//! ([`super::ClientStatements`]) with the generation of the statement's row shape when the
//! client prepared it; a server's 0A000 advances the generation ([`Statement::invalidate`]),
//! after which every client that prepared it before gets 0A000 from pgweir on each use,
//! whichever server it holds, and servers prepare a fresh copy for clients that prepare it
//! again. A Bind's result formats thus always meet the row shape the client described.
//! Between a DDL and the first use that reveals it, a client that prepares the same text
//! may be answered from a server's older copy; its first use then gets 0A000 too, which
//! Postgres would not have sent, and preparing again (what drivers do) recovers.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;

use super::pending::{ClientUndo, Expect, Pending, Reply, Undo};
use super::registry::{close_message, describe_message, Statement, StatementId};
use super::unnamed::{Unnamed, UnnamedUndo};
use super::CacheCounts;
use super::{ClientStatements, ServerStatements};
use crate::error::{Severity, SqlState};
use crate::protocol::framer::{Disposition, View};
use crate::protocol::{backend, be, fe, split_cstr};

/// A Close of a statement that never exists: the server answers CloseComplete and does
/// nothing else, which makes it a reply pgweir can put in pipeline order.
const STAND_IN_CLOSE: &[u8] = b"C\0\0\0\x11Spgweir_none\0";
/// A Parse that always fails with a syntax error: pgweir's way of raising an error in
/// pipeline order, with the server aborting the transaction and skipping to Sync as usual.
const FAILING_PARSE: &[u8] = b"P\0\0\0\x1epgweir_fail\0pgweir_fail\0\0\0";
const SYNC: &[u8] = b"S\0\0\0\x04";

/// What one client message became; `stmt` is the statement a Bind runs, so the caller can
/// account for its effects.
pub struct Rewritten {
    pub disposition: Disposition,
    pub stmt: Option<Arc<Statement>>,
}

impl From<Disposition> for Rewritten {
    fn from(disposition: Disposition) -> Self {
        Rewritten {
            disposition,
            stmt: None,
        }
    }
}

/// Everything one client message may touch.
pub struct Rewriter<'a> {
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub pending: &'a mut Pending,
    /// `max_prepared_statements`; zero passes names through unchanged.
    pub max: usize,
    /// The client's transaction has failed: Postgres refuses Parse and DEALLOCATE there,
    /// so pgweir must not answer them itself.
    pub tx_failed: bool,
    pub counts: &'a CacheCounts,
}

impl Rewriter<'_> {
    fn renaming(&self) -> bool {
        self.max > 0
    }

    /// Raises `error` in place of the whole current message.
    pub fn fail(&mut self, error: Bytes) -> Disposition {
        self.pending.push(Expect::Failure { error });
        Disposition::Replace {
            with: Bytes::from_static(FAILING_PARSE),
            head: usize::MAX,
        }
    }

    /// Raises `error` in place of a simple Query, which is owed a ReadyForQuery too.
    pub fn fail_query(&mut self, error: Bytes) -> Disposition {
        self.pending.push(Expect::Failure { error });
        self.pending.push(Expect::Ready);
        Disposition::Replace {
            with: Bytes::from([FAILING_PARSE, SYNC].concat()),
            head: usize::MAX,
        }
    }

    /// The client sent a statement that drops every prepared statement (DEALLOCATE ALL,
    /// DISCARD ALL): its names and this server's cache are cleared now, so messages after
    /// it in the same pipeline are rewritten for the cleared state.
    pub fn clear_all(&mut self) {
        let restore = self.client.clear_names();
        self.server.clear();
        self.pending.push(Expect::Cleared { restore });
    }

    /// A Sync, Query or FunctionCall forwarded: a ReadyForQuery is owed.
    pub fn ready_owed(&mut self) {
        self.pending.push(Expect::Ready);
    }

    /// A Parse of a named statement when not renaming, forwarded as is.
    pub fn parse_forwarded(&mut self) -> Disposition {
        self.pending.push(Expect::Parse {
            reply: Reply::Forward,
            undo: None,
            stmt: None,
        });
        Disposition::Forward
    }

    /// A Parse of the unnamed statement with this `body`, forwarded as is; `None` for one
    /// too large to keep.
    pub fn parse_unnamed(&mut self, body: Option<&[u8]>) -> Disposition {
        let undo = self.unnamed_parsed(body);
        self.pending.push(Expect::Parse {
            reply: Reply::Forward,
            undo: Undo {
                unnamed: Some(undo),
                ..Undo::default()
            }
            .boxed(),
            stmt: None,
        });
        Disposition::Forward
    }

    /// A simple Query, which drops the unnamed statement (pgweir's stand-ins for one too:
    /// the server's is then unknown, which is always safe).
    pub fn query_sent(&mut self) {
        self.client.unnamed = None;
        self.server.unnamed = None;
    }

    /// An Execute, forwarded: its reply is owed.
    pub fn execute(&mut self) {
        self.pending.push(Expect::Execute);
    }

    /// A Parse of the client's statement `name`, already interned as `stmt`.
    pub fn parse_named(&mut self, name: &[u8], stmt: Arc<Statement>) -> Disposition {
        if self.tx_failed {
            // The server refuses the failing Parse with 25P02, which then stands.
            return self.fail(error(
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if self.client.get(name).is_some() {
            return self.fail(error(
                SqlState::DUPLICATE_PREPARED_STATEMENT,
                &format!("prepared statement \"{}\" already exists", show(name)),
            ));
        }
        let name = Bytes::copy_from_slice(name);
        self.client.insert(name.clone(), stmt.clone());
        self.counts.parsed(1);
        let undo = Some(ClientUndo::Unmap(name));
        let on_server = self.server.touch(&stmt);
        self.counts.count(on_server);
        if on_server {
            let parse_complete = Bytes::from_static(&[be::PARSE_COMPLETE, 0, 0, 0, 4]);
            let undo = Undo {
                client: undo,
                ..Undo::default()
            };
            return self.stand_in(Reply::Instead(parse_complete), undo);
        }
        let mut with = BytesMut::new();
        self.prepare(&mut with, &stmt, Reply::Forward, undo);
        Disposition::Replace {
            with: with.freeze(),
            head: usize::MAX,
        }
    }

    /// A Bind; `len` is the whole message's, `view` at least its head.
    pub fn bind(&mut self, len: usize, view: View<'_>) -> Rewritten {
        let names = view.bytes().and_then(|b| {
            let (portal, rest) = split_cstr(b)?;
            let (name, _) = split_cstr(rest)?;
            Some((portal, name))
        });
        let Some((portal, name)) = names else {
            return self.fail(malformed("Bind")).into();
        };
        if name.is_empty() || !self.renaming() {
            let first = if name.is_empty() {
                match self.ensure_unnamed() {
                    Ok(first) => first,
                    Err(e) => return self.fail(e).into(),
                }
            } else {
                None
            };
            self.pending.push(Expect::Bind {
                stmt: None,
                generation: 0,
            });
            return before(first).into();
        }
        let Some(prepared) = self.client.entry(name) else {
            return self.fail(missing(name)).into();
        };
        if prepared.stale() {
            return self.fail(changed()).into();
        }
        let stmt = prepared.stmt.clone();
        self.counts.bound();
        let mut with = BytesMut::new();
        self.ensure_prepared(&mut with, &stmt);
        let head = 5 + portal.len() + 1 + name.len() + 1;
        with.put_u8(fe::BIND);
        with.put_u32((len - head + 4 + portal.len() + 1 + stmt.name.len() + 1) as u32);
        with.put_slice(portal);
        with.put_u8(0);
        with.put_slice(&stmt.name);
        with.put_u8(0);
        self.pending.push(Expect::Bind {
            stmt: Some(stmt.clone()),
            generation: stmt.generation(),
        });
        Rewritten {
            disposition: Disposition::Replace {
                with: with.freeze(),
                head,
            },
            stmt: Some(stmt),
        }
    }

    /// A Describe of a statement or portal.
    pub fn describe(&mut self, view: View<'_>) -> Disposition {
        let Some((kind, name)) = target(view) else {
            return self.fail(malformed("Describe"));
        };
        if kind != b'S' || name.is_empty() || !self.renaming() {
            let first = if kind == b'S' && name.is_empty() {
                match self.ensure_unnamed() {
                    Ok(first) => first,
                    Err(e) => return self.fail(e),
                }
            } else {
                None
            };
            self.described(None, Reply::Forward);
            return before(first);
        }
        let Some(prepared) = self.client.entry(name) else {
            return self.fail(missing(name));
        };
        let (stmt, stale) = (prepared.stmt.clone(), prepared.stale());
        let mut with = BytesMut::new();
        self.ensure_prepared(&mut with, &stmt);
        with.put_slice(&describe_message(&stmt.name));
        if stale {
            // Postgres sends the ParameterDescription, then the error: a current copy is
            // described, its row shape swallowed, and the error raised after it.
            self.described(None, Reply::Swallow);
            self.pending.push(Expect::Failure { error: changed() });
            with.put_slice(FAILING_PARSE);
        } else {
            self.described(Some(stmt), Reply::Forward);
        }
        Disposition::Replace {
            with: with.freeze(),
            head: usize::MAX,
        }
    }

    /// A Describe is sent; `stmt` is the registered statement it describes.
    fn described(&mut self, stmt: Option<Arc<Statement>>, rows: Reply) {
        let generation = stmt.as_ref().map_or(0, |s| s.generation());
        self.pending.push(Expect::Describe {
            stmt,
            generation,
            rows,
        });
    }

    /// A Close of a statement or portal. A client's statement is only forgotten by the
    /// client: the server keeps it for whoever prepares the same text next.
    pub fn close(&mut self, view: View<'_>) -> Disposition {
        let Some((kind, name)) = target(view) else {
            return self.fail(malformed("Close"));
        };
        if kind == b'S' && name.is_empty() {
            // The client's is gone; the server's stays, for nobody to use.
            let unnamed = UnnamedUndo {
                set: None,
                client: Some(self.client.unnamed.take()),
                server: None,
            };
            return self.stand_in(
                Reply::Forward,
                Undo {
                    unnamed: Some(unnamed),
                    ..Undo::default()
                },
            );
        }
        if kind != b'S' || !self.renaming() {
            self.pending.push(Expect::Close {
                reply: Reply::Forward,
                undo: None,
            });
            return Disposition::Forward;
        }
        let client = self
            .client
            .remove(name)
            .map(|prepared| ClientUndo::Remap(Bytes::copy_from_slice(name), prepared));
        self.stand_in(
            Reply::Forward,
            Undo {
                client,
                ..Undo::default()
            },
        )
    }

    /// A simple Query that is only `DEALLOCATE name` of one of the client's protocol-level
    /// statements: the client forgets the name, and the CommandComplete and ReadyForQuery
    /// come in order from a stand-in Close and a Sync. `None` if the client has no such
    /// statement (then it is a SQL-level one and the Query goes to the server).
    pub fn deallocate(&mut self, name: &[u8]) -> Option<Disposition> {
        if !self.renaming() || self.tx_failed {
            return None;
        }
        let prepared = self.client.remove(name)?;
        let mut done = BytesMut::new();
        backend::command_complete(&mut done, "DEALLOCATE");
        self.pending.push(Expect::Close {
            reply: Reply::Instead(done.freeze()),
            undo: Undo {
                client: Some(ClientUndo::Remap(Bytes::copy_from_slice(name), prepared)),
                ..Undo::default()
            }
            .boxed(),
        });
        self.pending.push(Expect::Ready);
        Some(Disposition::Replace {
            with: Bytes::from([STAND_IN_CLOSE, SYNC].concat()),
            head: usize::MAX,
        })
    }

    /// An unnamed Parse of `DEALLOCATE name` for one of the client's statements (psycopg in
    /// pipeline mode): the client forgets the name, and the server deallocates the internal
    /// statement instead (prepared first if missing here), so Bind and Execute of the
    /// unnamed statement answer exactly as Postgres would. `None` if the client has no such
    /// statement.
    pub fn deallocate_parse(&mut self, name: &[u8]) -> Option<Disposition> {
        if !self.renaming() || self.tx_failed {
            return None;
        }
        let prepared = self.client.remove(name)?;
        let stmt = prepared.stmt.clone();
        let mut with = BytesMut::new();
        self.ensure_prepared(&mut with, &stmt);
        self.server.remove(stmt.id);
        let sql = format!("DEALLOCATE {}", String::from_utf8_lossy(&stmt.name));
        let mut parse = BytesMut::new();
        frontend::parse("", &sql, std::iter::empty(), &mut parse).ok()?;
        with.extend_from_slice(&parse);
        // The server's unnamed statement is pgweir's rewrite, which is never sent again.
        let unnamed = self.unnamed_parsed(None);
        self.pending.push(Expect::Parse {
            reply: Reply::Forward,
            undo: Undo {
                client: Some(ClientUndo::Remap(Bytes::copy_from_slice(name), prepared)),
                unnamed: Some(unnamed),
                ..Undo::default()
            }
            .boxed(),
            stmt: None,
        });
        Some(Disposition::Replace {
            with: with.freeze(),
            head: usize::MAX,
        })
    }

    /// Sends [`STAND_IN_CLOSE`] in place of the current message; its reply becomes `reply`.
    fn stand_in(&mut self, reply: Reply, undo: Undo) -> Disposition {
        let undo = undo.boxed();
        self.pending.push(Expect::Close { reply, undo });
        Disposition::Replace {
            with: Bytes::from_static(STAND_IN_CLOSE),
            head: usize::MAX,
        }
    }

    /// Records a new unnamed statement as the client's and this server's; returns the
    /// undo for its Parse. `body`: the Parse's, if it may be sent again.
    fn unnamed_parsed(&mut self, body: Option<&[u8]>) -> UnnamedUndo {
        let new = Unnamed::new(body, self.client.unnamed.as_ref());
        let set = Some(new.id);
        let client = self.client.unnamed.replace(new.clone());
        let server = self.server.unnamed.replace(new);
        UnnamedUndo {
            set,
            client: Some(client),
            server: Some(server),
        }
    }

    /// Makes sure this server holds the client's unnamed statement: the client's Parse to
    /// send first (its reply swallowed) if the server holds another or none. The error is
    /// Postgres's for a client without one, or for one pgweir cannot send again.
    fn ensure_unnamed(&mut self) -> Result<Option<Bytes>, Bytes> {
        let Some(mine) = &self.client.unnamed else {
            return Err(no_unnamed());
        };
        if self.server.unnamed.as_ref().map(|u| u.id) == Some(mine.id) {
            return Ok(None);
        }
        let Some(parse) = mine.parse.clone() else {
            return Err(no_unnamed());
        };
        let set = Some(mine.id);
        let before = self.server.unnamed.replace(mine.clone());
        self.pending.push(Expect::Parse {
            reply: Reply::Swallow,
            undo: Undo {
                unnamed: Some(UnnamedUndo {
                    set,
                    client: None,
                    server: Some(before),
                }),
                ..Undo::default()
            }
            .boxed(),
            stmt: None,
        });
        Ok(Some(parse))
    }

    /// Prepares `stmt` on this server first if it is not there, replies swallowed.
    fn ensure_prepared(&mut self, with: &mut BytesMut, stmt: &Arc<Statement>) {
        let on_server = self.server.touch(stmt);
        self.counts.count(on_server);
        if !on_server {
            self.prepare(with, stmt, Reply::Swallow, None);
        }
    }

    /// Appends to `with` what prepares `stmt` here: a Close of the statement the cache
    /// evicts to make room, a Close of `stmt`'s own name (harmless if absent, and it clears
    /// a copy invalidated by DDL), then its Parse, whose ParseComplete becomes `reply`.
    fn prepare(
        &mut self,
        with: &mut BytesMut,
        stmt: &Arc<Statement>,
        reply: Reply,
        client: Option<ClientUndo>,
    ) {
        if let Some(evicted) = self.server.insert(stmt, self.max) {
            with.put_slice(&close_message(internal_name(evicted).as_bytes()));
            self.swallowed_close();
        }
        with.put_slice(&stmt.close);
        self.swallowed_close();
        with.put_slice(&stmt.parse);
        self.pending.push(Expect::Parse {
            reply,
            undo: Undo {
                client,
                server: Some(stmt.id),
                unnamed: None,
            }
            .boxed(),
            stmt: Some(stmt.clone()),
        });
    }

    fn swallowed_close(&mut self) {
        self.pending.push(Expect::Close {
            reply: Reply::Swallow,
            undo: None,
        });
    }
}

fn internal_name(id: StatementId) -> String {
    format!("pgweir_{}", id.0)
}

/// `first` sent before the current message, which follows unchanged.
fn before(first: Option<Bytes>) -> Disposition {
    match first {
        None => Disposition::Forward,
        Some(with) => Disposition::Replace { with, head: 0 },
    }
}

/// The kind byte and name of a Describe or Close body.
fn target(view: View<'_>) -> Option<(u8, &[u8])> {
    let (&kind, rest) = view.whole()?.split_first()?;
    let (name, _) = split_cstr(rest)?;
    Some((kind, name))
}

/// An ErrorResponse as Postgres would word it.
pub fn error(code: SqlState, message: &str) -> Bytes {
    let mut b = BytesMut::new();
    backend::error_response(&mut b, Severity::Error, code, message);
    b.freeze()
}

fn missing(name: &[u8]) -> Bytes {
    error(
        SqlState::INVALID_SQL_STATEMENT_NAME,
        &format!("prepared statement \"{}\" does not exist", show(name)),
    )
}

fn no_unnamed() -> Bytes {
    error(
        SqlState::INVALID_SQL_STATEMENT_NAME,
        "unnamed prepared statement does not exist",
    )
}

/// Postgres's answer to using a statement whose result type changed since it was prepared.
fn changed() -> Bytes {
    error(
        SqlState::FEATURE_NOT_SUPPORTED,
        "cached plan must not change result type",
    )
}

fn malformed(what: &str) -> Bytes {
    error(
        SqlState::PROTOCOL_VIOLATION,
        &format!("invalid {what} message format"),
    )
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
