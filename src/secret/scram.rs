//! The server side of SASL SCRAM-SHA-256 (RFC 5802, RFC 7677) as the Postgres backend speaks
//! it, and SCRAM-SHA-256-PLUS under TLS (the binding checks are in [`super::channel_binding`]):
//! [`crate::client`] hands [`ScramServer`] the bodies of
//! SASLInitialResponse and SASLResponse and sends what it returns back in
//! AuthenticationSASLContinue and AuthenticationSASLFinal. Key derivation lives in
//! [`super::keys`]. Pure: no I/O; randomness only for server nonces.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::channel_binding;
use super::keys::hmac;
use super::passthrough::ScramClientKey;
use super::ScramVerifier;

/// The SASL mechanism pgweir always offers; under TLS `SCRAM-SHA-256-PLUS` comes first.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Postgres' `SCRAM_RAW_NONCE_LEN`: random bytes in the server's half of the nonce.
const RAW_NONCE_LEN: usize = 18;
/// Length of a base64-encoded 32-byte proof.
const PROOF_B64_LEN: usize = 44;

/// Why an exchange failed. Every variant but [`ScramError::BadProof`] is the client breaking
/// the protocol; [`ScramError::sqlstate`] gives the code Postgres reports for each.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("client selected an invalid SASL authentication mechanism")]
    UnsupportedMechanism,
    #[error("client sent channel binding data but selected SCRAM-SHA-256, not -PLUS")]
    ChannelBindingRequested,
    #[error("unexpected SCRAM channel-binding attribute in client-final-message")]
    ChannelBindingMismatch,
    #[error("SCRAM channel binding negotiation error: the client thinks the server does not support channel binding, but SCRAM-SHA-256-PLUS was offered")]
    ChannelBindingDowngrade,
    #[error("unsupported SCRAM channel-binding type")]
    UnsupportedChannelBinding,
    #[error("client uses {0}, which is not supported")]
    Unsupported(&'static str),
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("invalid SCRAM response: nonce does not match")]
    NonceMismatch,
    #[error("SCRAM message received out of order")]
    OutOfOrder,
    #[error("SCRAM proof does not match: wrong password")]
    BadProof,
}

impl ScramError {
    /// The SQLSTATE Postgres sends for this failure: `28P01` (invalid_password) for a wrong
    /// password, `0A000` for the features it refuses, `08P01` (protocol_violation) otherwise.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ScramError::BadProof => "28P01",
            ScramError::Unsupported(_) => "0A000",
            _ => "08P01",
        }
    }
}

/// One SCRAM exchange with one client: feed it the client's two messages in order. Any error
/// ends the exchange; later calls get [`ScramError::OutOfOrder`].
pub struct ScramServer {
    /// What the client must prove it knows the password for.
    verifier: ScramVerifier,
    /// `tls-server-end-point` data when SCRAM-SHA-256-PLUS was offered.
    end_point: Option<Vec<u8>>,
    /// How far the exchange has got.
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Exchange),
    Done,
}

/// What the first round fixed and the final round is checked against.
struct Exchange {
    /// What `c=` must be: the base64 of the gs2 header the client sent, and under
    /// SCRAM-SHA-256-PLUS the binding data after it.
    channel_binding: String,
    /// Client nonce followed by server nonce, which `r=` must echo.
    nonce: String,
    /// client-first-message-bare `,` server-first-message: the start of the AuthMessage.
    auth_prefix: Vec<u8>,
}

