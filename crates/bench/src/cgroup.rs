//! A CPU quota for one child process: a cgroup v1 `cpu` group (`cpu.cfs_quota_us` over
//! `cpu.cfs_period_us`) that the child joins between fork and exec, so only our process is
//! throttled (sshd, moto and the harness are not). Needs root and the v1 `cpu` controller mounted
//! at /sys/fs/cgroup/cpu (see /work/shared/NOTES.md).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

const ROOT: &str = "/sys/fs/cgroup/cpu";
const PERIOD_US: u64 = 100_000;

/// A cgroup limited to `cpus` CPUs; removed when dropped (once its processes have exited).
pub struct CpuQuota {
    dir: PathBuf,
    /// Its `cgroup.procs`, open for the children to write themselves into.
    procs: File,
}

impl CpuQuota {
    /// Creates `/sys/fs/cgroup/cpu/<name>` allowing `cpus` CPUs per period.
    pub fn new(name: &str, cpus: f64) -> anyhow::Result<CpuQuota> {
        let dir = PathBuf::from(ROOT).join(name);
        if dir.exists() {
            fs::remove_dir(&dir).with_context(|| format!("remove a stale {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| {
            format!(
                "create {} (cgroup v1 cpu controller, as root)",
                dir.display()
            )
        })?;
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        let set = |file: &str, value: u64| {
            fs::write(dir.join(file), value.to_string())
                .with_context(|| format!("write {value} to {}/{file}", dir.display()))
        };
        set("cpu.cfs_period_us", PERIOD_US)?;
        set("cpu.cfs_quota_us", quota)?;
        let procs = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .with_context(|| format!("open {}/cgroup.procs", dir.display()))?;
        Ok(CpuQuota { dir, procs })
    }

    /// Makes the process `cmd` spawns join this group before it executes (it writes `0`, "the
    /// writing process", to `cgroup.procs`; its threads follow it).
    pub fn confine(&self, cmd: &mut Command) {
        let fd = self.procs.as_raw_fd();
        // SAFETY: between fork and exec only write(2) on an fd that stays open while `self`
        // lives (the Command is spawned within the case that holds this quota); no allocation.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// CPU time the group's processes were throttled so far (`cpu.stat` `throttled_time`).
    pub fn throttled(&self) -> Duration {
        let stat = fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let ns = stat
            .lines()
            .find_map(|l| l.strip_prefix("throttled_time "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Duration::from_nanos(ns)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // An exited child leaves the group a moment after it is reaped.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: could not remove {}", self.dir.display());
    }
}
