//! One `Pgp.PublicKeys` entry → the (sub)keys a file is encrypted to, checked the way `gpg`
//! would pick them: self-signatures that verify, the newest one deciding flags and expiry, no
//! revocation by the key itself.

use ::pgp::composed::{
    Deserializable, EncryptionSeipdV1, MessageBuilder, SignedPublicKey, SignedPublicSubKey,
};
use ::pgp::packet::{PublicKey, PublicSubkey, Signature, SignatureType};
use ::pgp::types::{KeyDetails, Tag, Timestamp};

/// A (sub)key every file is encrypted to (public key material only).
#[derive(Clone, Debug)]
pub(super) enum Recipient {
    /// An encryption subkey (what `gpg --quick-gen-key` makes).
    Sub(PublicSubkey),
    /// A primary key that may encrypt itself (an old single RSA key).
    Primary(PublicKey),
}

impl Recipient {
    pub(super) fn fingerprint(&self) -> String {
        match self {
            Recipient::Sub(k) => format!("{:X}", k.fingerprint()),
            Recipient::Primary(k) => format!("{:X}", k.fingerprint()),
        }
    }

    /// Adds this (sub)key as a recipient of the message being built.
    pub(super) fn add_to<R: std::io::Read>(
        &self,
        builder: &mut MessageBuilder<'_, R, EncryptionSeipdV1>,
        rng: &mut rand08::rngs::ThreadRng,
    ) -> ::pgp::errors::Result<()> {
        match self {
            Recipient::Sub(k) => builder.encrypt_to_key(rng, k).map(|_| ()),
            Recipient::Primary(k) => builder.encrypt_to_key(rng, k).map(|_| ()),
        }
    }
}

/// The recipients of one armored key, or what is wrong with it (a phrase that follows
/// "entry N": it never quotes the key).
pub(super) fn recipients(text: &str, now: Timestamp) -> Result<Vec<Recipient>, String> {
    // Secrets Manager UIs often turn newlines into literal "\n": accept both.
    let text = if !text.contains('\n') && text.contains("\\n") {
        text.replace("\\n", "\n")
    } else {
        text.to_owned()
    };
    if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        return Err(
            "is a private key: give the partner's public key (`gpg --armor --export`), \
                    never a private one"
                .into(),
        );
    }
    if !text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Err(
            "is not an ASCII-armored OpenPGP public key (expected -----BEGIN PGP \
                    PUBLIC KEY BLOCK-----, as `gpg --armor --export` prints)"
                .into(),
        );
    }
    let (key, _) = SignedPublicKey::from_string(&text)
        .map_err(|_| "is not a readable OpenPGP public key (the armored block does not parse)")?;
    let primary = &key.primary_key;
    let fp = format!("{:X}", primary.fingerprint());
    let revoked = |sigs: &[Signature]| sigs.iter().any(|s| s.verify_key(primary).is_ok());
    if revoked(&key.details.revocation_signatures) {
        return Err(format!("(key {fp}) is revoked"));
    }
    let self_sigs = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok())
        .chain(key.details.users.iter().flat_map(|u| {
            u.signatures
                .iter()
                .filter(|s| s.verify_certification(primary, Tag::UserId, &u.id).is_ok())
        }));
    let Some(newest) = newest(self_sigs) else {
        return Err(format!("(key {fp}) has no valid self-signature"));
    };
    if let Some(at) = expiry(primary.created_at(), newest) {
        if at <= now {
            return Err(format!("(key {fp}) expired on {}", date(at)));
        }
    }
    let (mut expired, mut revoked_subs, mut other) = (0, 0, 0);
    let mut found = Vec::new();
    for sub in &key.public_subkeys {
        match subkey_state(primary, sub, now) {
            SubState::Usable => found.push(Recipient::Sub(sub.key.clone())),
            SubState::Expired => expired += 1,
            SubState::Revoked => revoked_subs += 1,
            SubState::NotForEncryption => other += 1,
        }
    }
    if found.is_empty() && may_encrypt(newest) && primary.algorithm().can_encrypt() {
        found.push(Recipient::Primary(primary.clone()));
    }
    if found.is_empty() {
        return Err(format!(
            "(key {fp}) has no encryption-capable (sub)key valid now ({} subkeys: {expired} \
             expired, {revoked_subs} revoked, {other} not for encryption)",
            key.public_subkeys.len()
        ));
    }
    Ok(found)
}

enum SubState {
    Usable,
    Expired,
    Revoked,
    NotForEncryption,
}

fn subkey_state(primary: &PublicKey, sub: &SignedPublicSubKey, now: Timestamp) -> SubState {
    let valid = |typ| {
        sub.signatures.iter().filter(move |s| {
            s.typ() == Some(typ) && s.verify_subkey_binding(primary, &sub.key).is_ok()
        })
    };
    if valid(SignatureType::SubkeyRevocation).next().is_some() {
        return SubState::Revoked;
    }
    let Some(binding) = newest(valid(SignatureType::SubkeyBinding)) else {
        return SubState::NotForEncryption;
    };
    if !may_encrypt(binding) || !sub.key.algorithm().can_encrypt() {
        return SubState::NotForEncryption;
    }
    match expiry(sub.key.created_at(), binding) {
        Some(at) if at <= now => SubState::Expired,
        _ => SubState::Usable,
    }
}

fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map_or(0, Timestamp::as_secs))
}

fn may_encrypt(sig: &Signature) -> bool {
    let flags = sig.key_flags();
    flags.encrypt_comms() || flags.encrypt_storage()
}

/// When a key created at `created` expires by `sig` (a zero or absent period: never).
fn expiry(created: Timestamp, sig: &Signature) -> Option<Timestamp> {
    let secs = sig.key_expiration_time()?.as_secs();
    (secs > 0).then(|| Timestamp::from_secs(created.as_secs().saturating_add(secs)))
}

/// `YYYY-MM-DD` (UTC) of a timestamp (days to civil date, H. Hinnant's algorithm).
fn date(t: Timestamp) -> String {
    let z = i64::from(t.as_secs()) / 86_400 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date(Timestamp::from_secs(0)), "1970-01-01");
        assert_eq!(date(Timestamp::from_secs(951_782_400)), "2000-02-29");
        assert_eq!(date(Timestamp::from_secs(1_798_675_200)), "2026-12-31");
    }

    #[test]
    fn private_and_unarmored_keys_are_named_without_quoting_them() {
        let now = Timestamp::now();
        let private = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret\n";
        assert!(recipients(private, now)
            .unwrap_err()
            .contains("private key"));
        let raw = "mQINBGVzZWNyZXQ=";
        let e = recipients(raw, now).unwrap_err();
        assert!(
            e.contains("not an ASCII-armored") && !e.contains(raw),
            "{e}"
        );
        let junk = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64!\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert!(recipients(junk, now)
            .unwrap_err()
            .contains("does not parse"));
    }
}
