//! Each record's outcome as it becomes known ([`Slots`]), and for a partner with a per-batch
//! `ControlFile`, the delivered records held until that control file is written:
//!
//! ```text
//! file lands → outcome Delivered, receipt held
//! every record has its outcome → control file listing the held files
//!   written → the held receipts are written
//!   failed  → each held record fails (as the control file's cause: retried, and on this
//!             connector its file is not sent again while it is in place with the right size)
//!   cut by the deadline → each held record fails as transient
//! ```
//!
//! So a receipt never vouches for a file that no control file has announced.

use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use forward::{Connector, ErrorClass, Published};

use super::batch::{write_receipt, Job};
use super::outcome::Outcome;
use crate::after::Detail;
use crate::receipt::Receipt;
use crate::source::ObjectStore;

/// A delivered record whose receipt waits for the batch's control file.
struct Held {
    job: usize,
    tags: Vec<(String, String)>,
    receipt: Receipt,
    published: Published,
}

/// Each job's outcome, once known, and the receipts held for the control file.
pub(super) struct Slots {
    outcomes: Mutex<Vec<Option<Outcome>>>,
    /// `Some` once the partner is known to want a control file.
    held: Mutex<Option<Vec<Held>>>,
    /// What else is known of each job, for the seam after a record ends (`crate::after`).
    details: Mutex<Vec<Detail>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            outcomes: Mutex::new(vec![None; n]),
            held: Mutex::new(None),
            details: Mutex::new(vec![
                Detail {
                    started: Some(SystemTime::now()),
                    ..Detail::default()
                };
                n
            ]),
        }
    }

    pub fn set(&self, job: usize, outcome: Outcome) {
        lock(&self.outcomes)[job] = Some(outcome);
        lock(&self.details)[job].ended = Some(SystemTime::now());
    }

    pub fn set_all(&self, jobs: impl IntoIterator<Item = usize>, outcome: &Outcome) {
        let mut slots = lock(&self.outcomes);
        let mut details = lock(&self.details);
        for job in jobs {
            slots[job] = Some(outcome.clone());
            details[job].ended = Some(SystemTime::now());
        }
    }

    pub fn fill_unset(&self, outcome: &Outcome) {
        let mut details = lock(&self.details);
        for (slot, detail) in lock(&self.outcomes).iter_mut().zip(details.iter_mut()) {
            if slot.is_none() {
                *slot = Some(outcome.clone());
                detail.ended = Some(SystemTime::now());
            }
        }
    }

    /// Adds to what is known of `job` (digest, sizes, failure code).
    pub fn note(&self, job: usize, f: impl FnOnce(&mut Detail)) {
        f(&mut lock(&self.details)[job]);
    }

    /// [`Slots::set`] for a failure whose code is known (see [`crate::after::failure_code`]).
    pub fn set_failed(&self, job: usize, outcome: Outcome, code: &'static str) {
        self.note(job, |d| d.failure_code = Some(code));
        self.set(job, outcome);
    }

    /// The partner of this batch writes a control file: receipts are held from now on.
    pub fn expect_control_file(&self, wanted: bool) {
        let mut held = lock(&self.held);
        if wanted && held.is_none() {
            *held = Some(Vec::new());
        }
    }

    /// Whether receipts are held for a control file (see [`Slots::expect_control_file`]).
    pub fn expects_control_file(&self) -> bool {
        lock(&self.held).is_some()
    }

    /// Holds a delivered record's receipt for the control file; gives it back when there is
    /// none to wait for (the caller writes it at once).
    pub fn hold(
        &self,
        job: usize,
        tags: Vec<(String, String)>,
        receipt: Receipt,
        published: &Published,
    ) -> Option<(Vec<(String, String)>, Receipt)> {
        match lock(&self.held).as_mut() {
            Some(held) => {
                held.push(Held {
                    job,
                    tags,
                    receipt,
                    published: published.clone(),
                });
                None
            }
            None => Some((tags, receipt)),
        }
    }

    /// The records still held when the deadline cut the batch (or no connection was left to
    /// write its control file) fail as transient; their files, for the connector to remember
    /// as awaiting a control file ([`forward::Connector::await_control`]).
    pub fn fail_held(&self, why: &str) -> Vec<Published> {
        let held = lock(&self.held).take().unwrap_or_default();
        let failed = Outcome::failed(
            ErrorClass::Transient,
            format!(
                "delivered, but {why} before the batch's control file was written; will be retried"
            ),
        );
        self.set_all(held.iter().map(|h| h.job), &failed);
        held.into_iter().map(|h| h.published).collect()
    }

    /// Every job's outcome and what else is known of it, in job order.
    pub fn into_outcomes(self) -> Vec<(Outcome, Detail)> {
        let details = self.details.into_inner().unwrap_or_else(|e| e.into_inner());
        self.outcomes
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|o| o.expect("every record has an outcome"))
            .zip(details)
            .collect()
    }
}

/// The batch's control file over `connector`, listing every held record, then their receipts;
/// if it fails, every held record fails with its cause. Held records stay held (for
/// [`Slots::fail_held`]) until this ends.
pub(super) async fn write_control_file<S: ObjectStore>(
    connector: &mut Connector,
    store: &S,
    jobs: &[Job<'_>],
    slots: &Slots,
) {
    let published: Vec<Published> = match lock(&slots.held).as_ref() {
        Some(held) if !held.is_empty() => held.iter().map(|h| h.published.clone()).collect(),
        _ => return,
    };
    let refs: Vec<&Published> = published.iter().collect();
    let written = connector.write_control(&refs, SystemTime::now()).await;
    let held = lock(&slots.held).take().unwrap_or_default();
    match written {
        Ok(_) => {
            let receipts = held.into_iter().map(|h| {
                let job = &jobs[h.job];
                tracing::Instrument::instrument(
                    write_receipt(store, job.obj, h.tags, h.receipt),
                    job.span.clone(),
                )
            });
            super::batch::join_all(receipts).await;
        }
        Err(e) => {
            let failed = Outcome::failed(e.class(), e);
            slots.set_all(held.iter().map(|h| h.job), &failed);
        }
    }
}
