//! The function's delivery events (see the function's `events` module): which EventBridge bus it
//! publishes to (`SFTP_FORWARD_EVENTS` in the config's `environment`: `default` unless set, a
//! bus name or ARN, or `off`), the one IAM statement that lets it (`events:PutEvents` on exactly
//! that bus), and the queue's `maxReceiveCount` handed to it so that it can tell a last attempt.

use serde_json::{json, Value};

use crate::config::Spec;

/// Where the function sends its events.
pub const EVENTS_ENV: &str = sftp_forward_core::env::EVENTS;
/// The inbox queue's `maxReceiveCount`, so the function knows a last attempt ("gave up" events).
pub const MAX_RECEIVE_ENV: &str = sftp_forward_core::env::MAX_RECEIVE_COUNT;

/// The bus the function publishes to (as configured: `default`, a name or an ARN), `None` when
/// events are `off`.
pub fn bus(spec: &Spec) -> Option<&str> {
    match spec.environment.get(EVENTS_ENV).map(|v| v.trim()) {
        None | Some("") => Some("default"),
        Some("off") => None,
        Some(bus) => Some(bus),
    }
}

/// The ARN of `bus` (a name, or already an ARN) in this partition, region and account.
pub fn bus_arn(bus: &str, partition: &str, region: &str, account: &str) -> String {
    match bus.starts_with("arn:") {
        true => bus.to_owned(),
        false => format!("arn:{partition}:events:{region}:{account}:event-bus/{bus}"),
    }
}

/// The execution policy's statement for the events: PutEvents on that one bus.
pub fn statement(bus_arn: &str) -> Value {
    json!({
        "Sid": "PublishDeliveryEvents",
        "Effect": "Allow",
        "Action": ["events:PutEvents"],
        "Resource": bus_arn
    })
}

/// What the function's environment gains: the queue's `maxReceiveCount` (always the queue's:
/// set after the operator's `environment`) and the bus, `default` unless the operator chose.
pub fn function_env(spec: &Spec, env: &mut std::collections::HashMap<String, String>) {
    env.entry(EVENTS_ENV.to_owned())
        .or_insert_with(|| "default".to_owned());
    env.insert(
        MAX_RECEIVE_ENV.to_owned(),
        spec.max_receive_count.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_name_becomes_its_arn_and_an_arn_stays() {
        assert_eq!(
            bus_arn("default", "aws", "eu-west-1", "123456789012"),
            "arn:aws:events:eu-west-1:123456789012:event-bus/default"
        );
        let arn = "arn:aws-cn:events:cn-north-1:123456789012:event-bus/audit";
        assert_eq!(bus_arn(arn, "aws", "eu-west-1", "1"), arn);
        assert_eq!(statement(arn)["Action"], json!(["events:PutEvents"]));
        assert_eq!(statement(arn)["Resource"], arn);
    }
}
