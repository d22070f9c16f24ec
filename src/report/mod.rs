//! What pgweir reports about itself from its counters and the live state of its pools
//! and clients: the Prometheus endpoint ([`exporter`], its gauges merged by [`gauges`]) and
//! the stats period's log lines ([`period`]). Above the [`crate::app::App`] it reads from;
//! the counters themselves are [`crate::stats`]'s.

pub mod exporter;
pub mod gauges;
pub mod period;
