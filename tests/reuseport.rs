//! Several pgweir processes on one port (`so_reuseport`): the kernel spreads new clients
//! over them, each serves its own, and when one dies the others take every new client.
//! Without the setting a second process cannot listen there at all.

mod common;

use std::process::Command;

use common::{within, Pgweir};

/// Clients that log in and run a query, one connection (and source port) each.
async fn clients_served(pgweir: &Pgweir, n: usize) -> usize {
    let mut served = 0;
    for _ in 0..n {
        let client = pgweir.connect().await;
        let row = within(10, "SELECT 1", client.query_one("SELECT 1", &[])).await;
        if row.is_ok_and(|r| r.get::<_, i32>(0) == 1) {
            served += 1;
        }
    }
    served
}

fn logins(pgweir: &Pgweir) -> usize {
    pgweir.log().matches("client logged in").count()
}

#[tokio::test]
async fn processes_share_a_port_and_survive_each_other() {
    let builder = || Pgweir::builder().general("so_reuseport = true");
    let first = builder().start();
    let second = builder().start_sharing(first.port);

    assert_eq!(clients_served(&first, 60).await, 60);
    let (a, b) = (logins(&first), logins(&second));
    assert_eq!(a + b, 60, "every login is in one log or the other");
    assert!(
        a > 0 && b > 0,
        "the kernel spread clients over both: {a} and {b}"
    );

    first.signal("KILL");
    assert_eq!(clients_served(&second, 20).await, 20);
    assert_eq!(
        logins(&second),
        b + 20,
        "the survivor took every new client"
    );
}

#[test]
fn without_so_reuseport_a_second_process_cannot_listen() {
    let first = Pgweir::start();
    let toml = std::fs::read_to_string(&first.config_path).expect("read the config");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pgweir.toml");
    std::fs::write(&path, toml).expect("write the config");
    let out = Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run pgweir");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("cannot listen on 127.0.0.1"), "{log}");
}
