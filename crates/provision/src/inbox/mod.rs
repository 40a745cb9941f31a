//! Where files and their events arrive: the partner secret, the queue with its dead-letter queue,
//! and the inbox bucket with its notification to the queue.
//!
//! These are found by the names the [`Spec`](crate::config::Spec) derives from the stack, and tagged
//! with [`STACK_TAG`] at creation; the secret's value is never printed.
//!
//! # Layout
//!
//! [`secret`], [`queue`] (and its dead-letter queue), [`bucket`] (and its notification), in the
//! order `apply` builds them; here, what ties them together: [`ensure`], the customer-managed KMS
//! keys the function must decrypt with, and the names `apply` records on the queue.

pub mod bucket;
pub mod queue;
pub mod secret;

pub use bucket::{bucket_exists, bucket_stack_tag, check_bucket};
pub use queue::{find_queue_url, queue_attributes, Queue};
pub use secret::{check, find_secret, partner_endpoint, read_secret_file, SecretValue};

use std::collections::HashMap;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::json;

use crate::context::{is_placeholder, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::STACK_TAG;
use aws_sdk_sqs::types::QueueAttributeName;
use bucket::ensure_bucket;
use queue::{dlq_attributes, ensure_queue, ensure_queue_policy};
use secret::ensure_secret;

/// What the inbox is, once found or built.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// The partner secret's ARN (what the function gets in `SFTP_FORWARD_SECRET_ID`).
    pub secret_arn: String,
    /// The queue the bucket notifies.
    pub queue: Queue,
    /// Its dead-letter queue.
    pub dlq: Queue,
    /// The bucket's name.
    pub bucket: String,
}

/// The customer-managed KMS keys (as key ARNs) of the secret and the bucket's default
/// encryption, which the function needs `kms:Decrypt` on. AWS managed keys are left out.
pub async fn kms_keys(ctx: Ctx<'_>, secret_arn: &str) -> Result<Vec<String>> {
    let c = ctx.clients;
    let (partition, account) = crate::iam::partition_and_account(secret_arn);
    let mut keys = Vec::new();
    if !is_placeholder(secret_arn) {
        if let Some(d) = find_secret(c, secret_arn).await? {
            keys.extend(d.kms_key_id().map(str::to_owned));
        }
    }
    if bucket_exists(c, &ctx.spec.bucket).await? {
        match c
            .s3
            .get_bucket_encryption()
            .bucket(&ctx.spec.bucket)
            .send()
            .await
        {
            Ok(out) => keys.extend(
                out.server_side_encryption_configuration()
                    .iter()
                    .flat_map(|c| c.rules())
                    .filter_map(|r| r.apply_server_side_encryption_by_default())
                    .filter_map(|d| d.kms_master_key_id().map(str::to_owned)),
            ),
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {}
            Err(e) => {
                return Err(aws(
                    "GetBucketEncryption",
                    format!("bucket {}", ctx.spec.bucket),
                )(e))
            }
        }
    }
    let mut arns: Vec<String> = keys
        .iter()
        .filter_map(|k| crate::iam::kms_key_arn(k, partition, &c.region, account))
        .collect();
    arns.sort();
    arns.dedup();
    Ok(arns)
}

/// The tags `apply` records on the stack's queue, so that `destroy`, `outputs` and the demo find a
/// custom bucket or secret without being told again.
pub const BUCKET_TAG: &str = "sftp-forward:bucket";

/// See [`BUCKET_TAG`].
pub const SECRET_TAG: &str = "sftp-forward:secret";

