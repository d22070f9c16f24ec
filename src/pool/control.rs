//! The admin console's switches per database: paused (PAUSE, KILL; undone by RESUME) and
//! disabled (DISABLE; undone by ENABLE). [`Switches`] holds the rules, without I/O or
//! locks; [`Control`], held by [`super::Pools`], puts them in force through one [`Switch`]
//! per database that every pool of the database holds.
//!
//! A pool reads its switch at each checkout, under the pool's own lock, with one atomic
//! load: no lock is added per transaction. A checkout that finds its database paused waits
//! on the switch's `watch` channel until RESUME. Disabled is read once per login.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Why a PAUSE or RESUME is refused; the text is what the console client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// PAUSE while every database is paused already.
    AlreadyPaused,
    /// RESUME without a database while nothing is paused.
    NothingPaused,
    /// RESUME of a database that is not paused.
    NotPaused(String),
    /// RESUME of a database that is paused only because every database is.
    PausedWithAll(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::AlreadyPaused => f.write_str("already paused"),
            ControlError::NothingPaused => f.write_str("pgweir is not paused"),
            ControlError::NotPaused(db) => write!(f, "database {db} is not paused"),
            ControlError::PausedWithAll(db) => write!(
                f,
                "database {db} is paused by a PAUSE of every database; RESUME without a \
                 database ends it"
            ),
        }
    }
}

/// Which databases are paused or disabled, and the rules for changing that.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Switches {
    /// PAUSE or KILL without a database: every database, present and future.
    all_paused: bool,
    paused: BTreeSet<String>,
    disabled: BTreeSet<String>,
}

impl Switches {
    /// PAUSE: one database (again, if it already is), or every database. As in PgBouncer,
    /// nothing can be paused while everything is.
    pub fn pause(&mut self, db: Option<&str>) -> Result<(), ControlError> {
        if self.all_paused {
            return Err(ControlError::AlreadyPaused);
        }
        self.set_paused(db);
        Ok(())
    }

    /// KILL pauses as PAUSE does, but is never refused: it is the way out of a PAUSE that
    /// waits too long.
    pub fn kill(&mut self, db: Option<&str>) {
        self.set_paused(db);
    }

    fn set_paused(&mut self, db: Option<&str>) {
        match db {
            Some(db) => {
                self.paused.insert(db.to_owned());
            }
            None => self.all_paused = true,
        }
    }

    /// RESUME: one database paused on its own, or (without one) everything that is paused.
    pub fn resume(&mut self, db: Option<&str>) -> Result<(), ControlError> {
        match db {
            None if !self.all_paused && self.paused.is_empty() => Err(ControlError::NothingPaused),
            None => {
                self.all_paused = false;
                self.paused.clear();
                Ok(())
            }
            Some(db) if self.paused.remove(db) => Ok(()),
            Some(db) if self.all_paused => Err(ControlError::PausedWithAll(db.to_owned())),
            Some(db) => Err(ControlError::NotPaused(db.to_owned())),
        }
    }

    pub fn disable(&mut self, db: &str) {
        self.disabled.insert(db.to_owned());
    }

    pub fn enable(&mut self, db: &str) {
        self.disabled.remove(db);
    }

    pub fn is_paused(&self, db: &str) -> bool {
        self.all_paused || self.paused.contains(db)
    }

    pub fn is_disabled(&self, db: &str) -> bool {
        self.disabled.contains(db)
    }

    /// Whether PAUSE or KILL without a database is in force.
    pub fn all_paused(&self) -> bool {
        self.all_paused
    }
}

/// One database's pause switch, shared by its pools.
#[derive(Debug)]
pub struct Switch {
    /// Read at every checkout.
    paused: AtomicBool,
    /// The same value, for checkouts that wait for it to clear.
    tx: watch::Sender<bool>,
}

impl Switch {
    fn new(paused: bool) -> Self {
        Switch {
            paused: AtomicBool::new(paused),
            tx: watch::Sender::new(paused),
        }
    }

    /// Whether the database is paused now. A pool calls this under its lock: PAUSE sets
    /// the switch before it takes that lock to count servers, so every checkout either
    /// sees the pause or is counted.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Resolves once the database is not paused (at once if it is not).
    pub async fn resumed(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as this switch: an error cannot happen.
        let _ = rx.wait_for(|paused| !*paused).await;
    }

    /// Resolves once the database is paused (at once if it is).
    pub async fn until_paused(&self) {
        let mut rx = self.tx.subscribe();
        // As in `resumed`: the sender lives as long as this switch.
        let _ = rx.wait_for(|paused| *paused).await;
    }

    /// Pausing, the channel is set first, so a checkout that sees the flag finds the
    /// channel paused too and waits; resuming, the flag is cleared first, so a checkout
    /// woken by the channel finds the flag clear.
    fn set(&self, paused: bool) {
        if paused {
            self.tx.send_if_modified(|p| !std::mem::replace(p, true));
            self.paused.store(true, Ordering::SeqCst);
        } else {
            self.paused.store(false, Ordering::SeqCst);
            self.tx.send_if_modified(|p| std::mem::replace(p, false));
        }
    }
}

