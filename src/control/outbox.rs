//! The old process's side of handing clients over: client tasks post themselves here once
//! between transactions ([`crate::client::handoff::give`]), and the takeover's control
//! thread ([`crate::takeover`]) sends each to the successor in turn.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};

use parking_lot::Mutex;

use super::HandedClient;

/// One client to hand over (its socket, a copy of the descriptor, and its session), or
/// `None`: every client has gone, say so and finish.
pub type Posted = Option<(OwnedFd, Box<HandedClient>)>;

/// Open only while a takeover is under way.
#[derive(Debug, Default)]
pub struct Outbox {
    tx: Mutex<Option<Sender<Posted>>>,
    started: AtomicBool,
    flushed: AtomicBool,
}

impl Outbox {
    /// Opens the outbox for the one takeover a process can have; `None` if it had one.
    pub fn start(&self) -> Option<Receiver<Posted>> {
        if self.started.swap(true, Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = channel();
        *self.tx.lock() = Some(tx);
        Some(rx)
    }

    /// The successor failed before it took anything: as if no takeover had begun.
    pub fn reset(&self) {
        self.tx.lock().take();
        self.started.store(false, Ordering::SeqCst);
    }

    /// Closes the outbox: the successor is gone, or has everything.
    pub fn abandon(&self) {
        self.tx.lock().take();
    }

    /// Posts a client; false when there is no successor to take it.
    pub fn post(&self, fd: OwnedFd, client: Box<HandedClient>) -> bool {
        let tx = self.tx.lock();
        tx.as_ref()
            .is_some_and(|tx| tx.send(Some((fd, client))).is_ok())
    }

    /// Every client has gone: the control thread tells the successor and finishes.
    pub fn finish(&self) {
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(None);
        }
    }

    /// Whether a takeover began (it may have ended since).
    pub fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// The control thread sent the last frame.
    pub fn flushed(&self) {
        self.flushed.store(true, Ordering::SeqCst);
    }

    /// Whether the successor has been told everything, so this process may exit.
    pub fn is_flushed(&self) -> bool {
        self.flushed.load(Ordering::SeqCst)
    }
}
