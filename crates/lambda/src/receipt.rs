//! Delivery receipts as S3 object tags. Tagging does not fire ObjectCreated events (writing
//! metadata would: it copies the object), so a receipt never re-triggers the function. An object
//! whose receipt names its current ETag has been delivered and is skipped when its event repeats.

/// Tag holding the delivery time (RFC 3339, UTC).
pub const DELIVERED: &str = "sftp-forward-delivered";
/// Tag holding the remote path the object was published to.
pub const PATH: &str = "sftp-forward-path";
/// Tag holding the ETag of the bytes that were delivered.
pub const ETAG: &str = "sftp-forward-etag";
/// S3 allows at most 10 tags per object.
pub const MAX_TAGS: usize = 10;
const MAX_VALUE: usize = 256;

/// A receipt read from or written to an object's tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// When the delivery was verified.
    pub delivered_at: String,
    /// Where it went (sanitised for S3's tag character set).
    pub remote_path: String,
    /// The ETag of the object that was delivered.
    pub etag: String,
}

impl Receipt {
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
        })
    }

    /// `tags` with this receipt added (replacing an older receipt, keeping every other tag).
    /// `None` when the object already carries so many tags that ours do not fit.
    pub fn merge_into(&self, tags: Vec<(String, String)>) -> Option<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = tags
            .into_iter()
            .filter(|(k, _)| k != DELIVERED && k != PATH && k != ETAG)
            .collect();
        if out.len() + 3 > MAX_TAGS {
            return None;
        }
        out.push((DELIVERED.into(), tag_value(&self.delivered_at)));
        out.push((PATH.into(), tag_value(&self.remote_path)));
        out.push((ETAG.into(), tag_value(&self.etag)));
        Some(out)
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

    #[test]
    fn merge_keeps_other_tags_and_replaces_an_old_receipt() {
        let r = Receipt {
            delivered_at: "2026-11-25T22:00:00Z".into(),
            remote_path: "inbound/a (1).csv".into(),
            etag: "abc".into(),
        };
        let merged = r
            .merge_into(vec![t("team", "finance"), t(ETAG, "old")])
            .unwrap();
        assert_eq!(merged.len(), 4);
        assert!(merged.contains(&t("team", "finance")));
        assert!(merged.contains(&t(PATH, "inbound/a _1_.csv")));
        assert_eq!(Receipt::from_tags(&merged).unwrap().etag, "abc");
        let full: Vec<_> = (0..8).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(r.merge_into(full).is_none(), "never drop the owner's tags");
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
