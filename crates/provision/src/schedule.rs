//! The scheduled self-check: an EventBridge Scheduler schedule `<stack>-self-check` (default
//! `rate(15 minutes)`, or off) that invokes the function with `{"check": true}`, and its own IAM
//! role `<stack>-check-schedule-<region>` that Scheduler assumes and that may do one thing:
//! `lambda:InvokeFunction` on this function.
//!
//! The schedule has no flexible window (checks come on time) and retries an invocation that
//! Scheduler could not deliver (throttling, a Lambda service error) twice within 5 minutes; a
//! check older than that is dropped, the next one is due anyway. Scheduler invokes the function
//! asynchronously, so a check that *fails* is retried by Lambda itself (its default: twice), which
//! may land in the other AZ. Schedules cannot be tagged: it is found by its name, the role by name
//! and [`STACK_TAG`]. With the schedule off, `apply` removes both.

use std::time::Duration;

use aws_sdk_scheduler::types::{
    FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState, Target,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{json, Value};

use crate::context::{is_placeholder, Action, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::iam::ROLE_PROPAGATION;
use crate::{retry, role};

/// The role's inline policy.
pub const POLICY_NAME: &str = "sftp-forward-check-schedule";
/// What the schedule sends.
pub const INPUT: &str = r#"{"check": true}"#;
/// Scheduler's retries of an invocation it could not deliver.
pub const RETRY_ATTEMPTS: i32 = 2;
/// How old a check may get before Scheduler drops it.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(300);

/// The schedule's name.
pub fn schedule_name(stack: &str) -> String {
    format!("{stack}-self-check")
}

/// The role's name (IAM names are account-wide: the region is part of it).
pub fn role_name(stack: &str, region: &str) -> String {
    format!("{stack}-check-schedule-{region}")
}

/// Lets EventBridge Scheduler assume the role, for schedules of this account only.
pub fn trust_policy(account: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}}
        }]
    })
}

/// The role's one permission.
pub fn invoke_policy(function_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "InvokeTheSelfCheck",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": function_arn
        }]
    })
}

/// The schedule as found: (expression, state, target function, role, input, retry policy).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// `rate(...)` or `cron(...)`.
    pub expression: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The flexible window's mode.
    pub window: String,
    /// The target's ARN.
    pub target: String,
    /// The role Scheduler assumes.
    pub role: String,
    /// The payload.
    pub input: Option<Value>,
    /// (maximum retries, maximum event age in seconds).
    pub retry: Option<(i32, i32)>,
}

/// The schedule, if it exists.
pub async fn find(c: &Clients, stack: &str) -> Result<Option<Found>> {
    let name = schedule_name(stack);
    let out = match c.scheduler.get_schedule().name(&name).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(aws("GetSchedule", format!("schedule {name}"))(e)),
    };
    let t = out.target();
    Ok(Some(Found {
        expression: out.schedule_expression().unwrap_or_default().to_owned(),
        state: out.state().map_or("", |s| s.as_str()).to_owned(),
        window: out
            .flexible_time_window()
            .map_or("", |w| w.mode().as_str())
            .to_owned(),
        target: t.map_or("", |t| t.arn()).to_owned(),
        role: t.map_or("", |t| t.role_arn()).to_owned(),
        input: t
            .and_then(|t| t.input())
            .and_then(|i| serde_json::from_str(i).ok()),
        retry: t.and_then(|t| t.retry_policy()).map(|r| {
            (
                r.maximum_retry_attempts().unwrap_or(-1),
                r.maximum_event_age_in_seconds().unwrap_or(-1),
            )
        }),
    }))
}

/// What the schedule should be.
fn wanted(expression: &str, function_arn: &str, role_arn: &str) -> Found {
    Found {
        expression: expression.to_owned(),
        state: "ENABLED".into(),
        window: "OFF".into(),
        target: function_arn.to_owned(),
        role: role_arn.to_owned(),
        input: serde_json::from_str(INPUT).ok(),
        retry: Some((RETRY_ATTEMPTS, MAX_EVENT_AGE.as_secs() as i32)),
    }
}

