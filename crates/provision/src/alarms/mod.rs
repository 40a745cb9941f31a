//! The operator's alarms: an SNS topic (with an optional email subscription) and CloudWatch
//! alarms that notify it, on what an on-call operator must act on:
//!
//! | alarm (default name)                | metric                                                        |
//! |-------------------------------------|---------------------------------------------------------------|
//! | `<stack>-dlq-not-empty`             | `AWS/SQS` `ApproximateNumberOfMessagesVisible` of the DLQ      |
//! | `<stack>-dlq-not-empty-<partner>`   | the same, of each partner's DLQ (a stack with `partners`)      |
//! | `<stack>-function-errors`           | `AWS/Lambda` `Errors` of the function                         |
//! | `<stack>-function-throttles`        | `AWS/Lambda` `Throttles` of the function                      |
//! | `<stack>-delivery-failures`         | `SftpForward` `FailuresPermanent` (EMF, per `FunctionName`)    |
//! | `<stack>-delivery-failures-<partner>` | the same per `Partner` too (several partners only)          |
//! | `<stack>-unrouted`                 | `AWS/SQS` `ApproximateNumberOfMessagesVisible` of the queue `<stack>-unrouted` (several partners: keys under no prefix) |
//! | `<stack>-host-key-untrusted`        | `SftpForward` `HostKeyUntrusted` (EMF: records and checks)     |
//! | `<stack>-check-failing-one`, `-two` | `SftpForward` `CheckFailed` per `AvailabilityZone`             |
//! | `<stack>-check-failing-unknown-az`  | `CheckFailed` of checks that could not tell their AZ          |
//! | `<stack>-check-not-running`         | `CheckFailed` `SampleCount` (no check at all in the window)   |
//!
//! The check alarms exist only while the scheduled self-check ([`crate::schedule`]) is on.
//! Names and thresholds come from the config (`alarms`), see [`RawAlarms`]. An alarm that notifies
//! this stack's topic but is no longer wanted (renamed, schedule off) is deleted by `apply`, so
//! the alarms converge like every other resource; `destroy` deletes every alarm that notifies the
//! topic, then the topic (and with it its subscriptions).
//!
//! # Layout
//! - this module: the config (raw → validated [`Alerting`]) and the list of [`Wanted`] alarms;
//! - [`topic`]: the SNS topic and the email subscription;
//! - [`cloudwatch`]: find, put and delete the alarms;
//! - [`outputs`]: what exists of all that, for `outputs`.

pub mod cloudwatch;
pub mod outputs;
pub mod topic;

use serde::Deserialize;

use crate::config::HALVES;
use crate::context::Ctx;
use crate::error::{Error, Result};

/// The namespace of the function's EMF metrics (crates/core `handler/outcome.rs`, `placement.rs`).
pub const NAMESPACE: &str = "SftpForward";
/// The EMF dimension that tells one stack's function from another's in the same account/region.
pub const FUNCTION_DIMENSION: &str = "FunctionName";
/// The partner's dimension on its own EMF lines (crates/core `metrics`).
pub const PARTNER_DIMENSION: &str = sftp_forward_core::metrics::PARTNER_DIMENSION;
/// The EMF dimension of a self-check: the AZ it ran in, or [`UNKNOWN_AZ`].
pub const AZ_DIMENSION: &str = "AvailabilityZone";
/// The value of [`AZ_DIMENSION`] when the check could not tell where it ran.
pub const UNKNOWN_AZ: &str = "unknown";
/// The scheduled self-check's default rate.
pub const DEFAULT_SCHEDULE: &str = "rate(15 minutes)";

/// One alarm's settings as written in the config; both optional.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAlarm {
    /// The alarm's name (for `check_failing`: the prefix, `-one`, `-two`, `-unknown-az` appended).
    pub name: Option<String>,
    /// The threshold (see each alarm's default).
    pub threshold: Option<f64>,
}

