//! Partner styles: how a not-shared sshd from [`crate::sshd_styled`] is configured the way a real
//! partner configures theirs — its host keys, extra global directives (algorithm lists,
//! `AuthenticationMethods`, `MaxSessions`...), a banner, keyboard-interactive logins through PAM
//! (optionally followed by a one-time password), SFTP requests the server refuses.
//!
//! ```no_run
//! use testkit::{sshd_styled, HostKey, Login, Style};
//! let fips = Style::new()
//!     .host_keys(&[HostKey::EcdsaP384])
//!     .directive("KexAlgorithms ecdh-sha2-nistp256,ecdh-sha2-nistp384")
//!     .directive("Ciphers aes256-ctr,aes128-ctr")
//!     .directive("MACs hmac-sha2-512");
//! let partner = sshd_styled(&fips).unwrap();
//! let appliance = sshd_styled(&Style::new().login(Login::KeyboardInteractive)).unwrap();
//! ```
//!
//! # PAM
//!
//! OpenSSH names its PAM service after its program name (the basename of `argv[0]`). A PAM style
//! starts sshd through a symlink `<run dir>/etc/sshd-<user>` (absolute: sshd re-executes itself by
//! that path) and writes `/etc/pam.d/sshd-<user>`, so the machine's `/etc/pam.d/sshd` is never
//! touched nor relied on; the watchdog removes the service file when the test process ends.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A host key type; [`Style::host_keys`] lists the server's keys in the order sshd loads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKey {
    /// `ssh-ed25519`.
    Ed25519,
    /// RSA 3072 (`rsa-sha2-512`, `rsa-sha2-256`, and `ssh-rsa` where the config allows it).
    Rsa,
    /// `ecdsa-sha2-nistp256`.
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`.
    EcdsaP384,
}

impl HostKey {
    /// The private key's file name under the run's `etc/` (the public one adds `.pub`).
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            HostKey::Ed25519 => "host_ed25519",
            HostKey::Rsa => "host_rsa",
            HostKey::EcdsaP256 => "host_ecdsa256",
            HostKey::EcdsaP384 => "host_ecdsa384",
        }
    }

    pub(crate) fn keygen_args(self) -> &'static [&'static str] {
        match self {
            HostKey::Ed25519 => &["-t", "ed25519"],
            HostKey::Rsa => &["-t", "rsa", "-b", "3072"],
            HostKey::EcdsaP256 => &["-t", "ecdsa", "-b", "256"],
            HostKey::EcdsaP384 => &["-t", "ecdsa", "-b", "384"],
        }
    }
}

/// How the server checks a password (keys are always accepted as well, unless a directive such as
/// `AuthenticationMethods` says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// sshd's own `password` method (`UsePAM no`, `PasswordAuthentication yes`,
    /// keyboard-interactive off): the shared sshd's.
    Password,
    /// Only through `keyboard-interactive`, answered by PAM's `pam_unix` (`UsePAM yes`,
    /// `KbdInteractiveAuthentication yes`, `PasswordAuthentication no`): many appliances' default.
    KeyboardInteractive,
    /// Like [`Login::KeyboardInteractive`], then a second prompt from `pam_oath` (Debian's
    /// libpam-oath): "One-time password (OATH) for `user': ". No client of the tests can answer it.
    OneTimePassword,
}

/// How a styled sshd is configured; [`Style::new`] is the shared sshd's configuration.
#[derive(Clone, Debug)]
pub struct Style {
    pub(crate) host_keys: Vec<HostKey>,
    directives: Vec<String>,
    pub(crate) login: Login,
    max_sessions: u32,
    max_startups: String,
    banner: Option<String>,
    sftp_denied: Option<String>,
}

impl Default for Style {
    fn default() -> Self {
        Style::new()
    }
}

impl Style {
    /// The shared sshd's configuration: one ed25519 host key, OpenSSH's default algorithms,
    /// key and password logins, generous limits (tests open many channels and connections).
    pub fn new() -> Style {
        Style {
            host_keys: vec![HostKey::Ed25519],
            directives: Vec::new(),
            login: Login::Password,
            max_sessions: 16,
            max_startups: "100:30:200".into(),
            banner: None,
            sftp_denied: None,
        }
    }

    /// The server's host keys, in the order sshd loads them ([`crate::Sshd::host_key_lines`]
    /// follows it). Panics on an empty list.
    pub fn host_keys(mut self, keys: &[HostKey]) -> Style {
        assert!(!keys.is_empty(), "Style::host_keys: sshd needs a host key");
        self.host_keys = keys.to_vec();
        self
    }

    /// A global `sshd_config` line (`"KexAlgorithms ..."`, `"AuthenticationMethods ..."`).
    /// Directives come first in the file: sshd keeps the first value of a keyword, so they win
    /// over testkit's own lines (`MaxSessions 1` here beats [`Style::limits`]).
    pub fn directive(mut self, line: &str) -> Style {
        assert!(
            !line.contains('\n'),
            "Style::directive takes one line: {line:?}"
        );
        self.directives.push(line.to_owned());
        self
    }

    /// How passwords are checked.
    pub fn login(mut self, login: Login) -> Style {
        self.login = login;
        self
    }

    /// `MaxSessions` (channels per connection) and `MaxStartups` (e.g. `"3:100:3"`: beyond 3
    /// connections that have not logged in yet, every new one is dropped).
    pub fn limits(mut self, max_sessions: u32, max_startups: &str) -> Style {
        self.max_sessions = max_sessions;
        self.max_startups = max_startups.to_owned();
        self
    }

