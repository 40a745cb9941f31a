//! Delivery receipts as S3 object tags. Tagging does not fire ObjectCreated events (writing
//! metadata would: it copies the object), so a receipt never re-triggers the function.
//!
//! A receipt vouches for one delivery: these bytes (ETag) of this object (bucket and key) to this
//! remote path. S3 copies tags on CopyObject and keeps the ETag of a single-part object, so an
//! ETag alone would let a copy or a move to a new key pass for delivered, and a receipt written
//! by hand for another key or path would block a delivery. So a receipt also carries
//! [`RECEIPT_OF`], a digest binding bucket, key, ETag and remote path ([`binding`]), and counts
//! only when that digest is the one of the delivery about to be made.
//!
//! Receipts written before the digest existed carry only the ETag and the path: such a receipt
//! counts when its ETag and its path equal those of the delivery about to be made (so upgrading
//! does not send every repeated event again), and is replaced by a bound one on the next delivery.
//! A copy under a new key maps to a new path, so it is delivered; the one case an old receipt
//! still skips is a copy whose key maps to the same path (a `{basename}` template), where the
//! partner already holds these very bytes.

/// Tag holding the delivery time (RFC 3339, UTC).
pub const DELIVERED: &str = "sftp-forward-delivered";
/// Tag holding the remote path the object was published to.
pub const PATH: &str = "sftp-forward-path";
/// Tag holding the ETag of the bytes that were delivered.
pub const ETAG: &str = "sftp-forward-etag";
/// Tag holding [`binding`] of the delivery: which object, which bytes, which remote path.
pub const RECEIPT_OF: &str = "sftp-forward-receipt-of";
/// Tag holding the bytes sent to the partner when they differ from the object's (an encrypted
/// file, `Pgp`): the object's own size is its Content-Length.
pub const SENT_BYTES: &str = "sftp-forward-sent-bytes";
/// Tag holding the SHA-256 (64 lowercase hex digits) of the file as it landed on the partner,
/// taken as it streamed out: only for a file sent as one stream (not striped, not resumed), and
/// only when the object's tags leave room for it (the receipt itself comes first).
pub const SHA256: &str = "sftp-forward-sha256";
/// S3 allows at most 10 tags per object.
pub const MAX_TAGS: usize = 10;
const MAX_VALUE: usize = 256;
const OURS: [&str; 6] = [DELIVERED, PATH, ETAG, RECEIPT_OF, SENT_BYTES, SHA256];

/// A receipt read from or written to an object's tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// When the delivery was verified.
    pub delivered_at: String,
    /// Where it went (sanitised for S3's tag character set).
    pub remote_path: String,
    /// The ETag of the object that was delivered.
    pub etag: String,
    /// [`binding`] of the delivery; `None` on a receipt written before it existed.
    pub receipt_of: Option<String>,
    /// Bytes sent when they differ from the object's (encrypted); `None` otherwise.
    pub sent_bytes: Option<u64>,
    /// SHA-256 of the file as it landed (lowercase hex), when it was taken.
    pub sha256: Option<String>,
}

/// One delivery as a receipt names it: the object, its bytes and where they go.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// The object's bucket.
    pub bucket: &'a str,
    /// The object's key.
    pub key: &'a str,
    /// The ETag of the object's bytes, without quotes.
    pub etag: &'a str,
    /// The final path on the partner, as the publisher names it (under `RemoteDirectory`).
    pub remote_path: &'a str,
}

impl Receipt {
    /// The receipt for `delivery`, made now.
    pub fn of(delivery: Delivery<'_>) -> Receipt {
        Receipt {
            delivered_at: now_rfc3339(),
            remote_path: delivery.remote_path.to_owned(),
            etag: delivery.etag.to_owned(),
            receipt_of: Some(binding(delivery)),
            sent_bytes: None,
            sha256: None,
        }
    }

    /// With the SHA-256 of the file as it landed, if it was taken (a lowercase hex digest; any
    /// other text is not recorded).
    pub fn with_sha256(mut self, sha256: Option<String>) -> Receipt {
        self.sha256 = sha256.filter(|d| is_sha256_hex(d));
        self
    }

