//! A TCP proxy that cuts connections, now or at random intervals, and partitions on demand.

use std::future::pending;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Passes bytes both ways.
    Forward,
    /// Resets every connection, open or new, at once: a peer that is down, or a firewall that
    /// rejects.
    Refuse,
    /// Accepts connections and reads what is sent, but delivers nothing either way: packets
    /// dropped on the floor, so calls hang rather than fail. Connections held in the blackhole
    /// are reset when the partition heals, as TCP resets a connection whose retransmissions
    /// ran out; what was sent into it is lost, never delivered late.
    Blackhole,
}

#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    /// Bumped by every cut: connections opened before the current value are reset.
    cuts: u64,
}

/// A proxy from a loopback port to `target`. Dropping it resets every connection it holds.
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<State>>,
    reset: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the TCP proxy to a loopback port")?;
        let addr = listener.local_addr()?;
        let (state, states) = watch::channel(State {
            mode: Mode::Forward,
            cuts: 0,
        });
        let reset = Arc::new(AtomicU64::new(0));
        let counter = reset.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of descriptors or similar: try again shortly rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, target, states.clone(), counter.clone()));
            }
        });
        Ok(TcpProxy {
            addr,
            state: Arc::new(state),
            reset,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every open connection now; new ones are served as the mode says.
    pub fn cut_all(&self) {
        self.state.send_modify(|s| s.cuts += 1);
    }

    /// Cuts every open connection again and again, at intervals drawn from `every`, until the
    /// returned guard is dropped.
    pub fn cut_randomly(&self, every: Range<Duration>) -> RandomCuts {
        let state = self.state.clone();
        RandomCuts(tokio::spawn(async move {
            loop {
                let wait = rand::random_range(every.start.as_millis()..every.end.as_millis());
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                state.send_modify(|s| s.cuts += 1);
            }
        }))
    }

    /// Partitions the client side from the target: `Mode::Refuse` or `Mode::Blackhole`.
    pub fn partition(&self, how: Mode) {
        self.state.send_modify(|s| s.mode = how);
    }

    /// Ends a partition: connections held in a blackhole are reset, new ones are forwarded.
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            if s.mode != Mode::Forward {
                s.cuts += 1;
                s.mode = Mode::Forward;
            }
        });
    }

    /// How many connections a cut, a refusal or a healed partition has reset so far.
    pub fn connections_reset(&self) -> u64 {
        self.reset.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connection tasks end when the state's sender goes: the last Arc is ours unless a
        // RandomCuts guard outlives the proxy, and that one is aborted when dropped.
    }
}

/// Stops the random cuts of [`TcpProxy::cut_randomly`] when dropped.
pub struct RandomCuts(JoinHandle<()>);

impl Drop for RandomCuts {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One client connection, for as long as the state lets it live.
async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    mut states: watch::Receiver<State>,
    reset: Arc<AtomicU64>,
) {
    let first = *states.borrow_and_update();
    let born = first.cuts;
    let mut upstream = match first.mode {
        Mode::Refuse => return abort(client, None, &reset),
        // Held without an upstream: nothing sent into a blackhole arrives anywhere.
        Mode::Blackhole => None,
        Mode::Forward => match TcpStream::connect(target).await {
            Ok(up) => {
                let _ = up.set_nodelay(true);
                Some(up)
            }
            Err(_) => return abort(client, None, &reset),
        },
    };
    loop {
        let now = *states.borrow_and_update();
        if now.cuts > born || now.mode == Mode::Refuse {
            return abort(client, upstream, &reset);
        }
        match (now.mode, upstream.as_mut()) {
            (Mode::Forward, Some(up)) => tokio::select! {
                // Either side closed or failed: the connection is over.
                _ = tokio::io::copy_bidirectional(&mut client, up) => return,
                changed = states.changed() => if changed.is_err() {
                    return abort(client, upstream, &reset);
                },
            },
            // In a blackhole (or born in one and not cut yet): read and drop both ways.
            _ => tokio::select! {
                () = drain(&mut client) => return,
                () = drain_then_wait(upstream.as_mut()) => {},
                changed = states.changed() => if changed.is_err() {
                    return abort(client, upstream, &reset);
                },
            },
        }
    }
}

/// Resets both sides (RST rather than FIN): the way a cut connection looks to its ends.
fn abort(client: TcpStream, upstream: Option<TcpStream>, reset: &AtomicU64) {
    reset.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_zero_linger();
    if let Some(up) = &upstream {
        let _ = up.set_zero_linger();
    }
}

/// Reads and discards until the peer closes.
async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn drain_then_wait(stream: Option<&mut TcpStream>) {
    if let Some(stream) = stream {
        drain(stream).await;
    }
    pending::<()>().await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// An echo server on a free loopback port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends `msg` and waits up to `within` for it to come back; `None` if it does not.
    async fn round_trip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            _ => None,
        }
    }

    /// Whether the peer closed or reset the connection within a second.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn forwards_cuts_partitions_and_heals() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut a, b"hello", SHORT).await.unwrap(), b"hello");

        proxy.cut_all();
        assert!(closed(&mut a).await, "a cut connection must end");
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut b, b"again", SHORT).await.is_some());

        // A blackhole: open and new connections stay open, nothing comes back.
        proxy.partition(Mode::Blackhole);
        assert!(round_trip(&mut b, b"lost", SHORT).await.is_none());
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut c, b"lost too", SHORT).await.is_none());

        // Healing resets what the blackhole held; what was sent into it never arrives.
        proxy.heal();
        assert!(closed(&mut b).await && closed(&mut c).await);
        let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut d, b"back", SHORT).await.unwrap(), b"back");

        proxy.partition(Mode::Refuse);
        assert!(closed(&mut d).await, "refusing resets open connections");
        let mut e = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closed(&mut e).await, "and new ones");
        assert!(proxy.connections_reset() >= 5);
    }

    #[tokio::test]
    async fn random_cuts_stop_with_their_guard() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let cuts = proxy.cut_randomly(Duration::from_millis(20)..Duration::from_millis(40));
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closed(&mut a).await, "a random cut comes within 40 ms");
        drop(cuts);
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(round_trip(&mut b, b"still here", SHORT).await.is_some());
    }
}
