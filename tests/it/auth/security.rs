//! Security properties of client authentication (issue 7) that need no TLS, each against a
//! raw-protocol client while a well-behaved client keeps querying alongside: an oversized
//! startup packet or password message and every out-of-order SASL step get FATAL 08P01; a
//! replayed SCRAM client-final fails (08P01 as sent, since the server nonce differs, 28P01
//! with the new nonce spliced in), an altered nonce 08P01 and an altered proof 28P01; pgweir
//! never panics. Secrets (passwords, md5 hashes) never appear in the log at debug level, in
//! SHOW CONFIG / USERS / DATABASES, in error messages or in metrics labels. The admin
//! console's refusal of users outside admin_users and stats_users is tested in
//! `admin::console` (`stats_users_may_only_show_and_other_users_are_refused`).

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::console::{console, show, with_console, ADMIN};
use common::wire::{Msg, Wire};
use common::{free_port, within, Pgweir, MD5_USER, PLAIN_USER, SCRAM_USER, TEST_DB, TRUST_USER};

const MECHANISM: &str = "SCRAM-SHA-256";

/// Authentication request codes in an 'R' message.
const SASL: i32 = 10;
const SASL_CONTINUE: i32 = 11;
const SASL_FINAL: i32 = 12;
const OK: i32 = 0;

fn auth_code(msg: &Msg) -> i32 {
    assert_eq!(
        msg.tag, b'R',
        "expected an authentication request, got {msg:?}"
    );
    i32::from_be_bytes(msg.body[..4].try_into().unwrap())
}

/// A connection that has sent its StartupMessage and been asked for SCRAM.
async fn sasl_asked(pgweir: &Pgweir, user: &str) -> Wire {
    let mut wire = Wire::connect(pgweir.port).await;
    let mut out = BytesMut::new();
    frontend::startup_message([("user", user), ("database", TEST_DB)], &mut out).unwrap();
    wire.raw(&out).send().await;
    assert_eq!(auth_code(&wire.recv().await), SASL);
    wire
}

/// Reads until pgweir closes the connection; the FATAL it sent on the way.
async fn fatal(wire: &mut Wire, what: &str) -> (String, String) {
    let mut error = None;
    while let Some(msg) = within(10, what, wire.read_msg()).await {
        if msg.tag == b'E' {
            assert_eq!(msg.severity().as_deref(), Some("FATAL"), "{what}: {msg:?}");
            error = Some((msg.sqlstate().unwrap(), msg.message().unwrap()));
        }
        assert_ne!(msg.tag, b'Z', "{what}: the login went through");
    }
    error.unwrap_or_else(|| panic!("{what}: closed without an error"))
}

fn sasl_initial(data: &[u8], mechanism: &str) -> BytesMut {
    let mut out = BytesMut::new();
    frontend::sasl_initial_response(mechanism, data, &mut out).unwrap();
    out
}

fn sasl_response(data: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    frontend::sasl_response(data, &mut out).unwrap();
    out
}

/// Runs client-first and returns the server-first data, with the client's state.
async fn scram_first(wire: &mut Wire, password: &str) -> (ScramSha256, Vec<u8>) {
    let scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    wire.raw(&sasl_initial(scram.message(), MECHANISM))
        .send()
        .await;
    let msg = wire.recv().await;
    assert_eq!(auth_code(&msg), SASL_CONTINUE);
    (scram, msg.body[4..].to_vec())
}

/// A complete, successful SCRAM login; returns the client-first and client-final sent.
async fn good_login(pgweir: &Pgweir) -> (Vec<u8>, Vec<u8>) {
    let mut wire = sasl_asked(pgweir, SCRAM_USER.name).await;
    let (mut scram, server_first) = scram_first(&mut wire, SCRAM_USER.password).await;
    let client_first = scram.message().to_vec();
    scram.update(&server_first).unwrap();
    let client_final = scram.message().to_vec();
    wire.raw(&sasl_response(&client_final)).send().await;
    let last = wire.recv().await;
    assert_eq!(auth_code(&last), SASL_FINAL);
    scram
        .finish(&last.body[4..])
        .expect("server signature verifies");
    assert_eq!(auth_code(&wire.recv().await), OK);
    wire.until_ready().await;
    (client_first, client_final)
}

