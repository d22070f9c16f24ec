//! The untagged first packet a client sends: SSLRequest, GSSENCRequest, CancelRequest or a
//! StartupMessage with its parameters.

use super::ProtocolError;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;

/// What the first packet of a connection asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
    Startup(StartupMessage),
}

/// A StartupMessage: protocol minor version and the parameters in the order sent.
#[derive(Debug, PartialEq, Eq)]
pub struct StartupMessage {
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a startup packet body (everything after the 4-byte length).
pub fn parse(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let code = body
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(ProtocolError::BadStartup("too short"))?;
    let rest = &body[4..];
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            if rest.len() != 8 {
                return Err(ProtocolError::BadStartup("cancel request length"));
            }
            let pid = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let secret = i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            Ok(StartupPacket::Cancel { pid, secret })
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != 3 {
                return Err(ProtocolError::UnsupportedVersion { major, minor });
            }
            let params = parse_params(rest)?;
            Ok(StartupPacket::Startup(StartupMessage { minor, params }))
        }
    }
}

/// Name/value C strings, ended by an empty name.
fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut rest)?;
        if name.is_empty() {
            return Ok(params);
        }
        let value = take_cstr(&mut rest)?;
        params.push((name, value));
    }
}

fn take_cstr(rest: &mut &[u8]) -> Result<String, ProtocolError> {
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(ProtocolError::BadStartup("missing terminator"))?;
    let s = std::str::from_utf8(&rest[..end])
        .map_err(|_| ProtocolError::BadStartup("parameter is not valid UTF-8"))?
        .to_owned();
    *rest = &rest[end + 1..];
    Ok(s)
}

/// Splits the `options` startup parameter into `-c name=value` / `--name=value` settings,
/// honouring backslash escapes of spaces as libpq writes them.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else {
            w.strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_owned)
        };
        if let Some((k, v)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = (3u32 << 16 | minor as u32).to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_startup_and_special_requests() {
        let p = parse(&startup(0, &[("user", "alice"), ("database", "app")])).unwrap();
        let StartupPacket::Startup(m) = p else {
            panic!("not startup")
        };
        assert_eq!(m.get("user"), Some("alice"));
        assert_eq!(m.get("database"), Some("app"));
        assert_eq!(
            parse(&SSL_REQUEST.to_be_bytes()).unwrap(),
            StartupPacket::SslRequest
        );
        let mut c = CANCEL_REQUEST.to_be_bytes().to_vec();
        c.extend_from_slice(&7i32.to_be_bytes());
        c.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse(&c).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
    }

    #[test]
    fn rejects_bad_packets() {
        assert!(parse(b"").is_err());
        assert!(matches!(
            parse(&(2u32 << 16).to_be_bytes()),
            Err(ProtocolError::UnsupportedVersion { major: 2, .. })
        ));
        let mut no_end = startup(0, &[("user", "a")]);
        no_end.truncate(no_end.len() - 2);
        assert!(parse(&no_end).is_err());
    }

    #[test]
    fn splits_options() {
        assert_eq!(
            parse_options("-c search_path=a\\ b --work-mem=4MB -cstatement_timeout=5"),
            vec![
                ("search_path".into(), "a b".into()),
                ("work_mem".into(), "4MB".into()),
                ("statement_timeout".into(), "5".into())
            ]
        );
    }
}
