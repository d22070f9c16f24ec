//! The streaming-replica harness the read-routing work builds on: a replica cloned from
//! the replica tests' primary is in recovery, replays what the primary commits, honours an
//! apply delay, and can be stopped and started again.

use crate::common;

use std::time::{Duration, Instant};

use common::routing::primary;
use common::{connect, direct_config, within, SCRAM_USER, TEST_DB};

#[tokio::test]
async fn a_replica_streams_the_primarys_writes() {
    let primary = primary();
    let admin = primary.admin_on(TEST_DB).await;
    admin
        .batch_execute("CREATE TABLE harness_rows (id int); GRANT ALL ON harness_rows TO PUBLIC")
        .await
        .unwrap();
    let replica = primary.replica("").await;
    let on_replica = connect(&direct_config(replica.port, &SCRAM_USER, TEST_DB))
        .await
        .unwrap();
    let row = on_replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the replica is a standby");

    admin
        .execute("INSERT INTO harness_rows VALUES (1)", &[])
        .await
        .unwrap();
    replica.wait_caught_up(primary).await;
    let count: i64 = on_replica
        .query_one("SELECT count(*) FROM harness_rows", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    primary.replica_ctl(&replica, "stop");
    assert!(connect(&direct_config(replica.port, &SCRAM_USER, TEST_DB))
        .await
        .is_err());
    primary.replica_ctl(&replica, "start");
    within(30, "the replica back", replica.wait_caught_up(primary)).await;
}

#[tokio::test]
async fn an_apply_delay_holds_back_what_the_replica_shows() {
    let primary = primary();
    let admin = primary.admin_on(TEST_DB).await;
    admin
        .batch_execute("CREATE TABLE delayed_rows (id int); GRANT ALL ON delayed_rows TO PUBLIC")
        .await
        .unwrap();
    let replica = primary.replica("recovery_min_apply_delay = '300ms'").await;
    let on_replica = connect(&direct_config(replica.port, &SCRAM_USER, TEST_DB))
        .await
        .unwrap();
    admin
        .execute("INSERT INTO delayed_rows VALUES (1)", &[])
        .await
        .unwrap();
    let written = Instant::now();
    let first: i64 = on_replica
        .query_one("SELECT count(*) FROM delayed_rows", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, 0, "a fresh write is not on the delayed replica yet");
    loop {
        let n: i64 = on_replica
            .query_one("SELECT count(*) FROM delayed_rows", &[])
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "never replayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(written.elapsed() >= Duration::from_millis(250));
}
