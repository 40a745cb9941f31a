//! Where files and their events arrive: the partner secret, the queue with its dead-letter queue,
//! and the inbox bucket with its notification to the queue.
//!
//! These are found by the names the [`Spec`](crate::config::Spec) derives from the stack, and tagged
//! with [`STACK_TAG`] at creation; the secret's value is never printed.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, NotificationConfiguration,
    PublicAccessBlockConfiguration, QueueConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tagging,
};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{json, Value};

use crate::context::{is_placeholder, placeholder, Action, Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::STACK_TAG;

/// The notification's id on the bucket.
const NOTIFICATION_ID: &str = "sftp-forward";
/// Events that trigger a delivery.
const EVENT: &str = "s3:ObjectCreated:*";
/// How long S3 may take to see a queue policy just written.
const QUEUE_POLICY_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(120);
/// The dead-letter queue keeps messages for the SQS maximum: 14 days.
const DLQ_RETENTION_SECONDS: &str = "1209600";

/// The partner secret's value, read from the operator's file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

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

/// A queue's URL and ARN.
#[derive(Debug, Clone)]
pub struct Queue {
    /// For SQS calls.
    pub url: String,
    /// For policies and the event source mapping.
    pub arn: String,
}

/// Reads and checks the secret file: it must exist and hold a JSON object. Errors never quote it.
pub fn read_secret_file(path: &std::path::Path) -> Result<SecretValue> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        what: "secret file",
        path: path.to_owned(),
        source,
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => Ok(SecretValue(text)),
        Ok(_) => Err(Error::invalid(
            "secret_file",
            format!("{}: not a JSON object", path.display()),
        )),
        Err(e) => Err(Error::invalid(
            "secret_file",
            format!(
                "{}: not JSON (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ),
        )),
    }
}

/// The secret as Secrets Manager describes it, if it exists.
pub async fn find_secret(
    c: &Clients,
    id: &str,
) -> Result<Option<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput>> {
    match c.secrets.describe_secret().secret_id(id).send().await {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("DescribeSecret", format!("secret {id}"))(e)),
    }
}

/// Before anything is created: the secret must exist, or a file to create it from must be given.
pub async fn check(ctx: Ctx<'_>) -> Result<Option<SecretValue>> {
    let spec = ctx.spec;
    let value = spec
        .secret_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    if value.is_none() && find_secret(ctx.clients, &spec.secret).await?.is_none() {
        return Err(Error::invalid(
            "secret_file",
            format!(
                "secret {:?} does not exist in {}; pass --secret-file FILE with the partner JSON \
                 (see docs/PARTNER.md) to create it",
                spec.secret, ctx.clients.region
            ),
        ));
    }
    if value.is_some()
        && spec.secret.starts_with("arn:")
        && find_secret(ctx.clients, &spec.secret).await?.is_none()
    {
        return Err(Error::invalid(
            "secret",
            format!("{:?} does not exist; give a name to create it", spec.secret),
        ));
    }
    Ok(value)
}

/// The partner's `Host` and `Port` as the secret states them: from the secret file, else from the
/// existing secret's value. `None` (with a note) when there is neither, or the existing secret
/// cannot be read with these credentials. The value itself is never printed.
pub async fn partner_endpoint(
    ctx: Ctx<'_>,
    value: Option<&SecretValue>,
) -> Result<Option<(String, u16)>> {
    let text = match value {
        Some(v) => v.0.clone(),
        None => {
            let out = ctx
                .clients
                .secrets
                .get_secret_value()
                .secret_id(&ctx.spec.secret)
                .send()
                .await;
            match out {
                Ok(out) => out.secret_string().unwrap_or_default().to_owned(),
                Err(e) => {
                    ctx.report.note(format!(
                        "cannot read secret {} ({}): the security group uses partner_address \
                         and port 22",
                        ctx.spec.secret,
                        e.code().unwrap_or("no error code")
                    ));
                    return Ok(None);
                }
            }
        }
    };
    forward::config::endpoint_from_json(&text)
        .map(Some)
        .map_err(|e| Error::invalid("secret_file", format!("the partner JSON: {e}")))
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
    }
    Ok(())
}