/// The `alarms` object of the config file: one optional entry per alarm.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAlarms {
    /// Messages visible in the DLQ (Maximum over 5 min) ≥ threshold (default 1).
    pub dlq_not_empty: Option<RawAlarm>,
    /// Function errors (Sum over 5 min) ≥ threshold (default 1).
    pub function_errors: Option<RawAlarm>,
    /// Function throttles (Sum over 5 min) ≥ threshold (default 1).
    pub function_throttles: Option<RawAlarm>,
    /// Records failed permanently (Sum over 5 min) ≥ threshold (default 1).
    pub delivery_failures: Option<RawAlarm>,
    /// Keys under no partner's prefix waiting in `<stack>-unrouted` (Maximum over 5 min) ≥
    /// threshold (default 1); a stack with `partners` only.
    pub unrouted: Option<RawAlarm>,
    /// Records or checks refused for an untrusted host key (Sum over 5 min) ≥ threshold (default 1).
    pub host_key_untrusted: Option<RawAlarm>,
    /// Failed self-checks in one AZ (Sum over the check window) ≥ threshold (default 1).
    pub check_failing: Option<RawAlarm>,
    /// Self-checks in the check window < threshold (default 1).
    pub check_not_running: Option<RawAlarm>,
}

/// Which alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The DLQ holds messages: records that gave up.
    DlqNotEmpty,
    /// The function failed invocations (a failed check counts too).
    FunctionErrors,
    /// Lambda refused invocations (concurrency).
    FunctionThrottles,
    /// Records failed permanently.
    DeliveryFailures,
    /// Keys under no partner's prefix wait in the unrouted queue (several partners).
    Unrouted,
    /// The partner showed a host key that is not pinned.
    HostKeyUntrusted,
    /// Self-checks failed in one AZ (or in an unknown one).
    CheckFailing,
    /// No self-check ran in the window.
    CheckNotRunning,
}

impl Kind {
    /// Every kind, in the order `apply` reports them.
    pub const ALL: [Kind; 8] = [
        Kind::DlqNotEmpty,
        Kind::FunctionErrors,
        Kind::FunctionThrottles,
        Kind::DeliveryFailures,
        Kind::Unrouted,
        Kind::HostKeyUntrusted,
        Kind::CheckFailing,
        Kind::CheckNotRunning,
    ];

    /// The config key (and the default name's suffix, `-` for `_`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::DlqNotEmpty => "dlq_not_empty",
            Kind::FunctionErrors => "function_errors",
            Kind::FunctionThrottles => "function_throttles",
            Kind::DeliveryFailures => "delivery_failures",
            Kind::Unrouted => "unrouted",
            Kind::HostKeyUntrusted => "host_key_untrusted",
            Kind::CheckFailing => "check_failing",
            Kind::CheckNotRunning => "check_not_running",
        }
    }

    fn raw(self, raw: &RawAlarms) -> Option<&RawAlarm> {
        match self {
            Kind::DlqNotEmpty => raw.dlq_not_empty.as_ref(),
            Kind::FunctionErrors => raw.function_errors.as_ref(),
            Kind::FunctionThrottles => raw.function_throttles.as_ref(),
            Kind::DeliveryFailures => raw.delivery_failures.as_ref(),
            Kind::Unrouted => raw.unrouted.as_ref(),
            Kind::HostKeyUntrusted => raw.host_key_untrusted.as_ref(),
            Kind::CheckFailing => raw.check_failing.as_ref(),
            Kind::CheckNotRunning => raw.check_not_running.as_ref(),
        }
    }

    /// Whether the alarm watches the self-check (exists only with a schedule).
    pub fn needs_schedule(self) -> bool {
        matches!(self, Kind::CheckFailing | Kind::CheckNotRunning)
    }
}

/// One alarm's validated name and threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The kind.
    pub kind: Kind,
    /// The name (a prefix for [`Kind::CheckFailing`]).
    pub name: String,
    /// The threshold.
    pub threshold: f64,
}

/// The validated alerting config: the email, the alarms, the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    /// Where the topic mails, if anyone.
    pub email: Option<String>,
    /// Each alarm's name and threshold, in [`Kind::ALL`]'s order.
    pub alarms: Vec<Setting>,
    /// The self-check's schedule expression; `None` when off.
    pub schedule: Option<String>,
}

