//! Cold start: a one-shot Runtime API listener that stamps the arrival of the first request line
//! (the function's first `GET /2018-06-01/runtime/invocation/next`), and the spawn it is timed from.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long `bootstrap` may take to ask for its first invocation.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `bootstrap` against a fresh listener and returns the time from spawn to its first
/// `next` request; the process is killed afterwards.
pub fn time_to_next(bootstrap: &Path) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                let _ = tx.send((Instant::now(), line));
            }
        }
    });
    let mut env =
        testkit::runtime_api::platform_env(&addr.to_string(), "sftp-forward", 128, "bench");
    env.extend([
        (
            sftp_forward_core::env::SECRET_ID,
            "bench-partner".to_owned(),
        ),
        ("AWS_REGION", testkit::moto::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", testkit::moto::ACCESS_KEY_ID.to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            testkit::moto::SECRET_ACCESS_KEY.to_owned(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]);
    let started = Instant::now();
    let mut child = Command::new(bootstrap)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {}", bootstrap.display()))?;
    let got = rx.recv_timeout(TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let (at, line) =
        got.with_context(|| format!("{} sent no request within {TIMEOUT:?}", bootstrap.display()))?;
    if !line.starts_with("GET /2018-06-01/runtime/invocation/next") {
        bail!("bootstrap's first request was {line:?}, not next");
    }
    Ok(at - started)
}