    /// `Banner`: `text` is shown to every client before it logs in.
    pub fn banner(mut self, text: &str) -> Style {
        self.banner = Some(text.to_owned());
        self
    }

    /// SFTP requests the server refuses with "permission denied" (`internal-sftp -P`, names as
    /// `sftp-server -Q requests` prints them, comma-separated; e.g. `"rename,posix-rename"`).
    pub fn sftp_denied(mut self, requests: &str) -> Style {
        self.sftp_denied = Some(requests.to_owned());
        self
    }
}

impl Style {
    /// Whether sshd asks PAM (and must run under its own service name).
    pub(crate) fn uses_pam(&self) -> bool {
        self.login != Login::Password
    }
}

/// The program (and PAM service) name of a PAM style's sshd.
pub(crate) fn program_name(user: &str) -> String {
    format!("sshd-{user}")
}

/// Where a PAM style's service lives: `/etc/pam.d/sshd-<user>` (removed by the watchdog).
pub(crate) fn pam_service_file(user: &str) -> PathBuf {
    Path::new("/etc/pam.d").join(program_name(user))
}

/// For a PAM style: writes the PAM service (and the OTP users file) and the symlink through which
/// sshd must be started; returns the symlink. `None` for a style without PAM.
pub(crate) fn install_pam(
    style: &Style,
    user: &str,
    etc: &Path,
) -> Result<Option<PathBuf>, String> {
    if !style.uses_pam() {
        return Ok(None);
    }
    let mut auth = "auth required pam_unix.so\n".to_owned();
    if style.login == Login::OneTimePassword {
        if !has_pam_module("pam_oath.so") {
            return Err(
                "pam_oath.so is missing: apt-get install libpam-oath (tests/install)".into(),
            );
        }
        let users = etc.join("oath_users");
        let secret = crate::procs::random_hex(20);
        write(&users, &format!("HOTP/T30 {user} - {secret}\n"))?;
        auth += &format!(
            "auth required pam_oath.so usersfile={} window=20\n",
            users.display()
        );
    }
    let service = format!(
        "# Written by testkit for one styled sshd; removed when its test process ends.\n\
         {auth}account required pam_permit.so\nsession required pam_permit.so\n\
         password required pam_deny.so\n"
    );
    write(&pam_service_file(user), &service)?;
    let program = etc.join(program_name(user));
    symlink(crate::sshd::SSHD_BIN, &program)
        .map_err(|e| format!("symlink {}: {e}", program.display()))?;
    Ok(Some(program))
}

/// Whether PAM's module directory (`/lib/<multiarch>/security`, Debian's) holds `module`.
fn has_pam_module(module: &str) -> bool {
    let Ok(dirs) = fs::read_dir("/lib") else {
        return false;
    };
    dirs.flatten()
        .any(|d| d.path().join("security").join(module).is_file())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Where sshd's config lives and what it refers to.
pub(crate) struct Config<'a> {
    pub path: PathBuf,
    /// sshd itself, or the symlink of a PAM style.
    pub program: PathBuf,
    /// The run's `etc/`: host keys, banner.
    pub etc: &'a Path,
    pub pid_file: &'a Path,
    pub authorized_dir: &'a Path,
    pub user: &'a str,
    pub chroot: &'a Path,
    pub style: &'a Style,
}

impl Config<'_> {
    pub fn write(&self, addr: Ipv4Addr, port: u16) -> Result<(), String> {
        let style = self.style;
        let mut text = "# Written by testkit for one test binary; see crates/testkit.\n".to_owned();
        for line in &style.directives {
            text += line;
            text.push('\n');
        }
        text += &format!("ListenAddress {addr}\nPort {port}\n");
        for key in &style.host_keys {
            text += &format!("HostKey {}\n", self.etc.join(key.file_name()).display());
        }
        let pam = style.uses_pam();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        text += &format!(
            "PidFile {pid_file}
# Keys and authorized_keys may live below world-writable directories.
StrictModes no
UsePAM {pam}
PermitRootLogin no
PasswordAuthentication {password}
PubkeyAuthentication yes
KbdInteractiveAuthentication {kbd}
AuthorizedKeysFile {authorized_dir}/%u
Subsystem sftp internal-sftp -l INFO
MaxSessions {max_sessions}
MaxStartups {max_startups}
LogLevel VERBOSE
PrintMotd no
",
            pid_file = self.pid_file.display(),
            pam = yes_no(pam),
            password = yes_no(!pam),
            kbd = yes_no(pam),
            authorized_dir = self.authorized_dir.display(),
            max_sessions = style.max_sessions,
            max_startups = style.max_startups,
        );
        if let Some(banner) = &style.banner {
            let path = self.etc.join("banner");
            write(&path, banner)?;
            text += &format!("Banner {}\n", path.display());
        }
        let denied = match &style.sftp_denied {
            Some(requests) => format!(" -P {requests}"),
            None => String::new(),
        };
        text += &format!(
            "
Match User {user}
    ChrootDirectory {chroot}
    ForceCommand internal-sftp -l INFO{denied}
    AllowTcpForwarding no
    X11Forwarding no
",
            user = self.user,
            chroot = self.chroot.display(),
        );
        write(&self.path, &text)
    }
}
