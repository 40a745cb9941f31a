//! The harness against the real OpenSSH client: `sftp` logs in with each credential, checking the host
//! key strictly against `host_key_line`, and files it puts land under `upload_dir`; the styled
//! sshd's present the host keys, banner, algorithms, PAM logins and refusals of their style.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::RwLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use testkit::{scratch_dir, sshd, sshd_styled, HostKey, Login, Sshd, Style};

/// `kill_sessions` drops every connection of the binary: that test takes it exclusively.
static SESSIONS: RwLock<()> = RwLock::new(());

/// How `sftp` logs in.
enum Auth<'a> {
    /// A key without passphrase, in batch mode (`-b`).
    Key(&'a str),
    /// An encrypted key; the passphrase is given by `SSH_ASKPASS`.
    KeyWithPassphrase(&'a str, &'a str),
    /// A password, given by `SSH_ASKPASS`.
    Password(&'a str),
}

/// Files for one `sftp` run: known_hosts pinning the server's key, the private key, askpass.
struct Client {
    dir: TempDir,
}

impl Client {
    fn new(s: &Sshd) -> Client {
        let dir = TempDir::new().unwrap();
        let known_hosts = format!("[127.0.0.1]:{} {}\n", s.port, s.host_key_line);
        fs::write(dir.path().join("known_hosts"), known_hosts).unwrap();
        Client { dir }
    }

    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// `sftp` with host key checking strict and nothing from the user's config or agent; the
    /// caller adds its own options, then the destination `user@127.0.0.1`.
    fn command(&self, s: &Sshd, auth: &Auth) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.args(["-F", "/dev/null", "-P", &s.port.to_string()]);
        cmd.arg("-o").arg(format!(
            "UserKnownHostsFile={}",
            self.dir.path().join("known_hosts").display()
        ));
        cmd.args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ]);
        cmd.args(["-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes"]);
        cmd.args(["-o", "ConnectTimeout=10"]);
        let secret = match auth {
            Auth::Key(key) => {
                cmd.arg("-i").arg(self.file("id", key, 0o600));
                cmd.args(["-o", "PasswordAuthentication=no"]);
                None
            }
            Auth::KeyWithPassphrase(key, passphrase) => {
                cmd.arg("-i").arg(self.file("id", key, 0o600));
                cmd.args(["-o", "PasswordAuthentication=no"]);
                Some(passphrase)
            }
            Auth::Password(password) => {
                cmd.args(["-o", "PubkeyAuthentication=no"]);
                Some(password)
            }
        };
        if let Some(secret) = secret {
            // Hex secrets: no quoting needed.
            let askpass = self.file("askpass", &format!("#!/bin/sh\necho '{secret}'\n"), 0o700);
            cmd.env("SSH_ASKPASS", askpass)
                .env("SSH_ASKPASS_REQUIRE", "force");
        }
        cmd
    }

    /// Runs `commands`: with `-b` (batch mode: the first failing command fails the run) for a plain
    /// key, on stdin otherwise (batch mode would refuse to ask for a passphrase or password).
    fn run(&self, s: &Sshd, auth: &Auth, commands: &str) -> Output {
        let mut cmd = self.command(s, auth);
        let stdin = if let Auth::Key(_) = auth {
            cmd.arg("-b").arg(self.file("batch", commands, 0o600));
            String::new()
        } else {
            commands.to_owned()
        };
        let mut child = cmd
            .arg(format!("{}@127.0.0.1", s.user))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sftp");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Puts `bytes` as `<remote>/<name>` and returns where it must appear locally.
fn put(s: &Sshd, auth: &Auth, local: &Path, remote: &str, name: &str, bytes: &[u8]) -> Output {
    let client = Client::new(s);
    let source = client.dir.path().join("source");
    fs::write(&source, bytes).unwrap();
    let out = client.run(
        s,
        auth,
        &format!("put {} {remote}/{name}\n", source.display()),
    );
    assert_eq!(
        fs::read(local.join(name)).ok().as_deref(),
        Some(bytes),
        "{}",
        describe(&out)
    );
    out
}

#[test]
fn a_file_put_with_the_ed25519_key_lands_in_upload_dir() {
    let _shared = SESSIONS.read().unwrap_or_else(|e| e.into_inner());
    let s = sshd();
    let (local, remote) = scratch_dir("put");
    assert!(remote.starts_with("upload/"), "{remote}");
    assert_eq!(
        local,
        s.upload_path(remote.strip_prefix("upload/").unwrap())
    );

    let out = put(
        s,
        &Auth::Key(&s.keys.ed25519),
        &local,
        &remote,
        "hello.txt",
        b"hello, partner\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        s.log()
            .contains(&format!("Accepted publickey for {}", s.user)),
        "{}",
        s.log()
    );
}

#[test]
fn every_authorized_credential_logs_in() {
    let _shared = SESSIONS.read().unwrap_or_else(|e| e.into_inner());
    let s = sshd();
    let (local, remote) = scratch_dir("credentials");
    let k = &s.keys;
    assert!(
        k.rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{}",
        k.rsa
    );
    assert!(k.ecdsa.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    for (name, auth) in [
        ("rsa", Auth::Key(&k.rsa)),
        ("ecdsa", Auth::Key(&k.ecdsa)),
        (
            "encrypted",
            Auth::KeyWithPassphrase(&k.ed25519_encrypted, &k.passphrase),
        ),
        ("password", Auth::Password(&s.password)),
    ] {
        put(s, &auth, &local, &remote, name, name.as_bytes());
    }
}

#[test]
fn the_unauthorized_key_is_refused_and_readonly_is_not_writable() {
    let _shared = SESSIONS.read().unwrap_or_else(|e| e.into_inner());
    let s = sshd();
    let client = Client::new(s);
    let out = client.run(s, &Auth::Key(&s.keys.unauthorized_ed25519), "pwd\n");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        describe(&out)
    );

    let source = client.file("source", "x", 0o600);
    let batch = format!("put {} readonly/x\n", source.display());
    let out = client.run(s, &Auth::Key(&s.keys.ed25519), &batch);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        describe(&out)
    );
    assert_eq!(fs::read_dir(&s.readonly_dir).unwrap().count(), 0);
}

