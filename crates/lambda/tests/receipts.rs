//! A receipt (the object's tags) skips a repeated event only when it vouches for this very
//! delivery: these bytes of this object to this remote path. S3 copies tags on CopyObject and keeps
//! a single-part object's ETag, so a copy carries a receipt with the right ETag for the wrong key.
//! Against moto and the real sshd; each invocation is direct, so its summary says what happened.

mod util;

use std::os::unix::fs::MetadataExt;

use serde_json::Value;
use sftp_forward_core::receipt::{self, binding, Delivery, Receipt};
use util::*;

/// A direct invocation for one object: (delivered, skipped, failed) from its summary.
async fn run<S, K>(f: &mut sftp_forward_core::Forwarder<S, K>, bucket: &str, key: &str) -> [u64; 3]
where
    S: sftp_forward_core::source::ObjectStore,
    K: sftp_forward_core::secret::SecretSource,
{
    let event: Value = serde_json::from_str(&s3_body(bucket, key)).unwrap();
    let out = f.handle(&event, None).await.unwrap();
    ["delivered", "skipped", "failed"].map(|k| out[k].as_u64().unwrap())
}

async fn etag(aws: &Aws, bucket: &str, key: &str) -> String {
    let head = aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.e_tag().unwrap().trim_matches('"').to_owned()
}