/// The tags `apply` records on the stack's queue, so that `destroy`, `outputs` and the demo find a
/// custom bucket or secret without being told again.
pub const BUCKET_TAG: &str = "sftp-forward:bucket";
/// See [`BUCKET_TAG`].
pub const SECRET_TAG: &str = "sftp-forward:secret";

/// The stack's bucket and secret: as given on the command line or in the config, else as
/// recorded on the stack's queue by `apply`, else the default names.
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
            if let Some(b) = tags.get(BUCKET_TAG).filter(|_| !spec.bucket_given) {
                bucket = b.clone();
            }
            if let Some(s) = tags.get(SECRET_TAG).filter(|_| !spec.secret_given) {
                secret = s.clone();
            }
        }
    }
    Ok((bucket, secret))
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

async fn ensure_secret(ctx: Ctx<'_>, value: Option<&SecretValue>) -> Result<String> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let what = format!("secret {}", spec.secret);
    let found = find_secret(c, &spec.secret).await?;
    let scheduled_for_deletion = found.as_ref().is_some_and(|d| d.deleted_date().is_some());
    let arn = ctx
        .ensure(
            &what,
            found.as_ref().and_then(|d| d.arn().map(Into::into)),
            || async {
                let value = value.expect("checked: a file is given when the secret does not exist");
                let out = c
                    .secrets
                    .create_secret()
                    .name(&spec.secret)
                    .description(format!(
                        "sftp-forward partner connection for stack {}",
                        spec.stack
                    ))
                    .secret_string(&value.0)
                    .tags(
                        aws_sdk_secretsmanager::types::Tag::builder()
                            .key(STACK_TAG)
                            .value(&spec.stack)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(aws("CreateSecret", &what))?;
                Ok(out.arn().unwrap_or_default().to_owned())
            },
        )
        .await?;
    if found.is_none() {
        return Ok(arn);
    }
    let restore = format!("restore of {what} (scheduled for deletion by destroy)");
    ctx.converge(
        &restore,
        State::of(true, !scheduled_for_deletion),
        || async {
            c.secrets
                .restore_secret()
                .secret_id(&arn)
                .send()
                .await
                .map_err(aws("RestoreSecret", &restore))?;
            Ok(())
        },
    )
    .await?;
    if let Some(value) = value {
        let current = if scheduled_for_deletion && !ctx.applying() {
            None // cannot be read until restored
        } else {
            let out = c.secrets.get_secret_value().secret_id(&arn).send().await;
            out.map_err(aws("GetSecretValue", &what))?
                .secret_string()
                .map(str::to_owned)
        };
        let update = format!("value of {what} from the secret file");
        ctx.converge(
            &update,
            State::of(true, current.as_deref() == Some(value.0.as_str())),
            || async {
                let put = c
                    .secrets
                    .put_secret_value()
                    .secret_id(&arn)
                    .secret_string(&value.0)
                    .send()
                    .await;
                put.map_err(aws("PutSecretValue", &update))?;
                Ok(())
            },
        )
        .await?;
    }
    Ok(arn)
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

fn dlq_attributes() -> Vec<(QueueAttributeName, String)> {
    vec![(
        QueueAttributeName::MessageRetentionPeriod,
        DLQ_RETENTION_SECONDS.into(),
    )]
}

/// The queue's URL, if it exists.
pub async fn find_queue_url(c: &Clients, name: &str) -> Result<Option<String>> {
    match c.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url().map(str::to_owned)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetQueueUrl", format!("queue {name}"))(e)),
    }
}

/// All attributes of the queue at `url`.
pub async fn queue_attributes(
    c: &Clients,
    url: &str,
) -> Result<HashMap<QueueAttributeName, String>> {
    let out = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await;
    Ok(out
        .map_err(aws("GetQueueAttributes", format!("queue {url}")))?
        .attributes()
        .cloned()
        .unwrap_or_default())
}

/// Attribute values equal, comparing JSON documents by content (numbers and strings alike).
fn same_value(current: Option<&String>, wanted: &str) -> bool {
    fn norm(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, norm(v))).collect()),
            Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
            Value::Number(n) => Value::String(n.to_string()),
            other => other,
        }
    }
    match (current, serde_json::from_str::<Value>(wanted)) {
        (None, _) => false,
        (Some(cur), Ok(w)) if w.is_object() => {
            serde_json::from_str(cur).map(norm).ok() == Some(norm(w))
        }
        (Some(cur), _) => cur == wanted,
    }
}

