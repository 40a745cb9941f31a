//! The S3 side: receipts (object tags) and the object body, streamed. [`ObjectStore`] is the seam
//! the handler is generic over; [`S3Store`] is the real one.

use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, Tag, Tagging};
use forward::{Currency, Progress, RangeSource};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::event::ObjectRef;
use crate::progress;

/// An object opened for reading: the body streams, nothing is buffered whole.
pub struct Opened {
    /// The bytes, as they arrive from S3.
    pub body: Box<dyn AsyncRead + Send + Unpin>,
    /// Content length announced by S3.
    pub len: u64,
    /// ETag of these bytes, without quotes.
    pub etag: Option<String>,
    /// When S3 last modified the object (`Last-Modified`), for a `{modified}` route template.
    pub last_modified: Option<std::time::SystemTime>,
    /// The SHA-256 of the whole object (lowercase hex) when S3 holds one as a full-object
    /// checksum (uploaded with `ChecksumAlgorithm=SHA256` in one part); never a multipart
    /// upload's composite checksum, which is no digest of the file ([`full_object_sha256`]).
    pub sha256: Option<String>,
    /// How many tags the object has (`x-amz-tagging-count`), when the store tells: `Some(0)`
    /// spares the GetObjectTagging of a new object (no receipt, no progress can be on it).
    pub tag_count: Option<u32>,
}

/// What can go wrong on the S3 side.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object (or the version named by the event) does not exist any more.
    #[error("s3://{bucket}/{key} no longer exists")]
    Missing { bucket: String, key: String },
    /// Any other S3 failure, with the SDK's full explanation.
    #[error("S3 {op} of s3://{bucket}/{key} failed: {message}")]
    Failed {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
        transient: bool,
    },
}

impl StoreError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Failed {
                transient: true,
                ..
            }
        )
    }
}

/// Tags, bodies and receipts of S3 objects.
pub trait ObjectStore: Send + Sync {
    /// The object's tags (`Missing` if it is gone).
    fn tags(
        &self,
        obj: &ObjectRef,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// Replace the object's tags.
    fn put_tags(
        &self,
        obj: &ObjectRef,
        tags: Vec<(String, String)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Start reading the object (the version named by the event, if any).
    fn open(&self, obj: &ObjectRef) -> impl Future<Output = Result<Opened, StoreError>> + Send;
    /// The current version of the object's key (a HEAD without version id), `None` when the key
    /// has none (deleted) or the store cannot tell: asked just before the rename, so that an
    /// older version never replaces a newer one on the partner.
    fn current(
        &self,
        obj: &ObjectRef,
    ) -> impl Future<Output = Result<Option<Current>, StoreError>> + Send {
        let _ = obj;
        async { Ok(None) }
    }
    /// Whether [`ObjectStore::open_range`] works, so that large objects can be sent in stripes
    /// (each read by its own ranged GET). Without it an object is sent as one stream.
    fn can_read_ranges(&self) -> bool {
        false
    }
    /// Read the bytes `range` (end exclusive) of the object, only while its ETag is still `etag`.
    fn open_range(
        &self,
        obj: &ObjectRef,
        etag: &str,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Body, StoreError>> + Send {
        let _ = (etag, range);
        let err = StoreError::Failed {
            op: "ranged GetObject",
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            message: "this store cannot read byte ranges".into(),
            transient: false,
        };
        async { Err(err) }
    }
}

/// A streamed object body.
pub type Body = Box<dyn AsyncRead + Send + Unpin>;

/// What a key's current version is ([`ObjectStore::current`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    /// Its version id (versioned buckets).
    pub version_id: Option<String>,
    /// Its ETag, without quotes.
    pub etag: Option<String>,
}

/// How long an opened GetObject's body is used for the first stripe: S3 may close a connection
/// whose response is left unread, so one held longer (a large file whose turn came after other
/// files' stripes) is dropped unread and the stripe makes its own ranged GET.
const FIRST_BODY_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// An opened object as a [`RangeSource`] for the striped publish: the first stripe continues the
/// body already opened, the others are ranged GETs of the same ETag (a changed object fails the
/// read, and the whole file is retried). Resumable: its identity is the object's version id, else
/// its ETag ([`progress::identity`]), and it carries what an interrupted delivery recorded
/// ([`Ranges::resuming`]). Before the rename it checks that it is still the key's current version.
pub struct Ranges<'a, S> {
    store: &'a S,
    obj: &'a ObjectRef,
    etag: String,
    len: u64,
    /// The opened GetObject's body, and when it was opened.
    first: Mutex<Option<(Body, std::time::Instant)>>,
    /// How long `first` is used ([`FIRST_BODY_FRESH`]).
    fresh_for: std::time::Duration,
    /// Whether an interrupted delivery may be continued (see [`Ranges::named_per_delivery`]).
    resumable: bool,
    progress: Option<Progress>,
    sha256: Option<String>,
}

impl<'a, S: ObjectStore> Ranges<'a, S> {
    /// `opened` must have an ETag (S3 always sends one).
    pub fn new(store: &'a S, obj: &'a ObjectRef, opened: Opened) -> Option<Ranges<'a, S>> {
        Some(Ranges {
            store,
            obj,
            etag: opened.etag?,
            len: opened.len,
            first: Mutex::new(Some((opened.body, std::time::Instant::now()))),
            fresh_for: FIRST_BODY_FRESH,
            resumable: true,
            progress: None,
            sha256: opened.sha256,
        })
    }

