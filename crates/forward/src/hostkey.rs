//! Host key pinning: the server must present one of the keys listed in
//! `TrustedHostKeys`, or the connection is dropped before authentication.
//! There is no "accept any key" mode anywhere, tests included.

use std::fmt;

use russh::keys::{HashAlg, PublicKey};

use crate::config::ConfigError;

/// The server keys a partner is allowed to present (several, so the partner can rotate).
#[derive(Clone)]
pub struct TrustedHostKeys {
    keys: Vec<PublicKey>,
}

impl fmt::Debug for TrustedHostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| Fingerprint::of(k).to_string()))
            .finish()
    }
}

/// A key's algorithm and SHA256 fingerprint, as `ssh-keygen -l` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// e.g. `SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s`.
    pub sha256: String,
}

impl Fingerprint {
    /// Algorithm and SHA256 fingerprint of `key`.
    pub fn of(key: &PublicKey) -> Fingerprint {
        Fingerprint {
            algorithm: key.algorithm().as_str().to_owned(),
            sha256: key.fingerprint(HashAlg::Sha256).to_string(),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.sha256)
    }
}

/// The OpenSSH public key line of `key` (`ssh-ed25519 AAAA...`), ready to paste into `TrustedHostKeys`.
pub fn public_key_line(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh().unwrap_or_default().trim_end().to_owned()
}

impl TrustedHostKeys {
    /// Parse OpenSSH public key lines, `known_hosts` style with or without the host
    /// field (`[host]:port,alias ssh-ed25519 AAAA... comment` or `ssh-ed25519 AAAA...`).
    /// Blank lines and `#` comments are skipped. The host field is not checked: the
    /// list belongs to one partner already. Markers (`@cert-authority`, `@revoked`) and
    /// hashed-host-only lines without a key are rejected.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        for (i, line) in lines.into_iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(parse_line(line).map_err(|problem| ConfigError::Field {
                field: "TrustedHostKeys",
                problem: format!("entry {i}: {problem}"),
            })?);
        }
        if keys.is_empty() {
            return Err(ConfigError::Field {
                field: "TrustedHostKeys",
                problem: "is empty: list at least one host public key of the partner".into(),
            });
        }
        Ok(TrustedHostKeys { keys })
    }

    /// Whether `offered` is one of the trusted keys (compared by key material, not comment).
    pub fn trusts(&self, offered: &PublicKey) -> bool {
        self.keys.iter().any(|k| k.key_data() == offered.key_data())
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }
}

fn parse_line(line: &str) -> Result<PublicKey, String> {
    if line.starts_with('@') {
        return Err(
            "markers such as @cert-authority or @revoked are not supported; \
                    list plain host keys"
                .into(),
        );
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    // `alg base64 [comment]` or `hosts alg base64 [comment]`.
    for start in 0..fields.len().min(2) {
        if fields.len() >= start + 2 && looks_like_algorithm(fields[start]) {
            return PublicKey::from_openssh(&format!("{} {}", fields[start], fields[start + 1]))
                .map_err(|_| format!("the {} key data is not valid", fields[start]));
        }
    }
    Err(
        "expected an OpenSSH public key line such as `ssh-ed25519 AAAA...` \
         (optionally preceded by a known_hosts host field)"
            .into(),
    )
}

fn looks_like_algorithm(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-sha2-") || field.starts_with("sk-")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn accepts_plain_and_known_hosts_lines() {
        let keys = TrustedHostKeys::parse([
            ED,
            &format!("[sftp.example]:2222,10.0.0.9 {ED} partner@host"),
            "# a comment",
            "",
        ])
        .unwrap();
        assert_eq!(keys.keys().len(), 2);
        assert!(keys.trusts(&keys.keys()[0]));
    }

    #[test]
    fn rejects_empty_garbage_and_markers() {
        let empty = TrustedHostKeys::parse(["", "# nothing"])
            .unwrap_err()
            .to_string();
        assert!(
            empty.contains("TrustedHostKeys") && empty.contains("empty"),
            "{empty}"
        );
        let garbage = TrustedHostKeys::parse([ED, "not a key"])
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("entry 1"), "{garbage}");
        let bad_b64 = TrustedHostKeys::parse(["ssh-ed25519 AAAA!!"])
            .unwrap_err()
            .to_string();
        assert!(bad_b64.contains("ssh-ed25519 key data"), "{bad_b64}");
        let marker = TrustedHostKeys::parse([&format!("@cert-authority * {ED}") as &str]);
        assert!(marker.unwrap_err().to_string().contains("@cert-authority"));
    }

    #[test]
    fn fingerprint_matches_ssh_keygen_format() {
        let key = PublicKey::from_openssh(ED).unwrap();
        let fp = Fingerprint::of(&key);
        assert_eq!(fp.algorithm, "ssh-ed25519");
        assert!(
            fp.sha256.starts_with("SHA256:") && fp.sha256.len() == 50,
            "{fp}"
        );
        assert_eq!(public_key_line(&key), ED);
    }
}
