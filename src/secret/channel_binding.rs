//! SCRAM channel binding as Postgres checks it (RFC 5802 §6, RFC 5929): which gs2 header a
//! client may send for the mechanism it chose, and what its client-final-message's `c=` must
//! then carry. Under TLS pgweir offers SCRAM-SHA-256-PLUS bound to `tls-server-end-point`, the
//! hash of its own certificate, so a man in the middle holding another certificate cannot
//! relay the exchange. Pure; used by [`super::scram::ScramServer`].

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::scram::{ScramError, MECHANISM};

/// The mechanism with channel binding, offered only under TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type Postgres (and pgweir) supports.
const TLS_SERVER_END_POINT: &[u8] = b"tls-server-end-point";

/// What `c=` must be for a client that chose `mechanism` and sent `gs2_header` (its final
/// comma included), when `end_point` is the binding data SCRAM-SHA-256-PLUS was offered
/// with (`None`: it was not offered).
pub fn expected(
    mechanism: &str,
    gs2_header: &[u8],
    end_point: Option<&[u8]>,
) -> Result<String, ScramError> {
    let flag = gs2_header.split(|&b| b == b',').next().unwrap_or_default();
    match (mechanism, end_point) {
        (MECHANISM_PLUS, Some(end_point)) => match flag {
            [b'p', b'=', name @ ..] if name == TLS_SERVER_END_POINT => {
                Ok(B64.encode([gs2_header, end_point].concat()))
            }
            [b'p', b'=', ..] => Err(ScramError::UnsupportedChannelBinding),
            _ => Err(ScramError::Malformed(
                "SCRAM-SHA-256-PLUS selected without channel binding",
            )),
        },
        (MECHANISM, _) => match flag {
            b"n" => Ok(B64.encode(gs2_header)),
            // The client could bind but thinks pgweir cannot: a downgrade when it was offered.
            b"y" if end_point.is_some() => Err(ScramError::ChannelBindingDowngrade),
            b"y" => Ok(B64.encode(gs2_header)),
            [b'p', ..] => Err(ScramError::ChannelBindingRequested),
            _ => Err(ScramError::Malformed("unexpected channel-binding flag")),
        },
        _ => Err(ScramError::UnsupportedMechanism),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::keys::verifier_for;
    use crate::secret::scram::ScramServer;
    use crate::secret::StoredSecret;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use ScramError::*;

    const END_POINT: &[u8] = &[7; 32];

    /// A mechanism, a gs2 header, the binding data offered, and the error expected.
    type Case = (
        &'static str,
        &'static [u8],
        Option<&'static [u8]>,
        ScramError,
    );

    #[test]
    fn plus_needs_the_end_point_type_and_an_offer() {
        let header = b"p=tls-server-end-point,,";
        let c = expected(MECHANISM_PLUS, header, Some(END_POINT)).unwrap();
        assert_eq!(B64.decode(c).unwrap(), [&header[..], END_POINT].concat());
        let cases: [Case; 5] = [
            (MECHANISM_PLUS, header, None, UnsupportedMechanism),
            (
                MECHANISM_PLUS,
                b"p=tls-unique,,",
                Some(END_POINT),
                UnsupportedChannelBinding,
            ),
            (MECHANISM_PLUS, b"n,,", Some(END_POINT), Malformed("")),
            (MECHANISM_PLUS, b"y,,", Some(END_POINT), Malformed("")),
            ("SCRAM-SHA-1", b"n,,", Some(END_POINT), UnsupportedMechanism),
        ];
        for (mechanism, header, offered, error) in cases {
            let got = expected(mechanism, header, offered).map_err(|e| std::mem::discriminant(&e));
            assert_eq!(got, Err(std::mem::discriminant(&error)), "{header:?}");
        }
    }

    #[test]
    fn plain_scram_refuses_y_when_plus_was_offered() {
        assert_eq!(
            expected(MECHANISM, b"n,,", Some(END_POINT)).unwrap(),
            "biws"
        );
        assert_eq!(expected(MECHANISM, b"y,,", None).unwrap(), "eSws");
        assert_eq!(
            expected(MECHANISM, b"y,,", Some(END_POINT)),
            Err(ChannelBindingDowngrade)
        );
        assert_eq!(
            expected(MECHANISM, b"p=tls-server-end-point,,", Some(END_POINT)),
            Err(ChannelBindingRequested)
        );
    }

    /// A whole exchange with postgres-protocol's client, bound to `client_end_point`, against
    /// a server offering PLUS with `server_end_point`.
    fn login(client_end_point: &[u8], server_end_point: &[u8]) -> Result<(), ScramError> {
        let verifier = verifier_for(&StoredSecret::Plain("pw".into())).unwrap();
        let binding = ChannelBinding::tls_server_end_point(client_end_point.to_vec());
        let mut client = ScramSha256::new(b"pw", binding);
        let mut server = ScramServer::with_channel_binding(verifier, server_end_point.to_vec());
        let first = server.client_first(MECHANISM_PLUS, client.message())?;
        client.update(&first).unwrap();
        let last = server.client_final(client.message())?;
        client.finish(&last.0).unwrap();
        Ok(())
    }

    #[test]
    fn bound_exchange_succeeds_only_with_the_same_certificate() {
        assert_eq!(login(END_POINT, END_POINT), Ok(()));
        assert_eq!(login(&[8; 32], END_POINT), Err(ChannelBindingMismatch));
    }

    #[test]
    fn unbound_client_still_logs_in_when_plus_was_offered() {
        let verifier = verifier_for(&StoredSecret::Plain("pw".into())).unwrap();
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let mut server = ScramServer::with_channel_binding(verifier, END_POINT.to_vec());
        let first = server.client_first(MECHANISM, client.message()).unwrap();
        client.update(&first).unwrap();
        let last = server.client_final(client.message()).unwrap();
        client.finish(&last.0).unwrap();
    }
}
