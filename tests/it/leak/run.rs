//! Running one workload step: sending it, checking the server's answer against what
//! Postgres would say to this client alone, and updating the client's model.
//!
//! The expected answer comes from the model before the step runs: an error the step
//! is meant to cause (division by zero, a duplicate or missing statement name, a
//! statement in an aborted transaction, a pinning statement under
//! `pin_session_state = false`), or success with the result the client's own state
//! implies. Any other answer fails the test.

use std::fmt::Debug;

use super::model::Model;
use super::session::{Client, Reply};
use super::steps::{constant, Pins, Step};

pub async fn run(c: &mut Client, m: &mut Model, step: &Step, pins: Pins) {
    c.note(describe(step));
    if let Step::Reconnect { graceful } = step {
        c.reconnect(*graceful).await;
        *m = m.reconnected();
        return;
    }
    let reply = send(c, step).await;
    match (expected_error(m, step, pins), reply.error()) {
        (None, None) => apply(c, m, step, &reply),
        (Some(want), Some((code, _))) if code == want => m.fail(),
        (want, got) => c.fail(format!(
            "wrong outcome: expected {}, got {}",
            want.map_or("success".into(), |w| format!("SQLSTATE {w}")),
            got.map_or("success".into(), |(code, msg)| format!("{code} {msg}")),
        )),
    }
    let status = reply.status();
    if status != m.status() {
        c.fail(format!(
            "ReadyForQuery status '{}', expected '{}'",
            status as char,
            m.status() as char
        ));
    }
}

/// What the step's log line says.
fn describe(step: &Step) -> String {
    if let Some(sql) = step.sql() {
        return sql;
    }
    match step {
        Step::Parse { name, value, run } => format!(
            "Parse {name} ({}){}",
            constant(value),
            if *run {
                " Bind Execute Sync"
            } else {
                " Describe Sync"
            }
        ),
        Step::ParseExisting(name) => format!("Parse {name} again: Sync"),
        Step::UseMissing { name, describe } => {
            let what = if *describe {
                "Describe"
            } else {
                "Bind Execute"
            };
            format!("{what} {name} (not ours) Sync")
        }
        Step::CloseStatement(name) => format!("Close {name} Sync"),
        Step::Reparse { name, value } => {
            format!(
                "Close {name} Parse {name} ({}) Bind Execute Sync",
                constant(value)
            )
        }
        Step::Reconnect { graceful: true } => "Terminate and log in again".into(),
        _ => "drop the connection and log in again".into(),
    }
}

async fn send(c: &mut Client, step: &Step) -> Reply {
    if let Some(sql) = step.sql() {
        return c.query(&sql).await;
    }
    let wire = c.wire();
    match step {
        Step::Parse { name, value, run } => {
            wire.parse(name, &constant(value));
            if *run {
                wire.bind("", name).execute("");
            } else {
                wire.describe(b'S', name);
            }
        }
        Step::ParseExisting(name) => {
            wire.parse(name, "SELECT 'never stored'::text");
        }
        Step::UseMissing {
            name,
            describe: true,
        } => {
            wire.describe(b'S', name);
        }
        Step::UseMissing { name, .. } => {
            wire.bind("", name).execute("");
        }
        Step::CloseStatement(name) => {
            wire.close(b'S', name);
        }
        Step::Reparse { name, value } => {
            wire.close(b'S', name)
                .parse(name, &constant(value))
                .bind("", name)
                .execute("");
        }
        other => c.fail(format!("no way to send {other:?}")),
    }
    c.wire().sync();
    c.exchange().await
}

/// The SQLSTATE the step must fail with, or `None` if it must succeed.
fn expected_error(m: &Model, step: &Step, pins: Pins) -> Option<&'static str> {
    if m.failed() && !matches!(step, Step::Commit | Step::Rollback) {
        return Some("25P02");
    }
    match step {
        _ if pins == Pins::Refused && step.pins() => Some("0A000"),
        Step::ParseExisting(_) => Some("42P05"),
        Step::UseMissing { .. } => Some("26000"),
        Step::DivideByZero => Some("22012"),
        Step::DiscardAll if m.in_tx() => Some("25001"),
        _ => None,
    }
}

fn expect_eq<T: Debug + PartialEq>(c: &Client, what: &str, got: T, want: T) {
    if got != want {
        c.fail(format!("{what}: got {got:?}, expected {want:?}"));
    }
}

/// Checks a successful step's result and records its effect in the model.
fn apply(c: &Client, m: &mut Model, step: &Step, reply: &Reply) {
    let one = |v: &str| vec![Some(v.to_string())];
    match step {
        Step::Begin => m.begin(),
        Step::Commit => {
            let tag = if m.failed() { "ROLLBACK" } else { "COMMIT" };
            expect_eq(c, "COMMIT's tag", reply.tags(), vec![tag.to_string()]);
            m.commit();
        }
        Step::Rollback => m.rollback(),
        Step::Set {
            guc, value, local, ..
        } => m.set(*guc, value.clone(), *local),
        Step::ResetAll => m.reset_all(),
        Step::DiscardAll => m.discard_all(),
        Step::Show(guc) => expect_eq(c, "SHOW", reply.values(), vec![m.setting(*guc)]),
        Step::Parse { name, value, run } => {
            if *run {
                expect_eq(c, "the new statement's row", reply.values(), one(value));
            }
            m.protocol.insert(name.clone(), value.clone());
        }
        Step::CloseStatement(name) => {
            m.protocol.remove(name);
        }
        Step::Reparse { name, value } => {
            expect_eq(
                c,
                "the re-parsed statement's row",
                reply.values(),
                one(value),
            );
            m.protocol.insert(name.clone(), value.clone());
        }
        Step::Prepare { name, value } => {
            m.prepared.insert(name.clone(), value.clone());
        }
        Step::Deallocate(name) => {
            m.prepared.remove(name);
        }
        Step::DeallocateAll => {
            m.prepared.clear();
            m.protocol.clear();
        }
        _ => apply_held(c, m, step, reply),
    }
}

/// [`apply`] for locks, temp tables, channels and cursors.
fn apply_held(c: &Client, m: &mut Model, step: &Step, reply: &Reply) {
    let one = |v: &str| vec![Some(v.to_string())];
    match step {
        Step::Lock { key, try_lock } => {
            if *try_lock {
                expect_eq(c, "pg_try_advisory_lock", reply.values(), one("t"));
            }
            m.lock(*key);
        }
        Step::Unlock(key) => {
            expect_eq(c, "pg_advisory_unlock", reply.values(), one("t"));
            m.unlock(*key);
        }
        Step::UnlockAll => m.locks.clear(),
        Step::XactLock(key) => {
            if let Some(tx) = &mut m.tx {
                tx.xact_locks.insert(*key);
            }
        }
        Step::CreateTemp {
            name,
            value,
            on_commit_drop,
            ..
        } => m.create_temp(name, value, *on_commit_drop),
        Step::DropTemp(name) => m.drop_temp(name),
        Step::Listen(channel) => m.listen(channel),
        Step::Unlisten(channel) => m.unlisten(channel),
        Step::UnlistenAll => m.unlisten_all(),
        Step::Declare { name, value } => m.declare(name, value),
        Step::CloseCursor(name) => {
            m.cursors.remove(name);
        }
        _ => c.fail(format!("{step:?} cannot succeed")),
    }
}
