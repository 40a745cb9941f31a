//! One timed run of a contender: a child process (ours too, so that everyone is measured the same
//! way), its wall time from spawn to exit and its rusage (`wait4`: the child plus every
//! descendant it waited for, so `sftp` includes its `ssh`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A command to run, with what to feed its stdin (an `sftp -b -` batch).
pub struct Job {
    pub cmd: Command,
    pub input: Option<String>,
}

impl From<Command> for Job {
    fn from(cmd: Command) -> Job {
        Job { cmd, input: None }
    }
}

/// What one run cost.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Spawn to exit.
    pub wall: Duration,
    /// User + system CPU of the process tree.
    pub cpu: Duration,
    /// Peak RSS of the largest process of the tree (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    /// Its stdout (ours prints one JSON line).
    pub stdout: String,
    /// Busy CPU of the whole machine during the run (set by the caller; see [`machine_busy`]).
    pub machine_cpu: Duration,
    /// Another build or test was running at its start or end (set by the caller).
    pub overlapped: bool,
}

/// Runs `job` to completion; an exit other than 0 is an error carrying its stderr.
pub fn run(job: Job) -> anyhow::Result<Sample> {
    let Job { mut cmd, input } = job;
    let what = format!("{cmd:?}");
    let started = Instant::now();
    // stdin is always a pipe: the batch is written to it (or nothing), then it is closed.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || stdin.write_all(input.unwrap_or_default().as_bytes()));
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .with_context(|| format!("read the output of {what}"))?;
    let (status, usage) = wait4(child.id())?;
    let wall = started.elapsed();
    let _ = feeder.join();
    let errors = errors.join().unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{what} failed (wait status {status:#x}): {}", errors.trim());
    }
    let secs = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Sample {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        stdout,
        machine_cpu: Duration::ZERO,
        overlapped: false,
    })
}

/// Reaps `pid`, returning its wait status and the rusage of it and its waited-for descendants.
fn wait4(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value that wait4 overwrites.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pointers to two live locals; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
}

/// The median (upper median for an even count); NaN for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Whether a build or test of anyone's is running now (`rustc`, `cargo `, a debug test binary):
/// runs that overlap one are counted in the tables' notes.
pub fn others_busy() -> bool {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && n != me)
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|raw| {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains("rustc") || cmd.contains("cargo ") || cmd.contains("/debug/deps/")
        })
}

/// CPU time the whole machine has spent busy so far (all CPUs, from /proc/stat): around a run on
/// a quiet machine, the client's plus sshd's plus the kernel's share.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(busy * 1000 / hz)
}
