//! The egress testbed: `tests/egress/testbed`'s network namespaces (two private subnets, a VPC
//! router with per-subnet route tables, two NATs with their "EIPs", an internet bridge, the
//! partner behind an allowlist, and a host outside the NATs), driven from Rust.
//!
//! [`Testbed::up`] takes a machine-wide lock (one testbed at a time: the demo and every test
//! binary use the same names), builds the namespaces, and starts a watchdog that runs
//! `testbed down` when this process ends, however it ends.

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Output};

use crate::EchoServer;

/// The root namespace's end of the platform link: bind moto and the Runtime API here.
pub const PLATFORM_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
/// The partner's address (sshd on port 22, the IP-echo service on port 80).
pub const PARTNER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// NAT one's and NAT two's public addresses, in that order.
pub const EIPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(203, 0, 113, 10),
    Ipv4Addr::new(203, 0, 113, 20),
];
/// A host on the internet that is not behind the NATs.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
/// The IP-echo service in the partner namespace (`SFTP_FORWARD_EGRESS_ECHO_URL`): an
/// [`EchoServer`] that each [`Testbed`] runs there while it lives.
pub const ECHO_URL: &str = "http://198.51.100.10/";
const ECHO_PORT: u16 = 80;
/// The namespace that sshd runs in.
pub const PARTNER_NETNS: &str = "sfe-partner";

const LOCK: &str = "/run/sftp-forward-testbed.lock";

/// The testbed, up while this value lives (and torn down when the process ends).
pub struct Testbed {
    /// The IP-echo service at [`ECHO_URL`]. First, so it is stopped before the lock is released
    /// and before the watchdog removes its namespace.
    _echo: EchoServer,
    _lock: File,
    _watchdog: ChildStdin,
}

impl Testbed {
    /// Waits for the machine-wide lock, then builds the testbed (idempotent).
    pub fn up() -> Result<Testbed, String> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .map_err(|e| format!("open {LOCK}: {e}"))?;
        // SAFETY: flock(2) on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("lock {LOCK}: {}", std::io::Error::last_os_error()));
        }
        let script = script();
        let watchdog = crate::watchdog(
            "trap '' INT HUP; read -r line; \"$1\" down",
            &[script.as_os_str()],
        )?;
        run(&["up"])?;
        Ok(Testbed {
            _echo: EchoServer::start_in_netns(PARTNER_NETNS, PARTNER_IP, ECHO_PORT)?,
            _lock: lock,
            _watchdog: watchdog,
        })
    }

    /// Takes NAT `n` (1 or 2) off the network, as if its Availability Zone failed.
    pub fn nat_down(&self, n: u8) -> Result<(), String> {
        run(&["nat-down", &n.to_string()])
    }

    /// Brings NAT `n` back.
    pub fn nat_up(&self, n: u8) -> Result<(), String> {
        run(&["nat-up", &n.to_string()])
    }

    /// Points private subnet `subnet`'s default route at NAT `nat` (a route-table change).
    pub fn route(&self, subnet: u8, nat: u8) -> Result<(), String> {
        run(&["route", &subnet.to_string(), &nat.to_string()])
    }

    /// A command that runs `program` inside namespace `ns` (`priv1`, `priv2`, `outside`, ...).
    pub fn command(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("sfe-{ns}")])
            .arg(program);
        cmd
    }
}

/// Runs `testbed ARGS`; its output in the error.
fn run(args: &[&str]) -> Result<(), String> {
    let out: Output = Command::new(script())
        .args(args)
        .output()
        .map_err(|e| format!("run {}: {e}", script().display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "testbed {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `tests/egress/testbed` of this checkout.
pub fn script() -> PathBuf {
    crate::repo_root().join("tests/egress/testbed")
}