#[test]
fn kill_sessions_drops_open_connections_and_the_daemon_keeps_accepting() {
    let _exclusive = SESSIONS.write().unwrap_or_else(|e| e.into_inner());
    let s = sshd();
    let daemon = s.pid();
    let client = Client::new(s);
    let mut open = client
        .command(s, &Auth::Key(&s.keys.ed25519))
        .args(["-b", "-"])
        .arg(format!("{}@127.0.0.1", s.user))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sftp");
    let mut stdin = open.stdin.take().unwrap();
    stdin.write_all(b"pwd\n").unwrap();
    let mut stdout = BufReader::new(open.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("Remote working directory") {
        line.clear();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "sftp ended before logging in"
        );
    }

    s.kill_sessions();
    // The next request finds the connection gone (`pwd` above was answered locally).
    let _ = stdin.write_all(b"ls\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = open.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sftp still connected after kill_sessions"
        );
        sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert!(!status.success());
    assert_eq!(s.pid(), daemon);

    let (local, remote) = scratch_dir("after-kill");
    put(
        s,
        &Auth::Key(&s.keys.ed25519),
        &local,
        &remote,
        "again",
        b"still accepting",
    );
}

/// `ssh-keyscan -t <type>` against `s`: the key lines it prints, without the host field.
fn keyscan(s: &Sshd, key_type: &str) -> Vec<String> {
    let out = Command::new("ssh-keyscan")
        .args([
            "-T",
            "10",
            "-t",
            key_type,
            "-p",
            &s.port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .expect("run ssh-keyscan");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, key)| key.to_owned()))
        .collect()
}