async fn set_tags(aws: &Aws, bucket: &str, key: &str, tags: &[(String, String)]) {
    use aws_sdk_s3::types::{Tag, Tagging};
    let set = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
        .collect();
    aws.s3
        .put_object_tagging()
        .bucket(bucket)
        .key(key)
        .tagging(Tagging::builder().set_tag_set(Some(set)).build().unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_copy_under_a_new_key_is_delivered_to_its_own_path_and_gets_its_own_receipt() {
    let bed = Bed::start("copied").await;
    let (aws, bucket, local, remote) = (&bed.aws, &bed.bucket, &bed.local, &bed.remote);
    let mut f = bed.forwarder(&[]);
    aws.put(bucket, "in/a.csv", b"id,amount\n1,2\n").await;
    assert_eq!(run(&mut f, bucket, "in/a.csv").await, [1, 0, 0]);

    aws.s3
        .copy_object()
        .bucket(bucket)
        .key("moved/a.csv")
        .copy_source(format!("{bucket}/in/a.csv"))
        .send()
        .await
        .unwrap();
    let copied = Receipt::from_tags(&aws.tags(bucket, "moved/a.csv").await);
    let tag = etag(aws, bucket, "moved/a.csv").await;
    assert!(
        copied.is_some_and(|r| r.etag == tag),
        "the copy carries the original's receipt with its own ETag (what this test is about)"
    );
    assert_eq!(run(&mut f, bucket, "moved/a.csv").await, [1, 0, 0]);
    assert_eq!(
        std::fs::read(local.join("moved/a.csv")).unwrap(),
        b"id,amount\n1,2\n"
    );

    // The copy's receipt is rewritten for the copy: its key, its path.
    let path = format!("{remote}/moved/a.csv");
    let r = Receipt::from_tags(&aws.tags(bucket, "moved/a.csv").await).unwrap();
    assert_eq!(r.remote_path, path);
    let delivery = Delivery {
        bucket,
        key: "moved/a.csv",
        etag: &tag,
        remote_path: &path,
    };
    assert_eq!(r.receipt_of, Some(binding(delivery)));
    // And it works: the copy's event again is skipped, the file untouched.
    let inode = std::fs::metadata(local.join("moved/a.csv")).unwrap().ino();
    assert_eq!(run(&mut f, bucket, "moved/a.csv").await, [0, 1, 0]);
    assert_eq!(
        std::fs::metadata(local.join("moved/a.csv")).unwrap().ino(),
        inode
    );
}

#[tokio::test]
async fn a_receipt_for_another_key_or_another_path_does_not_block_a_delivery() {
    let bed = Bed::start("forged").await;
    let (aws, bucket, local) = (&bed.aws, &bed.bucket, &bed.local);
    let mut f = bed.forwarder(&[]);
    aws.put(bucket, "x.csv", b"same bytes").await;
    aws.put(bucket, "y.csv", b"same bytes").await;
    assert_eq!(run(&mut f, bucket, "x.csv").await, [1, 0, 0]);

    // x's receipt set on y by hand (same bytes, so the same ETag): y is delivered all the same.
    let forged = aws.tags(bucket, "x.csv").await;
    set_tags(aws, bucket, "y.csv", &forged).await;
    assert_eq!(run(&mut f, bucket, "y.csv").await, [1, 0, 0]);
    assert_eq!(std::fs::read(local.join("y.csv")).unwrap(), b"same bytes");

    // x's own receipt names the path it went to; routed elsewhere now, x goes to its new path.
    let mut moved = bed.forwarder(&[("SFTP_FORWARD_REMOTE_PATH_TEMPLATE", "renamed/{basename}")]);
    assert_eq!(run(&mut moved, bucket, "x.csv").await, [1, 0, 0]);
    assert_eq!(
        std::fs::read(local.join("renamed/x.csv")).unwrap(),
        b"same bytes"
    );
}

#[tokio::test]
async fn a_receipt_from_before_the_digest_counts_only_for_the_path_it_names() {
    let bed = Bed::start("oldreceipt").await;
    let (aws, bucket, local, remote) = (&bed.aws, &bed.bucket, &bed.local, &bed.remote);
    let mut f = bed.forwarder(&[]);
    aws.put(bucket, "old.csv", b"old").await;
    aws.put(bucket, "copy.csv", b"old").await;
    let old_style = |path: &str, etag: &str| {
        vec![
            (
                receipt::DELIVERED.to_owned(),
                "2026-11-30T10:00:00Z".to_owned(),
            ),
            (receipt::PATH.to_owned(), path.to_owned()),
            (receipt::ETAG.to_owned(), etag.to_owned()),
        ]
    };
    let tag = etag(aws, bucket, "old.csv").await;
    let old_path = format!("{remote}/old.csv");
    set_tags(aws, bucket, "old.csv", &old_style(&old_path, &tag)).await;
    set_tags(aws, bucket, "copy.csv", &old_style(&old_path, &tag)).await;

    // Upgrading sends nothing again: the old receipt names this path and these bytes.
    assert_eq!(run(&mut f, bucket, "old.csv").await, [0, 1, 0]);
    assert!(!local.join("old.csv").exists());
    // A copy carrying it goes to its own path.
    assert_eq!(run(&mut f, bucket, "copy.csv").await, [1, 0, 0]);
    assert_eq!(std::fs::read(local.join("copy.csv")).unwrap(), b"old");
    let r = Receipt::from_tags(&aws.tags(bucket, "copy.csv").await).unwrap();
    assert!(r.receipt_of.is_some() && r.remote_path == format!("{remote}/copy.csv"));
}

/// The real store (moto), counting GetObjectTagging calls.
struct CountingTags {
    inner: sftp_forward_core::source::S3Store,
    tag_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl sftp_forward_core::source::ObjectStore for CountingTags {
    async fn tags(
        &self,
        obj: &sftp_forward_core::event::ObjectRef,
    ) -> Result<Vec<(String, String)>, sftp_forward_core::source::StoreError> {
        self.tag_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.tags(obj).await
    }
    async fn put_tags(
        &self,
        obj: &sftp_forward_core::event::ObjectRef,
        tags: Vec<(String, String)>,
    ) -> Result<(), sftp_forward_core::source::StoreError> {
        self.inner.put_tags(obj, tags).await
    }
    async fn open(
        &self,
        obj: &sftp_forward_core::event::ObjectRef,
    ) -> Result<sftp_forward_core::source::Opened, sftp_forward_core::source::StoreError> {
        self.inner.open(obj).await
    }
}

#[tokio::test]
async fn a_new_object_costs_no_tag_read_and_a_repeated_event_is_still_skipped() {
    let bed = Bed::start("tagcount").await;
    let (aws, bucket) = (&bed.aws, &bed.bucket);
    aws.put(bucket, "new.csv", b"fresh").await;
    let settings = bed.forwarder(&[]).settings().clone();
    let tag_reads = std::sync::Arc::<std::sync::atomic::AtomicUsize>::default();
    let store = CountingTags {
        inner: sftp_forward_core::source::S3Store::new(aws.s3.clone()),
        tag_reads: tag_reads.clone(),
    };
    let secrets = sftp_forward_core::secret::SecretsManager::new(aws.secrets.clone());
    let mut f = sftp_forward_core::Forwarder::new(store, secrets, settings);
    let reads = || tag_reads.load(std::sync::atomic::Ordering::SeqCst);

    assert_eq!(run(&mut f, bucket, "new.csv").await, [1, 0, 0]);
    assert_eq!(reads(), 0, "GetObject said the new object has no tags");
    assert_eq!(std::fs::read(bed.local.join("new.csv")).unwrap(), b"fresh");
    assert_eq!(
        run(&mut f, bucket, "new.csv").await,
        [0, 1, 0],
        "the receipt skips the repeated event"
    );
    assert_eq!(reads(), 1, "now it has tags: they are read");
}
