//! `outputs`' `alerting` object: the topic, its subscriptions (pending or confirmed), the alarms
//! with their state, the self-check's schedule and its role.

use serde::Serialize;

use super::{cloudwatch, topic};
use crate::context::Clients;
use crate::error::Result;
use crate::{schedule, Spec};

/// What exists of the stack's alerting.
#[derive(Debug, Clone, Serialize)]
pub struct Alerting {
    /// The SNS topic's ARN.
    pub topic: Option<String>,
    /// Its subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// The alarms that notify the topic.
    pub alarms: Vec<Alarm>,
    /// The self-check's schedule.
    pub schedule: Option<Schedule>,
}

/// One subscription of the topic.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// `email`, …
    pub protocol: String,
    /// The address.
    pub endpoint: String,
    /// Whether the confirmation link has not been clicked yet (nothing is delivered until then).
    pub pending: bool,
}

/// One alarm.
#[derive(Debug, Clone, Serialize)]
pub struct Alarm {
    /// Its name.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: Option<String>,
    /// The metric it watches.
    pub metric: Option<String>,
    /// The threshold.
    pub threshold: Option<f64>,
}

/// The self-check's schedule.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// `rate(...)` or `cron(...)`.
    pub expression: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The role Scheduler assumes.
    pub role: String,
}

/// Looks everything up; changes nothing.
pub async fn collect(c: &Clients, spec: &Spec) -> Result<Alerting> {
    let topic = topic::find_topic(c, &spec.stack).await?;
    let (mut subscriptions, mut alarms) = (Vec::new(), Vec::new());
    if let Some(arn) = &topic {
        for s in topic::subscriptions(c, arn).await? {
            subscriptions.push(Subscription {
                protocol: s.protocol().unwrap_or_default().to_owned(),
                endpoint: s.endpoint().unwrap_or_default().to_owned(),
                pending: topic::is_pending(c, &s).await?,
            });
        }
        for a in cloudwatch::find_by_topic(c, arn).await? {
            alarms.push(Alarm {
                name: a.alarm_name().unwrap_or_default().to_owned(),
                state: a.state_value().map(|s| s.as_str().to_owned()),
                metric: a.metric_name().map(str::to_owned),
                threshold: a.threshold(),
            });
        }
    }
    let schedule = schedule::find(c, &spec.stack).await?.map(|f| Schedule {
        name: schedule::schedule_name(&spec.stack),
        expression: f.expression,
        state: f.state,
        role: f.role,
    });
    Ok(Alerting {
        topic,
        subscriptions,
        alarms,
        schedule,
    })
}