/// Shows how far the exchange has got, never the verifier.
impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::AwaitingClientFirst => "AwaitingClientFirst",
            State::AwaitingClientFinal(_) => "AwaitingClientFinal",
            State::Done => "Done",
        };
        write!(f, "ScramServer {{ state: {state} }}")
    }
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier) -> Self {
        ScramServer {
            verifier,
            end_point: None,
            state: State::AwaitingClientFirst,
        }
    }

    /// An exchange where SCRAM-SHA-256-PLUS was offered, bound to `end_point` (the
    /// `tls-server-end-point` data of pgweir's certificate on this connection).
    pub fn with_channel_binding(verifier: ScramVerifier, end_point: Vec<u8>) -> Self {
        ScramServer {
            end_point: Some(end_point),
            ..ScramServer::new(verifier)
        }
    }

    /// Takes the SASLInitialResponse (mechanism name and client-first-message) and returns the
    /// server-first-message for AuthenticationSASLContinue. The username in `n=` is ignored,
    /// as Postgres does: the user is the one from the startup packet.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let mut raw = [0; RAW_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        self.client_first_with_nonce(mechanism, data, &B64.encode(raw))
    }

    /// [`Self::client_first`] with the server's half of the nonce given, so tests can replay
    /// known exchanges.
    fn client_first_with_nonce(
        &mut self,
        mechanism: &str,
        data: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        if !matches!(state, State::AwaitingClientFirst) {
            return Err(ScramError::OutOfOrder);
        }
        let first = parse_client_first(data)?;
        let channel_binding =
            channel_binding::expected(mechanism, first.gs2_header, self.end_point.as_deref())?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        let auth_prefix = [first.bare, b",", server_first.as_bytes()].concat();
        self.state = State::AwaitingClientFinal(Exchange {
            channel_binding,
            nonce,
            auth_prefix,
        });
        Ok(server_first.into_bytes())
    }

    /// Takes the SASLResponse (client-final-message), checks the proof and returns the
    /// server-final-message (`v=…`) for AuthenticationSASLFinal, with the ClientKey the proof
    /// revealed (for pass-through, [`super::passthrough`]). [`ScramError::BadProof`] means the
    /// wrong password; every other error is a protocol violation.
    pub fn client_final(&mut self, data: &[u8]) -> Result<(Vec<u8>, ScramClientKey), ScramError> {
        let exchange = match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingClientFinal(exchange) => exchange,
            _ => return Err(ScramError::OutOfOrder),
        };
        let last = parse_client_final(data)?;
        if last.channel_binding != exchange.channel_binding.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if last.nonce != exchange.nonce.as_bytes() {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message: [&[u8]; 3] = [&exchange.auth_prefix, b",", last.without_proof];
        let signature = hmac(&self.verifier.stored_key, &auth_message);
        let mut client_key = last.proof;
        client_key
            .iter_mut()
            .zip(signature)
            .for_each(|(k, s)| *k ^= s);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored_key.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, &auth_message);
        let reply = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok((reply, ScramClientKey(client_key)))
    }
}

/// The parts of a client-first-message the exchange needs.
struct ClientFirst<'a> {
    /// The gs2 header (`n,,`, `y,,` or `p=…,,`), its final comma included.
    gs2_header: &'a [u8],
    /// client-first-message-bare: everything after the gs2 header.
    bare: &'a [u8],
    nonce: &'a str,
}

/// Parses `gs2-header client-first-message-bare`, rejecting what Postgres rejects.
fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    reject_nul(data)?;
    let mut gs2 = data.splitn(3, |&b| b == b',');
    let (Some(flag), Some(authzid), Some(bare)) = (gs2.next(), gs2.next(), gs2.next()) else {
        return Err(ScramError::Malformed("missing gs2 header"));
    };
    let gs2_header = &data[..flag.len() + authzid.len() + 2];
    match authzid {
        [] => {}
        [b'a', ..] => return Err(ScramError::Unsupported("an authorization identity")),
        _ => return Err(ScramError::Malformed("unexpected attribute in gs2 header")),
    }
    if bare.starts_with(b"m") {
        return Err(ScramError::Unsupported("a mandatory SCRAM extension"));
    }
    let mut attrs = bare.split(|&b| b == b',');
    expect_attr(attrs.next(), b'n')?;
    let nonce = expect_attr(attrs.next(), b'r')?;
    let nonce = std::str::from_utf8(nonce)
        .ok()
        .filter(|n| n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .ok_or(ScramError::Malformed("non-printable characters in nonce"))?;
    for extension in attrs {
        any_attr(extension)?;
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        nonce,
    })
}

