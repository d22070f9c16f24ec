//! The admin console (issue 6): the virtual databases `pgweir` and `pgbouncer` answer
//! PgBouncer's SHOW commands with PgBouncer's columns, in its order and with its types;
//! the values follow the traffic the test ran; admin users may run everything, stats users
//! only SHOW, other users nothing; the extended protocol is refused without losing the
//! connection; SHOW CONFIG never shows a password; psql works as the console client.
//! SHOW STATS's `avg_*` cover the last `stats_period`, and SHOW CLIENTS shows how long a
//! waiting client has waited.

use crate::common;

use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use common::console::{console, show, with_console, ADMIN, WATCHER};
use common::routing::{auto_routing, eventually, until_reads_on_replica};
use common::wire::{tags, Msg, Wire};
use common::{cluster, expect_sqlstate, pg_tool, run_tool, within, SCRAM_USER, TEST_DB};

/// PgBouncer's columns for each SHOW, plus pgweir's `node` where it says so.
fn expected_columns(what: &str) -> Vec<&'static str> {
    const SOCKET: &str = "type user database replication state addr port local_addr \
        local_port connect_time request_time wait wait_us close_needed ptr link remote_pid \
        tls application_name prepared_statements id";
    let words = match what {
        "POOLS" => {
            "database user cl_active cl_waiting cl_active_cancel_req \
            cl_waiting_cancel_req sv_active sv_active_cancel sv_being_canceled sv_idle sv_used \
            sv_tested sv_login maxwait maxwait_us pool_mode load_balance_hosts node sv_refused"
        }
        "STATS" => {
            "database total_server_assignment_count total_xact_count total_query_count \
            total_received total_sent total_xact_time total_query_time total_wait_time \
            total_client_parse_count total_server_parse_count total_bind_count \
            avg_server_assignment_count avg_xact_count avg_query_count avg_recv avg_sent \
            avg_xact_time avg_query_time avg_wait_time avg_client_parse_count \
            avg_server_parse_count avg_bind_count total_requests"
        }
        "STATS_TOTALS" => {
            "database server_assignment_count xact_count query_count \
            bytes_received bytes_sent xact_time query_time wait_time client_parse_count \
            server_parse_count bind_count"
        }
        "CLIENTS" => SOCKET,
        "SERVERS" => concat!(
            "type user database replication state addr port local_addr local_port ",
            "connect_time request_time wait wait_us close_needed ptr link remote_pid tls ",
            "application_name prepared_statements id node",
        ),
        "DATABASES" => {
            "name host port database force_user pool_size min_pool_size \
            reserve_pool server_lifetime pool_mode load_balance_hosts max_connections \
            current_connections max_client_connections current_client_connections paused \
            disabled"
        }
        "USERS" => {
            "name pool_size reserve_pool_size pool_mode max_user_connections \
            current_connections max_user_client_connections current_client_connections"
        }
        "CONFIG" => "key value default changeable",
        "LISTS" => "list items",
        "STATE" => "key value",
        "VERSION" => "version",
        other => panic!("no expectation for SHOW {other}"),
    };
    words.split_whitespace().collect()
}

const SHOWS: [&str; 11] = [
    "POOLS",
    "STATS",
    "STATS_TOTALS",
    "CLIENTS",
    "SERVERS",
    "DATABASES",
    "USERS",
    "CONFIG",
    "LISTS",
    "STATE",
    "VERSION",
];

#[tokio::test]
async fn every_show_has_pgbouncers_columns_in_order() {
    let pgweir = with_console().start();
    let app = pgweir.connect().await;
    app.simple_query("SELECT 1").await.unwrap();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    for what in SHOWS {
        let shown = show(&admin, &format!("SHOW {what}")).await;
        assert_eq!(shown.columns, expected_columns(what), "SHOW {what}");
        for row in &shown.rows {
            assert_eq!(row.len(), shown.columns.len(), "SHOW {what}: {row:?}");
        }
        assert!(!shown.rows.is_empty(), "SHOW {what} has rows after traffic");
    }
    let lower = show(&admin, "show servers;").await;
    assert_eq!(lower.columns, expected_columns("SERVERS"));
    let help = admin.simple_query("SHOW HELP").await.unwrap();
    assert!(
        matches!(help.as_slice(), [SimpleQueryMessage::CommandComplete(0)]),
        "SHOW HELP is a notice and no rows: {help:?}"
    );
}