    /// The receipt of an encrypted delivery (`Pgp`): `sent` bytes of ciphertext landed at
    /// `delivery.remote_path`, the route's path plus the `Pgp` suffix (see
    /// [`Receipt::vouches_for`]).
    pub fn encrypted(delivery: Delivery<'_>, sent: u64) -> Receipt {
        Receipt {
            sent_bytes: Some(sent),
            ..Receipt::of(delivery)
        }
    }

    /// The receipt among `tags`, if all its tags are there.
    pub fn from_tags(tags: &[(String, String)]) -> Option<Receipt> {
        let get = |k: &str| {
            tags.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        Some(Receipt {
            delivered_at: get(DELIVERED)?,
            remote_path: get(PATH).unwrap_or_default(),
            etag: get(ETAG)?,
            receipt_of: get(RECEIPT_OF),
            sent_bytes: get(SENT_BYTES).and_then(|v| v.parse().ok()),
            sha256: get(SHA256).filter(|d| is_sha256_hex(d)),
        })
    }

    /// Whether this receipt says that `delivery` was already made: the same bytes of the same
    /// object to the same path (see the module doc for receipts without a digest). An encrypted
    /// delivery's receipt names the file as it landed, the route's path plus the `Pgp` suffix,
    /// and vouches for a delivery to the route's path that it extends.
    pub fn vouches_for(&self, delivery: Delivery<'_>) -> bool {
        let suffixed = || {
            let landed = Delivery {
                remote_path: &self.remote_path,
                ..delivery
            };
            self.sent_bytes.is_some()
                && self
                    .remote_path
                    .starts_with(&tag_value(delivery.remote_path))
                && self.receipt_of.as_deref() == Some(binding(landed).as_str())
        };
        self.etag == delivery.etag
            && match &self.receipt_of {
                Some(digest) => *digest == binding(delivery) || suffixed(),
                None => self.remote_path == tag_value(delivery.remote_path),
            }
    }

    /// [`Receipt::vouches_for`] when the partner's `RemoteDirectory` is not known (the CLI's
    /// `replay --dry-run` reads no secret): the receipt's own path must end with the route's
    /// `path` and, when the receipt carries a digest, the digest must bind this object and ETag to
    /// that recorded path. A recorded path that S3's tag rules changed (see [`tag_value`]) never
    /// vouches here, so a dry run may list as "would deliver" what the real run skips, never the
    /// other way round.
    pub fn vouches_for_route(&self, bucket: &str, key: &str, etag: &str, path: &str) -> bool {
        let recorded = self.remote_path.as_str();
        let under = recorded == path || recorded.ends_with(&format!("/{path}"));
        let delivery = Delivery {
            bucket,
            key,
            etag,
            remote_path: recorded,
        };
        under && self.vouches_for(delivery)
    }

    /// `tags` with this receipt added (replacing an older receipt, keeping every other tag).
    /// `None` when the object already carries so many tags that ours do not fit; the
    /// [`SHA256`] tag is left out (and logged) when only it does not fit.
    pub fn merge_into(&self, tags: Vec<(String, String)>) -> Option<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = tags
            .into_iter()
            .filter(|(k, _)| !OURS.contains(&k.as_str()))
            .collect();
        let ours =
            3 + usize::from(self.receipt_of.is_some()) + usize::from(self.sent_bytes.is_some());
        if out.len() + ours > MAX_TAGS {
            return None;
        }
        out.push((DELIVERED.into(), tag_value(&self.delivered_at)));
        out.push((PATH.into(), tag_value(&self.remote_path)));
        out.push((ETAG.into(), tag_value(&self.etag)));
        if let Some(digest) = &self.receipt_of {
            out.push((RECEIPT_OF.into(), digest.clone()));
        }
        if let Some(sent) = self.sent_bytes {
            out.push((SENT_BYTES.into(), sent.to_string()));
        }
        if let Some(digest) = &self.sha256 {
            if out.len() < MAX_TAGS {
                out.push((SHA256.into(), digest.clone()));
            } else {
                tracing::info!(
                    sha256 = %digest,
                    "no room among the object's 10 tags for the SHA-256 tag; the receipt is written without it"
                );
            }
        }
        Some(out)
    }
}

