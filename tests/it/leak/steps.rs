//! The random workload: which step a client takes next, given its model.
//!
//! Names of statements, temp tables and cursors come from small pools shared by all
//! clients, so two clients often use the same name at once; the values behind them
//! (and lock keys, channels, application names, the custom tag) are unique to the
//! client, so whatever leaks names its owner. Pinning state is capped and released
//! eagerly, so that with a pool of three servers the unpinned clients still get one.

use super::model::{Model, Value, GUCS, TAG};
use super::rng::Rng;

/// Whether the pooler lets a client hold state that cannot move between servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pins {
    Allowed,
    /// `pin_session_state = false`: such statements fail with SQLSTATE 0A000.
    Refused,
}

const PROTOCOL_NAMES: [&str; 4] = ["ps_1", "ps_2", "ps_3", "ps_4"];
const PREPARED_NAMES: [&str; 3] = ["sp_1", "sp_2", "sp_3"];
const TEMP_NAMES: [&str; 3] = ["t_1", "t_2", "t_3"];
const CURSOR_NAMES: [&str; 3] = ["cur_1", "cur_2", "cur_3"];
/// Most pinning objects a client holds at once.
const MAX_PINS: usize = 3;

#[derive(Debug, Clone)]
pub enum Step {
    Begin,
    Commit,
    Rollback,
    /// A statement in an aborted transaction, which must fail with 25P02.
    ProbeAborted,
    /// Any way of setting or resetting one setting; `sql` is what is sent.
    Set {
        guc: usize,
        value: Value,
        local: bool,
        sql: String,
    },
    ResetAll,
    DiscardAll,
    Show(usize),
    DivideByZero,
    /// Protocol Parse (+ Describe, or + Bind/Execute in the same pipeline).
    Parse {
        name: String,
        value: String,
        run: bool,
    },
    /// Parse of a name the client already has: 42P05.
    ParseExisting(String),
    /// Bind (or Describe) of a name the client does not have: 26000.
    UseMissing {
        name: String,
        describe: bool,
    },
    /// Protocol Close, of an own name or not (both answer CloseComplete).
    CloseStatement(String),
    /// Close and Parse of the same name with new text, then run it, in one pipeline.
    Reparse {
        name: String,
        value: String,
    },
    Prepare {
        name: String,
        value: String,
    },
    Deallocate(String),
    DeallocateAll,
    Lock {
        key: i64,
        try_lock: bool,
    },
    Unlock(i64),
    UnlockAll,
    XactLock(i64),
    CreateTemp {
        name: String,
        value: String,
        on_commit_drop: bool,
        temporary: bool,
    },
    DropTemp(String),
    Listen(String),
    Unlisten(String),
    UnlistenAll,
    Declare {
        name: String,
        value: String,
    },
    CloseCursor(String),
    Reconnect {
        graceful: bool,
    },
}

impl Step {
    /// True for the statements that create state which cannot follow the client.
    pub fn pins(&self) -> bool {
        matches!(
            self,
            Step::Prepare { .. }
                | Step::Lock { .. }
                | Step::Listen(_)
                | Step::Declare { .. }
                | Step::CreateTemp {
                    on_commit_drop: false,
                    ..
                }
        )
    }

