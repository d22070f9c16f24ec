//! userlist.txt (PgBouncer's auth_file), stored secrets (MD5, SCRAM verifiers, plain) and
//! libpq connection strings (PgBouncer's [databases] lines), as tests/it/fuzz.rs calls them.
//! Input: the file's text.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pgweir::auth::secret::StoredSecret;
use pgweir::auth::userlist;
use pgweir::convert::connstr;

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);
    let _ = userlist::parse(&text);
    let _ = connstr::parse(&text);
    let _ = StoredSecret::parse(&text);
});
