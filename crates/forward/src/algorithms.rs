//! Which SSH algorithms we offer a partner: a named policy from the partner JSON's `Algorithms`
//! (`default`, `fips`, `legacy`), optionally with explicit lists that replace the policy's list of
//! one kind, checked against what the SSH library implements. Host-key algorithms are further
//! narrowed to the types of the pinned keys, so the server presents a key we can check.
//!
//! ```json
//! "Algorithms": "legacy"
//! "Algorithms": { "Policy": "fips", "Ciphers": ["aes256-ctr"], "Macs": ["hmac-sha2-512"] }
//! ```

use std::borrow::Cow;
use std::fmt;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey};
use russh::{cipher, kex, mac};
use serde_json::{Map, Value};

use crate::config::{field, only_known, ConfigError};
use crate::hostkey::TrustedHostKeys;

/// A named set of algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Modern algorithms only (what OpenSSH 9 offers by default, minus SHA-1 anywhere).
    Default,
    /// Only FIPS 140-approved algorithms: NIST-curve ECDH and MODP DH with SHA-2, AES (GCM, CTR),
    /// HMAC-SHA2, ECDSA and RSA-SHA2 host keys. The algorithm choice, not a validated module.
    Fips,
    /// [`Policy::Default`] plus what old servers need, preferred last: `ssh-rsa` (SHA-1) host-key
    /// signatures, `diffie-hellman-group14-sha1`, `diffie-hellman-group-exchange-sha1`,
    /// `hmac-sha1` (and its ETM form), and AES-CBC.
    Legacy,
}

impl Policy {
    /// Every policy, the strictest useful order for hints.
    pub const ALL: [Policy; 3] = [Policy::Default, Policy::Fips, Policy::Legacy];

    /// The name used in the partner JSON.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::Fips => "fips",
            Policy::Legacy => "legacy",
        }
    }

    fn parse(name: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    fn kex(self) -> Vec<kex::Name> {
        let fips = [
            kex::ECDH_SHA2_NISTP256,
            kex::ECDH_SHA2_NISTP384,
            kex::ECDH_SHA2_NISTP521,
            kex::DH_GEX_SHA256,
            kex::DH_G16_SHA512,
            kex::DH_G18_SHA512,
            kex::DH_G14_SHA256,
        ];
        let modern = [
            &[
                kex::MLKEM768X25519_SHA256,
                kex::CURVE25519,
                kex::CURVE25519_PRE_RFC_8731,
            ][..],
            &fips,
        ]
        .concat();
        match self {
            Policy::Default => modern,
            Policy::Fips => fips.to_vec(),
            Policy::Legacy => [&modern[..], &[kex::DH_G14_SHA1, kex::DH_GEX_SHA1]].concat(),
        }
    }

    fn ciphers(self) -> Vec<cipher::Name> {
        // AES-GCM first: with AES-NI it is ~25% faster than chacha20-poly1305 here.
        let modern = [
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_192_CTR,
            cipher::AES_128_CTR,
        ];
        match self {
            Policy::Default => modern.to_vec(),
            Policy::Fips => modern
                .into_iter()
                .filter(|c| *c != cipher::CHACHA20_POLY1305)
                .collect(),
            Policy::Legacy => [
                &modern[..],
                &[
                    cipher::AES_256_CBC,
                    cipher::AES_192_CBC,
                    cipher::AES_128_CBC,
                ],
            ]
            .concat(),
        }
    }

    fn macs(self) -> Vec<mac::Name> {
        let modern = [
            mac::HMAC_SHA512_ETM,
            mac::HMAC_SHA256_ETM,
            mac::HMAC_SHA512,
            mac::HMAC_SHA256,
        ];
        match self {
            Policy::Default | Policy::Fips => modern.to_vec(),
            Policy::Legacy => [&modern[..], &[mac::HMAC_SHA1_ETM, mac::HMAC_SHA1]].concat(),
        }
    }

    fn host_keys(self) -> Vec<Algorithm> {
        let ecdsa = |curve| Algorithm::Ecdsa { curve };
        let rsa = |hash| Algorithm::Rsa { hash };
        let fips = [
            ecdsa(EcdsaCurve::NistP256),
            ecdsa(EcdsaCurve::NistP384),
            ecdsa(EcdsaCurve::NistP521),
            rsa(Some(HashAlg::Sha512)),
            rsa(Some(HashAlg::Sha256)),
        ];
        match self {
            Policy::Fips => fips.to_vec(),
            Policy::Default => [&[Algorithm::Ed25519][..], &fips].concat(),
            Policy::Legacy => [&[Algorithm::Ed25519][..], &fips, &[rsa(None)]].concat(),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One kind of algorithm negotiated by SSH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kex,
    HostKey,
    Cipher,
    Mac,
}

impl Kind {
    /// The key of its list in `Algorithms`.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Kex => "Algorithms.Kex",
            Kind::HostKey => "Algorithms.HostKeyAlgorithms",
            Kind::Cipher => "Algorithms.Ciphers",
            Kind::Mac => "Algorithms.Macs",
        }
    }

    /// In words, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Kex => "key exchange",
            Kind::HostKey => "host key",
            Kind::Cipher => "cipher",
            Kind::Mac => "MAC",
        }
    }

    /// The kind of a negotiation failure reported by russh (compression is never restricted).
    pub(crate) fn of(kind: &russh::AlgorithmKind) -> Option<Kind> {
        match kind {
            russh::AlgorithmKind::Kex => Some(Kind::Kex),
            russh::AlgorithmKind::Key => Some(Kind::HostKey),
            russh::AlgorithmKind::Cipher => Some(Kind::Cipher),
            russh::AlgorithmKind::Mac => Some(Kind::Mac),
            russh::AlgorithmKind::Compression => None,
        }
    }
}

