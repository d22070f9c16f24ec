//! pgweir.toml: the TOML reader and everything that validates it (`Config::parse`), with
//! `${NAME}` expanding to `x`, as tests/it/fuzz.rs calls it. Input: the file's text.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pgweir::config::Config;

fuzz_target!(|data: &[u8]| {
    let _ = Config::parse(&common::text(data), &|_| Some("x".to_owned()));
});
