//! SASL SCRAM-SHA-256 messages both ways: a client's client-first and client-final to
//! pgweir's `ScramServer` (plain, or offering SCRAM-SHA-256-PLUS), and a server's
//! server-first and server-final to the pass-through client (`KeyedScramClient`).
//!
//! Input: one flags byte, then up to four NUL-separated messages: client-first,
//! client-final, server-first, server-final. In client-final, `%N` stands for the nonce the
//! server answered; in server-first, for the pass-through client's own nonce; so the
//! fuzzer gets past the nonce checks to the proofs. The verifier is fixed (password `pw`,
//! salt bytes 0..16, 4096 iterations).
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgweir::auth::keys::password_client_key;
use pgweir::auth::passthrough::{Gs2, KeyedScramClient, ScramClientKey};
use pgweir::auth::scram::{ScramServer, MECHANISM};
use pgweir::auth::secret::{ScramVerifier, StoredSecret};

const VERIFIER: &str = "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$\
    PXqQFogpFBTrQ8BxTk6ufcJCKVVV84iLSJ9VQGJMqFg=:gwMou4HN8CLIlk0QcduKUDjknJsxppiyIhXaYnQUxSU=";
/// `tls-server-end-point` data for the -PLUS exchanges.
const END_POINT: [u8; 32] = [1; 32];

fn keys() -> &'static (ScramVerifier, ScramClientKey) {
    static K: OnceLock<(ScramVerifier, ScramClientKey)> = OnceLock::new();
    K.get_or_init(|| {
        let Ok(StoredSecret::Scram(v)) = StoredSecret::parse(VERIFIER) else {
            panic!("the fixed verifier parses");
        };
        let key = password_client_key(&v, b"pw").expect("a client key for pw");
        (v, key)
    })
}

/// `message` with every `%N` replaced by `nonce`.
fn with_nonce(message: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.windows(2).position(|w| w == b"%N") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(nonce);
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

/// The value of attribute `r=` in a SCRAM message.
fn nonce_of(message: &[u8]) -> &[u8] {
    message
        .split(|&b| b == b',')
        .find_map(|a| a.strip_prefix(b"r="))
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let [client_first, client_final, server_first, server_final] = common::parts(rest, 4)[..]
    else {
        return;
    };
    let (verifier, client_key) = keys();

    let mechanism = match flags & 3 {
        0 => MECHANISM,
        1 => "SCRAM-SHA-256-PLUS",
        2 => "",
        _ => "SCRAM-SHA-1",
    };
    let mut server = if flags & 4 != 0 {
        ScramServer::with_channel_binding(verifier.clone(), END_POINT.to_vec())
    } else {
        ScramServer::new(verifier.clone())
    };
    if let Ok(reply) = server.client_first(mechanism, client_first) {
        let last = with_nonce(client_final, nonce_of(&reply));
        let _ = server.client_final(&last);
        let _ = server.client_final(&last);
    }

    let gs2 = match (flags >> 3) & 3 {
        0 => Gs2::Unsupported,
        1 => Gs2::Unused,
        _ => Gs2::EndPoint(END_POINT.to_vec()),
    };
    let mut client = KeyedScramClient::new(verifier.clone(), ScramClientKey(client_key.0), gs2);
    let first = client.first();
    let _ = client.finish(server_final);
    let server_first = with_nonce(server_first, nonce_of(&first));
    if client.update(&server_first).is_ok() {
        let _ = client.finish(server_final);
    }
});