    /// The simple-protocol SQL of the step; `None` for protocol-level steps.
    pub fn sql(&self) -> Option<String> {
        Some(match self {
            Step::Begin => "BEGIN".into(),
            Step::Commit => "COMMIT".into(),
            Step::Rollback => "ROLLBACK".into(),
            Step::ProbeAborted => "SELECT 1".into(),
            Step::Set { sql, .. } => sql.clone(),
            Step::ResetAll => "RESET ALL".into(),
            Step::DiscardAll => "DISCARD ALL".into(),
            Step::Show(guc) => format!("SHOW {}", GUCS[*guc].name),
            Step::DivideByZero => "SELECT 1/0".into(),
            Step::Prepare { name, value } => format!("PREPARE {name} AS {}", constant(value)),
            Step::Deallocate(name) => format!("DEALLOCATE {name}"),
            Step::DeallocateAll => "DEALLOCATE ALL".into(),
            Step::Lock { key, try_lock } => {
                let f = if *try_lock {
                    "pg_try_advisory_lock"
                } else {
                    "pg_advisory_lock"
                };
                format!("SELECT {f}({key})")
            }
            Step::Unlock(key) => format!("SELECT pg_advisory_unlock({key})"),
            Step::UnlockAll => "SELECT pg_advisory_unlock_all()".into(),
            Step::XactLock(key) => format!("SELECT pg_advisory_xact_lock({key})"),
            Step::CreateTemp {
                name,
                value,
                on_commit_drop,
                temporary,
            } => format!(
                "CREATE {} TABLE {name} {}AS SELECT '{value}'::text AS v",
                if *temporary { "TEMPORARY" } else { "TEMP" },
                if *on_commit_drop {
                    "ON COMMIT DROP "
                } else {
                    ""
                },
            ),
            Step::DropTemp(name) => format!("DROP TABLE {name}"),
            Step::Listen(channel) => format!("LISTEN {channel}"),
            Step::Unlisten(channel) => format!("UNLISTEN {channel}"),
            Step::UnlistenAll => "UNLISTEN *".into(),
            Step::Declare { name, value } => {
                format!("DECLARE {name} SCROLL CURSOR WITH HOLD FOR SELECT '{value}'::text")
            }
            Step::CloseCursor(name) => format!("CLOSE {name}"),
            _ => return None,
        })
    }
}

/// A query returning `value`, in a column named after it.
pub fn constant(value: &str) -> String {
    format!("SELECT '{value}'::text AS {value}")
}

/// Kinds of step and their base weights.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Begin,
    End,
    Set,
    Reset,
    ResetAll,
    DiscardAll,
    Show,
    DivideByZero,
    Parse,
    ParseExisting,
    UseMissing,
    CloseStatement,
    Reparse,
    Prepare,
    Deallocate,
    DeallocateAll,
    Lock,
    Unlock,
    UnlockAll,
    XactLock,
    CreateTemp,
    DropTemp,
    Listen,
    Unlisten,
    UnlistenAll,
    Declare,
    CloseCursor,
    Reconnect,
}

const KINDS: [Kind; 28] = [
    Kind::Begin,
    Kind::End,
    Kind::Set,
    Kind::Reset,
    Kind::ResetAll,
    Kind::DiscardAll,
    Kind::Show,
    Kind::DivideByZero,
    Kind::Parse,
    Kind::ParseExisting,
    Kind::UseMissing,
    Kind::CloseStatement,
    Kind::Reparse,
    Kind::Prepare,
    Kind::Deallocate,
    Kind::DeallocateAll,
    Kind::Lock,
    Kind::Unlock,
    Kind::UnlockAll,
    Kind::XactLock,
    Kind::CreateTemp,
    Kind::DropTemp,
    Kind::Listen,
    Kind::Unlisten,
    Kind::UnlistenAll,
    Kind::Declare,
    Kind::CloseCursor,
    Kind::Reconnect,
];

/// Picks one client's steps.
pub struct Generator {
    client: usize,
    rng: Rng,
    pins: Pins,
    /// Makes every value this client uses unique.
    counter: u32,
    /// Sessions this client has started: lock keys differ per session, because the
    /// backend a client just left may still hold its locks for a moment (with Postgres
    /// directly as through pgweir, where the cleanup runs after the client is gone).
    lives: i64,
}

