//! Every parser that reads bytes from a client, a server or a file, fed inputs it was never
//! meant to see (issue 17): random bytes, and the valid inputs the other tests use with bytes
//! flipped, cut or inserted. Nothing may panic; each must answer with its value or its error.
//! Property tests with a bounded number of cases, so CI runs them on every push, and a
//! replay of the corpora the coverage-guided fuzzer in `fuzz/` grew (its runs are by hand:
//! `fuzz/run.sh`, see fuzz/README.md).

use std::path::Path;

use bytes::BytesMut;
use proptest::prelude::*;

use pgweir::admin::parse::parse as admin_parse;
use pgweir::config::Config;
use pgweir::convert::connstr;
use pgweir::hba::HbaFile;
use pgweir::protocol::framer::{Disposition, Framer, Inspector, OutQueue, View, Want};
use pgweir::protocol::startup;
use pgweir::secret::scram::{ScramServer, MECHANISM};
use pgweir::secret::userlist;
use pgweir::secret::StoredSecret;
use pgweir::sql::route::{classify, route_setting, ReadOnlyFunctions};

/// Valid inputs to start mutations from.
const SQL_SEEDS: &[&str] = &[
    "SELECT 1",
    "select * from t where a = 'it''s' -- c\n",
    "BEGIN; SET LOCAL work_mem = '4MB'; COMMIT",
    "SELECT $tag$ body $tag$, E'\\x', U&'\\0041', \"id\"",
    "/* a /* nested */ comment */ WITH x AS (SELECT 1) SELECT * FROM x",
    "SET pgweir.route = 'replica'",
];
const CONFIG_SEED: &str = "[pgweir]\nlisten_port = 6432\nunix_socket_mode = \"0770\"\n\
    [pool]\ndefault_pool_size = 20\nquery_wait_timeout = \"2s\"\n\
    [databases.app]\nhost = \"127.0.0.1\"\nreplicas = [{ host = \"10.0.0.2\" }]\n\
    [users.u]\npassword = \"${PW}\"\n";
const HBA_SEED: &str = "local all all peer\nhost all @admins 10.0.0.0/8 scram-sha-256\n\
    hostssl \"My Db\",x all ::1/128 cert\nhost all all 192.168.0.1 255.255.255.0 md5 \\\n";
const USERLIST_SEED: &str =
    "\"alice\" \"md5d41d8cd98f00b204e9800998ecf8427e\"\n\"b\"\"ob\" \"pw\"\n";
const INI_SEED: &str = "[databases]\napp = host=db port=5433 dbname='a b' pool_size=3\n\
    * = host=x\n[pgbouncer]\nlisten_addr = *\n;comment\n%include other.ini\n";

