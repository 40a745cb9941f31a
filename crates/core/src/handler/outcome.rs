//! How records end, and what is derived from that alone: the log line of each record, the
//! summary of a direct invocation and the EMF metrics line of the invocation.

use std::time::Duration;

use forward::ErrorClass;
use serde_json::{json, Value};

use crate::metrics::{self, Group};

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

/// One CloudWatch Embedded Metric Format line for the invocation, per function
/// ([`crate::metrics`]); `untrusted`: records that failed on an untrusted host key.
pub(super) fn emf(all: &[&(String, Outcome)], elapsed: Duration, untrusted: u64) -> Value {
    let mut delivered = 0u64;
    let mut bytes = 0u64;
    let (mut skipped, mut transient, mut permanent) = (0u64, 0u64, 0u64);
    for (_, o) in all {
        match o {
            Outcome::Delivered { bytes: b, .. } => {
                delivered += 1;
                bytes += b;
            }
            Outcome::Skipped { .. } => skipped += 1,
            Outcome::Failed {
                class: ErrorClass::Transient,
                ..
            } => transient += 1,
            Outcome::Failed {
                class: ErrorClass::Permanent,
                ..
            } => permanent += 1,
        }
    }
    metrics::line(
        &[Group {
            dimension_sets: &[&[metrics::FUNCTION_DIMENSION]],
            metrics: &[
                ("FilesDelivered", "Count", delivered),
                ("BytesDelivered", "Bytes", bytes),
                ("FilesSkipped", "Count", skipped),
                ("FailuresTransient", "Count", transient),
                ("FailuresPermanent", "Count", permanent),
                ("HostKeyUntrusted", "Count", untrusted),
                ("Duration", "Milliseconds", elapsed.as_millis() as u64),
            ],
        }],
        &[(metrics::FUNCTION_DIMENSION, metrics::function_name())],
    )
}