impl Alerting {
    /// Checks `alarm_email`, `alarms` and `self_check_schedule`; errors name the field.
    pub fn from_raw(
        stack: &str,
        email: Option<String>,
        raw: Option<RawAlarms>,
        schedule: Option<String>,
    ) -> Result<Alerting> {
        if let Some(e) = &email {
            let ok = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
                && !e.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(Error::invalid(
                    "alarm_email",
                    format!("{e:?} is not an email address"),
                ));
            }
        }
        let raw = raw.unwrap_or_default();
        let mut alarms = Vec::new();
        for kind in Kind::ALL {
            let given = kind.raw(&raw).cloned().unwrap_or_default();
            let field = format!("alarms.{}", kind.key());
            let name = given
                .name
                .unwrap_or_else(|| format!("{stack}-{}", kind.key().replace('_', "-")));
            // CloudWatch allows 255 characters; the check alarms append up to 11.
            if name.is_empty() || name.chars().count() > 240 || name.chars().any(|c| c.is_control())
            {
                return Err(Error::invalid(
                    format!("{field}.name"),
                    format!("{name:?}: use 1-240 printable characters"),
                ));
            }
            let threshold = given.threshold.unwrap_or(1.0);
            let least = if kind == Kind::CheckNotRunning {
                1.0
            } else {
                0.0
            };
            if !threshold.is_finite() || threshold < least {
                return Err(Error::invalid(
                    format!("{field}.threshold"),
                    format!("{threshold} must be a number ≥ {least}"),
                ));
            }
            alarms.push(Setting {
                kind,
                name,
                threshold,
            });
        }
        let schedule = match schedule.as_deref().map(str::trim) {
            Some("off") => None,
            None => Some(DEFAULT_SCHEDULE.to_owned()),
            Some(expr) => {
                check_schedule(expr)?;
                Some(expr.to_owned())
            }
        };
        Ok(Alerting {
            email,
            alarms,
            schedule,
        })
    }

    /// The setting of `kind`.
    pub fn setting(&self, kind: Kind) -> &Setting {
        self.alarms
            .iter()
            .find(|s| s.kind == kind)
            .expect("every kind has a setting")
    }

    /// The window of the check alarms in seconds: an hour, or two schedule intervals when they
    /// are longer (a `cron(...)` schedule: a day), at most a day.
    pub fn check_window(&self) -> i32 {
        let interval = self
            .schedule
            .as_deref()
            .map_or(0, |s| rate_seconds(s).unwrap_or(86_400 / 2));
        (2 * interval).clamp(3600, 86_400)
    }
}

/// `rate(N unit)`'s length in seconds; `None` for `cron(...)` and `at(...)`.
pub fn rate_seconds(expr: &str) -> Option<i32> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: i32 = n.parse().ok()?;
    let per = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    n.checked_mul(per)
}

/// `rate(N minutes|hours|days)` (N ≥ 1; `minute`, `hour`, `day` for 1) or `cron(...)`, as
/// EventBridge Scheduler takes them; `at(...)` runs once, which is no health check.
fn check_schedule(expr: &str) -> Result<()> {
    let rate_ok = rate_seconds(expr).is_some_and(|s| s >= 60);
    let cron_ok = expr.starts_with("cron(") && expr.ends_with(')') && expr.len() > 6;
    if rate_ok || cron_ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "self_check_schedule",
            format!(
                "{expr:?}: use rate(N minutes|hours|days), cron(...), or off [default {DEFAULT_SCHEDULE}]"
            ),
        ))
    }
}

/// How CloudWatch treats a period without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Nothing happened: fine (counts of failures, a queue nobody touched).
    NotBreaching,
    /// Nothing happened: that is the problem (no check ran).
    Breaching,
}

impl Missing {
    /// CloudWatch's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::NotBreaching => "notBreaching",
            Missing::Breaching => "breaching",
        }
    }
}

