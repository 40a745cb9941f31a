//! What the stack has of its partners, and the removal of what the config no longer declares.
//!
//! The config file is the list of partners (see `docs/PROVISION.md`, "Several partners"); the
//! stack's own record of what it has is its partner queues: `<stack>-partner-<name>`, tagged
//! [`STACK_TAG`] and [`PARTNER_TAG`] (the partner's name) and [`SECRET_TAG`] (its secret's ARN),
//! with the dead-letter queue `<stack>-partner-<name>-dlq`. `apply` converges the stack to the
//! config: a partner queue whose partner is not declared is retired with its mapping, its
//! dead-letter queue and (if the stack created it) its secret — only when both queues are empty;
//! otherwise `apply` refuses before changing anything, so no message is ever lost.
//!
//! The single-partner stack's queue `<stack>-inbox` is retired the same way once a stack has
//! `partners`, except that messages in it do not stop the apply: the queue and its mapping are
//! kept (the function routes their records by key) until a later apply finds them drained.

use aws_sdk_sqs::types::QueueAttributeName;

use crate::config::partners::queue_prefix;
use crate::context::{Action, Clients, Ctx};
use crate::error::{aws, Error, Result};
use crate::inbox::{find_queue_url, queue_attributes, PARTNER_TAG, PORT_TAG, SECRET_TAG};
use crate::STACK_TAG;

/// A partner the stack has (its queue exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The partner's name (its queue's [`PARTNER_TAG`]).
    pub name: String,
    /// Its queue's name.
    pub queue_name: String,
    /// Its queue's URL.
    pub queue_url: String,
    /// Its dead-letter queue's name.
    pub dlq_name: String,
    /// Its secret's ARN, as recorded on the queue.
    pub secret_arn: Option<String>,
    /// Its SFTP port, as recorded on the queue.
    pub port: Option<u16>,
}

/// Every partner queue of the stack (by name prefix, then by tags), in name order.
pub async fn found(c: &Clients, stack: &str) -> Result<Vec<Found>> {
    let prefix = queue_prefix(stack);
    let what = format!("queues {prefix}*");
    let mut urls = Vec::new();
    let mut token = None;
    // Bounded: 1000 per page, and a stack has at most as many partners as fit in 4 KB.
    for _ in 0..20 {
        let out = c
            .sqs
            .list_queues()
            .queue_name_prefix(&prefix)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .map_err(aws("ListQueues", &what))?;
        urls.extend(out.queue_urls().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut partners = Vec::new();
    for url in urls {
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let out = c.sqs.list_queue_tags().queue_url(&url).send().await;
        let tags = out
            .map_err(aws("ListQueueTags", format!("queue {name}")))?
            .tags()
            .cloned()
            .unwrap_or_default();
        if tags.get(STACK_TAG).map(String::as_str) != Some(stack) {
            continue;
        }
        // The dead-letter queues carry no partner tag.
        let Some(partner) = tags.get(PARTNER_TAG) else {
            continue;
        };
        partners.push(Found {
            name: partner.clone(),
            dlq_name: format!("{name}-dlq"),
            queue_name: name,
            queue_url: url,
            secret_arn: tags.get(SECRET_TAG).cloned(),
            port: tags.get(PORT_TAG).and_then(|p| p.parse().ok()),
        });
    }
    partners.sort_by(|a, b| a.queue_name.cmp(&b.queue_name));
    Ok(partners)
}

/// The stack's queues that feed the function: the single partner's and every partner's.
pub(crate) async fn stack_queues(ctx: Ctx<'_>) -> Result<Vec<String>> {
    let mut queues = vec![ctx.spec.queue_name()];
    let found = found(ctx.clients, &ctx.spec.stack).await?;
    queues.extend(found.into_iter().map(|f| f.queue_name));
    Ok(queues)
}

/// Partners the stack has but the config does not declare.
async fn undeclared(ctx: Ctx<'_>) -> Result<Vec<Found>> {
    let found = found(ctx.clients, &ctx.spec.stack).await?;
    let declared = |name: &str| ctx.spec.partners.iter().any(|p| p.name() == name);
    Ok(found.into_iter().filter(|f| !declared(&f.name)).collect())
}

/// Messages in the queue `name` (visible, in flight, delayed), or `None` when it does not exist.
pub async fn messages(c: &Clients, name: &str) -> Result<Option<u64>> {
    let Some(url) = find_queue_url(c, name).await? else {
        return Ok(None);
    };
    let attrs = queue_attributes(c, &url).await?;
    let count = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .filter_map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()))
    .sum();
    Ok(Some(count))
}