#[tokio::test]
async fn values_follow_the_traffic() {
    let pgweir = with_console().start();
    let app = pgweir.connect().await;
    for _ in 0..5 {
        app.simple_query("SELECT 1").await.unwrap();
    }
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute("SELECT 2").await.unwrap();
    app.batch_execute("COMMIT").await.unwrap();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    // Six transactions of eight queries; the relay counts each when its ReadyForQuery
    // passes, which may be a moment after the client saw it.
    eventually("SHOW STATS counts the transactions run", || async {
        let stats = show(&admin, "SHOW STATS").await;
        stats
            .get("database", TEST_DB, "total_xact_count")
            .as_deref()
            == Some("6")
            && stats
                .get("database", TEST_DB, "total_query_count")
                .as_deref()
                == Some("8")
    })
    .await;
    let stats = show(&admin, "SHOW STATS").await;
    let number = |col: &str| -> u64 {
        stats
            .get("database", TEST_DB, col)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(number("total_received") > 0 && number("total_sent") > 0);
    assert!(number("total_server_assignment_count") >= 6);
    assert_eq!(
        number("avg_xact_count"),
        0,
        "the first stats_period (60 s) has not ended"
    );
    let totals = show(&admin, "SHOW STATS_TOTALS").await;
    assert_eq!(
        totals.get("database", TEST_DB, "xact_count").as_deref(),
        Some("6")
    );

    app.batch_execute("BEGIN").await.unwrap();
    let pid = common::try_backend_pid(&app).await.unwrap();
    let pools = show(&admin, "SHOW POOLS").await;
    let pool = |col: &str| pools.get("database", TEST_DB, col);
    assert_eq!(pool("user").as_deref(), Some(SCRAM_USER.name));
    assert_eq!(pool("cl_active").as_deref(), Some("1"));
    assert_eq!(pool("cl_waiting").as_deref(), Some("0"));
    assert_eq!(pool("sv_active").as_deref(), Some("1"));
    assert_eq!(pool("pool_mode").as_deref(), Some("transaction"));
    assert_eq!(pool("node").as_deref(), Some("primary"));
    let servers = show(&admin, "SHOW SERVERS").await;
    let pid = pid.to_string();
    assert_eq!(
        servers.get("remote_pid", &pid, "state").as_deref(),
        Some("active")
    );
    assert_eq!(
        servers.get("remote_pid", &pid, "database").as_deref(),
        Some(TEST_DB)
    );
    assert_eq!(
        servers.get("remote_pid", &pid, "type").as_deref(),
        Some("S")
    );
    let port = cluster().port.to_string();
    assert_eq!(servers.get("remote_pid", &pid, "port"), Some(port));
    let clients = show(&admin, "SHOW CLIENTS").await;
    let app_row = clients.rows_where("database", TEST_DB);
    assert_eq!(app_row.len(), 1, "{:?}", clients.rows);
    assert_eq!(
        app_row[0][clients.index("state")].as_deref(),
        Some("active")
    );
    assert_eq!(
        clients.rows_where("user", ADMIN.0).len(),
        1,
        "the console client itself"
    );

    app.batch_execute("COMMIT").await.unwrap();
    eventually("the server goes back to the pool", || async {
        let pools = show(&admin, "SHOW POOLS").await;
        pools.get("database", TEST_DB, "sv_active").as_deref() == Some("0")
    })
    .await;
    let servers = show(&admin, "SHOW SERVERS").await;
    assert_eq!(
        servers.get("remote_pid", &pid, "state").as_deref(),
        Some("idle")
    );
    assert!(servers.get("remote_pid", &pid, "local_port").is_some());
    let clients = show(&admin, "SHOW CLIENTS").await;
    let app_row = clients.rows_where("database", TEST_DB);
    assert_eq!(app_row[0][clients.index("state")].as_deref(), Some("idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn averages_cover_the_last_stats_period_and_a_waiting_client_shows_its_wait() {
    let pgweir = with_console()
        .pool_size(1)
        .general("stats_period = \"1s\"")
        .start();
    let app = pgweir.connect().await;
    // Named statements: a Parse and then a Bind each time.
    let select = app.prepare("SELECT $1::int").await.unwrap();
    for i in 0..20 {
        app.query_one(&select, &[&i]).await.unwrap();
    }
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let number = |stats: &common::console::Shown, col: &str| -> u64 {
        let v = stats.get("database", TEST_DB, col).unwrap();
        v.parse().unwrap_or_else(|_| panic!("{col} = {v}"))
    };
    // Averages change once a second: look at the one answer that showed the busy period.
    let stats = within(10, "a stats period with the transactions ends", async {
        loop {
            let stats = show(&admin, "SHOW STATS").await;
            if number(&stats, "avg_xact_count") > 0 {
                return stats;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    for col in [
        "avg_server_assignment_count",
        "avg_query_count",
        "avg_recv",
        "avg_sent",
        "avg_xact_time",
        "avg_query_time",
        "avg_bind_count",
    ] {
        assert!(number(&stats, col) > 0, "{col}: {:?}", stats.rows);
    }
    assert!(number(&stats, "total_client_parse_count") >= 1);
    assert!(number(&stats, "total_server_parse_count") >= 1);
    assert!(number(&stats, "total_bind_count") >= 20);
    // The next period had no traffic: its averages are 0 again.
    eventually("an idle stats period ends", || async {
        let stats = show(&admin, "SHOW STATS").await;
        number(&stats, "avg_xact_count") == 0 && number(&stats, "avg_xact_time") == 0
    })
    .await;

    app.batch_execute("BEGIN").await.unwrap();
    let waiter = pgweir.connect().await;
    let waiting = tokio::spawn(async move { waiter.batch_execute("SELECT 1").await });
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let clients = show(&admin, "SHOW CLIENTS").await;
    let rows = clients.rows_where("state", "waiting");
    assert_eq!(rows.len(), 1, "{:?}", clients.rows);
    let col = |name: &str| rows[0][clients.index(name)].clone().unwrap();
    assert!(col("wait").parse::<u32>().unwrap() >= 1, "{:?}", rows[0]);
    assert!(col("wait_us").parse::<u32>().unwrap() < 1_000_000);
    assert!(col("request_time") >= col("connect_time"), "{:?}", rows[0]);
    app.batch_execute("COMMIT").await.unwrap();
    within(10, "the waiter", waiting).await.unwrap().unwrap();
    let clients = show(&admin, "SHOW CLIENTS").await;
    for row in clients.rows_where("database", TEST_DB) {
        assert_eq!(row[clients.index("wait")].as_deref(), Some("0"));
    }
}

#[tokio::test]
async fn databases_users_lists_and_state_describe_the_setup() {
    let pgweir = with_console().pool_size(3).start();
    let app = pgweir.connect().await;
    app.simple_query("SELECT 1").await.unwrap();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let dbs = show(&admin, "SHOW DATABASES").await;
    let db = |col: &str| dbs.get("name", TEST_DB, col);
    assert_eq!(db("host").as_deref(), Some("127.0.0.1"));
    assert_eq!(db("port"), Some(cluster().port.to_string()));
    assert_eq!(db("pool_size").as_deref(), Some("3"));
    assert_eq!(db("force_user"), None);
    assert_eq!(db("current_client_connections").as_deref(), Some("1"));
    assert_ne!(db("current_connections").as_deref(), Some("0"));
    let users = show(&admin, "SHOW USERS").await;
    let user = |col: &str| users.get("name", SCRAM_USER.name, col);
    assert_eq!(user("pool_size"), None, "no per-user override");
    assert_eq!(user("current_client_connections").as_deref(), Some("1"));
    assert_eq!(
        users.get("name", ADMIN.0, "current_connections").as_deref(),
        Some("0")
    );
    let lists = show(&admin, "SHOW LISTS").await;
    assert_eq!(
        lists.get("list", "databases", "items").as_deref(),
        Some("1")
    );
    assert_eq!(lists.get("list", "users", "items").as_deref(), Some("6"));
    assert_eq!(
        lists.get("list", "used_clients", "items").as_deref(),
        Some("2")
    );
    let state = show(&admin, "SHOW STATE").await;
    assert_eq!(state.get("key", "active", "value").as_deref(), Some("yes"));
    assert_eq!(state.get("key", "paused", "value").as_deref(), Some("no"));
    let version = show(&admin, "SHOW VERSION").await;
    let version = version.rows[0][0].clone().unwrap();
    assert!(version.starts_with("pgweir "), "{version}");
}

#[tokio::test]
async fn show_config_lists_every_key_and_no_password() {
    let pgweir = with_console().start();
    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let config = show(&admin, "SHOW CONFIG").await;
    let port = pgweir.port.to_string();
    let row = |key: &str| -> Vec<String> {
        let rows = config.rows_where("key", key);
        assert_eq!(rows.len(), 1, "one row for {key}: {:?}", config.rows);
        rows[0]
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(row("listen_port"), ["listen_port", &port, "6432", "no"]);
    assert_eq!(row("default_pool_size")[1..], ["2", "20", "yes"]);
    assert_eq!(row("admin_users")[1..], [ADMIN.0, "", "yes"]);
    assert_eq!(row("query_wait_timeout")[1..], ["120", "120", "yes"]);
    assert!(config.rows.len() >= 39, "every [pgweir] and [pool] key");
    for r in &config.rows {
        let changeable = r[3].as_deref();
        assert!(matches!(changeable, Some("yes" | "no")), "{r:?}");
    }
    // No SHOW answer anywhere carries a configured password.
    let passwords = [ADMIN.1, WATCHER.1, SCRAM_USER.password];
    for what in SHOWS {
        let shown = show(&admin, &format!("SHOW {what}")).await;
        let text = format!("{:?}", shown.rows);
        for pw in passwords {
            assert!(!text.contains(pw), "SHOW {what} shows a password");
        }
    }
}

#[tokio::test]
async fn stats_users_may_only_show_and_other_users_are_refused() {
    let pgweir = with_console().start();
    let watcher = console(&pgweir, WATCHER, "pgweir").await;
    show(&watcher, "SHOW POOLS").await;
    for command in ["PAUSE", "RELOAD", "KILL_CLIENT 1", "SHUTDOWN"] {
        let refused = watcher.simple_query(command).await;
        assert_eq!(
            expect_sqlstate(refused, command),
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{command} as a stats user"
        );
    }
    let garbage = watcher.simple_query("SHOW nonsense").await;
    assert_eq!(
        expect_sqlstate(garbage, "SHOW nonsense"),
        SqlState::SYNTAX_ERROR
    );
    show(&watcher, "SHOW VERSION").await;

    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let suspend = admin.simple_query("SUSPEND").await;
    assert_eq!(
        expect_sqlstate(suspend, "SUSPEND as admin"),
        SqlState::FEATURE_NOT_SUPPORTED
    );
    assert!(
        admin.simple_query("").await.is_ok(),
        "an empty query is answered"
    );

    let app = pgweir
        .try_connect(SCRAM_USER.name, SCRAM_USER.password, "pgweir")
        .await;
    let err = app.expect_err("a user in neither list is refused");
    let db = err.as_db_error().expect("a FATAL from pgweir");
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    assert!(db.message().contains("not allowed"), "{}", db.message());
    let wrong = pgweir.try_connect(ADMIN.0, "wrong", "pgbouncer").await;
    assert_eq!(
        expect_sqlstate(wrong, "wrong password"),
        SqlState::INVALID_PASSWORD
    );
}

/// The column types a RowDescription declares, by name.
#[tokio::test]
async fn types_are_pgbouncers_and_the_extended_protocol_is_refused_cleanly() {
    let pgweir = with_console().auth_type("trust").start();
    let (mut wire, login) = Wire::startup(pgweir.port, ADMIN.0, "pgweir").await;
    let version = login.iter().filter(|m| m.tag == b'S').map(Msg::parameter);
    assert!(version
        .into_iter()
        .any(|(k, v)| k == "server_version" && v.ends_with("/pgweir")));
    let mut types = Vec::new();
    for what in ["SHOW POOLS", "SHOW STATS", "SHOW CLIENTS", "SHOW CONFIG"] {
        wire.query(what).send().await;
        let msgs = wire.until_ready().await;
        types.extend(msgs[0].column_types());
    }
    for (name, oid) in [
        ("cl_active", 23),
        ("pool_mode", 25),
        ("total_xact_count", 1700),
        ("connect_time", 25),
        ("port", 23),
        ("id", 20),
        ("changeable", 25),
    ] {
        let declared = types.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
        assert_eq!(declared, Some(oid), "type of {name}");
    }

    wire.parse("", "SHOW POOLS")
        .bind("", "")
        .describe(b'P', "")
        .execute("")
        .sync();
    wire.send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(tags(&msgs), "EZ", "one error, then skipped to the Sync");
    assert_eq!(msgs[0].sqlstate().as_deref(), Some("0A000"));
    assert!(msgs[0].message().unwrap().contains("simple query protocol"));
    wire.query("SHOW VERSION").send().await;
    assert_eq!(
        tags(&wire.until_ready().await),
        "TDCZ",
        "the connection still works"
    );

    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let prepared = admin.query("SHOW POOLS", &[]).await;
    assert_eq!(
        expect_sqlstate(prepared, "extended SHOW"),
        SqlState::FEATURE_NOT_SUPPORTED
    );
    show(&admin, "SHOW POOLS").await;
}

#[tokio::test]
async fn psql_is_a_console_client() {
    let pgweir = with_console().start();
    let psql = |db: &str, sql: &str| {
        let mut cmd = pg_tool("psql", ADMIN.1);
        cmd.args([
            "-X",
            "-A",
            "-h",
            "127.0.0.1",
            "-p",
            &pgweir.port.to_string(),
        ])
        .args(["-U", ADMIN.0, "-d", db, "-c", sql]);
        run_tool(cmd)
    };
    for db in ["pgweir", "pgbouncer"] {
        let out = psql(db, "SHOW POOLS").await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("database|user|cl_active|cl_waiting|"),
            "{stdout}"
        );
    }
    let help = psql("pgweir", "SHOW HELP").await;
    assert!(help.status.success());
    let stderr = String::from_utf8_lossy(&help.stderr);
    assert!(
        stderr.contains("Console usage") && stderr.contains("SHOW STATS"),
        "{stderr}"
    );
    let suspend = psql("pgweir", "SUSPEND").await;
    assert!(!suspend.status.success());
    assert!(String::from_utf8_lossy(&suspend.stderr).contains("not supported"));
    let mut refused = pg_tool("psql", SCRAM_USER.password);
    refused
        .args(["-X", "-h", "127.0.0.1", "-p", &pgweir.port.to_string()])
        .args(["-U", SCRAM_USER.name, "-d", "pgweir", "-c", "SHOW POOLS"]);
    let refused = run_tool(refused).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not allowed"));
}

#[tokio::test]
async fn a_database_with_a_replica_has_a_row_per_node() {
    let replica = common::routing::replica().await;
    let pgweir = auto_routing(&[replica])
        .user(ADMIN.0, ADMIN.1)
        .general(&format!("admin_users = [\"{}\"]", ADMIN.0))
        .start();
    let app = pgweir.connect().await;
    until_reads_on_replica(&app, "a read on the replica").await;
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let pools = show(&admin, "SHOW POOLS").await;
    let on_replica_db = format!("{TEST_DB}/replica0");
    let node_of = |db: &str| {
        let rows = pools.rows_where("database", db);
        let nodes: Vec<_> = rows
            .iter()
            .map(|r| r[pools.index("node")].clone())
            .collect();
        nodes
    };
    assert_eq!(node_of(TEST_DB), [Some("primary".to_owned())]);
    assert_eq!(node_of(&on_replica_db), [Some("replica0".to_owned())]);
    let databases = show(&admin, "SHOW DATABASES").await;
    let replica_port = databases.get("name", &on_replica_db, "port");
    assert_eq!(replica_port, Some(replica.port.to_string()));
    let servers = show(&admin, "SHOW SERVERS").await;
    let on_replica = servers.rows_where("node", "replica0");
    assert_eq!(
        on_replica[0][servers.index("database")],
        Some(on_replica_db)
    );
    assert!(
        !on_replica.is_empty(),
        "the replica's server: {:?}",
        servers.rows
    );
    let port = on_replica[0][servers.index("port")].clone().unwrap();
    assert_eq!(port, replica.port.to_string());
}
