//! A TCP relay between pgweir and the test cluster that a test can make misbehave: pass
//! bytes on, hold them (stall), pass them late (delay) or a byte at a time (trickle), or
//! break every connection with a reset, mid-message if bytes are in flight.
//!
//! A relay in user space still acknowledges every packet, so a network that silently
//! drops them (a black hole) comes from the kernel: [`BlackHole`] adds a `blackhole`
//! route for the relay's own loopback address, and the packets pgweir sends it vanish
//! with nobody answering, until the route goes. That needs root and `ip` (iproute2).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::cluster;

/// What the relay does to the bytes it carries, from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Holds every byte (read, not passed on) until the fault changes.
    Stall,
    /// Passes each chunk after this long.
    Delay(Duration),
    /// Passes one byte at a time.
    Trickle,
    /// Resets every open connection; new ones are refused while it lasts.
    Reset,
}

/// A relay to the test cluster on a port of its own.
pub struct FaultProxy {
    pub ip: Ipv4Addr,
    pub port: u16,
    fault: Arc<watch::Sender<Fault>>,
}

impl FaultProxy {
    pub async fn start() -> FaultProxy {
        FaultProxy::start_on(Ipv4Addr::LOCALHOST).await
    }

    /// A relay on a loopback address of its own, which a [`BlackHole`] can cut off
    /// without touching anything else on the machine.
    pub async fn start_alone() -> FaultProxy {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let pid = std::process::id();
        let ip = Ipv4Addr::new(
            127,
            77,
            (pid % 250) as u8,
            NEXT.fetch_add(1, Ordering::Relaxed),
        );
        FaultProxy::start_on(ip).await
    }

    async fn start_on(ip: Ipv4Addr) -> FaultProxy {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind the relay");
        let port = listener.local_addr().unwrap().port();
        let (tx, _) = watch::channel(Fault::Pass);
        let fault = Arc::new(tx);
        let shared = Arc::clone(&fault);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = shared.subscribe();
                if *rx.borrow() == Fault::Reset {
                    reset(client);
                    continue;
                }
                tokio::spawn(relay(client, rx));
            }
        });
        FaultProxy { ip, port, fault }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

/// Closes with a reset, not a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn relay(client: TcpStream, rx: watch::Receiver<Fault>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", cluster().port)).await else {
        return;
    };
    // Every close is a reset: a Reset fault drops both pumps, and with them the sockets.
    for s in [&client, &server] {
        let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, rx.clone()));
    let down = tokio::spawn(pump(sr, cw, rx));
    let _ = tokio::join!(up, down);
}

/// Carries one direction, as the fault says, until either end closes or a Reset.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Fault>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = rx.changed() => {
                if *rx.borrow() == Fault::Reset {
                    return;
                }
                continue;
            }
        };
        loop {
            let fault = *rx.borrow_and_update();
            match fault {
                Fault::Pass => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Fault::Trickle => {
                    for b in &buf[..n] {
                        if to.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Fault::Stall => {
                    if rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Fault::Reset => return,
            }
            break;
        }
    }
}

/// Packets to one loopback address are dropped by the kernel, unanswered, while this
/// lives: a network that died without a reset.
pub struct BlackHole {
    route: String,
}

impl BlackHole {
    pub fn swallow(ip: Ipv4Addr) -> BlackHole {
        let route = format!("{ip}/32");
        ip_route("add", &route);
        BlackHole { route }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        ip_route("del", &self.route);
    }
}

/// `ip route ADD|DEL blackhole ROUTE table local`: in the local table, the /32 outranks
/// the 127.0.0.0/8 that makes the address local.
fn ip_route(verb: &str, route: &str) {
    let out = Command::new("ip")
        .args(["route", verb, "blackhole", route, "table", "local"])
        .output()
        .unwrap_or_else(|e| {
            panic!("running `ip` failed ({e}): the black-hole tests need iproute2 (apt-get install iproute2)")
        });
    assert!(
        out.status.success(),
        "ip route {verb} blackhole {route} failed: {} (the black-hole tests need root, as CI runs)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
