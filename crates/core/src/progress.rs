//! Progress of an interrupted delivery, kept as one tag on the object version.
//!
//! A record stopped at the invocation's deadline leaves its resumable temporary file on the
//! partner ([`forward::Kept`]); what is known to be written goes into the tag [`PROGRESS`] as
//! `<key>:<len>:<start>-<end>+<start>-<end>...` (the temporary file's 16-hex key, the object's
//! length, the completed byte ranges). The next delivery of the same event reads it with the
//! other tags (the receipt check reads them anyway) and the publisher writes only what is
//! missing. Why a tag: it travels with the object version (a new version starts without one),
//! costs no other store, fits in one PutObjectTagging within the deadline's margin, and an
//! operator sees it in the S3 console. The receipt replaces it once the file is delivered.
//! A process killed without the clean stop records nothing: the next delivery starts over.

use std::ops::Range;
use std::time::Instant;

use forward::{Kept, Progress};

use crate::event::ObjectRef;
use crate::receipt::MAX_TAGS;
use crate::source::ObjectStore;

/// The tag holding an interrupted delivery's progress.
pub const PROGRESS: &str = "sftp-forward-progress";
/// S3's longest tag value.
const MAX_VALUE: usize = 256;

/// What names an object's bytes for the publisher ([`forward::RangeSource::identity`]): the
/// object and its version id, else its ETag. It also says which object a kept file belongs to.
pub fn identity(obj: &ObjectRef, etag: &str) -> String {
    let (bucket, key) = (&obj.bucket, &obj.key);
    match &obj.version_id {
        Some(v) => format!("s3://{bucket}/{key}#v:{v}"),
        None => format!("s3://{bucket}/{key}#e:{etag}"),
    }
}

/// The object an [`identity`] names (its version, when it has one).
pub fn object_of(identity: &str) -> Option<ObjectRef> {
    let (object, version) = identity.strip_prefix("s3://")?.rsplit_once('#')?;
    let (bucket, key) = object.split_once('/')?;
    let (version_id, etag) = match version.split_once(':')? {
        ("v", v) => (Some(v.to_owned()), None),
        ("e", e) => (None, Some(e.to_owned())),
        _ => return None,
    };
    Some(ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id,
        etag,
        size: None,
    })
}

/// The progress recorded among `tags`, if any can be read.
pub fn from_tags(tags: &[(String, String)]) -> Option<Progress> {
    let value = &tags.iter().find(|(k, _)| k == PROGRESS)?.1;
    let mut parts = value.splitn(3, ':');
    let (key, len, ranges) = (parts.next()?, parts.next()?, parts.next()?);
    let done = ranges
        .split('+')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (s, e) = r.split_once('-')?;
            let range: Range<u64> = s.parse().ok()?..e.parse().ok()?;
            (range.start < range.end).then_some(range)
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Progress {
        key: key.to_owned(),
        len: len.parse().ok()?,
        done,
    })
}

/// The tag value for `progress`. S3 allows 256 characters: when the ranges do not fit, the
/// smallest are left out (they are sent again).
pub fn tag_value(progress: &Progress) -> String {
    let mut done = progress.done.clone();
    loop {
        let ranges: Vec<String> = done
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect();
        let value = format!("{}:{}:{}", progress.key, progress.len, ranges.join("+"));
        if value.len() <= MAX_VALUE || done.is_empty() {
            return value;
        }
        let smallest = (0..done.len())
            .min_by_key(|&i| done[i].end - done[i].start)
            .expect("not empty");
        done.remove(smallest);
    }
}

/// `tags` without a recorded progress (what a receipt is merged into).
pub fn without(tags: Vec<(String, String)>) -> Vec<(String, String)> {
    tags.into_iter().filter(|(k, _)| k != PROGRESS).collect()
}

