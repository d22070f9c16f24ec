//! A pool's registry of statement texts, shared by all its clients: a statement (query text
//! plus parameter types) gets an internal name once, and every server of the pool that
//! prepares it uses that name. Clients hold their statements through `Arc`s; the registry only keeps
//! weak references, so a text no client uses any more is forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

use crate::protocol::fe;
use crate::sql::{Classification, Effects};

/// Identifies a registered statement; its name on servers is `pgweir_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementId(pub u64);

/// A statement text known to pgweir, with the messages that prepare and close it on a server.
#[derive(Debug)]
pub struct Statement {
    pub id: StatementId,
    /// The internal name, without the terminating NUL.
    pub name: Bytes,
    /// A whole Parse message preparing the statement under [`Statement::name`].
    pub parse: Bytes,
    /// A whole Close message for it.
    pub close: Bytes,
    /// What running it may do to the session (settings, pinned state).
    pub effects: Effects,
    /// Custom settings (`app.tenant`) it sets, to be read back by name after it runs.
    pub custom_names: Vec<String>,
    /// Where it may run when replicas are configured; kept so each Bind is routed without
    /// reading the text again.
    pub route: Classification,
    /// Bumped when a server reports that DDL changed the statement's result type: every
    /// server's copy is then stale, and each is prepared afresh on its next use.
    generation: AtomicU32,
    /// Some server has prepared it without error, so the text is known to be valid.
    valid: AtomicBool,
}

/// What the relay learns from a statement's text once, when it is registered.
#[derive(Debug, Default)]
pub struct Analysis {
    pub effects: Effects,
    pub custom_names: Vec<String>,
    pub route: Classification,
}

/// Registry entries beyond this many are pruned of dead ones before it grows further.
const PRUNE_FLOOR: usize = 1024;

/// Statement texts by their Parse body after the client's name (query text, its NUL and the
/// parameter types), so two clients preparing the same text share one server-side statement.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    by_text: HashMap<Bytes, Weak<Statement>>,
    /// Size at which dead entries are swept next; keeps sweeping amortised O(1).
    prune_at: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            inner: Mutex::new(Inner {
                by_text: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Registry {
    /// The statement for `key` (a Parse body after its name), registering it if no client
    /// holds it now. `effects` is computed only for a new text.
    pub fn intern(&self, key: &[u8], analyze: impl FnOnce() -> Analysis) -> Arc<Statement> {
        let mut inner = self.inner.lock();
        if let Some(live) = inner.by_text.get(key).and_then(Weak::upgrade) {
            return live;
        }
        let id = StatementId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let stmt = Arc::new(Statement::new(id, key, analyze()));
        if inner.by_text.len() >= inner.prune_at {
            inner.by_text.retain(|_, w| w.strong_count() > 0);
            inner.prune_at = (inner.by_text.len() * 2).max(PRUNE_FLOOR);
        }
        inner
            .by_text
            .insert(Bytes::copy_from_slice(key), Arc::downgrade(&stmt));
        stmt
    }

    /// The statement for `key` if some client holds it, without registering anything.
    pub fn lookup(&self, key: &[u8]) -> Option<Arc<Statement>> {
        self.inner.lock().by_text.get(key).and_then(Weak::upgrade)
    }

    /// Texts currently registered and held by some client.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        let inner = self.inner.lock();
        inner
            .by_text
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

impl Statement {
    fn new(id: StatementId, key: &[u8], analysis: Analysis) -> Self {
        let name = Bytes::from(format!("pgweir_{}", id.0));
        let mut parse = BytesMut::with_capacity(6 + name.len() + key.len());
        parse.put_u8(fe::PARSE);
        parse.put_u32((4 + name.len() + 1 + key.len()) as u32);
        parse.put_slice(&name);
        parse.put_u8(0);
        parse.put_slice(key);
        Statement {
            id,
            close: close_message(&name),
            name,
            parse: parse.freeze(),
            effects: analysis.effects,
            custom_names: analysis.custom_names,
            route: analysis.route,
            generation: AtomicU32::new(0),
            valid: AtomicBool::new(false),
        }
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    /// A server reported that a DDL changed the result type of its copy prepared at
    /// `generation`: every copy of that generation is stale, and so is every client's
    /// statement prepared before. Several servers reporting the same change bump it once.
    pub fn invalidate(&self, generation: u32) {
        let next = generation.wrapping_add(1);
        let _ = self.generation.compare_exchange(
            generation,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A server prepared it without error.
    pub fn mark_valid(&self) {
        self.valid.store(true, Ordering::Relaxed);
    }

    pub fn is_valid(&self) -> bool {
        self.valid.load(Ordering::Relaxed)
    }
}

/// A Close of the prepared statement `name`.
pub fn close_message(name: &[u8]) -> Bytes {
    statement_message(fe::CLOSE, name)
}

/// A Describe of the prepared statement `name`.
pub fn describe_message(name: &[u8]) -> Bytes {
    statement_message(fe::DESCRIBE, name)
}

/// A Close or Describe (`tag`) of the prepared statement `name`.
fn statement_message(tag: u8, name: &[u8]) -> Bytes {
    let mut m = BytesMut::with_capacity(7 + name.len());
    m.put_u8(tag);
    m.put_u32((4 + 1 + name.len() + 1) as u32);
    m.put_u8(b'S');
    m.put_slice(name);
    m.put_u8(0);
    m.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_statement_until_nobody_holds_it() {
        let r = Registry::default();
        let a = r.intern(b"SELECT 1\0\0\0", Analysis::default);
        let b = r.intern(b"SELECT 1\0\0\0", || unreachable!("already known"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = r.intern(b"SELECT 2\0\0\0", Analysis::default);
        assert_ne!(a.id, c.id);
        drop((a, b));
        let again = r.intern(b"SELECT 1\0\0\0", Analysis::default);
        assert_ne!(again.id, c.id);
        assert_eq!(r.live(), 2);
    }

    #[test]
    fn messages_carry_the_internal_name() {
        let r = Registry::default();
        let s = r.intern(b"SELECT $1\0\0\x01\0\0\0\x17", Analysis::default);
        let name = format!("pgweir_{}", s.id.0);
        assert_eq!(&s.name[..], name.as_bytes());
        let mut expect = vec![b'P'];
        let body = [name.as_bytes(), b"\0SELECT $1\0\0\x01\0\0\0\x17"].concat();
        expect.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        expect.extend_from_slice(&body);
        assert_eq!(&s.parse[..], &expect[..]);
        assert_eq!(s.close[0], b'C');
        assert_eq!(
            &s.close[5..],
            [b"S", name.as_bytes(), b"\0"].concat().as_slice()
        );
    }

    #[test]
    fn dead_entries_are_pruned_as_the_map_grows() {
        let r = Registry::default();
        for i in 0..5000 {
            drop(r.intern(format!("SELECT {i}\0\0\0").as_bytes(), Analysis::default));
        }
        assert!(r.inner.lock().by_text.len() <= 2 * PRUNE_FLOOR);
    }
}
