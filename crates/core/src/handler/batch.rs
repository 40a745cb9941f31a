//! One partner's records of a batch ([`Lane`]), all at once over its one connection (the
//! [`Forwarder`] runs each partner's lane at the same time):
//!
//! ```text
//! in waves of at most WAVE records, each started only with enough time left:
//!     secret (cached; read again after its TTL) → the partner's RemoteDirectory and naming rules
//!     route every record (a bad key fails only its own record; a `{modified}` template waits
//!       for the object's Last-Modified from GetObject)
//!     prepare every record at once (S3): GetObject opened → tags (only if it has any) → receipt check
//!     log in (a refused login re-reads the secret once, for the whole wave)
//!     publish_each: small files one SFTP channel each, up to Parallelism; large ones striped,
//!       one after another → as each file lands, its outcome, then its receipt (tags), while
//!       the others are still being written
//! ```
//!
//! The invocation's deadline minus the margin cuts the whole batch: the records that already have
//! an outcome keep it, every other one fails as transient (see `stopped_at_deadline`).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forward::route::Input;
use forward::{
    Error as ForwardError, ErrorClass, PublishOutcome, Published, RemotePath, Route, RouteInputs,
};
use tracing::{Instrument, Span};

use super::outcome::{already, store_outcome, Outcome};
use super::slots::{write_control_file, Slots};
use super::{ForwardOptions, Link, Partnered};
use crate::after::{failure_code, Detail};
use crate::event::ObjectRef;
use crate::progress;
use crate::receipt::{final_path, Delivery, Receipt};
use crate::routing::PartnerRoute;
use crate::secret::SecretSource;
use crate::settings::Settings;
use crate::source::{ObjectStore, Opened, Ranges};

/// More tries to open a connection that failed fast (see `Link::log_in`).
const RECONNECTS: u32 = 3;

/// The most records prepared at once: each holds an open GetObject until its turn to publish.
const WAVE: usize = 64;

/// Why a delivered file's event and receipt carry no SHA-256: SHA-256 is sequential, so a file
/// written as parallel stripes (or continued from where an interrupted delivery stopped) cannot
/// be hashed as it goes; hashing it would take another full read or the whole file in memory.
pub(crate) const NO_SHA256_STRIPED: &str =
    "sent in parallel stripes or resumed: SHA-256 is taken only of a file sent as one stream";

/// One record of a batch: the object, how to treat it, and its span (bucket, key, ...).
#[derive(Clone)]
pub(super) struct Job<'a> {
    pub obj: &'a ObjectRef,
    pub options: &'a ForwardOptions,
    pub span: Span,
}

/// One partner's part of a [`Forwarder`](super::Forwarder) for a batch: the shared S3 store,
/// secret source and settings, the partner's route, and its kept connection.
pub(super) struct Lane<'f, S, K> {
    pub store: &'f S,
    pub secrets: &'f K,
    pub settings: &'f Settings,
    pub partner: &'f PartnerRoute,
    pub kept: &'f mut Option<Partnered>,
}

/// A record whose S3 side is done: no receipt vouches for it, its body is open.
struct Prepared {
    path: RemotePath,
    opened: Opened,
    tags: Vec<(String, String)>,
    /// The path is rendered anew for each delivery (`{now}`): nothing to resume.
    per_delivery: bool,
}

