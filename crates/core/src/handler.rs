//! The handler: an invocation's records, each routed to its partner by key prefix
//! ([`crate::routing`]), every partner's records forwarded together over its own connection
//! ([`batch`]), all partners at once, each record to one [`Outcome`]. A key that no partner's
//! prefix matches fails (permanently: it is kept for an operator, never dropped) and is counted. The batch response, the logs and the EMF metrics are all derived from the
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
use crate::routing::PartnerRoute;
use crate::secret::SecretSource;
use crate::settings::Settings;
use crate::source::ObjectStore;
use batch::{join_all, Job, Lane};
use outcome::{emf, log_outcome, summary, Counted};
pub use outcome::{BatchFailed, Outcome};

/// How [`Forwarder::forward_with`] treats one object; the default is what the Lambda does.
#[derive(Clone, Debug, Default)]
pub struct ForwardOptions {
    /// Send even when a receipt says these bytes were delivered (the receipt is then rewritten).
    pub force: bool,
    /// Publish under this path instead of the route's mapping of the key.
    pub remote_path: Option<RemotePath>,
}

/// The most partners the self-check connects to at once (like the CLI's `--all`).
const CHECKS_AT_ONCE: usize = 8;

/// The failure code of a record whose key no partner's prefix matches.
pub const NO_PARTNER: &str = "NO_PARTNER";

/// A partner's kept connection and the secret text it was built from.
struct Partnered {
    connector: Connector,
    secret_digest: u64,
    fetched_at: Instant,
}

/// Forwards objects named by events to their partners. Kept across warm invocations, so each
/// partner's secret and SSH connection are reused.
pub struct Forwarder<S, K> {
    store: S,
    secrets: K,
    settings: Settings,
    /// Per partner of `settings.routing` (same order), its kept connection.
    kept: Vec<Option<Partnered>>,
    /// Hears of every record's outcome (delivery events); nothing unless [`Forwarder::after`].
    after: Box<dyn AfterRecord>,
}

impl<S: ObjectStore, K: SecretSource> Forwarder<S, K> {
    /// A forwarder over the given S3 store and secret source.
    pub fn new(store: S, secrets: K, settings: Settings) -> Self {
        let kept = settings.routing.partners().iter().map(|_| None).collect();
        Forwarder {
            store,
            secrets,
            settings,
            kept,
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
                return Ok(self.check().await?);
            }
        };
        let (results, by_partner) = self.forward_items(&items, deadline).await;
        // Before the response, and never past the deadline: the margin's last twelfth is kept
        // for the response itself.
        let until = deadline.map(|d| {
            d.checked_sub(self.settings.deadline_margin / 12)
                .unwrap_or(d)
        });
        self.after.flush(until).await;
        let all: Vec<&(String, Outcome)> = results.iter().flat_map(|(_, o)| o).collect();
        for line in emf(&all, &by_partner, started.elapsed(), &self.settings.routing) {
            println!("{line}");
        }

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
    /// each forwarded record's partner and failure code, for the metrics.
    async fn forward_items(
        &mut self,
        items: &[Item],
        deadline: Option<Instant>,
    ) -> (Vec<(Option<String>, Vec<(String, Outcome)>)>, Vec<Counted>) {
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
                    self.ended(None, item, &failed, &detail, None);
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
        let mut counted = Vec::with_capacity(ended.len());
        for ((job, item), (outcome, detail, partner)) in jobs.iter().zip(&job_items).zip(&ended) {
            job.span.in_scope(|| log_outcome(outcome));
            self.ended(Some(job.obj), &items[*item], outcome, detail, *partner);
            counted.push(Counted {
                partner: *partner,
                failure_code: detail.failure_code,
                outcome: outcome.clone(),
            });
        }
        let mut outcomes: Vec<Option<Outcome>> = ended.into_iter().map(|(o, ..)| Some(o)).collect();
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
        (results, counted)
    }

