//! The handler: a loop over records that turns each into one [`Outcome`]. The batch response,
//! the logs and the EMF metrics are all derived from the outcomes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use forward::{Connector, Error as ForwardError, ErrorClass, Partner, PublishOutcome, RemotePath};
use serde_json::{json, Value};
use tracing::Instrument;

use crate::check::{self, CheckFailed, Report};
use crate::event::{decode, Invocation, Item, ObjectRef, Work};
use crate::progress;
use crate::receipt::{now_rfc3339, Receipt};
use crate::secret::SecretSource;
use crate::settings::Settings;
use crate::source::{ObjectStore, Ranges, StoreError};

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
    fn failed(class: ErrorClass, reason: impl ToString) -> Outcome {
        Outcome::Failed {
            class,
            reason: reason.to_string(),
        }
    }

    fn is_failed(&self) -> bool {
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

/// How [`Forwarder::forward_with`] treats one object; the default is what the Lambda does.
#[derive(Clone, Debug, Default)]
pub struct ForwardOptions {
    /// Send even when a receipt says these bytes were delivered (the receipt is then rewritten).
    pub force: bool,
    /// Publish under this path instead of the route's mapping of the key.
    pub remote_path: Option<RemotePath>,
}

/// The kept partner connection and the secret text it was built from.
struct Partnered {
    connector: Connector,
    secret_digest: u64,
    fetched_at: Instant,
}

/// Forwards objects named by events to the partner. Kept across warm invocations, so the secret
/// and the SSH connection are reused.
pub struct Forwarder<S, K> {
    store: S,
    secrets: K,
    settings: Settings,
    partner: Option<Partnered>,
}

impl<S: ObjectStore, K: SecretSource> Forwarder<S, K> {
    /// A forwarder over the given S3 store and secret source.
    pub fn new(store: S, secrets: K, settings: Settings) -> Self {
        Forwarder {
            store,
            secrets,
            settings,
            partner: None,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Handle one invocation. `deadline` is when the invocation times out.
    pub async fn handle(
        &mut self,
        payload: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, HandlerError> {
        let started = Instant::now();
        let invocation = decode(payload)?;
        let (items, is_sqs) = match invocation {
            Invocation::Sqs(items) => (items, true),
            Invocation::Direct(items) => (items, false),
            Invocation::Check => {
                let report = self.check().await?;
                return Ok(serde_json::to_value(report).expect("serialisable"));
            }
        };
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let outcomes = self.process_item(&item, deadline).await;
            results.push((item.message_id, outcomes));
        }
        let all: Vec<&(String, Outcome)> = results.iter().flat_map(|(_, o)| o).collect();
        println!("{}", emf(&all, started.elapsed()));

        let failed_items: Vec<_> = results
            .iter()
            .filter(|(_, outcomes)| outcomes.iter().any(|(_, o)| o.is_failed()))
            .collect();
        if is_sqs {
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failed_items
                .iter()
                .filter_map(|(id, _)| id.clone())
                .map(|id| {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = id;
                    f
                })
                .collect();
            return Ok(serde_json::to_value(response).expect("serialisable"));
        }
        if !failed_items.is_empty() {
            let reasons = all
                .iter()
                .filter_map(|(what, o)| match o {
                    Outcome::Failed { class, reason } => Some(format!("{what}: {class}: {reason}")),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(HandlerError::Batch(BatchFailed {
                failed: failed_items.len(),
                total: results.len(),
                reasons,
            }));
        }
        Ok(summary(&all))
    }

    /// Every record of one item, each with a label for logs (`s3://bucket/key` or the reason).
    async fn process_item(
        &mut self,
        item: &Item,
        deadline: Option<Instant>,
    ) -> Vec<(String, Outcome)> {
        let label = item.message_id.clone().unwrap_or_else(|| "record".into());
        let works = match &item.work {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(message_id = ?item.message_id, outcome = "failed", class = "permanent", reason = %e, "cannot decode record");
                return vec![(label, Outcome::failed(ErrorClass::Permanent, e))];
            }
        };
        let mut out = Vec::with_capacity(works.len());
        for work in works {
            match work {
                Work::Skip(reason) => {
                    tracing::info!(message_id = ?item.message_id, outcome = "skipped", reason = %reason, "nothing to forward");
                    out.push((
                        label.clone(),
                        Outcome::Skipped {
                            reason: reason.clone(),
                        },
                    ));
                }
                Work::Forward(obj) => {
                    let what = format!("s3://{}/{}", obj.bucket, obj.key);
                    let span = tracing::info_span!("record", bucket = %obj.bucket, key = %obj.key, version = ?obj.version_id, size = ?obj.size, message_id = ?item.message_id);
                    let outcome = self.forward(obj, deadline).instrument(span.clone()).await;
                    span.in_scope(|| log_outcome(&outcome));
                    out.push((what, outcome));
                }
            }
        }
        out
    }

    /// One object: route, receipt check, stream from S3 into the publisher, receipt.
    pub async fn forward(&mut self, obj: &ObjectRef, deadline: Option<Instant>) -> Outcome {
        self.forward_with(obj, deadline, &ForwardOptions::default())
            .await
    }

    /// [`Forwarder::forward`] with an operator's choices (the CLI's `--force`, `--remote-path`).
    pub async fn forward_with(
        &mut self,
        obj: &ObjectRef,
        deadline: Option<Instant>,
        options: &ForwardOptions,
    ) -> Outcome {
        let mapped = match &options.remote_path {
            Some(p) => Ok(p.clone()),
            None => self.settings.route.map(&obj.key),
        };
        let path = match mapped {
            Ok(p) => p,
            Err(e) => return Outcome::failed(ErrorClass::Permanent, e),
        };
        let Some(deadline) = deadline else {
            return self.deliver(obj, &path, options).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left < self.settings.min_time_left {
            return Outcome::failed(
                ErrorClass::Transient,
                format!("only {left:?} of invocation time left; not started, will be retried"),
            );
        }
        // The whole record (S3, secret, connection, transfer, receipt) runs until the margin
        // before the deadline; a stalled partner is bounded by this too, not only by each
        // request's own timeout.
        let stop_at = deadline
            .checked_sub(self.settings.deadline_margin)
            .unwrap_or(deadline);
        match tokio::time::timeout_at(stop_at.into(), self.deliver(obj, &path, options)).await {
            Ok(outcome) => outcome,
            Err(_) => self.stopped_at_deadline(deadline).await,
        }
    }

    /// A record whose work was dropped at the margin before `deadline`: the interrupted
    /// transfer's handles are closed and its temporary file removed from the partner within the
    /// first half of the margin; a resumable one (an S3 object read by ranges) is kept instead and
    /// its progress recorded on the object ([`crate::progress`]) by a sixth of the margin before
    /// the deadline, so the next delivery resumes it; the rest is for the response. The record
    /// fails as transient so that it comes back (SQS: listed in `batchItemFailures`; a direct
    /// invocation fails).
    async fn stopped_at_deadline(&mut self, deadline: Instant) -> Outcome {
        let margin = self.settings.deadline_margin;
        let until = |part: u32| {
            let at = deadline.checked_sub(margin / part).unwrap_or(deadline);
            (at, at.saturating_duration_since(Instant::now()))
        };
        let cleaned = match &mut self.partner {
            Some(p) => p.connector.abandon(until(2).1).await,
            None => Default::default(),
        };
        let recorded = progress::record(&self.store, &cleaned.kept, until(6).0).await;
        let mut parts = Vec::new();
        let mut resumes = false;
        for (kept, recorded) in cleaned.kept.iter().zip(recorded) {
            let (done, len) = (kept.progress.bytes_done(), kept.progress.len);
            parts.push(if recorded {
                resumes = true;
                format!("{done} of {len} bytes on the partner; the next delivery resumes")
            } else {
                format!(
                    "{done} of {len} bytes on the partner, but the progress could not be \
                     recorded: the next delivery starts over"
                )
            });
        }
        if !cleaned.left.is_empty() {
            parts.push(format!(
                "the partner did not answer in time to remove {:?}; the next connection removes it",
                cleaned.left
            ));
        } else if !cleaned.removed.is_empty() {
            parts.push("its temporary file was removed from the partner".to_owned());
        } else if cleaned.kept.is_empty() {
            parts.push("no temporary file was started".to_owned());
        }
        let retried = if resumes {
            "will be retried"
        } else {
            "will be retried from the start"
        };
        Outcome::failed(
            ErrorClass::Transient,
            format!(
                "stopped {margin:?} before the invocation's deadline, not finished; {}; {retried}",
                parts.join("; ")
            ),
        )
    }

    /// [`Forwarder::forward_with`] after the route and the time checks, without a time bound.
    async fn deliver(
        &mut self,
        obj: &ObjectRef,
        path: &RemotePath,
        options: &ForwardOptions,
    ) -> Outcome {
        let tags = match self.store.tags(obj).await {
            Ok(t) => t,
            Err(e) => return store_outcome(e),
        };
        let receipt = Receipt::from_tags(&tags).filter(|_| !options.force);
        if let (Some(r), Some(etag)) = (&receipt, &obj.etag) {
            if &r.etag == etag {
                return already(r);
            }
        }

        let mut retried_auth = false;
        loop {
            let opened = match self.store.open(obj).await {
                Ok(o) => o,
                Err(e) => return store_outcome(e),
            };
            if let (Some(r), None, Some(etag)) = (&receipt, &obj.etag, &opened.etag) {
                if &r.etag == etag {
                    return already(r);
                }
            }
            let overwrite = self.settings.overwrite;
            if let Err(outcome) = self.connector().await {
                return outcome;
            }
            // (Field by field: the store is read while the connector is in use.)
            let connector = &mut self.partner.as_mut().expect("set by connector()").connector;
            let store = &self.store;
            let opened_etag = opened.etag.clone();
            // Large objects go in stripes, each read by its own ranged GET of the same ETag.
            let published = if store.can_read_ranges() && opened.etag.is_some() {
                let ranges = Ranges::new(store, obj, opened)
                    .expect("has an ETag")
                    .resuming(progress::from_tags(&tags));
                connector.publish_ranges(&ranges, path, overwrite).await
            } else {
                connector
                    .publish(opened.body, Some(opened.len), path, overwrite)
                    .await
            };
            match published {
                Ok(done) if done.outcome == PublishOutcome::SkippedSameSize => {
                    return Outcome::Skipped {
                        reason: format!(
                            "{} already has the same size on the partner",
                            done.remote_path
                        ),
                    }
                }
                Ok(done) => {
                    let etag = opened_etag
                        .clone()
                        .or_else(|| obj.etag.clone())
                        .unwrap_or_default();
                    self.write_receipt(obj, tags, &done.remote_path, etag).await;
                    return Outcome::Delivered {
                        remote_path: done.remote_path,
                        bytes: done.bytes,
                    };
                }
                Err(ForwardError::AuthRejected { .. }) if !retried_auth => {
                    // The secret may have been rotated: read it again, once.
                    retried_auth = true;
                    let before = self.partner.as_ref().map(|p| p.secret_digest);
                    self.partner = None;
                    if let Err(outcome) = self.connector().await {
                        return outcome;
                    }
                    if self.partner.as_ref().map(|p| p.secret_digest) != before {
                        tracing::info!("login refused; the secret changed since it was cached, retrying with the new one");
                        continue;
                    }
                    return Outcome::failed(
                        ErrorClass::Permanent,
                        "the partner refused the login and the secret has not changed: fix the credentials in the secret",
                    );
                }
                // A newer version of the object is (or will be) delivered by its own event.
                Err(e @ ForwardError::Superseded { .. }) => {
                    return Outcome::Skipped {
                        reason: e.to_string(),
                    }
                }
                Err(e) => return Outcome::failed(e.class(), e),
            }
        }
    }

    /// The egress self-check with the current secret (read afresh, not from the cache) and these
    /// settings. The report is logged as one JSON line; `Err` if the check found any problem or
    /// could not run.
    pub async fn check(&self) -> Result<Report, CheckFailed> {
        let id = &self.settings.secret_id;
        let text = self.secrets.fetch(id).await?;
        let partner = Partner::from_json(&text).map_err(|source| CheckFailed::Partner {
            secret_id: id.clone(),
            source,
        })?;
        let report = check::run(
            &partner,
            &self.settings.tuning,
            &self.settings.egress_probe(),
        )
        .await;
        println!(
            "{}",
            json!({
                "level": if report.ok { "INFO" } else { "ERROR" },
                "message": if report.ok { "egress self-check ok" } else { "egress self-check failed" },
                "check": &report,
            })
        );
        if report.ok {
            Ok(report)
        } else {
            Err(CheckFailed::Problems(Box::new(report)))
        }
    }

    /// The kept connector, refreshed when the secret's TTL has passed (kept as is if the secret is unchanged).
    async fn connector(&mut self) -> Result<&mut Connector, Outcome> {
        let fresh = self
            .partner
            .as_ref()
            .is_some_and(|p| p.fetched_at.elapsed() < self.settings.secret_ttl);
        if !fresh {
            let text = self
                .secrets
                .fetch(&self.settings.secret_id)
                .await
                .map_err(|e| {
                    Outcome::failed(
                        if e.is_transient() {
                            ErrorClass::Transient
                        } else {
                            ErrorClass::Permanent
                        },
                        e,
                    )
                })?;
            let digest = digest(&text);
            match &mut self.partner {
                Some(p) if p.secret_digest == digest => p.fetched_at = Instant::now(),
                _ => {
                    let partner = Partner::from_json(&text).map_err(|e| {
                        Outcome::failed(
                            ErrorClass::Permanent,
                            format!("secret {}: {e}", self.settings.secret_id),
                        )
                    })?;
                    self.partner = Some(Partnered {
                        connector: Connector::new(partner, self.settings.tuning.clone()),
                        secret_digest: digest,
                        fetched_at: Instant::now(),
                    });
                }
            }
        }
        Ok(&mut self.partner.as_mut().expect("set above").connector)
    }

    async fn write_receipt(
        &self,
        obj: &ObjectRef,
        tags: Vec<(String, String)>,
        remote_path: &str,
        etag: String,
    ) {
        let receipt = Receipt {
            delivered_at: now_rfc3339(),
            remote_path: remote_path.to_owned(),
            etag,
        };
        // The receipt replaces an interrupted delivery's progress.
        let Some(merged) = receipt.merge_into(progress::without(tags)) else {
            tracing::warn!("object has too many tags for a delivery receipt; a repeated event would deliver it again");
            return;
        };
        if let Err(e) = self.store.put_tags(obj, merged).await {
            // The file is on the partner: failing the record now would only send it again.
            tracing::warn!(error = %e, "delivered, but the receipt could not be written");
        }
    }
}

/// Why a whole invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an event this function understands.
    #[error(transparent)]
    Decode(#[from] crate::event::DecodeError),
    /// Some records of a direct invocation failed.
    #[error(transparent)]
    Batch(#[from] BatchFailed),
    /// A `{"check": true}` invocation found problems (or could not run).
    #[error(transparent)]
    Check(#[from] CheckFailed),
}

impl HandlerError {
    /// The `errorType` Lambda records for a failed invocation.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Decode(_) => "SftpForward.UnrecognisedEvent",
            HandlerError::Batch(_) => "SftpForward.RecordsFailed",
            HandlerError::Check(_) => "SftpForward.CheckFailed",
        }
    }
}

fn store_outcome(e: StoreError) -> Outcome {
    match e {
        StoreError::Missing { .. } => Outcome::Skipped {
            reason: format!("{e}; nothing to send"),
        },
        _ if e.is_transient() => Outcome::failed(ErrorClass::Transient, e),
        _ => Outcome::failed(ErrorClass::Permanent, e),
    }
}

fn already(r: &Receipt) -> Outcome {
    Outcome::Skipped {
        reason: format!(
            "already delivered to {} at {}",
            r.remote_path, r.delivered_at
        ),
    }
}

fn digest(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn log_outcome(outcome: &Outcome) {
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

fn summary(all: &[&(String, Outcome)]) -> Value {
    let count = |f: fn(&Outcome) -> bool| all.iter().filter(|(_, o)| f(o)).count();
    json!({
        "delivered": count(|o| matches!(o, Outcome::Delivered { .. })),
        "skipped": count(|o| matches!(o, Outcome::Skipped { .. })),
        "failed": count(|o| o.is_failed()),
    })
}

/// One CloudWatch Embedded Metric Format line for the invocation.
fn emf(all: &[&(String, Outcome)], elapsed: Duration) -> Value {
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
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let metric = |name: &str, unit: &str| json!({ "Name": name, "Unit": unit });
    json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": "SftpForward",
                "Dimensions": [[]],
                "Metrics": [
                    metric("FilesDelivered", "Count"),
                    metric("BytesDelivered", "Bytes"),
                    metric("FilesSkipped", "Count"),
                    metric("FailuresTransient", "Count"),
                    metric("FailuresPermanent", "Count"),
                    metric("Duration", "Milliseconds"),
                ],
            }],
        },
        "FilesDelivered": delivered,
        "BytesDelivered": bytes,
        "FilesSkipped": skipped,
        "FailuresTransient": transient,
        "FailuresPermanent": permanent,
        "Duration": elapsed.as_millis() as u64,
    })
}
