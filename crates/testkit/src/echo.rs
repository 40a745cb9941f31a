//! A tiny IP-echo HTTP server, like `checkip.amazonaws.com`: any GET is answered `200` with the
//! client's source IP as plain text (`127.0.0.1\n`). One background thread, stopped on drop.
//! The only IP-echo server of the tests and the demo: the egress testbed runs one in the partner's
//! namespace ([`EchoServer::start_in_netns`]).
//!
//! ```no_run
//! let echo = testkit::EchoServer::start(std::net::Ipv4Addr::LOCALHOST);
//! // a client on this machine GETs echo.url() and reads "127.0.0.1\n"
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
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
    /// The network namespace it listens in (`ip netns` name), if not this process's.
    netns: Option<String>,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listen on `bind` (an OS-chosen port) and answer in a background thread.
    ///
    /// Panics if the address cannot be bound.
    pub fn start(bind: Ipv4Addr) -> EchoServer {
        EchoServer::listen(None, bind, 0).unwrap_or_else(|e| panic!("testkit: {e}"))
    }

    /// Listen on `bind:port` inside the network namespace `netns` (an `ip netns` name): its
    /// thread enters the namespace, binds there, and serves whoever reaches that address.
    pub fn start_in_netns(netns: &str, bind: Ipv4Addr, port: u16) -> Result<EchoServer, String> {
        EchoServer::listen(Some(netns), bind, port)
    }

    fn listen(netns: Option<&str>, bind: Ipv4Addr, port: u16) -> Result<EchoServer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU32::new(0));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            let netns = netns.map(str::to_owned);
            std::thread::Builder::new()
                .name("testkit-echo".into())
                .spawn(move || {
                    let bound = enter(netns.as_deref()).and_then(|()| {
                        let listener = TcpListener::bind((bind, port)).map_err(|e| {
                            format!(
                                "echo server cannot bind {bind}:{port}{}: {e}",
                                place(&netns)
                            )
                        })?;
                        let addr = listener.local_addr().map_err(|e| e.to_string())?;
                        Ok((listener, addr))
                    });
                    match bound {
                        Ok((listener, addr)) => {
                            let _ = bound_tx.send(Ok(addr));
                            serve(listener, &stop, &served);
                        }
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| format!("spawn the echo server thread: {e}"))?
        };
        let addr = bound_rx
            .recv()
            .map_err(|_| "the echo server thread ended before binding".to_owned())??;
        Ok(EchoServer {
            addr,
            netns: netns.map(str::to_owned),
            stop,
            served,
            thread: Some(thread),
        })
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
        // Wake the blocking accept, from the namespace it listens in; the thread sees the flag
        // and ends. If it cannot be woken (its namespace is already gone), it is left blocked
        // rather than joined forever.
        let (addr, netns) = (self.addr, self.netns.clone());
        let woken = std::thread::spawn(move || {
            enter(netns.as_deref())
                .and_then(|()| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                        .map_err(|e| e.to_string())
                })
                .is_ok()
        })
        .join()
        .unwrap_or(false);
        if let Some(t) = self.thread.take().filter(|_| woken) {
            let _ = t.join();
        }
    }
}

/// Moves the calling thread into network namespace `netns` (`None`: stays); the sockets it
/// creates afterwards live there.
fn enter(netns: Option<&str>) -> Result<(), String> {
    let Some(netns) = netns else { return Ok(()) };
    let path = format!("/run/netns/{netns}");
    let file = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns(2) on a descriptor we own, for a network namespace: it changes this thread's
    // namespace only, which is allowed in a multi-threaded process.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("enter {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// " in namespace NAME", or nothing.
fn place(netns: &Option<String>) -> String {
    netns
        .as_deref()
        .map(|n| format!(" in namespace {n}"))
        .unwrap_or_default()
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
