//! Authenticating a client: the message exchange for each `auth_type`, checked against the
//! [`crate::auth::UserDirectory`]. An unknown user goes through the same exchange as a known
//! one and fails the same way, so the answer does not reveal which users exist.

use bytes::{Buf, BytesMut};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use tokio::io::AsyncWriteExt;

use super::transport::Transport;
use super::{read_message, ClientError};
use crate::app::App;
use crate::auth::channel_binding::MECHANISM_PLUS;
use crate::auth::md5::{cleartext_matches, md5_response_matches};
use crate::auth::scram::{ScramServer, MECHANISM};
use crate::auth::secret::{ScramVerifier, StoredSecret};
use crate::auth::UserSecret;
use crate::config::AuthType;
use crate::net::stream::Stream;
use crate::protocol::{backend, fe};

/// Password messages are small; anything bigger is an attack or a broken client.
const MAX_PASSWORD_MESSAGE: usize = 8 * 1024;

/// Runs the exchange `auth_type` calls for. Ok means the client proved who it is.
pub async fn authenticate(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    _database: &str,
    transport: &Transport,
) -> Result<(), ClientError> {
    let users = app.users();
    let known = users.get(user);
    let secret = known.flatten();
    let failed = || ClientError::AuthFailed(user.to_owned());
    match app.config().pgweir.auth_type {
        AuthType::Trust => known.map(|_| ()).ok_or_else(failed),
        AuthType::Plain => {
            let mut out = BytesMut::new();
            backend::authentication_cleartext(&mut out);
            stream.write_all(&out).await?;
            let body = read_password(stream, buf).await?;
            let pw = body.strip_suffix(&[0]).unwrap_or(&body);
            let ok = secret.is_some_and(|s| cleartext_matches(&s.secret, user, pw));
            ok.then_some(()).ok_or_else(failed)
        }
        AuthType::Md5
            if !matches!(
                secret,
                Some(UserSecret {
                    secret: StoredSecret::Scram(_),
                    ..
                })
            ) =>
        {
            md5_exchange(stream, buf, user, secret).await
        }
        // Like Postgres, md5 falls back to SCRAM when only a SCRAM verifier is stored.
        AuthType::Md5 | AuthType::ScramSha256 => {
            let verifier = secret
                .and_then(|s| s.scram.clone())
                .unwrap_or_else(|| mock_verifier(user));
            let end_point = transport.end_point.clone().filter(|_| transport.tls);
            scram_exchange(stream, buf, user, verifier, end_point).await
        }
    }
}

async fn md5_exchange(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&UserSecret>,
) -> Result<(), ClientError> {
    let salt: [u8; 4] = rand::thread_rng().gen();
    let mut out = BytesMut::new();
    backend::authentication_md5(&mut out, salt);
    stream.write_all(&out).await?;
    let body = read_password(stream, buf).await?;
    let response = body.strip_suffix(&[0]).unwrap_or(&body);
    let ok = secret.is_some_and(|s| md5_response_matches(&s.secret, user, salt, response));
    ok.then_some(())
        .ok_or_else(|| ClientError::AuthFailed(user.to_owned()))
}

async fn scram_exchange(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: ScramVerifier,
    end_point: Option<Vec<u8>>,
) -> Result<(), ClientError> {
    // Under TLS, channel binding is offered first, as Postgres does.
    let (mut scram, mechanisms) = match end_point {
        Some(end_point) => (
            ScramServer::with_channel_binding(verifier, end_point),
            &[MECHANISM_PLUS, MECHANISM][..],
        ),
        None => (ScramServer::new(verifier), &[MECHANISM][..]),
    };
    let mut out = BytesMut::new();
    backend::authentication_sasl(&mut out, mechanisms);
    stream.write_all(&out).await?;

    let mut initial = read_password(stream, buf).await?;
    let mechanism = take_cstr(&mut initial)?;
    if initial.len() < 4 {
        return Err(ClientError::Malformed("SASLInitialResponse"));
    }
    let len = initial.get_i32();
    let data: &[u8] = if len < 0 { &[] } else { &initial };
    let first = scram
        .client_first(&mechanism, data)
        .map_err(|e| ClientError::from_scram(e, user))?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &first);
    stream.write_all(&out).await?;

    let response = read_password(stream, buf).await?;
    let last = scram
        .client_final(&response)
        .map_err(|e| ClientError::from_scram(e, user))?;
    out.clear();
    backend::authentication_sasl_final(&mut out, &last);
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads the next message, which must be a PasswordMessage/SASL response ('p').
async fn read_password(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<bytes::Bytes, ClientError> {
    let (tag, body) = read_message(stream, buf, MAX_PASSWORD_MESSAGE).await?;
    if tag != fe::PASSWORD {
        return Err(ClientError::Malformed("password message"));
    }
    Ok(body)
}

fn take_cstr(b: &mut bytes::Bytes) -> Result<String, ClientError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(ClientError::Malformed("SASLInitialResponse"))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

/// A verifier nobody can match, stable per user name for the life of the process (as in
/// Postgres), so probing with made-up names sees the same salt twice.
fn mock_verifier(user: &str) -> ScramVerifier {
    static NONCE: OnceLock<[u8; 32]> = OnceLock::new();
    let nonce = NONCE.get_or_init(|| rand::thread_rng().gen());
    let digest = Sha256::new()
        .chain_update(nonce)
        .chain_update(user)
        .finalize();
    ScramVerifier {
        iterations: 4096,
        salt: digest[..16].to_vec(),
        stored_key: rand::thread_rng().gen(),
        server_key: rand::thread_rng().gen(),
    }
}
