//! What one leak-test client's session must look like, as Postgres defines it.
//!
//! The model is the oracle: it is updated only by statements the client itself ran,
//! so anything the server shows beyond it came from another client, and anything
//! missing was lost on the way between servers. The transaction rules are
//! Postgres's (checked against a direct connection by the `direct` variant): a SET
//! survives COMMIT and not ROLLBACK, SET LOCAL ends with the transaction, LISTEN and
//! UNLISTEN take effect at COMMIT, temp tables and WITH HOLD cursors created in a
//! transaction vanish with its rollback, while prepared statements, session advisory
//! locks, DEALLOCATE and CLOSE ignore transactions altogether.

use std::collections::{BTreeMap, BTreeSet};

/// A session setting the test changes, and the values it sets it to.
pub struct Guc {
    pub name: &'static str,
    /// Values written as Postgres shows them. Empty: each SET uses a value unique to
    /// the client, so a leaked one names its owner.
    pub values: &'static [&'static str],
    /// A list setting, written unquoted in `SET` (a quoted `search_path` is one name).
    pub list: bool,
}

pub const GUCS: [Guc; 6] = [
    Guc {
        name: "search_path",
        values: &["public", "leak_a, public", "pg_catalog, public"],
        list: true,
    },
    Guc {
        name: "statement_timeout",
        values: &["30s", "5min", "0"],
        list: false,
    },
    Guc {
        name: "work_mem",
        values: &["1MB", "8MB", "16MB"],
        list: false,
    },
    Guc {
        name: "application_name",
        values: &[],
        list: false,
    },
    Guc {
        name: "TimeZone",
        values: &["UTC", "Europe/Berlin", "Asia/Tokyo"],
        list: false,
    },
    Guc {
        name: "pgweir_leak.tag",
        values: &[],
        list: false,
    },
];

/// Index of `application_name`, whose default comes from the startup packet.
pub const APPLICATION_NAME: usize = 3;
/// Indexes into [`GUCS`] of the settings Postgres reports with ParameterStatus.
pub const REPORTED: [usize; 2] = [APPLICATION_NAME, 4];
/// Index of the custom setting: unset reads as NULL, and once a session has had it
/// set, as '' after a reset (Postgres keeps the placeholder), so both mean default.
pub const TAG: usize = 5;

/// A setting's value; `None` means "the session default".
pub type Value = Option<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenOp {
    Listen(String),
    Unlisten(String),
    UnlistenAll,
}

/// What an open transaction block has changed so far.
#[derive(Debug, Default)]
pub struct Tx {
    /// An error happened: only ROLLBACK (or COMMIT, which rolls back) is accepted.
    pub failed: bool,
    /// Session-level SETs, kept by COMMIT.
    pending: BTreeMap<usize, Value>,
    /// SET LOCALs, gone at the end of the transaction either way.
    local: BTreeMap<usize, Value>,
    /// LISTEN/UNLISTEN, applied in order at COMMIT.
    listen_ops: Vec<ListenOp>,
    /// Temp tables at BEGIN, restored by ROLLBACK.
    temps_before: BTreeMap<String, String>,
    /// Temp tables created `ON COMMIT DROP` in this transaction.
    on_commit_drop: BTreeSet<String>,
    /// Cursors declared in this transaction, closed by ROLLBACK.
    new_cursors: BTreeSet<String>,
    /// Transaction-level advisory locks.
    pub xact_locks: BTreeSet<i64>,
}

/// One client's expected session state.
#[derive(Debug)]
pub struct Model {
    /// What each setting reads as when nobody set it in this session.
    defaults: Vec<Value>,
    session: Vec<Value>,
    pub tx: Option<Tx>,
    /// Protocol-level prepared statements: name → the constant they return.
    pub protocol: BTreeMap<String, String>,
    /// SQL-level (`PREPARE`) statements: name → constant.
    pub prepared: BTreeMap<String, String>,
    /// Session advisory locks: key → how many times it is held.
    pub locks: BTreeMap<i64, u32>,
    /// Temp tables: name → the one value stored in them.
    pub temps: BTreeMap<String, String>,
    pub channels: BTreeSet<String>,
    /// WITH HOLD cursors: name → the one value they return.
    pub cursors: BTreeMap<String, String>,
}

impl Model {
    /// A fresh session whose settings read as `defaults` (one per [`GUCS`] entry).
    pub fn new(defaults: Vec<Value>) -> Model {
        Model {
            session: vec![None; defaults.len()],
            defaults,
            tx: None,
            protocol: BTreeMap::new(),
            prepared: BTreeMap::new(),
            locks: BTreeMap::new(),
            temps: BTreeMap::new(),
            channels: BTreeSet::new(),
            cursors: BTreeMap::new(),
        }
    }

    /// The same client after it disconnected and logged in again.
    pub fn reconnected(&self) -> Model {
        Model::new(self.defaults.clone())
    }

    /// What `SHOW` must say for setting `i` right now (`None`: not set at all).
    pub fn setting(&self, i: usize) -> Value {
        let tx = self.tx.as_ref();
        let assigned = tx
            .and_then(|t| t.local.get(&i).or_else(|| t.pending.get(&i)))
            .unwrap_or(&self.session[i]);
        assigned.clone().or_else(|| self.defaults[i].clone())
    }