    /// The opened body serves the first stripe only this long after it was opened (default
    /// [`FIRST_BODY_FRESH`]).
    pub fn first_body_fresh_for(mut self, fresh_for: std::time::Duration) -> Self {
        self.fresh_for = fresh_for;
        self
    }

    /// With the progress an interrupted delivery recorded on the object (see [`progress`]).
    pub fn resuming(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Sent under a name rendered anew for each delivery (a `{now}` template): a later delivery
    /// never finds this one's temporary file, so it is not kept to be continued (no identity:
    /// removed on failure, like any per-attempt temporary file).
    pub fn named_per_delivery(mut self) -> Self {
        self.resumable = false;
        self
    }
}

impl<S: ObjectStore> RangeSource for Ranges<'_, S> {
    type Reader = Body;

    fn len(&self) -> u64 {
        self.len
    }

    async fn open(&self, range: Range<u64>) -> std::io::Result<Body> {
        if range.start == 0 {
            let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
            // A body left unread for long (a large file whose turn came after others' stripes)
            // may have been dropped by S3 meanwhile: a new ranged GET instead.
            if let Some((body, _)) = first.filter(|(_, at)| at.elapsed() < self.fresh_for) {
                return Ok(Box::new(body.take(range.end)));
            }
        }
        self.store
            .open_range(self.obj, &self.etag, range)
            .await
            .map_err(std::io::Error::other)
    }

    fn identity(&self) -> Option<String> {
        self.resumable
            .then(|| progress::identity(self.obj, &self.etag))
    }

    fn progress(&self) -> Option<Progress> {
        self.progress.clone()
    }

    fn sha256(&self) -> Option<String> {
        self.sha256.clone()
    }

    async fn discard_progress(&self) -> std::io::Result<()> {
        if self.progress.as_ref().is_none_or(|p| p.done.is_empty()) {
            return Ok(());
        }
        let tags = self
            .store
            .tags(self.obj)
            .await
            .map_err(std::io::Error::other)?;
        // Rewritten with no completed range rather than removed: it then vouches for nothing,
        // and the tag set never becomes empty (which moto's PutObjectTagging refuses).
        let Some(mut recorded) = progress::from_tags(&tags).filter(|p| !p.done.is_empty()) else {
            return Ok(());
        };
        recorded.done.clear();
        let Some(tags) = progress::merged(tags, &recorded) else {
            return Ok(());
        };
        tracing::info!("the recorded progress no longer matches the partner's file; cleared");
        self.store
            .put_tags(self.obj, tags)
            .await
            .map_err(std::io::Error::other)
    }

    async fn still_current(&self) -> std::io::Result<Currency> {
        let now = self.store.current(self.obj).await;
        let Some(now) = now.map_err(std::io::Error::other)? else {
            return Ok(Currency::Current);
        };
        let (bucket, key) = (&self.obj.bucket, &self.obj.key);
        Ok(match (&self.obj.version_id, &now.version_id, &now.etag) {
            (Some(sent), Some(now), _) if sent != now => Currency::Superseded(format!(
                "s3://{bucket}/{key} is now version {now}; this was version {sent}"
            )),
            (None, _, Some(now)) if *now != self.etag => Currency::Superseded(format!(
                "s3://{bucket}/{key} now has ETag {now}; this was ETag {}",
                self.etag
            )),
            _ => Currency::Current,
        })
    }
}

/// The real store: one `aws_sdk_s3::Client`, built once per process.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// Wrap a client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }

    /// A GetObject of the object (the version named by the event, if any).
    fn get(
        &self,
        obj: &ObjectRef,
    ) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
        self.client
            .get_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
    }

    /// An S3 client from the standard AWS configuration. A custom endpoint (`AWS_ENDPOINT_URL`:
    /// an emulator, MinIO) gets path-style addressing, which such endpoints need.
    pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        aws_sdk_s3::Client::from_conf(s3)
    }
}

