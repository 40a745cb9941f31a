//! Stopping a publish from outside. A caller with a deadline (the Lambda, at its invocation's
//! deadline minus a margin) drops a publish's future mid-transfer: no more writes go out, but
//! what the publish had opened on the partner is still there. Every session keeps that in
//! [`Unsettled`] (each temporary file, registered before its OPEN is sent, and the handles opened
//! on it), so [`Connector::abandon`] can close those handles on a fresh, bounded budget.
//!
//! A plain temporary file is then removed, and the next delivery starts over. A resumable one
//! (its source names its bytes, see [`publish::resume`](crate::publish::resume)) is kept, and
//! what is known to be on it is reported as [`Progress`]: the acknowledged prefix of every
//! piece, tracked as the WRITEs were answered. A process killed without this clean stop reports
//! nothing: its next attempt starts over (into the same temporary file, which it overwrites).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::StatusCode;

use crate::publish::resume::{Progress, Tracker};
use crate::session::{lock, Connector};

/// One channel's handle on a temporary file.
type Handle = (Arc<RawSftpSession>, String);

/// A temporary file being written: the handles on it and, when resumable, its progress.
#[derive(Default)]
struct Open {
    handles: Vec<Handle>,
    resumable: Option<Arc<Tracker>>,
}

/// Temporary files a session's publishes have started and not settled yet (renamed into place,
/// or removed after an error), each with the handles opened on it; and the directories whose
/// stale temporary files this session has swept already (`publish::sweep`).
#[derive(Default)]
pub(crate) struct Unsettled {
    files: Mutex<HashMap<String, Open>>,
    swept: Mutex<HashSet<String>>,
    /// `Tuning::stale_temp_after`, set by the connector before each publish.
    stale_after: Mutex<Duration>,
}

impl Unsettled {
    /// A publish is about to create `temp_path`. Registered before the OPEN goes out, so a file
    /// whose OPEN was sent but not answered is still known. False (and nothing changed) when
    /// another publish of this session has it already.
    pub(crate) fn begin(&self, temp_path: &str) -> bool {
        let mut files = lock(&self.files);
        if files.contains_key(temp_path) {
            return false;
        }
        files.insert(temp_path.to_owned(), Open::default());
        true
    }

    /// `temp_path` is resumable: kept, not removed, when abandoned; `tracker` knows its progress.
    pub(crate) fn resumable(&self, temp_path: &str, tracker: Arc<Tracker>) {
        if let Some(open) = lock(&self.files).get_mut(temp_path) {
            open.resumable = Some(tracker);
        }
    }

    /// `channel` holds `handle` on `temp_path`.
    pub(crate) fn opened(&self, temp_path: &str, channel: &Arc<RawSftpSession>, handle: &str) {
        if let Some(open) = lock(&self.files).get_mut(temp_path) {
            open.handles.push((channel.clone(), handle.to_owned()));
        }
    }

    /// The publish of `temp_path` ended by itself (whatever the result): nothing to clean up here.
    pub(crate) fn settled(&self, temp_path: &str) {
        lock(&self.files).remove(temp_path);
    }

    /// True the first time it is asked about `dir` (see `publish::sweep`).
    pub(crate) fn first_visit(&self, dir: &str) -> bool {
        lock(&self.swept).insert(dir.to_owned())
    }

    pub(crate) fn set_stale_after(&self, stale: Duration) {
        *lock(&self.stale_after) = stale;
    }

    pub(crate) fn stale_after(&self) -> Duration {
        *lock(&self.stale_after)
    }

    fn take(&self) -> Vec<(String, Open)> {
        lock(&self.files).drain().collect()
    }
}

/// What [`Connector::abandon`] did with the temporary files of the interrupted publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// Removed from the partner (or never created).
    pub removed: Vec<String>,
    /// Still there: the partner did not answer within the budget. The next connection removes
    /// them before its first publish.
    pub left: Vec<String>,
    /// Resumable temporary files kept on the partner, each with what is known to be on it: hand
    /// that to the next attempt ([`RangeSource::progress`](crate::RangeSource::progress)).
    pub kept: Vec<Kept>,
}

/// A resumable temporary file left for the next attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Its path on the partner.
    pub temp_path: String,
    /// The source's [`identity`](crate::RangeSource::identity): which bytes it holds.
    pub identity: String,
    /// The byte ranges known to be written.
    pub progress: Progress,
}

impl Connector {
    /// After a publish was stopped from outside (its future dropped, see the module doc): close
    /// the handles it had open and remove its temporary files (keep the resumable ones, with
    /// their progress), all requests sent at once and bounded by `limit`. The connection is not kept either way: its channels may still carry
    /// the abandoned writes, and a stalled partner would stall the next file too.
    pub async fn abandon(&mut self, limit: Duration) -> Abandoned {
        let mut done = Abandoned::default();
        let Some(session) = self.live.as_ref() else {
            return done;
        };
        let files = session.unsettled.take();
        let main = session.sftp.clone();
        // A resumable file is kept: nothing to wait for, its handles close with the connection,
        // which is not kept (a write still queued there lands the same bytes at the same offset).
        let (kept, files): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|(_, open)| open.resumable.is_some());
        let cleanup = futures_util::future::join_all(files.iter().map(|(path, open)| {
            let main = &main;
            async move {
                // Requests on one channel are processed in order: the REMOVE follows its CLOSE.
                let closes = futures_util::future::join_all(
                    open.handles
                        .iter()
                        .map(|(channel, h)| channel.close(h.as_str())),
                );
                let (_, removed) = futures_util::join!(closes, main.remove(path.as_str()));
                match removed {
                    Ok(_) => true,
                    // Its OPEN never reached the server.
                    Err(SftpError::Status(s)) => s.status_code == StatusCode::NoSuchFile,
                    Err(_) => false,
                }
            }
        }));
        let removed = tokio::time::timeout(limit, cleanup).await.ok();
        for (path, open) in kept {
            let tracker = open.resumable.expect("partitioned by it");
            let progress = tracker.progress();
            tracing::info!(
                temp_path = %path,
                bytes_done = progress.bytes_done(),
                len = progress.len,
                "stopped; the temporary file is kept and resumes on the next delivery"
            );
            done.kept.push(Kept {
                temp_path: path,
                identity: tracker.identity.clone(),
                progress,
            });
        }
        for (i, (path, _)) in files.into_iter().enumerate() {
            if removed.as_ref().is_some_and(|r| r[i]) {
                done.removed.push(path);
            } else {
                done.left.push(path);
            }
        }
        self.drop_live();
        // Under `direct` these are final names: never removed blindly later (see remove_temp).
        if self.partner().upload != crate::upload::Upload::Direct {
            self.orphans.extend(done.left.iter().cloned());
        }
        done
    }
}