/// The algorithms offered to one partner, most preferred first.
#[derive(Clone, Debug, PartialEq)]
pub struct Algorithms {
    /// The named policy the lists start from.
    pub policy: Policy,
    /// Whether any list was given explicitly (replacing the policy's).
    pub customised: bool,
    kex: Vec<kex::Name>,
    ciphers: Vec<cipher::Name>,
    macs: Vec<mac::Name>,
    host_keys: Vec<Algorithm>,
}

impl Default for Algorithms {
    fn default() -> Self {
        Algorithms::of(Policy::Default)
    }
}

const KNOWN: &[&str] = &["Policy", "Kex", "Ciphers", "Macs", "HostKeyAlgorithms"];

impl Algorithms {
    /// Exactly the lists of `policy`.
    pub fn of(policy: Policy) -> Algorithms {
        Algorithms {
            policy,
            customised: false,
            kex: policy.kex(),
            ciphers: policy.ciphers(),
            macs: policy.macs(),
            host_keys: policy.host_keys(),
        }
    }

    /// The partner JSON's `Algorithms` value: a policy name, or an object with an optional
    /// `Policy` and optional lists. Errors name the field and the offending algorithm (never a
    /// secret: these are public names) and list what is supported.
    pub(crate) fn from_json(value: Option<&Value>) -> Result<Algorithms, ConfigError> {
        match value {
            None | Some(Value::Null) => Ok(Algorithms::default()),
            Some(Value::String(name)) => policy_named(name).map(Algorithms::of),
            Some(Value::Object(obj)) => Algorithms::from_object(obj),
            Some(_) => Err(field(
                "Algorithms",
                "must be a policy name (\"default\", \"fips\", \"legacy\") or an object \
                 { \"Policy\": ..., \"Kex\": [...], \"Ciphers\": [...], \"Macs\": [...], \
                 \"HostKeyAlgorithms\": [...] }",
            )),
        }
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Algorithms, ConfigError> {
        only_known("Algorithms", obj, KNOWN)?;
        let policy = match obj.get("Policy") {
            None | Some(Value::Null) => Policy::Default,
            Some(Value::String(name)) => policy_named(name)?,
            Some(_) => return Err(field("Algorithms.Policy", "must be a string")),
        };
        let mut algorithms = Algorithms::of(policy);
        let lists = [
            ("Kex", Kind::Kex),
            ("Ciphers", Kind::Cipher),
            ("Macs", Kind::Mac),
            ("HostKeyAlgorithms", Kind::HostKey),
        ];
        for (key, kind) in lists {
            let Some(names) = string_list(obj.get(key), kind)? else {
                continue;
            };
            algorithms.customised = true;
            match kind {
                Kind::Kex => algorithms.kex = parse_all(&names, kind, |n| n.try_into().ok())?,
                Kind::Cipher => {
                    algorithms.ciphers = parse_all(&names, kind, |n| n.try_into().ok())?
                }
                Kind::Mac => algorithms.macs = parse_all(&names, kind, |n| n.try_into().ok())?,
                Kind::HostKey => algorithms.host_keys = parse_all(&names, kind, host_key_alg)?,
            }
        }
        Ok(algorithms)
    }

    /// The names of one kind, most preferred first, as OpenSSH spells them.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Kex => self.kex.iter().map(|n| n.as_ref().to_owned()).collect(),
            Kind::Cipher => self.ciphers.iter().map(|n| n.as_ref().to_owned()).collect(),
            Kind::Mac => self.macs.iter().map(|n| n.as_ref().to_owned()).collect(),
            Kind::HostKey => self.host_keys.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The host-key algorithms that can verify one of `pins`, in this set's order: what we offer
    /// so the server presents a key we can check.
    pub fn host_keys_for(&self, pins: &TrustedHostKeys) -> Vec<Algorithm> {
        self.host_keys
            .iter()
            .filter(|a| pins.keys().iter().any(|k| verifies(a, k)))
            .cloned()
            .collect()
    }

    /// Checks that at least one pinned key can be verified with these host-key algorithms.
    pub(crate) fn check_pins(&self, pins: &TrustedHostKeys) -> Result<(), ConfigError> {
        if !self.host_keys_for(pins).is_empty() {
            return Ok(());
        }
        let mut types: Vec<String> = pins
            .keys()
            .iter()
            .map(|k| k.algorithm().as_str().to_owned())
            .collect();
        types.dedup();
        Err(field(
            "TrustedHostKeys",
            format!(
                "has only {} keys, which the {} host-key algorithms ({}) cannot check: pin a key \
                 of another type, or allow its algorithm in Algorithms{}",
                types.join(", "),
                self.describe(),
                self.names(Kind::HostKey).join(", "),
                match self.policy {
                    Policy::Fips => " (ssh-ed25519 is not a FIPS algorithm)",
                    _ => "",
                }
            ),
        ))
    }

    /// `policy "legacy"`, or `policy "fips" with explicit lists`.
    pub fn describe(&self) -> String {
        match self.customised {
            false => format!("policy {:?}", self.policy.name()),
            true => format!("policy {:?} with explicit lists", self.policy.name()),
        }
    }

    /// russh's preference lists: host-key algorithms narrowed to `pins` (all of this set's when
    /// `None`: a scan that trusts nothing); the client's protocol extensions always added.
    pub(crate) fn preferred(&self, pins: Option<&TrustedHostKeys>) -> russh::Preferred {
        let mut kex = self.kex.clone();
        kex.extend([
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        ]);
        let host_keys = match pins {
            Some(pins) => self.host_keys_for(pins),
            None => self.host_keys.clone(),
        };
        russh::Preferred {
            kex: Cow::Owned(kex),
            key: Cow::Owned(host_keys),
            cipher: Cow::Owned(self.ciphers.clone()),
            mac: Cow::Owned(self.macs.clone()),
            ..russh::Preferred::DEFAULT
        }
    }
}

/// The named policies whose list of `kind` shares an algorithm with `theirs` (the server's
/// offer), each with the first shared one: what an operator could switch to.
pub fn policies_reaching(kind: Kind, theirs: &[String]) -> Vec<(Policy, String)> {
    Policy::ALL
        .into_iter()
        .filter_map(|p| {
            Algorithms::of(p)
                .names(kind)
                .into_iter()
                .find(|ours| theirs.contains(ours))
                .map(|common| (p, common))
        })
        .collect()
}

/// Whether a signature made with host-key algorithm `alg` can be checked with `key`.
fn verifies(alg: &Algorithm, key: &PublicKey) -> bool {
    match alg {
        Algorithm::Rsa { .. } => key.algorithm().is_rsa(),
        other => key.algorithm() == *other,
    }
}

fn policy_named(name: &str) -> Result<Policy, ConfigError> {
    Policy::parse(name).ok_or_else(|| {
        field(
            "Algorithms",
            format!("unknown policy {name:?}: use \"default\", \"fips\" or \"legacy\""),
        )
    })
}

fn string_list(value: Option<&Value>, kind: Kind) -> Result<Option<Vec<String>>, ConfigError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(Value::String(s)) => return string_list_of(s.split(',').map(str::trim), kind),
        Some(_) => return Err(field(kind.field(), "must be a list of algorithm names")),
    };
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => names.push(s.trim()),
            _ => return Err(field(kind.field(), format!("entry {i} is not a string"))),
        }
    }
    string_list_of(names.into_iter(), kind)
}

