//! The partner's SFTP server: Debian's OpenSSH `sshd`, shared per test binary ([`sshd()`]) or
//! started for one test in a partner's style ([`sshd_styled`], see [`crate::style`]).
//!
//! # What [`sshd()`] starts
//!
//! The first test of a test binary that calls [`sshd()`] starts `/usr/sbin/sshd -D` on 127.0.0.1;
//! every other test of that binary waits for it and shares it. Everything it uses is made fresh for
//! this run, under a run directory `/var/lib/sftp-forward-test/<user>/`:
//!
//! - `etc/`: its own `sshd_config`, an ed25519 host key (a styled sshd: the keys of its style),
//!   the client keys of [`ClientKeys`], `authorized_keys/<user>`, the PID file and the log (`sshd -E`, `LogLevel VERBOSE`,
//!   `internal-sftp -l INFO`), read with [`Sshd::log`]; inside the chroot internal-sftp has no
//!   syslog socket, so its per-file lines do not reach the log: assert on files and logins instead;
//! - a system user `sfwd<6 hex digits>` (one per run, so that two test binaries running at once never
//!   overwrite each other's password) with a random password and no shell: its `Match User` block
//!   forces `internal-sftp` in a chroot;
//! - `chroot/` (root's, 0755) with `upload/` (the user's, writable; remote `upload`) and
//!   `readonly/` (root's; remote `readonly`, where writes fail with permission denied).
//!
//! The run directory is not under `/tmp` or `/var/tmp` because sshd refuses a chroot unless every
//! component of its path is root-owned and not group- or world-writable; [`sshd()`] checks that.
//!
//! # How it is cleaned up
//!
//! Right after the run directory is claimed, a watchdog (`sh`, in its own process group so that a
//! Ctrl-C on the terminal does not reach it) is started with its stdin on a pipe whose only writer is
//! the test process (Rust opens pipes close-on-exec, so no spawned program inherits it). When the
//! test process ends for any reason (tests done, panic, `SIGKILL`) the kernel closes that pipe, the
//! watchdog reads end-of-file and then: sends `SIGTERM` to the daemon by the PID in its `PidFile`
//! (`SIGKILL` after 2 s), kills whatever still runs as the user, deletes the user with `userdel`
//! and removes the run directory (and a PAM style's `/etc/pam.d` service). Only a watchdog that is
//! itself killed leaves them behind.
//!
//! # Port
//!
//! sshd cannot take over a socket bound by the test, so the port is found by binding
//! `127.0.0.1:0` and releasing it; if sshd then logs "Address already in use" (someone took the port

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{chown, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::procs::{
    check, descendants, is_running, kill_and_reap, mkdir, passwd_ids, random_hex, read_log_from,
    read_pid, run, set_mode, watchdog,
};
use crate::style::{install_pam, pam_service_file, program_name, Config, Style};

pub(crate) const SSHD_BIN: &str = "/usr/sbin/sshd";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
/// Parent of the run directories: root-owned 0755 all the way up, as sshd requires of a chroot.
const BASE: &str = "/var/lib/sftp-forward-test";
/// How long sshd may take to accept TCP connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports to try when the released port is taken before sshd binds it.
const PORT_ATTEMPTS: u32 = 5;

/// The sshd of this test binary: started by the first call, shared by all tests of the binary, and
/// stopped when the process exits (see the module doc).
///
/// Panics with sshd's log (or the failing set-up step) if it cannot be started; every later call
/// panics with the same message rather than trying again.
pub fn sshd() -> &'static Sshd {
    static SSHD: OnceLock<Result<Sshd, String>> = OnceLock::new();
    match SSHD.get_or_init(|| start(None, &Style::new())) {
        Ok(sshd) => sshd,
        Err(e) => panic!("testkit: could not start sshd: {e}"),
    }
}

