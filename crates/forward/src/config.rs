//! The partner connection: the JSON kept in Secrets Manager (AWS Transfer Family
//! connector keys plus connection details), validated once into [`Partner`].
//!
//! ```json
//! { "Host": "sftp.partner.example", "Port": 22, "Username": "acme",
//!   "PrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n...", "Password": "...",
//!   "TrustedHostKeys": ["ssh-ed25519 AAAAC3Nz..."], "RemoteDirectory": "inbound",
//!   "Algorithms": "default" }
//! ```
//!
//! `Algorithms` (optional) is described in [`crate::algorithms`].
//!
//! Parsing never echoes a value of a secret field: the JSON is first read as an
//! untyped tree (syntax errors carry only a line and column) and each field is
//! then checked by hand, so a type error names the field, not its content.

use std::fmt;
use std::sync::Arc;

use russh::keys::PrivateKey;
use serde_json::{Map, Value};

use crate::algorithms::Algorithms;
use crate::hostkey::TrustedHostKeys;
use crate::marker::DoneMarker;
use crate::route::Naming;
use crate::upload::Upload;

/// What is wrong with a partner configuration. Messages name the field, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not a JSON object.
    #[error("partner config is not valid JSON: {problem}")]
    Json { problem: String },

    /// A field has a problem.
    #[error("partner config field {field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },

    /// A field name we do not know (usually a typo).
    #[error("partner config has an unknown field {field:?}; known fields are {known}")]
    UnknownField { field: String, known: String },
}

/// A [`ConfigError::Field`] (also for the settings parsed in their own modules).
pub(crate) fn field(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        problem: problem.into(),
    }
}