/// The length S3 announced for a whole object. Without one there is no size to check the
/// partner's file against, and a body that ends early would be renamed into place as a short
/// (even 0-byte) "delivered" file: the record fails as transient instead (S3 always sends it; a
/// proxy or an S3-compatible store that streams without it may not the next time).
fn announced_len(obj: &ObjectRef, content_length: Option<i64>) -> Result<u64, StoreError> {
    content_length
        .and_then(|l| u64::try_from(l).ok())
        .ok_or_else(|| StoreError::Failed {
            op: "GetObject",
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            message: format!(
                "the response announced no object length (Content-Length {content_length:?}); \
                 not delivered, since its size could not be checked on the partner"
            ),
            transient: true,
        })
}

/// S3's `x-amz-checksum-sha256` (base64) as lowercase hex, when it is a digest of the whole
/// object: type `FULL_OBJECT`, or no type given (stores and emulators from before checksum types)
/// and no `-N` part count. A `COMPOSITE` checksum (a multipart upload's checksum of its parts'
/// checksums) is not, and is ignored.
pub fn full_object_sha256(value: Option<&str>, kind: Option<&ChecksumType>) -> Option<String> {
    let value = value?;
    let full = match kind {
        Some(ChecksumType::FullObject) => true,
        Some(_) => false,
        None => !value.contains('-'),
    };
    let bytes = aws_smithy_types::base64::decode(value)
        .ok()
        .filter(|_| full)?;
    (bytes.len() == 32).then(|| bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn classify<E>(op: &'static str, obj: &ObjectRef, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned);
    // A HEAD-like 404 without an error code also means "gone".
    let status_404 = matches!(&err, SdkError::ServiceError(s) if s.raw().status().as_u16() == 404);
    match code.as_deref() {
        Some("NoSuchKey" | "NoSuchVersion") => {
            return StoreError::Missing {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
            }
        }
        None if status_404 => {
            return StoreError::Missing {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
            }
        }
        _ => {}
    }
    let transient = match &err {
        SdkError::ServiceError(_) => !matches!(
            code.as_deref(),
            Some(
                "AccessDenied"
                    | "NoSuchBucket"
                    | "InvalidBucketName"
                    | "InvalidArgument"
                    | "InvalidRequest"
            )
        ),
        // Timeouts, connection failures, bad responses.
        _ => true,
    };
    StoreError::Failed {
        op,
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        message: DisplayErrorContext(&err).to_string(),
        transient,
    }
}

impl ObjectStore for S3Store {
    async fn tags(&self, obj: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
            .send()
            .await
            .map_err(|e| classify("GetObjectTagging", obj, e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn put_tags(
        &self,
        obj: &ObjectRef,
        tags: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        // S3 refuses what these builders refuse: a tag without key or value is our bug, not S3's.
        let invalid = |e: aws_sdk_s3::error::BuildError| StoreError::Failed {
            op: "PutObjectTagging",
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            message: e.to_string(),
            transient: false,
        };
        let tag_set = tags
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(invalid)?;
        self.client
            .put_object_tagging()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| classify("PutObjectTagging", obj, e))?;
        Ok(())
    }

    async fn open(&self, obj: &ObjectRef) -> Result<Opened, StoreError> {
        let out = self
            .get(obj)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify("GetObject", obj, e))?;
        Ok(Opened {
            sha256: full_object_sha256(out.checksum_sha256(), out.checksum_type()),
            len: announced_len(obj, out.content_length())?,
            etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
            last_modified: out.last_modified().and_then(|t| (*t).try_into().ok()),
            // S3 sends the header only when the object has tags.
            tag_count: Some(out.tag_count().map_or(0, |n| n.max(0) as u32)),
            body: Box::new(out.body.into_async_read()),
        })
    }

    async fn current(&self, obj: &ObjectRef) -> Result<Option<Current>, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .send()
            .await;
        match head.map_err(|e| classify("HeadObject", obj, e)) {
            Ok(out) => Ok(Some(Current {
                version_id: out.version_id().map(str::to_owned),
                etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
            })),
            // Deleted since: no newer version to protect.
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn can_read_ranges(&self) -> bool {
        true
    }

    async fn open_range(
        &self,
        obj: &ObjectRef,
        etag: &str,
        range: Range<u64>,
    ) -> Result<Body, StoreError> {
        let out = self
            .get(obj)
            .if_match(format!("\"{etag}\""))
            .range(format!(
                "bytes={}-{}",
                range.start,
                range.end.saturating_sub(1)
            ))
            .send()
            .await
            .map_err(|e| classify("GetObject (range)", obj, e))?;
        let got = out.content_length().and_then(|l| u64::try_from(l).ok());
        if got != Some(range.end - range.start) {
            return Err(StoreError::Failed {
                op: "GetObject (range)",
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
                message: format!(
                    "asked for bytes {}..{}, S3 announced {got:?} bytes",
                    range.start, range.end
                ),
                transient: true,
            });
        }
        Ok(Box::new(out.body.into_async_read()))
    }
}

#[cfg(test)]
#[path = "source/tests.rs"]
mod tests;