/// The digest a receipt for `delivery` carries: `v1:` and the 128-bit FNV-1a of bucket, key,
/// ETag and remote path, each prefixed by its length (so no two deliveries share an input). It
/// is stable across builds and fits S3's tag rules (34 characters of `[v0-9a-f:]`). Not a
/// secret: it tells a receipt for one delivery from a receipt for another, and whoever may tag
/// the object may as well delete it.
pub fn binding(delivery: Delivery<'_>) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    let fields = [
        delivery.bucket,
        delivery.key,
        delivery.etag,
        delivery.remote_path,
    ];
    for field in fields {
        let len = (field.len() as u64).to_be_bytes();
        for b in len.iter().chain(field.as_bytes()) {
            h ^= u128::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    format!("v1:{h:032x}")
}

/// 64 lowercase hex digits (also fits S3's tag value rules).
fn is_sha256_hex(d: &str) -> bool {
    d.len() == 64
        && d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path the publisher gives `path` under `remote_directory` (what a delivery's receipt
/// names): the partner's directory, then the route's relative path.
pub fn final_path(remote_directory: &str, path: &str) -> String {
    match remote_directory {
        "." | "" => path.to_owned(),
        "/" => format!("/{path}"),
        dir => format!("{dir}/{path}"),
    }
}

/// S3 tag values allow letters, digits, whitespace and `_ . : / = + - @`, up to 256 characters:
/// anything else becomes `_`, and long values keep their end (the file name).
pub fn tag_value(v: &str) -> String {
    let cleaned: Vec<char> = v
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let skip = cleaned.len().saturating_sub(MAX_VALUE);
    cleaned[skip..].iter().collect()
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    fn delivery<'a>(key: &'a str, etag: &'a str, remote_path: &'a str) -> Delivery<'a> {
        Delivery {
            bucket: "bucket",
            key,
            etag,
            remote_path,
        }
    }

    #[test]
    fn merge_keeps_other_tags_and_replaces_an_old_receipt() {
        let r = Receipt::of(delivery("a (1).csv", "abc", "inbound/a (1).csv"));
        let merged = r
            .merge_into(vec![
                t("team", "finance"),
                t(ETAG, "old"),
                t(RECEIPT_OF, "x"),
            ])
            .unwrap();
        assert_eq!(merged.len(), 5);
        assert!(merged.contains(&t("team", "finance")));
        assert!(merged.contains(&t(PATH, "inbound/a _1_.csv")));
        let back = Receipt::from_tags(&merged).unwrap();
        assert_eq!(back.etag, "abc");
        assert_eq!(back.receipt_of, r.receipt_of);
        let full: Vec<_> = (0..7).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(r.merge_into(full).is_none(), "never drop the owner's tags");
    }

    #[test]
    fn an_encrypted_receipt_records_the_bytes_sent_and_vouches_for_the_route_path() {
        let route = delivery("in/a.csv", "e1", "up/in/a.csv");
        let landed = delivery("in/a.csv", "e1", "up/in/a.csv.pgp");
        let r = Receipt::encrypted(landed, 1234);
        let tags = r.merge_into(vec![t("team", "finance")]).unwrap();
        assert!(tags.contains(&t(SENT_BYTES, "1234")));
        assert!(tags.contains(&t(PATH, "up/in/a.csv.pgp")));
        let back = Receipt::from_tags(&tags).unwrap();
        assert_eq!(back.sent_bytes, Some(1234));
        assert!(
            back.vouches_for(route),
            "the route's path, which the check knows"
        );
        assert!(
            back.vouches_for(landed),
            "the recorded path (a {{now}} template's check)"
        );
        assert!(!back.vouches_for(delivery("in/a.csv", "e1", "up/in/b.csv")));
        assert!(!back.vouches_for(delivery("in/b.csv", "e1", "up/in/a.csv")));
        let plain = Receipt::from_tags(&Receipt::of(landed).merge_into(vec![]).unwrap()).unwrap();
        assert!(
            !plain.vouches_for(route),
            "only an encrypted receipt extends the path"
        );
        let five: Vec<_> = (0..5).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(r.merge_into(five.clone()).is_some(), "5 + 5 tags fit");
        let six: Vec<_> = (0..6).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(r.merge_into(six).is_none());
        assert!(Receipt::of(route).merge_into(five).is_some());
    }

    #[test]
    fn the_sha256_tag_rides_along_when_there_is_room_and_never_costs_the_receipt() {
        let digest = "0f".repeat(32);
        let r = Receipt::of(delivery("in/a.csv", "e1", "up/in/a.csv"))
            .with_sha256(Some(digest.clone()));
        let tags = r
            .merge_into(vec![t("team", "finance"), t(SHA256, "old")])
            .unwrap();
        assert!(tags.contains(&t(SHA256, &digest)));
        assert_eq!(tags.len(), 6);
        assert_eq!(
            Receipt::from_tags(&tags).unwrap().sha256,
            Some(digest.clone())
        );
        // Six tags of the owner's: the receipt (4) fits, its SHA-256 does not.
        let six: Vec<_> = (0..6).map(|i| t(&format!("k{i}"), "v")).collect();
        let tags = r.merge_into(six).unwrap();
        assert_eq!(tags.len(), 10);
        assert!(!tags.iter().any(|(k, _)| k == SHA256));
        assert!(Receipt::from_tags(&tags).is_some());
        // Only a real digest is recorded.
        let bad = Receipt::of(delivery("k", "e", "p")).with_sha256(Some("not-a-digest".into()));
        assert_eq!(bad.sha256, None);
    }

    #[test]
    fn a_receipt_vouches_only_for_its_own_object_bytes_and_path() {
        let made = delivery("in/a.csv", "e1", "up/in/a.csv");
        let r = Receipt::from_tags(&Receipt::of(made).merge_into(vec![]).unwrap()).unwrap();
        assert!(r.vouches_for(made));
        assert!(
            !r.vouches_for(delivery("copy/a.csv", "e1", "up/in/a.csv")),
            "other key"
        );
        assert!(
            !r.vouches_for(delivery("in/a.csv", "e1", "up/other.csv")),
            "other path"
        );
        assert!(
            !r.vouches_for(delivery("in/a.csv", "e2", "up/in/a.csv")),
            "other bytes"
        );
        let other_bucket = Delivery {
            bucket: "other",
            ..made
        };
        assert!(!r.vouches_for(other_bucket));
        // Length prefixes: moving a character between fields gives another digest.
        assert_ne!(
            binding(delivery("ab", "c", "p")),
            binding(delivery("a", "bc", "p"))
        );
        assert!(binding(made).len() <= MAX_VALUE && tag_value(&binding(made)) == binding(made));
    }

    #[test]
    fn without_the_remote_directory_a_receipt_vouches_for_its_route_path_only() {
        let made = delivery("in/a.csv", "e1", "up/in/a.csv");
        let r = Receipt::from_tags(&Receipt::of(made).merge_into(vec![]).unwrap()).unwrap();
        assert!(r.vouches_for_route("bucket", "in/a.csv", "e1", "in/a.csv"));
        assert!(!r.vouches_for_route("bucket", "copy/a.csv", "e1", "in/a.csv"));
        assert!(!r.vouches_for_route("bucket", "in/a.csv", "e1", "n/a.csv"));
        assert!(!r.vouches_for_route("bucket", "in/a.csv", "e2", "in/a.csv"));
    }

    #[test]
    fn a_receipt_from_before_the_digest_counts_only_for_the_same_path() {
        let old = vec![
            t(DELIVERED, "2026-11-25T22:00:00Z"),
            t(PATH, "up/in/a _1_.csv"),
            t(ETAG, "e1"),
        ];
        let r = Receipt::from_tags(&old).unwrap();
        assert_eq!(r.receipt_of, None);
        assert!(r.vouches_for(delivery("in/a (1).csv", "e1", "up/in/a (1).csv")));
        assert!(!r.vouches_for(delivery("copy/a (1).csv", "e1", "up/copy/a (1).csv")));
        assert!(!r.vouches_for(delivery("in/a (1).csv", "e2", "up/in/a (1).csv")));
    }

    #[test]
    fn final_paths_join_like_the_publisher() {
        assert_eq!(final_path("upload", "a/b.csv"), "upload/a/b.csv");
        assert_eq!(final_path("/", "b.csv"), "/b.csv");
        assert_eq!(final_path(".", "b.csv"), "b.csv");
        assert_eq!(final_path("", "b.csv"), "b.csv");
    }

    #[test]
    fn tag_values_fit_s3_rules() {
        assert_eq!(
            tag_value("données/報告 2024 📦.csv"),
            "données/報告 2024 _.csv"
        );
        let long = format!("{}/end.csv", "x".repeat(400));
        let v = tag_value(&long);
        assert_eq!(v.chars().count(), 256);
        assert!(v.ends_with("/end.csv"));
        assert!(now_rfc3339().ends_with('Z'));
    }
}