/// Every key of the object setting `name` is one of `known`, else an error naming the stray one.
pub(crate) fn only_known(
    name: &'static str,
    obj: &Map<String, Value>,
    known: &[&str],
) -> Result<(), ConfigError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(field(
            name,
            format!(
                "has an unknown field {unknown:?}; known fields are {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A suffix appended to file names (`name`, e.g. `Upload.Suffix`): 1 to 32 bytes, no slashes,
/// backslashes or control characters; `example` is shown in the error.
pub(crate) fn check_suffix(
    name: &'static str,
    suffix: &str,
    example: &str,
) -> Result<(), ConfigError> {
    if suffix.is_empty()
        || suffix.len() > 32
        || suffix.contains('/')
        || suffix.chars().any(|c| c.is_control() || c == '\\')
    {
        return Err(field(
            name,
            format!(
                "must be 1 to 32 bytes without slashes, backslashes or control characters \
                 (e.g. \"{example}\")"
            ),
        ));
    }
    Ok(())
}

/// A string that must never be printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value, for handing to the SSH layer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A validated partner connection: every field can be trusted.
#[derive(Clone)]
pub struct Partner {
    /// Host name or IP address of the partner's SFTP server.
    pub host: String,
    /// TCP port, 22 unless set.
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Password login, tried when no key is set or the key is refused.
    pub password: Option<Secret>,
    /// Decoded (and decrypted) private key, tried first.
    pub private_key: Option<Arc<PrivateKey>>,
    /// The only server keys we accept.
    pub trusted_host_keys: TrustedHostKeys,
    /// Directory on the server under which every file is published (no trailing slash; `.` = login dir).
    pub remote_directory: String,
    /// Most SFTP channels that write one large file at once (`Parallelism`, 1..=16); unset: the
    /// publisher's default (`Tuning::stripes`).
    pub parallelism: Option<usize>,
    /// The SSH algorithms offered (`Algorithms`; the `default` policy unless set). Host-key
    /// algorithms are narrowed to the pinned keys' types when connecting.
    pub algorithms: Algorithms,
    /// The partner's naming rules (`RemotePathTemplate`, `TimeZone`, `MaxNameLength`): see
    /// [`crate::route::Route::with_naming`].
    pub naming: Naming,
    /// Encrypt every file to the partner's OpenPGP keys before it leaves (`Pgp`; see [`crate::pgp`]).
    pub pgp: Option<Arc<crate::pgp::Pgp>>,
    /// How files are put in place (`Upload`; `hidden-temp` unless set).
    pub upload: Upload,
    /// A marker written after each file (`DoneMarker`), if the partner polls for one.
    pub done_marker: Option<DoneMarker>,
    /// A control file written after each batch's files (`ControlFile`; see [`crate::control`]).
    pub control_file: Option<crate::control::ControlFile>,
}

impl fmt::Debug for Partner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partner")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("trusted_host_keys", &self.trusted_host_keys)
            .field("remote_directory", &self.remote_directory)
            .field("parallelism", &self.parallelism)
            .field("algorithms", &self.algorithms.describe())
            .field("naming", &self.naming)
            .field("pgp", &self.pgp)
            .field("upload", &self.upload)
            .field("done_marker", &self.done_marker)
            .field("control_file", &self.control_file)
            .finish()
    }
}

const KNOWN: &[&str] = &[
    "Host",
    "Port",
    "Username",
    "Password",
    "PrivateKey",
    "PrivateKeyPassphrase",
    "TrustedHostKeys",
    "RemoteDirectory",
    "Parallelism",
    "Algorithms",
    "RemotePathTemplate",
    "TimeZone",
    "MaxNameLength",
    "Pgp",
    "Upload",
    "DoneMarker",
    "ControlFile",
];

impl Partner {
    /// Parse and validate the secret's JSON text.
    pub fn from_json(text: &str) -> Result<Partner, ConfigError> {
        Self::from_object(&Self::parse_object(text)?)
    }

    /// The JSON text as an object, with errors that never quote it.
    fn parse_object(text: &str) -> Result<Map<String, Value>, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            // serde_json's syntax errors describe position and kind, never the content.
            problem: format!(
                "{} at line {} column {}",
                classify(&e),
                e.line(),
                e.column()
            ),
        })?;
        let Value::Object(obj) = value else {
            return Err(ConfigError::Json {
                problem: "expected an object { \"Host\": ..., ... }".into(),
            });
        };
        Ok(obj)
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Partner, ConfigError> {
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ConfigError::UnknownField {
                field: unknown.clone(),
                known: KNOWN.join(", "),
            });
        }
        let (host, port) = endpoint(obj)?;
        let username = required_str(obj, "Username")?;
        if username.chars().any(|c| c.is_control()) {
            return Err(field("Username", "must not contain control characters"));
        }
        let password = optional_str(obj, "Password")?.map(Secret);
        let passphrase = optional_str(obj, "PrivateKeyPassphrase")?;
        let private_key = optional_str(obj, "PrivateKey")?
            .map(|pem| decode_private_key(&pem, passphrase.as_deref()))
            .transpose()?
            .map(Arc::new);
        if passphrase.is_some() && private_key.is_none() {
            return Err(field(
                "PrivateKeyPassphrase",
                "is set but PrivateKey is missing",
            ));
        }
        if password.is_none() && private_key.is_none() {
            return Err(field(
                "Password",
                "neither Password nor PrivateKey is set: give at least one",
            ));
        }
        let trusted_host_keys =
            match obj.get("TrustedHostKeys") {
                None | Some(Value::Null) => return Err(field(
                    "TrustedHostKeys",
                    "is required: list the partner's host public keys (e.g. from `ssh-keyscan` \
                     checked with the partner, or `sftp-forward test-connection --print-host-key`)",
                )),
                Some(Value::Array(items)) => {
                    let mut lines = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        match item {
                            Value::String(s) => lines.push(s.as_str()),
                            _ => {
                                return Err(field(
                                    "TrustedHostKeys",
                                    format!("entry {i} is not a string"),
                                ))
                            }
                        }
                    }
                    TrustedHostKeys::parse(lines)?
                }
                Some(Value::String(s)) => TrustedHostKeys::parse(s.lines())?,
                Some(_) => {
                    return Err(field(
                        "TrustedHostKeys",
                        "must be a list of OpenSSH public key lines",
                    ))
                }
            };
        let remote_directory =
            normalise_directory("RemoteDirectory", optional_str(obj, "RemoteDirectory")?)?
                .unwrap_or_else(|| ".".into());
        let upload = Upload::from_json(obj.get("Upload"))?;
        let done_marker = DoneMarker::from_json(obj.get("DoneMarker"))?;
        let parallelism = match obj.get("Parallelism") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|k| (1..=16).contains(&k)) => {
                n.as_u64().map(|k| k as usize)
            }
            Some(_) => {
                return Err(field(
                    "Parallelism",
                    "must be a whole number from 1 to 16 (SFTP channels per large file)",
                ))
            }
        };
        let algorithms = Algorithms::from_json(obj.get("Algorithms"))?;
        let naming = Naming::from_json(obj)?;
        let control_file = crate::control::ControlFile::from_json(obj.get("ControlFile"), &naming)?;
        algorithms.check_pins(&trusted_host_keys)?;
        let pgp = crate::pgp::Pgp::from_json(obj.get("Pgp"))?.map(Arc::new);
        Ok(Partner {
            host,
            port,
            username,
            password,
            private_key,
            trusted_host_keys,
            remote_directory,
            parallelism,
            algorithms,
            naming,
            pgp,
            upload,
            done_marker,
            control_file,
        })
    }

    /// `host:port`, for messages and for connecting.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `Host` and `Port` of a partner config, validated as [`Partner::from_json`] does, with nothing