impl Generator {
    pub fn new(client: usize, seed: u64, pins: Pins) -> Generator {
        let stream = seed ^ (client as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f);
        Generator {
            client,
            rng: Rng::new(stream),
            pins,
            counter: 0,
            lives: 0,
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A value no other client ever uses, fit to be an identifier too.
    fn unique(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("c{}_{kind}{}", self.client, self.counter)
    }

    /// The client's own advisory lock keys (a bigint below 2^32 shows as objid).
    fn lock_key(&mut self, base: i64) -> i64 {
        base + (self.lives * 100 + self.client as i64) * 10 + self.rng.below(3) as i64
    }

    fn channel(&mut self) -> String {
        format!("ch_c{}_{}", self.client, self.rng.below(3) + 1)
    }

    pub fn next(&mut self, m: &Model) -> Step {
        if m.failed() {
            return match self.rng.below(10) {
                0..=3 => Step::Rollback,
                4..=7 => Step::Commit,
                _ => Step::ProbeAborted,
            };
        }
        let weights: Vec<usize> = KINDS.iter().map(|k| self.weight(*k, m)).collect();
        let mut roll = self.rng.below(weights.iter().sum());
        let at = weights
            .iter()
            .position(|w| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .expect("a kind for every roll");
        self.build(KINDS[at], m)
    }

    /// How likely `kind` is in the client's current state; 0 when it does not apply.
    fn weight(&self, kind: Kind, m: &Model) -> usize {
        let tx = m.in_tx();
        let pinned = m.pins() > 0;
        let acquire = match self.pins {
            Pins::Allowed if m.pins() < MAX_PINS => 3,
            Pins::Allowed => 0,
            Pins::Refused => 1,
        };
        let release = |have: bool, w: usize| match (have, pinned) {
            (false, _) => 0,
            (true, true) => 3 * w,
            (true, false) => w,
        };
        let own = m.protocol.len();
        match kind {
            Kind::Begin => usize::from(!tx) * 10,
            Kind::End => usize::from(tx) * 10,
            Kind::Set => 14,
            Kind::Reset => 4,
            Kind::ResetAll | Kind::DiscardAll | Kind::Reconnect => 1,
            Kind::Show => 3,
            Kind::DivideByZero => 2,
            Kind::Parse => usize::from(own < PROTOCOL_NAMES.len()) * 6,
            Kind::ParseExisting => usize::from(own > 0),
            Kind::UseMissing => usize::from(own < PROTOCOL_NAMES.len()) * 2,
            Kind::CloseStatement => 1 + usize::from(own > 0) * 2,
            Kind::Reparse => usize::from(own > 0) * 2,
            Kind::Prepare => acquire * usize::from(m.prepared.len() < PREPARED_NAMES.len()),
            Kind::Deallocate => release(!m.prepared.is_empty(), 4),
            Kind::DeallocateAll => 1,
            Kind::Lock | Kind::Listen => acquire,
            Kind::Unlock => release(!m.locks.is_empty(), 4),
            Kind::UnlockAll => release(!m.locks.is_empty(), 1),
            Kind::XactLock => usize::from(tx) * 2,
            Kind::CreateTemp => acquire * usize::from(m.temps.len() < TEMP_NAMES.len()),
            Kind::DropTemp => release(!m.temps.is_empty(), 4),
            Kind::Unlisten => {
                let have = !m.channels.is_empty() || !m.pending_channels().is_empty();
                release(have, 4)
            }
            Kind::UnlistenAll => release(!m.channels.is_empty(), 1),
            Kind::Declare => acquire * usize::from(m.cursors.len() < CURSOR_NAMES.len()),
            Kind::CloseCursor => release(!m.cursors.is_empty(), 4),
        }
    }

    /// Session and statement steps; the rest in [`Generator::build_held`].
    fn build(&mut self, kind: Kind, m: &Model) -> Step {
        match kind {
            Kind::Begin => Step::Begin,
            Kind::End if self.rng.percent(60) => Step::Commit,
            Kind::End => Step::Rollback,
            Kind::Set => self.set(m),
            Kind::Reset => self.reset(m),
            Kind::ResetAll => Step::ResetAll,
            Kind::DiscardAll => Step::DiscardAll,
            Kind::Show => self.show(m),
            Kind::DivideByZero => Step::DivideByZero,
            Kind::Parse => Step::Parse {
                name: self.free_name(&PROTOCOL_NAMES, |n| m.protocol.contains_key(n)),
                value: self.unique("ps"),
                run: self.rng.percent(50),
            },
            Kind::ParseExisting => Step::ParseExisting(self.owned(m.protocol.keys())),
            Kind::UseMissing => Step::UseMissing {
                name: self.free_name(&PROTOCOL_NAMES, |n| m.protocol.contains_key(n)),
                describe: self.rng.percent(50),
            },
            Kind::CloseStatement => {
                Step::CloseStatement(self.rng.pick(&PROTOCOL_NAMES).to_string())
            }
            Kind::Reparse => Step::Reparse {
                name: self.owned(m.protocol.keys()),
                value: self.unique("ps"),
            },
            Kind::Prepare => Step::Prepare {
                name: self.free_name(&PREPARED_NAMES, |n| m.prepared.contains_key(n)),
                value: self.unique("sp"),
            },
            Kind::Deallocate => Step::Deallocate(self.owned(m.prepared.keys())),
            Kind::DeallocateAll => Step::DeallocateAll,
            _ => self.build_held(kind, m),
        }
    }

    /// Steps about locks, temp tables, channels and cursors, and leaving.
    fn build_held(&mut self, kind: Kind, m: &Model) -> Step {
        match kind {
            Kind::Lock => Step::Lock {
                key: self.lock_key(100_000),
                try_lock: self.rng.percent(50),
            },
            Kind::Unlock => Step::Unlock(*self.owned_item(m.locks.keys())),
            Kind::UnlockAll => Step::UnlockAll,
            Kind::XactLock => Step::XactLock(self.lock_key(200_000)),
            Kind::CreateTemp => Step::CreateTemp {
                name: self.free_name(&TEMP_NAMES, |n| m.temps.contains_key(n)),
                value: self.unique("t"),
                on_commit_drop: self.pins == Pins::Allowed && m.in_tx() && self.rng.percent(30),
                temporary: self.rng.percent(30),
            },
            Kind::DropTemp => Step::DropTemp(self.owned(m.temps.keys())),
            Kind::Listen => Step::Listen(self.channel()),
            Kind::Unlisten => {
                let mut all = m.pending_channels();
                all.extend(m.channels.iter().cloned());
                Step::Unlisten(self.owned(all.iter()))
            }
            Kind::UnlistenAll => Step::UnlistenAll,
            Kind::Declare => Step::Declare {
                name: self.free_name(&CURSOR_NAMES, |n| m.cursors.contains_key(n)),
                value: self.unique("k"),
            },
            Kind::CloseCursor => Step::CloseCursor(self.owned(m.cursors.keys())),
            Kind::Reconnect => {
                self.lives += 1;
                Step::Reconnect {
                    graceful: self.rng.percent(50),
                }
            }
            other => unreachable!("{other:?} is built by Generator::build"),
        }
    }

    /// A name from `pool` the client does not hold (the caller made sure one exists).
    fn free_name(&mut self, pool: &[&str], held: impl Fn(&str) -> bool) -> String {
        let free: Vec<&str> = pool.iter().copied().filter(|n| !held(n)).collect();
        self.rng.pick(&free).to_string()
    }

    fn owned_item<'a, T>(&mut self, items: impl Iterator<Item = &'a T>) -> &'a T {
        let items: Vec<&'a T> = items.collect();
        items[self.rng.below(items.len())]
    }

    fn owned<'a>(&mut self, items: impl Iterator<Item = &'a String>) -> String {
        self.owned_item(items).clone()
    }