/// With a schedule configured: the role, its policy and the schedule; without: removes them.
pub async fn ensure(ctx: Ctx<'_>, function_arn: &str) -> Result<()> {
    let Some(expression) = ctx.spec.alerting.schedule.clone() else {
        return delete(ctx).await;
    };
    let (role_arn, fresh) = ensure_role(ctx, function_arn).await?;
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let name = schedule_name(stack);
    let what = format!(
        "schedule {name} ({expression}, {INPUT} → {})",
        ctx.spec.function_name()
    );
    let found = find(c, stack).await?;
    let want = wanted(&expression, function_arn, &role_arn);
    let state = State::of(found.is_some(), found.as_ref() == Some(&want));
    let creating = found.is_none();
    ctx.converge(&what, state, || async {
        let target = Target::builder()
            .arn(function_arn)
            .role_arn(&role_arn)
            .input(INPUT)
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(RETRY_ATTEMPTS)
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE.as_secs() as i32)
                    .build(),
            )
            .build()
            .expect("target arn and role are set");
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .expect("mode is set");
        let description = format!("sftp-forward stack {stack}: the egress self-check");
        // Scheduler checks that it can assume the role: one created moments ago may not be
        // assumable yet (ValidationException "...must allow AWS EventBridge Scheduler to assume
        // the role"). Retry for a bounded time in that case only.
        let limit = if fresh {
            ROLE_PROPAGATION
        } else {
            Duration::ZERO
        };
        let waiting = "EventBridge Scheduler to be able to assume the new role";
        // CreateSchedule and UpdateSchedule take the same settings (an update replaces all).
        macro_rules! send {
            ($request:expr, $operation:literal) => {{
                let req = $request
                    .name(&name)
                    .schedule_expression(&expression)
                    .state(ScheduleState::Enabled)
                    .flexible_time_window(window)
                    .target(target)
                    .description(description);
                retry::when_codes(waiting, &["ValidationException"], limit, || {
                    req.clone().send()
                })
                .await
                .map(|_| ())
                .map_err(aws($operation, &what))
            }};
        }
        if creating {
            send!(c.scheduler.create_schedule(), "CreateSchedule")
        } else {
            send!(c.scheduler.update_schedule(), "UpdateSchedule")
        }
    })
    .await
}

/// Finds or creates the schedule's role and brings its policy to [`invoke_policy`]; returns its
/// ARN and whether it is fresh (Scheduler may not be able to assume it yet).
async fn ensure_role(ctx: Ctx<'_>, function_arn: &str) -> Result<(String, bool)> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = role_name(&spec.stack, &c.region);
    let what = format!(
        "IAM role {name} (Scheduler may invoke {} only)",
        spec.function_name()
    );
    let wanted = role::Wanted {
        name: &name,
        what: &what,
        trust: trust_policy(&account_of(function_arn)),
        description: format!(
            "EventBridge Scheduler: the self-check of sftp-forward stack {} in {}",
            spec.stack, c.region
        ),
    };
    let (arn, fresh, created) = role::ensure(ctx, &wanted).await?;
    let policy_what = format!("inline policy {POLICY_NAME} of IAM role {name}");
    if is_placeholder(&arn) || is_placeholder(function_arn) {
        ctx.converge(&policy_what, State::Missing, || async { Ok(()) })
            .await?;
        return Ok((arn, fresh));
    }
    let want = invoke_policy(function_arn);
    role::converge_policy(ctx, (&name, POLICY_NAME, &policy_what), &want, created).await?;
    Ok((arn, fresh))
}

/// The account id in an ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`).
fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or_default().to_owned()
}

/// Deletes the schedule, then its role (destroy, and apply with the schedule off).
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = schedule_name(&spec.stack);
    if find(c, &spec.stack).await?.is_some() {
        if ctx.applying() {
            let out = c.scheduler.delete_schedule().name(&name).send().await;
            match out {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(aws("DeleteSchedule", format!("schedule {name}"))(e)),
            }
        }
        ctx.report.record(
            ctx.mode,
            Action::Delete,
            format!("schedule {name}"),
            Some(&name),
        );
    }
    role::delete(ctx, &role_name(&spec.stack, &c.region), POLICY_NAME, true).await
}

/// The function's map of its egress paths for the self-check (`SFTP_FORWARD_CHECK_PATHS`): per AZ
/// the private subnet's name and CIDR and its own NAT gateway's Elastic IP, so that a check can
/// say where it ran (crates/core `placement.rs`).
pub const CHECK_PATHS_ENV: &str = sftp_forward_core::env::CHECK_PATHS;

/// [`CHECK_PATHS_ENV`]'s value for `network`: a JSON list of
/// `{"az", "subnet", "cidr", "egress_ip"}`.
pub fn check_paths(network: &crate::network::Network) -> String {
    let paths: Vec<Value> = crate::config::HALVES
        .iter()
        .zip(&network.azs)
        .zip(&network.elastic_ips)
        .map(|((half, az), eip)| {
            json!({
                "az": az,
                "subnet": half.private,
                "cidr": half.private_cidr,
                "egress_ip": eip.public_ip,
            })
        })
        .collect();
    Value::Array(paths).to_string()
}
