//! A fault-injecting TCP proxy for tests: listens on 127.0.0.1, forwards to
//! one upstream address, and on command adds latency per direction, resets
//! every connection, or swallows all traffic (a black hole).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Which way bytes travel through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server (commands).
    ToServer,
    /// From the server to the client (replies).
    ToClient,
}

/// The proxy. Dropping it stops accepting and resets every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    accepting: JoinHandle<()>,
}

/// The switches, shared with every connection.
struct Faults {
    upstream: SocketAddr,
    latency_to_server_ms: AtomicU64,
    latency_to_client_ms: AtomicU64,
    black_hole: AtomicBool,
    reset_on_next_command: AtomicBool,
    reset_after_next_command: AtomicBool,
    /// Set while replies are dropped (between a command that went through
    /// and the reset that follows it).
    swallow_replies: AtomicBool,
    /// Bumped to reset every open connection.
    resets: watch::Sender<u64>,
    accepted: AtomicU64,
    forwarded_to_server: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| fail!("proxy cannot listen: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| fail!("proxy has no address: {err}"));
        let faults = Arc::new(Faults {
            upstream,
            latency_to_server_ms: AtomicU64::new(0),
            latency_to_client_ms: AtomicU64::new(0),
            black_hole: AtomicBool::new(false),
            reset_on_next_command: AtomicBool::new(false),
            reset_after_next_command: AtomicBool::new(false),
            swallow_replies: AtomicBool::new(false),
            resets: watch::Sender::new(0),
            accepted: AtomicU64::new(0),
            forwarded_to_server: AtomicU64::new(0),
        });
        let accepting = tokio::spawn(accept(listener, faults.clone()));
        FaultProxy {
            addr,
            faults,
            accepting,
        }
    }

    /// The proxy's address (`127.0.0.1` and its port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A proxy in front of the server of `url` (`scheme://[user@]host:port/..`);
    /// [`route`](Self::route) gives the URL that goes through it.
    pub async fn start_in_front_of(url: &str) -> FaultProxy {
        let (host, end) = authority(url);
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(&url[host..end])
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| fail!("no server address in {url}"));
        FaultProxy::start(upstream).await
    }

    /// `url` through the proxy: its host and port replaced by the proxy's.
    pub fn route(&self, url: &str) -> String {
        let (host, end) = authority(url);
        format!("{}{}{}", &url[..host], self.addr, &url[end..])
    }

    /// `redis://127.0.0.1:{port}` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Delays every chunk travelling in `direction` by `latency` from when the
    /// proxy read it (order is kept). Applies to chunks read from now on.
    pub fn set_latency(&self, direction: Direction, latency: Duration) {
        let ms = latency.as_millis() as u64;
        match direction {
            Direction::ToServer => self.faults.latency_to_server_ms.store(ms, Ordering::SeqCst),
            Direction::ToClient => self.faults.latency_to_client_ms.store(ms, Ordering::SeqCst),
        }
    }

    /// Swallows everything both ways (connections stay open and keep being
    /// read, nothing is forwarded) while `on`; new connections are accepted too.
    pub fn set_black_hole(&self, on: bool) {
        self.faults.black_hole.store(on, Ordering::SeqCst);
    }

    /// Resets (RST) every open connection now.
    pub fn reset_all(&self) {
        self.faults.reset_all();
    }

    /// The next bytes a client sends are dropped and every connection is
    /// reset at that moment: the command in them never reaches the server.
    pub fn reset_on_next_command(&self) {
        self.faults
            .reset_on_next_command
            .store(true, Ordering::SeqCst);
    }

    /// The next bytes a client sends reach the server, but their reply is
    /// dropped and every connection is reset 100 ms later: the command ran,
    /// and the client never hears of it.
    pub fn reset_after_next_command(&self) {
        self.faults
            .reset_after_next_command
            .store(true, Ordering::SeqCst);
    }

    /// Whether a reset armed by [`reset_on_next_command`](Self::reset_on_next_command) is still pending.
    pub fn reset_pending(&self) -> bool {
        self.faults.reset_on_next_command.load(Ordering::SeqCst)
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> u64 {
        self.faults.accepted.load(Ordering::SeqCst)
    }

    /// How many chunks were forwarded to the server so far.
    pub fn forwarded_to_server(&self) -> u64 {
        self.faults.forwarded_to_server.load(Ordering::SeqCst)
    }
}

