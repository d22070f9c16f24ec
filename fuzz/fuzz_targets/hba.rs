//! pg_hba.conf-style files (`hba_file`), read from disk as pgweir reads them, with a second
//! file the first may name in `@file` lists; then a few lookups in what was read.
//! Input: the hba file, a NUL, then the file `@admins` names.
#![no_main]

mod common;

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use pgweir::auth::hba::HbaFile;

fuzz_target!(|data: &[u8]| {
    let [hba, admins] = common::parts(data, 2)[..] else {
        return;
    };
    let dir = common::scratch_dir();
    std::fs::write(dir.join("hba.conf"), hba).unwrap();
    std::fs::write(dir.join("admins"), admins).unwrap();
    if let Ok(file) = HbaFile::load(&dir.join("hba.conf")) {
        let v4: IpAddr = [10, 1, 2, 3].into();
        let v6: IpAddr = "::ffff:192.168.0.1".parse().unwrap();
        for (addr, tls) in [(None, false), (Some(v4), false), (Some(v6), true)] {
            let _ = file.find(addr, tls, "app", "alice");
            let _ = file.find(addr, tls, "alice", "alice");
        }
        let _ = file.first_cert_line();
    }
});
