//! The alarms' SNS topic `<stack>-alarms` (tagged) and, with `alarm_email`, its email
//! subscription: SNS mails a confirmation link and delivers nothing until it is clicked, so
//! `apply` says "pending confirmation" until then (and never subscribes the address again, which
//! would send another mail).

use aws_sdk_sns::types::{Subscription, Tag};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::context::{Action, Clients, Ctx};
use crate::error::{aws, Error, Result};
use crate::STACK_TAG;

/// What SNS shows instead of an ARN for a subscription nobody confirmed yet.
pub const PENDING: &str = "PendingConfirmation";

/// The topic's name.
pub fn topic_name(stack: &str) -> String {
    format!("{stack}-alarms")
}

/// The topic's ARN, if it exists (by name: `ListTopics`, paginated).
pub async fn find_topic(c: &Clients, stack: &str) -> Result<Option<String>> {
    let suffix = format!(":{}", topic_name(stack));
    let mut pages = c.sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListTopics", format!("SNS topic {}", &suffix[1..])))?;
        if let Some(arn) = page
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.ends_with(&suffix))
        {
            return Ok(Some(arn.to_owned()));
        }
    }
    Ok(None)
}

/// The topic's subscriptions.
pub async fn subscriptions(c: &Clients, topic: &str) -> Result<Vec<Subscription>> {
    let mut out = Vec::new();
    let mut pages = c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws(
            "ListSubscriptionsByTopic",
            format!("SNS topic {topic}"),
        ))?;
        out.extend(page.subscriptions().iter().cloned());
    }
    Ok(out)
}

/// Whether a subscription still waits for its confirmation link.
pub async fn is_pending(c: &Clients, s: &Subscription) -> Result<bool> {
    let arn = s.subscription_arn().unwrap_or(PENDING);
    if arn == PENDING {
        return Ok(true);
    }
    let out = c
        .sns
        .get_subscription_attributes()
        .subscription_arn(arn)
        .send()
        .await;
    match out {
        Ok(o) => Ok(o
            .attributes()
            .and_then(|a| a.get("PendingConfirmation"))
            .is_some_and(|v| v == "true")),
        Err(e) if e.code() == Some("NotFound") => Ok(true),
        Err(e) => Err(aws(
            "GetSubscriptionAttributes",
            format!("subscription {arn}"),
        )(e)),
    }
}

/// Refuses a topic of this name that is not tagged for this stack.
async fn check_ours(ctx: Ctx<'_>, arn: &str) -> Result<()> {
    let tags = ctx
        .clients
        .sns
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws("ListTagsForResource", format!("SNS topic {arn}")))?;
    let stack = tags
        .tags()
        .iter()
        .find(|t| t.key() == STACK_TAG)
        .map(|t| t.value());
    if stack == Some(ctx.spec.stack.as_str()) {
        return Ok(());
    }
    Err(Error::Conflict {
        resource: format!("SNS topic {arn}"),
        problem: match stack {
            Some(other) => format!("it belongs to stack {other:?}"),
            None => format!("it exists but is not tagged {STACK_TAG}={}", ctx.spec.stack),
        },
        next: "use another --stack, or remove that topic if it is a leftover".into(),
    })
}

/// Finds or creates the topic, then the email subscription if one is configured; returns the
/// topic's ARN (a placeholder in a plan that would create it).
pub async fn ensure(ctx: Ctx<'_>) -> Result<String> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = topic_name(&spec.stack);
    let what = format!("SNS topic {name} (alarm notifications)");
    let found = find_topic(c, &spec.stack).await?;
    if let Some(arn) = &found {
        check_ours(ctx, arn).await?;
    }
    let arn = ctx
        .ensure(&what, found.clone(), || async {
            let out = c
                .sns
                .create_topic()
                .name(&name)
                .tags(
                    Tag::builder()
                        .key(STACK_TAG)
                        .value(&spec.stack)
                        .build()
                        .expect("tag"),
                )
                .send()
                .await
                .map_err(aws("CreateTopic", &what))?;
            Ok(out.topic_arn().unwrap_or_default().to_owned())
        })
        .await?;
    let Some(email) = &spec.alerting.email else {
        return Ok(arn);
    };
    let sub_what = format!("email subscription {email} to {name}");
    let existing = match &found {
        Some(topic) => subscriptions(c, topic)
            .await?
            .into_iter()
            .find(|s| s.protocol() == Some("email") && s.endpoint() == Some(email.as_str())),
        None => None,
    };
    let pending = match &existing {
        Some(s) => is_pending(c, s).await?,
        None => true,
    };
    let shown = if pending {
        format!("{sub_what} (pending until {email} clicks the link in AWS's confirmation mail)")
    } else {
        format!("{sub_what} (confirmed)")
    };
    ctx.ensure(
        &shown,
        existing.map(|s| s.subscription_arn().unwrap_or(PENDING).to_owned()),
        || async {
            let out = c
                .sns
                .subscribe()
                .topic_arn(&arn)
                .protocol("email")
                .endpoint(email)
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(aws("Subscribe", &sub_what))?;
            Ok(out.subscription_arn().unwrap_or(PENDING).to_owned())
        },
    )
    .await?;
    if pending {
        ctx.report.note(format!(
            "alarm mail to {email} starts once the subscription is confirmed: AWS sent a mail \
             with a link to {email} (unconfirmed subscriptions expire after 3 days; apply again \
             to resend)"
        ));
    }
    Ok(arn)
}

/// Deletes the topic after unsubscribing its confirmed subscriptions (pending ones have no ARN
/// to unsubscribe and go with the topic). Only a topic tagged for this stack is deleted.
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let c = ctx.clients;
    let Some(arn) = find_topic(c, &ctx.spec.stack).await? else {
        return Ok(());
    };
    if check_ours(ctx, &arn).await.is_err() {
        ctx.record(
            Action::Keep,
            format!(
                "SNS topic {arn} (not tagged {STACK_TAG}={})",
                ctx.spec.stack
            ),
            &arn,
        );
        return Ok(());
    }
    for s in subscriptions(c, &arn).await? {
        let Some(sub) = s.subscription_arn().filter(|a| *a != PENDING) else {
            continue;
        };
        let what = format!(
            "{} subscription {} to the alarm topic",
            s.protocol().unwrap_or("?"),
            s.endpoint().unwrap_or("?")
        );
        let out = c.sns.unsubscribe().subscription_arn(sub).send().await;
        match out {
            Ok(_) => ctx.record(Action::Delete, what, sub),
            Err(e) if e.code() == Some("NotFound") => {}
            Err(e) => return Err(aws("Unsubscribe", what)(e)),
        }
    }
    let what = format!("SNS topic {}", topic_name(&ctx.spec.stack));
    c.sns
        .delete_topic()
        .topic_arn(&arn)
        .send()
        .await
        .map_err(aws("DeleteTopic", &what))?;
    ctx.record(Action::Delete, what, &arn);
    Ok(())
}
