//! Process and system helpers shared by testkit's servers: watchdogs that clean up when the test
//! process ends, commands run to completion with their stderr in the error, `/proc` walks.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::Duration;

/// Runs `script` (`$1`... = `args`) in a shell of its own process group whose stdin is a pipe from
/// this process: the script's `read` returns when this process ends, however it ends. Keep the
/// returned end open for the life of the process.
pub(crate) fn watchdog(script: &str, args: &[&std::ffi::OsStr]) -> Result<ChildStdin, String> {
    let mut child = Command::new("/bin/sh")
        .args(["-c", script, "testkit-watchdog"])
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn the watchdog: {e}"))?;
    Ok(child.stdin.take().expect("stdin is piped"))
}

/// Runs a command to completion, feeding `input` on stdin; retries while `/etc/passwd` is locked
/// by a concurrent `useradd`/`userdel` (another test binary setting up or cleaning up).
pub(crate) fn run(cmd: &mut Command, input: Option<&str>) -> Result<(), String> {
    for attempt in 1.. {
        let mut child = cmd
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| format!("write to {cmd:?}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || attempt == 50 {
            return check(cmd, out.status, &out.stderr);
        }
        sleep(Duration::from_millis(200));
    }
    unreachable!()
}

pub(crate) fn check(cmd: &Command, status: ExitStatus, stderr: &[u8]) -> Result<(), String> {
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(stderr);
    Err(format!("{cmd:?} failed ({status}): {}", stderr.trim()))
}

pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn read_pid(pid_file: &Path) -> Option<u32> {
    fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

pub(crate) fn read_log_from(log_path: &Path, offset: u64) -> String {
    let bytes = fs::read(log_path).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// `(state, parent pid)` from `/proc/<pid>/stat`; the command name may contain spaces and parens.
pub(crate) fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every live descendant of `root`, found by walking /proc.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?.1)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found.retain(|&p| is_running(p));
    found
}

/// The process exists and is not a zombie.
pub(crate) fn is_running(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("create {}: {e}", path.display())),
    }
    set_mode(path, mode) // the umask may have taken bits away
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {mode:o} {}: {e}", path.display()))
}

/// `(uid, gid)` of `user` from /etc/passwd.
pub(crate) fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] if *name == user => {
                Some((uid.parse().ok()?, gid.parse().ok()?))
            }
            _ => None,
        }
    })
}
