//! The command line: `--version`, `check` on good and bad configs, `-c`, the
//! default `pgweir.toml` in the working directory, `${ENV}` expansion and durations.

use crate::common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{check, free_port, Pgweir};

fn pgweir_cmd() -> Command {
    let mut cmd = common::pgweir_command();
    cmd.stdin(Stdio::null());
    cmd
}

/// Whether an error report points at `line`, in any of the usual spellings.
fn mentions_line(text: &str, line: usize) -> bool {
    [
        format!("line {line}"),
        format!(":{line}:"),
        format!(":{line},"),
        format!(" {line} |"),
    ]
    .iter()
    .any(|needle| text.contains(needle.as_str()))
}

const GOOD: &str = r#"[pgweir]
listen_addr = "127.0.0.1"
listen_port = 6432
auth_type = "scram-sha-256"
server_connect_timeout = "250ms"

[pool]
pool_mode = "transaction"
default_pool_size = 20

[databases.app]
host = "127.0.0.1"
port = 5432

[users.alice]
password = "secret"
"#;

#[test]
fn version_prints_the_crate_version() {
    let out = pgweir_cmd().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {text:?}"
    );
}

#[test]
fn check_accepts_a_good_config() {
    let (out, text) = check(GOOD, &[]);
    assert!(out.status.success(), "good config rejected:\n{text}");
}

#[test]
fn check_reports_every_error_with_key_and_line() {
    let bad = GOOD
        .replace("listen_port = 6432", "listen_prot = 6432")
        .replace("pool_mode = \"transaction\"", "pool_mode = \"sometimes\"");
    let (out, text) = check(&bad, &[]);
    assert!(!out.status.success(), "bad config accepted:\n{text}");
    assert!(
        text.contains("listen_prot"),
        "unknown key not named:\n{text}"
    );
    assert!(mentions_line(&text, 3), "line 3 not named:\n{text}");
    assert!(
        text.contains("pool_mode"),
        "second error (pool_mode) not reported:\n{text}"
    );
    assert!(mentions_line(&text, 8), "line 8 not named:\n{text}");
}

#[test]
fn check_rejects_a_bad_duration() {
    let bad = GOOD.replace("\"250ms\"", "\"5 parsecs\"");
    let (out, text) = check(&bad, &[]);
    assert!(!out.status.success(), "bad duration accepted:\n{text}");
    assert!(
        text.contains("server_connect_timeout"),
        "key not named:\n{text}"
    );
}

#[test]
fn check_accepts_integer_second_durations() {
    let (out, text) = check(&GOOD.replace("\"250ms\"", "15"), &[]);
    assert!(out.status.success(), "integer seconds rejected:\n{text}");
}

#[test]
fn env_variables_are_expanded_and_unset_ones_are_errors() {
    let with_env = GOOD.replace("\"secret\"", "\"${PGWEIR_TEST_SECRET}\"");
    let (out, text) = check(&with_env, &[("PGWEIR_TEST_SECRET", "s3cret")]);
    assert!(out.status.success(), "set variable rejected:\n{text}");
    let (out, text) = check(&with_env, &[]);
    assert!(!out.status.success(), "unset variable accepted");
    assert!(
        text.contains("PGWEIR_TEST_SECRET"),
        "unset variable not named:\n{text}"
    );
}

/// Waits for a port to accept, killing the child and failing if it never does.
fn assert_listens(child: &mut std::process::Child, port: u16) {
    until_listening(child, port);
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits (up to 20 s) until pgweir accepts on `port`; panics if it exits first.
fn until_listening(child: &mut std::process::Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("pgweir exited early: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pgweir never listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn write_config(dir: &Path, port: u16) {
    let toml = Pgweir::builder().config_toml(port);
    std::fs::write(dir.join("pgweir.toml"), toml).unwrap();
}

#[test]
fn short_c_flag_runs_the_pooler() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), port);
    let mut child = pgweir_cmd()
        .arg("-c")
        .arg(dir.path().join("pgweir.toml"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_listens(&mut child, port);
}

#[test]
fn pgweir_toml_in_the_working_directory_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), port);
    let mut child = pgweir_cmd()
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_listens(&mut child, port);
}

/// Starts pgweir at `log_level = "error"`, lets it run briefly and returns its log.
fn log_at_error_level(rust_log: Option<&str>) -> String {
    let pgweir = Pgweir::builder().log_level("error");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("pgweir.toml"), pgweir.config_toml(port)).unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut cmd = pgweir_cmd();
    cmd.current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log_path).unwrap());
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let mut child = cmd.spawn().unwrap();
    until_listening(&mut child, port);
    // The socket accepts as soon as it is bound, a moment before the line saying so is
    // written: give a busy machine that moment when a line is expected, pgweir still
    // running.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if rust_log.is_none() || log.contains("INFO") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn rust_log_overrides_log_level() {
    let quiet = log_at_error_level(None);
    assert!(
        !quiet.contains("INFO"),
        "log_level = error still logged INFO:\n{quiet}"
    );
    let loud = log_at_error_level(Some("info"));
    assert!(
        loud.contains("INFO"),
        "RUST_LOG=info logged no INFO line:\n{loud}"
    );
}
