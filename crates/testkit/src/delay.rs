//! A userspace TCP delay proxy on loopback, standing in for a WAN (`tc netem` is not in this
//! kernel): every chunk read from one side is written to the other side `one_way` later, in both
//! directions, so a client talking to [`DelayProxy::addr`] sees the target behind a round-trip
//! time of `2 × one_way` (plus loopback's own microseconds).
//!
//! [`DelayProxy::start`] adds only latency: bandwidth is whatever the proxy's threads can copy;
//! [`DelayProxy::start_limited`] also caps each direction of each connection at a byte rate (a
//! slow link). [`DelayProxy::pause`] holds every byte until [`DelayProxy::resume`] (a partner
//! that stalls mid-transfer: its window never opens again). Each connection
//! gets a connection to the target and four threads (a reader and a delayed writer per
//! direction); a direction keeps at most [`MAX_QUEUED`] chunks waiting, which bounds the
//! proxy's memory without limiting a window of a few MiB per RTT.
//!
//! ```no_run
//! let sshd = testkit::sshd();
//! let wan = testkit::delay::DelayProxy::start(
//!     (sshd.host, sshd.port).into(),
//!     std::time::Duration::from_micros(12_500), // 25 ms RTT
//! );
//! // connect to wan.addr() instead of sshd
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting per direction (at most 64 MiB): more than any window of these tests per RTT.
pub const MAX_QUEUED: usize = 1024;

/// A running proxy on 127.0.0.1 (OS-chosen port). Dropping it stops accepting; connections
/// already made run until either side closes.
pub struct DelayProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
}

/// How often a paused writer looks whether it may go on.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// How each direction of a connection is slowed down.
#[derive(Clone)]
struct Link {
    one_way: Duration,
    /// Bytes per second, `None` for unlimited.
    rate: Option<u64>,
    paused: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listen on 127.0.0.1 and forward every connection to `target`, each chunk `one_way` late
    /// in each direction.
    ///
    /// Panics if 127.0.0.1 cannot be bound.
    pub fn start(target: SocketAddr, one_way: Duration) -> DelayProxy {
        DelayProxy::with(target, one_way, None)
    }

    /// [`DelayProxy::start`], each direction of each connection also limited to
    /// `bytes_per_sec` (at least 1).
    pub fn start_limited(target: SocketAddr, one_way: Duration, bytes_per_sec: u64) -> DelayProxy {
        DelayProxy::with(target, one_way, Some(bytes_per_sec.max(1)))
    }

    /// Hold every byte in both directions of every connection (nothing is lost) until
    /// [`DelayProxy::resume`].
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Let the held bytes go on.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    fn with(target: SocketAddr, one_way: Duration, rate: Option<u64>) -> DelayProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("testkit: delay proxy cannot bind 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let paused = Arc::new(AtomicBool::new(false));
        let link = Link {
            one_way,
            rate,
            paused: paused.clone(),
        };
        thread::Builder::new()
            .name("testkit-delay".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(client) = client {
                        // A target that refuses: the client sees its connection closed.
                        if let Ok(server) = TcpStream::connect(target) {
                            splice(client, server, &link);
                        }
                    }
                }
            })
            .expect("spawn the delay proxy thread");
        DelayProxy { addr, stop, paused }
    }

    /// Where clients connect: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Never leave a connection held forever.
        self.resume();
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies both directions of one connection, each slowed down by `link`.
fn splice(client: TcpStream, server: TcpStream, link: &Link) {
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let pairs = [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ];
    for (from, to) in pairs {
        let (Ok(from), Ok(to)) = (from, to) else {
            return;
        };
        let (tx, rx) = sync_channel(MAX_QUEUED);
        let (one_way, link) = (link.one_way, link.clone());
        thread::spawn(move || read_side(from, tx, one_way));
        thread::spawn(move || write_side(to, rx, link));
    }
}

/// Reads chunks and stamps each with the time it may be written. An empty chunk is end-of-file.
fn read_side(mut from: TcpStream, tx: SyncSender<(Instant, Vec<u8>)>, one_way: Duration) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if tx
            .send((Instant::now() + one_way, buf[..n].to_vec()))
            .is_err()
            || n == 0
        {
            return;
        }
    }
}

/// Writes each chunk when it is due (and, with a rate, once the link has carried the chunk before
/// it; never while paused); at end-of-file (or a write error) half-closes the far side.
fn write_side(mut to: TcpStream, rx: Receiver<(Instant, Vec<u8>)>, link: Link) {
    // With a rate: when the link is free again after the last chunk written.
    let mut free = Instant::now();
    for (due, chunk) in rx {
        let due = due.max(free);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        // Paused: hold; the proxy's drop resumes, so this ends.
        while link.paused.load(Ordering::Relaxed) {
            thread::sleep(PAUSE_POLL);
        }
        if let Some(rate) = link.rate {
            free = Instant::now() + Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
        }
        if chunk.is_empty() || to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
