//! Replicas failing and working under load (issue 5): a replica stopped while ten clients
//! read costs none of them a failed read, and gets reads again once it is back; pgbench's
//! select-only run through an `auto` database and through a `target = "replica"` one
//! finishes without an error.
//!
//! Each test clones a replica of its own from `common::routing::primary` and runs its own
//! pgweir with the monitor sampling every 50 ms.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::{Client, Config};

use common::replica::{replicas_line, Replica};
use common::routing::{
    auto_routing, eventually, eventually_within, primary, ran_on_replica, until_reads_on_replica,
};
use common::{connect, pgbench, report_number, run_tool, within, Pgweir, SCRAM_USER, TEST_DB};

/// Phases of the stop test: reads started while the replica is up, stopped, started again.
const UP: usize = 0;
const STOPPED: usize = 1;
const RESTARTED: usize = 2;

/// Where the readers' reads ran, per phase, and every failed read.
#[derive(Default)]
struct Tally {
    /// Readers whose reads have reached the replica once.
    ready: AtomicUsize,
    phase: AtomicUsize,
    on_replica: [AtomicU64; 3],
    on_primary: [AtomicU64; 3],
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn replica_reads(&self, phase: usize) -> u64 {
        self.on_replica[phase].load(Ordering::Relaxed)
    }

    fn primary_reads(&self, phase: usize) -> u64 {
        self.on_primary[phase].load(Ordering::Relaxed)
    }
}

/// One autocommit read, over the simple protocol for even-numbered readers and as an
/// unnamed extended-protocol statement for odd ones (both may be retried elsewhere).
async fn read(client: &Client, reader: usize) -> Result<bool, tokio_postgres::Error> {
    if reader.is_multiple_of(2) {
        ran_on_replica(client, "SELECT pg_is_in_recovery()").await
    } else {
        let rows = client
            .query_typed("SELECT pg_is_in_recovery()", &[])
            .await?;
        Ok(rows[0].get(0))
    }
}

