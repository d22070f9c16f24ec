//! Answering a client's Parse messages without taking a server. A client outside a
//! transaction that only prepares statements (Parse … Sync, as libpq's PQprepare sends)
//! needs no server when every text is one some server has already prepared without error:
//! the client's names are recorded and pgweir replies itself. Each statement is prepared
//! on a server when the client first uses it there.
//!
//! Besides saving a server round trip, this keeps clients that prepare synchronously from
//! waiting for a server while holding up the very client that holds it (pgbench -M prepared
//! with fewer threads than clients does exactly that).

use bytes::{BufMut, Bytes, BytesMut};

use super::{ClientStatements, Registry};
use crate::protocol::{be, fe, split_cstr, TxStatus};

/// Messages looked at before giving up and taking a server.
const MAX_MESSAGES: usize = 64;

/// If `buf` starts with Parse messages of known-good texts under new names, then a Sync
/// (Flushes allowed), records the names and returns how many bytes were consumed, how many
/// statements were prepared, and the reply. Anything else, or an incomplete batch, returns `None` and changes nothing.
pub fn answer_parse_locally(
    buf: &[u8],
    registry: &Registry,
    client: &mut ClientStatements,
) -> Option<(usize, usize, Bytes)> {
    let mut pos = 0;
    let mut parsed: Vec<(Bytes, _)> = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let header = buf.get(pos..pos + 5)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let body = buf.get(pos + 5..pos + 1 + len.max(4))?;
        pos += 1 + len.max(4);
        match header[0] {
            fe::FLUSH => {}
            fe::SYNC if !parsed.is_empty() => {
                let mut reply = BytesMut::new();
                let n = parsed.len();
                for (name, stmt) in parsed {
                    client.insert(name, stmt);
                    reply.put_slice(&[be::PARSE_COMPLETE, 0, 0, 0, 4]);
                }
                crate::protocol::backend::ready_for_query(&mut reply, TxStatus::Idle);
                return Some((pos, n, reply.freeze()));
            }
            fe::PARSE => {
                let (name, key) = split_cstr(body)?;
                let fresh = !name.is_empty()
                    && client.get(name).is_none()
                    && !parsed.iter().any(|(n, _)| n == name);
                let stmt = registry.lookup(key).filter(|s| fresh && s.is_valid())?;
                if !stmt.effects.pins.is_empty() {
                    return None;
                }
                parsed.push((Bytes::copy_from_slice(name), stmt));
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::Analysis;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn known_texts_are_prepared_without_a_server() {
        let r = Registry::default();
        let known = r.intern(b"SELECT 1\0\0\0", Analysis::default);
        let mut c = ClientStatements::default();
        let batch = [msg(b'P', b"a\0SELECT 1\0\0\0"), msg(b'S', b"")].concat();
        assert!(
            answer_parse_locally(&batch, &r, &mut c).is_none(),
            "not yet valid"
        );
        known.mark_valid();
        let (used, parsed, reply) = answer_parse_locally(&batch, &r, &mut c).unwrap();
        assert_eq!((used, parsed), (batch.len(), 1));
        assert_eq!(&reply[..], b"1\0\0\0\x04Z\0\0\0\x05I");
        assert!(c.get(b"a").is_some());
        assert!(
            answer_parse_locally(&batch, &r, &mut c).is_none(),
            "name taken"
        );
    }

    #[test]
    fn anything_else_needs_a_server() {
        let r = Registry::default();
        r.intern(b"SELECT 1\0\0\0", Analysis::default).mark_valid();
        let mut c = ClientStatements::default();
        let unknown = [msg(b'P', b"a\0SELECT 2\0\0\0"), msg(b'S', b"")].concat();
        let with_bind = [msg(b'P', b"a\0SELECT 1\0\0\0"), msg(b'B', b"\0a\0")].concat();
        let partial = msg(b'P', b"a\0SELECT 1\0\0\0");
        for batch in [unknown, with_bind, partial] {
            assert!(answer_parse_locally(&batch, &r, &mut c).is_none());
        }
        assert!(c.is_empty());
    }
}
