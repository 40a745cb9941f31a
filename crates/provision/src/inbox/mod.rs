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
pub mod notify;
pub mod queue;
pub mod secret;

pub use bucket::{bucket_exists, bucket_stack_tag, check_bucket};
pub use queue::{find_queue_url, queue_attributes, Queue};
pub use secret::{check, find_secret, partner_endpoint, read_secret_file, SecretRef, SecretValue};

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
    /// Each partner's path into the function (one for the single-partner stack).
    pub partners: Vec<Route>,
    /// The bucket's name.
    pub bucket: String,
}

/// One partner's secret and queues.
#[derive(Debug, Clone)]
pub struct Route {
    /// The partner's name; `None` for the single partner of a stack without `partners`.
    pub name: Option<String>,
    /// Its secret's ARN.
    pub secret_arn: String,
    /// The queue the bucket notifies for it.
    pub queue: Queue,
    /// The queue's name.
    pub queue_name: String,
    /// Its dead-letter queue.
    pub dlq: Queue,
    /// The dead-letter queue's name.
    pub dlq_name: String,
    /// Its event source mapping's `MaximumConcurrency`.
    pub max_concurrency: u32,
}

/// The tag `apply` puts on a partner's queue: the partner's name.
pub const PARTNER_TAG: &str = "sftp-forward:partner";

/// The tag `apply` puts on a partner's queue: its SFTP port (for `outputs`).
pub const PORT_TAG: &str = "sftp-forward:port";

/// The customer-managed KMS keys (as key ARNs) of the secrets and the bucket's default
/// encryption, which the function needs `kms:Decrypt` on. AWS managed keys are left out.
pub async fn kms_keys(ctx: Ctx<'_>, secret_arns: &[String]) -> Result<Vec<String>> {
    let c = ctx.clients;
    let first = secret_arns.first().map_or("", String::as_str);
    let (partition, account) = crate::iam::partition_and_account(first);
    let mut keys = Vec::new();
    for secret_arn in secret_arns.iter().filter(|a| !is_placeholder(a)) {
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
    // The single partner's queue, else (a stack with `partners`) the first partner queue found.
    let partner_queues = spec.partners.iter().map(|p| p.queue_name(&spec.stack));
    for (i, name) in [spec.queue_name()]
        .into_iter()
        .chain(partner_queues)
        .enumerate()
    {
        let Some(url) = find_queue_url(c, &name).await? else {
            continue;
        };
        let out = c.sqs.list_queue_tags().queue_url(&url).send().await;
        let out = out.map_err(aws("ListQueueTags", format!("queue {name}")))?;
        let tags = out.tags().cloned().unwrap_or_default();
        if tags.get(STACK_TAG) != Some(&spec.stack) {
            continue;
        }
        if !spec.bucket_given {
            if let Some(b) = tags.get(BUCKET_TAG) {
                bucket = b.clone();
            } else if let Some(b) = policy_bucket(c, &url).await? {
                bucket = b;
            }
        }
        // A partner queue's secret is that partner's, not the single partner's.
        if let Some(s) = tags
            .get(SECRET_TAG)
            .filter(|_| !spec.secret_given && i == 0)
        {
            secret = s.clone();
        }
        break;
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

/// Finds or builds each partner's secret and queues, the bucket and its notifications. `values`
/// are the secret files' contents and the partners' ports, one per partner (in
/// [`crate::Spec::partners`] order, or the single partner's).
pub async fn ensure(ctx: Ctx<'_>, values: &[(Option<SecretValue>, u16)]) -> Result<Inbox> {
    let spec = ctx.spec;
    let mut routes = Vec::new();
    let mut notifications = Vec::new();
    if spec.partners.is_empty() {
        let route = ensure_route(
            ctx,
            None,
            &SecretRef::single(spec),
            (values.first().and_then(|v| v.0.as_ref()), None),
            (spec.queue_name(), spec.dlq_name()),
            spec.max_concurrency,
        )
        .await?;
        notifications.push(notify::Notify {
            id: bucket::NOTIFICATION_ID.into(),
            queue_arn: route.queue.arn.clone(),
            queue_name: route.queue_name.clone(),
            prefix: None,
        });
        routes.push(route);
    }
    for (p, (value, port)) in spec.partners.iter().zip(values) {
        let secret = SecretRef {
            id: p.secret(),
            file: p.secret_file.as_deref(),
            field: &p.fields.secret,
            whose: &p.fields.whose,
        };
        let names = (p.queue_name(&spec.stack), p.dlq_name(&spec.stack));
        let route = ensure_route(
            ctx,
            Some(p.name()),
            &secret,
            (value.as_ref(), Some(*port)),
            names,
            p.max_concurrency,
        )
        .await?;
        notifications.push(notify::Notify {
            id: p.notification_id(),
            queue_arn: route.queue.arn.clone(),
            queue_name: route.queue_name.clone(),
            prefix: p.spec.prefix.clone(),
        });
        routes.push(route);
    }
    ensure_bucket(ctx, &notifications).await?;
    Ok(Inbox {
        partners: routes,
        bucket: spec.bucket.clone(),
    })
}

/// One partner's secret, dead-letter queue, queue (with its redrive, tags and policy).
async fn ensure_route(
    ctx: Ctx<'_>,
    name: Option<&str>,
    secret: &SecretRef<'_>,
    (value, port): (Option<&SecretValue>, Option<u16>),
    (queue_name, dlq_name): (String, String),
    max_concurrency: u32,
) -> Result<Route> {
    let secret_arn = ensure_secret(ctx, secret, value).await?;
    let dlq = ensure_queue(ctx, &dlq_name, dlq_attributes()).await?;
    let mut attrs = vec![(
        QueueAttributeName::VisibilityTimeout,
        (ctx.spec.timeout_seconds * 6).to_string(),
    )];
    if !is_placeholder(&dlq.arn) {
        let redrive =
            json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": ctx.spec.max_receive_count});
        attrs.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
    }
    let queue = ensure_queue(ctx, &queue_name, attrs).await?;
    let partner = name.zip(port);
    ensure_recorded_names(ctx, (&queue_name, &queue), &secret_arn, partner).await?;
    ensure_queue_policy(ctx, &queue_name, &queue).await?;
    Ok(Route {
        name: name.map(str::to_owned),
        secret_arn,
        queue,
        queue_name,
        dlq,
        dlq_name,
        max_concurrency,
    })
}

/// Records the bucket's name and the secret's ARN on the queue (see [`BUCKET_TAG`]), and on a
/// partner's queue the partner's name and port ([`PARTNER_TAG`], [`PORT_TAG`]).
async fn ensure_recorded_names(
    ctx: Ctx<'_>,
    (queue_name, queue): (&str, &Queue),
    secret_arn: &str,
    partner: Option<(&str, u16)>,
) -> Result<()> {
    let c = ctx.clients;
    let what = format!(
        "tags of queue {queue_name} naming bucket {} and the secret",
        ctx.spec.bucket
    );
    let port = partner.map(|(_, port)| port.to_string());
    let mut wanted = vec![
        (BUCKET_TAG, ctx.spec.bucket.as_str()),
        (SECRET_TAG, secret_arn),
    ];
    if let (Some((name, _)), Some(port)) = (partner, &port) {
        wanted.extend([(PARTNER_TAG, name), (PORT_TAG, port.as_str())]);
    }
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
        for (k, v) in &wanted {
            req = req.tags(*k, *v);
        }
        req.send().await.map_err(aws("TagQueue", &what))?;
        Ok(())
    })
    .await
}