/// Starts another sshd, like [`sshd()`] but inside the network namespace `netns` (run through
/// `ip netns exec`), listening on `addr:port` there. Not shared: the caller keeps it; it is stopped
/// (and its user removed) when the process ends, like the shared one. The egress testbed's partner.
pub fn sshd_in_netns(netns: &str, addr: Ipv4Addr, port: u16) -> Result<Sshd, String> {
    start(
        Some(Netns {
            name: netns.to_owned(),
            addr,
            port,
        }),
        &Style::new(),
    )
}

/// Another sshd on 127.0.0.1 like [`sshd()`], not shared, with its own `MaxSessions` (channels
/// per connection) and `MaxStartups` (e.g. `"3:100:3"`: beyond 3 connections that have not
/// logged in yet, every new one is dropped): a partner that protects itself under load.
/// The same as [`sshd_styled`] with [`Style::limits`].
pub fn sshd_limited(max_sessions: u32, max_startups: &str) -> Result<Sshd, String> {
    sshd_styled(&Style::new().limits(max_sessions, max_startups))
}

/// Another sshd on 127.0.0.1, not shared, configured in a partner's `style` (see
/// [`crate::style`]): its own user, keys, chroot and log, stopped and cleaned up when the process
/// ends, like the shared one. Each call generates its keys: start several at once from threads.
pub fn sshd_styled(style: &Style) -> Result<Sshd, String> {
    start(None, style)
}

/// Where a namespaced sshd listens.
struct Netns {
    name: String,
    addr: Ipv4Addr,
    port: u16,
}

/// A fresh empty directory under [`Sshd::upload_dir`], owned by the SFTP user, for one test.
///
/// Its name is `<name_hint>-<n>`, unique within the run. Returns the local path and the remote path
/// as seen over SFTP (`upload/<name>`, relative to the user's home `/` in the chroot).
pub fn scratch_dir(name_hint: &str) -> (PathBuf, String) {
    sshd().scratch_dir(name_hint)
}

/// A running OpenSSH sshd with its user, keys and chroot.
pub struct Sshd {
    /// The address it listens on: 127.0.0.1, or the one given to [`sshd_in_netns`].
    pub host: Ipv4Addr,
    /// The TCP port it listens on.
    pub port: u16,
    /// The server's first host key as an OpenSSH line: `ssh-ed25519 AAAA... comment` (the shared
    /// sshd has only this ed25519 key).
    pub host_key_line: String,
    /// Every host key of the server as an OpenSSH line, in the order of [`Style::host_keys`].
    pub host_key_lines: Vec<String>,
    /// The `.pub` file of the first host key (for `ssh-keygen -lf`).
    pub host_key_pub_path: PathBuf,
    /// The login name: a system user made for this run, chrooted to [`Sshd::chroot`], SFTP only.
    pub user: String,
    /// The user's password (random per run), answered to `password` or, in a PAM style, to
    /// keyboard-interactive's password prompt.
    pub password: String,
    /// The chroot: root-owned 0755; the SFTP root `/` of the user.
    pub chroot: PathBuf,
    /// `chroot/upload`: owned by the user, writable; remote path `upload` (or `/upload`).
    pub upload_dir: PathBuf,
    /// `chroot/readonly`: root-owned 0755, the user cannot write there; remote path `readonly`.
    pub readonly_dir: PathBuf,
    /// Client private keys; all but [`ClientKeys::unauthorized_ed25519`] may log in as `user`.
    pub keys: ClientKeys,
    log_path: PathBuf,
    pid_file: PathBuf,
    uid: u32,
    gid: u32,
    /// Write end of the watchdog's stdin: closed by the kernel when this process ends.
    _watchdog: ChildStdin,
}

