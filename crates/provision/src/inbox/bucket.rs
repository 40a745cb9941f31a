//! The inbox bucket: checked free (or ours) before anything is created, public access blocked,
//! default encryption, and its notification to the queue merged into what is already configured.

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tagging,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::context::Action;
use crate::context::{Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::STACK_TAG;

/// The notification's id on the bucket.
pub(crate) const NOTIFICATION_ID: &str = "sftp-forward";

/// Events that trigger a delivery.
pub(crate) const EVENT: &str = "s3:ObjectCreated:*";

/// How long S3 may take to see a queue policy just written.
pub(crate) const QUEUE_POLICY_PROPAGATION: std::time::Duration =
    std::time::Duration::from_secs(120);

/// Before anything is created: the bucket name must be free or already this stack's (bucket names
/// are global: another account may own it).
pub async fn check_bucket(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    if bucket_exists(c, &spec.bucket).await? {
        if let Some(other) = bucket_stack_tag(c, &spec.bucket)
            .await?
            .filter(|o| *o != spec.stack)
        {
            return Err(Error::Conflict {
                resource: format!("bucket {}", spec.bucket),
                problem: format!("it belongs to stack {other:?}"),
                next: "set \"bucket\" in the config to another name".into(),
            });
        }
        // S3 refuses overlapping notifications for the same event type (InvalidArgument,
        // "Configurations overlap"); ours takes every ObjectCreated event, so another one that
        // does too would fail the merge: say so now, before anything is created.
        let out =
            c.s3.get_bucket_notification_configuration()
                .bucket(&spec.bucket)
                .send()
                .await
                .map_err(aws(
                    "GetBucketNotificationConfiguration",
                    format!("bucket {}", spec.bucket),
                ))?;
        let created = |events: &[Event]| {
            events
                .iter()
                .any(|e| e.as_str().starts_with("s3:ObjectCreated:") || e.as_str() == "s3:*")
        };
        let mut others: Vec<String> = Vec::new();
        for q in out.queue_configurations() {
            if !super::notify::is_stack_id(q.id()) && created(q.events()) {
                others.push(format!("queue {}", q.queue_arn()));
            }
        }
        for t in out.topic_configurations() {
            if created(t.events()) {
                others.push(format!("topic {}", t.topic_arn()));
            }
        }
        for l in out.lambda_function_configurations() {
            if created(l.events()) {
                others.push(format!("function {}", l.lambda_function_arn()));
            }
        }
        if !others.is_empty() {
            return Err(Error::Conflict {
                resource: format!("bucket {}", spec.bucket),
                problem: format!(
                    "it already sends ObjectCreated events to {}; S3 refuses a second \
                     notification for the same events",
                    others.join(", ")
                ),
                next: "remove that notification (or route it through EventBridge), or use \
                       another bucket"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Whether the bucket exists (and is reachable by these credentials).
pub async fn bucket_exists(c: &Clients, bucket: &str) -> Result<bool> {
    match c.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
        Err(e) => Err(match e.raw_response().map(|r| r.status().as_u16()) {
            Some(403) => Error::Conflict {
                resource: format!("bucket {bucket}"),
                problem:
                    "the name is taken by another account (or these credentials may not read it)"
                        .into(),
                next: "set \"bucket\" in the config to another name".into(),
            },
            _ => aws("HeadBucket", format!("bucket {bucket}"))(e),
        }),
    }
}

/// The value of the bucket's [`STACK_TAG`], if any.
pub async fn bucket_stack_tag(c: &Clients, bucket: &str) -> Result<Option<String>> {
    match c.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .tag_set()
            .iter()
            .find(|t| t.key() == STACK_TAG)
            .map(|t| t.value().to_owned())),
        Err(e) if e.code() == Some("NoSuchTagSet") => Ok(None),
        Err(e) => Err(aws("GetBucketTagging", format!("bucket {bucket}"))(e)),
    }
}

/// The bucket (created and tagged, public access blocked, default encryption) and its
/// notifications to the stack's queues.
pub(crate) async fn ensure_bucket(
    ctx: Ctx<'_>,
    notifications: &[super::notify::Notify],
) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let bucket = spec.bucket.as_str();
    let what = format!("bucket {bucket}");
    let exists = bucket_exists(c, bucket).await?;
    let owner = if exists {
        bucket_stack_tag(c, bucket).await?
    } else {
        None
    };
    if let Some(other) = owner.as_deref().filter(|o| *o != spec.stack) {
        return Err(Error::Conflict {
            resource: what,
            problem: format!("it belongs to stack {other:?}"),
            next: "set \"bucket\" in the config to another name".into(),
        });
    }
    ctx.ensure(&what, exists.then(|| bucket.to_owned()), || async {
        let mut req = c.s3.create_bucket().bucket(bucket);
        if c.region != "us-east-1" {
            let location = BucketLocationConstraint::from(c.region.as_str());
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(location)
                    .build(),
            );
        }
        req.send().await.map_err(aws("CreateBucket", &what))?;
        tag_bucket(c, bucket, &spec.stack, &what).await?;
        Ok(bucket.to_owned())
    })
    .await?;
    if exists {
        // A bucket left untagged by an interrupted apply: adopt it.
        let adopt = format!("{STACK_TAG} tag of {what}");
        ctx.converge(&adopt, State::of(true, owner.is_some()), || async {
            tag_bucket(c, bucket, &spec.stack, &adopt).await?;
            Ok(())
        })
        .await?;
    }

    let block = format!("public access block of {what}");
    let state = if !exists {
        State::Missing
    } else {
        match c.s3.get_public_access_block().bucket(bucket).send().await {
            Ok(out) => {
                let cfg = out.public_access_block_configuration();
                let all = cfg.is_some_and(|p| {
                    [
                        p.block_public_acls(),
                        p.ignore_public_acls(),
                        p.block_public_policy(),
                        p.restrict_public_buckets(),
                    ]
                    .iter()
                    .all(|f| *f == Some(true))
                });
                State::of(true, all)
            }
            Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => State::Missing,
            Err(e) => return Err(aws("GetPublicAccessBlock", &block)(e)),
        }
    };
    ctx.converge(&block, state, || async {
        let cfg = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        let put =
            c.s3.put_public_access_block()
                .bucket(bucket)
                .public_access_block_configuration(cfg)
                .send()
                .await;
        put.map_err(aws("PutPublicAccessBlock", &block))?;
        Ok(())
    })
    .await?;

    let encryption = format!("default encryption (SSE-S3) of {what}");
    let state = if !exists {
        State::Missing
    } else {
        match c.s3.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => State::of(
                true,
                out.server_side_encryption_configuration()
                    .is_some_and(|c| !c.rules().is_empty()),
            ),
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
                State::Missing
            }
            Err(e) => return Err(aws("GetBucketEncryption", &encryption)(e)),
        }
    };
    ctx.converge(&encryption, state, || async {
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build();
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(default.expect("algorithm set"))
            .build();
        let cfg = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .expect("rules set");
        let put =
            c.s3.put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(cfg)
                .send()
                .await;
        put.map_err(aws("PutBucketEncryption", &encryption))?;
        Ok(())
    })
    .await?;

    super::notify::ensure(ctx, exists, notifications).await
}