/// The parts of a client-final-message the exchange needs.
struct ClientFinal<'a> {
    channel_binding: &'a [u8],
    nonce: &'a [u8],
    /// client-final-message-without-proof: the last part of the AuthMessage.
    without_proof: &'a [u8],
    proof: [u8; 32],
}

/// Parses `c=…,r=…[,extensions],p=…`; the proof must come last, as Postgres requires.
fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    reject_nul(data)?;
    let mut halves = data.rsplitn(2, |&b| b == b',');
    let proof = expect_attr(halves.next(), b'p')?;
    let without_proof = halves
        .next()
        .ok_or(ScramError::Malformed("missing proof"))?;
    let mut attrs = without_proof.split(|&b| b == b',');
    let channel_binding = expect_attr(attrs.next(), b'c')?;
    let nonce = expect_attr(attrs.next(), b'r')?;
    for extension in attrs {
        if any_attr(extension)?.0 == b'p' {
            return Err(ScramError::Malformed("garbage after proof"));
        }
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof: decode_proof(proof)?,
    })
}

/// Decodes the base64 proof, which must be exactly 32 bytes (the length check comes first so
/// that a huge `p=` is refused without decoding it).
fn decode_proof(b64: &[u8]) -> Result<[u8; 32], ScramError> {
    let bytes = (b64.len() == PROOF_B64_LEN).then(|| B64.decode(b64).ok());
    bytes
        .flatten()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(ScramError::Malformed(
            "proof is not 32 base64-encoded bytes",
        ))
}

/// Postgres reads SCRAM messages as C strings and rejects any whose length disagrees.
fn reject_nul(data: &[u8]) -> Result<(), ScramError> {
    if data.contains(&0) {
        return Err(ScramError::Malformed("NUL byte in message"));
    }
    Ok(())
}

/// Reads `x=value`, where `x` is an ASCII letter.
fn any_attr(part: &[u8]) -> Result<(u8, &[u8]), ScramError> {
    match part {
        [name, b'=', value @ ..] if name.is_ascii_alphabetic() => Ok((*name, value)),
        _ => Err(ScramError::Malformed("attribute expected")),
    }
}