    /// `SET [LOCAL] name = value` (`None`: `RESET` / `TO DEFAULT`). SET LOCAL outside
    /// a transaction block only draws a warning.
    pub fn set(&mut self, i: usize, value: Value, local: bool) {
        match (&mut self.tx, local) {
            (Some(tx), true) => {
                tx.local.insert(i, value);
            }
            (Some(tx), false) => {
                tx.local.remove(&i);
                tx.pending.insert(i, value);
            }
            (None, true) => {}
            (None, false) => self.session[i] = value,
        }
    }

    /// `RESET ALL`. Postgres skips a setting whose current value came from a reset,
    /// so after `SET LOCAL x TO DEFAULT` it stays a local change and COMMIT brings
    /// back the session's value of `x`.
    pub fn reset_all(&mut self) {
        for i in 0..GUCS.len() {
            let local_default = self
                .tx
                .as_ref()
                .is_some_and(|t| t.local.get(&i) == Some(&None));
            if !local_default {
                self.set(i, None, false);
            }
        }
    }

    /// `DISCARD ALL`, which Postgres refuses inside a transaction block.
    pub fn discard_all(&mut self) {
        *self = self.reconnected();
    }

    pub fn begin(&mut self) {
        self.tx = Some(Tx {
            temps_before: self.temps.clone(),
            ..Tx::default()
        });
    }

    /// COMMIT: a failed transaction rolls back instead.
    pub fn commit(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        if tx.failed {
            self.tx = Some(tx);
            self.rollback();
            return;
        }
        for (i, value) in tx.pending {
            self.session[i] = value;
        }
        for op in tx.listen_ops {
            self.apply_listen(op);
        }
        for name in tx.on_commit_drop {
            self.temps.remove(&name);
        }
    }

    pub fn rollback(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        self.temps = tx.temps_before;
        self.cursors
            .retain(|name, _| !tx.new_cursors.contains(name));
    }

    /// A statement failed: an open transaction block is now aborted.
    pub fn fail(&mut self) {
        if let Some(tx) = &mut self.tx {
            tx.failed = true;
        }
    }

    pub fn in_tx(&self) -> bool {
        self.tx.is_some()
    }

    pub fn failed(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.failed)
    }

    /// The ReadyForQuery status the client must see.
    pub fn status(&self) -> u8 {
        match &self.tx {
            None => b'I',
            Some(tx) if tx.failed => b'E',
            Some(_) => b'T',
        }
    }

    fn listen_op(&mut self, op: ListenOp) {
        match &mut self.tx {
            Some(tx) => tx.listen_ops.push(op),
            None => self.apply_listen(op),
        }
    }

    fn apply_listen(&mut self, op: ListenOp) {
        match op {
            ListenOp::Listen(ch) => {
                self.channels.insert(ch);
            }
            ListenOp::Unlisten(ch) => {
                self.channels.remove(&ch);
            }
            ListenOp::UnlistenAll => self.channels.clear(),
        }
    }

    pub fn listen(&mut self, channel: &str) {
        self.listen_op(ListenOp::Listen(channel.into()));
    }

    pub fn unlisten(&mut self, channel: &str) {
        self.listen_op(ListenOp::Unlisten(channel.into()));
    }

    pub fn unlisten_all(&mut self) {
        self.listen_op(ListenOp::UnlistenAll);
    }

    /// Channels LISTENed in the open transaction, not yet committed.
    pub fn pending_channels(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        for op in self.tx.iter().flat_map(|t| &t.listen_ops) {
            if let ListenOp::Listen(ch) = op {
                all.insert(ch.clone());
            }
        }
        all
    }

    pub fn create_temp(&mut self, name: &str, value: &str, on_commit_drop: bool) {
        self.temps.insert(name.into(), value.into());
        if let Some(tx) = &mut self.tx {
            if on_commit_drop {
                tx.on_commit_drop.insert(name.into());
            }
        }
    }

    pub fn drop_temp(&mut self, name: &str) {
        self.temps.remove(name);
        if let Some(tx) = &mut self.tx {
            tx.on_commit_drop.remove(name);
        }
    }

    pub fn declare(&mut self, name: &str, value: &str) {
        self.cursors.insert(name.into(), value.into());
        if let Some(tx) = &mut self.tx {
            tx.new_cursors.insert(name.into());
        }
    }

    pub fn lock(&mut self, key: i64) {
        *self.locks.entry(key).or_default() += 1;
    }

    pub fn unlock(&mut self, key: i64) {
        if let Some(count) = self.locks.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.locks.remove(&key);
            }
        }
    }

    /// Advisory lock keys `pg_locks` must list for this session.
    pub fn held_keys(&self) -> BTreeSet<i64> {
        let xact = self.tx.iter().flat_map(|t| t.xact_locks.iter());
        self.locks.keys().chain(xact).copied().collect()
    }

    /// How many pieces of state pin the client to its server (or would, in a
    /// transaction that commits).
    pub fn pins(&self) -> usize {
        self.prepared.len()
            + self.locks.len()
            + self.temps.len()
            + self.channels.len()
            + self.pending_channels().len()
            + self.cursors.len()
    }
}