/// Client private keys (OpenSSH or PEM text, as a user would paste into a secret).
pub struct ClientKeys {
    /// ed25519, OpenSSH format, no passphrase; authorized.
    pub ed25519: String,
    /// ed25519, OpenSSH format, encrypted with [`ClientKeys::passphrase`]; authorized.
    pub ed25519_encrypted: String,
    /// The passphrase of [`ClientKeys::ed25519_encrypted`] (random per run).
    pub passphrase: String,
    /// RSA 3072 in PEM (`-----BEGIN RSA PRIVATE KEY-----`), no passphrase; authorized.
    pub rsa: String,
    /// ECDSA P-256, OpenSSH format, no passphrase; authorized.
    pub ecdsa: String,
    /// A valid ed25519 key that is not authorized (for authentication-failure tests).
    pub unauthorized_ed25519: String,
}

impl Sshd {
    /// sshd's log so far: connections, logins (`Accepted publickey for U from 127.0.0.1 port P`)
    /// and session starts. File operations are not in it (see the module doc).
    pub fn log(&self) -> String {
        let bytes = fs::read(&self.log_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.log_path.display()));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Source addresses of the logins in `log` (a part of [`Sshd::log`]), oldest first, from
    /// sshd's `Accepted publickey for USER from ADDRESS port P` lines.
    pub fn login_sources(&self, log: &str) -> Vec<String> {
        self.logins(log).into_iter().map(|(addr, _)| addr).collect()
    }

    /// `(address, port)` of the client of each login in `log`, oldest first.
    pub fn logins(&self, log: &str) -> Vec<(String, u16)> {
        let marker = format!("Accepted publickey for {} from ", self.user);
        log.lines()
            .filter_map(|l| l.split_once(&marker))
            .filter_map(|(_, rest)| {
                let mut words = rest.split_whitespace();
                let addr = words.next()?.to_owned();
                let port = words.nth(1)?.parse().ok()?; // "<addr> port <port> ssh2..."
                Some((addr, port))
            })
            .collect()
    }

    /// How many sessions (channels: for the test user, each one an SFTP server) sshd started in
    /// `log` for the connection from client port `port`.
    pub fn sessions_from_port(&self, log: &str, port: u16) -> usize {
        let tag = format!(" port {port} id ");
        log.lines()
            .filter(|l| l.contains("Starting session:") && l.contains(&tag))
            .count()
    }

    /// Where [`Sshd::log`] reads from.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `SIGKILL`s every per-connection process of the daemon (all its descendants), leaving the
    /// listening daemon alive: the server dies mid-transfer, and new connections still work.
    ///
    /// This drops the connections of every test of the binary. Returns once the killed processes are
    /// dead (bounded: 5 s), so clients see their connection reset.
    pub fn kill_sessions(&self) {
        let daemon = self.pid();
        // A few rounds catch a child forked while the previous round was being killed.
        for _ in 0..3 {
            let victims = descendants(daemon);
            if victims.is_empty() {
                return;
            }
            for &pid in &victims {
                // SAFETY: kill(2) with a pid we just read from /proc; no memory is involved.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while victims.iter().any(|&p| is_running(p)) && Instant::now() < deadline {
                sleep(Duration::from_millis(10));
            }
        }
    }

    /// The daemon's PID, read from its `PidFile`.
    pub fn pid(&self) -> u32 {
        read_pid(&self.pid_file).unwrap_or_else(|| panic!("no pid in {}", self.pid_file.display()))
    }

    /// The partner JSON (as kept in Secrets Manager) for this server: the ed25519 key login, the
    /// server's host key pinned, files published under `remote_dir`.
    pub fn partner_json(&self, remote_dir: &str) -> serde_json::Value {
        serde_json::json!({
            "Host": self.host.to_string(),
            "Port": self.port,
            "Username": self.user,
            "PrivateKey": self.keys.ed25519,
            "TrustedHostKeys": [self.host_key_line],
            "RemoteDirectory": remote_dir,
        })
    }

    /// The host key's fingerprint as OpenSSH prints it (`ssh-keygen -lf`'s second field, `SHA256:...`).
    pub fn host_key_fingerprint(&self) -> String {
        let out = Command::new(SSH_KEYGEN)
            .arg("-lf")
            .arg(&self.host_key_pub_path)
            .output()
            .expect("run ssh-keygen -lf");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("ssh-keygen -lf prints a fingerprint")
            .to_owned()
    }