/// `line` without its comment: `<algorithm> <base64>`.
fn key_of(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts the styles at once (each generates its keys).
fn styled<const N: usize>(styles: [Style; N]) -> [Sshd; N] {
    std::thread::scope(|scope| {
        let started = styles.map(|style| scope.spawn(move || sshd_styled(&style)));
        started.map(|t| t.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
    })
}

#[test]
fn styled_host_keys_are_the_ones_the_server_presents() {
    let [rsa_only, two] = styled([
        Style::new().host_keys(&[HostKey::Rsa]),
        Style::new().host_keys(&[HostKey::Ed25519, HostKey::EcdsaP384]),
    ]);
    assert_eq!(rsa_only.host_key_lines.len(), 1);
    assert!(
        rsa_only.host_key_line.starts_with("ssh-rsa "),
        "{}",
        rsa_only.host_key_line
    );
    assert_eq!(keyscan(&rsa_only, "rsa"), [key_of(&rsa_only.host_key_line)]);
    assert_eq!(keyscan(&rsa_only, "ed25519"), Vec::<String>::new());

    assert_eq!(two.host_key_line, two.host_key_lines[0]);
    assert!(two.host_key_lines[1].starts_with("ecdsa-sha2-nistp384 "));
    assert_eq!(keyscan(&two, "ed25519"), [key_of(&two.host_key_lines[0])]);
    assert_eq!(keyscan(&two, "ecdsa"), [key_of(&two.host_key_lines[1])]);
}

#[test]
fn directives_and_the_banner_take_effect() {
    let [s] = styled([Style::new()
        .banner("Authorized use only: testkit partner\n")
        .directive("KexAlgorithms diffie-hellman-group14-sha256")]);
    let (local, remote) = s.scratch_dir("banner");
    let out = put(
        &s,
        &Auth::Key(&s.keys.ed25519),
        &local,
        &remote,
        "b",
        b"banner",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Authorized use only: testkit partner"),
        "{}",
        describe(&out)
    );

    let mut cmd = Client::new(&s).command(&s, &Auth::Key(&s.keys.ed25519));
    let out = cmd
        .args(["-b", "/dev/null", "-o", "KexAlgorithms=curve25519-sha256"])
        .arg(format!("{}@127.0.0.1", s.user))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no matching key exchange method"),
        "{}",
        describe(&out)
    );
}

#[test]
fn keyboard_interactive_logins_are_answered_by_pam_under_its_own_service() {
    let [s] = styled([Style::new().login(Login::KeyboardInteractive)]);
    let service = fs::read_to_string(format!("/etc/pam.d/sshd-{}", s.user)).unwrap();
    assert!(service.contains("pam_unix.so"), "{service}");
    let (local, remote) = s.scratch_dir("kbd");
    put(
        &s,
        &Auth::Password(&s.password),
        &local,
        &remote,
        "k",
        b"kbd",
    );
    let accepted = format!("Accepted keyboard-interactive/pam for {}", s.user);
    assert!(s.log().contains(&accepted), "{}", s.log());
}

#[test]
fn a_one_time_password_style_asks_the_password_then_an_otp() {
    let [s] = styled([Style::new().login(Login::OneTimePassword)]);
    let client = Client::new(&s);
    let prompts = client.dir.path().join("prompts");
    // Answers every prompt with the password and records it: the OTP prompt gets a wrong answer.
    let askpass = client.file(
        "record",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\necho '{}'\n",
            prompts.display(),
            s.password
        ),
        0o700,
    );
    let out = client
        .command(&s, &Auth::Password(&s.password))
        .env("SSH_ASKPASS", askpass)
        .args(["-o", "NumberOfPasswordPrompts=1"])
        .arg(format!("{}@127.0.0.1", s.user))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    let asked = fs::read_to_string(&prompts).unwrap_or_default();
    let first = asked.lines().next().unwrap_or_default();
    assert!(first.contains("Password"), "{asked}");
    assert!(
        asked.contains(&format!("One-time password (OATH) for `{}'", s.user)),
        "{asked}\n{}",
        describe(&out)
    );
}

#[test]
fn refused_sftp_requests_fail_and_the_rest_works() {
    let [s] = styled([Style::new().sftp_denied("rename,posix-rename")]);
    let (local, remote) = s.scratch_dir("norename");
    let client = Client::new(&s);
    let source = client.file("source", "stays", 0o600);
    let batch = format!(
        "put {} {remote}/a\nrename {remote}/a {remote}/b\n",
        source.display()
    );
    let out = client.run(&s, &Auth::Key(&s.keys.ed25519), &batch);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(fs::read(local.join("a")).unwrap(), b"stays");
    assert!(!local.join("b").exists());
}