/// Reads the value of the attribute `name`, which must be the next one.
fn expect_attr(part: Option<&[u8]>, name: u8) -> Result<&[u8], ScramError> {
    let part = part.ok_or(ScramError::Malformed("message ends early"))?;
    match any_attr(part)? {
        (found, value) if found == name => Ok(value),
        _ => Err(ScramError::Malformed("unexpected attribute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::keys::verifier_for;
    use crate::secret::StoredSecret;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::password::scram_sha_256;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use ScramError::*;

    /// RFC 7677's example: password "pencil", its salt, and the exchange's nonces and messages.
    const RFC_SECRET: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
        WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    fn scram(secret: &str) -> ScramVerifier {
        match StoredSecret::parse(secret) {
            Ok(StoredSecret::Scram(verifier)) => verifier,
            _ => panic!("not a SCRAM secret"),
        }
    }

    /// A server that has answered RFC 7677's client-first-message.
    fn awaiting_final() -> ScramServer {
        let mut server = ScramServer::new(scram(RFC_SECRET));
        let first = format!("n,,n=user,r={CLIENT_NONCE}");
        let reply = server.client_first_with_nonce(MECHANISM, first.as_bytes(), SERVER_NONCE);
        let expected = format!("r={CLIENT_NONCE}{SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        assert_eq!(reply.unwrap(), expected.as_bytes());
        server
    }

    /// Runs a whole exchange with postgres-protocol's client, which must accept our answer.
    fn login(
        verifier: ScramVerifier,
        password: &str,
        cb: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let mut server = ScramServer::new(verifier);
        let first = server.client_first(MECHANISM, client.message())?;
        client.update(&first).unwrap();
        let (last, _) = server.client_final(client.message())?;
        client.finish(&last).unwrap();
        Ok(())
    }

    /// Asserts each input fails with an error of the expected variant.
    fn assert_fails(
        cases: &[(&[u8], ScramError)],
        mut run: impl FnMut(&[u8]) -> Result<Vec<u8>, ScramError>,
    ) {
        for (data, expected) in cases {
            let got = run(data).map_err(|e| std::mem::discriminant(&e));
            assert_eq!(got, Err(std::mem::discriminant(expected)), "{data:?}");
        }
    }

    #[test]
    fn rfc7677_example() {
        let rfc = scram(RFC_SECRET);
        let last = format!("c=biws,r={CLIENT_NONCE}{SERVER_NONCE},p={RFC_PROOF}");
        let (reply, key) = awaiting_final().client_final(last.as_bytes()).unwrap();
        assert_eq!(reply, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(<[u8; 32]>::from(Sha256::digest(key.0)) == rfc.stored_key);
    }

    #[test]
    fn real_client_logs_in_with_right_password_only() {
        let plain = StoredSecret::Plain("pässword".into());
        let hashed = StoredSecret::Scram(scram(&scram_sha_256("pässword".as_bytes())));
        for secret in [plain, hashed] {
            for cb in [ChannelBinding::unsupported, ChannelBinding::unrequested] {
                let verifier = verifier_for(&secret).unwrap();
                assert_eq!(login(verifier.clone(), "pässword", cb()), Ok(()));
                let err = login(verifier, "wrong", cb()).unwrap_err();
                assert_eq!((err, err.sqlstate()), (BadProof, "28P01"));
            }
        }
    }

    #[test]
    fn calls_out_of_order() {
        let mut server = ScramServer::new(scram(RFC_SECRET));
        assert_eq!(server.client_final(b"c=biws"), Err(OutOfOrder));
        assert_eq!(
            server.client_first(MECHANISM, b"n,,n=,r=a"),
            Err(OutOfOrder)
        );
        let mut server = awaiting_final();
        assert_eq!(
            server.client_first(MECHANISM, b"n,,n=,r=a"),
            Err(OutOfOrder)
        );
        assert_eq!(server.client_final(b""), Err(OutOfOrder));
        let mut server = awaiting_final();
        assert!(matches!(server.client_final(b"x"), Err(Malformed(_))));
        assert_eq!(server.client_final(b"x"), Err(OutOfOrder));
        assert_eq!(format!("{server:?}"), "ScramServer { state: Done }");
    }

    #[test]
    fn client_first_rejects_what_postgres_rejects_only() {
        let m = Malformed("");
        let cases: [(&[u8], ScramError); 14] = [
            (b"", m),
            (b"n", m),
            (b"n,", m),
            (b"x,,n=,r=a", m),
            (b"nn,,n=,r=a", m),
            (b"p=tls-server-end-point,,n=,r=a", ChannelBindingRequested),
            (b"n,a=bob,n=,r=a", Unsupported("")),
            (b"n,x,n=,r=a", m),
            (b"n,,m=ext,n=,r=a", Unsupported("")),
            (b"n,,r=a", m),
            (b"n,,n=", m),
            (b"n,,n=,r=a b", m),
            (b"n,,n=,r=a\0", m),
            (b"n,,n=,r=a,1=x", m),
        ];
        assert_fails(&cases, |data| {
            ScramServer::new(scram(RFC_SECRET)).client_first(MECHANISM, data)
        });
        let mut server = ScramServer::new(scram(RFC_SECRET));
        let plus = server.client_first("SCRAM-SHA-256-PLUS", b"n,,n=,r=a");
        assert_eq!(plus, Err(UnsupportedMechanism));
        assert_eq!(Malformed("").sqlstate(), "08P01");

        let ok: [&[u8]; 4] = [
            b"n,,n=,r=abc",
            b"y,,n=user,r=abc",
            b"n,,n=\xff\xfe,r=abc",
            b"n,,n=u,r=abc,x=ext",
        ];
        for data in ok {
            let reply = ScramServer::new(scram(RFC_SECRET))
                .client_first(MECHANISM, data)
                .unwrap();
            let (nonce, rest) = reply.split_at(2 + 3 + 24);
            assert!(nonce.starts_with(b"r=abc"), "{data:?}");
            assert_eq!(rest, b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        }
    }

    #[test]
    fn client_final_errors() {
        let nonce = format!("{CLIENT_NONCE}{SERVER_NONCE}");
        let proof = B64.encode([0u8; 32]);
        let m = Malformed("");
        let cases: Vec<(String, ScramError)> = vec![
            (String::new(), m),
            ("c=biws".into(), m),
            (format!("c=biws,r={nonce}"), m),
            (format!("c=biws,r={nonce},p=c2hvcnQ="), m),
            (format!("c=biws,r={nonce},p=!{}", &proof[1..]), m),
            (format!("c=biws,r={nonce},p={proof},x=1"), m),
            (format!("c=biws,r={nonce},p={proof},p={proof}"), m),
            (format!("r={nonce},c=biws,p={proof}"), m),
            (format!("c=biws,r={nonce}\0,p={proof}"), m),
            (
                format!("c=eSws,r={nonce},p={proof}"),
                ChannelBindingMismatch,
            ),
            (format!("c=biws,r={CLIENT_NONCE},p={proof}"), NonceMismatch),
            (format!("c=biws,r={nonce}x,p={proof}"), NonceMismatch),
            (format!("c=biws,r={nonce},p={proof}"), BadProof),
            (format!("c=biws,r={nonce},x=ext,p={proof}"), BadProof),
        ];
        let cases: Vec<(&[u8], ScramError)> =
            cases.iter().map(|(d, e)| (d.as_bytes(), *e)).collect();
        assert_fails(&cases, |data| {
            awaiting_final().client_final(data).map(|(r, _)| r)
        });

        let mut server = ScramServer::new(scram(RFC_SECRET));
        server
            .client_first_with_nonce(MECHANISM, b"y,,n=,r=a", "S")
            .unwrap();
        let last = format!("c=biws,r=aS,p={proof}");
        assert_eq!(
            server.client_final(last.as_bytes()).map(|(r, _)| r),
            Err(ChannelBindingMismatch)
        );
    }

    #[test]
    fn huge_and_garbage_values_never_panic_or_pass() {
        let nonce = "n".repeat(1 << 20);
        let mut server = ScramServer::new(scram(RFC_SECRET));
        let first = format!("n,,n={},r={nonce}", "u".repeat(1 << 20));
        server
            .client_first_with_nonce(MECHANISM, first.as_bytes(), "S")
            .unwrap();
        let last = format!("c=biws,r={nonce}S,p={}", "A".repeat(1 << 20));
        assert!(matches!(
            server.client_final(last.as_bytes()),
            Err(Malformed(_))
        ));

        let mut rng = StdRng::seed_from_u64(7);
        let alphabet = b"nyprcmax=,biwsSA/+\0\xff\xc3 ";
        let mut inputs: Vec<Vec<u8>> = (0..3000)
            .map(|_| {
                let len = rng.gen_range(0..80);
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            })
            .collect();
        let good = format!("c=biws,r={CLIENT_NONCE}{SERVER_NONCE},p={RFC_PROOF}");
        inputs.extend((0..good.len()).map(|n| good.as_bytes()[..n].to_vec()));
        for data in &inputs {
            let _ = ScramServer::new(scram(RFC_SECRET)).client_first(MECHANISM, data);
            assert!(awaiting_final().client_final(data).is_err(), "{data:?}");
        }
    }
}