/// `client_final` with its `r=` attribute replaced by `nonce`.
fn with_nonce(client_final: &[u8], nonce: &str) -> Vec<u8> {
    let text = std::str::from_utf8(client_final).unwrap();
    text.split(',')
        .map(|attr| {
            if attr.starts_with("r=") {
                format!("r={nonce}")
            } else {
                attr.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// The `r=` nonce of a server-first message.
fn nonce_of(server_first: &[u8]) -> String {
    let text = std::str::from_utf8(server_first).unwrap();
    let attr = text.split(',').find(|a| a.starts_with("r=")).unwrap();
    attr[2..].to_owned()
}

/// `client_final` with the first character of the proof changed to another base64 digit.
fn with_altered_proof(client_final: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(client_final).unwrap();
    let at = text.find(",p=").unwrap() + 3;
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    bytes
}

/// A client that queries every 20 ms until stopped; counts failures.
struct Bystander {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<usize>,
}

impl Bystander {
    async fn start(pgweir: &Pgweir) -> Bystander {
        let client = pgweir.connect().await;
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let (flag, failed) = (stop.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let mut done = 0;
            while !flag.load(Ordering::Relaxed) {
                match client.simple_query("SELECT 1").await {
                    Ok(_) => done += 1,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done
        });
        Bystander {
            stop,
            failures,
            task,
        }
    }

    /// Stops the client: it must have run queries and never failed; pgweir must not have
    /// panicked and must still take new logins.
    async fn finish(self, pgweir: &Pgweir) {
        self.stop.store(true, Ordering::Relaxed);
        let done = self.task.await.unwrap();
        assert!(done > 0, "the bystander ran no query");
        assert_eq!(
            self.failures.load(Ordering::Relaxed),
            0,
            "bystander failures"
        );
        let log = pgweir.log();
        assert!(!log.contains("panicked"), "pgweir panicked:\n{log}");
        good_login(pgweir).await;
    }
}

#[tokio::test]
async fn oversized_packets_are_protocol_violations() {
    let pgweir = Pgweir::start();
    let bystander = Bystander::start(&pgweir).await;

    // Only the length goes out: pgweir must refuse on it, not wait for 10 kB.
    let mut wire = Wire::connect(pgweir.port).await;
    wire.raw(&10_001u32.to_be_bytes()).send().await;
    let (code, message) = fatal(&mut wire, "startup packet over 10 000 bytes").await;
    assert_eq!(code, "08P01", "{message}");

    // Exactly at the limit is still a startup packet.
    let startup = |padding: &str| {
        let mut out = BytesMut::new();
        let params = [("user", SCRAM_USER.name), ("application_name", padding)];
        frontend::startup_message(params, &mut out).unwrap();
        out
    };
    let out = startup(&"x".repeat(10_000 - startup("").len()));
    assert_eq!(out.len(), 10_000);
    let mut wire = Wire::connect(pgweir.port).await;
    wire.raw(&out).send().await;
    assert_eq!(auth_code(&wire.recv().await), SASL);

    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    let mut header = BytesMut::new();
    header.put_u8(b'p');
    header.put_u32(100_000);
    wire.raw(&header).send().await;
    let (code, message) = fatal(&mut wire, "password message of 100 kB").await;
    assert_eq!(code, "08P01", "{message}");

    bystander.finish(&pgweir).await;
}

#[tokio::test]
async fn sasl_messages_out_of_order_are_protocol_violations() {
    let pgweir = Pgweir::start();
    let bystander = Bystander::start(&pgweir).await;
    let first = ScramSha256::new(b"x", ChannelBinding::unsupported());
    let first = first.message().to_vec();

    let cases: [(&str, BytesMut); 4] = [
        (
            "SASLResponse before SASLInitialResponse",
            sasl_response(b"c=biws,r=abcdef,p=AAAA"),
        ),
        ("an unknown mechanism", sasl_initial(&first, "SCRAM-SHA-1")),
        ("a PasswordMessage where SASL was asked", {
            let mut out = BytesMut::new();
            frontend::password_message(SCRAM_USER.password.as_bytes(), &mut out).unwrap();
            out
        }),
        ("a Query during authentication", {
            let mut out = BytesMut::new();
            frontend::query("SELECT 1", &mut out).unwrap();
            out
        }),
    ];
    for (what, message) in cases {
        let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
        wire.raw(&message).send().await;
        let (code, text) = fatal(&mut wire, what).await;
        assert_eq!(code, "08P01", "{what}: {text}");
    }

    // An inner length that does not fit the message: Postgres's words, and no exchange.
    let with_length = |inner: i32, data: &[u8]| {
        let mut body = BytesMut::new();
        body.put_slice(MECHANISM.as_bytes());
        body.put_u8(0);
        body.put_i32(inner);
        body.put_slice(data);
        let mut out = BytesMut::new();
        out.put_u8(b'p');
        out.put_u32(4 + body.len() as u32);
        out.put_slice(&body);
        out
    };
    let len = first.len() as i32;
    for (what, message, expected) in [
        (
            "one byte longer",
            with_length(len + 1, &first),
            "insufficient data left in message",
        ),
        (
            "2^31-1",
            with_length(i32::MAX, &first),
            "insufficient data left in message",
        ),
        (
            "negative",
            with_length(-2, &first),
            "insufficient data left in message",
        ),
        (
            "shorter than its data",
            with_length(len - 1, &first),
            "invalid message format",
        ),
        (
            "-1 with data after",
            with_length(-1, &first),
            "invalid message format",
        ),
    ] {
        let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
        wire.raw(&message).send().await;
        let (code, text) = fatal(&mut wire, what).await;
        assert_eq!(
            (code.as_str(), text.as_str()),
            ("08P01", expected),
            "{what}"
        );
    }
    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    wire.query("SELECT 1").send().await;
    let (_, text) = fatal(&mut wire, "a Query for a password").await;
    assert_eq!(text, "expected password response");

    // A second SASLInitialResponse where the client-final belongs.
    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    scram_first(&mut wire, SCRAM_USER.password).await;
    wire.raw(&sasl_initial(&first, MECHANISM)).send().await;
    let (code, text) = fatal(&mut wire, "a second SASLInitialResponse").await;
    assert_eq!(code, "08P01", "{text}");

    bystander.finish(&pgweir).await;
}

#[tokio::test]
async fn replayed_and_altered_scram_messages_fail() {
    let pgweir = Pgweir::start();
    let bystander = Bystander::start(&pgweir).await;
    let (client_first, client_final) = good_login(&pgweir).await;

    // The recorded exchange replayed word for word: the server nonce is new.
    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    wire.raw(&sasl_initial(&client_first, MECHANISM))
        .send()
        .await;
    assert_eq!(auth_code(&wire.recv().await), SASL_CONTINUE);
    wire.raw(&sasl_response(&client_final)).send().await;
    let (code, text) = fatal(&mut wire, "replayed client-final").await;
    assert_eq!(code, "08P01", "{text}");

    // The old proof with the new nonce spliced in: the proof no longer matches.
    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    wire.raw(&sasl_initial(&client_first, MECHANISM))
        .send()
        .await;
    let server_first = wire.recv().await.body[4..].to_vec();
    let replay = with_nonce(&client_final, &nonce_of(&server_first));
    wire.raw(&sasl_response(&replay)).send().await;
    let (code, text) = fatal(&mut wire, "replayed proof, fresh nonce").await;
    assert_eq!(code, "28P01", "{text}");
    assert_eq!(
        text,
        format!(
            "password authentication failed for user \"{}\"",
            SCRAM_USER.name
        )
    );

    // A live exchange with one character of the nonce changed.
    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    let (mut scram, server_first) = scram_first(&mut wire, SCRAM_USER.password).await;
    scram.update(&server_first).unwrap();
    let nonce = nonce_of(&server_first);
    let altered = format!(
        "{}{}",
        &nonce[..nonce.len() - 1],
        if nonce.ends_with('A') { 'B' } else { 'A' }
    );
    wire.raw(&sasl_response(&with_nonce(scram.message(), &altered)))
        .send()
        .await;
    let (code, text) = fatal(&mut wire, "altered nonce").await;
    assert_eq!(code, "08P01", "{text}");

    // A live exchange with the proof changed.
    let mut wire = sasl_asked(&pgweir, SCRAM_USER.name).await;
    let (mut scram, server_first) = scram_first(&mut wire, SCRAM_USER.password).await;
    scram.update(&server_first).unwrap();
    wire.raw(&sasl_response(&with_altered_proof(scram.message())))
        .send()
        .await;
    let (code, text) = fatal(&mut wire, "altered proof").await;
    assert_eq!(code, "28P01", "{text}");

    bystander.finish(&pgweir).await;
}

/// A wrong password clients try.
const WRONG: &str = "Wr0ng-Secret-4417";
/// A user whose secret is stored as an md5 hash; the hash must not be shown either.
const HASH_USER: &str = "pgweir_hashed";
const HASH_HEX: &str = "0b5b2a2fe4b4a77f6bb52b0e2b2b5a1c";
/// A user name that looks like a password: not in the config, so no metrics label may carry it.
const PASSWORD_LIKE_USER: &str = "hunter2-Pa55w0rd-9931";

/// Every secret the secrecy test configures or sends.
fn secrets() -> Vec<&'static str> {
    vec![
        SCRAM_USER.password,
        MD5_USER.password,
        PLAIN_USER.password,
        TRUST_USER.password,
        ADMIN.1,
        WRONG,
        HASH_HEX,
    ]
}

fn assert_no_secret(text: &str, place: &str) {
    for secret in secrets() {
        assert!(
            !text.contains(secret),
            "{secret:?} appears in {place}:\n{text}"
        );
    }
}

/// Everything a refused login's error says.
fn refusal(result: Result<tokio_postgres::Client, tokio_postgres::Error>) -> String {
    match result {
        Ok(_) => panic!("a wrong password must be refused"),
        Err(e) => format!("{e:?}\n"),
    }
}

/// A GET of /metrics on 127.0.0.1:`port`.
async fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn secrets_stay_out_of_logs_console_errors_and_metrics() {
    let metrics_port = free_port();
    // Cleartext logins, so every password crosses pgweir in the clear.
    let pgweir = with_console()
        .auth_type("plain")
        .log_level("debug")
        .user(HASH_USER, &format!("md5{HASH_HEX}"))
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics_port}\""))
        .extra(&format!(
            "[databases.forced]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{TEST_DB}\"\n\
             user = \"{}\"\npassword = \"{}\"\n",
            common::cluster().port,
            SCRAM_USER.name,
            SCRAM_USER.password
        ))
        .start();

    let mut errors = String::new();
    for user in [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER] {
        let client = pgweir.connect_as(&user, TEST_DB).await;
        client.simple_query("SELECT 1").await.unwrap();
        errors.push_str(&refusal(
            pgweir.try_connect(user.name, WRONG, TEST_DB).await,
        ));
    }
    let forced = pgweir.connect_as(&TRUST_USER, "forced").await;
    forced.simple_query("SELECT 1").await.unwrap();
    errors.push_str(&refusal(
        pgweir.try_connect(HASH_USER, WRONG, TEST_DB).await,
    ));
    assert_no_secret(&errors, "error messages");
    let refused = pgweir.try_connect(PASSWORD_LIKE_USER, WRONG, TEST_DB).await;
    assert!(refused.is_err(), "an unknown user is refused");

    let admin = console(&pgweir, ADMIN, "pgweir").await;
    for command in [
        "SHOW CONFIG",
        "SHOW USERS",
        "SHOW DATABASES",
        "SHOW CLIENTS",
    ] {
        let shown = show(&admin, command).await;
        assert_no_secret(&format!("{:?}", shown.rows), command);
    }

    let metrics = within(10, "scrape /metrics", scrape(metrics_port)).await;
    assert!(
        metrics.contains("user=\"unknown\""),
        "a made-up user name is labelled unknown:\n{metrics}"
    );
    assert!(!metrics.contains(PASSWORD_LIKE_USER), "{metrics}");
    assert_no_secret(&metrics, "/metrics");

    drop((admin, forced));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = pgweir.log();
    assert!(log.contains("DEBUG"), "debug logging is on:\n{log}");
    assert_no_secret(&log, "pgweir's log");
}
