//! A userspace TCP delay proxy on loopback, standing in for a WAN (`tc netem` is not in this
//! kernel): every chunk read from one side is written to the other side `one_way` later, in both
//! directions, so a client talking to [`DelayProxy::addr`] sees the target behind a round-trip
//! time of `2 × one_way` (plus loopback's own microseconds).
//!
//! Only latency is added: bandwidth is whatever the proxy's threads can copy. Each connection
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
}

impl DelayProxy {
    /// Listen on 127.0.0.1 and forward every connection to `target`, each chunk `one_way` late
    /// in each direction.
    ///
    /// Panics if 127.0.0.1 cannot be bound.
    pub fn start(target: SocketAddr, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("testkit: delay proxy cannot bind 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
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
                            splice(client, server, one_way);
                        }
                    }
                }
            })
            .expect("spawn the delay proxy thread");
        DelayProxy { addr, stop }
    }

    /// Where clients connect: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies both directions of one connection, each delayed by `one_way`.
fn splice(client: TcpStream, server: TcpStream, one_way: Duration) {
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
        thread::spawn(move || read_side(from, tx, one_way));
        thread::spawn(move || write_side(to, rx));
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

/// Writes each chunk when it is due; at end-of-file (or a write error) half-closes the far side.
fn write_side(mut to: TcpStream, rx: Receiver<(Instant, Vec<u8>)>) {
    for (due, chunk) in rx {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if chunk.is_empty() || to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
