//! The queue the bucket notifies and its dead-letter queue, with the redrive policy and the queue
//! policy that lets only the inbox bucket (of this account) send.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

use crate::context::Action;
use crate::context::{is_placeholder, placeholder, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::STACK_TAG;

/// The dead-letter queue keeps messages for the SQS maximum: 14 days.
pub(crate) const DLQ_RETENTION_SECONDS: &str = "1209600";

/// A queue's URL and ARN.
#[derive(Debug, Clone)]
pub struct Queue {
    /// For SQS calls.
    pub url: String,
    /// For policies and the event source mapping.
    pub arn: String,
}

pub(crate) fn dlq_attributes() -> Vec<(QueueAttributeName, String)> {
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
pub(crate) fn same_value(current: Option<&String>, wanted: &str) -> bool {
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

pub(crate) async fn ensure_queue(
    ctx: Ctx<'_>,
    name: &str,
    attrs: Vec<(QueueAttributeName, String)>,
) -> Result<Queue> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let what = format!("queue {name}");
    let found = find_queue_url(c, name).await?;
    let url = ctx
        .ensure(&what, found.clone(), || async {
            let req = c
                .sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(attrs.iter().cloned().collect()))
                .tags(STACK_TAG, stack);
            // SQS refuses a name deleted less than 60 s ago (a re-apply right after destroy).
            let out = crate::retry::when_codes(
                "SQS to allow a queue name deleted moments ago",
                &[
                    "QueueDeletedRecently",
                    "AWS.SimpleQueueService.QueueDeletedRecently",
                ],
                std::time::Duration::from_secs(90),
                || req.clone().send(),
            )
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
pub(crate) async fn ensure_queue_policy(ctx: Ctx<'_>, name: &str, queue: &Queue) -> Result<()> {
    let what = format!(
        "policy of queue {name}: S3 notifications from bucket {}",
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
    converge_policy(ctx, &what, queue, policy).await
}

/// Brings the queue's policy to `policy` (a JSON document), reported as `what`.
pub(crate) async fn converge_policy(
    ctx: Ctx<'_>,
    what: &str,
    queue: &Queue,
    policy: String,
) -> Result<()> {
    let c = ctx.clients;
    let current = queue_attributes(c, &queue.url).await?;
    let state = State::of(
        current.contains_key(&QueueAttributeName::Policy),
        same_value(current.get(&QueueAttributeName::Policy), &policy),
    );
    ctx.converge(what, state, || async {
        let req = c
            .sqs
            .set_queue_attributes()
            .queue_url(&queue.url)
            .attributes(QueueAttributeName::Policy, policy);
        req.send().await.map_err(aws("SetQueueAttributes", what))?;
        Ok(())
    })
    .await
}

/// Deletes the queue and the dead-letter queue if tagged for this stack (destroy).
/// With `keep_main`, the main queue stays: it records the name of a bucket destroy had to keep,
/// so that the next destroy still finds a custom bucket.
pub(crate) async fn delete(ctx: Ctx<'_>, keep_main: bool) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    for name in [spec.queue_name(), spec.dlq_name()] {
        let Some(url) = find_queue_url(c, &name).await? else {
            continue;
        };
        let what = format!("queue {name}");
        if keep_main && name == spec.queue_name() {
            ctx.record(
                Action::Keep,
                format!("{what} (names the kept bucket for the next destroy)"),
                &url,
            );
            continue;
        }
        let tags = c
            .sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .map_err(aws("ListQueueTags", &what))?;
        if tags.tags().and_then(|t| t.get(STACK_TAG)) != Some(&spec.stack) {
            ctx.record(
                Action::Keep,
                format!("{what} (not tagged {STACK_TAG}={})", spec.stack),
                &url,
            );
            continue;
        }
        c.sqs
            .delete_queue()
            .queue_url(&url)
            .send()
            .await
            .map_err(aws("DeleteQueue", &what))?;
        ctx.record(Action::Delete, what, &url);
    }
    Ok(())
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
}
