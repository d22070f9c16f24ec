//! `pgweir --takeover`: a second process built from the same binary takes the listening
//! sockets and then every client of a running one, and the clients notice nothing. Counted
//! here: connection attempts refused, transactions failed and clients disconnected, each
//! of which must be zero, while pgbench and a loop of new connections run through the
//! upgrade.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pgbench, pgbench_database, report_number, run_tool, within, Pgweir};

/// Waits for the old process to exit once it has handed everything over.
async fn wait_exit(old: &mut Pgweir) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while old.exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "the old process did not exit; its log:\n{}",
            old.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_moves_with_its_settings_and_statements() {
    let mut old = Pgweir::builder().pool_size(2).start();
    let client = old.connect().await;
    client
        .batch_execute("SET application_name = 'mover'; SET statement_timeout = '7s'")
        .await
        .expect("SET");
    let stmt = client.prepare("SELECT $1::int + 1").await.expect("prepare");
    let before = common::backend_pid(&client).await;

    let new = old.take_over();
    wait_exit(&mut old).await;
    assert!(old.log().contains("takeover: done"), "{}", old.log());

    let row = within(
        10,
        "the prepared statement",
        client.query_one(&stmt, &[&41]),
    )
    .await
    .expect("the statement still works after the takeover");
    assert_eq!(row.get::<_, i32>(0), 42);
    for (setting, value) in [("application_name", "mover"), ("statement_timeout", "7s")] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .expect("SHOW");
        assert_eq!(row.get::<_, String>(0), value, "{setting}");
    }
    let after = common::backend_pid(&client).await;
    assert_ne!(before, after, "a server of the new process");
    assert!(new.log().contains("takeover complete"), "{}", new.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_refuses_fails_and_drops_nobody() {
    let db = pgbench_database("takeover").await;
    let mut old = Pgweir::builder().database(&db).pool_size(4).start();
    let port = old.port;

    let args = ["-n", "-M", "prepared", "-c", "20", "-j", "2", "-T", "8"];
    let bench = tokio::spawn(run_tool(pgbench(port, &db, &args)));

    // New connections all along: each logs in, runs a query and leaves. Counted from
    // the moment the new process starts until the old one has gone.
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let config = old.config(common::SCRAM_USER.name, common::SCRAM_USER.password, &db);
    let churn: Vec<_> = (0..4)
        .map(|_| {
            let (done, failed) = (done.clone(), failed.clone());
            let (errors, stop, config) = (errors.clone(), stop.clone(), config.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let attempt = async {
                        let client = common::connect(&config).await?;
                        client.simple_query("SELECT 1").await
                    };
                    match attempt.await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.lock().push(format!("{e:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = done.load(Ordering::Relaxed);
    let new = old.take_over();
    wait_exit(&mut old).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in churn {
        task.await.expect("a connection loop");
    }
    let out = within(60, "pgbench", bench).await.expect("pgbench");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    let refused_or_failed = failed.load(Ordering::Relaxed);
    assert_eq!(
        refused_or_failed,
        0,
        "new connections refused or failed: {:?}\nold log:\n{}\nnew log:\n{}",
        errors.lock(),
        old.log(),
        new.log()
    );
    let during = done.load(Ordering::Relaxed) - before;
    assert!(during > 0, "the loop kept connecting through the takeover");
    assert!(
        out.status.success(),
        "pgbench: {report}\n{stderr}\nold log:\n{}\nnew log:\n{}",
        old.log(),
        new.log()
    );
    assert_eq!(
        report_number(&report, "number of failed transactions:"),
        Some(0),
        "{report}"
    );
    assert!(
        !stderr.contains("aborted") && !report.contains("aborted"),
        "no client was disconnected: {report}\n{stderr}"
    );
    let handed = old
        .log()
        .matches("handed over to the new pgweir process")
        .count();
    assert!(
        handed >= 20,
        "pgbench's 20 clients were handed over: {handed}"
    );
    eprintln!(
        "takeover under load: {} new connections ({during} during the takeover), 0 refused or failed; pgbench {} transactions, 0 failed, 0 aborted; {handed} clients handed over",
        done.load(Ordering::Relaxed),
        report_number(&report, "number of transactions actually processed:").unwrap_or(0),
    );
}

/// A client on the Unix socket moves like a TCP one, the socket's file stays for the new
/// process, and a process that took over can itself be taken over.
#[tokio::test]
async fn unix_socket_clients_move_and_takeovers_chain() {
    let dir = tempfile::tempdir().expect("socket dir");
    let mut first = Pgweir::builder()
        .general(&format!("unix_socket_dir = \"{}\"", dir.path().display()))
        .start();
    let socket = dir.path().join(format!(".s.PGSQL.{}", first.port));
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(dir.path())
        .port(first.port)
        .user(common::SCRAM_USER.name)
        .password(common::SCRAM_USER.password)
        .dbname(common::TEST_DB);
    let client = common::connect(&config)
        .await
        .expect("connect over the socket");
    client
        .batch_execute("SET search_path = moved, public")
        .await
        .expect("SET");

    let mut second = first.take_over();
    wait_exit(&mut first).await;
    assert!(
        socket.exists(),
        "the socket's file outlives the old process"
    );
    let third = second.take_over();
    wait_exit(&mut second).await;

    let row = within(10, "SHOW", client.query_one("SHOW search_path", &[]))
        .await
        .expect("the client still works after two takeovers");
    assert_eq!(row.get::<_, String>(0), "moved, public");
    let again = common::connect(&config)
        .await
        .expect("a new client on the socket");
    again.simple_query("SELECT 1").await.expect("SELECT 1");
    assert!(third.log().contains("takeover complete"), "{}", third.log());
}
