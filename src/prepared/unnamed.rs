//! The client's unnamed statement, which in transaction mode must follow the client from
//! server to server.
//!
//! What PostgreSQL guarantees: the unnamed statement a Parse creates lives until the next
//! Parse of the unnamed statement, a simple Query, or a Close of it, across Syncs and
//! transactions; a Parse that fails leaves no unnamed statement behind (the old one is
//! dropped first), and one the server skips after an error leaves the old one in place.
//! Drivers rely on it: pgx's describe-exec path sends Parse("") + Describe + Sync, reads
//! the reply, and only then Bind("") + Execute + Sync.
//!
//! How pgweir keeps it: every unnamed Parse a client sends gets an [`UnnamedId`] of its
//! own (two Parses of the same text are different statements: a DDL may have come between
//! them), and pgweir remembers the client's last one, with its Parse message, and which one
//! each server holds. A Bind or Describe of the unnamed statement on a server that holds
//! another one (another client's, or none) is preceded by the client's Parse, its
//! ParseComplete swallowed; a client that has none gets Postgres's 26000. pgweir's own
//! simple queries on a server (resets, read-backs) leave it with none.
//!
//! Limits: a Parse too large to keep, and the Parse pgweir rewrites for an extended-protocol
//! DEALLOCATE, cannot be sent again; they are usable on the server that got them and are
//! reported missing elsewhere. A DDL that changes the row type between a Describe and a
//! later Bind on another server is not reported as 0A000 (the statement is parsed anew
//! there). An error the server reports for an Execute before a pipelined unnamed Parse
//! leaves the client with no unnamed statement, where Postgres keeps the previous one.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::fe;

/// One unnamed Parse a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnnamedId(u64);

/// Ids a thread takes at a time from the shared counter, so the hot path (an unnamed Parse
/// per extended-protocol query) touches no memory another worker thread writes.
const ID_BLOCK: u64 = 1 << 20;

impl UnnamedId {
    fn next() -> Self {
        static BLOCKS: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static NEXT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        NEXT.with(|next| {
            let (mut id, mut end) = next.get();
            if id == end {
                id = BLOCKS.fetch_add(1, Ordering::Relaxed) * ID_BLOCK;
                end = id + ID_BLOCK;
            }
            next.set((id + 1, end));
            UnnamedId(id)
        })
    }
}

/// An unnamed statement as pgweir knows it.
#[derive(Debug, Clone)]
pub struct Unnamed {
    pub id: UnnamedId,
    /// The client's whole Parse message, to prepare the statement again on another server;
    /// `None` when it cannot be sent again.
    pub parse: Option<Bytes>,
}

impl Unnamed {
    /// A new unnamed statement from a Parse with this `body`; `None` for one that cannot be
    /// sent again. A body equal to `previous`'s reuses its bytes (drivers parse the same
    /// text over and over).
    pub fn new(body: Option<&[u8]>, previous: Option<&Unnamed>) -> Self {
        let parse = body.map(|body| {
            let same = previous
                .and_then(|p| p.parse.as_ref())
                .filter(|p| p.get(5..) == Some(body));
            match same {
                Some(p) => p.clone(),
                None => parse_message(body),
            }
        });
        Unnamed {
            id: UnnamedId::next(),
            parse,
        }
    }
}

fn parse_message(body: &[u8]) -> Bytes {
    let mut m = BytesMut::with_capacity(5 + body.len());
    m.put_u8(fe::PARSE);
    m.put_u32((4 + body.len()) as u32);
    m.put_slice(body);
    m.freeze()
}

/// Which unnamed statement a slot holds (`None`: none, or none pgweir knows of).
fn holds(slot: &Option<Unnamed>, id: Option<UnnamedId>) -> bool {
    slot.as_ref().map(|u| u.id) == id
}

/// How one message changed the client's and the server's unnamed statement, to be put
/// back if the server skips the message or the message fails.
#[derive(Debug)]
pub struct UnnamedUndo {
    /// What the message left: the id a Parse created, `None` after a Close.
    pub set: Option<UnnamedId>,
    /// The client's before; absent when the message left the client's alone (pgweir
    /// preparing the client's statement again on this server).
    pub client: Option<Option<Unnamed>>,
    /// The server's before; absent when the message left the server's alone.
    pub server: Option<Option<Unnamed>>,
}

impl UnnamedUndo {
    /// Undoes the message. `failed`: it was the message that failed (a Parse that fails
    /// leaves no unnamed statement); otherwise the server skipped it. A slot a later
    /// message has set since is left alone.
    pub fn apply(self, client: &mut Option<Unnamed>, server: &mut Option<Unnamed>, failed: bool) {
        for (slot, before) in [(client, self.client), (server, self.server)] {
            if let Some(before) = before {
                if holds(slot, self.set) {
                    *slot = if failed { None } else { before };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_shares_bytes_but_not_identity() {
        let a = Unnamed::new(Some(b"\0SELECT 1\0\0\0"), None);
        let b = Unnamed::new(Some(b"\0SELECT 1\0\0\0"), Some(&a));
        assert_ne!(a.id, b.id);
        let (pa, pb) = (a.parse.unwrap(), b.parse.unwrap());
        assert_eq!(pa.as_ptr(), pb.as_ptr());
        assert_eq!(&pa[..], b"P\0\0\0\x10\0SELECT 1\0\0\0");
        assert!(Unnamed::new(None, None).parse.is_none());
    }

    #[test]
    fn a_failed_parse_leaves_none_and_a_skipped_one_the_old() {
        let old = Unnamed::new(Some(b"\0SELECT 1\0\0\0"), None);
        let new = Unnamed::new(Some(b"\0SELECT 2\0\0\0"), None);
        let undo = |set: &Unnamed| UnnamedUndo {
            set: Some(set.id),
            client: Some(Some(old.clone())),
            server: Some(None),
        };
        let (mut client, mut server) = (Some(new.clone()), Some(new.clone()));
        undo(&new).apply(&mut client, &mut server, false);
        assert_eq!(client.as_ref().map(|u| u.id), Some(old.id));
        assert!(server.is_none());
        let (mut client, mut server) = (Some(new.clone()), Some(new.clone()));
        undo(&new).apply(&mut client, &mut server, true);
        assert!(client.is_none() && server.is_none());
        let later = Unnamed::new(None, None);
        let (mut client, mut server) = (Some(later.clone()), Some(later.clone()));
        undo(&new).apply(&mut client, &mut server, true);
        assert_eq!(client.map(|u| u.id), Some(later.id), "set again since");
    }
}