    /// SET, SET LOCAL or set_config() of a random setting. SET LOCAL outside a
    /// transaction block is included on purpose: Postgres ignores it with a warning.
    fn set(&mut self, m: &Model) -> Step {
        let guc = self.rng.below(GUCS.len());
        let g = &GUCS[guc];
        let value = match g.values {
            [] => self.unique("v"),
            values => self.rng.pick(values).to_string(),
        };
        let local = self.rng.percent(if m.in_tx() { 40 } else { 10 });
        let sql = if self.rng.percent(30) {
            format!("SELECT set_config('{}', '{value}', {local})", g.name)
        } else {
            let shown = if g.list {
                value.clone()
            } else {
                format!("'{value}'")
            };
            let scope = if local { "LOCAL " } else { "" };
            format!("SET {scope}{} = {shown}", g.name)
        };
        Step::Set {
            guc,
            value: Some(value),
            local,
            sql,
        }
    }

    fn reset(&mut self, m: &Model) -> Step {
        let guc = self.rng.below(GUCS.len());
        let name = GUCS[guc].name;
        let local = m.in_tx() && self.rng.percent(30);
        let sql = match (local, self.rng.percent(50)) {
            (true, _) => format!("SET LOCAL {name} TO DEFAULT"),
            (false, true) => format!("RESET {name}"),
            (false, false) => format!("SET {name} TO DEFAULT"),
        };
        Step::Set {
            guc,
            value: None,
            local,
            sql,
        }
    }

    /// SHOW of a setting, except the custom one while it is unset: whether SHOW then
    /// errors or says '' depends on whether the backend ever had the placeholder.
    fn show(&mut self, m: &Model) -> Step {
        let guc = self.rng.below(GUCS.len());
        if guc == TAG && m.setting(TAG).is_none() {
            return Step::Show(0);
        }
        Step::Show(guc)
    }
}
