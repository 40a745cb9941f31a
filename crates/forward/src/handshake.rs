//! The SSH handshake: the algorithms we offer (the partner's [`Algorithms`], host-key algorithms
//! narrowed to the pinned keys), the host-key check against the pins, what was negotiated, and
//! errors that say which side offered what.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tokio::net::TcpStream;

use crate::algorithms::{policies_reaching, Algorithms, Kind};
use crate::error::Error;
use crate::hostkey::{Fingerprint, TrustedHostKeys};
use crate::session::{bounded, lock, Tuning};

/// The algorithms a connection negotiated, as OpenSSH spells them (`ssh -v` shows the same).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    /// Key exchange, e.g. `curve25519-sha256`.
    pub kex: String,
    /// Host-key signature algorithm, e.g. `ssh-ed25519` or `rsa-sha2-512`.
    pub host_key: String,
    /// Cipher (both directions), e.g. `aes128-gcm@openssh.com`.
    pub cipher: String,
    /// MAC (client to server); `implicit` with an AEAD cipher (AES-GCM, ChaCha20-Poly1305), which
    /// authenticates by itself (OpenSSH's `ssh -v` says `<implicit>`).
    pub mac: String,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kex {}, host key {}, cipher {}, MAC {}",
            self.kex,
            self.host_key,
            self.cipher,
            match self.mac.as_str() {
                "implicit" => "implicit (AEAD cipher)",
                mac => mac,
            }
        )
    }
}

/// The server and we share no algorithm of one kind: who offered what, and what would reach it.
#[derive(Debug, thiserror::Error)]
#[error(
    "no common {kind} algorithm with {addr}: we offered ({policy}) {ours}; the server offers \
     {theirs}; {hint}"
)]
pub struct NoCommon {
    pub addr: String,
    /// `key exchange`, `host key`, `cipher` or `MAC`.
    pub kind: &'static str,
    /// The partner's `Algorithms` in words.
    pub policy: String,
    pub ours: String,
    pub theirs: String,
    /// What would reach the server.
    pub hint: String,
}

/// The SSH client handler: accepts exactly the pinned host keys (none at all for a scan) and
/// remembers the key that was offered and what was negotiated.
pub(crate) struct Pinned {
    /// `None`: trust nothing, the handshake always stops at the key check.
    trusted: Option<TrustedHostKeys>,
    offered: Arc<Mutex<Option<PublicKey>>>,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (key, trusted) = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => (
                key.clone(),
                self.trusted.as_ref().is_some_and(|t| t.trusts(key)),
            ),
            // We never advertise certificate algorithms; a certificate is not a pinned key.
            PublicKeyOrCertificate::Certificate(cert) => (cert.public_key().clone().into(), false),
        };
        *lock(&self.offered) = Some(key);
        Ok(trusted)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let mut negotiated = lock(&self.negotiated);
        // The first key exchange is the one to report; a re-key keeps the same choices.
        if negotiated.is_none() {
            *negotiated = Some(Negotiated {
                kex: names.kex.as_ref().to_owned(),
                host_key: names.key.to_string(),
                cipher: names.cipher.as_ref().to_owned(),
                // russh still picks a MAC name when the cipher needs none: not used, not shown.
                mac: match names.cipher.as_ref() {
                    c if c.ends_with("-gcm@openssh.com") || c.starts_with("chacha20-poly1305") => {
                        "implicit".to_owned()
                    }
                    _ => names.client_mac.as_ref().to_owned(),
                },
            });
        }
        Ok(())
    }
}

/// A connection whose host key was checked and accepted, not yet logged in.
pub(crate) struct Handshake {
    pub ssh: client::Handle<Pinned>,
    pub local_addr: SocketAddr,
    pub host_key: Fingerprint,
    pub negotiated: Negotiated,
}