async fn ensure_queue(
    ctx: Ctx<'_>,
    name: &str,
    attrs: Vec<(QueueAttributeName, String)>,
) -> Result<Queue> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let what = format!("queue {name}");
    let found = find_queue_url(c, name).await?;
    let url = ctx
        .ensure(&what, found.clone(), || async {
            let out = c
                .sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(attrs.iter().cloned().collect()))
                .tags(STACK_TAG, stack)
                .send()
                .await
                .map_err(aws("CreateQueue", &what))?;
            Ok(out.queue_url().unwrap_or_default().to_owned())
        })
        .await?;
    if is_placeholder(&url) {
        return Ok(Queue {
            arn: placeholder(&format!("{what} ARN")),
            url,
        });
    }
    let current = queue_attributes(c, &url).await?;
    if found.is_some() {
        let differs: Vec<_> = attrs
            .iter()
            .filter(|(k, v)| !same_value(current.get(k), v))
            .cloned()
            .collect();
        let settings = format!("settings of {what}");
        ctx.converge(&settings, State::of(true, differs.is_empty()), || async {
            let req = c
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(differs.into_iter().collect()));
            req.send()
                .await
                .map_err(aws("SetQueueAttributes", &settings))?;
            Ok(())
        })
        .await?;
    }
    let arn = current
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .unwrap_or_default();
    Ok(Queue { url, arn })
}

/// Lets the inbox bucket (and only it, from this account) send its notifications to the queue.
async fn ensure_queue_policy(ctx: Ctx<'_>, queue: &Queue) -> Result<()> {
    let c = ctx.clients;
    let what = format!(
        "policy of queue {}: S3 notifications from bucket {}",
        ctx.spec.queue_name(),
        ctx.spec.bucket
    );
    if is_placeholder(&queue.url) {
        return ctx
            .converge(&what, State::Missing, || async { Ok(()) })
            .await;
    }
    let account = queue.arn.split(':').nth(4).unwrap_or_default();
    let partition = queue.arn.split(':').nth(1).unwrap_or("aws");
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "InboxBucketNotifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.arn,
            "Condition": {
                "ArnEquals": {"aws:SourceArn": format!("arn:{partition}:s3:::{}", ctx.spec.bucket)},
                "StringEquals": {"aws:SourceAccount": account}
            }
        }]
    })
    .to_string();
    let current = queue_attributes(c, &queue.url).await?;
    let state = State::of(
        current.contains_key(&QueueAttributeName::Policy),
        same_value(current.get(&QueueAttributeName::Policy), &policy),
    );
    ctx.converge(&what, state, || async {
        let req = c
            .sqs
            .set_queue_attributes()
            .queue_url(&queue.url)
            .attributes(QueueAttributeName::Policy, policy);
        req.send().await.map_err(aws("SetQueueAttributes", &what))?;
        Ok(())
    })
    .await
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

