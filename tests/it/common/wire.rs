//! A raw protocol client for what drivers never send on their own: Flush, several
//! Syncs in one write, Describe/Close of named statements, bare Terminate.
//!
//! Messages are built with postgres-protocol's frontend writers (Bind by hand, as
//! its generic signature is unwieldy for empty parameter lists) and read back as a
//! tag plus body, decoded only as far as a test needs. Login sends no password: it
//! needs pgweir with `auth_type = "trust"`, or Postgres itself with a trust user.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: its tag and the body after the length.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn sqlstate(&self) -> Option<String> {
        self.fields()
            .find(|(code, _)| *code == b'C')
            .map(|(_, value)| value)
    }

    /// The primary message of an ErrorResponse or NoticeResponse.
    pub fn message(&self) -> Option<String> {
        self.fields()
            .find(|(code, _)| *code == b'M')
            .map(|(_, value)| value)
    }

    /// The severity (`ERROR`, `FATAL`, ...) of an ErrorResponse or NoticeResponse.
    pub fn severity(&self) -> Option<String> {
        self.fields()
            .find(|(code, _)| *code == b'V')
            .map(|(_, value)| value)
    }

    /// `(code, value)` pairs of an ErrorResponse/NoticeResponse body.
    fn fields(&self) -> impl Iterator<Item = (u8, String)> + '_ {
        self.body
            .split(|b| *b == 0)
            .filter(|field| !field.is_empty())
            .map(|field| (field[0], String::from_utf8_lossy(&field[1..]).into_owned()))
    }

    /// Each column's name and type oid, of a RowDescription.
    pub fn column_types(&self) -> Vec<(String, u32)> {
        let body = &self.body;
        let count = u16::from_be_bytes([body[0], body[1]]);
        let mut at = 2;
        let mut columns = Vec::new();
        for _ in 0..count {
            let end = at + body[at..].iter().position(|&b| b == 0).unwrap();
            let name = String::from_utf8_lossy(&body[at..end]).into_owned();
            let oid = &body[end + 7..end + 11];
            columns.push((name, u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]])));
            at = end + 19;
        }
        columns
    }

    /// Name and value of a ParameterStatus.
    pub fn parameter(&self) -> (String, String) {
        let mut parts = self
            .body
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        )
    }

    /// First column of a DataRow as text (None for NULL).
    pub fn first_column(&self) -> Option<String> {
        let len = i32::from_be_bytes(self.body[2..6].try_into().unwrap());
        (len >= 0).then(|| String::from_utf8_lossy(&self.body[6..6 + len as usize]).into_owned())
    }

    /// Process id of a BackendKeyData.
    pub fn key_pid(&self) -> i32 {
        i32::from_be_bytes(self.body[0..4].try_into().unwrap())
    }
}

/// A connection speaking the protocol by hand.
pub struct Wire {
    stream: TcpStream,
    out: BytesMut,
    input: BytesMut,
}

impl Wire {
    pub async fn connect(port: u16) -> Wire {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to pgweir");
        Wire {
            stream,
            out: BytesMut::new(),
            input: BytesMut::new(),
        }
    }

    /// Sends a 3.0 StartupMessage and reads up to ReadyForQuery; returns everything
    /// the login produced (AuthenticationOk, ParameterStatus, BackendKeyData, ...).
    pub async fn startup(port: u16, user: &str, db: &str) -> (Wire, Vec<Msg>) {
        Wire::startup_with(port, &[("user", user), ("database", db)]).await
    }

    /// Like [`Wire::startup`] with any startup parameters.
    pub async fn startup_with(port: u16, params: &[(&str, &str)]) -> (Wire, Vec<Msg>) {
        let mut wire = Wire::connect(port).await;
        frontend::startup_message(params.iter().copied(), &mut wire.out).unwrap();
        wire.send().await;
        let login = wire.until_ready().await;
        if let Some(err) = login.iter().find(|m| m.tag == b'E') {
            panic!("login refused: {:?}", err.sqlstate());
        }
        (wire, login)
    }

    pub fn query(&mut self, sql: &str) -> &mut Self {
        frontend::query(sql, &mut self.out).unwrap();
        self
    }

    pub fn parse(&mut self, name: &str, sql: &str) -> &mut Self {
        frontend::parse(name, sql, std::iter::empty(), &mut self.out).unwrap();
        self
    }