/// Where `host:port` is in `url` (`scheme://[user@]host:port/..`).
fn authority(url: &str) -> (usize, usize) {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |at| after_scheme + at);
    let host = url[after_scheme..end]
        .rfind('@')
        .map_or(after_scheme, |at| after_scheme + at + 1);
    (host, end)
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.faults.reset_all();
    }
}

impl Faults {
    /// Replies are dropped from now, and every connection reset 100 ms later.
    fn reset_after_reply_lost(self: &Arc<Self>) {
        self.swallow_replies.store(true, Ordering::SeqCst);
        let faults = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            faults.reset_all();
            faults.swallow_replies.store(false, Ordering::SeqCst);
        });
    }

    fn reset_all(&self) {
        self.resets.send_modify(|generation| *generation += 1);
    }

    fn latency(&self, direction: Direction) -> Duration {
        let ms = match direction {
            Direction::ToServer => self.latency_to_server_ms.load(Ordering::SeqCst),
            Direction::ToClient => self.latency_to_client_ms.load(Ordering::SeqCst),
        };
        Duration::from_millis(ms)
    }
}

async fn accept(listener: TcpListener, faults: Arc<Faults>) {
    while let Ok((client, _)) = listener.accept().await {
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(relay(client, faults.clone()));
    }
}

/// Forwards one connection both ways until either side closes or a reset.
async fn relay(client: TcpStream, faults: Arc<Faults>) {
    let mut resets = faults.resets.subscribe();
    let Ok(server) = TcpStream::connect(faults.upstream).await else {
        return;
    };
    // Linger 0: dropping a socket sends RST, so a reset looks like one to
    // the client (ECONNRESET), not like an orderly close.
    for socket in [&client, &server] {
        let _ = socket.set_zero_linger();
        let _ = socket.set_nodelay(true);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let to_server = pump(client_read, server_write, Direction::ToServer, &faults);
    let to_client = pump(server_read, client_write, Direction::ToClient, &faults);
    tokio::pin!(to_server, to_client);
    tokio::select! {
        orderly = &mut to_server => {
            // The client closed: as TCP would, the bytes it sent still
            // arrive (after their delay) and the server answers them before
            // it sees the end of the stream.
            if orderly {
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    tokio::select! {
                        _ = &mut to_client => {}
                        _ = resets.changed() => {}
                    }
                })
                .await;
            }
        }
        _ = &mut to_client => {}
        _ = resets.changed() => {}
    }
    // Both sockets are dropped here: with linger 0, each peer gets a RST.
}

/// Copies one direction, applying the faults. Returns when either end fails,
/// or, after an orderly close of the reading end, once everything read has
/// been delivered (then `true`).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    faults: &Arc<Faults>,
) -> bool {
    let (delayed, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buffer).await {
                Ok(0) => return true,
                Err(_) => return false,
                Ok(n) => n,
            };
            if faults.black_hole.load(Ordering::SeqCst) {
                continue;
            }
            if direction == Direction::ToServer
                && faults.reset_on_next_command.swap(false, Ordering::SeqCst)
            {
                faults.reset_all();
                return false;
            }
            if direction == Direction::ToServer
                && faults
                    .reset_after_next_command
                    .swap(false, Ordering::SeqCst)
            {
                faults.reset_after_reply_lost();
            }
            if direction == Direction::ToClient && faults.swallow_replies.load(Ordering::SeqCst) {
                continue;
            }
            let at = Instant::now() + faults.latency(direction);
            if delayed.send((at, buffer[..n].to_vec())).is_err() {
                return false;
            }
        }
    };
    let writing = async {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return false;
            }
            if direction == Direction::ToServer {
                faults.forwarded_to_server.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Everything read was delivered: pass the orderly close on.
        to.shutdown().await.is_ok()
    };
    tokio::pin!(writing);
    tokio::select! {
        orderly = reading => orderly && writing.await,
        _ = &mut writing => false,
    }
}
