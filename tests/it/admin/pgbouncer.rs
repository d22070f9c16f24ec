//! A PgBouncer operator's console habits (issue 16): SHOW CONFIG in PgBouncer's value forms,
//! the SHOW commands about PgBouncer's internals with PgBouncer 1.25's columns and types
//! (taken from PgBouncer 1.25.2's console), and `SET key = value` for what a reload can
//! change, lasting until the next reload.

use crate::common;

use common::console::{console, show, with_console, ADMIN, WATCHER};
use common::wire::Wire;
use common::{expect_sqlstate, TEST_DB};

/// PgBouncer 1.25.2's columns and type oids (23 int4, 20 int8, 25 text, 1700 numeric,
/// 17 bytea) for the commands pgweir took over from it.
fn pgbouncer_columns(what: &str) -> Vec<(String, u32)> {
    let socket = "type:25 user:25 database:25 replication:25 state:25 addr:25 port:23 \
        local_addr:25 local_port:23 connect_time:25 request_time:25 wait:23 wait_us:23 \
        close_needed:23 ptr:25 link:25 remote_pid:23 tls:25 application_name:25 \
        prepared_statements:23 id:20 recv_pos:23 pkt_pos:23 pkt_remain:23 send_pos:23 \
        send_remain:23 pkt_avail:23 send_avail:23";
    let text = match what {
        "FDS" => {
            "fd:23 task:25 user:25 database:25 addr:25 port:23 cancel:20 link:23 \
             client_encoding:25 std_strings:25 datestyle:25 timezone:25 password:25 \
             scram_client_key:17 scram_server_key:17"
        }
        "SOCKETS" | "ACTIVE_SOCKETS" => socket,
        "MEM" => "name:25 size:23 used:23 free:23 memtotal:23",
        "DNS_HOSTS" => "hostname:25 ttl:20 addrs:25",
        "DNS_ZONES" => "zonename:25 serial:20 count:23",
        "TOTALS" => "name:25 value:1700",
        "STATS_AVERAGES" => {
            "database:25 server_assignment_count:1700 xact_count:1700 query_count:1700 \
             bytes_received:1700 bytes_sent:1700 xact_time:1700 query_time:1700 \
             wait_time:1700 avg_client_parse_count:1700 avg_server_parse_count:1700 \
             avg_bind_count:1700"
        }
        "PEERS" => "peer_id:23 host:25 port:23 pool_size:23",
        other => panic!("no expectation for SHOW {other}"),
    };
    text.split_whitespace()
        .map(|c| {
            let (name, oid) = c.split_once(':').unwrap();
            (name.to_owned(), oid.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn the_internals_commands_have_pgbouncer_s_columns_and_types() {
    let pgweir = with_console().auth_type("trust").start();
    let app = pgweir.connect().await;
    app.batch_execute("SELECT 1").await.unwrap();
    app.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let (mut wire, _) = Wire::startup(pgweir.port, ADMIN.0, "pgbouncer").await;
    for what in [
        "FDS",
        "SOCKETS",
        "ACTIVE_SOCKETS",
        "MEM",
        "DNS_HOSTS",
        "DNS_ZONES",
        "TOTALS",
        "STATS_AVERAGES",
        "PEERS",
    ] {
        wire.query(&format!("SHOW {what}")).send().await;
        let msgs = wire.until_ready().await;
        assert_eq!(msgs[0].tag, b'T', "SHOW {what}: {:?}", msgs[0]);
        assert_eq!(
            msgs[0].column_types(),
            pgbouncer_columns(what),
            "SHOW {what}"
        );
    }

    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let fds = show(&admin, "SHOW FDS").await;
    let port = pgweir.port.to_string();
    assert_eq!(
        fds.get("task", "pooler", "port"),
        Some(port),
        "the listener"
    );
    let active = show(&admin, "SHOW ACTIVE_SOCKETS").await;
    let states: Vec<_> = active.rows.iter().map(|r| r[4].clone().unwrap()).collect();
    assert_eq!(
        states,
        ["cl_active", "sv_active"],
        "the open transaction's two ends"
    );
    let sockets = show(&admin, "SHOW SOCKETS").await;
    assert!(sockets.rows.len() > active.rows.len(), "idle ones too");
    let totals = show(&admin, "SHOW TOTALS").await;
    let xacts = totals.get("name", "total_xact_count", "value");
    assert!(xacts.is_some_and(|n| n.parse::<u64>().unwrap() >= 1));
    assert_eq!(totals.rows.len(), 22);
    let mem = show(&admin, "SHOW MEM").await;
    let resident = mem.get("name", "resident", "memtotal").unwrap();
    assert!(
        resident.parse::<i64>().unwrap() > 1 << 20,
        "{resident} bytes"
    );
    for empty in ["SHOW DNS_HOSTS", "SHOW DNS_ZONES", "SHOW PEERS"] {
        assert!(show(&admin, empty).await.rows.is_empty(), "{empty}");
    }
}

#[tokio::test]
async fn show_config_speaks_pgbouncer_s_forms_where_pgbouncer_has_the_key() {
    let pgweir = with_console()
        .pool("query_wait_timeout = \"1500ms\"")
        .start();
    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let config = show(&admin, "SHOW CONFIG").await;
    let value = |key: &str| config.get("key", key, "value").unwrap();
    assert_eq!(value("query_wait_timeout"), "1.5");
    assert_eq!(value("server_idle_timeout"), "600");
    assert_eq!(
        config.get("key", "server_idle_timeout", "default").unwrap(),
        "600"
    );
    assert_eq!(value("log_connections"), "1");
    assert_eq!(
        value("replica_ban_time"),
        "30s",
        "pgweir's own key, pgweir's form"
    );
}

#[tokio::test]
async fn set_changes_what_a_reload_can_until_the_next_reload() {
    let pgweir = with_console().start();
    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let value =
        |config: &common::console::Shown, key: &str| config.get("key", key, "value").unwrap();
    admin
        .simple_query("SET default_pool_size = 7")
        .await
        .expect("SET default_pool_size");
    admin
        .simple_query("set query_wait_timeout to '2.5';")
        .await
        .expect("SET query_wait_timeout");
    admin
        .simple_query("SET shutdown_timeout = '45s'")
        .await
        .expect("SET of pgweir's own key");
    let config = show(&admin, "SHOW CONFIG").await;
    assert_eq!(value(&config, "default_pool_size"), "7");
    assert_eq!(value(&config, "query_wait_timeout"), "2.5");
    assert_eq!(value(&config, "shutdown_timeout"), "45s");
    let databases = show(&admin, "SHOW DATABASES").await;
    assert_eq!(
        databases.get("name", TEST_DB, "pool_size").as_deref(),
        Some("7")
    );

    let refused = |sql: &'static str| {
        let admin = &admin;
        async move { expect_sqlstate(admin.simple_query(sql).await, sql) }
    };
    assert_eq!(refused("SET listen_port = 1").await.code(), "55P02");
    assert_eq!(refused("SET nosuch = 1").await.code(), "42704");
    assert_eq!(
        refused("SET default_pool_size = many").await.code(),
        "22023"
    );
    assert_eq!(
        refused("SET server_tls_sslmode = 'bogus'").await.code(),
        "22023"
    );
    assert_eq!(refused("SET pool_mode = 'session'").await.code(), "55P02");
    let config = show(&admin, "SHOW CONFIG").await;
    assert_eq!(
        value(&config, "default_pool_size"),
        "7",
        "a refused SET changes nothing"
    );

    let watcher = console(&pgweir, WATCHER, "pgbouncer").await;
    let denied = expect_sqlstate(
        watcher.simple_query("SET default_pool_size = 9").await,
        "SET",
    );
    assert_eq!(denied.code(), "42501");

    admin.simple_query("RELOAD").await.expect("RELOAD");
    let config = show(&admin, "SHOW CONFIG").await;
    assert_eq!(
        value(&config, "default_pool_size"),
        "2",
        "the file's value again"
    );
    assert_eq!(value(&config, "query_wait_timeout"), "120");
}

/// A Query without its terminating NUL is refused as Postgres refuses it, not run.
#[tokio::test]
async fn a_query_without_its_nul_is_a_protocol_violation() {
    let pgweir = with_console().auth_type("trust").start();
    for (body, expected) in [
        (&b"SHOW POOLS"[..], "invalid string in message"),
        (&b"SHOW\0POOLS\0"[..], "invalid message format"),
    ] {
        let (mut wire, _) = Wire::startup(pgweir.port, ADMIN.0, "pgbouncer").await;
        let mut message = vec![b'Q'];
        message.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
        message.extend_from_slice(body);
        wire.raw(&message).send().await;
        let reply = wire.recv().await;
        assert_eq!(reply.tag, b'E', "{reply:?}");
        assert_eq!(reply.sqlstate().as_deref(), Some("08P01"));
        assert_eq!(reply.message().as_deref(), Some(expected));
    }
}
