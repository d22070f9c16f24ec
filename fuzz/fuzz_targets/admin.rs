//! The admin console's command parser, as tests/it/fuzz.rs calls it, and for `SET key = value`
//! the PgBouncer-form value conversion the console's SET then applies. Input: the Query's
//! text.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pgweir::admin::parse::{parse, Command};

fuzz_target!(|data: &[u8]| {
    if let Ok(Command::Set { key, value }) = parse(&common::text(data)) {
        let _ = pgweir::admin::settings::section_of(&key);
        let _ = pgweir::convert::pgbouncer_value(&key, &value);
    }
});
