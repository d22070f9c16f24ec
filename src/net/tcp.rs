//! The TCP options of `[pgweir]`'s `tcp_*` keys, set on every client and server socket as
//! it is accepted or connected ([`crate::config::TcpSettings`] says why).

use std::io;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::TcpSettings;

/// Sets keepalive and the user timeout on `tcp`; zero values keep the system's.
pub fn tune(tcp: &TcpStream, t: &TcpSettings) -> io::Result<()> {
    let sock = SockRef::from(tcp);
    sock.set_keepalive(t.keepalive)?;
    if t.keepalive {
        let mut keepalive = TcpKeepalive::new();
        if !t.keepidle.is_zero() {
            keepalive = keepalive.with_time(t.keepidle);
        }
        if !t.keepintvl.is_zero() {
            keepalive = keepalive.with_interval(t.keepintvl);
        }
        if t.keepcnt > 0 {
            keepalive = keepalive.with_retries(t.keepcnt);
        }
        sock.set_tcp_keepalive(&keepalive)?;
    }
    if !t.user_timeout.is_zero() {
        sock.set_tcp_user_timeout(Some(t.user_timeout))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_socket_gets_the_settings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let t = TcpSettings {
            keepalive: true,
            keepidle: Duration::from_secs(7),
            keepintvl: Duration::from_secs(3),
            keepcnt: 4,
            user_timeout: Duration::from_millis(2500),
        };
        tune(&tcp, &t).unwrap();
        let sock = SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(2500))
        );
    }
}
