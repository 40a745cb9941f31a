//! Debian's `gpg` as the partner who decrypts (`Pgp` partners): a throw-away GnuPG home per key
//! pair, keys generated at test time with no passphrase. Private keys never leave the home, which
//! is removed (its agent stopped) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const GPG: &str = "/usr/bin/gpg";
const GPGCONF: &str = "/usr/bin/gpgconf";

/// One GnuPG home.
pub struct Gpg {
    home: PathBuf,
}

impl Gpg {
    /// A new empty home (mode 700) under the temp dir.
    pub fn new() -> Gpg {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let home = std::env::temp_dir().join(format!("gpg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir(&home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Gpg { home }
    }

    /// The home directory (`--homedir`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `gpg --batch <args>` in this home (no passphrase prompts); its stdout. Panics with gpg's
    /// stderr when it fails.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(GPG)
            .arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""])
            .args(args)
            .output()
            .expect("run gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new key pair made by `gpg <args>` (ending in `--quick-gen-key uid algo usage expire`,
    /// maybe after `--faked-system-time`); its fingerprint.
    pub fn generate(&self, args: &[&str]) -> String {
        self.run(args);
        let uid = args[args.len() - 4];
        let listing = String::from_utf8(self.run(&["--with-colons", "--list-keys", uid])).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .expect("a fingerprint")
    }

    /// The armored public key `fpr` (`gpg --armor --export`).
    pub fn public_key(&self, fpr: &str) -> String {
        String::from_utf8(self.run(&["--armor", "--export", fpr])).unwrap()
    }

    /// `gpg --decrypt file`: the plaintext (panics if this home cannot decrypt it).
    pub fn decrypt(&self, file: &Path) -> Vec<u8> {
        self.run(&["--decrypt", file.to_str().unwrap()])
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Gpg::new()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new(GPGCONF)
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A fresh home with one key made by `gpg <args>`: the home, the key's fingerprint and its
/// armored public key.
pub fn key_pair(args: &[&str]) -> (Gpg, String, String) {
    let gpg = Gpg::new();
    let fpr = gpg.generate(args);
    let public = gpg.public_key(&fpr);
    (gpg, fpr, public)
}

/// A partner's key pair as `gpg --quick-gen-key uid` makes it by default (ed25519 primary,
/// cv25519 encryption subkey, never expires): the home and the armored public key.
pub fn partner_key(uid: &str) -> (Gpg, String) {
    let (gpg, _, public) = key_pair(&["--quick-gen-key", uid, "default", "default", "never"]);
    (gpg, public)
}
