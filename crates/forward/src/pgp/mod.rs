//! The partner's `Pgp` setting: files are encrypted to the partner's OpenPGP key(s) on the way
//! out ([`Pgp::encrypt`], streamed), optionally compressed, and published under the remote name
//! plus a suffix.
//!
//! ```json
//! "Pgp": { "PublicKeys": ["-----BEGIN PGP PUBLIC KEY BLOCK-----\n..."],
//!          "Compression": "none", "Suffix": ".pgp" }
//! ```
//!
//! Each key is checked once, when the partner JSON is read: ASCII-armored, a public key (not a
//! private one), not revoked, not expired, and with at least one (sub)key that may encrypt and is
//! valid now. Each such (sub)key becomes a recipient. Anything else is a permanent
//! [`ConfigError`] naming `Pgp.PublicKeys` and the entry.

mod encrypt;
mod keys;

use std::fmt;

use ::pgp::types::CompressionAlgorithm;
use serde_json::{Map, Value};

use crate::config::{field, ConfigError};
use crate::route::{RemotePath, RouteError};
pub use encrypt::Encrypting;
use keys::Recipient;

/// Compression inside the encrypted message (`Pgp.Compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Literal data only (`none`, the default): the ciphertext is the plaintext plus ~0.1%.
    #[default]
    None,
    /// RFC 1951 deflate (`zip`, what `gpg` uses by default).
    Zip,
    /// RFC 1950 zlib (`zlib`).
    Zlib,
}

impl Compression {
    fn algorithm(self) -> Option<CompressionAlgorithm> {
        match self {
            Compression::None => None,
            Compression::Zip => Some(CompressionAlgorithm::ZIP),
            Compression::Zlib => Some(CompressionAlgorithm::ZLIB),
        }
    }
}

/// A validated `Pgp` setting.
#[derive(Clone)]
pub struct Pgp {
    recipients: Vec<Recipient>,
    /// Compression inside the message.
    pub compression: Compression,
    /// Appended to the remote file name (`.pgp` unless set; may be empty).
    pub suffix: String,
}

impl fmt::Debug for Pgp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pgp")
            .field("recipients", &self.fingerprints())
            .field("compression", &self.compression)
            .field("suffix", &self.suffix)
            .finish()
    }
}

const KNOWN: &[&str] = &["PublicKeys", "Compression", "Suffix"];

impl Pgp {
    /// The `Pgp` field of the partner JSON: `None` when absent or null.
    pub fn from_json(value: Option<&Value>) -> Result<Option<Pgp>, ConfigError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(obj)) => Pgp::from_object(obj).map(Some),
            Some(_) => Err(field(
                "Pgp",
                "must be an object { \"PublicKeys\": [...], \"Compression\": ..., \"Suffix\": ... }",
            )),
        }
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Pgp, ConfigError> {
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ConfigError::UnknownField {
                field: format!("Pgp.{unknown}"),
                known: KNOWN
                    .iter()
                    .map(|k| format!("Pgp.{k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let texts: Vec<&str> = match obj.get("PublicKeys") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().ok_or_else(|| {
                        field("Pgp.PublicKeys", format!("entry {i} is not a string"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(Value::String(s)) => vec![s.as_str()],
            _ => {
                return Err(field(
                    "Pgp.PublicKeys",
                    "is required: a list of the partner's ASCII-armored OpenPGP public keys",
                ))
            }
        };
        let now = ::pgp::types::Timestamp::now();
        let mut recipients = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let found = keys::recipients(text, now)
                .map_err(|problem| field("Pgp.PublicKeys", format!("entry {i} {problem}")))?;
            recipients.extend(found);
        }
        let compression = match obj.get("Compression") {
            None | Some(Value::Null) => Compression::None,
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "none" | "uncompressed" => Compression::None,
                "zip" => Compression::Zip,
                "zlib" => Compression::Zlib,
                _ => return Err(field("Pgp.Compression", "must be none, zip or zlib")),
            },
            Some(_) => return Err(field("Pgp.Compression", "must be none, zip or zlib")),
        };
        let suffix = match obj.get("Suffix") {
            None | Some(Value::Null) => ".pgp".to_owned(),
            Some(Value::String(s)) if valid_suffix(s) => s.clone(),
            Some(_) => {
                return Err(field(
                    "Pgp.Suffix",
                    "must be a string without `/`, `\\` or control characters (e.g. \".pgp\", \".gpg\" or \"\")",
                ))
            }
        };
        Ok(Pgp {
            recipients,
            compression,
            suffix,
        })
    }

    /// The fingerprints (hex) of the (sub)keys every file is encrypted to.
    pub fn fingerprints(&self) -> Vec<String> {
        self.recipients.iter().map(Recipient::fingerprint).collect()
    }

    /// `path` with [`Pgp::suffix`] appended to its file name.
    pub fn remote_path(&self, path: &RemotePath) -> Result<RemotePath, RouteError> {
        if self.suffix.is_empty() {
            return Ok(path.clone());
        }
        RemotePath::parse(&format!("{}{}", path.as_str(), self.suffix))
    }
}

fn valid_suffix(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c == '/' || c == '\\') && s != "." && s != ".."
}