/// The switches in force, one [`Switch`] per database that has pools or was named.
#[derive(Debug, Default)]
pub struct Control {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    switches: Switches,
    by_database: HashMap<String, Arc<Switch>>,
}

impl Inner {
    /// Puts the rules' answer in every switch after a change.
    fn apply(&self) {
        for (db, switch) in &self.by_database {
            switch.set(self.switches.is_paused(db));
        }
    }
}

impl Control {
    /// The switch of `database`, for a new pool.
    pub fn switch(&self, database: &str) -> Arc<Switch> {
        let mut inner = self.inner.lock();
        let paused = inner.switches.is_paused(database);
        let switch = inner
            .by_database
            .entry(database.to_owned())
            .or_insert_with(|| Arc::new(Switch::new(paused)));
        Arc::clone(switch)
    }

    /// Changes the switches with `change`, then puts the result in force.
    fn update<T>(&self, change: impl FnOnce(&mut Switches) -> T) -> T {
        let mut inner = self.inner.lock();
        let out = change(&mut inner.switches);
        inner.apply();
        out
    }

    pub fn pause(&self, db: Option<&str>) -> Result<(), ControlError> {
        self.update(|s| s.pause(db))
    }

    pub fn kill(&self, db: Option<&str>) {
        self.update(|s| s.kill(db));
    }

    pub fn resume(&self, db: Option<&str>) -> Result<(), ControlError> {
        self.update(|s| s.resume(db))
    }

    pub fn disable(&self, db: &str) {
        self.update(|s| s.disable(db));
    }

    pub fn enable(&self, db: &str) {
        self.update(|s| s.enable(db));
    }

    pub fn is_paused(&self, db: &str) -> bool {
        self.inner.lock().switches.is_paused(db)
    }

    pub fn is_disabled(&self, db: &str) -> bool {
        self.inner.lock().switches.is_disabled(db)
    }

    /// Whether PAUSE or KILL without a database is in force.
    pub fn all_paused(&self) -> bool {
        self.inner.lock().switches.all_paused()
    }

    /// Whether every one of `databases` is paused, by one PAUSE or several.
    pub fn everything_paused<'a>(&self, mut databases: impl Iterator<Item = &'a String>) -> bool {
        let inner = self.inner.lock();
        inner.switches.all_paused() || databases.all(|db| inner.switches.is_paused(db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_database_pauses_alone_and_resumes_alone() {
        let mut s = Switches::default();
        s.pause(Some("a")).unwrap();
        s.pause(Some("a")).unwrap();
        assert!(s.is_paused("a") && !s.is_paused("b"));
        assert_eq!(
            s.resume(Some("b")),
            Err(ControlError::NotPaused("b".into()))
        );
        s.resume(Some("a")).unwrap();
        assert!(!s.is_paused("a"));
        assert_eq!(s.resume(None), Err(ControlError::NothingPaused));
    }

    #[test]
    fn pausing_everything_covers_every_database_and_refuses_more_pauses() {
        let mut s = Switches::default();
        s.pause(None).unwrap();
        assert!(s.is_paused("any") && s.all_paused());
        assert_eq!(s.pause(None), Err(ControlError::AlreadyPaused));
        assert_eq!(s.pause(Some("a")), Err(ControlError::AlreadyPaused));
        assert_eq!(
            s.resume(Some("a")),
            Err(ControlError::PausedWithAll("a".into()))
        );
        s.resume(None).unwrap();
        assert!(!s.is_paused("any"));
    }

    #[test]
    fn kill_pauses_even_while_paused_and_resume_ends_every_pause() {
        let mut s = Switches::default();
        s.pause(None).unwrap();
        s.kill(Some("a"));
        s.kill(None);
        s.resume(None).unwrap();
        assert!(!s.is_paused("a") && !s.all_paused());
    }

    #[test]
    fn disabling_is_separate_from_pausing() {
        let mut s = Switches::default();
        s.disable("a");
        assert!(s.is_disabled("a") && !s.is_paused("a") && !s.is_disabled("b"));
        s.enable("a");
        s.enable("b");
        assert!(!s.is_disabled("a"));
    }

    #[tokio::test]
    async fn switches_follow_the_rules_and_wake_waiters_on_resume() {
        let control = Control::default();
        let a = control.switch("a");
        control.pause(None).unwrap();
        let late = control.switch("late");
        assert!(a.paused() && late.paused());
        let waiter = tokio::spawn(async move { late.resumed().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        control.resume(None).unwrap();
        waiter.await.unwrap();
        assert!(!a.paused());
        control.kill(Some("a"));
        assert!(a.paused() && control.is_paused("a") && !control.is_paused("b"));
        let names = ["a".to_owned(), "b".to_owned()];
        assert!(!control.everything_paused(names.iter()));
        control.kill(Some("b"));
        assert!(control.everything_paused(names.iter()) && !control.all_paused());
    }
}