/// The stack's bucket and secret: as given on the command line or in the config, else as
/// recorded on the stack's queue by `apply`, else the default names. A stack built before the
/// names were recorded (its bucket was `<stack>-inbox` by default) is found by the bucket its
/// queue policy admits, so that an upgrade never strands it for a new bucket.
pub async fn recorded_names(c: &Clients, spec: &crate::Spec) -> Result<(String, String)> {
    let mut bucket = spec.bucket.clone();
    let mut secret = spec.secret.clone();
    if spec.bucket_given && spec.secret_given {
        return Ok((bucket, secret));
    }
    if let Some(url) = find_queue_url(c, &spec.queue_name()).await? {
        let out = c.sqs.list_queue_tags().queue_url(&url).send().await;
        let out = out.map_err(aws("ListQueueTags", format!("queue {}", spec.queue_name())))?;
        let tags = out.tags().cloned().unwrap_or_default();
        if tags.get(STACK_TAG) == Some(&spec.stack) {
            if !spec.bucket_given {
                if let Some(b) = tags.get(BUCKET_TAG) {
                    bucket = b.clone();
                } else if let Some(b) = policy_bucket(c, &url).await? {
                    bucket = b;
                }
            }
            if let Some(s) = tags.get(SECRET_TAG).filter(|_| !spec.secret_given) {
                secret = s.clone();
            }
        }
    }
    Ok((bucket, secret))
}

/// The bucket the queue's policy lets send to it (`aws:SourceArn` `arn:…:s3:::<bucket>`), if any.
async fn policy_bucket(c: &Clients, url: &str) -> Result<Option<String>> {
    let attrs = queue_attributes(c, url).await?;
    let Some(policy) = attrs.get(&QueueAttributeName::Policy) else {
        return Ok(None);
    };
    let policy: serde_json::Value = serde_json::from_str(policy).unwrap_or_default();
    Ok(policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|st| st["Condition"]["ArnEquals"]["aws:SourceArn"].as_str())
        .find_map(|arn| arn.rsplit_once(":::").map(|(_, b)| b.to_owned())))
}

/// Finds or builds the secret, both queues, the bucket and its notification.
pub async fn ensure(ctx: Ctx<'_>, value: Option<&SecretValue>) -> Result<Inbox> {
    let secret_arn = ensure_secret(ctx, value).await?;
    let dlq = ensure_queue(ctx, &ctx.spec.dlq_name(), dlq_attributes()).await?;
    let mut attrs = vec![(
        QueueAttributeName::VisibilityTimeout,
        (ctx.spec.timeout_seconds * 6).to_string(),
    )];
    if !is_placeholder(&dlq.arn) {
        let redrive =
            json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": ctx.spec.max_receive_count});
        attrs.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
    }
    let queue = ensure_queue(ctx, &ctx.spec.queue_name(), attrs).await?;
    ensure_recorded_names(ctx, &queue, &secret_arn).await?;
    ensure_queue_policy(ctx, &queue).await?;
    ensure_bucket(ctx, &queue).await?;
    Ok(Inbox {
        secret_arn,
        queue,
        dlq,
        bucket: ctx.spec.bucket.clone(),
    })
}

/// Records the bucket's name and the secret's ARN on the queue (see [`BUCKET_TAG`]).
async fn ensure_recorded_names(ctx: Ctx<'_>, queue: &Queue, secret_arn: &str) -> Result<()> {
    let c = ctx.clients;
    let what = format!(
        "tags of queue {} naming bucket {} and the secret",
        ctx.spec.queue_name(),
        ctx.spec.bucket
    );
    let wanted = [
        (BUCKET_TAG, ctx.spec.bucket.as_str()),
        (SECRET_TAG, secret_arn),
    ];
    let current = if is_placeholder(&queue.url) {
        HashMap::new()
    } else {
        let out = c.sqs.list_queue_tags().queue_url(&queue.url).send().await;
        out.map_err(aws("ListQueueTags", &what))?
            .tags()
            .cloned()
            .unwrap_or_default()
    };
    let same = wanted
        .iter()
        .all(|(k, v)| current.get(*k).map(String::as_str) == Some(*v));
    let present = wanted.iter().any(|(k, _)| current.contains_key(*k));
    ctx.converge(&what, State::of(present, same), || async {
        let mut req = c.sqs.tag_queue().queue_url(&queue.url);
        for (k, v) in wanted {
            req = req.tags(k, v);
        }
        req.send().await.map_err(aws("TagQueue", &what))?;
        Ok(())
    })
    .await
}
