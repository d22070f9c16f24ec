//! PgBouncer's TCP settings, for client and server sockets alike: keepalive probes so a
//! peer behind a network that went silent is noticed (the kernel's default waits two hours
//! before the first probe), and `tcp_user_timeout` so data a peer never acknowledges fails
//! the connection instead of being retransmitted for a quarter of an hour. Zero leaves a
//! value to the operating system, as in PgBouncer; pgweir's defaults notice a dead peer
//! within about two minutes. The keys are read as [`super::table`] lists them.

use std::time::Duration;

/// The TCP options pgweir sets on every client and server socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSettings {
    pub keepalive: bool,
    /// Idle time before the first probe.
    pub keepidle: Duration,
    /// Time between probes.
    pub keepintvl: Duration,
    /// Unanswered probes before the connection is dropped.
    pub keepcnt: u32,
    /// How long sent data may stay unacknowledged.
    pub user_timeout: Duration,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            keepalive: true,
            keepidle: Duration::from_secs(60),
            keepintvl: Duration::from_secs(10),
            keepcnt: 6,
            // No shorter than the keepalives' 60 + 6 x 10 s: on Linux a user timeout also
            // ends keepalive probing, and a shorter one drops an idle connection whose
            // first probe alone went unanswered (a saturated loopback loses some).
            user_timeout: Duration::from_secs(120),
        }
    }
}
