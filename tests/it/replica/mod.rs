//! Streaming replicas and read routing (issue 5): the harness, routing, freshness,
//! failover and edge cases. Every replica is cloned from [`crate::common::routing::primary`],
//! a cluster of their own, so the shared cluster is never a replication source.

mod edges;
mod failover;
mod freshness;
mod harness;
mod routing;