/// else required: enough to look at the server's host key before `TrustedHostKeys` is filled in
/// (`sftp-forward test-connection --print-host-key`).
pub fn endpoint_from_json(text: &str) -> Result<(String, u16), ConfigError> {
    endpoint(&Partner::parse_object(text)?)
}

/// The `Algorithms` of a partner config, validated, with nothing else required (the default
/// policy when absent): which algorithms to offer when looking at a new partner's host key.
pub fn algorithms_from_json(text: &str) -> Result<Algorithms, ConfigError> {
    Algorithms::from_json(Partner::parse_object(text)?.get("Algorithms"))
}

fn endpoint(obj: &Map<String, Value>) -> Result<(String, u16), ConfigError> {
    let host = required_str(obj, "Host")?;
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) || host.contains('/') {
        return Err(field(
            "Host",
            "must be a host name or IP address, without spaces or a URL scheme",
        ));
    }
    let port = match obj.get("Port") {
        None | Some(Value::Null) => 22,
        Some(Value::Number(n)) => port_from(n.as_u64())?,
        Some(Value::String(s)) => port_from(s.trim().parse().ok())?,
        Some(_) => return Err(field("Port", "must be a number between 1 and 65535")),
    };
    Ok((host, port))
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    }
}

fn port_from(n: Option<u64>) -> Result<u16, ConfigError> {
    match n {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(field("Port", "must be a number between 1 and 65535")),
    }
}

fn optional_str(
    obj: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field(name, "must be a string")),
    }
}

fn required_str(obj: &Map<String, Value>, name: &'static str) -> Result<String, ConfigError> {
    optional_str(obj, name)?
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| field(name, "is required and must be a non-empty string"))
}

fn decode_private_key(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, ConfigError> {
    use russh::keys::Error as K;
    // Secrets Manager UIs often turn newlines into literal "\n": accept both.
    let text = if !text.contains('\n') && text.contains("\\n") {
        text.replace("\\n", "\n")
    } else {
        text.to_owned()
    };
    // The key library's messages can quote parts of the input: map them to our own words.
    russh::keys::decode_secret_key(&text, passphrase).map_err(|e| match e {
        K::KeyIsEncrypted if passphrase.is_none() => {
            field("PrivateKey", "is encrypted: set PrivateKeyPassphrase")
        }
        K::KeyIsEncrypted | K::SshKey(russh::keys::ssh_key::Error::Crypto) => field(
            "PrivateKeyPassphrase",
            "does not decrypt PrivateKey (wrong passphrase?)",
        ),
        K::UnsupportedKeyType { .. } => field(
            "PrivateKey",
            "has an unsupported key type: use ed25519, ECDSA or RSA",
        ),
        _ => field(
            "PrivateKey",
            "is not a valid private key: expected OpenSSH (-----BEGIN OPENSSH PRIVATE KEY-----) \
             or PEM (RSA, EC, PKCS#8) text",
        ),
    })
}

/// A directory setting (`RemoteDirectory`, `Upload.Directory`) checked and without trailing
/// slashes; `None` when not set.
pub(crate) fn normalise_directory(
    name: &'static str,
    dir: Option<String>,
) -> Result<Option<String>, ConfigError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    if dir.chars().any(|c| c.is_control() || c == '\\') {
        return Err(field(
            name,
            "must not contain control characters or backslashes",
        ));
    }
    if dir.split('/').any(|seg| seg == "..") {
        return Err(field(name, "must not contain `..`"));
    }
    let trimmed = dir.trim_end_matches('/');
    Ok(Some(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_owned()
    }))
}
