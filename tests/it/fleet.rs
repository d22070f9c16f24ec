//! Several pgweir processes, one server-connection budget (issue 18 point 3): two
//! processes of one fleet with `max_db_connections = 10` never have more than 10 server
//! connections in Postgres together, share the work, and the survivor of a SIGKILL takes
//! the whole budget within seconds. Apart from the fleet: a role's CONNECTION LIMIT below
//! the pool size costs clients nothing, and the refusals are counted.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::console::{console, show, with_console, ADMIN};
use common::{
    cluster, connect, pgbench, pgbench_database, report_number, run_tool, within, Pgweir,
    SCRAM_USER, TEST_DB,
};

const FLEET: &str = "ci-fleet";
const BUDGET: i64 = 10;

/// A member of the test fleet exposing `db`, pool size 10, budget 10.
fn member(db: &str) -> Pgweir {
    with_console()
        .database(db)
        .pool_size(10)
        .max_client_conn(200)
        .pool(&format!("max_db_connections = {BUDGET}"))
        .general(&format!("fleet = \"{FLEET}\""))
        .start()
}

/// The server connections of the fleet's pools in `dbs`: the SCRAM user's backends there,
/// the coordination connections (named `pgweir fleet=...`) left out.
async fn servers_in(admin: &tokio_postgres::Client, dbs: &[String]) -> i64 {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1) AND usename = $2 \
             AND application_name NOT LIKE 'pgweir fleet=%'",
            &[&dbs, &SCRAM_USER.name],
        )
        .await
        .expect("count backends");
    row.get(0)
}

