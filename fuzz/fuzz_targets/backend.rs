//! Server-to-client byte streams: the framer, as the relay's server side uses it (small
//! ReadyForQuery, ParameterStatus and ErrorResponse bodies seen whole), feeding what the
//! relay does with them: the transaction tracker, ErrorResponse fields, ParameterStatus,
//! and the prepared-statement bookkeeping (`Pending::on_server`). The replies owed are set
//! up first through the client side's `Rewriter`, as the relay does for the client's
//! messages, so out-of-step, failing and skipped replies unwind real undo records.
//!
//! Input: one byte for the piece size, one whose low 4 bits count the client messages and
//! whose high bits set `max_prepared_statements` (0-3) and a failed transaction, that many
//! bytes choosing each message, then the server's stream.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgweir::client::txn::TxnTracker;
use pgweir::error::SqlState;
use pgweir::prepared::{
    error, Analysis, CacheCounts, Caches, ClientStatements, Pending, Registry, Rewriter,
    ServerStatements, Statement,
};
use pgweir::protocol::framer::{Disposition, Framer, Inspector, OutQueue, View, Want};
use pgweir::protocol::{backend, be, fe};

struct ServerSide<'a> {
    tracker: TxnTracker,
    pending: &'a mut Pending,
    client: &'a mut ClientStatements,
    server: &'a mut ServerStatements,
}

impl Inspector for ServerSide<'_> {
    fn wants(&self, tag: u8) -> Want {
        match tag {
            be::READY_FOR_QUERY | be::PARAMETER_STATUS | be::ERROR_RESPONSE => Want::SMALL,
            be::NOTICE_RESPONSE => Want::HEAD,
            _ => Want::NOTHING,
        }
    }

    fn on_message(&mut self, tag: u8, _len: usize, body: View<'_>) -> Disposition {
        let whole = body.whole();
        if let (be::ERROR_RESPONSE | be::NOTICE_RESPONSE, Some(b)) = (tag, body.bytes()) {
            let _ = backend::parse_error_fields(b);
        }
        if let (be::PARAMETER_STATUS, Some(b)) = (tag, whole) {
            let mut parts = b.split(|&c| c == 0);
            let _ = parts.next().map(std::str::from_utf8);
            let _ = parts.next().map(std::str::from_utf8);
        }
        self.tracker.server_sent(tag, whole);
        let mut caches = Caches {
            client: self.client,
            server: self.server,
        };
        self.pending.on_server(tag, whole, &mut caches)
    }
}

fn registry() -> &'static (Registry, Vec<Arc<Statement>>) {
    static R: OnceLock<(Registry, Vec<Arc<Statement>>)> = OnceLock::new();
    R.get_or_init(|| {
        let r = Registry::default();
        let held = (0..4)
            .map(|i| r.intern(format!("SELECT {i}\0\0\0").as_bytes(), Analysis::default))
            .collect();
        (r, held)
    })
}

/// One client message, chosen by `b`, through the rewriter: what the server then owes.
fn client_message(rw: &mut Rewriter<'_>, tracker: &mut TxnTracker, b: u8) {
    let (_, held) = registry();
    let i = usize::from(b >> 4) % held.len();
    let name = format!("s{i}");
    let cstr = |kind: &[u8]| [kind, name.as_bytes(), b"\0"].concat();
    let tag = match b & 0x0f {
        0 => {
            rw.parse_forwarded();
            fe::PARSE
        }
        1 => {
            rw.parse_unnamed(Some(format!("\0SELECT {i}\0\0\0").as_bytes()));
            fe::PARSE
        }
        2 => {
            rw.parse_named(name.as_bytes(), held[i].clone());
            fe::PARSE
        }
        3 => {
            let body = [b"\0" as &[u8], &cstr(b""), b"\0\0\0\0\0\0"].concat();
            rw.bind(5 + body.len(), View::Whole(&body));
            fe::BIND
        }
        4 => {
            rw.describe(View::Whole(&cstr(b"S")));
            fe::DESCRIBE
        }
        5 => {
            rw.close(View::Whole(&cstr(b"S")));
            fe::CLOSE
        }
        6 => {
            if rw.deallocate(name.as_bytes()).is_none() {
                rw.query_sent();
                rw.ready_owed();
            }
            fe::QUERY
        }
        7 => {
            rw.deallocate_parse(name.as_bytes());
            fe::PARSE
        }
        8 => {
            rw.clear_all();
            rw.ready_owed();
            fe::QUERY
        }
        9 => {
            rw.fail(error(SqlState::PROTOCOL_VIOLATION, "no"));
            fe::PARSE
        }
        10 => {
            rw.fail_query(error(SqlState::PROTOCOL_VIOLATION, "no"));
            fe::QUERY
        }
        11 => {
            rw.execute();
            fe::EXECUTE
        }
        12 => {
            rw.query_sent();
            rw.ready_owed();
            fe::QUERY
        }
        _ => {
            rw.ready_owed();
            fe::SYNC
        }
    };
    tracker.client_sent(tag);
}

fuzz_target!(|data: &[u8]| {
    let [cut, head, rest @ ..] = data else {
        return;
    };
    let count = usize::from(head & 0x0f).min(rest.len());
    let (choices, stream) = rest.split_at(count);
    let cut = usize::from(cut % 64) + 1;
    let counts = CacheCounts::default();
    let mut client = ClientStatements::default();
    let mut server = ServerStatements::default();
    let mut pending = Pending::default();
    let mut tracker = TxnTracker::default();
    {
        let mut rw = Rewriter {
            client: &mut client,
            server: &mut server,
            pending: &mut pending,
            max: usize::from((head >> 4) & 3),
            tx_failed: head & 0x40 != 0,
            counts: &counts,
        };
        for &c in choices {
            client_message(&mut rw, &mut tracker, c);
        }
    }
    let mut side = ServerSide {
        tracker,
        pending: &mut pending,
        client: &mut client,
        server: &mut server,
    };
    let mut framer = Framer::default();
    let mut out = OutQueue::default();
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(cut) {
        buf.extend_from_slice(chunk);
        if framer.drain(&mut buf, &mut side, &mut out).is_err() {
            break;
        }
    }
});
