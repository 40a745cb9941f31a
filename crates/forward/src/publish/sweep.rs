//! Sweeping stale temporary files. A temporary file is left on the partner when a process dies
//! mid-file (Lambda killed it, the connection broke and no later one came), or when a resumable
//! file is never resumed (its object was deleted, or replaced by a version that gets its own
//! temporary name). The first time a connection publishes into a directory, it lists it and
//! removes the files of our naming pattern only (`.name.<8 hex>.part`, `.name.sfr-<16 hex>.part`,
//! or `name.<tag><suffix>` under the `suffix` convention; in the staging directory under
//! `staging-dir`)
//! whose modification time is older than [`Tuning::stale_temp_after`](crate::Tuning) (24 h by
//! default) by **the partner's clock**: the sweep starts once the publish has opened its own
//! temporary file there, and that file's modification time is the partner's "now" (so a function
//! whose clock runs ahead of the partner's never takes a live file of another delivery for a stale
//! one). In the background, bounded in time; failures are only logged. (A resumable file that old
//! is not continued, see `resume_point`.)

use std::time::Duration;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::StatusCode;

use tracing::Instrument;

use crate::error::Error;
use crate::session::{bounded, Connector, Session};

use crate::upload::{join2, Upload};

/// The most one sweep may take, listing and removals together.
const SWEEP_LIMIT: Duration = Duration::from_secs(5);
/// The most files one sweep removes (the rest go on the next connection's sweep).
const MOST_REMOVED: usize = 1000;

impl Connector {
    /// [`Connector::session_for`], the session told the tuning's `stale_temp_after`.
    pub(super) async fn session_sweeping(
        &mut self,
        channels: usize,
    ) -> Result<&mut Session, Error> {
        let stale = self.tuning().stale_temp_after;
        let session = self.session_for(channels).await?;
        session.unsettled.set_stale_after(stale);
        Ok(session)
    }
}

impl Session {
    /// Removes our stale temporary files from `dir`, once per connection and directory (see
    /// the module doc), `ours` being the temporary file the asking publish has just opened there
    /// (its clock, never itself removed). In the background, beside that publish: the listing's
    /// round trips never delay a file.
    pub(super) async fn sweep_once(&self, dir: &str, ours: &str) {
        let stale = self.unsettled.stale_after();
        if stale.is_zero() || !self.unsettled.first_visit(dir) {
            return;
        }
        let (sftp, dir, addr) = (self.sftp.clone(), dir.to_owned(), self.addr.clone());
        let (upload, ours) = (self.upload.clone(), ours.to_owned());
        let sweeping = async move {
            let work = sweep(&sftp, &dir, &ours, &upload, stale);
            match bounded(SWEEP_LIMIT, "sweeping stale temporary files", &addr, work).await {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(dir, ?removed, "removed stale temporary files")
                }
                Ok(_) => {}
                // Nothing can be stale in a directory that is not there yet.
                Err(Error::Sftp {
                    cause: SftpError::Status(s),
                    ..
                }) if s.status_code == StatusCode::NoSuchFile => {}
                Err(e) => tracing::warn!(dir, error = %e, "could not sweep stale temporary files"),
            }
        };
        tokio::spawn(sweeping.instrument(tracing::Span::current()));
    }
}

async fn sweep(
    on: &RawSftpSession,
    dir: &str,
    ours: &str,
    upload: &Upload,
    stale: Duration,
) -> Result<Vec<String>, Error> {
    let Some(now) = partner_now(on, ours).await? else {
        tracing::debug!(ours, "no modification time from the partner; not sweeping");
        return Ok(Vec::new());
    };
    let handle = on
        .opendir(dir)
        .await
        .map_err(|e| Error::sftp("opendir", dir, e))?
        .handle;
    let mut old = Vec::new();
    let listed = loop {
        match on.readdir(handle.as_str()).await {
            Ok(name) => old.extend(
                name.files
                    .into_iter()
                    .filter(|f| f.attrs.file_type().is_file() && upload.is_temp_name(&f.filename))
                    .filter(|f| {
                        f.attrs
                            .mtime
                            .is_some_and(|m| now.saturating_sub(u64::from(m)) > stale.as_secs())
                    })
                    .map(|f| join2(dir, &f.filename))
                    .filter(|path| path != ours),
            ),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
            Err(e) => break Err(Error::sftp("readdir", dir, e)),
        }
    };
    let _ = on.close(handle).await;
    listed?;
    old.truncate(MOST_REMOVED);
    let removals = old.iter().map(|path| on.remove(path.as_str()));
    let mut removed = Vec::new();
    for (path, result) in old
        .iter()
        .zip(futures_util::future::join_all(removals).await)
    {
        match result {
            Ok(_) => removed.push(path.clone()),
            Err(e) => {
                tracing::warn!(path, error = %e, "could not remove a stale temporary file")
            }
        }
    }
    Ok(removed)
}

/// The partner's current time in seconds: the modification time of `ours`, a file this publish
/// has just created or opened to continue (`None` when the server does not give one).
async fn partner_now(on: &RawSftpSession, ours: &str) -> Result<Option<u64>, Error> {
    let attrs = on
        .stat(ours)
        .await
        .map_err(|e| Error::sftp("stat", ours, e))?;
    Ok(attrs.attrs.mtime.map(u64::from))
}