/// Connect to `host:port` and run the SSH handshake offering `algorithms`, with host-key
/// algorithms narrowed to the key types of `offer_for` when given. Only `trust` is accepted: with
/// `None` the handshake always stops at the key check (see [`scan_host_key`]). Returns the
/// outcome and the host key the server presented, if it got that far. Bounded by
/// `tuning.connect_timeout`.
async fn connect(
    host: &str,
    port: u16,
    algorithms: &Algorithms,
    offer_for: Option<&TrustedHostKeys>,
    trust: Option<&TrustedHostKeys>,
    tuning: &Tuning,
) -> (Result<Handshake, Error>, Option<PublicKey>) {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let offered = Arc::new(Mutex::new(None));
    let negotiated = Arc::new(Mutex::new(None));
    let handler = Pinned {
        trusted: trust.cloned(),
        offered: offered.clone(),
        negotiated: negotiated.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(tuning.keepalive_interval),
        keepalive_max: 3,
        nodelay: true,
        preferred: algorithms.preferred(offer_for),
        ..client::Config::default()
    });
    let result = bounded(tuning.connect_timeout, "connecting", &addr, async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        tcp.set_nodelay(true).ok();
        let local_addr = tcp.local_addr().map_err(|source| Error::Connect {
            addr: addr.clone(),
            source,
        })?;
        let ssh = client::connect_stream(config, tcp, handler)
            .await
            .map_err(|source| {
                handshake_error(
                    &addr,
                    source,
                    &offered,
                    algorithms,
                    offer_for,
                    trust.is_some(),
                )
            })?;
        let host_key = lock(&offered)
            .as_ref()
            .map(Fingerprint::of)
            .expect("the handshake checked a host key");
        let negotiated = lock(&negotiated)
            .clone()
            .expect("a finished handshake ran a key exchange");
        Ok(Handshake {
            ssh,
            local_addr,
            host_key,
            negotiated,
        })
    })
    .await;
    let key = lock(&offered).take();
    (result, key)
}

/// Connect, check the host key against `pins` (offering only algorithms that can verify them)
/// and finish the key exchange.
pub(crate) async fn handshake(
    host: &str,
    port: u16,
    algorithms: &Algorithms,
    pins: &TrustedHostKeys,
    tuning: &Tuning,
) -> Result<Handshake, Error> {
    connect(host, port, algorithms, Some(pins), Some(pins), tuning)
        .await
        .0
}

/// Connect to `host:port` only as far as the server's host key and abort the handshake there:
/// the key is never accepted and nothing is authenticated or sent. This is how an operator sees
/// the key of a new partner (to check it with the partner, then add it to `TrustedHostKeys`);
/// it trusts nothing by itself. `algorithms` decide which of the server's host keys is shown:
/// all of its host-key algorithms are offered, or only those of `pins` when given (the key the
/// publisher will be shown). Bounded by `tuning.connect_timeout`.
pub async fn scan_host_key(
    host: &str,
    port: u16,
    algorithms: &Algorithms,
    pins: Option<&TrustedHostKeys>,
    tuning: &Tuning,
) -> Result<PublicKey, Error> {
    // Nothing is trusted here, even when `pins` narrow what is offered.
    match connect(host, port, algorithms, pins, None, tuning).await {
        (_, Some(key)) => Ok(key),
        (Err(e), None) => Err(e),
        // Not reachable: the handshake cannot succeed without a host key check.
        (Ok(_), None) => Err(Error::Ssh {
            step: "handshake",
            addr: format!("{host}:{port}"),
            source: russh::Error::UnknownKey,
        }),
    }
}

/// Our words for a failed handshake: an untrusted key names its fingerprint, a missing common
/// algorithm says who offered what and what would reach the server.
fn handshake_error(
    addr: &str,
    source: russh::Error,
    offered: &Mutex<Option<PublicKey>>,
    algorithms: &Algorithms,
    pins: Option<&TrustedHostKeys>,
    trusting: bool,
) -> Error {
    let offered = lock(offered).as_ref().map(Fingerprint::of);
    match (source, offered) {
        (russh::Error::UnknownKey, Some(fp)) if trusting => Error::UntrustedHostKey {
            addr: addr.to_owned(),
            algorithm: fp.algorithm,
            fingerprint: fp.sha256,
        },
        (russh::Error::NoCommonAlgo { kind, ours, theirs }, _) => match Kind::of(&kind) {
            Some(kind) => Error::NoCommonAlgorithm(Box::new(NoCommon {
                addr: addr.to_owned(),
                kind: kind.what(),
                hint: no_common_hint(kind, &theirs, algorithms, pins),
                policy: algorithms.describe(),
                ours: ours.join(","),
                theirs: theirs.join(","),
            })),
            None => Error::Ssh {
                step: "handshake",
                addr: addr.to_owned(),
                source: russh::Error::NoCommonAlgo { kind, ours, theirs },
            },
        },
        (source, _) => Error::Ssh {
            step: "handshake",
            addr: addr.to_owned(),
            source,
        },
    }
}

