//! A tiny IP-echo HTTP server, like `checkip.amazonaws.com`: any GET is answered `200` with the
//! client's source IP as plain text (`127.0.0.1\n`). One background thread, stopped on drop.
//!
//! ```no_run
//! let echo = testkit::EchoServer::start(std::net::Ipv4Addr::LOCALHOST);
//! // a client on this machine GETs echo.url() and reads "127.0.0.1\n"
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long one client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Request heads longer than this are answered without reading the rest.
const MAX_HEAD: usize = 16 * 1024;

/// A running echo server; stops (and joins its thread) when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listen on `bind` (an OS-chosen port) and answer in a background thread.
    ///
    /// Panics if the address cannot be bound.
    pub fn start(bind: Ipv4Addr) -> EchoServer {
        let listener = TcpListener::bind((bind, 0))
            .unwrap_or_else(|e| panic!("testkit: echo server cannot bind {bind}: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU32::new(0));
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::Builder::new()
                .name("testkit-echo".into())
                .spawn(move || serve(listener, &stop, &served))
                .expect("spawn the echo server thread")
        };
        EchoServer {
            addr,
            stop,
            served,
            thread: Some(thread),
        }
    }

    /// `http://ADDR:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has answered.
    pub fn served(&self) -> u32 {
        self.served.load(Ordering::SeqCst)
    }
}

/// `http://127.0.0.1:PORT/` where nothing listens (the port was bound, then released), for
/// testing an echo service that cannot be reached.
pub fn closed_url() -> String {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a port on 127.0.0.1")
        .port();
    format!("http://127.0.0.1:{port}/")
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the thread sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool, served: &AtomicU32) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut conn) = conn else { continue };
        if answer(&mut conn).is_ok() {
            served.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Read the request head (up to the blank line), answer with the peer's IP, close.
fn answer(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    let peer = conn.peer_addr()?.ip();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let body = format!("{peer}\n");
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
