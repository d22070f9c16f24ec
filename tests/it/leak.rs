//! The randomized proof that no client ever sees another client's session state.
//!
//! Ten clients share a pool of three servers and each runs a random, seeded sequence
//! of SET / SET LOCAL / RESET / DISCARD ALL, transactions that commit, roll back or
//! fail, protocol-level and SQL prepared statements, advisory locks, temp tables,
//! LISTEN and WITH HOLD cursors. Each keeps a model of its own session (`leak/model.rs`)
//! and after every step checks that what the server shows is exactly that model
//! (`leak/observe.rs`). When all have left, fresh clients on every server must see a
//! session nobody touched, and Postgres itself must hold no lock or temp table.
//! Against Postgres directly, half the clients send `application_name` at startup, which
//! is then what RESET, RESET ALL and DISCARD ALL give them back. Through pgweir they do
//! not: pgweir applies startup settings with `set_config` on each server, so a RESET goes
//! back to the server's default, as with PgBouncer (a documented limit). A second pgweir
//! variant runs with `pin_session_state = false`, where every statement that would
//! pin the client must fail with SQLSTATE 0A000 instead.
//!
//! The same workload runs against Postgres directly and through pgweir in session
//! mode: both must pass, which is what shows the model is Postgres's rules and not
//! wishful thinking. Every run prints its seed; `PGWEIR_LEAK_SEED=N` replays each
//! client's sequence of steps (not how they interleave, which is up to the
//! scheduler), `PGWEIR_LEAK_STEPS=N` makes the clients take more (or fewer) steps.

use crate::common;

mod model;
mod observe;
mod rng;
mod run;
mod session;
mod steps;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use common::{cluster, Pgweir, PgweirBuilder, TRUST_USER};
use model::{Model, Value, APPLICATION_NAME, GUCS, TAG};
use session::{Client, Target};
use steps::{Generator, Pins};

const CLIENTS: usize = 10;
/// Servers in the transaction-mode pools: far fewer than clients.
const POOL: usize = 3;
const DEFAULT_STEPS: usize = 300;