    /// A fresh empty directory under [`Sshd::upload_dir`], owned by the SFTP user, for one test
    /// (see [`scratch_dir`], which does this on the shared sshd).
    pub fn scratch_dir(&self, name_hint: &str) -> (PathBuf, String) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        assert!(
            !name_hint.is_empty() && !name_hint.contains('/'),
            "scratch_dir: the hint must be one non-empty path component, got {name_hint:?}"
        );
        let name = format!("{name_hint}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let local = self.upload_dir.join(&name);
        fs::create_dir(&local).unwrap_or_else(|e| panic!("create {}: {e}", local.display()));
        chown(&local, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", local.display()));
        (local, format!("upload/{name}"))
    }

    /// `upload_dir.join(rel)`: where a file uploaded as `upload/<rel>` lands locally.
    pub fn upload_path(&self, rel: &str) -> PathBuf {
        self.upload_dir.join(rel)
    }
}

/// Makes everything and starts sshd; an error says which step failed.
fn start(netns: Option<Netns>, style: &Style) -> Result<Sshd, String> {
    if !Path::new(SSHD_BIN).exists() {
        return Err(format!(
            "{SSHD_BIN} is missing: apt-get install openssh-server"
        ));
    }
    mkdir(Path::new("/run/sshd"), 0o755)?; // privilege separation directory
    fs::create_dir_all(BASE).map_err(|e| format!("create {BASE}: {e}"))?;
    set_mode(Path::new(BASE), 0o755)?;
    check_chroot_path(Path::new(BASE))?;

    // Claim a run directory and a user name no one has; the directory's creation is the claim.
    let (user, run_dir) = loop {
        let user = format!("sfwd{}", random_hex(3));
        let dir = Path::new(BASE).join(&user);
        if passwd_ids(&user).is_some() {
            continue;
        }
        match fs::create_dir(&dir) {
            Ok(()) => break (user, dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("create {}: {e}", dir.display())),
        }
    };
    let etc = run_dir.join("etc");
    let pid_file = etc.join("sshd.pid");
    // From here on the watchdog undoes everything, also if a later step fails.
    let watchdog = spawn_watchdog(&pid_file, &user, &run_dir, style)?;

    let chroot = run_dir.join("chroot");
    let upload_dir = chroot.join("upload");
    let readonly_dir = chroot.join("readonly");
    let authorized_dir = etc.join("authorized_keys");
    // 0755 everywhere: sshd reads authorized_keys as the user.
    for dir in [
        &run_dir,
        &etc,
        &authorized_dir,
        &chroot,
        &readonly_dir,
        &upload_dir,
    ] {
        mkdir(dir, 0o755)?;
    }

    let password = random_hex(16);
    let passphrase = random_hex(16);
    run(
        Command::new("/usr/sbin/useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/"])
            .args(["--shell", "/usr/sbin/nologin", "--user-group"])
            .args(["--comment", "sftp-forward test (testkit)"])
            .arg(&user),
        None,
    )?;
    run(
        &mut Command::new("/usr/sbin/chpasswd"),
        Some(&format!("{user}:{password}\n")),
    )?;
    let (uid, gid) = passwd_ids(&user).ok_or_else(|| format!("{user} not in /etc/passwd"))?;
    chown(&upload_dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", upload_dir.display()))?;

    // (file name, ssh-keygen arguments, passphrase); generated in parallel, RSA takes longest.
    let host_keys = style
        .host_keys
        .iter()
        .map(|k| (k.file_name(), k.keygen_args(), ""));
    let specs = host_keys.chain::<[(&str, &[&str], &str); 5]>([
        ("client_ed25519", &["-t", "ed25519"], ""),
        ("client_ed25519_encrypted", &["-t", "ed25519"], &passphrase),
        ("client_rsa", &["-t", "rsa", "-b", "3072", "-m", "PEM"], ""),
        ("client_ecdsa", &["-t", "ecdsa", "-b", "256"], ""),
        ("client_unauthorized_ed25519", &["-t", "ed25519"], ""),
    ]);
    let mut keygens = Vec::new();
    for (name, args, pass) in specs {
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.arg("-q")
            .args(args)
            .args(["-N", pass, "-C", &format!("testkit-{name}")]);
        cmd.arg("-f").arg(etc.join(name));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {SSH_KEYGEN}: {e}"))?;
        keygens.push((cmd, child));
    }
    for (cmd, child) in keygens {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        check(&cmd, out.status, &out.stderr)?;
    }
    let read = |name: &str| -> Result<String, String> {
        let path = etc.join(name);
        fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))
    };
    let mut authorized = String::new();
    for name in [
        "client_ed25519",
        "client_ed25519_encrypted",
        "client_rsa",
        "client_ecdsa",
    ] {
        authorized += &read(&format!("{name}.pub"))?;
    }
    let authorized_path = authorized_dir.join(&user);
    fs::write(&authorized_path, authorized)
        .map_err(|e| format!("write {}: {e}", authorized_path.display()))?;
    set_mode(&authorized_path, 0o644)?;

    let log_path = etc.join("sshd.log");
    let program = install_pam(style, &user, &etc)?.unwrap_or_else(|| SSHD_BIN.into());
    let config = Config {
        path: etc.join("sshd_config"),
        program,
        etc: &etc,
        pid_file: &pid_file,
        authorized_dir: &authorized_dir,
        user: &user,
        chroot: &chroot,
        style,
    };
    let (host, port) = match &netns {
        None => (Ipv4Addr::LOCALHOST, launch(&config, &log_path)?),
        Some(ns) => {
            launch_in_netns(&config, &log_path, ns)?;
            (ns.addr, ns.port)
        }
    };

    let host_key_lines = style
        .host_keys
        .iter()
        .map(|k| Ok(read(&format!("{}.pub", k.file_name()))?.trim().to_owned()))
        .collect::<Result<Vec<String>, String>>()?;
    Ok(Sshd {
        host,
        port,
        host_key_line: host_key_lines[0].clone(),
        host_key_lines,
        host_key_pub_path: etc.join(format!("{}.pub", style.host_keys[0].file_name())),
        user,
        password,
        chroot,
        upload_dir,
        readonly_dir,
        keys: ClientKeys {
            ed25519: read("client_ed25519")?,
            ed25519_encrypted: read("client_ed25519_encrypted")?,
            passphrase,
            rsa: read("client_rsa")?,
            ecdsa: read("client_ecdsa")?,
            unauthorized_ed25519: read("client_unauthorized_ed25519")?,
        },
        log_path,
        pid_file,
        uid,
        gid,
        _watchdog: watchdog,
    })
}