/// What would reach a server that shares no host-key algorithm with us, given the pins: a policy
/// that can check a pinned key with what the server signs with, else the key to pin.
fn host_key_hint(theirs: &[String], algorithms: &Algorithms, pins: &TrustedHostKeys) -> String {
    use crate::algorithms::Policy;
    let checks = |p: &Algorithms| {
        p.host_keys_for(pins)
            .iter()
            .map(|a| a.to_string())
            .find(|a| theirs.contains(a))
    };
    let reaching = Policy::ALL
        .into_iter()
        .filter(|p| algorithms.customised || *p != algorithms.policy)
        .find_map(|p| Some((p, checks(&Algorithms::of(p))?)));
    if let Some((policy, alg)) = reaching {
        return format!(
            "set \"Algorithms\": \"{policy}\" in the partner JSON (it checks your pinned key \
             signed with {alg}){}",
            match policy {
                Policy::Legacy => "; ssh-rsa signatures use SHA-1: ask the partner to upgrade",
                _ => "",
            }
        );
    }
    let pinned: Vec<String> = pins
        .keys()
        .iter()
        .map(|k| k.algorithm().as_str().to_owned())
        .collect();
    // The server's key type (an RSA key signs as rsa-sha2-* or ssh-rsa: its type is ssh-rsa).
    let known = Algorithms::of(Policy::Legacy).names(Kind::HostKey);
    let Some(alg) = theirs.iter().find(|t| known.contains(t)) else {
        return format!(
            "this client implements none of the server's host key algorithms ({}); ask the \
             partner to enable an ed25519, ECDSA or RSA host key",
            theirs.join(",")
        );
    };
    let key_type = match alg.starts_with("rsa-sha2-") || alg == "ssh-rsa" {
        true => "ssh-rsa",
        false => alg.as_str(),
    };
    let legacy_only = !Algorithms::of(Policy::Default)
        .names(Kind::HostKey)
        .iter()
        .any(|a| theirs.contains(a));
    format!(
        "the server has a {key_type} host key, but TrustedHostKeys pins only {} keys: ask the \
         partner for its {key_type} host key (`sftp-forward test-connection --print-host-key` \
         shows the server's key), confirm it with them and add it{}",
        pinned.join(", "),
        match legacy_only {
            true => ", and set \"Algorithms\": \"legacy\" (it signs only with ssh-rsa, SHA-1)",
            false => "",
        }
    )
}

/// What would reach a server that shares no `kind` algorithm with us.
fn no_common_hint(
    kind: Kind,
    theirs: &[String],
    algorithms: &Algorithms,
    pins: Option<&TrustedHostKeys>,
) -> String {
    if let (Kind::HostKey, Some(pins)) = (kind, pins) {
        return host_key_hint(theirs, algorithms, pins);
    }
    let reaching: Vec<_> = policies_reaching(kind, theirs)
        .into_iter()
        .filter(|(p, _)| algorithms.customised || *p != algorithms.policy)
        .collect();
    match reaching.first() {
        Some((policy, common)) => format!(
            "set \"Algorithms\": \"{policy}\" in the partner JSON (it offers {common}){}",
            match policy {
                crate::algorithms::Policy::Legacy => {
                    "; legacy algorithms are weaker: ask the partner to upgrade their server"
                }
                _ => "",
            }
        ),
        None => {
            let supported = crate::algorithms::supported(kind);
            match theirs.iter().find(|t| supported.contains(t)) {
                Some(name) => format!(
                    "no named policy offers what the server does; list {name} in {} to reach it",
                    kind.field()
                ),
                None => format!(
                    "this client implements none of the server's {} algorithms; ask the partner \
                     to enable one of: {}",
                    kind.what(),
                    supported.join(", ")
                ),
            }
        }
    }
}
