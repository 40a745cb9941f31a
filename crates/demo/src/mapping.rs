//! The Lambda side of the offline demo: the function's execution environments (`bootstrap` in each
//! private namespace, behind its own Runtime API endpoint) and Lambda's SQS event source mappings,
//! one per partner queue, played here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde_json::{json, Value};
use sftp_forward_core::event::decode_key;
use testkit::testbed::{Testbed, PLATFORM_IP};
use testkit::{Moto, RuntimeApi};

use crate::offline::name;

/// One execution environment of the function: `bootstrap` in a private namespace, with its own
/// Runtime API endpoint on the platform address.
pub struct Instance {
    pub subnet: u8,
    pub function: testkit::Function,
}

impl Instance {
    pub fn start(
        testbed: &Testbed,
        subnet: u8,
        bootstrap: &Path,
        function_env: &HashMap<String, String>,
        moto: &Moto,
        work: &Path,
    ) -> anyhow::Result<Instance> {
        let api = RuntimeApi::start_on(PLATFORM_IP);
        let log = work.join(format!("function-private-{}.log", name(subnet)));
        let mut cmd = testbed.command(&format!("priv{subnet}"), bootstrap);
        cmd.env_clear()
            .envs(testkit::runtime_api::platform_env(
                &api.address(),
                "sftp-forward-demo",
                512,
                &format!("private-{}", name(subnet)),
            ))
            .envs(function_env)
            .envs(moto.env());
        let function = testkit::Function::spawn(cmd, api, log)
            .with_context(|| format!("start {}", bootstrap.display()))?;
        Ok(Instance { subnet, function })
    }

    /// One invocation, waited for off the async threads (the endpoint blocks).
    pub async fn invoke(self: &Arc<Self>, payload: Value) -> anyhow::Result<testkit::Invocation> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.function.api.invoke(
                &payload.to_string(),
                Duration::from_secs(300),
                Duration::from_secs(330),
            )
        })
        .await?
        .map_err(|e| anyhow!(e))
    }
}

/// A partner's queue, which its event source mapping reads.
pub struct Queue {
    /// The partner it feeds.
    pub partner: String,
    pub url: String,
    pub arn: String,
}

/// Lambda's SQS event source mappings, played here: in turn for each partner's queue, receive a
/// batch, invoke an instance (they alternate), delete the messages that did not fail; failed ones
/// stay for SQS to redeliver.
pub async fn event_source(
    sqs: aws_sdk_sqs::Client,
    queues: Vec<Queue>,
    instances: Vec<Arc<Instance>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        for queue in &queues {
            let got = sqs
                .receive_message()
                .queue_url(&queue.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .with_context(|| format!("receive from {}", queue.url))?;
            let messages = got.messages();
            if messages.is_empty() {
                continue;
            }
            let instance = &instances[turn % instances.len()];
            turn += 1;
            let answer = instance.invoke(sqs_event(messages, &queue.arn)).await?;
            let failed = failed_ids(&answer, messages);
            let mut deleted = 0;
            for m in messages {
                if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                    continue;
                }
                if let Some(handle) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&queue.url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .context("delete a processed message")?;
                    deleted += 1;
                }
            }
            println!(
                "   [event source mapping of {}] batch of {} ({}) → function in private-{}: {deleted} deleted, {} left for retry",
                queue.partner,
                messages.len(),
                describe(messages),
                name(instance.subnet),
                failed.len()
            );
        }
    }
    Ok(())
}

/// The messages the function reported failed (all of them when the invocation failed: Lambda
/// retries the whole batch).
fn failed_ids(answer: &testkit::Invocation, messages: &[Message]) -> Vec<String> {
    if !answer.ok {
        return messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_owned))
            .collect();
    }
    let response: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The SQS event Lambda builds from received messages.
fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let region = queue_arn.split(':').nth(3).unwrap_or(testkit::moto::REGION);
    json!({
        "Records": messages.iter().map(|m| json!({
            "messageId": m.message_id(),
            "receiptHandle": m.receipt_handle(),
            "body": m.body(),
            "attributes": m.attributes().map(|a| a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect::<serde_json::Map<_, _>>()).unwrap_or_default(),
            "messageAttributes": {},
            "md5OfBody": m.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })).collect::<Vec<_>>()
    })
}

/// "s3:TestEvent", or the object keys the notifications name.
fn describe(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap_or("")).unwrap_or(Value::Null);
            if let Some(event) = body["Event"].as_str() {
                return event.to_owned();
            }
            body["Records"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|r| r["s3"]["object"]["key"].as_str())
                        .map(|k| decode_key(k).unwrap_or_else(|_| k.to_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "?".into())
        })
        .collect::<Vec<_>>()
        .join("; ")
}