impl<S: ObjectStore, K: SecretSource> Lane<'_, S, K> {
    /// Every job of the partner's batch to its outcome (in the order of `jobs`); see the module doc.
    pub(super) async fn forward_batch(
        &mut self,
        jobs: &[Job<'_>],
        deadline: Option<Instant>,
    ) -> Vec<(Outcome, Detail)> {
        let slots = Slots::new(jobs.len());
        // Routed in their wave, under the naming rules of the partner secret read there.
        let routed: Vec<usize> = (0..jobs.len()).collect();
        let Some(deadline) = deadline else {
            self.waves(jobs, &routed, None, &slots).await;
            self.control_file(jobs, &slots).await;
            return slots.into_outcomes();
        };
        // Everything (S3, secret, connection, transfers, receipts) runs until the margin before
        // the deadline; a stalled partner is bounded by this too, not only by each request's
        // own timeout.
        let stop_at = deadline
            .checked_sub(self.settings.deadline_margin)
            .unwrap_or(deadline);
        let run = async {
            self.waves(jobs, &routed, Some(deadline), &slots).await;
            self.control_file(jobs, &slots).await;
        };
        if tokio::time::timeout_at(stop_at.into(), run).await.is_err() {
            let stopped = self.stopped_at_deadline(deadline).await;
            slots.fill_unset(&stopped);
            let held = slots.fail_held("the invocation's time ran out");
            if let Some(p) = &*self.kept {
                p.connector.await_control(&held);
            }
        }
        slots.into_outcomes()
    }

    /// The partner's control file for this batch, if it wants one (see [`super::slots`]).
    async fn control_file(&mut self, jobs: &[Job<'_>], slots: &Slots) {
        match self.kept.as_mut() {
            Some(p) => write_control_file(&mut p.connector, self.store, jobs, slots).await,
            // The connector went with a secret that could not be read again: nothing can
            // announce what earlier waves delivered.
            None => drop(slots.fail_held("the partner's connection was given up")),
        }
    }

    async fn waves(
        &mut self,
        jobs: &[Job<'_>],
        routed: &[usize],
        deadline: Option<Instant>,
        slots: &Slots,
    ) {
        for (n, wave) in routed.chunks(WAVE).enumerate() {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(left) = left.filter(|l| *l < self.settings.min_time_left) {
                let late = Outcome::failed(
                    ErrorClass::Transient,
                    format!("only {left:?} of invocation time left; not started, will be retried"),
                );
                slots.set_all(routed[n * WAVE..].iter().copied(), &late);
                return;
            }
            self.wave(jobs, wave, slots).await;
        }
    }

    async fn wave(&mut self, jobs: &[Job<'_>], wave: &[usize], slots: &Slots) {
        let store = self.store;
        let partner = self.partner;
        let mut link = Link {
            kept: &mut *self.kept,
            secrets: self.secrets,
            settings: self.settings,
            partner,
        };
        // (The receipt check uses the RemoteDirectory of the secret read here; a rotation that
        // also moves the directory is seen from the next wave on.)
        let (remote_directory, route) = match link.connector().await {
            Ok(c) => (
                {
                    slots.expect_control_file(c.partner().control_file.is_some());
                    c.partner().remote_directory.clone()
                },
                partner.route.with_naming(&c.partner().naming),
            ),
            Err(outcome) => return slots.set_all(wave.iter().copied(), &outcome),
        };
        let mut targets = Vec::with_capacity(wave.len());
        for &i in wave {
            match target(&route, &jobs[i]) {
                Ok(target) => targets.push((i, target)),
                Err(e) => slots.set(i, Outcome::failed(ErrorClass::Permanent, e)),
            }
        }
        let (route, remote_directory) = (&route, remote_directory.as_str());
        let prepare_all = join_all(targets.into_iter().map(|(i, target)| {
            let job = &jobs[i];
            let obj = job.obj;
            async move {
                let force = job.options.force;
                let to = To {
                    target,
                    route,
                    remote_directory,
                };
                (i, prepare(store, obj, to, force).await)
            }
            .instrument(job.span.clone())
        }));
        // S3 and the SSH handshake at the same time.
        let (prepared, logged_in) = tokio::join!(prepare_all, link.log_in());
        let mut ready = Vec::with_capacity(prepared.len());
        for (i, p) in prepared {
            match p {
                Ok(p) => ready.push((i, p)),
                Err(outcome) => slots.set(i, outcome),
            }
        }
        if ready.is_empty() {
            return;
        }
        match logged_in {
            Ok(()) => self.publish(jobs, ready, slots).await,
            Err((outcome, code)) => {
                for (i, _) in &ready {
                    slots.note(*i, |d| d.failure_code = Some(code));
                }
                slots.set_all(ready.iter().map(|(i, _)| *i), &outcome)
            }
        }
    }
}

impl<K: SecretSource> Link<'_, K> {
    /// The kept connection, opened now (before any file), so that what goes wrong there is
    /// handled once for the wave, not once per record:
    /// - a refused login: the secret may have been rotated, so it is read again, once; if it has
    ///   not changed, the refusal is permanent;
    /// - a connection that failed fast and transiently (a partner shedding load drops new
    ///   connections, sshd's `MaxStartups`): up to [`RECONNECTS`] more tries after growing,
    ///   jittered pauses (at most 2.1 s in all), since the whole wave would otherwise come back
    ///   for it. A timeout is not tried again: that would only use up the invocation.
    ///
    /// A failure comes with its code for the record's event ([`failure_code`]).
    async fn log_in(&mut self) -> Result<(), (Outcome, &'static str)> {
        let (mut reread, mut reconnects) = (false, 0);
        let secret = |o| (o, "PARTNER_SECRET");
        loop {
            let err = match self.connector().await.map_err(secret)?.session().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match err {
                ForwardError::AuthRejected { .. } if !reread => {
                    reread = true;
                    let before = self.kept.as_ref().map(|p| p.secret_digest);
                    *self.kept = None;
                    self.connector().await.map_err(secret)?;
                    if self.kept.as_ref().map(|p| p.secret_digest) == before {
                        return Err((Outcome::failed(
                            ErrorClass::Permanent,
                            "the partner refused the login and the secret has not changed: fix the credentials in the secret",
                        ), failure_code(&err)));
                    }
                    tracing::info!("login refused; the secret changed since it was cached, retrying with the new one");
                }
                e if e.is_transient()
                    && !matches!(e, ForwardError::Timeout { .. })
                    && reconnects < RECONNECTS =>
                {
                    let base = 100u64 << reconnects;
                    let pause = Duration::from_millis(base + u64::from(jitter()) % (2 * base));
                    reconnects += 1;
                    tracing::info!(error = %e, ?pause, "could not open the connection; trying again");
                    tokio::time::sleep(pause).await;
                }
                e => return Err((Outcome::failed(e.class(), &e), failure_code(&e))),
            }
        }
    }
}

impl<S: ObjectStore, K: SecretSource> Lane<'_, S, K> {
    /// The prepared records over the logged-in connection: all of them in one
    /// [`forward::Connector::publish_each`], each receipt written as soon as its file has landed.
    /// (A store that cannot read ranges sends its objects as streams, one after another; so does
    /// a partner with `Pgp`: the ciphertext is one stream, see [`encrypted`].)
    async fn publish(&mut self, jobs: &[Job<'_>], ready: Vec<(usize, Prepared)>, slots: &Slots) {
        let overwrite = self.partner.overwrite;
        let store = self.store;
        let connector = &mut self.kept.as_mut().expect("logged in").connector;
        let pgp = connector.partner().pgp.clone();
        let (ranged, streamed): (Vec<_>, Vec<_>) = ready.into_iter().partition(|(_, p)| {
            store.can_read_ranges() && p.opened.etag.is_some() && pgp.is_none()
        });
        let mut files = Vec::with_capacity(ranged.len());
        let mut owners = Vec::with_capacity(ranged.len());
        for (i, p) in ranged {
            let recorded = progress::from_tags(&p.tags);
            owners.push((i, p.tags, p.opened.etag.clone()));
            let mut ranges = Ranges::new(store, jobs[i].obj, p.opened)
                .expect("has an ETag")
                .resuming(recorded);
            if p.per_delivery {
                ranges = ranges.named_per_delivery();
            }
            files.push((ranges, p.path));
        }
        if !files.is_empty() {
            let (landed, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
            let publish = async {
                let landed = landed;
                let done = |k: usize, result: Result<Published, ForwardError>| {
                    // The receiver lives until this future ends.
                    let _ = landed.send((k, result));
                };
                connector.publish_each(&files, overwrite, &done).await
            };
            let receipts = async {
                while let Some(first) = arrivals.recv().await {
                    let mut now = vec![first];
                    while let Ok(more) = arrivals.try_recv() {
                        now.push(more);
                    }
                    join_all(now.into_iter().map(|(k, result)| {
                        let (i, tags, etag) = &owners[k];
                        finish(
                            store,
                            &jobs[*i],
                            *i,
                            tags.clone(),
                            etag.clone(),
                            result.map(|done| (done, None)),
                            slots,
                        )
                    }))
                    .await;
                }
            };
            let (published, ()) = tokio::join!(publish, receipts);
            if let Err(e) = published {
                let outcome = Outcome::failed(e.class(), e);
                slots.set_all(owners.iter().map(|(i, ..)| *i), &outcome);
            }
        }
        for (i, p) in streamed {
            let etag = p.opened.etag.clone();
            let (body, len) = (p.opened.body, p.opened.len);
            let result = match &pgp {
                None => connector
                    .publish(body, Some(len), &p.path, overwrite)
                    .instrument(jobs[i].span.clone())
                    .await
                    .map(|done| (done, None)),
                Some(pgp) => {
                    let Ok(target) = pgp.remote_path(&p.path) else {
                        let bad = "Pgp.Suffix makes the remote path invalid";
                        slots.set(i, Outcome::failed(ErrorClass::Permanent, bad));
                        continue;
                    };
                    encrypted(connector, pgp, body, len, &p.path, &target, overwrite)
                        .instrument(jobs[i].span.clone())
                        .await
                        .map(|done| (done, Some(len)))
                }
            };
            finish(store, &jobs[i], i, p.tags, etag, result, slots).await;
        }
    }
}

/// Where a record goes: known before its object is opened, or only from GetObject's answer.
enum Target {
    /// The operator's path, or the route's mapping from what the event tells.
    Known { path: RemotePath, from_route: bool },
    /// The route shows what only GetObject tells (`{modified}`, or `{version}` when the event
    /// has neither version id nor ETag).
    AfterOpen,
}

/// A record's [`Target`] with what resolves it.
struct To<'a> {
    target: Target,
    route: &'a Route,
    remote_directory: &'a str,
}

fn target(route: &Route, job: &Job<'_>) -> Result<Target, forward::RouteError> {
    let obj = job.obj;
    if let Some(path) = &job.options.remote_path {
        return Ok(Target::Known {
            path: path.clone(),
            from_route: false,
        });
    }
    let unknown_version = obj.version_id.is_none() && obj.etag.is_none();
    if route.uses(Input::Modified) || (route.uses(Input::Version) && unknown_version) {
        return Ok(Target::AfterOpen);
    }
    let inputs = RouteInputs {
        now: Some(SystemTime::now()),
        modified: None,
        version_id: obj.version_id.as_deref(),
        etag: obj.etag.as_deref(),
    };
    let path = route.render(&obj.key, &inputs)?;
    Ok(Target::Known {
        path,
        from_route: true,
    })
}

/// One record's S3 side before its bytes go: its body opened, its tags (read only when
/// GetObject says it has any: a new object costs one S3 call here, not two), the receipt check (a
/// receipt that vouches for this very delivery skips it, unless forced; the opened body is then
/// dropped unread), its path known.
///
/// A template that shows the delivery time names every delivery differently, so there a receipt
/// vouches for these bytes of this object under the path it recorded.
async fn prepare<S: ObjectStore>(
    store: &S,
    obj: &ObjectRef,
    to: To<'_>,
    force: bool,
) -> Result<Prepared, Outcome> {
    let opened = store.open(obj).await.map_err(store_outcome)?;
    let tags = match opened.tag_count {
        Some(0) => Vec::new(),
        _ => store.tags(obj).await.map_err(store_outcome)?,
    };
    let receipt = Receipt::from_tags(&tags).filter(|_| !force);
    let timed = to.route.uses(Input::Now);
    let etag = obj.etag.as_deref().or(opened.etag.as_deref());
    let vouches = |path: &RemotePath, from_route: bool| {
        let r = receipt.as_ref()?;
        let final_path = final_path(to.remote_directory, path.as_str());
        let delivery = Delivery {
            bucket: &obj.bucket,
            key: &obj.key,
            etag: etag?,
            remote_path: if from_route && timed {
                &r.remote_path
            } else {
                &final_path
            },
        };
        r.vouches_for(delivery).then(|| already(r))
    };
    let (path, from_route) = match to.target {
        Target::Known { path, from_route } => (path, from_route),
        Target::AfterOpen => {
            let inputs = RouteInputs {
                now: Some(SystemTime::now()),
                modified: opened.last_modified,
                version_id: obj.version_id.as_deref(),
                etag,
            };
            let path = to
                .route
                .render(&obj.key, &inputs)
                .map_err(|e| Outcome::failed(ErrorClass::Permanent, e))?;
            (path, true)
        }
    };
    if let Some(skipped) = vouches(&path, from_route) {
        return Err(skipped);
    }
    let per_delivery = from_route && timed;
    Ok(Prepared {
        path,
        opened,
        tags,
        per_delivery,
    })
}

/// `body` (`len` bytes) encrypted to the partner's `Pgp` keys as it streams, published as
/// `target` (`path` plus the `Pgp` suffix): one sequential stream (ciphertext cannot be cut into
/// byte ranges before it exists), of a length known only at its end, so the size check compares
/// what was sent, and a plaintext that ends short fails the stream (never a short file renamed).
/// Not resumable: its temporary file has a plain, per-attempt name.
async fn encrypted(
    connector: &mut forward::Connector,
    pgp: &forward::Pgp,
    body: crate::source::Body,
    len: u64,
    path: &RemotePath,
    target: &RemotePath,
    overwrite: forward::Overwrite,
) -> Result<Published, ForwardError> {
    let stream = pgp.encrypt(body, Some(len), path.file_name());
    let done = connector.publish(stream, None, target, overwrite).await?;
    tracing::info!(
        object_bytes = len,
        sent_bytes = done.bytes,
        compression = ?pgp.compression,
        "encrypted for the partner"
    );
    Ok(done)
}

/// A publish result to the record's outcome (known at once), then, for a delivered file, its
/// receipt on the object. An encrypted delivery comes with the object's length: the receipt
/// records the bytes sent beside it.
async fn finish<S: ObjectStore>(
    store: &S,
    job: &Job<'_>,
    i: usize,
    tags: Vec<(String, String)>,
    opened_etag: Option<String>,
    published: Result<(Published, Option<u64>), ForwardError>,
    slots: &Slots,
) {
    let (done, encrypted) = match published {
        // (A partner with a control file gets such a file listed like any other in place: its
        // earlier delivery's control file may never have been written.)
        Ok((done, _))
            if done.outcome == PublishOutcome::SkippedSameSize && !slots.expects_control_file() =>
        {
            let reason = format!(
                "{} already has the same size on the partner",
                done.remote_path
            );
            return slots.set(i, Outcome::Skipped { reason });
        }
        Ok(done) => done,
        // A newer version of the object is (or will be) delivered by its own event.
        Err(e @ ForwardError::Superseded { .. }) => {
            let reason = e.to_string();
            return slots.set(i, Outcome::Skipped { reason });
        }
        Err(e) => return slots.set_failed(i, Outcome::failed(e.class(), &e), failure_code(&e)),
    };
    let delivered = Outcome::Delivered {
        remote_path: done.remote_path.clone(),
        // The object's bytes; an encrypted file's sent bytes are in its log line and receipt.
        bytes: encrypted.unwrap_or(done.bytes),
    };
    slots.note(i, |d| {
        d.started = SystemTime::now().checked_sub(done.elapsed).or(d.started);
        d.object_bytes = Some(encrypted.unwrap_or(done.bytes));
        d.sent_bytes = encrypted.map(|_| done.bytes);
        d.sha256.clone_from(&done.sha256);
        d.no_sha256 = match done.outcome {
            _ if done.sha256.is_some() => None,
            PublishOutcome::Written => Some(NO_SHA256_STRIPED),
            _ => Some("not sent again: the file was already in place"),
        };
    });
    slots.set(i, delivered);
    let obj = job.obj;
    let etag = opened_etag.or_else(|| obj.etag.clone()).unwrap_or_default();
    let delivery = Delivery {
        bucket: &obj.bucket,
        key: &obj.key,
        etag: &etag,
        remote_path: &done.remote_path,
    };
    let receipt = match encrypted {
        Some(_) => Receipt::encrypted(delivery, done.bytes),
        None => Receipt::of(delivery),
    }
    .with_sha256(done.sha256.clone());
    // With a control file, the receipt waits for it.
    if let Some((tags, receipt)) = slots.hold(i, tags, receipt, &done) {
        write_receipt(store, obj, tags, receipt)
            .instrument(job.span.clone())
            .await;
    }
}

pub(super) async fn write_receipt<S: ObjectStore>(
    store: &S,
    obj: &ObjectRef,
    tags: Vec<(String, String)>,
    receipt: Receipt,
) {
    // The receipt replaces an interrupted delivery's progress.
    let Some(merged) = receipt.merge_into(progress::without(tags)) else {
        tracing::warn!("object has too many tags for a delivery receipt; a repeated event would deliver it again");
        return;
    };
    if let Err(e) = store.put_tags(obj, merged).await {
        // The file is on the partner: failing the record now would only send it again.
        tracing::warn!(error = %e, "delivered, but the receipt could not be written");
    }
}

/// A few bits that differ between instances retrying at once (no random source needed for this).
fn jitter() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros())
}

/// Runs `futures` concurrently on this task; their outputs in order. (The `futures` crate's
/// `join_all`, which this crate does not otherwise need; for the few futures of one wave, each
/// wake polls every one that is not finished.)
pub(super) async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