/// Puts the stack tag on the bucket (at creation, or to adopt one an interrupted apply left).
pub(crate) async fn tag_bucket(c: &Clients, bucket: &str, stack: &str, what: &str) -> Result<()> {
    let tagging = Tagging::builder()
        .tag_set(s3_tag(STACK_TAG, stack))
        .build()
        .expect("tag set");
    let out =
        c.s3.put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await;
    out.map_err(aws("PutBucketTagging", what))?;
    Ok(())
}

pub(crate) fn s3_tag(k: &str, v: &str) -> aws_sdk_s3::types::Tag {
    aws_sdk_s3::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .expect("key and value set")
}

/// Deletes the bucket if it is this stack's and empty (destroy); a non-empty one is kept and
/// listed in `kept`, another account's or stack's is reported.
pub(crate) async fn delete(ctx: Ctx<'_>, kept: &mut Vec<String>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let bucket = spec.bucket.as_str();
    let what = format!("bucket {bucket}");
    let exists = match bucket_exists(c, bucket).await {
        Ok(exists) => exists,
        // Another account's bucket (403): certainly not ours to delete; go on with the rest.
        Err(Error::Conflict { .. }) => {
            ctx.record(Action::Keep, format!("{what} (not this account's)"), bucket);
            false
        }
        Err(e) => return Err(e),
    };
    if exists {
        let owner = bucket_stack_tag(c, bucket).await?;
        let list =
            c.s3.list_objects_v2()
                .bucket(bucket)
                .max_keys(1)
                .send()
                .await;
        let empty = list
            .map_err(aws("ListObjectsV2", &what))?
            .contents()
            .is_empty();
        if owner.as_deref() != Some(spec.stack.as_str()) {
            ctx.record(
                Action::Keep,
                format!("{what} (not tagged {STACK_TAG}={})", spec.stack),
                bucket,
            );
        } else if !empty {
            ctx.record(Action::Keep, format!("{what} (not empty)"), bucket);
            kept.push(format!(
                "{what} is not empty (empty it, e.g. `aws s3 rm s3://{bucket} --recursive`)"
            ));
        } else {
            match c.s3.delete_bucket().bucket(bucket).send().await {
                Ok(_) => ctx.record(Action::Delete, what, bucket),
                // A versioned bucket can list empty and still hold versions or delete markers.
                Err(e) if e.code() == Some("BucketNotEmpty") => {
                    ctx.record(
                        Action::Keep,
                        format!("{what} (holds object versions)"),
                        bucket,
                    );
                    kept.push(format!(
                        "{what} still holds object versions (delete them, or the bucket, yourself)"
                    ));
                }
                Err(e) => return Err(aws("DeleteBucket", &what)(e)),
            }
        }
    }
    Ok(())
}
