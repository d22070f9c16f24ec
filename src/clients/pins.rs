//! How many clients are pinned to their server (by session state a transaction pooler
//! cannot move: LISTEN, advisory locks, temp tables, ...), now and since start, for the line
//! logged when a client is pinned. Every session holds the one [`PinCounts`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many clients are pinned, now and since start, shared by every session.
#[derive(Debug, Default)]
pub struct PinCounts {
    pinned_now: AtomicUsize,
    pinned_total: AtomicU64,
}

impl PinCounts {
    /// A client became pinned to its server.
    pub fn pinned(&self) {
        self.pinned_now.fetch_add(1, Ordering::Relaxed);
        self.pinned_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A pinned client let go of its server, or left.
    pub fn unpinned(&self) {
        self.pinned_now.fetch_sub(1, Ordering::Relaxed);
    }

    /// Clients pinned right now.
    pub fn pinned_now(&self) -> usize {
        self.pinned_now.load(Ordering::Relaxed)
    }

    /// Times any client became pinned since start.
    pub fn pinned_total(&self) -> u64 {
        self.pinned_total.load(Ordering::Relaxed)
    }
}
