//! How records end, and what is derived from that alone: the log line of each record, the
//! summary of a direct invocation and the EMF metrics line of the invocation.

use std::time::Duration;

use forward::ErrorClass;
use serde_json::{json, Value};

use crate::after::HOST_KEY_NOT_TRUSTED;
use crate::metrics::{self, Group};
use crate::routing::Routing;

use super::NO_PARTNER;

use crate::receipt::Receipt;
use crate::source::StoreError;

/// How one record ended. Every record ends in exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Published and verified on the partner.
    Delivered { remote_path: String, bytes: u64 },
    /// Nothing to do, with the reason (already delivered, object gone, test event, folder marker).
    Skipped { reason: String },
    /// Not delivered: retried when transient, kept for an operator (DLQ, failed invocation) either way.
    Failed { class: ErrorClass, reason: String },
}

impl Outcome {
    pub(super) fn failed(class: ErrorClass, reason: impl ToString) -> Outcome {
        Outcome::Failed {
            class,
            reason: reason.to_string(),
        }
    }

    pub(super) fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

/// A direct (non-SQS) invocation in which some record failed: the invocation fails so that Lambda
/// retries it (and then its on-failure destination keeps it).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} records failed: {reasons}")]
pub struct BatchFailed {
    /// Records that failed.
    pub failed: usize,
    /// Records in the invocation.
    pub total: usize,
    /// `key: reason` for each failure.
    pub reasons: String,
}

pub(super) fn store_outcome(e: StoreError) -> Outcome {
    match e {
        StoreError::Missing { .. } => Outcome::Skipped {
            reason: format!("{e}; nothing to send"),
        },
        _ if e.is_transient() => Outcome::failed(ErrorClass::Transient, e),
        _ => Outcome::failed(ErrorClass::Permanent, e),
    }
}

pub(super) fn already(r: &Receipt) -> Outcome {
    Outcome::Skipped {
        reason: format!(
            "already delivered to {} at {}",
            r.remote_path, r.delivered_at
        ),
    }
}

pub(super) fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Delivered { remote_path, bytes } => {
            tracing::info!(outcome = "delivered", remote_path = %remote_path, bytes, "delivered")
        }
        Outcome::Skipped { reason } => {
            tracing::info!(outcome = "skipped", reason = %reason, "skipped")
        }
        Outcome::Failed { class, reason } => {
            tracing::error!(outcome = "failed", class = %class, reason = %reason, "not delivered")
        }
    }
}

pub(super) fn summary(all: &[&(String, Outcome)]) -> Value {
    let count = |f: fn(&Outcome) -> bool| all.iter().filter(|(_, o)| f(o)).count();
    json!({
        "delivered": count(|o| matches!(o, Outcome::Delivered { .. })),
        "skipped": count(|o| matches!(o, Outcome::Skipped { .. })),
        "failed": count(|o| o.is_failed()),
    })
}

/// What the metrics need of a forwarded record besides its outcome: its partner (an index into
/// the routing's partners; `None` when no partner owns its key) and its failure code.
pub(crate) struct Counted {
    pub partner: Option<usize>,
    pub failure_code: Option<&'static str>,
    pub outcome: Outcome,
}

/// The counts of a set of outcomes.
#[derive(Default)]
struct Tally {
    delivered: u64,
    bytes: u64,
    skipped: u64,
    transient: u64,
    permanent: u64,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Delivered { bytes, .. } => {
                self.delivered += 1;
                self.bytes += bytes;
            }
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Failed {
                class: ErrorClass::Transient,
                ..
            } => self.transient += 1,
            Outcome::Failed {
                class: ErrorClass::Permanent,
                ..
            } => self.permanent += 1,
        }
    }

    /// The counts as the metrics both kinds of line carry; `untrusted`: records that failed on
    /// an untrusted host key.
    fn metrics(&self, untrusted: u64) -> [metrics::Metric<'static>; 6] {
        [
            ("FilesDelivered", "Count", self.delivered),
            ("BytesDelivered", "Bytes", self.bytes),
            ("FilesSkipped", "Count", self.skipped),
            ("FailuresTransient", "Count", self.transient),
            ("FailuresPermanent", "Count", self.permanent),
            ("HostKeyUntrusted", "Count", untrusted),
        ]
    }
}

/// The CloudWatch Embedded Metric Format lines of the invocation ([`crate::metrics`]): one per
/// function (every record, the duration, `Unrouted`: records whose key no partner owns), then
/// one per partner that had records, with the `Partner` dimension (none for a stack's single
/// partner without a prefix). `counted` holds the forwarded
/// records (records that failed to decode or were skipped before routing count only in the
/// function's line).
pub(super) fn emf(
    all: &[&(String, Outcome)],
    counted: &[Counted],
    elapsed: Duration,
    routing: &Routing,
) -> Vec<Value> {
    let mut total = Tally::default();
    for (_, o) in all {
        total.add(o);
    }
    let is = |c: &Counted, code: &str| c.failure_code == Some(code);
    let untrusted = |of: &mut dyn Iterator<Item = &Counted>| {
        of.filter(|c| is(c, HOST_KEY_NOT_TRUSTED)).count() as u64
    };
    let unrouted = counted.iter().filter(|c| is(c, NO_PARTNER)).count() as u64;
    let function = (metrics::FUNCTION_DIMENSION, metrics::function_name());
    let mut all_metrics = total.metrics(untrusted(&mut counted.iter())).to_vec();
    all_metrics.push(("Unrouted", "Count", unrouted));
    all_metrics.push(("Duration", "Milliseconds", elapsed.as_millis() as u64));
    let mut lines = vec![metrics::line(
        &[Group {
            dimension_sets: &[&[metrics::FUNCTION_DIMENSION]],
            metrics: &all_metrics,
        }],
        std::slice::from_ref(&function),
    )];
    // A single partner without a prefix (SFTP_FORWARD_SECRET_ID) has every record: its line
    // would repeat the function's, as six more billed metrics.
    if matches!(routing.partners(), [only] if only.prefix().is_none()) {
        return lines;
    }
    for (n, partner) in routing.partners().iter().enumerate() {
        let mine: Vec<&Counted> = counted.iter().filter(|c| c.partner == Some(n)).collect();
        if mine.is_empty() {
            continue;
        }
        let mut t = Tally::default();
        for c in &mine {
            t.add(&c.outcome);
        }
        let untrusted = untrusted(&mut mine.iter().copied());
        lines.push(metrics::line(
            &[Group {
                dimension_sets: &[&[metrics::FUNCTION_DIMENSION, metrics::PARTNER_DIMENSION]],
                metrics: &t.metrics(untrusted),
            }],
            &[
                function.clone(),
                (metrics::PARTNER_DIMENSION, partner.name().to_owned()),
            ],
        ));
    }
    lines
}
