//! Keys under no partner's prefix (a stack with `partners`): the bucket notifies each partner's
//! queue filtered on its prefix, and S3 notifications cannot say "any key but these prefixes"
//! (nor overlap), so such a key would reach nothing. Instead the bucket also sends its events to
//! EventBridge (its `EventBridgeConfiguration`, set with the partners' notifications in
//! [`crate::inbox::notify`]), and an EventBridge rule `<stack>-unrouted` on the default bus takes
//! the `Object Created` events of this bucket whose key is `anything-but` every partner prefix
//! into the SQS queue `<stack>-unrouted` (14 days' retention, a policy admitting exactly that
//! rule). The alarm `<stack>-unrouted` ([`crate::alarms`]) fires while it holds messages; the
//! operator reads which keys were not routed there and redrives them once a partner owns them.
//!
//! The pattern uses `{"anything-but": {"prefix": [...]}}`, a list of prefixes: documented by
//! Event Ruler (the matching engine behind EventBridge rules, its README "Anything-but prefix
//! list"); the EventBridge user guide shows a single prefix only. A pattern AWS refused would
//! fail `apply` at `PutRule` (`InvalidEventPatternException`), not silently.
//!
//! A stack back to one partner loses the rule; its queue goes too once empty (kept with a note
//! while it holds the records of keys nobody took). `destroy` removes all of it.

use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Spec;
use crate::context::{is_placeholder, Action, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::inbox::queue::{
    converge_policy, ensure_queue, find_queue_url, Queue, DLQ_RETENTION_SECONDS,
};
use crate::STACK_TAG;

/// The id of the rule's one target (the queue).
const TARGET_ID: &str = "unrouted-queue";

/// The rule's and the queue's name: `<stack>-unrouted`.
pub fn name(stack: &str) -> String {
    format!("{stack}-unrouted")
}

/// The partners' prefixes, when keys can fall outside all of them: a stack with `partners`,
/// each with a prefix (one named partner without a prefix takes every key).
pub fn prefixes(spec: &Spec) -> Option<Vec<&str>> {
    let prefixes: Option<Vec<&str>> = spec
        .partners
        .iter()
        .map(|p| p.spec.prefix.as_deref().filter(|p| !p.is_empty()))
        .collect();
    prefixes.filter(|p| !p.is_empty())
}

/// The rule's event pattern: this bucket's `Object Created` events whose key starts with none of
/// `prefixes`.
pub fn pattern(bucket: &str, prefixes: &[&str]) -> Value {
    json!({
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [bucket]},
            "object": {"key": [{"anything-but": {"prefix": prefixes}}]}
        }
    })
}

/// The queue's policy: EventBridge may send, for exactly the rule `rule_arn`.
fn queue_policy(queue_arn: &str, rule_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "UnroutedKeysRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
        }]
    })
}

/// What exists of it, for `outputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The rule's ARN, if it exists.
    pub rule: Option<String>,
    /// Its event pattern as EventBridge has it.
    pub pattern: Option<String>,
    /// The queue's URL, if it exists.
    pub queue: Option<String>,
    /// Messages in the queue (visible, in flight, delayed): unrouted keys not yet handled.
    pub messages: Option<u64>,
}

/// The rule `name`, if it exists: (ARN, pattern, state, description).
async fn describe_rule(
    c: &Clients,
    name: &str,
) -> Result<Option<aws_sdk_eventbridge::operation::describe_rule::DescribeRuleOutput>> {
    match c.events.describe_rule().name(name).send().await {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("DescribeRule", format!("EventBridge rule {name}"))(e)),
    }
}

/// Looks the rule and the queue up; changes nothing.
pub async fn find(c: &Clients, stack: &str) -> Result<Option<Found>> {
    let name = name(stack);
    let rule = describe_rule(c, &name).await?;
    let queue = find_queue_url(c, &name).await?;
    if rule.is_none() && queue.is_none() {
        return Ok(None);
    }
    Ok(Some(Found {
        rule: rule.as_ref().and_then(|r| r.arn().map(str::to_owned)),
        pattern: rule.and_then(|r| r.event_pattern().map(str::to_owned)),
        messages: crate::partners::messages(c, &name).await?,
        queue,
    }))
}

