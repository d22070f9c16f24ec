//! CancelRequest routing. Each client gets a key pgweir made up; while the client holds a
//! server, its key maps to that server's real key and address, so a cancel reaches exactly
//! the query the client is running and nothing else. A cancel still on its way holds the
//! server back from the pool ([`CancelHandle::settle`]), so it can never land on the next
//! client's query.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::net::addr::Addr;
use crate::server::ServerKey;

/// The BackendKeyData pgweir gives a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKey {
    pub pid: i32,
    pub secret: i32,
}

/// Where a cancel for a client goes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: Addr,
    pub key: ServerKey,
}

/// One client's current target and the cancels forwarded to it not yet delivered.
#[derive(Debug, Default)]
struct SlotState {
    target: Mutex<Option<CancelTarget>>,
    in_flight: AtomicUsize,
    delivered: Notify,
}

type Slot = Arc<SlotState>;

/// Every connected client's key and current target.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    clients: Mutex<HashMap<i32, (i32, Slot)>>,
}

impl CancelRegistry {
    /// Gives a new client a unique key; the entry goes away when the handle is dropped.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let mut rng = rand::thread_rng();
        let slot = Slot::default();
        let mut clients = self.clients.lock();
        let pid = loop {
            let pid = rng.gen_range(1..i32::MAX);
            if !clients.contains_key(&pid) {
                break pid;
            }
        };
        let secret = rng.gen();
        clients.insert(pid, (secret, Arc::clone(&slot)));
        CancelHandle {
            registry: Arc::clone(self),
            key: ClientKey { pid, secret },
            slot,
        }
    }

    /// Registers a client under the key it already has (one handed over by the process
    /// that gave it the key); `None` if another client here has that pid.
    pub fn register_as(self: &Arc<Self>, key: ClientKey) -> Option<CancelHandle> {
        let slot = Slot::default();
        let mut clients = self.clients.lock();
        if clients.contains_key(&key.pid) {
            return None;
        }
        clients.insert(key.pid, (key.secret, Arc::clone(&slot)));
        Some(CancelHandle {
            registry: Arc::clone(self),
            key,
            slot,
        })
    }

    /// Whether a client here has this pid in its key.
    pub fn knows(&self, pid: i32) -> bool {
        self.clients.lock().contains_key(&pid)
    }

    /// The server to cancel for a client key, if the key is valid and the client holds one.
    /// The returned guard keeps that server out of the pool until it is dropped, which the
    /// caller does once the cancel has been delivered.
    pub fn target(&self, key: ClientKey) -> Option<(CancelTarget, InFlight)> {
        let clients = self.clients.lock();
        let (secret, slot) = clients.get(&key.pid)?;
        let matches: bool = secret.to_be_bytes().ct_eq(&key.secret.to_be_bytes()).into();
        if !matches {
            return None;
        }
        // Counted under the target lock, so a client that clears its target and then settles
        // cannot miss this cancel.
        let target = slot.target.lock();
        let t = (*target)?;
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        Some((t, InFlight(Arc::clone(slot))))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's registration; updated as it takes and gives back servers.
#[derive(Debug)]
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    key: ClientKey,
    slot: Slot,
}

impl CancelHandle {
    pub fn key(&self) -> ClientKey {
        self.key
    }

    pub fn set_target(&self, target: Option<CancelTarget>) {
        *self.slot.target.lock() = target;
    }

    /// Waits, at most `limit`, until every cancel forwarded to this client's server has been
    /// delivered. Returns false if one is still on its way (the server must not be reused).
    pub async fn settle(&self, limit: Duration) -> bool {
        let slot = &self.slot;
        if slot.in_flight.load(Ordering::Acquire) == 0 {
            // The usual case, every transaction: no timer to set up and tear down.
            return true;
        }
        let wait = async {
            loop {
                let delivered = slot.delivered.notified();
                if slot.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                delivered.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// A forwarded cancel not yet delivered.
#[derive(Debug)]
pub struct InFlight(Slot);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.delivered.notify_waiters();
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.key.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::Addr;

    #[test]
    fn routes_only_a_matching_key_to_the_current_target() {
        let reg = Arc::new(CancelRegistry::default());
        let h = reg.register();
        let key = h.key();
        assert!(reg.target(key).is_none());
        let t = CancelTarget {
            addr: Addr::Tcp("127.0.0.1:5432".parse().unwrap()),
            key: ServerKey { pid: 42, secret: 7 },
        };
        h.set_target(Some(t));
        assert_eq!(reg.target(key).map(|(t, _)| t), Some(t));
        let wrong = ClientKey {
            secret: key.secret.wrapping_add(1),
            ..key
        };
        assert!(reg.target(wrong).is_none());
        drop(h);
        assert!(reg.target(key).is_none());
        assert!(reg.is_empty());
    }

    #[tokio::test]
    async fn settle_waits_for_cancels_in_flight() {
        let reg = Arc::new(CancelRegistry::default());
        let h = reg.register();
        assert!(h.settle(Duration::from_millis(1)).await);
        h.set_target(Some(CancelTarget {
            addr: Addr::Tcp("127.0.0.1:5432".parse().unwrap()),
            key: ServerKey { pid: 1, secret: 2 },
        }));
        let (_, in_flight) = reg.target(h.key()).unwrap();
        h.set_target(None);
        assert!(!h.settle(Duration::from_millis(20)).await);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(in_flight);
        });
        assert!(h.settle(Duration::from_secs(5)).await);
        later.await.unwrap();
    }
}