fn seed() -> u64 {
    match std::env::var("PGWEIR_LEAK_SEED") {
        Ok(s) => s.trim().parse().expect("PGWEIR_LEAK_SEED must be a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

fn steps_per_client() -> usize {
    std::env::var("PGWEIR_LEAK_STEPS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_STEPS)
}

/// pgweir in front of a database of the test's own, with clients let in on trust
/// (the raw-protocol client cannot do SCRAM).
fn pgweir(db: &str) -> PgweirBuilder {
    Pgweir::builder().auth_type("trust").database(db)
}

fn through(pgweir: &Pgweir, db: &str) -> Target {
    Target {
        port: pgweir.port,
        user: TRUST_USER.name,
        db: db.into(),
        startup_application_name: false,
    }
}

/// What each setting reads as in a session nobody changed, asked of Postgres directly.
async fn read_defaults(db: &str) -> Vec<Value> {
    let direct = Target {
        port: cluster().port,
        user: TRUST_USER.name,
        db: db.into(),
        startup_application_name: false,
    };
    let mut client = Client::connect(&direct, usize::MAX, 0, None).await;
    let mut defaults = Vec::new();
    for (i, g) in GUCS.iter().enumerate() {
        let reply = client
            .query(&format!("SELECT current_setting('{}', true)", g.name))
            .await;
        let value = reply.values().into_iter().next().flatten();
        defaults.push(if i == TAG { None } else { value });
    }
    client.disconnect(true).await;
    defaults
}

/// One client's whole life: log in, take its steps checking after each, leave.
async fn client_life(target: Target, id: usize, seed: u64, pins: Pins, defaults: Vec<Value>) {
    let startup_name = target.startup_application_name && id.is_multiple_of(2);
    let application_name = startup_name.then(|| format!("leak_c{id}"));
    let mut defaults = defaults;
    if let Some(name) = &application_name {
        defaults[APPLICATION_NAME] = Some(name.clone());
    }
    let mut c = Client::connect(&target, id, seed, application_name).await;
    let mut m = Model::new(defaults);
    let mut generator = Generator::new(id, seed, pins);
    observe::observe(&mut c, &m).await;
    for step in 1..=steps_per_client() {
        c.step = step;
        let next = generator.next(&m);
        run::run(&mut c, &mut m, &next, pins).await;
        observe::observe(&mut c, &m).await;
    }
    let graceful = generator.rng().percent(50);
    c.disconnect(graceful).await;
}

fn panic_text(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a client panicked".into()),
        Err(err) => format!("a client task ended: {err}"),
    }
}

/// Runs the workload against `target`, then checks nothing was left behind; `servers`
/// is how many fresh clients it takes to hold every server at once.
async fn run_workload(variant: &str, target: Target, pins: Pins, servers: usize) {
    let seed = seed();
    println!("leak test seed = {seed} (rerun with PGWEIR_LEAK_SEED={seed}), {variant}");
    let started = Instant::now();
    let defaults = read_defaults(&target.db).await;
    let mut clients = JoinSet::new();
    for id in 0..CLIENTS {
        clients.spawn(client_life(
            target.clone(),
            id,
            seed,
            pins,
            defaults.clone(),
        ));
    }
    while let Some(done) = clients.join_next().await {
        if let Err(err) = done {
            clients.abort_all();
            panic!(
                "{variant}: {}\n(leak test seed = {seed}, rerun with PGWEIR_LEAK_SEED={seed})",
                panic_text(err)
            );
        }
    }
    println!("{variant}: workload done in {:?}", started.elapsed());
    assert_nothing_left_in_postgres(variant, &target.db, seed).await;
    assert_fresh_sessions(variant, &target, &defaults, servers, seed).await;
}

/// Once every client is gone, no backend of the database may hold an advisory lock
/// or a temp table (pgweir gets a few seconds to clean a server up).
async fn assert_nothing_left_in_postgres(variant: &str, db: &str, seed: u64) {
    let admin = cluster().admin_on(db).await;
    let sql = "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = \
               (SELECT oid FROM pg_database WHERE datname = current_database())), \
               (SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relkind = 'r')";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = admin.query_one(sql, &[]).await.expect("count leftovers");
        let (locks, temps): (i64, i64) = (row.get(0), row.get(1));
        if locks == 0 && temps == 0 {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{variant}: after every client left, Postgres still holds {locks} advisory \
                 locks and {temps} temp tables (leak test seed = {seed})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `servers` fresh clients, each inside BEGIN so each holds its own server at once,
/// must all see untouched sessions.
async fn assert_fresh_sessions(
    variant: &str,
    target: &Target,
    defaults: &[Value],
    servers: usize,
    seed: u64,
) {
    let mut fresh = Vec::new();
    let mut pids = BTreeSet::new();
    for i in 0..servers {
        let mut c = Client::connect(target, 1000 + i, seed, None).await;
        c.note(format!("{variant}: fresh client {i}: BEGIN"));
        let mut m = Model::new(defaults.to_vec());
        run::run(&mut c, &mut m, &steps::Step::Begin, Pins::Allowed).await;
        pids.insert(observe::observe(&mut c, &m).await);
        fresh.push(c);
    }
    assert_eq!(
        pids.len(),
        servers,
        "{variant}: fresh clients in BEGIN did not each get their own server (seed {seed})"
    );
    for mut c in fresh {
        c.query("ROLLBACK").await;
        c.disconnect(true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_state_leaks_between_clients_in_transaction_mode() {
    let db = cluster().create_database("leak_tx");
    let pgweir = pgweir(&db).pool_size(POOL).start();
    run_workload(
        "transaction mode",
        through(&pgweir, &db),
        Pins::Allowed,
        POOL,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pin_session_state_off_pinning_statements_fail_and_nothing_leaks() {
    let db = cluster().create_database("leak_nopin");
    let pgweir = pgweir(&db)
        .pool_size(POOL)
        .database_setting("pin_session_state = false")
        .start();
    let target = through(&pgweir, &db);
    run_workload("pin_session_state = false", target, Pins::Refused, POOL).await;
}

/// A server per client: whatever fails here is the model's fault, not pooling's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_holds_in_session_mode() {
    let db = cluster().create_database("leak_session");
    let pgweir = pgweir(&db)
        .pool_mode("session")
        .pool_size(2 * CLIENTS)
        .start();
    run_workload(
        "session mode",
        through(&pgweir, &db),
        Pins::Allowed,
        CLIENTS,
    )
    .await;
}

/// No pooler at all: the model must be exactly Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_holds_against_postgres_itself() {
    let db = cluster().create_database("leak_direct");
    let target = Target {
        port: cluster().port,
        user: TRUST_USER.name,
        db,
        startup_application_name: true,
    };
    run_workload("Postgres directly", target, Pins::Allowed, 3).await;
}