/// `apply` with partners: the queue, the rule on `prefixes`, its target, the queue's policy.
pub async fn ensure(ctx: Ctx<'_>, prefixes: &[&str]) -> Result<()> {
    let name = name(&ctx.spec.stack);
    let retention = vec![(
        QueueAttributeName::MessageRetentionPeriod,
        DLQ_RETENTION_SECONDS.to_owned(),
    )];
    let queue = ensure_queue(ctx, &name, retention).await?;
    let rule_arn = ensure_rule(ctx, &name, prefixes).await?;
    // The policy before the target: an event the queue refuses is retried, then dropped.
    ensure_policy(ctx, &name, &queue, &rule_arn).await?;
    ensure_target(ctx, &name, &queue).await
}

/// The queue's policy admitting exactly the rule.
async fn ensure_policy(ctx: Ctx<'_>, name: &str, queue: &Queue, rule_arn: &str) -> Result<()> {
    let what = format!("policy of queue {name}: events of EventBridge rule {name}");
    if is_placeholder(&queue.url) || is_placeholder(rule_arn) {
        return ctx
            .converge(&what, State::Missing, || async { Ok(()) })
            .await;
    }
    let policy = queue_policy(&queue.arn, rule_arn).to_string();
    converge_policy(ctx, &what, queue, policy).await
}

/// The rule with the wanted pattern, enabled; returns its ARN (a placeholder in a plan).
async fn ensure_rule(ctx: Ctx<'_>, name: &str, prefixes: &[&str]) -> Result<String> {
    let c = ctx.clients;
    let wanted = pattern(&ctx.spec.bucket, prefixes);
    let description = format!(
        "sftp-forward stack {}: new objects of bucket {} under no partner's prefix",
        ctx.spec.stack, ctx.spec.bucket
    );
    let what = format!(
        "EventBridge rule {name}: Object Created in {} with a key under none of {}",
        ctx.spec.bucket,
        prefixes.join(", ")
    );
    let current = describe_rule(c, name).await?;
    let state = match &current {
        None => State::Missing,
        Some(r) => {
            let pattern: Option<Value> =
                r.event_pattern().and_then(|p| serde_json::from_str(p).ok());
            State::of(
                true,
                pattern.as_ref() == Some(&wanted)
                    && r.state() == Some(&RuleState::Enabled)
                    && r.description() == Some(description.as_str()),
            )
        }
    };
    let mut arn = current.as_ref().and_then(|r| r.arn().map(str::to_owned));
    let put = || async {
        let tag = Tag::builder()
            .key(STACK_TAG)
            .value(&ctx.spec.stack)
            .build()
            .expect("key and value set");
        let out = c
            .events
            .put_rule()
            .name(name)
            .event_pattern(wanted.to_string())
            .state(RuleState::Enabled)
            .description(&description)
            .tags(tag)
            .send()
            .await
            .map_err(aws("PutRule", &what))?;
        Ok(out.rule_arn().map(str::to_owned))
    };
    match state {
        State::Same => ctx.converge(&what, state, || async { Ok(()) }).await?,
        _ if !ctx.applying() => ctx.converge(&what, state, || async { Ok(()) }).await?,
        _ => {
            let put = put().await?;
            arn = put.or(arn);
            // Recorded after the change (converge runs nothing more when applying is done).
            ctx.report.record(
                ctx.mode,
                match state {
                    State::Missing => Action::Create,
                    _ => Action::Update,
                },
                &what,
                arn.as_deref(),
            );
        }
    }
    Ok(arn.unwrap_or_else(|| crate::context::placeholder(&format!("rule {name} ARN"))))
}

/// The rule's one target: the queue.
async fn ensure_target(ctx: Ctx<'_>, name: &str, queue: &Queue) -> Result<()> {
    let c = ctx.clients;
    let what = format!("target of EventBridge rule {name}: queue {name}");
    let current = if is_placeholder(&queue.arn) {
        None
    } else {
        targets(c, name).await?
    };
    let state = match &current {
        None => State::Missing,
        Some(ts) if ts.is_empty() => State::Missing,
        Some(ts) => State::of(
            true,
            ts.len() == 1 && ts[0].id() == TARGET_ID && ts[0].arn() == queue.arn,
        ),
    };
    ctx.converge(&what, state, || async {
        let stale: Vec<String> = current
            .iter()
            .flatten()
            .map(|t| t.id().to_owned())
            .filter(|id| id != TARGET_ID)
            .collect();
        if !stale.is_empty() {
            let req = c.events.remove_targets().rule(name).set_ids(Some(stale));
            req.send().await.map_err(aws("RemoveTargets", &what))?;
        }
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(&queue.arn)
            .build()
            .expect("id and arn set");
        let out = c
            .events
            .put_targets()
            .rule(name)
            .targets(target)
            .send()
            .await
            .map_err(aws("PutTargets", &what))?;
        match out.failed_entry_count() {
            0 => Ok(()),
            _ => Err(crate::Error::invalid(
                "unrouted",
                format!("EventBridge refused the target of rule {name}: {out:?}"),
            )),
        }
    })
    .await
}

