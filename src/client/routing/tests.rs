//! Unit tests of the relay's routing decisions: request scanning, the destination rules,
//! holding writes on a replica link, `SET pgweir.route` answers and retry windows.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::prepared::{Analysis, Registry};
use crate::sql::Verdict;

fn msg(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_u32(4 + body.len() as u32);
    buf.put_slice(body);
}

fn query(buf: &mut BytesMut, sql: &str) {
    msg(buf, fe::QUERY, format!("{sql}\0").as_bytes());
}

fn parse(buf: &mut BytesMut, name: &str, sql: &str) {
    msg(buf, fe::PARSE, format!("{name}\0{sql}\0\0\0").as_bytes());
}

fn bind(buf: &mut BytesMut, stmt: &str) {
    msg(buf, fe::BIND, format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes());
}

fn sync(buf: &mut BytesMut) {
    msg(buf, fe::SYNC, b"");
}

fn scan(buf: &[u8]) -> Scan {
    let functions = ReadOnlyFunctions::default();
    scan_request(
        buf,
        &ClientStatements::default(),
        &functions,
        Classification::UNKNOWN,
    )
}

fn verdict(s: Scan) -> Verdict {
    match s {
        Scan::Request(c) => c.verdict,
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn a_simple_read_is_read_only_and_a_write_is_not() {
    let mut b = BytesMut::new();
    query(&mut b, "SELECT 1");
    assert_eq!(verdict(scan(&b)), Verdict::ReadOnly);
    let mut b = BytesMut::new();
    query(&mut b, "INSERT INTO t VALUES (1)");
    assert_eq!(verdict(scan(&b)), Verdict::Primary);
}

#[test]
fn an_extended_batch_is_as_read_only_as_its_least_read_only_statement() {
    let mut b = BytesMut::new();
    parse(&mut b, "", "SELECT 1");
    bind(&mut b, "");
    msg(&mut b, fe::EXECUTE, b"\0\0\0\0\0");
    parse(&mut b, "", "UPDATE t SET a = 1");
    bind(&mut b, "");
    sync(&mut b);
    assert_eq!(verdict(scan(&b)), Verdict::Primary);
}

#[test]
fn a_bind_uses_the_statement_parsed_in_the_same_request() {
    let mut b = BytesMut::new();
    parse(&mut b, "s1", "SELECT 1");
    bind(&mut b, "s1");
    sync(&mut b);
    assert_eq!(verdict(scan(&b)), Verdict::ReadOnly);
}

#[test]
fn a_bind_uses_the_verdict_kept_with_the_clients_statement() {
    let registry = Registry::default();
    let stmt = registry.intern(b"DELETE FROM t\0\0\0", || Analysis {
        route: Classification::UNKNOWN,
        ..Analysis::default()
    });
    let read = registry.intern(b"SELECT 2\0\0\0", || Analysis {
        route: classify(b"SELECT 2", &ReadOnlyFunctions::default()),
        ..Analysis::default()
    });
    let mut statements = ClientStatements::default();
    statements.insert(Bytes::from_static(b"w"), stmt);
    statements.insert(Bytes::from_static(b"r"), read);
    let functions = ReadOnlyFunctions::default();
    for (name, expected) in [
        ("w", Verdict::Primary),
        ("r", Verdict::ReadOnly),
        ("unknown", Verdict::Primary),
    ] {
        let mut b = BytesMut::new();
        bind(&mut b, name);
        sync(&mut b);
        let got = scan_request(&b, &statements, &functions, Classification::UNKNOWN);
        assert_eq!(verdict(got), expected, "{name}");
    }
}

#[test]
fn an_unfinished_request_needs_more_and_a_lone_sync_goes_to_the_primary() {
    let mut b = BytesMut::new();
    parse(&mut b, "", "SELECT 1");
    bind(&mut b, "");
    assert_eq!(scan(&b), Scan::NeedMore);
    assert_eq!(scan(&b[..3]), Scan::NeedMore);
    let mut b = BytesMut::new();
    sync(&mut b);
    assert_eq!(verdict(scan(&b)), Verdict::Primary);
}

#[test]
fn set_pgweir_route_is_recognised_only_as_the_first_query() {
    let mut b = BytesMut::new();
    query(&mut b, "SET pgweir.route TO replica");
    let len = b.len();
    assert_eq!(scan(&b), Scan::Setting(RouteSetting::Replica, len));
    let mut b = BytesMut::new();
    parse(&mut b, "", "SELECT 1");
    query(&mut b, "SET pgweir.route TO replica");
    assert!(matches!(scan(&b), Scan::Request(_)));
}

#[test]
fn only_the_first_message_of_a_request_may_hint() {
    let mut b = BytesMut::new();
    parse(&mut b, "", "INSERT INTO t VALUES (1)");
    bind(&mut b, "");
    parse(&mut b, "", "/* pgweir:replica */ SELECT 1");
    bind(&mut b, "");
    sync(&mut b);
    let Scan::Request(c) = scan(&b) else {
        panic!("not a request")
    };
    assert_eq!(c.hint, None);
    assert!(!c.replica_ok());
}

#[test]
fn a_hint_leads_the_request() {
    let mut b = BytesMut::new();
    query(&mut b, "/* pgweir:replica */ SELECT nextval('s')");
    let Scan::Request(c) = scan(&b) else {
        panic!("not a request")
    };
    assert_eq!(c.hint, Some(Hint::Replica));
    assert!(c.replica_ok());
}

fn class(sql: &str) -> Classification {
    classify(sql.as_bytes(), &ReadOnlyFunctions::default())
}

const AUTO: Policy = Policy {
    routes: true,
    forced_target: None,
    auto: true,
};

#[test]
fn auto_sends_proven_reads_to_replicas_and_the_rest_to_the_primary() {
    let tx = PoolMode::Transaction;
    let replicas = Destination::Replicas {
        with_primary: false,
        hold_writes: true,
    };
    assert_eq!(decide(AUTO, tx, None, class("SELECT 1")), replicas);
    assert_eq!(decide(AUTO, tx, None, class("BEGIN READ ONLY")), replicas);
    assert_eq!(
        decide(AUTO, tx, None, class("UPDATE t SET a = 1")),
        Destination::Primary
    );
    assert_eq!(
        decide(AUTO, tx, None, class("/* pgweir:primary */ SELECT 1")),
        Destination::Primary
    );
    assert_eq!(
        decide(
            AUTO,
            tx,
            None,
            class("/* pgweir:replica */ SELECT nextval('s')")
        ),
        replicas
    );
    assert_eq!(
        decide(AUTO, PoolMode::Session, None, class("SELECT 1")),
        Destination::Primary
    );
}

#[test]
fn the_session_setting_beats_the_database_and_target_beats_auto() {
    let tx = PoolMode::Transaction;
    let read = class("SELECT 1");
    let forced = Destination::Replicas {
        with_primary: false,
        hold_writes: false,
    };
    assert_eq!(
        decide(AUTO, tx, Some(RouteSetting::Primary), read),
        Destination::Primary
    );
    assert_eq!(
        decide(
            AUTO,
            tx,
            Some(RouteSetting::Replica),
            class("INSERT INTO t VALUES (1)")
        ),
        forced
    );
    let off = Policy {
        auto: false,
        ..AUTO
    };
    assert_eq!(decide(off, tx, None, read), Destination::Primary);
    assert!(matches!(
        decide(off, tx, Some(RouteSetting::Auto), read),
        Destination::Replicas {
            hold_writes: true,
            ..
        }
    ));
    let any = Policy {
        forced_target: Some(true),
        auto: false,
        ..AUTO
    };
    assert_eq!(
        decide(any, tx, None, read),
        Destination::Replicas {
            with_primary: true,
            hold_writes: false
        }
    );
    let none = Policy::default();
    assert_eq!(
        decide(none, tx, Some(RouteSetting::Replica), read),
        Destination::Primary
    );
}

fn check(link: &mut LinkRoute, unnamed: &mut Classification, tag: u8, body: &[u8]) -> bool {
    check_in(link, unnamed, tag, body, false)
}

fn check_in(
    link: &mut LinkRoute,
    unnamed: &mut Classification,
    tag: u8,
    body: &[u8],
    in_batch: bool,
) -> bool {
    let functions = ReadOnlyFunctions::default();
    let mut c = RouteCheck {
        functions: &functions,
        link,
        unnamed,
    };
    c.hold(
        tag,
        View::Whole(body),
        &ClientStatements::default(),
        in_batch,
    )
}

#[test]
fn a_replica_link_holds_later_writes_and_a_primary_link_notes_them() {
    let mut unnamed = Classification::UNKNOWN;
    let mut replica = LinkRoute::new(Node::Replica(0), true);
    assert!(!check(&mut replica, &mut unnamed, fe::QUERY, b"SELECT 1\0"));
    assert!(!check(&mut replica, &mut unnamed, fe::QUERY, b"SELECT 2\0"));
    assert!(!check(&mut replica, &mut unnamed, fe::QUERY, b"COMMIT\0"));
    assert!(check(
        &mut replica,
        &mut unnamed,
        fe::QUERY,
        b"INSERT INTO t VALUES (1)\0"
    ));
    assert_eq!(replica.held, Some(Held::Request));
    assert!(check(
        &mut replica,
        &mut unnamed,
        fe::QUERY,
        b"INSERT INTO t VALUES (1)\0"
    ));
    replica.pass_held();
    assert!(!check(
        &mut replica,
        &mut unnamed,
        fe::QUERY,
        b"INSERT INTO t VALUES (1)\0"
    ));
    assert!(
        check(&mut replica, &mut unnamed, fe::QUERY, b"DELETE FROM t\0"),
        "a pass is for one message"
    );

    let mut primary = LinkRoute::new(Node::Primary, false);
    assert!(!check(&mut primary, &mut unnamed, fe::QUERY, b"SELECT 1\0"));
    assert!(!check(&mut primary, &mut unnamed, fe::QUERY, b"BEGIN\0"));
    assert!(!check(&mut primary, &mut unnamed, fe::QUERY, b"COMMIT\0"));
    assert!(!primary.wrote, "transaction control writes nothing");
    assert!(!check(
        &mut primary,
        &mut unnamed,
        fe::QUERY,
        b"DELETE FROM t\0"
    ));
    assert!(primary.wrote);
    assert!(check(
        &mut primary,
        &mut unnamed,
        fe::QUERY,
        b"SET pgweir.route = auto\0"
    ));
    assert_eq!(primary.held, Some(Held::Setting(RouteSetting::Auto)));
}

#[test]
fn the_request_a_replica_link_was_chosen_for_is_never_held() {
    let mut unnamed = Classification::UNKNOWN;
    let mut replica = LinkRoute::new(Node::Replica(0), true);
    let write = b"/* not a hint */ INSERT INTO t VALUES (1)\0";
    assert!(!check(&mut replica, &mut unnamed, fe::QUERY, write));
}

#[test]
fn an_unnamed_parse_is_remembered_and_later_batches_wait() {
    let mut unnamed = Classification::UNKNOWN;
    let mut replica = LinkRoute::new(Node::Replica(0), true);
    assert!(!check(
        &mut replica,
        &mut unnamed,
        fe::PARSE,
        b"\0SELECT 1\0\0\0"
    ));
    assert_eq!(unnamed.verdict, Verdict::ReadOnly);
    let bind = b"\0\0\0\0\0\0\0\0";
    assert!(!check_in(&mut replica, &mut unnamed, fe::BIND, bind, true));
    assert!(
        check(&mut replica, &mut unnamed, fe::BIND, bind),
        "a new batch waits"
    );
    assert_eq!(replica.held, Some(Held::Request));
    assert!(check(
        &mut replica,
        &mut unnamed,
        fe::PARSE,
        b"\0UPDATE t SET a = 2\0\0\0"
    ));
    assert_eq!(
        unnamed.verdict,
        Verdict::ReadOnly,
        "a held Parse is not the unnamed one yet"
    );
}

#[test]
fn a_write_joining_an_open_batch_is_not_held_nor_is_a_route_setting() {
    let mut unnamed = Classification::UNKNOWN;
    let mut link = LinkRoute::new(Node::Replica(0), true);
    assert!(!check(&mut link, &mut unnamed, fe::QUERY, b"SELECT 1\0"));
    assert!(!check_in(
        &mut link,
        &mut unnamed,
        fe::QUERY,
        b"DELETE FROM t\0",
        true
    ));
    let set = b"SET pgweir.route TO primary\0";
    assert!(!check_in(&mut link, &mut unnamed, fe::QUERY, set, true));
}

#[test]
fn route_replies_are_set_or_the_failed_transaction_error() {
    let ok = route_reply(TxStatus::InTransaction);
    assert_eq!(ok[0], b'C');
    assert_eq!(&ok[ok.len() - 6..], b"Z\0\0\0\x05T");
    let failed = route_reply(TxStatus::Failed);
    assert_eq!(failed[0], b'E');
    assert!(failed.windows(5).any(|w| w == b"25P02"));
}

#[test]
fn only_small_whole_repeatable_requests_have_a_retry_window() {
    let mut b = BytesMut::new();
    parse(&mut b, "", "SELECT 1");
    bind(&mut b, "");
    msg(&mut b, fe::EXECUTE, b"\0\0\0\0\0");
    sync(&mut b);
    assert_eq!(retry_window(&b).as_deref(), Some(&b[..]));
    assert!(retry_window(&b[..b.len() - 1]).is_none(), "incomplete");
    let mut named = BytesMut::new();
    parse(&mut named, "s", "SELECT 1");
    sync(&mut named);
    assert!(
        retry_window(&named).is_none(),
        "a named Parse changes client state"
    );
    let mut big = BytesMut::new();
    query(&mut big, &"x".repeat(MAX_RETRY_REQUEST));
    assert!(retry_window(&big).is_none());
    assert!(retry_window(&[]).is_none());
}
