//! Builders for the backend messages pgweir writes to clients itself (authentication,
//! parameters, keys, errors, ReadyForQuery). Everything else a client sees is relayed.

use bytes::{BufMut, Bytes, BytesMut};

use super::{be, TxStatus};
use crate::error::{Severity, SqlState};

/// Writes one message: tag, a length placeholder, the body from `body`, then the real length.
pub(crate) fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub(crate) fn cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

pub fn authentication_ok(buf: &mut BytesMut) {
    message(buf, be::AUTHENTICATION, |b| b.put_i32(0));
}

pub fn authentication_cleartext(buf: &mut BytesMut) {
    message(buf, be::AUTHENTICATION, |b| b.put_i32(3));
}

pub fn authentication_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(10);
        for m in mechanisms {
            cstr(b, m);
        }
        b.put_u8(0);
    });
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, be::PARAMETER_STATUS, |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    message(buf, be::BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    message(buf, be::COMMAND_COMPLETE, |b| cstr(b, tag));
}

pub fn notification(buf: &mut BytesMut, pid: i32, channel: &str, payload: &str) {
    message(buf, be::NOTIFICATION_RESPONSE, |b| {
        b.put_i32(pid);
        cstr(b, channel);
        cstr(b, payload);
    });
}

pub fn ready_for_query(buf: &mut BytesMut, status: TxStatus) {
    message(buf, be::READY_FOR_QUERY, |b| b.put_u8(status.as_byte()));
}

/// NegotiateProtocolVersion: the newest minor version supported and the options not recognised.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unrecognized: &[String]) {
    message(buf, b'v', |b| {
        b.put_i32(minor);
        b.put_i32(unrecognized.len() as i32);
        for o in unrecognized {
            cstr(b, o);
        }
    });
}

/// ErrorResponse with the fields every client reads: severity (both forms), code, message.
pub fn error_response(buf: &mut BytesMut, severity: Severity, code: SqlState, msg: &str) {
    message(buf, be::ERROR_RESPONSE, |b| {
        b.put_u8(b'S');
        cstr(b, severity.as_str());
        b.put_u8(b'V');
        cstr(b, severity.as_str());
        b.put_u8(b'C');
        cstr(b, code.0);
        b.put_u8(b'M');
        cstr(b, msg);
        b.put_u8(0);
    });
}

/// An ErrorResponse as a standalone buffer.
pub fn error_bytes(severity: Severity, code: SqlState, msg: &str) -> Bytes {
    let mut buf = BytesMut::new();
    error_response(&mut buf, severity, code, msg);
    buf.freeze()
}

/// Reads the SQLSTATE and message out of an ErrorResponse body, for logs and decisions.
pub fn parse_error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let (mut code, mut msg) = (None, None);
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some(end) = tail.iter().position(|&c| c == 0) else {
            break;
        };
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'C' => code = Some(value),
            b'M' => msg = Some(value),
            _ => {}
        }
        rest = &tail[end + 1..];
    }
    (code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_round_trips() {
        let b = error_bytes(Severity::Fatal, SqlState::INVALID_PASSWORD, "nope");
        assert_eq!(b[0], b'E');
        let len = i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len + 1, b.len());
        let (code, msg) = parse_error_fields(&b[5..]);
        assert_eq!(code.as_deref(), Some("28P01"));
        assert_eq!(msg.as_deref(), Some("nope"));
    }

    #[test]
    fn parse_error_fields_survives_garbage() {
        assert_eq!(parse_error_fields(b"Cabc"), (None, None));
        assert_eq!(parse_error_fields(b""), (None, None));
    }
}
