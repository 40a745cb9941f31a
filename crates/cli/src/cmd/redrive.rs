//! `redrive`: read the dead-letter queue, forward each message's objects through the Lambda's
//! forwarder, delete a message only once all of its objects are delivered (or already were),
//! put the rest back at once and report how many messages remain.

use std::collections::HashSet;

use forward::ErrorClass;
use serde_json::json;
use sftp_forward_core::event::{decode_message_body, Work};
use sftp_forward_core::Outcome;

use crate::args::{RouteArgs, SecretArgs, StackArgs};
use crate::cmd::replay::line;
use crate::exit::{self, Exit};
use crate::progress::Feedback;
use crate::report::{self, Row};
use crate::setup;

/// Messages stay hidden from other readers while this run works on them.
const VISIBILITY_SECS: i32 = 900;

pub async fn run(
    dlq: &str,
    secret: &SecretArgs,
    stack: &StackArgs,
    route: &RouteArgs,
    as_json: bool,
) -> anyhow::Result<Exit> {
    let config = setup::aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let target = setup::target(secret, stack, Some(route), &config).await?;
    let mut forwarder = target.forwarder(setup::s3(&config));
    let feedback = Feedback::items(0);

    let (mut rows, mut seen, mut kept) = (Vec::new(), HashSet::new(), Vec::new());
    let mut deleted = 0usize;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(VISIBILITY_SECS)
            .send()
            .await
            .map_err(|e| exit::aws(e, format!("reading {dlq}")))?;
        let fresh: Vec<_> = received
            .messages()
            .iter()
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_owned()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        feedback.bar().inc_length(fresh.len() as u64);
        for m in fresh {
            let id = m.message_id().unwrap_or_default();
            let outcomes = match decode_message_body(m.body().unwrap_or_default()) {
                Err(e) => vec![(
                    format!("message {id}"),
                    Outcome::Failed {
                        class: ErrorClass::Permanent,
                        reason: e.to_string(),
                    },
                )],
                Ok(works) => {
                    let mut out = Vec::with_capacity(works.len());
                    for work in works {
                        out.push(match work {
                            Work::Forward(obj) => (
                                format!("s3://{}/{} (message {id})", obj.bucket, obj.key),
                                forwarder.forward(&obj, None).await,
                            ),
                            Work::Skip(reason) => {
                                (format!("message {id}"), Outcome::Skipped { reason })
                            }
                        });
                    }
                    out
                }
            };
            let done = outcomes
                .iter()
                .all(|(_, o)| !matches!(o, Outcome::Failed { .. }));
            for (item, outcome) in outcomes {
                feedback.log(line(&item, &outcome));
                rows.push(Row { item, outcome });
            }
            let handle = m.receipt_handle().unwrap_or_default();
            if !done {
                kept.push(handle.to_owned());
            } else if let Err(e) = sqs
                .delete_message()
                .queue_url(dlq)
                .receipt_handle(handle)
                .send()
                .await
            {
                // Delivered, but the message stays: a later redrive finds the receipt and skips it.
                rows.push(Row {
                    item: format!("message {id}"),
                    outcome: Outcome::Failed {
                        class: ErrorClass::Transient,
                        reason: format!("{:#}", exit::aws(e, "deleting the message")),
                    },
                });
            } else {
                deleted += 1;
            }
            feedback.bar().inc(1);
        }
    }
    // Failed messages go back to the queue now rather than after the visibility timeout.
    for handle in &kept {
        if let Err(e) = sqs
            .change_message_visibility()
            .queue_url(dlq)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
        {
            feedback.log(format!(
                "{:#}",
                exit::aws(e, "returning a failed message to the queue")
            ));
        }
    }
    feedback.finish();
    let remaining = remaining(&sqs, dlq).await?;

    if as_json {
        let fields = json!({
            "queue": dlq,
            "messages": seen.len(),
            "deleted": deleted,
            "kept": kept.len(),
            "remaining": remaining,
        });
        report::print_json(&rows, fields);
    } else {
        report::print_table(&rows, false);
        println!(
            "{} messages read, {deleted} deleted, {} kept; {remaining} remain in {dlq}",
            seen.len(),
            kept.len()
        );
    }
    Ok(report::totals(&rows).exit)
}

/// Messages in the queue, visible or in flight (as SQS approximates them).
async fn remaining(sqs: &aws_sdk_sqs::Client, dlq: &str) -> anyhow::Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(dlq)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| exit::aws(e, format!("counting the messages in {dlq}")))?;
    let attrs = out.attributes();
    Ok([
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|a| attrs.and_then(|m| m.get(a)))
    .filter_map(|v| v.parse::<u64>().ok())
    .sum())
}