    /// Bind with no parameters and text results.
    pub fn bind(&mut self, portal: &str, statement: &str) -> &mut Self {
        self.bind_params(portal, statement, &[])
    }

    /// Bind with text-format parameters and text results.
    pub fn bind_params(&mut self, portal: &str, statement: &str, params: &[&str]) -> &mut Self {
        self.bind_formats(portal, statement, params, &[])
    }

    /// Bind with text-format parameters and a result format code per column, as pgx sends
    /// it for a statement it described (Postgres refuses a count that does not match).
    pub fn bind_formats(
        &mut self,
        portal: &str,
        statement: &str,
        params: &[&str],
        result_formats: &[i16],
    ) -> &mut Self {
        let mut body = BytesMut::new();
        for name in [portal, statement] {
            body.put_slice(name.as_bytes());
            body.put_u8(0);
        }
        body.put_i16(0); // no parameter format codes: all text
        body.put_i16(params.len() as i16);
        for param in params {
            body.put_i32(param.len() as i32);
            body.put_slice(param.as_bytes());
        }
        body.put_i16(result_formats.len() as i16);
        for format in result_formats {
            body.put_i16(*format);
        }
        self.out.put_u8(b'B');
        self.out.put_i32(body.len() as i32 + 4);
        self.out.put_slice(&body);
        self
    }

    pub fn describe(&mut self, variant: u8, name: &str) -> &mut Self {
        frontend::describe(variant, name, &mut self.out).unwrap();
        self
    }

    pub fn execute(&mut self, portal: &str) -> &mut Self {
        self.execute_rows(portal, 0)
    }

    /// Execute returning at most `max_rows` rows (then PortalSuspended).
    pub fn execute_rows(&mut self, portal: &str, max_rows: i32) -> &mut Self {
        frontend::execute(portal, max_rows, &mut self.out).unwrap();
        self
    }

    pub fn close(&mut self, variant: u8, name: &str) -> &mut Self {
        frontend::close(variant, name, &mut self.out).unwrap();
        self
    }

    pub fn sync(&mut self) -> &mut Self {
        frontend::sync(&mut self.out);
        self
    }

    pub fn flush(&mut self) -> &mut Self {
        frontend::flush(&mut self.out);
        self
    }

    pub fn terminate(&mut self) -> &mut Self {
        frontend::terminate(&mut self.out);
        self
    }

    /// Queues bytes exactly as given, for messages the writers cannot make.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    /// Unnamed Parse + Bind + Execute of `sql`, without Sync.
    pub fn run(&mut self, sql: &str) -> &mut Self {
        self.parse("", sql).bind("", "").execute("")
    }

    /// Writes everything queued so far in one write.
    pub async fn send(&mut self) {
        let out = self.out.split();
        self.stream.write_all(&out).await.expect("write to pgweir");
    }

    /// The socket, for a test that writes on it itself (nothing is left unread after
    /// a login).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Shuts down the sending side, as a client that has said all it will.
    pub async fn shutdown_write(&mut self) {
        self.stream
            .shutdown()
            .await
            .expect("shut down the write side");
    }

    /// Whether pgweir has closed the connection (all it sent is read first).
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut rest));
        matches!(read.await, Ok(Ok(_)))
    }

    /// The next message, or a panic after 10 s.
    pub async fn recv(&mut self) -> Msg {
        tokio::time::timeout(Duration::from_secs(10), self.read_msg())
            .await
            .expect("no message from pgweir within 10s")
            .expect("pgweir closed the connection")
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut msgs = Vec::new();
        loop {
            let msg = self.recv().await;
            let done = msg.tag == b'Z';
            msgs.push(msg);
            if done {
                return msgs;
            }
        }
    }

    /// Reads one message; None on a clean EOF.
    pub async fn read_msg(&mut self) -> Option<Msg> {
        while self.input.len() < 5 || self.input.len() < 1 + frame_len(&self.input) {
            if self.stream.read_buf(&mut self.input).await.ok()? == 0 {
                return None;
            }
        }
        let total = 1 + frame_len(&self.input);
        let frame = self.input.split_to(total);
        Some(Msg {
            tag: frame[0],
            body: frame[5..].to_vec(),
        })
    }
}

fn frame_len(input: &[u8]) -> usize {
    u32::from_be_bytes(input[1..5].try_into().unwrap()) as usize
}

/// The tags of `msgs` as a string, for compact assertions ("12TDCZ").
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}
