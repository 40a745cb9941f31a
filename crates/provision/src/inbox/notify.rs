//! The bucket's notifications to the stack's queues: one `QueueConfiguration` per partner (filtered
//! on its prefix), or the single partner's unfiltered one, merged into what else the bucket has;
//! with partners, also the bucket's delivery to EventBridge, for the keys under no partner's
//! prefix ([`crate::unrouted`]). Going back to one partner leaves that delivery on: the stack
//! cannot tell whether another rule uses it, and S3's events on the default bus cost nothing.

use aws_sdk_s3::types::{
    Event, EventBridgeConfiguration, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
};

use super::bucket::{EVENT, NOTIFICATION_ID, QUEUE_POLICY_PROPAGATION};
use crate::context::{is_placeholder, Ctx, State};
use crate::error::{aws, Result};

/// One notification the stack wants on the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Its id: [`NOTIFICATION_ID`] for the single partner, `sftp-forward-<name>` for a partner.
    pub id: String,
    /// The queue it sends to.
    pub queue_arn: String,
    /// The queue's name, for the report.
    pub queue_name: String,
    /// The key prefix it is filtered on.
    pub prefix: Option<String>,
}

/// Whether a notification id is one the stack writes (the single partner's or a partner's).
pub fn is_stack_id(id: Option<&str>) -> bool {
    id.is_some_and(|id| id == NOTIFICATION_ID || id.starts_with(&format!("{NOTIFICATION_ID}-")))
}

fn prefix_of(q: &QueueConfiguration) -> Option<&str> {
    let rules = q.filter()?.key()?.filter_rules();
    match rules {
        [r] if r.name() == Some(&FilterRuleName::Prefix) => r.value(),
        _ => Some("<other filter>"),
    }
}

fn build(n: &Notify) -> QueueConfiguration {
    let mut q = QueueConfiguration::builder()
        .id(&n.id)
        .queue_arn(&n.queue_arn)
        .events(Event::from(EVENT));
    if let Some(prefix) = &n.prefix {
        let rule = FilterRule::builder()
            .name(FilterRuleName::Prefix)
            .value(prefix)
            .build();
        let key = S3KeyFilter::builder().filter_rules(rule).build();
        q = q.filter(NotificationConfigurationFilter::builder().key(key).build());
    }
    q.build().expect("arn and events set")
}

/// Brings the bucket's stack notifications to exactly `wanted` (a partner removed from the config
/// loses its entry), keeping every configuration that is not the stack's. `exists`: whether the
/// bucket exists (a plan of a new bucket has nothing to read).
pub(crate) async fn ensure(ctx: Ctx<'_>, exists: bool, wanted: &[Notify]) -> Result<()> {
    let (c, bucket) = (ctx.clients, ctx.spec.bucket.as_str());
    let targets: Vec<String> = wanted
        .iter()
        .map(|n| match &n.prefix {
            Some(p) => format!("{p}* → queue {}", n.queue_name),
            None => format!("queue {}", n.queue_name),
        })
        .collect();
    // With partners, keys under none of their prefixes go through EventBridge (crate::unrouted).
    let eventbridge = crate::unrouted::prefixes(ctx.spec).is_some();
    let what = format!(
        "notification of bucket {bucket} on {EVENT}: {}{}",
        targets.join(", "),
        if eventbridge {
            ", and to EventBridge"
        } else {
            ""
        }
    );
    let placeholder = wanted.iter().any(|n| is_placeholder(&n.queue_arn));
    let current = if !exists || placeholder {
        None
    } else {
        let out =
            c.s3.get_bucket_notification_configuration()
                .bucket(bucket)
                .send()
                .await;
        Some(out.map_err(aws("GetBucketNotificationConfiguration", &what))?)
    };
    let ours = |q: &QueueConfiguration| {
        is_stack_id(q.id()) || wanted.iter().any(|n| n.queue_arn == q.queue_arn())
    };
    let state = match &current {
        None => State::Missing,
        Some(cfg) => {
            let mut mine: Vec<(Option<&str>, &str, Option<&str>, bool)> = cfg
                .queue_configurations()
                .iter()
                .filter(|q| ours(q))
                .map(|q| {
                    let only_created = q.events().len() == 1 && q.events()[0].as_str() == EVENT;
                    (q.id(), q.queue_arn(), prefix_of(q), only_created)
                })
                .collect();
            mine.sort();
            let mut want: Vec<(Option<&str>, &str, Option<&str>, bool)> = wanted
                .iter()
                .map(|n| {
                    let id = Some(n.id.as_str());
                    (id, n.queue_arn.as_str(), n.prefix.as_deref(), true)
                })
                .collect();
            want.sort();
            let delivered = !eventbridge || cfg.event_bridge_configuration().is_some();
            State::of(!mine.is_empty(), mine == want && delivered)
        }
    };
    ctx.converge(&what, state, || async {
        let stack = wanted.iter().map(build);
        // Keep what an operator (or another tool) configured on the bucket: replace only ours.
        let cfg = match &current {
            Some(cur) => NotificationConfiguration::builder()
                .set_queue_configurations(Some(
                    cur.queue_configurations()
                        .iter()
                        .filter(|c| !ours(c))
                        .cloned()
                        .chain(stack)
                        .collect(),
                ))
                .set_topic_configurations(Some(cur.topic_configurations().to_vec()))
                .set_lambda_function_configurations(Some(
                    cur.lambda_function_configurations().to_vec(),
                ))
                .set_event_bridge_configuration(
                    cur.event_bridge_configuration().cloned().or_else(|| {
                        eventbridge.then(|| EventBridgeConfiguration::builder().build())
                    }),
                )
                .build(),
            None => NotificationConfiguration::builder()
                .set_queue_configurations(Some(stack.collect()))
                .set_event_bridge_configuration(
                    eventbridge.then(|| EventBridgeConfiguration::builder().build()),
                )
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
        put.map_err(aws("PutBucketNotificationConfiguration", &what))?;
        Ok(())
    })
    .await
}