/// One alarm as `apply` wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The kind.
    pub kind: Kind,
    /// The alarm's name.
    pub name: String,
    /// What it means and what to do (the alarm's description, in every notification).
    pub description: String,
    /// `AWS/SQS`, `AWS/Lambda` or [`NAMESPACE`].
    pub namespace: &'static str,
    /// The metric.
    pub metric: &'static str,
    /// Its dimensions, (name, value).
    pub dimensions: Vec<(&'static str, String)>,
    /// `Sum`, `Maximum` or `SampleCount`.
    pub statistic: &'static str,
    /// Seconds per period (one period is evaluated).
    pub period: i32,
    /// The threshold.
    pub threshold: f64,
    /// Below (`true`: `LessThanThreshold`) or at/above (`GreaterThanOrEqualToThreshold`).
    pub below: bool,
    /// A period without data.
    pub missing: Missing,
}

impl Wanted {
    /// `FailuresPermanent Sum ≥ 1 per 300 s, missing data notBreaching`: the report line.
    pub fn summary(&self) -> String {
        format!(
            "{} {} {} {} per {} s, missing data {}",
            self.metric,
            self.statistic,
            if self.below { "<" } else { "≥" },
            self.threshold,
            self.period,
            self.missing.as_str()
        )
    }
}

/// Every alarm `apply` wants for a single-partner stack: `function` and `dlq` name what they
/// watch, `azs` are the two AZs (AZ one, AZ two).
pub fn wanted(alerting: &Alerting, function: &str, dlq: &str, azs: &[String; 2]) -> Vec<Wanted> {
    wanted_for(alerting, function, &[(None, dlq.to_owned())], None, azs)
}