/// Before anything is changed: a partner to be removed whose queue or dead-letter queue holds
/// messages stops the apply (they would have nowhere to go).
pub async fn check_removals(ctx: Ctx<'_>) -> Result<()> {
    for f in undeclared(ctx).await? {
        still_empty(ctx, &f).await?;
    }
    Ok(())
}

/// A partner to be removed whose queue or dead-letter queue holds messages: the conflict that
/// stops the apply (they would have nowhere to go).
async fn still_empty(ctx: Ctx<'_>, f: &Found) -> Result<()> {
    for queue in [&f.queue_name, &f.dlq_name] {
        if let Some(n @ 1..) = messages(ctx.clients, queue).await? {
            return Err(Error::Conflict {
                resource: format!("partner {:?}", f.name),
                problem: format!(
                    "it is no longer declared, but its queue {queue} holds {n} message(s); \
                     removing it now would lose them"
                ),
                next: format!(
                    "let them be delivered (keep the partner declared until {queue} is \
                     empty; the function still serves it), redrive or purge them on purpose, \
                     then run apply again"
                ),
            });
        }
    }
    Ok(())
}

/// After the bucket stopped notifying them: removes the partners the config no longer declares,
/// and (in a stack with `partners`) the single-partner queue once drained. `in_use`: the declared
/// partners' secret ARNs (a secret one of them still uses is kept). Returns the ARN of the
/// single-partner queue when it is kept (the function must still be allowed to consume it).
pub async fn retire(ctx: Ctx<'_>, in_use: &[String]) -> Result<Option<String>> {
    let function = ctx.spec.function_name();
    for f in undeclared(ctx).await? {
        let why = format!("partner {} is no longer declared", f.name);
        if !ctx.applying() {
            ctx.report.record(
                ctx.mode,
                Action::Delete,
                format!("queues {} and {} ({why})", f.queue_name, f.dlq_name),
                None,
            );
            continue;
        }
        // Counted again now that the bucket no longer notifies it: an upload during this apply
        // (or a record still in flight) must not go with the queue. The function still serves
        // the partner (its environment changes later in the apply), so its mapping drains it.
        still_empty(ctx, &f).await?;
        crate::function::mapping::delete(ctx, &function, &f.queue_name).await?;
        delete_queues(ctx, &[&f.queue_name, &f.dlq_name], &why).await?;
        match &f.secret_arn {
            Some(secret) if in_use.contains(secret) => ctx.record(
                Action::Keep,
                format!("secret of partner {} (another partner uses it)", f.name),
                secret,
            ),
            Some(secret) => crate::inbox::secret::delete(ctx, secret).await?,
            None => {}
        }
    }
    if ctx.spec.partners.is_empty() {
        return Ok(None);
    }
    retire_single(ctx, &function).await
}

/// The single-partner queue of a stack now declared with `partners`: removed with its mapping
/// and dead-letter queue when both are empty, else kept (and said) until a later apply.
async fn retire_single(ctx: Ctx<'_>, function: &str) -> Result<Option<String>> {
    let (queue, dlq) = (ctx.spec.queue_name(), ctx.spec.dlq_name());
    let c = ctx.clients;
    let Some(url) = find_queue_url(c, &queue).await? else {
        return Ok(None);
    };
    let held = messages(c, &queue).await?.unwrap_or(0) + messages(c, &dlq).await?.unwrap_or(0);
    if held > 0 {
        ctx.record(
            Action::Keep,
            format!(
                "queue {queue} of the single-partner stack (it and {dlq} hold {held} message(s): \
                 its event source mapping delivers them by key prefix; apply again once both \
                 are empty to remove them)"
            ),
            &url,
        );
        let attrs = queue_attributes(c, &url).await?;
        return Ok(attrs.get(&QueueAttributeName::QueueArn).cloned());
    }
    let why = "the stack now declares partners";
    if ctx.applying() {
        crate::function::mapping::delete(ctx, function, &queue).await?;
        delete_queues(ctx, &[&queue, &dlq], why).await?;
    } else {
        ctx.report.record(
            ctx.mode,
            Action::Delete,
            format!("queues {queue} and {dlq} ({why})"),
            None,
        );
    }
    Ok(None)
}

