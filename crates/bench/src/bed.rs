//! The test bed shared by every case: testkit's loopback sshd, one scratch directory on it, the
//! input files, and how each contender is pointed at the partner (directly or through a delay
//! proxy's port).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use testkit::Sshd;

use crate::measure::Job;

/// Where the input files and the client-side key material live (kept between runs: the inputs
/// are large).
pub const WORK_DIR: &str = "/var/tmp/sftp-forward-bench";
/// The cipher we negotiate first (forward's cipher order puts AES-GCM first).
pub const OUR_CIPHER: &str = "aes128-gcm@openssh.com";

/// The partner and the client files.
pub struct Bed {
    pub sshd: &'static Sshd,
    /// The scratch directory as sshd's filesystem has it (emptied between runs).
    pub local_dir: PathBuf,
    /// The same directory as a remote path (`upload/bench-N`).
    pub remote_dir: String,
    pub work: PathBuf,
    key_file: PathBuf,
    known_hosts: PathBuf,
    /// This executable: ours runs as its child modes.
    exe: PathBuf,
}

impl Bed {
    /// Starts (or reuses) testkit's sshd and writes the client key and known_hosts.
    pub fn new() -> anyhow::Result<Bed> {
        let sshd = testkit::sshd();
        let (local_dir, remote_dir) = testkit::scratch_dir("bench");
        let work = PathBuf::from(WORK_DIR);
        fs::create_dir_all(&work).with_context(|| format!("create {WORK_DIR}"))?;
        // Per process: another `bench` running at the same time has its own sshd and keys.
        let key_file = work.join(format!("client_ed25519-{}", std::process::id()));
        write_private(&key_file, &sshd.keys.ed25519)?;
        let bed = Bed {
            sshd,
            local_dir,
            remote_dir,
            known_hosts: work.join(format!("known_hosts-{}", std::process::id())),
            key_file,
            work,
            exe: std::env::current_exe().context("find this executable")?,
        };
        bed.trust_port(sshd.port)?;
        Ok(bed)
    }

    /// Adds `[127.0.0.1]:port` (sshd itself or a proxy in front of it) to known_hosts.
    pub fn trust_port(&self, port: u16) -> anyhow::Result<()> {
        let line = format!("[127.0.0.1]:{port} {}\n", self.sshd.host_key_line);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.known_hosts)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .with_context(|| format!("write {}", self.known_hosts.display()))
    }

    /// Removes everything the last run left in the scratch directory.
    pub fn clean(&self) -> anyhow::Result<()> {
        for entry in fs::read_dir(&self.local_dir)? {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Bytes in the scratch directory (all files, recursively): what the last run delivered.
    pub fn landed_bytes(&self) -> anyhow::Result<u64> {
        fn walk(dir: &Path) -> std::io::Result<u64> {
            let mut total = 0;
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                total += if meta.is_dir() {
                    walk(&entry.path())?
                } else {
                    meta.len()
                };
            }
            Ok(total)
        }
        walk(&self.local_dir).with_context(|| format!("walk {}", self.local_dir.display()))
    }

    /// The partner JSON (key login, pinned host key, the scratch directory) reached on `port`,
    /// written to a 0600 file for our child process.
    pub fn partner_file(&self, port: u16) -> anyhow::Result<PathBuf> {
        let mut partner = self.sshd.partner_json(&self.remote_dir);
        partner["Port"] = port.into();
        let path = self
            .work
            .join(format!("partner-{}-{port}.json", std::process::id()));
        write_private(&path, &partner.to_string())?;
        Ok(path)
    }

    /// This binary in one of its child modes (see `child`).
    pub fn ours(&self, mode: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["child", mode]);
        cmd
    }

    /// OpenSSH `sftp` in batch mode on `port` (`cipher`: `None` for its default), running `batch`.
    pub fn sftp(&self, port: u16, cipher: Option<&str>, batch: String) -> Job {
        let mut cmd = Command::new("sftp");
        cmd.args(["-q", "-b", "-", "-P", &port.to_string(), "-i"])
            .arg(&self.key_file)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]);
        if let Some(c) = cipher {
            cmd.arg("-o").arg(format!("Ciphers={c}"));
        }
        cmd.arg(format!("{}@127.0.0.1", self.sshd.user));
        Job {
            cmd,
            input: Some(batch),
        }
    }

    /// `rclone copy SOURCE partner:DEST` with the partner as an env-configured sftp remote on
    /// `port` (see [`RCLONE_FLAGS`]).
    pub fn rclone_copy(&self, port: u16, source: &str, dest: &str) -> Command {
        let mut cmd = Command::new("rclone");
        let remote = [
            ("TYPE", "sftp".to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("USER", self.sshd.user.clone()),
            ("KEY_FILE", self.key_file.display().to_string()),
            ("KNOWN_HOSTS_FILE", self.known_hosts.display().to_string()),
            // internal-sftp in a chroot runs no commands: no remote md5sum, no shell probing.
            ("DISABLE_HASHCHECK", "true".to_owned()),
            ("SHELL_TYPE", "none".to_owned()),
        ];
        for (k, v) in remote {
            cmd.env(format!("RCLONE_CONFIG_PARTNER_{k}"), v);
        }
        // rclone's S3 backend rejects this sandbox's CA bundle (see /work/shared/NOTES.md).
        cmd.env_remove("AWS_CA_BUNDLE")
            .args(["copy", "-q", "--config", "/dev/null"])
            .args(RCLONE_FLAGS)
            .arg(source)
            .arg(format!("partner:{}/{dest}", self.remote_dir));
        cmd
    }

    /// `put` lines for `sftp -b` that upload each of `files` into the scratch directory.
    pub fn sftp_puts<'a>(&self, files: impl IntoIterator<Item = &'a Path>) -> String {
        let mut batch = String::new();
        for f in files {
            let name = f.file_name().expect("a file").to_string_lossy();
            let _ = writeln!(batch, "put {} {}/{name}", f.display(), self.remote_dir);
        }
        batch
    }
}

/// rclone's transfer settings, all at their 1.60 defaults, stated so the tables can say them.
/// `--multi-thread-streams` applies only to downloads to local disk in 1.60 (an sftp upload is
/// one stream per file); `--sftp-concurrency` is WRITEs in flight per file, of `--sftp-chunk-size`.
pub const RCLONE_FLAGS: &[&str] = &[
    "--transfers=4",
    "--checkers=8",
    "--multi-thread-streams=4",
    "--sftp-concurrency=64",
    "--sftp-chunk-size=32Ki",
];

/// Writes `text` to `path` readable by its owner only (keys, partner JSON).
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}

/// `path` holding `len` random bytes: kept from an earlier run when it has that size.
pub fn random_file(path: &Path, len: u64) -> anyhow::Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() == len) {
        return Ok(());
    }
    let mut out = fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut urandom = fs::File::open("/dev/urandom")?;
    std::io::copy(&mut std::io::Read::take(&mut urandom, len), &mut out)
        .with_context(|| format!("fill {}", path.display()))?;
    Ok(())
}