    /// Every job to its outcome (in the order of `jobs`), with the partner it went to: each
    /// partner's jobs in its own [`Lane`], all lanes at once, so that a slow or unreachable
    /// partner does not hold up the others' records (each is bounded by the deadline). A job whose
    /// key no partner owns fails with [`NO_PARTNER`].
    async fn forward_batch(
        &mut self,
        jobs: &[Job<'_>],
        deadline: Option<Instant>,
    ) -> Vec<(Outcome, Detail, Option<usize>)> {
        let routing = &self.settings.routing;
        let owner: Vec<Option<usize>> = jobs
            .iter()
            .map(|j| routing.partner_for(&j.obj.key))
            .collect();
        let (store, secrets, settings) = (&self.store, &self.secrets, &self.settings);
        let lanes = self
            .kept
            .iter_mut()
            .zip(routing.partners())
            .enumerate()
            .filter_map(|(n, (kept, partner))| {
                let mine: Vec<usize> = (0..jobs.len()).filter(|&j| owner[j] == Some(n)).collect();
                if mine.is_empty() {
                    return None;
                }
                let lane_jobs: Vec<Job<'_>> = mine.iter().map(|&j| jobs[j].clone()).collect();
                let mut lane = Lane {
                    store,
                    secrets,
                    settings,
                    partner,
                    kept,
                };
                Some(async move {
                    let ended = lane.forward_batch(&lane_jobs, deadline).await;
                    (mine, ended)
                })
            });
        let mut out: Vec<Option<(Outcome, Detail, Option<usize>)>> =
            jobs.iter().map(|_| None).collect();
        for (mine, ended) in join_all(lanes).await {
            for (j, (outcome, detail)) in mine.into_iter().zip(ended) {
                out[j] = Some((outcome, detail, owner[j]));
            }
        }
        out.into_iter()
            .zip(jobs)
            .map(|(o, job)| o.unwrap_or_else(|| no_partner(routing, &job.obj.key)))
            .collect()
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
        let (outcome, detail, partner) = self
            .forward_batch(std::slice::from_ref(&job), deadline)
            .await
            .pop()
            .expect("one outcome for one record");
        let item = Item {
            message_id: None,
            receive_count: None,
            work: Ok(Vec::new()),
        };
        self.ended(Some(obj), &item, &outcome, &detail, partner);
        self.after.flush(deadline).await;
        outcome
    }

    /// Tells the seam after a record ends ([`crate::after`]) of one record, and of its partner
    /// (an index into the routing's partners; `None` when no partner owns its key).
    fn ended(
        &self,
        obj: Option<&ObjectRef>,
        item: &Item,
        outcome: &Outcome,
        detail: &Detail,
        partner: Option<usize>,
    ) {
        let route = partner.map(|n| &self.settings.routing.partners()[n]);
        let kept = partner.and_then(|n| self.kept[n].as_ref());
        let partner = kept.map(|p| p.connector.partner());
        let url = partner.map(|p| format!("sftp://{}:{}", p.host, p.port));
        self.after.ended(&Ended {
            obj,
            message_id: item.message_id.as_deref(),
            receive_count: item.receive_count,
            outcome,
            detail,
            retry: Retry::of(item.receive_count, self.settings.max_receive_count),
            partner: PartnerInfo {
                name: route.map(PartnerRoute::name),
                secret_id: route.map(PartnerRoute::secret_id),
                url: url.as_deref(),
                remote_directory: partner.map(|p| p.remote_directory.as_str()),
            },
        });
    }

    /// The egress self-check of every partner, each with its current secret (read afresh, not
    /// from the cache) and these settings. Each report is logged as one JSON line; `Err` if a
    /// check found any problem or could not run. A single partner's report is returned as is;
    /// several are `{"partners": [{"name": name, ...report}]}`.
    pub async fn check(&self) -> Result<Value, CheckFailed> {
        let partners = self.settings.routing.partners();
        // At most CHECKS_AT_ONCE connections (and echo requests) at a time, like the CLI's --all.
        let slots = tokio::sync::Semaphore::new(CHECKS_AT_ONCE);
        let reports = join_all(partners.iter().map(|p| async {
            let _slot = slots.acquire().await.expect("never closed");
            self.check_partner(p).await
        }))
        .await;
        if reports.len() == 1 {
            let only = reports.into_iter().next().expect("one");
            return only.map(|r| serde_json::to_value(r).expect("serialisable"));
        }
        let mut all = Vec::with_capacity(reports.len());
        let mut failed = Vec::new();
        for (p, report) in partners.iter().zip(reports) {
            match report {
                Ok(r) => all.push(named(
                    p.name(),
                    serde_json::to_value(r).expect("serialisable"),
                )),
                Err(e) => {
                    let value = match &e {
                        CheckFailed::Problems(r) => serde_json::to_value(r).expect("serialisable"),
                        other => json!({"ok": false, "error": other.to_string()}),
                    };
                    all.push(named(p.name(), value));
                    failed.push(format!("partner {}: {e}", p.name()));
                }
            }
        }
        if failed.is_empty() {
            Ok(json!({ "partners": all }))
        } else {
            Err(CheckFailed::Partners(failed.join("; ")))
        }
    }

    /// The egress self-check of one partner (see [`Forwarder::check`]).
    pub async fn check_partner(&self, route: &PartnerRoute) -> Result<Report, CheckFailed> {
        let id = route.secret_id();
        let partner = match self.secrets.fetch(id).await {
            Ok(text) => Partner::from_json(&text).map_err(|source| CheckFailed::Partner {
                secret_id: id.to_owned(),
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
                "partner": route.name(),
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

/// A partner's check report with its name (`name`; the report's own `partner` is `host:port`).
fn named(name: &str, report: Value) -> Value {
    let mut m = match report {
        Value::Object(r) => r,
        other => serde_json::Map::from_iter([("report".to_owned(), other)]),
    };
    m.insert("name".into(), json!(name));
    Value::Object(m)
}

/// The outcome of a record whose key no partner owns: failed, permanently (it is kept for an
/// operator: the DLQ, a failed invocation), naming the partners' prefixes.
fn no_partner(routing: &crate::routing::Routing, key: &str) -> (Outcome, Detail, Option<usize>) {
    let prefixes: Vec<String> = routing
        .partners()
        .iter()
        .map(|p| format!("{} ({:?})", p.name(), p.prefix().unwrap_or("")))
        .collect();
    let now = Some(std::time::SystemTime::now());
    let detail = Detail {
        started: now,
        ended: now,
        failure_code: Some(NO_PARTNER),
        ..Detail::default()
    };
    let outcome = Outcome::failed(
        ErrorClass::Permanent,
        format!(
            "no partner's prefix matches key {key:?} (partners: {}); upload it under a partner's prefix, or add a partner for it and redrive",
            prefixes.join(", ")
        ),
    );
    (outcome, detail, None)
}

impl<S: ObjectStore, K: SecretSource> Lane<'_, S, K> {
    /// A record whose work was dropped at the margin before `deadline`: the interrupted
    /// transfer's handles are closed and its temporary file removed from the partner within the
    /// first half of the margin; a resumable one (an S3 object read by ranges) is kept instead and
    /// its progress recorded on the object ([`crate::progress`]) by a sixth of the margin before
    /// the deadline, so the next delivery resumes it; the rest is for the response. The record
    /// fails as transient so that it comes back (SQS: listed in `batchItemFailures`; a direct
    /// invocation fails).
    pub(super) async fn stopped_at_deadline(&mut self, deadline: Instant) -> Outcome {
        let margin = self.settings.deadline_margin;
        let until = |part: u32| {
            let at = deadline.checked_sub(margin / part).unwrap_or(deadline);
            (at, at.saturating_duration_since(Instant::now()))
        };
        let cleaned = match &mut *self.kept {
            Some(p) => p.connector.abandon(until(2).1).await,
            None => Default::default(),
        };
        let recorded = progress::record(self.store, &cleaned.kept, until(6).0).await;
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
}

/// One partner's side of a [`Lane`] (kept connector, secret, settings), borrowed apart from
/// its store so that a batch logs in while its records are read from S3.
struct Link<'a, K> {
    kept: &'a mut Option<Partnered>,
    secrets: &'a K,
    settings: &'a Settings,
    partner: &'a PartnerRoute,
}

impl<K: SecretSource> Link<'_, K> {
    /// The kept connector, refreshed when the secret's TTL has passed (kept as is if the secret is unchanged).
    async fn connector(&mut self) -> Result<&mut Connector, Outcome> {
        let fresh = self
            .kept
            .as_ref()
            .is_some_and(|p| p.fetched_at.elapsed() < self.settings.secret_ttl);
        if !fresh {
            let text = self
                .secrets
                .fetch(self.partner.secret_id())
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
            match &mut *self.kept {
                Some(p) if p.secret_digest == digest => p.fetched_at = Instant::now(),
                _ => {
                    let partner = Partner::from_json(&text).map_err(|e| {
                        Outcome::failed(
                            ErrorClass::Permanent,
                            format!("secret {}: {e}", self.partner.secret_id()),
                        )
                    })?;
                    *self.kept = Some(Partnered {
                        connector: Connector::new(partner, self.settings.tuning.clone()),
                        secret_digest: digest,
                        fetched_at: Instant::now(),
                    });
                }
            }
        }
        Ok(&mut self.kept.as_mut().expect("set above").connector)
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
