//! The handler: an invocation's records, all forwarded together ([`batch`]), each to one
//! [`Outcome`]. The batch response, the logs and the EMF metrics are all derived from the
//! outcomes ([`outcome`]).

mod batch;
mod outcome;
mod slots;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use forward::{Connector, ErrorClass, Partner, RemotePath};
use serde_json::{json, Value};

use crate::after::{AfterRecord, Detail, Ended, Nothing, Partner as PartnerInfo, Retry};
use crate::check::{self, CheckFailed, Report};
use crate::event::{decode, Invocation, Item, ObjectRef, Work};
use crate::progress;
use crate::secret::SecretSource;
use crate::settings::Settings;
use crate::source::ObjectStore;
use batch::Job;
use outcome::{emf, log_outcome, summary};
pub use outcome::{BatchFailed, Outcome};

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
    /// Hears of every record's outcome (delivery events); nothing unless [`Forwarder::after`].
    after: Box<dyn AfterRecord>,
}

impl<S: ObjectStore, K: SecretSource> Forwarder<S, K> {
    /// A forwarder over the given S3 store and secret source.
    pub fn new(store: S, secrets: K, settings: Settings) -> Self {
        Forwarder {
            store,
            secrets,
            settings,
            partner: None,
            after: Box::new(Nothing),
        }
    }

    /// With `after` told of every record's outcome (see [`crate::after`]): the Lambda's
    /// [`crate::events::EventSink`].
    pub fn after(mut self, after: Box<dyn AfterRecord>) -> Self {
        self.after = after;
        self
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
        let (results, untrusted) = self.forward_items(&items, deadline).await;
        // Before the response, and never past the deadline: the margin's last twelfth is kept
        // for the response itself.
        let until = deadline.map(|d| {
            d.checked_sub(self.settings.deadline_margin / 12)
                .unwrap_or(d)
        });
        self.after.flush(until).await;
        let all: Vec<&(String, Outcome)> = results.iter().flat_map(|(_, o)| o).collect();
        println!("{}", emf(&all, started.elapsed(), untrusted));

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

    /// Every record of every item, as (message id, [(label, outcome)]) with a label for logs
    /// (`s3://bucket/key` or the message id): the objects all go together
    /// ([`Forwarder::forward_batch`]), and each record's outcome is logged in its own span. Also
    /// how many records failed on an untrusted host key (the `HostKeyUntrusted` metric).
    async fn forward_items(
        &mut self,
        items: &[Item],
        deadline: Option<Instant>,
    ) -> (Vec<(Option<String>, Vec<(String, Outcome)>)>, u64) {
        let options = ForwardOptions::default();
        let mut jobs = Vec::new();
        // The item of each job.
        let mut job_items = Vec::new();
        // Per item, its records: an outcome known already, or the index of the record's job.
        let mut entries: Vec<Vec<(String, Result<Outcome, usize>)>> = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let label = item.message_id.clone().unwrap_or_else(|| "record".into());
            let mut records = Vec::new();
            match &item.work {
                Err(e) => {
                    tracing::error!(message_id = ?item.message_id, outcome = "failed", class = "permanent", reason = %e, "cannot decode record");
                    let failed = Outcome::failed(ErrorClass::Permanent, e);
                    let now = Some(std::time::SystemTime::now());
                    let detail = Detail {
                        started: now,
                        ended: now,
                        failure_code: Some("UNRECOGNISED_RECORD"),
                        ..Detail::default()
                    };
                    self.ended(None, item, &failed, &detail);
                    records.push((label, Ok(failed)));
                }
                Ok(works) => {
                    for work in works {
                        match work {
                            Work::Skip(reason) => {
                                tracing::info!(message_id = ?item.message_id, outcome = "skipped", reason = %reason, "nothing to forward");
                                let skipped = Outcome::Skipped {
                                    reason: reason.clone(),
                                };
                                records.push((label.clone(), Ok(skipped)));
                            }
                            Work::Forward(obj) => {
                                let span = tracing::info_span!("record", bucket = %obj.bucket, key = %obj.key, version = ?obj.version_id, size = ?obj.size, message_id = ?item.message_id);
                                let what = format!("s3://{}/{}", obj.bucket, obj.key);
                                records.push((what, Err(jobs.len())));
                                job_items.push(n);
                                jobs.push(Job {
                                    obj,
                                    options: &options,
                                    span,
                                });
                            }
                        }
                    }
                }
            }
            entries.push(records);
        }
        let ended = self.forward_batch(&jobs, deadline).await;
        for ((job, item), (outcome, detail)) in jobs.iter().zip(&job_items).zip(&ended) {
            job.span.in_scope(|| log_outcome(outcome));
            self.ended(Some(job.obj), &items[*item], outcome, detail);
        }
        let untrusted = ended
            .iter()
            .filter(|(_, d)| d.failure_code == Some(crate::after::HOST_KEY_NOT_TRUSTED))
            .count() as u64;
        let mut outcomes: Vec<Option<Outcome>> = ended.into_iter().map(|(o, _)| Some(o)).collect();
        let results = items
            .iter()
            .zip(entries)
            .map(|(item, records)| {
                let records = records
                    .into_iter()
                    .map(|(what, o)| {
                        let o = o.unwrap_or_else(|job| outcomes[job].take().expect("one per job"));
                        (what, o)
                    })
                    .collect();
                (item.message_id.clone(), records)
            })
            .collect();
        (results, untrusted)
    }