/// Deletes the named queues if they exist and are tagged for this stack.
async fn delete_queues(ctx: Ctx<'_>, names: &[&str], why: &str) -> Result<()> {
    let c = ctx.clients;
    for name in names {
        let Some(url) = find_queue_url(c, name).await? else {
            continue;
        };
        let what = format!("queue {name} ({why})");
        let tags = c.sqs.list_queue_tags().queue_url(&url).send().await;
        let tags = tags.map_err(aws("ListQueueTags", &what))?;
        if tags.tags().and_then(|t| t.get(STACK_TAG)) != Some(&ctx.spec.stack) {
            ctx.record(
                Action::Keep,
                format!("queue {name} (not tagged {STACK_TAG}={})", ctx.spec.stack),
                &url,
            );
            continue;
        }
        let out = c.sqs.delete_queue().queue_url(&url).send().await;
        out.map_err(aws("DeleteQueue", &what))?;
        ctx.record(Action::Delete, what, &url);
    }
    Ok(())
}

/// `destroy`: every partner's queues and (if the stack created it) secret; the declared
/// partners' secrets too, when their queues are already gone.
pub(crate) async fn delete_all(ctx: Ctx<'_>) -> Result<()> {
    let found = found(ctx.clients, &ctx.spec.stack).await?;
    let mut secrets: Vec<String> = Vec::new();
    for f in &found {
        delete_queues(ctx, &[&f.queue_name, &f.dlq_name], "destroy").await?;
        secrets.extend(f.secret_arn.clone());
    }
    for p in &ctx.spec.partners {
        if !found.iter().any(|f| f.name == p.name()) {
            secrets.push(p.secret().to_owned());
        }
    }
    for secret in secrets {
        crate::inbox::secret::delete(ctx, &secret).await?;
    }
    Ok(())
}

/// One partner as the stack has it (for `outputs` and `partner list`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its key prefix, as the function's `SFTP_FORWARD_PARTNERS` has it.
    pub prefix: Option<String>,
    /// Its secret (name or ARN) as the function reads it.
    pub secret: Option<String>,
    /// Its queue's name.
    pub queue: String,
    /// Its dead-letter queue's name.
    pub dlq: String,
    /// Its SFTP port (the security group's rule for it).
    pub port: Option<u16>,
    /// Its event source mapping's `MaximumConcurrency` (`None`: no mapping).
    pub max_concurrency: Option<i32>,
}

/// The partners the stack has: its partner queues, with what the function's environment and each
/// queue's event source mapping say of them.
pub async fn listed(c: &Clients, spec: &crate::Spec) -> Result<Vec<Listed>> {
    let function = spec.function_name();
    let routing = match crate::function::find_function(c, &function).await? {
        Some(f) => f
            .environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get(sftp_forward_core::env::PARTNERS))
            .and_then(|json| sftp_forward_core::routing::Routing::from_json(json).ok()),
        None => None,
    };
    let mut out = Vec::new();
    for f in found(c, &spec.stack).await? {
        let declared = routing.as_ref().and_then(|r| r.by_name(&f.name));
        let arn = queue_attributes(c, &f.queue_url)
            .await?
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .unwrap_or_default();
        let mapping = crate::function::find_mappings(c, &function, &arn).await?;
        out.push(Listed {
            prefix: declared.and_then(|p| p.prefix().map(str::to_owned)),
            secret: declared.map(|p| p.secret_id().to_owned()),
            max_concurrency: mapping
                .first()
                .and_then(|m| m.scaling_config())
                .and_then(|s| s.maximum_concurrency()),
            name: f.name,
            queue: f.queue_name,
            dlq: f.dlq_name,
            port: f.port,
        });
    }
    Ok(out)
}
