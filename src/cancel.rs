//! CancelRequest routing. Each client gets a key pgweir made up; while the client holds a
//! server, its key maps to that server's real key and address, so a cancel reaches exactly
//! the query the client is running and nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::Rng;
use subtle::ConstantTimeEq;

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
    pub addr: SocketAddr,
    pub key: ServerKey,
}

type Slot = Arc<Mutex<Option<CancelTarget>>>;

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

    /// The server to cancel for a client key, if the key is valid and the client holds one.
    pub fn target(&self, key: ClientKey) -> Option<CancelTarget> {
        let clients = self.clients.lock();
        let (secret, slot) = clients.get(&key.pid)?;
        let matches: bool = secret.to_be_bytes().ct_eq(&key.secret.to_be_bytes()).into();
        if matches {
            *slot.lock()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

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
        *self.slot.lock() = target;
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

    #[test]
    fn routes_only_a_matching_key_to_the_current_target() {
        let reg = Arc::new(CancelRegistry::default());
        let h = reg.register();
        let key = h.key();
        assert_eq!(reg.target(key), None);
        let t = CancelTarget {
            addr: "127.0.0.1:5432".parse().unwrap(),
            key: ServerKey { pid: 42, secret: 7 },
        };
        h.set_target(Some(t));
        assert_eq!(reg.target(key), Some(t));
        let wrong = ClientKey {
            secret: key.secret.wrapping_add(1),
            ..key
        };
        assert_eq!(reg.target(wrong), None);
        drop(h);
        assert_eq!(reg.target(key), None);
        assert!(reg.is_empty());
    }
}
