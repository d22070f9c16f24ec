//! pgweir's integration tests, all in one test binary: `cargo test` builds it (and the
//! `pgweir` binary it runs) once and runs every test in one process.
//!
//! The tests share one throwaway PostgreSQL 15 cluster ([`common::cluster()`]). A test
//! that would disturb it (stopping Postgres, turning on TLS, changing a shared role,
//! cloning replicas) uses a cluster of its own instead ([`common::LazyCluster`]); see
//! `common/mod.rs` for which and why.

mod admin;
mod auth;
mod cancel_race;
mod chaos;
mod cli;
mod client_limits;
mod common;
mod convert;
mod copy;
mod deploy;
mod drivers;
mod exporter;
mod faults;
mod first_hour;
mod fleet;
mod fuzz;
mod harness;
mod hostile;
mod leak;
mod limits;
mod logging;
mod metrics;
mod overrides;
mod pooling;
mod prepared;
mod protocol;
mod relay;
mod reload;
mod replica;
mod restart;
mod reuseport;
mod safety;
mod session_state;
mod shutdown;
mod sizing;
mod startup;
mod takeover;
mod timeouts;
mod tls;
mod unix_socket;
