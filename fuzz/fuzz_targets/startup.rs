//! The untagged first packet of a connection (SSLRequest, GSSENCRequest, CancelRequest,
//! StartupMessage) and the `options` parameter inside it. Input: the packet body after its
//! 4-byte length, as `startup::parse` takes it.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pgweir::protocol::startup::{self, StartupPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(StartupPacket::Startup(m)) = startup::parse(data) {
        if let Some(options) = m.get("options") {
            let _ = startup::parse_options(options);
        }
    }
    let _ = startup::parse_options(&common::text(data));
});