/// A seed with some bytes replaced, removed or inserted.
fn mutated(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..8);
    edits.prop_map(move |edits| {
        let mut v = seed.to_vec();
        for (at, byte, kind) in edits {
            let i = usize::from(at) % (v.len() + 1);
            match kind {
                0 if i < v.len() => v[i] = byte,
                1 if i < v.len() => {
                    v.remove(i);
                }
                _ => v.insert(i, byte),
            }
        }
        v
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Wants a head of Binds and whole small messages, forwards everything.
struct Sees;

impl Inspector for Sees {
    fn wants(&self, tag: u8) -> Want {
        match tag {
            b'B' => Want {
                whole: 64,
                prefix: 1 << 20,
                through_nuls: 2,
            },
            b'Q' | b'P' => Want::HEAD,
            _ => Want::NOTHING,
        }
    }

    fn on_message(&mut self, _tag: u8, _len: usize, body: View<'_>) -> Disposition {
        let _ = body.bytes();
        Disposition::Forward
    }
}

fn a_startup_packet() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0u\0database\0d\0options\0-c a=b\0\0");
    body
}

fn startup_input(bytes: &[u8]) {
    let _ = startup::parse(bytes);
    let _ = startup::parse_options(&text(bytes));
}

fn sql_input(bytes: &[u8]) {
    let functions = ReadOnlyFunctions::new(["f".to_owned()]);
    let _ = classify(bytes, &functions);
    let _ = route_setting(bytes);
    let _ = pgweir::sql::effects::analyze(bytes);
    let _ = pgweir::sql::settings::custom_setting_names(bytes);
    let _ = pgweir::sql::settings::deallocated_name(bytes);
    let _ = pgweir::sql::writes::may_write(bytes);
    let _ = pgweir::sql::writes::ends_transaction(bytes);
}

fn admin_input(bytes: &[u8]) {
    let _ = admin_parse(&text(bytes));
}

fn config_input(bytes: &[u8]) {
    let _ = Config::parse(&text(bytes), &|_| Some("x".to_owned()));
}

fn userlist_input(bytes: &[u8]) {
    let _ = userlist::parse(&text(bytes));
    let _ = connstr::parse(&text(bytes));
    let _ = StoredSecret::parse(&text(bytes));
}

/// The corpora the coverage-guided fuzzer grew and minimised (`fuzz/corpus`, see
/// fuzz/README.md) replay through the same parsers, so what it reached stays covered in CI
/// without libFuzzer. (Its other targets take inputs shaped for their own harnesses.)
#[test]
fn the_fuzz_corpora_replay() {
    type Feed = fn(&[u8]);
    let feeds: [(&str, Feed); 5] = [
        ("startup", startup_input),
        ("sql", sql_input),
        ("admin", admin_input),
        ("config", config_input),
        ("userlist", userlist_input),
    ];
    for (target, feed) in feeds {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.expect("a corpus entry").path();
            feed(&std::fs::read(&path).expect("a corpus file"));
            inputs += 1;
        }
        assert!(
            inputs >= 10,
            "{target}: only {inputs} inputs in {}",
            dir.display()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_framer_takes_any_stream(bytes in prop::collection::vec(any::<u8>(), 0..2048), cut in 1usize..64) {
        let mut framer = Framer::default();
        let mut out = OutQueue::default();
        let mut buf = BytesMut::new();
        for chunk in bytes.chunks(cut) {
            buf.extend_from_slice(chunk);
            if framer.drain(&mut buf, &mut Sees, &mut out).is_err() {
                break;
            }
        }
    }

    #[test]
    fn startup_packets(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mutated(Box::leak(a_startup_packet().into_boxed_slice())),
    ]) {
        startup_input(&bytes);
    }

    #[test]
    fn sql_classification(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::sample::select(SQL_SEEDS).prop_flat_map(|s| mutated(s.as_bytes())),
    ]) {
        sql_input(&bytes);
    }

    #[test]
    fn admin_commands(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        mutated(b"SET query_wait_timeout TO 'a''b';"),
        mutated(b"SHOW \"pools\""),
    ]) {
        admin_input(&bytes);
    }

    #[test]
    fn config_files(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        mutated(CONFIG_SEED.as_bytes()),
    ]) {
        config_input(&bytes);
    }

    #[test]
    fn userlists_and_connection_strings(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mutated(USERLIST_SEED.as_bytes()),
        mutated(b"host=db port=5 dbname='a \\' b' x=y"),
    ]) {
        userlist_input(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Files: hba (with `@` lists) and pgbouncer.ini (with `%include`), written and read.
    #[test]
    fn hba_and_ini_files(hba in mutated(HBA_SEED.as_bytes()), ini in mutated(INI_SEED.as_bytes())) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hba.conf"), &hba).unwrap();
        std::fs::write(dir.path().join("admins"), "alice\n@admins\n").unwrap();
        let _ = HbaFile::load(&dir.path().join("hba.conf"));
        std::fs::write(dir.path().join("pgbouncer.ini"), &ini).unwrap();
        std::fs::write(dir.path().join("other.ini"), &ini).unwrap();
        let _ = pgweir::convert::convert(Path::new(&dir.path().join("pgbouncer.ini")));
    }

    /// SCRAM messages from a client: any client-first, then any client-final.
    #[test]
    fn scram_exchanges(first in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        mutated(b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"),
        mutated(b"p=tls-server-end-point,,n=,r=abc"),
    ], last in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mutated(b"c=biws,r=rOprNGfwEbeRWgbNEkqOabc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
    ]) {
        let secret = postgres_protocol::password::scram_sha_256(b"pw");
        let Ok(StoredSecret::Scram(verifier)) = StoredSecret::parse(&secret) else {
            panic!("a SCRAM verifier");
        };
        let mut server = ScramServer::new(verifier);
        if server.client_first(MECHANISM, &first).is_ok() {
            let _ = server.client_final(&last);
        }
    }
}
