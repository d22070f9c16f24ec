//! Client-to-server byte streams: the relay's framer (as tests/it/fuzz.rs drives it, with the
//! stream cut into pieces of a size the input chooses), and the two parsers that read a
//! client's buffered messages before they are framed: the retry window and the local
//! answer to Parse … Sync batches. Input: one byte for the piece size, then the stream.
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgweir::client::routing::retry_window;
use pgweir::prepared::{answer_parse_locally, Analysis, ClientStatements, Registry, Statement};
use pgweir::protocol::framer::{Disposition, Framer, Inspector, OutQueue, View, Want};
use std::sync::Arc;

/// Wants a head of Binds and whole small messages, forwards everything (tests/it/fuzz.rs).
struct Sees;

impl Inspector for Sees {
    fn wants(&self, tag: u8) -> Want {
        match tag {
            b'B' => Want {
                whole: 64,
                prefix: 1 << 20,
                through_nuls: 2,
            },
            b'Q' | b'P' => Want::HEAD,
            _ => Want::NOTHING,
        }
    }

    fn on_message(&mut self, _tag: u8, _len: usize, body: View<'_>) -> Disposition {
        let _ = body.bytes();
        Disposition::Forward
    }
}

/// A registry holding one statement some server prepared, so `answer_parse_locally` can
/// answer a Parse of `SELECT 1`.
fn registry() -> &'static (Registry, Arc<Statement>) {
    static R: OnceLock<(Registry, Arc<Statement>)> = OnceLock::new();
    R.get_or_init(|| {
        let r = Registry::default();
        let s = r.intern(b"SELECT 1\0\0\0", Analysis::default);
        s.mark_valid();
        (r, s)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut % 64) + 1;
    let mut framer = Framer::default();
    let mut out = OutQueue::default();
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(cut) {
        buf.extend_from_slice(chunk);
        if framer.drain(&mut buf, &mut Sees, &mut out).is_err() {
            break;
        }
    }
    let _ = retry_window(stream);
    let (registry, _held) = registry();
    let mut client = ClientStatements::default();
    let _ = answer_parse_locally(stream, registry, &mut client);
});
