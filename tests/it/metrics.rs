//! The Prometheus endpoint (issue 6): after a pgbench run, `/metrics` counts exactly the
//! transactions pgbench reports (plus the few queries pgbench sends on its own), every
//! metric the README documents appears, and `/health` answers 200.

use crate::common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{free_port, pgbench, report_number, run_tool, within, Pgweir, SCRAM_USER, TEST_DB};

/// Every metric the README's Metrics section names.
fn documented() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Metrics section in the README");
    let mut names: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(['`', '{']).next())
        .map(str::to_owned)
        .collect();
    names.dedup();
    assert!(names.len() >= 20, "the README's metrics table: {names:?}");
    names
}

/// Names from `names` that `text` has no sample of.
fn missing<'a>(text: &str, names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    names
        .filter(|name| {
            !text.lines().any(|l| {
                l.starts_with(&format!("{name}{{"))
                    || l.starts_with(&format!("{name} "))
                    || l.starts_with(&format!("{name}_bucket{{"))
            })
        })
        .collect()
}

/// A GET of `path` on 127.0.0.1:`port`: the status line and the body.
async fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The value of the sample `name{labels}` whose labels include every one of `with`.
fn sample(text: &str, name: &str, with: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| with.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn with_metrics(port: u16) -> Pgweir {
    Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{port}\""))
        .pool_size(4)
        .start()
}

#[tokio::test]
async fn metrics_count_what_pgbench_counts() {
    let db = common::pgbench_database("metrics").await;
    let metrics_port = free_port();
    let pgweir = Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics_port}\""))
        .database(&db)
        .pool_size(4)
        .start();
    let args = ["-n", "-S", "-c", "8", "-j", "2", "-t", "250"];
    let out = within(
        120,
        "pgbench -S",
        run_tool(pgbench(pgweir.port, &db, &args)),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pgbench failed: {report}");
    let processed = report_number(&report, "number of transactions actually processed:")
        .expect("pgbench's count") as f64;
    assert_eq!(processed, 2000.0);

    let (status, text) = get(metrics_port, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let pair = [
        format!("database=\"{db}\""),
        format!("user=\"{}\"", SCRAM_USER.name),
    ];
    let pair: Vec<&str> = pair.iter().map(String::as_str).collect();
    let xacts = sample(&text, "pgweir_transactions_total", &pair).expect("transactions");
    // pgbench's main thread asks for the scale (and partitions) before its run.
    assert!(
        (processed..=processed + 10.0).contains(&xacts),
        "pgweir counted {xacts} transactions, pgbench {processed}"
    );
    let queries = sample(&text, "pgweir_queries_total", &pair).expect("queries");
    assert!(queries >= xacts);
    let logins = sample(&text, "pgweir_client_logins_total", &pair).expect("logins");
    assert!(logins >= 8.0, "{logins} logins");
    let waits = sample(&text, "pgweir_wait_seconds_count", &pair).expect("wait histogram");
    assert!(waits >= processed, "a wait sample per transaction: {waits}");
    let received = sample(&text, "pgweir_received_bytes_total", &pair).expect("bytes in");
    assert!(received > processed * 20.0, "{received} bytes received");
}

#[tokio::test]
async fn every_documented_metric_appears_and_health_answers() {
    let metrics_port = free_port();
    let pgweir = with_metrics(metrics_port);
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    // An error from the server and a failed login, so their counters exist.
    assert!(client.simple_query("SELECT 1/0").await.is_err());
    let bad = pgweir.config(SCRAM_USER.name, "wrong password", TEST_DB);
    assert!(common::connect(&bad).await.is_err());
    // A timeout: a client idle past client_idle_timeout of a second pgweir.
    let idle_port = free_port();
    let idle = Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{idle_port}\""))
        .pool("client_idle_timeout = \"200ms\"")
        .start();
    let sleeper = idle.connect().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sleeper.simple_query("SELECT 1").await.is_err());
    let (_, idle_text) = get(idle_port, "/metrics").await;
    assert!(
        sample(
            &idle_text,
            "pgweir_timeouts_total",
            &["kind=\"client_idle\""]
        )
        .is_some(),
        "{idle_text}"
    );

    let (_, text) = get(metrics_port, "/metrics").await;
    let names = documented();
    let here = names
        .iter()
        .filter(|n| !n.starts_with("pgweir_replica") && !n.starts_with("pgweir_timeouts"))
        .filter(|n| !n.starts_with("pgweir_fleet"));
    let absent = missing(&text, here);
    assert!(absent.is_empty(), "missing {absent:?} in:\n{text}");
    assert!(sample(&text, "pgweir_errors_total", &["class=\"22\""]).is_some());
    assert_eq!(sample(&text, "pgweir_up", &[]), Some(1.0));

    let (status, body) = get(metrics_port, "/health").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok\n");
    let (status, _) = get(metrics_port, "/nothing").await;
    assert!(status.contains("404"), "{status}");
}