/// Reads in a loop until `done`, recording each read under the phase it started in. A
/// connection pgweir closed counts as a failed read and is replaced, so that the load (and
/// the picture of where later reads go) carries on.
async fn reader(config: Config, n: usize, tally: Arc<Tally>, done: Arc<AtomicBool>) {
    let mut client = connect(&config).await.expect("a reader's connection");
    until_reads_on_replica(&client, "a reader reaching the replica").await;
    tally.ready.fetch_add(1, Ordering::SeqCst);
    while !done.load(Ordering::Relaxed) {
        let phase = tally.phase.load(Ordering::SeqCst);
        match read(&client, n).await {
            Ok(on_replica) => {
                let counts = match on_replica {
                    true => &tally.on_replica,
                    false => &tally.on_primary,
                };
                counts[phase].fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                let failure = format!("reader {n}, phase {phase}: {err:?}");
                tally.failures.lock().unwrap().push(failure);
                if client.is_closed() {
                    client = connect(&config).await.expect("a reader's new connection");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `pg_ctl stop` or `start` on the replica, off the async runtime so the readers go on.
async fn replica_ctl(replica: &Arc<Replica>, action: &'static str) {
    let replica = replica.clone();
    tokio::task::spawn_blocking(move || primary().replica_ctl(&replica, action))
        .await
        .expect("pg_ctl thread");
}

/// Waits until `count()` reaches `at_least`; fails the test after `secs` seconds.
async fn until_count(secs: u64, what: &str, at_least: u64, count: impl Fn() -> u64) {
    eventually_within(secs, what, || {
        let reached = count() >= at_least;
        async move { reached }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_replica_under_read_load_fails_no_read() {
    const READERS: usize = 10;
    let replica = Arc::new(primary().replica("").await);
    let pgweir = auto_routing(&[&replica])
        .general("replica_ban_time = \"1s\"")
        .pool_size(4)
        .start();

    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let mut readers = Vec::new();
    for n in 0..READERS {
        let (tally, done) = (tally.clone(), done.clone());
        readers.push(tokio::spawn(reader(config.clone(), n, tally, done)));
    }
    until_count(30, "every reader on the replica", READERS as u64, || {
        tally.ready.load(Ordering::SeqCst) as u64
    })
    .await;
    until_count(30, "reads on the replica before the stop", 100, || {
        tally.replica_reads(UP)
    })
    .await;

    replica_ctl(&replica, "stop").await;
    tally.phase.store(STOPPED, Ordering::SeqCst);
    // Long enough for the ban (1 s) to run out twice, so the monitor's checks of the dead
    // replica happen while clients read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    until_count(30, "reads while the replica is down", 100, || {
        tally.primary_reads(STOPPED)
    })
    .await;

    tally.phase.store(RESTARTED, Ordering::SeqCst);
    replica_ctl(&replica, "start").await;
    // The replica's pools refused new logins when it went down; they try again only after
    // `server_login_retry` (15 s by default), so allow for that on top of the ban.
    until_count(60, "reads back on the restarted replica", 100, || {
        tally.replica_reads(RESTARTED)
    })
    .await;

    done.store(true, Ordering::Relaxed);
    for reader in readers {
        within(30, "a reader finishing", reader)
            .await
            .expect("a reader task");
    }
    eprintln!(
        "reads (replica/primary): up {}/{}, stopped {}/{}, restarted {}/{}",
        tally.replica_reads(UP),
        tally.primary_reads(UP),
        tally.replica_reads(STOPPED),
        tally.primary_reads(STOPPED),
        tally.replica_reads(RESTARTED),
        tally.primary_reads(RESTARTED),
    );
    let failures = tally.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} reads failed; the first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(
        tally.replica_reads(STOPPED),
        0,
        "a stopped replica answered a read"
    );
}

/// Runs pgbench's select-only script against `db` through pgweir and fails the test on
/// any error; returns the number of transactions it ran.
async fn select_only(pgweir: &Pgweir, db: &str, mode: &str) -> u64 {
    const CLIENTS: u64 = 8;
    const PER_CLIENT: u64 = 200;
    let (clients, per_client) = (CLIENTS.to_string(), PER_CLIENT.to_string());
    // -n: no vacuum first, which a replica refuses (pgbench would print the error and go on).
    let args = [
        "-n",
        "-S",
        "-M",
        mode,
        "-c",
        &clients,
        "-j",
        "2",
        "-t",
        &per_client,
    ];
    let out = within(120, "pgbench -S", run_tool(pgbench(pgweir.port, db, &args))).await;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let what = format!("pgbench -S -M {mode} through {db}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{report}",
        out.status
    );
    assert!(
        !report.to_lowercase().contains("error"),
        "{what} reported an error:\n{report}"
    );
    let processed = report_number(&report, "number of transactions actually processed:");
    assert_eq!(processed, Some(CLIENTS * PER_CLIENT), "{what}:\n{report}");
    let failed = report_number(&report, "number of failed transactions:");
    assert_eq!(failed, Some(0), "{what}:\n{report}");
    eprintln!("{what}:\n{report}");
    CLIENTS * PER_CLIENT
}

#[tokio::test]
async fn pgbench_select_only_through_auto_and_replica_target_databases() {
    let db = primary().create_database("bench");
    let replica = primary().replica("").await;
    let init = run_tool(pgbench(primary().port, &db, &["-i", "-q"])).await;
    assert!(
        init.status.success(),
        "pgbench -i straight to the primary: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    replica.wait_caught_up(primary()).await;

    let ro = format!("{db}_ro");
    let pgweir = auto_routing(&[&replica])
        .database(&db)
        .pool_size(4)
        .extra(&format!(
            "[databases.{ro}]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{db}\"\n{}\n\
             target = \"replica\"\n",
            primary().port,
            replicas_line(&[&replica])
        ))
        .start();
    for name in [&db, &ro] {
        let client = pgweir.connect_as(&SCRAM_USER, name).await;
        until_reads_on_replica(&client, &format!("reads through {name} on the replica")).await;
    }

    let before = replica.commits(&db).await;
    let mut ran = 0;
    for name in [&db, &ro] {
        for mode in ["simple", "prepared"] {
            ran += select_only(&pgweir, name, mode).await;
        }
    }
    // The replica's statistics reach pg_stat_database within about a second of its
    // backends going idle; at least half of pgbench's transactions must show there.
    let replica = &replica;
    let db = db.as_str();
    eventually(
        "pgbench's transactions counted on the replica",
        || async move { replica.commits(db).await - before >= (ran / 2) as i64 },
    )
    .await;
}