/// `tags` with `progress` recorded (replacing an older one, keeping every other tag); `None`
/// when the object carries so many tags that it does not fit.
pub fn merged(tags: Vec<(String, String)>, progress: &Progress) -> Option<Vec<(String, String)>> {
    let mut out = without(tags);
    if out.len() >= MAX_TAGS {
        return None;
    }
    out.push((PROGRESS.to_owned(), tag_value(progress)));
    Some(out)
}

/// Records each kept file's progress on its object, until `until`. Returns, per kept file,
/// whether it was recorded (else the next delivery starts that file over). One after another:
/// only the files being written at the deadline are kept, large ones go one at a time.
pub async fn record<S: ObjectStore>(store: &S, kept: &[Kept], until: Instant) -> Vec<bool> {
    let mut out = Vec::with_capacity(kept.len());
    for k in kept {
        out.push(record_one(store, k, until).await);
    }
    out
}

async fn record_one<S: ObjectStore>(store: &S, kept: &Kept, until: Instant) -> bool {
    let Some(obj) = object_of(&kept.identity) else {
        return false;
    };
    let write = async {
        let tags = store.tags(&obj).await?;
        let Some(tags) = merged(tags, &kept.progress) else {
            tracing::warn!("the object has too many tags to record the progress; the next delivery starts over");
            return Ok(false);
        };
        store.put_tags(&obj, tags).await.map(|()| true)
    };
    match tokio::time::timeout_at(until.into(), write).await {
        Ok(Ok(recorded)) => recorded,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not record the progress; the next delivery starts over");
            false
        }
        Err(_) => {
            tracing::warn!("recording the progress ran out of time; the next delivery starts over");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "in/a#1.csv".into(),
            version_id: version.map(Into::into),
            etag: None,
            size: None,
        }
    }

    #[test]
    fn identities_name_the_object_and_its_version() {
        let v = identity(&obj(Some("3HL4kq")), "abc");
        assert_eq!(v, "s3://b/in/a#1.csv#v:3HL4kq");
        let back = object_of(&v).unwrap();
        assert_eq!(
            (back.bucket.as_str(), back.key.as_str()),
            ("b", "in/a#1.csv")
        );
        assert_eq!(back.version_id.as_deref(), Some("3HL4kq"));
        let e = object_of(&identity(&obj(None), "abc")).unwrap();
        assert_eq!((e.version_id, e.etag.as_deref()), (None, Some("abc")));
        assert!(object_of("file:///x#v:1").is_none());
    }

    #[test]
    fn progress_round_trips_through_a_tag_and_replaces_an_older_one() {
        let p = Progress {
            key: "0123456789abcdef".into(),
            len: 64 << 20,
            done: vec![0..4_194_304, 16_777_216..20_971_520],
        };
        let tags = vec![
            ("team".to_owned(), "finance".to_owned()),
            (PROGRESS.to_owned(), "old:1:0-1".to_owned()),
        ];
        let tags = merged(tags, &p).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(
            tags[1].1,
            "0123456789abcdef:67108864:0-4194304+16777216-20971520"
        );
        assert!(tags[1]
            .1
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-+".contains(c)));
        assert_eq!(from_tags(&tags), Some(p.clone()));
        assert_eq!(without(tags), [("team".to_owned(), "finance".to_owned())]);
        let full: Vec<_> = (0..10).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(merged(full, &p).is_none(), "never drop the owner's tags");
    }

    #[test]
    fn too_many_ranges_for_one_tag_drop_the_smallest() {
        let done: Vec<_> = (0..20u64)
            .map(|i| i * 1_000_000_000..i * 1_000_000_000 + 1000 + i)
            .collect();
        let p = Progress {
            key: "k".into(),
            len: 1 << 40,
            done,
        };
        let v = tag_value(&p);
        assert!(v.len() <= MAX_VALUE, "{}", v.len());
        let back = from_tags(&[(PROGRESS.to_owned(), v)]).unwrap();
        assert!(back.done.len() < 20 && back.done.contains(&(19_000_000_000..19_000_001_019)));
        assert!(from_tags(&[(PROGRESS.to_owned(), "k:10:5-2".to_owned())]).is_none());
    }
}