    /// One object: route, receipt check, stream from S3 into the publisher, receipt.
    pub async fn forward(&mut self, obj: &ObjectRef, deadline: Option<Instant>) -> Outcome {
        self.forward_with(obj, deadline, &ForwardOptions::default())
            .await
    }

    /// [`Forwarder::forward`] with an operator's choices (the CLI's `--force`, `--remote-path`):
    /// a batch of one.
    pub async fn forward_with(
        &mut self,
        obj: &ObjectRef,
        deadline: Option<Instant>,
        options: &ForwardOptions,
    ) -> Outcome {
        let job = Job {
            obj,
            options,
            span: tracing::Span::current(),
        };
        let (outcome, detail) = self
            .forward_batch(std::slice::from_ref(&job), deadline)
            .await
            .pop()
            .expect("one outcome for one record");
        let item = Item {
            message_id: None,
            receive_count: None,
            work: Ok(Vec::new()),
        };
        self.ended(Some(obj), &item, &outcome, &detail);
        self.after.flush(deadline).await;
        outcome
    }

    /// Tells the seam after a record ends ([`crate::after`]) of one record.
    fn ended(&self, obj: Option<&ObjectRef>, item: &Item, outcome: &Outcome, detail: &Detail) {
        let partner = self.partner.as_ref().map(|p| p.connector.partner());
        let url = partner.map(|p| format!("sftp://{}:{}", p.host, p.port));
        self.after.ended(&Ended {
            obj,
            message_id: item.message_id.as_deref(),
            receive_count: item.receive_count,
            outcome,
            detail,
            retry: Retry::of(item.receive_count, self.settings.max_receive_count),
            partner: PartnerInfo {
                secret_id: &self.settings.secret_id,
                url: url.as_deref(),
                remote_directory: partner.map(|p| p.remote_directory.as_str()),
            },
        });
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

    /// The egress self-check with the current secret (read afresh, not from the cache) and these
    /// settings. The report is logged as one JSON line; `Err` if the check found any problem or
    /// could not run.
    pub async fn check(&self) -> Result<Report, CheckFailed> {
        let id = &self.settings.secret_id;
        let partner = match self.secrets.fetch(id).await {
            Ok(text) => Partner::from_json(&text).map_err(|source| CheckFailed::Partner {
                secret_id: id.clone(),
                source,
            }),
            Err(e) => Err(e.into()),
        };
        // A check that cannot run is a failed check (not a missing one) in its metric.
        let partner = partner.inspect_err(|_| println!("{}", crate::placement::emf_not_run()))?;
        let mut report = check::run(
            &partner,
            &self.settings.tuning,
            &self.settings.egress_probe(),
        )
        .await;
        let placement = crate::placement::of_report(&report);
        println!("{}", crate::placement::emf(&report, &placement));
        report.placement = Some(placement);
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
}

/// The partner side of a [`Forwarder`] (kept connector, secret, settings), borrowed apart from
/// its store so that a batch logs in while its records are read from S3.
struct Link<'a, K> {
    partner: &'a mut Option<Partnered>,
    secrets: &'a K,
    settings: &'a Settings,
}

impl<K: SecretSource> Link<'_, K> {
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
            match &mut *self.partner {
                Some(p) if p.secret_digest == digest => p.fetched_at = Instant::now(),
                _ => {
                    let partner = Partner::from_json(&text).map_err(|e| {
                        Outcome::failed(
                            ErrorClass::Permanent,
                            format!("secret {}: {e}", self.settings.secret_id),
                        )
                    })?;
                    *self.partner = Some(Partnered {
                        connector: Connector::new(partner, self.settings.tuning.clone()),
                        secret_digest: digest,
                        fetched_at: Instant::now(),
                    });
                }
            }
        }
        Ok(&mut self.partner.as_mut().expect("set above").connector)
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

fn digest(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