/// Starts sshd on a free port; retries on a new port if the released one was taken meanwhile.
fn launch(config: &Config, log_path: &Path) -> Result<u16, String> {
    for _ in 0..PORT_ATTEMPTS {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?
            .port();
        config.write(Ipv4Addr::LOCALHOST, port)?;
        let (mut child, log_start) = spawn_sshd(Command::new(&config.program), config, log_path)?;

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = read_log_from(log_path, log_start);
                if log.contains("Address already in use") {
                    break; // next port
                }
                return Err(format!("sshd exited ({status}); its log:\n{log}"));
            }
            // sshd writes its PidFile once it listens; the PID tells it is ours, not a squatter.
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if read_pid(config.pid_file) == Some(child.id())
                && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                return Ok(port);
            }
            if Instant::now() > deadline {
                kill_and_reap(&mut child);
                let log = read_log_from(log_path, log_start);
                return Err(format!(
                    "sshd did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT:?}; its log:\n{log}"
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }
    Err(format!(
        "{PORT_ATTEMPTS} ports in a row were taken before sshd could bind them; its log:\n{}",
        read_log_from(log_path, 0)
    ))
}

/// Starts sshd inside a network namespace on a fixed address; ready once its PID file names it
/// (sshd writes the file after it has bound its socket).
fn launch_in_netns(config: &Config, log_path: &Path, ns: &Netns) -> Result<(), String> {
    config.write(ns.addr, ns.port)?;
    // `ip netns exec` execs sshd in place: the child's PID is sshd's.
    let mut ip = Command::new("ip");
    ip.args(["netns", "exec", &ns.name]).arg(&config.program);
    let (mut child, log_start) = spawn_sshd(ip, config, log_path)?;
    let deadline = Instant::now() + START_TIMEOUT;
    while read_pid(config.pid_file) != Some(child.id()) {
        let failed = match child.try_wait() {
            Ok(Some(status)) => Some(format!("sshd exited ({status})")),
            _ if Instant::now() > deadline => {
                kill_and_reap(&mut child);
                Some(format!("sshd did not start within {START_TIMEOUT:?}"))
            }
            _ => None,
        };
        if let Some(why) = failed {
            let log = read_log_from(log_path, log_start);
            return Err(format!(
                "in namespace {} on {}:{}: {why}; its log:\n{log}",
                ns.name, ns.addr, ns.port
            ));
        }
        sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Spawns `cmd` (sshd, or a wrapper that execs it) with sshd's arguments; its early output goes to
/// the log. Returns the child and the log's length before it started.
fn spawn_sshd(mut cmd: Command, config: &Config, log_path: &Path) -> Result<(Child, u64), String> {
    let _ = fs::remove_file(config.pid_file);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| format!("open {}: {e}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let child = cmd
        .args(["-D", "-e", "-f"])
        .arg(&config.path)
        .arg("-E")
        .arg(log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log) // anything said before `-E` takes effect
        .process_group(0) // a Ctrl-C goes to the tests; the watchdog stops sshd
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    Ok((child, log_start))
}

/// The shell run by the watchdog; `$1` = PID file, `$2` = user, `$3` = run directory, `$4` = the
/// daemon's command name (`comm`), `$5` = a PAM service file to remove (or empty).
const WATCHDOG: &str = r#"
trap '' INT HUP
# Blocks until the test process has exited and the kernel closed the only writer.
read -r line
pid=$(cat "$1" 2>/dev/null)
if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$4" ]; then
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
fi
pkill -KILL -u "$2" 2>/dev/null
# userdel fails while another process holds the lock on /etc/passwd: retry a while.
i=0
while id "$2" >/dev/null 2>&1 && ! userdel -f "$2" 2>/dev/null && [ $i -lt 50 ]; do
    sleep 0.2
    i=$((i + 1))
done
rm -rf "$3"
[ -z "$5" ] || rm -f "$5"
"#;

/// Starts the watchdog that stops sshd and removes the user and `run_dir` when this process ends.
fn spawn_watchdog(
    pid_file: &Path,
    user: &str,
    run_dir: &Path,
    style: &Style,
) -> Result<ChildStdin, String> {
    let (comm, pam_file) = match style.uses_pam() {
        // The kernel's command name is the basename of the symlink, cut at 15 bytes.
        true => (program_name(user), pam_service_file(user)),
        false => ("sshd".to_owned(), PathBuf::new()),
    };
    let comm: String = comm.chars().take(15).collect();
    watchdog(
        WATCHDOG,
        &[
            pid_file.as_os_str(),
            user.as_ref(),
            run_dir.as_os_str(),
            comm.as_ref(),
            pam_file.as_os_str(),
        ],
    )
}

/// sshd's rule for `ChrootDirectory`: each component is root-owned and not group/world-writable.
fn check_chroot_path(path: &Path) -> Result<(), String> {
    for dir in path.ancestors() {
        let meta = fs::metadata(dir).map_err(|e| format!("stat {}: {e}", dir.display()))?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} (uid {}, mode {:o}) cannot be on a chroot path: sshd wants every component \
                 root-owned and not group/world-writable",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}