/// Every alarm `apply` wants: as [`wanted`], with one dead-letter-queue alarm per partner
/// (`dlqs`: the partner's name, `None` for the single partner, and its dead-letter queue), named
/// `<name>-<partner>`; `unrouted`: the queue of keys under no partner's prefix (a stack with
/// `partners`), watched by [`Kind::Unrouted`].
pub fn wanted_for(
    alerting: &Alerting,
    function: &str,
    dlqs: &[(Option<String>, String)],
    unrouted: Option<&str>,
    azs: &[String; 2],
) -> Vec<Wanted> {
    let fun = || vec![(FUNCTION_DIMENSION, function.to_owned())];
    let mut out = Vec::new();
    let runbook = "see docs/OPERATIONS.md";
    for s in &alerting.alarms {
        if s.kind.needs_schedule() && alerting.schedule.is_none() {
            continue;
        }
        let base = |metric, namespace, dimensions, statistic, what: String| Wanted {
            kind: s.kind,
            name: s.name.clone(),
            description: format!("{what}; {runbook}"),
            namespace,
            metric,
            dimensions,
            statistic,
            period: 300,
            threshold: s.threshold,
            below: false,
            missing: Missing::NotBreaching,
        };
        match s.kind {
            Kind::DlqNotEmpty => {
                for (partner, dlq) in dlqs {
                    let whose = partner
                        .as_ref()
                        .map_or(String::new(), |p| format!(" of partner {p}"));
                    let alarm = base(
                        "ApproximateNumberOfMessagesVisible",
                        "AWS/SQS",
                        vec![("QueueName", dlq.to_owned())],
                        "Maximum",
                        format!(
                            "records{whose} gave up after every retry and wait in the \
                             dead-letter queue {dlq}"
                        ),
                    );
                    out.push(match partner {
                        Some(p) => Wanted {
                            name: format!("{}-{p}", s.name),
                            ..alarm
                        },
                        None => alarm,
                    });
                }
            }
            Kind::FunctionErrors => out.push(base(
                "Errors",
                "AWS/Lambda",
                vec![("FunctionName", function.to_owned())],
                "Sum",
                format!("invocations of {function} failed (a failed self-check is one)"),
            )),
            Kind::FunctionThrottles => out.push(base(
                "Throttles",
                "AWS/Lambda",
                vec![("FunctionName", function.to_owned())],
                "Sum",
                format!("Lambda throttled invocations of {function}"),
            )),
            Kind::DeliveryFailures => {
                out.push(base(
                    "FailuresPermanent",
                    NAMESPACE,
                    fun(),
                    "Sum",
                    format!("records of {function} failed permanently (not retried)"),
                ));
                // Per partner too, when there are several (the function's [FunctionName,
                // Partner] EMF lines; one partner's would repeat the function's): which partner's
                // files fail, without opening the logs.
                let partners: Vec<&String> = dlqs.iter().filter_map(|(p, _)| p.as_ref()).collect();
                for partner in partners.iter().filter(|_| partners.len() > 1) {
                    let mut dims = fun();
                    dims.push((PARTNER_DIMENSION, (*partner).clone()));
                    out.push(Wanted {
                        name: format!("{}-{partner}", s.name),
                        ..base(
                            "FailuresPermanent",
                            NAMESPACE,
                            dims,
                            "Sum",
                            format!(
                                "records of {function} for partner {partner} failed permanently \
                                 (not retried)"
                            ),
                        )
                    });
                }
            }
            Kind::Unrouted => out.extend(unrouted.map(|queue| {
                base(
                    "ApproximateNumberOfMessagesVisible",
                    "AWS/SQS",
                    vec![("QueueName", queue.to_owned())],
                    "Maximum",
                    format!(
                        "new objects under no partner's prefix: their S3 events wait in the \
                         queue {queue} (no partner received them)"
                    ),
                )
            })),
            Kind::HostKeyUntrusted => out.push(base(
                "HostKeyUntrusted",
                NAMESPACE,
                fun(),
                "Sum",
                "the partner showed a host key that is not in TrustedHostKeys".to_owned(),
            )),
            Kind::CheckFailing => {
                let window = alerting.check_window();
                let zones = HALVES
                    .iter()
                    .zip(azs)
                    .map(|(h, az)| (h.private.trim_start_matches("private-"), az.as_str()));
                for (word, az) in zones.chain([("unknown-az", UNKNOWN_AZ)]) {
                    let mut dims = fun();
                    dims.push((AZ_DIMENSION, az.to_owned()));
                    let where_ = if az == UNKNOWN_AZ {
                        "in a subnet it could not tell (no egress IP, no subnet address)".to_owned()
                    } else {
                        format!("in AZ {az} (private-{word}, or its NAT gateway's path)")
                    };
                    out.push(Wanted {
                        name: format!("{}-{word}", s.name),
                        period: window,
                        ..base(
                            "CheckFailed",
                            NAMESPACE,
                            dims,
                            "Sum",
                            format!("the egress self-check of {function} failed {where_}"),
                        )
                    });
                }
            }
            Kind::CheckNotRunning => out.push(Wanted {
                period: alerting.check_window(),
                below: true,
                missing: Missing::Breaching,
                ..base(
                    "CheckFailed",
                    NAMESPACE,
                    fun(),
                    "SampleCount",
                    format!(
                        "fewer self-checks of {function} ran than scheduled (schedule, its role, \
                         or the function's start is broken)"
                    ),
                )
            }),
        }
    }
    out
}

/// `apply`: the topic (and its email subscription), the schedule (or its removal when off), then
/// the alarms; returns the topic's ARN. `azs` are the stack's two AZs, `dlqs` each partner's
/// dead-letter queue (see [`wanted_for`]).
pub async fn ensure(
    ctx: Ctx<'_>,
    azs: &[String; 2],
    function_arn: &str,
    dlqs: &[(Option<String>, String)],
) -> Result<String> {
    let topic = topic::ensure(ctx).await?;
    crate::schedule::ensure(ctx, function_arn).await?;
    let spec = ctx.spec;
    let unrouted = crate::unrouted::prefixes(spec).map(|_| crate::unrouted::name(&spec.stack));
    let wanted = wanted_for(
        &spec.alerting,
        &spec.function_name(),
        dlqs,
        unrouted.as_deref(),
        azs,
    );
    cloudwatch::ensure(ctx, &topic, &wanted).await?;
    Ok(topic)
}

/// `destroy`: the alarms that notify the topic, the schedule and its role, the topic.
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    if let Some(topic) = topic::find_topic(ctx.clients, &ctx.spec.stack).await? {
        cloudwatch::delete_all(ctx, &topic).await?;
    }
    crate::schedule::delete(ctx).await?;
    topic::delete(ctx).await
}

#[cfg(test)]
mod tests;