/// Samples [`servers_in`] every 10 ms until the flag is set; yields the most seen.
fn sample_peak(dbs: Vec<String>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<i64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = tokio::spawn(async move {
        let admin = cluster().admin().await;
        let mut peak = 0;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(servers_in(&admin, &dbs).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    });
    (stop, handle)
}

/// Waits until SHOW FLEET on `pgweir` shows its coordination connection up and `members`
/// members for its budget of `kind` (`database` or `user`).
async fn until_members(pgweir: &Pgweir, kind: &str, members: &str) {
    let admin = console(pgweir, ADMIN, "pgweir").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let fleet = show(&admin, "SHOW FLEET").await;
        let row = fleet.rows_where("kind", kind);
        let at = |c: &str| row.first().and_then(|r| r[fleet.index(c)].clone());
        if at("connected").as_deref() == Some("1") && at("members").as_deref() == Some(members) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "SHOW FLEET never showed {members} members: {:?}\n{}",
            fleet.rows,
            pgweir.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs pgbench through `pgweir`; returns its transactions after checking that none failed.
async fn bench(pgweir: &Pgweir, db: &str, clients: &str, secs: &str) -> u64 {
    let out = run_tool(pgbench(
        pgweir.port,
        db,
        &["-c", clients, "-j", "2", "-T", secs, "-n"],
    ))
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench failed:\n{report}\n{errors}\n{}",
        pgweir.log()
    );
    let failed = report_number(&report, "number of failed transactions:");
    assert_eq!(failed, Some(0), "{report}");
    report_number(&report, "number of transactions actually processed:").expect("a count")
}

/// Waits (at most 10 s) until SHOW POOLS on `pgweir` counts `n` servers for `db`.
async fn until_servers(admin: &tokio_postgres::Client, db: &str, n: i64, pgweir: &Pgweir) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool_servers(admin, db).await != n {
        assert!(
            Instant::now() < deadline,
            "SHOW POOLS never showed {n} servers\n{}",
            pgweir.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Servers the console's SHOW POOLS counts for `db`: in use, idle or logging in.
async fn pool_servers(admin: &tokio_postgres::Client, db: &str) -> i64 {
    let pools = show(admin, "SHOW POOLS").await;
    let row = pools.rows_where("database", db);
    let n = |c: &str| -> i64 {
        let v = row.first().and_then(|r| r[pools.index(c)].clone());
        v.and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    n("sv_active") + n("sv_idle") + n("sv_used") + n("sv_login")
}

#[tokio::test]
async fn two_members_keep_to_one_budget_and_the_survivor_takes_it_all() {
    let _heavy = common::heavy().await;
    let db = pgbench_database("fleet").await;
    let a = member(&db);
    let mut b = member(&db);
    // A first client makes each pool, whose budget starts the coordination.
    for m in [&a, &b] {
        let c = within(20, "first client", m.connect_as(&SCRAM_USER, &db)).await;
        c.simple_query("SELECT 1").await.expect("first query");
    }
    until_members(&a, "database", "2").await;
    until_members(&b, "database", "2").await;

    let (stop, peak) = sample_peak(vec![db.clone()]);
    let (done_a, done_b) = tokio::join!(bench(&a, &db, "100", "10"), bench(&b, &db, "100", "10"));
    let total = done_a + done_b;
    eprintln!("transactions: {done_a} through a, {done_b} through b");
    assert!(
        done_a * 3 >= total && done_b * 3 >= total,
        "each member does at least a third: {done_a} and {done_b}"
    );

    // Both busy again, each on its share; then SIGKILL one: the survivor gets it all.
    let a_busy = bench(&a, &db, "50", "12");
    let b_busy = run_tool(pgbench(
        b.port,
        &db,
        &["-c", "50", "-j", "2", "-T", "12", "-n"],
    ));
    let kill_and_watch = async {
        let admin = console(&a, ADMIN, "pgweir").await;
        until_servers(&admin, &db, BUDGET / 2, &a).await;
        b.signal("KILL");
        let started = Instant::now();
        until_servers(&admin, &db, BUDGET, &a).await;
        started.elapsed()
    };
    let (_, _, took) = tokio::join!(a_busy, b_busy, kill_and_watch);
    eprintln!("the survivor had all {BUDGET} servers {took:?} after the kill");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("sampler");
    eprintln!("the most server connections Postgres showed at once: {peak}");
    assert!(
        peak <= BUDGET,
        "Postgres saw {peak} server connections of the fleet, budget {BUDGET}"
    );
    assert!(b.exited().is_some(), "the killed member is gone");
}

#[tokio::test]
async fn a_user_s_limit_holds_over_the_fleet_and_its_databases() {
    let _heavy = common::heavy().await;
    const LIMIT: i64 = 4;
    // Databases of its own: Postgres's count of the user's connections must not include
    // other tests' in the shared database.
    let (first, other) = (
        cluster().create_database("fleetu"),
        cluster().create_database("fleetu"),
    );
    let dbs = vec![first.clone(), other.clone()];
    let member = || {
        with_console()
            .database(&first)
            .database(&other)
            .pool_size(4)
            .pool(&format!("max_user_connections = {LIMIT}"))
            .general("fleet = \"ci-fleet-users\"")
            .start()
    };
    let (a, b) = (member(), member());
    for m in [&a, &b] {
        let c = within(20, "first client", m.connect_as(&SCRAM_USER, &other)).await;
        c.simple_query("SELECT 1").await.expect("first query");
    }
    until_members(&a, "user", "2").await;
    until_members(&b, "user", "2").await;
    let (stop, peak) = sample_peak(dbs.clone());
    let mut tasks = Vec::new();
    for (i, m) in [&a, &b].into_iter().cycle().take(20).enumerate() {
        let config = m.config(SCRAM_USER.name, SCRAM_USER.password, &dbs[i % 4 / 2]);
        tasks.push(tokio::spawn(async move {
            let client = connect(&config).await?;
            for _ in 0..20 {
                client.simple_query("SELECT pg_sleep(0.01)").await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for t in tasks {
        let done = within(60, "a client's queries", t).await;
        if let Err(e) = done.expect("client task") {
            panic!("a client failed: {e:?}\n{}\n{}", a.log(), b.log());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("sampler");
    eprintln!("the most server connections of the user at once: {peak}");
    assert!(
        (1..=LIMIT).contains(&peak),
        "Postgres saw {peak} server connections of the user, limit {LIMIT}"
    );
}

#[tokio::test]
async fn a_member_that_loses_its_coordination_connection_holds_nothing_until_it_is_back() {
    let db = cluster().create_database("fleetlost");
    let pgweir = with_console()
        .database(&db)
        .pool_size(4)
        .pool("max_db_connections = 4")
        .general("fleet = \"ci-fleet-lost\"")
        .start();
    let client = within(20, "first client", pgweir.connect_as(&SCRAM_USER, &db)).await;
    client.simple_query("SELECT 1").await.expect("first query");
    until_members(&pgweir, "database", "1").await;
    let postgres = cluster().admin().await;
    postgres
        .simple_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name LIKE 'pgweir fleet=ci-fleet-lost %'",
        )
        .await
        .expect("terminate the coordination connection");
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut lost, mut emptied) = (false, false);
    loop {
        let fleet = show(&admin, "SHOW FLEET").await;
        let connected = fleet.get("kind", "database", "connected");
        lost |= connected.as_deref() == Some("0");
        emptied |= lost && pool_servers(&admin, &db).await == 0;
        if emptied && connected.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost {lost}, servers closed {emptied}, SHOW FLEET {:?}\n{}",
            fleet.rows,
            pgweir.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = within(
        10,
        "a query once the slots are back",
        client.simple_query("SELECT 1"),
    );
    rows.await.expect("the client carries on");
}

#[tokio::test]
async fn a_role_s_connection_limit_queues_clients_instead_of_failing_them() {
    const ROLE: (&str, &str) = ("fleet_limited", "limited_pw");
    cluster().psql(
        "postgres",
        &format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}' CONNECTION LIMIT 3",
            ROLE.0, ROLE.1
        ),
    );
    let metrics = common::free_port();
    let pgweir = with_console()
        .user(ROLE.0, ROLE.1)
        .pool_size(10)
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics}\""))
        .start();
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let config = pgweir.config(ROLE.0, ROLE.1, TEST_DB);
        tasks.push(tokio::spawn(async move {
            let client = connect(&config).await?;
            for _ in 0..10 {
                client
                    .simple_query("BEGIN; SELECT pg_sleep(0.005); COMMIT")
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for t in tasks {
        let done = within(60, "a client's transactions", t).await;
        if let Err(e) = done.expect("client task") {
            panic!("a client failed: {e:?}\n{}", pgweir.log());
        }
    }
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let pools = show(&admin, "SHOW POOLS").await;
    let refused = pools.rows_where("user", ROLE.0)[0][pools.index("sv_refused")].clone();
    let refused: u64 = refused.and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(
        refused >= 1,
        "SHOW POOLS counts the refusals: {:?}",
        pools.rows
    );
    let scraped = scrape(metrics).await;
    let line = scraped
        .lines()
        .find(|l| {
            l.starts_with("pgweir_server_refused_total{")
                && l.contains(&format!("user=\"{}\"", ROLE.0))
                && l.contains("reason=\"connection_limit\"")
        })
        .unwrap_or_else(|| panic!("no refusal counter in:\n{scraped}"));
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= 1.0, "{line}");
}

/// The text of `GET /metrics` on 127.0.0.1:`port`.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