#[tokio::test]
async fn replica_metrics_appear_for_a_database_with_replicas() {
    let replica = common::routing::replica().await;
    let metrics_port = free_port();
    let pgweir = common::routing::auto_routing(&[replica])
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics_port}\""))
        .start();
    let client = pgweir.connect().await;
    common::routing::until_reads_on_replica(&client, "reads on the replica").await;
    let (_, text) = get(metrics_port, "/metrics").await;
    let names = documented();
    let absent = missing(
        &text,
        names.iter().filter(|n| n.starts_with("pgweir_replica")),
    );
    assert!(absent.is_empty(), "missing {absent:?} in:\n{text}");
    let node = sample(
        &text,
        "pgweir_servers",
        &["node=\"replica0\"", "state=\"idle\""],
    );
    assert!(node.is_some(), "servers of the replica's pool:\n{text}");
    let address = format!("address=\"127.0.0.1:{}\"", replica.port);
    let info = sample(
        &text,
        "pgweir_replica_info",
        &["node=\"replica0\"", &address],
    );
    assert_eq!(
        info,
        Some(1.0),
        "the replica's address, by its node:\n{text}"
    );
    assert!(
        !text.contains("replica=\""),
        "one label name for a node:\n{text}"
    );
    promtool_accepts(&text);
}

/// `promtool check metrics` finds nothing to say about `text` (no missing HELP, no
/// naming problems). promtool comes with Prometheus; .ci/run installs it.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.unwrap_or_else(|e| {
        panic!("promtool not found ({e}): install it with `apt-get install prometheus`")
    });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

/// Every family starts with HELP, and the counters whose labels are known in advance
/// start at 0: promtool passes on a fresh pgweir that has served nobody.
#[tokio::test]
async fn a_fresh_pgweir_passes_promtool_with_its_counters_at_zero() {
    let metrics_port = free_port();
    let _pgweir = with_metrics(metrics_port);
    let (_, text) = get(metrics_port, "/metrics").await;
    for kind in [
        "client_login",
        "client_idle",
        "idle_transaction",
        "query",
        "query_wait",
    ] {
        let label = format!("kind=\"{kind}\"");
        assert_eq!(
            sample(&text, "pgweir_timeouts_total", &[&label]),
            Some(0.0),
            "{text}"
        );
    }
    let unknown = [&format!("database=\"{TEST_DB}\"")[..], "user=\"unknown\""];
    let failures = sample(&text, "pgweir_client_auth_failures_total", &unknown);
    assert_eq!(failures, Some(0.0), "{text}");
    promtool_accepts(&text);
}

/// `metrics_histograms` turns the per-pool histograms down to one per database, or off.
#[tokio::test]
async fn histograms_can_be_kept_per_database_or_not_at_all() {
    for (setting, per_user, any) in [("database", false, true), ("off", false, false)] {
        let metrics_port = free_port();
        let pgweir = Pgweir::builder()
            .general(&format!(
                "metrics_addr = \"127.0.0.1:{metrics_port}\"\nmetrics_histograms = \"{setting}\""
            ))
            .start();
        let client = pgweir.connect().await;
        client.simple_query("SELECT 1").await.unwrap();
        let (_, text) = get(metrics_port, "/metrics").await;
        let db = format!("database=\"{TEST_DB}\"");
        let count = sample(&text, "pgweir_query_seconds_count", &[&db]);
        assert_eq!(count.is_some(), any, "{setting}:\n{text}");
        let with_user = text
            .lines()
            .any(|l| l.starts_with("pgweir_query_seconds") && l.contains("user="));
        assert_eq!(with_user, per_user, "{setting}:\n{text}");
        promtool_accepts(&text);
    }
}
