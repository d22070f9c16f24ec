//! One leak-test client's connection: the raw protocol ([`Wire`]), what the server
//! has reported to it, and failing with everything needed to replay the run.
//!
//! The raw protocol, not a driver, so that every client can use the same statement
//! names (`ps_1`, ...) with its own text: a statement leaking between clients then
//! answers with the wrong constant instead of going unnoticed under a unique name.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::common::wire::{Msg, Wire};
use crate::common::within;

/// Where clients log in: pgweir (with `auth_type = "trust"`) or Postgres itself.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub user: &'static str,
    pub db: String,
    /// Whether clients may send `application_name` at startup and expect RESET to return
    /// to it (only Postgres itself does that; see the file header of `leak.rs`).
    pub startup_application_name: bool,
}

/// How long one exchange may take, including waiting for a free server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Statements kept for the failure report.
const HISTORY: usize = 25;

/// Everything the server said in answer to one batch, up to ReadyForQuery.
pub struct Reply(pub Vec<Msg>);

impl Reply {
    /// SQLSTATE and message of the first ErrorResponse.
    pub fn error(&self) -> Option<(String, String)> {
        self.0.iter().find(|m| m.tag == b'E').map(|m| {
            (
                m.sqlstate().unwrap_or_default(),
                m.message().unwrap_or_default(),
            )
        })
    }

    /// The transaction status of the closing ReadyForQuery.
    pub fn status(&self) -> u8 {
        self.0.last().map_or(0, |m| m.body[0])
    }

    /// CommandComplete tags in order.
    pub fn tags(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|m| m.tag == b'C')
            .map(|m| cstr(&m.body).0)
            .collect()
    }

    /// The first column of every DataRow, in order.
    pub fn values(&self) -> Vec<Option<String>> {
        self.result_sets()
            .into_iter()
            .flatten()
            .map(|row| row.into_iter().next().flatten())
            .collect()
    }

    /// Rows grouped by statement (one group per CommandComplete).
    pub fn result_sets(&self) -> Vec<Vec<Vec<Option<String>>>> {
        let mut sets = Vec::new();
        let mut rows = Vec::new();
        for msg in &self.0 {
            match msg.tag {
                b'D' => rows.push(data_row(msg)),
                b'C' => sets.push(std::mem::take(&mut rows)),
                _ => {}
            }
        }
        sets
    }

    /// The first column name of every RowDescription, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|m| m.tag == b'T')
            .map(|m| cstr(&m.body[2..]).0)
            .collect()
    }
}

/// A NUL-terminated string at the start of `bytes`, and the length it took.
fn cstr(bytes: &[u8]) -> (String, usize) {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), end + 1)
}

/// Every column of a DataRow as text.
fn data_row(msg: &Msg) -> Vec<Option<String>> {
    let body = &msg.body;
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        at += 4;
        if len < 0 {
            columns.push(None);
        } else {
            let end = at + len as usize;
            columns.push(Some(String::from_utf8_lossy(&body[at..end]).into_owned()));
            at = end;
        }
    }
    columns
}

/// A logged-in client of the workload.
pub struct Client {
    wire: Wire,
    target: Target,
    startup: Vec<(String, String)>,
    pub id: usize,
    seed: u64,
    /// The step being run, for the failure report.
    pub step: usize,
    history: VecDeque<String>,
    /// The last value of each parameter the server reported.
    reported: BTreeMap<String, String>,
}

impl Client {
    /// Logs in; `application_name` goes into the startup packet when given.
    pub async fn connect(
        target: &Target,
        id: usize,
        seed: u64,
        application_name: Option<String>,
    ) -> Client {
        let mut startup = vec![
            ("user".to_string(), target.user.to_string()),
            ("database".to_string(), target.db.clone()),
        ];
        if let Some(name) = application_name {
            startup.push(("application_name".into(), name));
        }
        let (wire, login) = login(target.port, &startup).await;
        let mut client = Client {
            wire,
            target: target.clone(),
            startup,
            id,
            seed,
            step: 0,
            history: VecDeque::new(),
            reported: BTreeMap::new(),
        };
        client.record(&login);
        client
    }

    /// Leaves (with Terminate, or by just closing the socket) and logs in again.
    pub async fn reconnect(&mut self, graceful: bool) {
        if graceful {
            self.wire.terminate().send().await;
        }
        let (wire, login) = login(self.target.port, &self.startup).await;
        self.wire = wire;
        self.reported.clear();
        self.record(&login);
    }

    /// Leaves for good.
    pub async fn disconnect(mut self, graceful: bool) {
        if graceful {
            self.wire.terminate().send().await;
        }
    }

    /// Remembers what the client just did, for the failure report.
    pub fn note(&mut self, what: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(what);
    }

    /// Panics with the seed, the client, the step and the client's recent history.
    pub fn fail(&self, what: String) -> ! {
        let history: Vec<&str> = self.history.iter().map(String::as_str).collect();
        panic!(
            "{what}\n  client {} at step {} (leak test seed = {seed}, rerun with \
             PGWEIR_LEAK_SEED={seed})\n  its last steps:\n    {}",
            self.id,
            self.step,
            history.join("\n    "),
            seed = self.seed,
        );
    }

    /// The raw connection, to queue extended-protocol messages before [`Client::exchange`].
    pub fn wire(&mut self) -> &mut Wire {
        &mut self.wire
    }

    /// Sends what is queued and reads up to ReadyForQuery. A notification fails the
    /// test: nobody sends NOTIFY, so one can only come from another client's session.
    pub async fn exchange(&mut self) -> Reply {
        self.wire.send().await;
        let mut msgs = Vec::new();
        loop {
            let msg = match tokio::time::timeout(REPLY_TIMEOUT, self.wire.read_msg()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => self.fail("the connection closed".into()),
                Err(_) => self.fail(format!("no reply within {REPLY_TIMEOUT:?}")),
            };
            if msg.tag == b'A' {
                self.fail(format!("a notification arrived: {:?}", msg.body));
            }
            let done = msg.tag == b'Z';
            msgs.push(msg);
            if done {
                self.record(&msgs);
                return Reply(msgs);
            }
        }
    }

    /// A simple-protocol query.
    pub async fn query(&mut self, sql: &str) -> Reply {
        self.wire.query(sql);
        self.exchange().await
    }

    /// The last value the server reported for `name` ('' if it never did).
    pub fn reported(&self, name: &str) -> &str {
        self.reported.get(name).map_or("", String::as_str)
    }

    fn record(&mut self, msgs: &[Msg]) {
        for msg in msgs.iter().filter(|m| m.tag == b'S') {
            let (name, value) = msg.parameter();
            self.reported.insert(name, value);
        }
    }
}

async fn login(port: u16, startup: &[(String, String)]) -> (Wire, Vec<Msg>) {
    let params: Vec<(&str, &str)> = startup
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    within(30, "login", Wire::startup_with(port, &params)).await
}