fn string_list_of<'a>(
    names: impl Iterator<Item = &'a str>,
    kind: Kind,
) -> Result<Option<Vec<String>>, ConfigError> {
    let names: Vec<String> = names.filter(|n| !n.is_empty()).map(str::to_owned).collect();
    if names.is_empty() {
        return Err(field(
            kind.field(),
            "is empty: list at least one algorithm, or leave the field out",
        ));
    }
    Ok(Some(names))
}

/// Every name parsed by `parse`; an unknown one is an error listing what is supported.
fn parse_all<T>(
    names: &[String],
    kind: Kind,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ConfigError> {
    names
        .iter()
        .map(|name| {
            let refused = matches!(name.as_str(), "none" | "clear");
            parse(name).filter(|_| !refused).ok_or_else(|| {
                field(
                    kind.field(),
                    format!(
                        "{name:?} is not supported; supported: {}",
                        supported(kind).join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn host_key_alg(name: &str) -> Option<Algorithm> {
    let alg = Algorithm::new(name).ok()?;
    Policy::Legacy.host_keys().contains(&alg).then_some(alg)
}

/// What the SSH library implements of `kind` (never `none`), as OpenSSH spells them.
pub fn supported(kind: Kind) -> Vec<String> {
    fn plain<N: AsRef<str>>(names: &[&N]) -> Vec<String> {
        names
            .iter()
            .map(|n| n.as_ref().to_owned())
            .filter(|n| !matches!(n.as_str(), "none" | "clear"))
            .collect()
    }
    match kind {
        Kind::Kex => plain(kex::ALL_KEX_ALGORITHMS),
        Kind::Cipher => plain(cipher::ALL_CIPHERS),
        Kind::Mac => plain(mac::ALL_MAC_ALGORITHMS),
        Kind::HostKey => Algorithms::of(Policy::Legacy).names(Kind::HostKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Algorithms, String> {
        Algorithms::from_json(Some(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn default_has_no_sha1_and_legacy_adds_it_last() {
        let d = Algorithms::default();
        for kind in [Kind::Kex, Kind::HostKey, Kind::Cipher, Kind::Mac] {
            for name in d.names(kind) {
                assert!(
                    !name.contains("sha1") && name != "ssh-rsa" && !name.contains("cbc"),
                    "{name}"
                );
            }
        }
        let l = Algorithms::of(Policy::Legacy);
        assert_eq!(l.names(Kind::HostKey).last().unwrap(), "ssh-rsa");
        assert!(l
            .names(Kind::Kex)
            .contains(&"diffie-hellman-group14-sha1".into()));
        assert!(l.names(Kind::Mac).contains(&"hmac-sha1".into()));
        assert!(l.names(Kind::Cipher).contains(&"aes128-cbc".into()));
        // Modern first: a modern server still gets modern algorithms under `legacy`.
        assert_eq!(l.names(Kind::Kex)[0], d.names(Kind::Kex)[0]);
    }

    #[test]
    fn fips_has_only_nist_aes_and_sha2() {
        let f = Algorithms::of(Policy::Fips);
        let all: Vec<String> = [Kind::Kex, Kind::HostKey, Kind::Cipher, Kind::Mac]
            .into_iter()
            .flat_map(|k| f.names(k))
            .collect();
        for bad in ["25519", "chacha", "sha1", "mlkem", "cbc"] {
            assert!(!all.iter().any(|n| n.contains(bad)), "{bad} in {all:?}");
        }
        assert!(all.contains(&"ecdh-sha2-nistp384".into()));
    }

    #[test]
    fn names_and_explicit_lists_are_checked_with_the_field_named() {
        assert_eq!(parse(json!("LEGACY")).unwrap().policy, Policy::Legacy);
        let e = parse(json!("old")).unwrap_err();
        assert!(e.contains("Algorithms") && e.contains("\"old\""), "{e}");
        let custom = parse(json!({"Policy": "legacy", "Ciphers": ["aes256-cbc"]})).unwrap();
        assert_eq!(custom.names(Kind::Cipher), ["aes256-cbc"]);
        assert!(custom.customised);
        assert_eq!(
            custom.names(Kind::Kex),
            Algorithms::of(Policy::Legacy).names(Kind::Kex)
        );
        let e = parse(json!({"Macs": ["hmac-md5"]})).unwrap_err();
        assert!(
            e.contains("Algorithms.Macs") && e.contains("hmac-md5") && e.contains("hmac-sha2-256"),
            "{e}"
        );
        let e = parse(json!({"Ciphers": ["none"]})).unwrap_err();
        assert!(e.contains("Algorithms.Ciphers"), "{e}");
        let e = parse(json!({"Kex": []})).unwrap_err();
        assert!(e.contains("Algorithms.Kex") && e.contains("empty"), "{e}");
        let e = parse(json!({"Cipher": ["aes128-ctr"]})).unwrap_err();
        assert!(e.contains("unknown field \"Cipher\""), "{e}");
        let hk = parse(json!({"HostKeyAlgorithms": "ssh-rsa, rsa-sha2-256"})).unwrap();
        assert_eq!(hk.names(Kind::HostKey), ["ssh-rsa", "rsa-sha2-256"]);
        let e = parse(json!({"HostKeyAlgorithms": ["ssh-dss"]})).unwrap_err();
        assert!(e.contains("ssh-dss"), "{e}");
    }

    #[test]
    fn host_key_algorithms_follow_the_pinned_key_types() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDQWdDDTCjOagFXcH9xECnTGNZojX+V4AlTAlN+ZW71Ih\
                   I0XVe5vFXNS1Y8qKsWpr+LaCJaWIuIP18hKDCpyNHtiwHNDGPNPNEuxmK5q0uJMrF+fvEzFgoqwGxwyODyY7+qz\
                   KdWiJUmlOuNL0RT2rOSaxmQ4CgdCTu92HVOIPl4dQ==";
        let pins = TrustedHostKeys::parse([rsa]).unwrap();
        let d = Algorithms::default();
        let offered: Vec<String> = d
            .host_keys_for(&pins)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(offered, ["rsa-sha2-512", "rsa-sha2-256"]);
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let e = Algorithms::of(Policy::Fips)
            .check_pins(&TrustedHostKeys::parse([ed]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TrustedHostKeys") && e.contains("ssh-ed25519") && e.contains("fips"),
            "{e}"
        );
    }

    #[test]
    fn hints_name_the_policies_that_share_an_algorithm_with_the_server() {
        let theirs = vec!["diffie-hellman-group14-sha1".to_owned()];
        let reach = policies_reaching(Kind::Kex, &theirs);
        assert_eq!(reach, [(Policy::Legacy, theirs[0].clone())]);
        let ctr = vec!["aes128-ctr".to_owned()];
        assert_eq!(policies_reaching(Kind::Cipher, &ctr).len(), 3);
    }
}
