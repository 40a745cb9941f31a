//! The SQS event source mappings that feed the function: one per partner queue, each with
//! partial batch responses and its own bounded concurrency (connections to that partner).

use std::time::Duration;

use aws_sdk_lambda::types::{EventSourceMappingConfiguration, FunctionResponseType, ScalingConfig};

use crate::context::{is_placeholder, Action, Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::iam::ROLE_PROPAGATION;
use crate::inbox::Route;
use crate::retry;

/// The event source mappings from `queue_arn` to the function.
pub async fn find_mappings(
    c: &Clients,
    function: &str,
    queue_arn: &str,
) -> Result<Vec<EventSourceMappingConfiguration>> {
    let req = c
        .lambda
        .list_event_source_mappings()
        .function_name(function)
        .event_source_arn(queue_arn);
    match req.send().await {
        Ok(out) => Ok(out.event_source_mappings().to_vec()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(aws(
            "ListEventSourceMappings",
            format!("event source mapping of {function}"),
        )(e)),
    }
}

/// Finds, creates or updates the mapping from `route`'s queue to `function`, with the route's
/// `MaximumConcurrency`; returns its UUID.
pub(crate) async fn ensure(
    ctx: Ctx<'_>,
    function: &str,
    route: &Route,
    fresh_role: bool,
) -> Result<String> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let queue_arn = route.queue.arn.as_str();
    let concurrency = route.max_concurrency;
    let what = format!(
        "event source mapping queue {} → {function} (batch {}, max concurrency {concurrency}, ReportBatchItemFailures)",
        route.queue_name,
        spec.batch_size,
    );
    let found = if is_placeholder(queue_arn) {
        Vec::new()
    } else {
        find_mappings(c, function, queue_arn).await?
    };
    let current = found.first().cloned();
    let batch = spec.batch_size as i32;
    let scaling = || {
        ScalingConfig::builder()
            .maximum_concurrency(concurrency as i32)
            .build()
    };
    let uuid = ctx
        .ensure(
            &what,
            current.as_ref().and_then(|m| m.uuid().map(Into::into)),
            || async {
                let req = c
                    .lambda
                    .create_event_source_mapping()
                    .function_name(function)
                    .event_source_arn(queue_arn)
                    .batch_size(batch)
                    .function_response_types(FunctionResponseType::ReportBatchItemFailures)
                    .scaling_config(scaling())
                    .enabled(true);
                // Lambda checks the queue with the role: a policy written moments ago may not
                // be in force yet (InvalidParameterValueException naming sqs:ReceiveMessage).
                let limit = if fresh_role {
                    ROLE_PROPAGATION
                } else {
                    Duration::ZERO
                };
                let out = retry::when_codes(
                    "the role's new policy to let Lambda read the queue",
                    &["InvalidParameterValueException"],
                    limit,
                    || req.clone().send(),
                )
                .await
                .map_err(aws("CreateEventSourceMapping", &what))?;
                Ok(out.uuid().unwrap_or_default().to_owned())
            },
        )
        .await?;
    if let Some(m) = current {
        let same = m.batch_size() == Some(batch)
            && m.function_response_types() == [FunctionResponseType::ReportBatchItemFailures]
            && m.scaling_config().and_then(|s| s.maximum_concurrency()) == Some(concurrency as i32);
        let settings = format!("settings of the event source mapping {uuid}");
        ctx.converge(&settings, State::of(true, same), || async {
            wait_mapping_settled(c, &uuid, &settings).await?;
            c.lambda
                .update_event_source_mapping()
                .uuid(&uuid)
                .batch_size(batch)
                .function_response_types(FunctionResponseType::ReportBatchItemFailures)
                .scaling_config(scaling())
                .send()
                .await
                .map_err(aws("UpdateEventSourceMapping", &settings))?;
            Ok(())
        })
        .await?;
    }
    Ok(uuid)
}

/// Waits until the mapping is not in a transitional state (`Creating`, `Updating`, …), since
/// Lambda refuses changes meanwhile. The SDK has no waiter for mappings.
pub(crate) async fn wait_mapping_settled(c: &Clients, uuid: &str, what: &str) -> Result<()> {
    let limit = Duration::from_secs(120);
    let waiting = format!("{what} to settle");
    let settled = retry::until(&waiting, limit, || async {
        let out = c.lambda.get_event_source_mapping().uuid(uuid).send().await;
        match out {
            Ok(m) => Ok(match m.state() {
                Some("Enabled" | "Disabled") | None => Ok(()),
                Some(other) => Err(other.to_owned()),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(Ok(()))
            }
            Err(e) => Err(aws("GetEventSourceMapping", what)(e)),
        }
    })
    .await?;
    settled.ok_or_else(|| Error::Timeout {
        resource: what.to_owned(),
        state: "Enabled or Disabled",
        waited: limit,
        next: "check the mapping in the Lambda console, then run the command again".into(),
    })
}

/// Deletes the event source mappings from the queue `queue_name` to `function`, if the queue
/// exists (destroy, a partner's removal, the single-partner queue once drained).
pub(crate) async fn delete(ctx: Ctx<'_>, function: &str, queue_name: &str) -> Result<()> {
    let c = ctx.clients;
    let Some(queue_url) = crate::inbox::find_queue_url(c, queue_name).await? else {
        return Ok(());
    };
    let attrs = crate::inbox::queue_attributes(c, &queue_url).await?;
    let arn = attrs
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .cloned()
        .unwrap_or_default();
    for m in find_mappings(c, function, &arn).await? {
        let uuid = m.uuid().unwrap_or_default();
        let what = format!("event source mapping {queue_name} → {function}");
        wait_mapping_settled(c, uuid, &what).await?;
        let out = c
            .lambda
            .delete_event_source_mapping()
            .uuid(uuid)
            .send()
            .await;
        out.map_err(aws("DeleteEventSourceMapping", &what))?;
        ctx.record(Action::Delete, what, uuid);
    }
    Ok(())
}