/// The rule's targets; `None` when the rule does not exist.
async fn targets(c: &Clients, name: &str) -> Result<Option<Vec<Target>>> {
    match c.events.list_targets_by_rule().rule(name).send().await {
        Ok(out) => Ok(Some(out.targets().to_vec())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("ListTargetsByRule", format!("EventBridge rule {name}"))(e)),
    }
}

/// Removes the rule (its targets first) and the queue, each only if tagged for this stack.
/// `keep_messages` (apply, back to one partner): a queue that holds messages stays, with a note.
pub(crate) async fn delete(ctx: Ctx<'_>, keep_messages: bool) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let name = name(stack);
    // `ensure` creates the queue before the rule and this removes it after: no queue, no rule.
    // A single-partner stack (most of them) so asks nothing of EventBridge, and an operator
    // policy from before the rule still applies it.
    let Some(url) = find_queue_url(c, &name).await? else {
        return Ok(());
    };
    if let Some(rule) = describe_rule(c, &name).await? {
        let arn = rule.arn().unwrap_or_default().to_owned();
        let what = format!("EventBridge rule {name}");
        let tags = c.events.list_tags_for_resource().resource_arn(&arn).send();
        let tags = tags.await.map_err(aws("ListTagsForResource", &what))?;
        let ours = tags
            .tags()
            .iter()
            .any(|t| t.key() == STACK_TAG && t.value() == stack);
        if !ours {
            ctx.record(
                Action::Keep,
                format!("{what} (not tagged {STACK_TAG}={stack})"),
                &arn,
            );
        } else {
            if ctx.applying() {
                let ids: Vec<String> = targets(c, &name)
                    .await?
                    .unwrap_or_default()
                    .iter()
                    .map(|t| t.id().to_owned())
                    .collect();
                if !ids.is_empty() {
                    let req = c.events.remove_targets().rule(&name).set_ids(Some(ids));
                    req.send().await.map_err(aws("RemoveTargets", &what))?;
                }
                let req = c.events.delete_rule().name(&name);
                req.send().await.map_err(aws("DeleteRule", &what))?;
            }
            ctx.record(Action::Delete, what, &arn);
        }
    }
    let what = format!("queue {name}");
    let tags = c.sqs.list_queue_tags().queue_url(&url).send().await;
    let tags = tags.map_err(aws("ListQueueTags", &what))?;
    if tags
        .tags()
        .and_then(|t| t.get(STACK_TAG))
        .map(String::as_str)
        != Some(stack)
    {
        ctx.record(
            Action::Keep,
            format!("{what} (not tagged {STACK_TAG}={stack})"),
            &url,
        );
        return Ok(());
    }
    let held = crate::partners::messages(c, &name).await?.unwrap_or(0);
    if keep_messages && held > 0 {
        ctx.report.note(format!(
            "queue {name} holds {held} message(s): S3 events of keys no partner took; read \
             them (docs/OPERATIONS.md, \"Unrouted keys\"), then purge it: the next apply deletes it"
        ));
        ctx.record(
            Action::Keep,
            format!("{what} (holds {held} message(s))"),
            &url,
        );
        return Ok(());
    }
    if ctx.applying() {
        let req = c.sqs.delete_queue().queue_url(&url);
        req.send().await.map_err(aws("DeleteQueue", &what))?;
    }
    ctx.record(Action::Delete, what, &url);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_takes_created_objects_of_the_bucket_under_no_prefix() {
        let p = pattern("inbox", &["acme/", "beta/"]);
        assert_eq!(p["source"], json!(["aws.s3"]));
        assert_eq!(p["detail-type"], json!(["Object Created"]));
        assert_eq!(p["detail"]["bucket"]["name"], json!(["inbox"]));
        assert_eq!(
            p["detail"]["object"]["key"],
            json!([{"anything-but": {"prefix": ["acme/", "beta/"]}}])
        );
        let policy = queue_policy(
            "arn:aws:sqs:r:1:s-unrouted",
            "arn:aws:events:r:1:rule/s-unrouted",
        );
        let st = &policy["Statement"][0];
        assert_eq!(st["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(
            st["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:aws:events:r:1:rule/s-unrouted"
        );
    }
}