async fn ensure_bucket(ctx: Ctx<'_>, queue: &Queue) -> Result<()> {
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

    let notify = format!(
        "notification of {what} → queue {} on {EVENT}",
        spec.queue_name()
    );
    let current = if !exists || is_placeholder(&queue.arn) {
        None
    } else {
        let out =
            c.s3.get_bucket_notification_configuration()
                .bucket(bucket)
                .send()
                .await;
        Some(out.map_err(aws("GetBucketNotificationConfiguration", &notify))?)
    };
    let ours =
        |q: &QueueConfiguration| q.id() == Some(NOTIFICATION_ID) || q.queue_arn() == queue.arn;
    let state = match &current {
        None => State::Missing,
        Some(cfg) => {
            let mine: Vec<&QueueConfiguration> = cfg
                .queue_configurations()
                .iter()
                .filter(|q| ours(q))
                .collect();
            let same = matches!(mine.as_slice(), [q] if q.queue_arn() == queue.arn
                && q.events().iter().any(|e| e.as_str() == EVENT)
                && q.events().len() == 1
                && q.filter().is_none());
            State::of(!mine.is_empty(), same)
        }
    };
    ctx.converge(&notify, state, || async {
        let q = QueueConfiguration::builder()
            .id(NOTIFICATION_ID)
            .queue_arn(&queue.arn)
            .events(Event::from(EVENT))
            .build()
            .expect("arn and events set");
        // Keep what an operator (or another tool) configured on the bucket: replace only ours.
        let cfg = match &current {
            Some(cur) => NotificationConfiguration::builder()
                .set_queue_configurations(Some(
                    cur.queue_configurations()
                        .iter()
                        .filter(|c| !ours(c))
                        .cloned()
                        .chain([q])
                        .collect(),
                ))
                .set_topic_configurations(Some(cur.topic_configurations().to_vec()))
                .set_lambda_function_configurations(Some(
                    cur.lambda_function_configurations().to_vec(),
                ))
                .set_event_bridge_configuration(cur.event_bridge_configuration().cloned())
                .build(),
            None => NotificationConfiguration::builder()
                .queue_configurations(q)
                .build(),
        };
        // S3 checks that it may send to the queue; right after the queue policy was written it
        // may not see the policy yet and answers InvalidArgument (documented for up to a minute).
        let req =
            c.s3.put_bucket_notification_configuration()
                .bucket(bucket)
                .notification_configuration(cfg);
        let put = crate::retry::when_codes(
            "S3 to see the queue's new policy",
            &["InvalidArgument"],
            QUEUE_POLICY_PROPAGATION,
            || req.clone().send(),
        )
        .await;
        put.map_err(aws("PutBucketNotificationConfiguration", &notify))?;
        Ok(())
    })
    .await
}

/// Puts the stack tag on the bucket (at creation, or to adopt one an interrupted apply left).
async fn tag_bucket(c: &Clients, bucket: &str, stack: &str, what: &str) -> Result<()> {
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

fn s3_tag(k: &str, v: &str) -> aws_sdk_s3::types::Tag {
    aws_sdk_s3::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .expect("key and value set")
}

/// Records the secret as kept (destroy): it was not created by this stack.
pub(crate) fn keep_foreign_secret(ctx: Ctx<'_>, arn: &str) {
    ctx.record(
        Action::Keep,
        format!("secret {} (not created by this stack)", ctx.spec.secret),
        arn,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_attributes_compare_by_content() {
        let stored = r#"{"maxReceiveCount":"5","deadLetterTargetArn":"arn:x"}"#.to_string();
        assert!(same_value(
            Some(&stored),
            r#"{"deadLetterTargetArn":"arn:x","maxReceiveCount":5}"#
        ));
        assert!(!same_value(
            Some(&stored),
            r#"{"deadLetterTargetArn":"arn:x","maxReceiveCount":6}"#
        ));
        assert!(same_value(Some(&"1800".to_string()), "1800"));
        assert!(!same_value(None, "1800"));
    }

    #[test]
    fn secret_values_are_redacted_in_debug() {
        assert_eq!(
            format!("{:?}", SecretValue("{\"password\":\"x\"}".into())),
            "SecretValue(<redacted>)"
        );
    }
}
