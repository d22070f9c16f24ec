//! `pgweir convert`: a pgbouncer.ini read from disk (sections, comments, `%include`), its
//! [databases] connection strings and its settings turned into a pgweir.toml; the result is
//! then read back as pgweir would read it. Input: pgbouncer.ini, a NUL, then other.ini (the
//! file a `%include other.ini` line splices in).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pgweir::config::Config;

fuzz_target!(|data: &[u8]| {
    let [ini, other] = common::parts(data, 2)[..] else {
        return;
    };
    let dir = common::scratch_dir();
    std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
    std::fs::write(dir.join("other.ini"), other).unwrap();
    if let Ok(conversion) = pgweir::convert::convert(&dir.join("pgbouncer.ini")) {
        let _ = Config::parse(&conversion.toml, &|_| Some("x".to_owned()));
    }
});
