//! Publishing one file: stream the source into a temporary name beside the
//! target, check the size, then rename onto the final name. Nothing ever
//! appears under the final name unless it is complete.
//!
//! ```text
//! stat final (policy) → mkdir -p parent → open .name.<rand>.part (exclusive)
//!   → WRITEs, several in flight, then FSTAT and CLOSE right behind them
//!     (one round trip: requests on one file are processed in order)
//!   → all WRITEs acknowledged, fstat == bytes sent == expected, close ok
//!   → posix-rename (atomic replace) | rename → done
//! on any error: close + remove the temporary file (best effort)
//! ```
//!
//! Many files ([`Connector::publish_all`]) share the connection's SFTP channels: each channel
//! publishes one file at a time, so a batch of small files costs about (files / channels) ×
//! (open, write + fstat + close, rename) round trips.
//!
//! A source that can be read by byte range ([`RangeSource`]: an S3 object, a local file) is
//! written in stripes: K SFTP channels of the one SSH connection each open the same temporary
//! file and write their own range at its offsets, so a WAN transfer is no longer capped by one
//! channel's window / RTT. K = min(`Parallelism`, size / `stripe_min_bytes`, what the server
//! grants); the size check and the rename are the same as for one stream.

mod control;
mod file_ops;
mod marker;
pub mod resume;
mod source;
mod sweep;
mod write;

pub use resume::Progress;
pub use source::{Currency, FileRanges, RangeSource};

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh_sftp::client::RawSftpSession;
use tokio::io::AsyncRead;
use tracing::Instrument;

use crate::error::Error;
use crate::route::RemotePath;
use crate::session::{lock, Connector, Session};
use crate::upload::{join2, Upload};
use file_ops::{random_tag, Opening};
use resume::{missing, resume_key, resume_tag, Plan, Tracker};
use source::{by_size, NoRanges, Payload};

/// What to do when the final name already exists on the partner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (atomically where the server offers `posix-rename@openssh.com`).
    #[default]
    Overwrite,
    /// Fail with a permanent error; never replace.
    FailIfExists,
    /// Skip the upload when a file of the expected size is already there; otherwise replace.
    SkipIfSameSize,
}

impl FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overwrite" => Ok(Overwrite::Overwrite),
            "fail-if-exists" => Ok(Overwrite::FailIfExists),
            "skip-if-same-size" => Ok(Overwrite::SkipIfSameSize),
            other => Err(format!(
                "unknown overwrite policy {other:?}: use overwrite, fail-if-exists or skip-if-same-size"
            )),
        }
    }
}

/// How a publish ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The file was written and renamed onto its final name.
    Written,
    /// A file of the same size was already there (`skip-if-same-size`).
    SkippedSameSize,
    /// The file was already in place with the expected size but without its done marker (an
    /// earlier attempt whose marker failed): only the marker was written.
    MarkerOnly,
    /// The file was already in place with the expected size from an earlier attempt whose
    /// batch's control file failed: not sent again; the next control file lists it.
    InPlace,
}

/// A successful publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The final path on the server, as given to SFTP (under `RemoteDirectory`).
    pub remote_path: String,
    /// Bytes written (0 when skipped or only marked; the file's size when [`PublishOutcome::InPlace`]).
    pub bytes: u64,
    /// Written or skipped.
    pub outcome: PublishOutcome,
    /// Wall time of the whole publish.
    pub elapsed: Duration,
    /// The done marker written after the file (`DoneMarker`), if the partner has one.
    pub marker: Option<String>,
    /// The SHA-256 (lowercase hex) of the bytes sent, when it was taken as they streamed out
    /// (a file that went as one stream from byte 0 with a digest wanted; never for stripes).
    pub sha256: Option<String>,
    /// The path under `RemoteDirectory`, as a control file lists it.
    pub(crate) relative: String,
    /// The file's size on the partner, as a control file lists it.
    pub(crate) size: u64,
    /// The bytes' identity under their final name (see `Session::awaiting`), when known.
    pub(crate) pending_key: Option<String>,
}

impl Connector {
    /// Publish `source` (readable by range) as `path`, in stripes over several SFTP channels
    /// when it is large; see the module doc. Otherwise as [`Connector::publish`].
    pub async fn publish_ranges<S: RangeSource>(
        &mut self,
        source: &S,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let payload: Payload<'_, tokio::io::Empty, S> = Payload::Ranges(source);
        self.publish_payload(payload, path, policy).await
    }

    /// Publish `source` as `path` under the partner's `RemoteDirectory`, over the kept
    /// connection (opened or re-opened as needed). A connection broken by the attempt is
    /// dropped so the next call starts afresh.
    pub async fn publish<R: AsyncRead + Unpin>(
        &mut self,
        source: R,
        expected_len: Option<u64>,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let payload: Payload<'_, R, NoRanges> = Payload::Stream {
            source,
            expected_len,
        };
        self.publish_payload(payload, path, policy).await
    }

    /// Publish many files over the kept connection, several at once. Files smaller than
    /// `stripe_min_bytes` go concurrently, each on its own SFTP channel (as many channels as
    /// the partner's parallelism and the server allow); larger ones follow one after another,
    /// each in stripes. Every file is published as by [`Connector::publish_ranges`] (temporary
    /// name, size check, rename) and has its own result, in the order of `files`. `Err` only
    /// when no connection could be opened.
    pub async fn publish_all<S: RangeSource>(
        &mut self,
        files: &[(S, RemotePath)],
        policy: Overwrite,
    ) -> Result<Vec<Result<Published, Error>>, Error> {
        let results: std::sync::Mutex<Vec<Option<Result<Published, Error>>>> =
            std::sync::Mutex::new(files.iter().map(|_| None).collect());
        self.publish_each(files, policy, &|i, result| {
            lock(&results)[i] = Some(result);
        })
        .await?;
        Ok(results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|r| r.expect("every file was published or failed"))
            .collect())
    }

    /// [`Connector::publish_all`], handing each file's result to `done` (with its index in
    /// `files`) as soon as that file is finished, so that a caller cut off by a deadline keeps
    /// what was already published and can act on each result (a receipt) while the others are
    /// still being written. `done` is called exactly once per file unless the call is dropped.
    pub async fn publish_each<S: RangeSource>(
        &mut self,
        files: &[(S, RemotePath)],
        policy: Overwrite,
        done: &(dyn Fn(usize, Result<Published, Error>) + Sync),
    ) -> Result<(), Error> {
        let (small, large) = by_size(files, self.stripe_min());
        let lanes = small.len().clamp(1, self.parallelism());
        let lost = AtomicBool::new(false);
        let noted = |i: usize, result: Result<Published, Error>| {
            if result.as_ref().is_err_and(Error::connection_lost) {
                lost.store(true, Ordering::Relaxed);
            }
            done(i, result);
        };
        self.session_sweeping(lanes)
            .await?
            .publish_all(files, &small, &large, lanes, policy, &noted)
            .await;
        if lost.load(Ordering::Relaxed) {
            self.drop_live();
        }
        Ok(())
    }

    async fn publish_payload<R: AsyncRead + Unpin, S: RangeSource>(
        &mut self,
        payload: Payload<'_, R, S>,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let stripes = payload.stripes(self.stripe_min(), self.parallelism());
        let result = match self.session_sweeping(stripes).await {
            Ok(session) => {
                session
                    .publish_payload(payload, stripes, path, policy)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.discard_if_broken(e);
        }
        result
    }
}

impl Session {
    /// Publish a payload as `path` under `RemoteDirectory` over `stripes` channels (what
    /// [`Payload::stripes`] gave; fewer if the server refuses some); see the module doc.
    async fn publish_payload<R: AsyncRead + Unpin, S: RangeSource>(
        &mut self,
        payload: Payload<'_, R, S>,
        stripes: usize,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let channels = self.sftp_channels(stripes).await;
        self.publish_on(&channels, payload, path, policy).await
    }

    /// See [`Connector::publish_each`]: the `small` files (indices into `files`, see
    /// [`by_size`]) shared out among `lanes` channels (each takes the next file when it is done
    /// with one), then the `large` ones, each striped; each result goes to `done` at once.
    async fn publish_all<S: RangeSource>(
        &mut self,
        files: &[(S, RemotePath)],
        small: &[usize],
        large: &[usize],
        lanes: usize,
        policy: Overwrite,
        done: &(dyn Fn(usize, Result<Published, Error>) + Sync),
    ) {
        if !small.is_empty() {
            let channels = self.sftp_channels(lanes).await;
            let (this, next) = (&*self, AtomicUsize::new(0));
            let workers = channels.iter().map(|channel| {
                let next = &next;
                async move {
                    while let Some(&i) = small.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (source, path) = &files[i];
                        let payload: Payload<'_, tokio::io::Empty, S> = Payload::Ranges(source);
                        let one = std::slice::from_ref(channel);
                        done(i, this.publish_on(one, payload, path, policy).await);
                    }
                }
            });
            futures_util::future::join_all(workers).await;
        }
        for &i in large {
            let (source, path) = &files[i];
            let payload: Payload<'_, tokio::io::Empty, S> = Payload::Ranges(source);
            let stripes = payload.stripes(self.stripe_min_bytes, self.stripes);
            done(
                i,
                self.publish_payload(payload, stripes, path, policy).await,
            );
        }
    }

    /// Publish a payload as `path` over `channels` (the first one opens, checks and renames;
    /// the others only write stripes).
    async fn publish_on<R: AsyncRead + Unpin, S: RangeSource>(
        &self,
        channels: &[Arc<RawSftpSession>],
        payload: Payload<'_, R, S>,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let dir = self.join(path.parent());
        let final_path = join2(&dir, path.file_name());
        let expected_len = payload.expected_len();
        let span = tracing::info_span!("publish", remote_path = %final_path, expected_len);
        self.publish_at(channels, payload, path, &dir, final_path, policy)
            .instrument(span)
            .await
    }

    async fn publish_at<R: AsyncRead + Unpin, S: RangeSource>(
        &self,
        channels: &[Arc<RawSftpSession>],
        payload: Payload<'_, R, S>,
        path: &RemotePath,
        dir: &str,
        final_path: String,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let started = Instant::now();
        let on = &channels[0];
        let expected_len = payload.expected_len();
        // The bytes' identity and final name, under which a failed marker is remembered.
        let pending_key = payload
            .ranges()
            .and_then(|s| s.identity())
            .map(|identity| resume_key(&final_path, &identity));
        if let Some(in_place) = self
            .in_place_awaiting_control(on, expected_len, &final_path, pending_key.as_deref())
            .await?
        {
            // The same size is not the same bytes: a newer version of the same size may have
            // replaced it since; then this one is superseded, as at a rename.
            if let Some(source) = payload.ranges() {
                let answer = source.still_current().await;
                if let Currency::Superseded(current) =
                    answer.map_err(|e| Error::SourceCheck { source: e })?
                {
                    if let Some(k) = &pending_key {
                        lock(&self.awaiting).control.remove(k);
                    }
                    return Err(Error::Superseded {
                        path: final_path,
                        current,
                        direct: true,
                    });
                }
            }
            let sha256 = match self.digest_wanted {
                true => Some(marker::digest_of(payload).await?),
                false => None,
            };
            tracing::info!(
                "already in place from an attempt whose control file failed; not sent again"
            );
            self.touch();
            return Ok(Published {
                remote_path: final_path,
                bytes: in_place,
                size: in_place,
                outcome: PublishOutcome::InPlace,
                elapsed: started.elapsed(),
                marker: None,
                sha256,
                relative: path.as_str().to_owned(),
                pending_key,
            });
        }
        if let Some(marker) = &self.marker {
            let name = path.file_name();
            // Only the very bytes whose marker failed on this connector, found in place: any other
            // file of the same size under that name (yesterday's, a poller that ate the marker)
            // is sent as usual.
            let pending = pending_key
                .as_ref()
                .is_some_and(|k| lock(&self.awaiting).marker.contains(k));
            if pending
                && self
                    .needs_marker_only(on, marker, dir, name, &final_path, expected_len)
                    .await?
            {
                let size = expected_len.unwrap_or(0);
                let digest = match marker.needs_digest() {
                    true => Some(marker::digest_of(payload).await?),
                    false => None,
                };
                let written = self
                    .write_marker(on, marker, dir, name, size, digest.as_deref())
                    .await
                    .map_err(|e| Error::marker(&final_path, e))?;
                if let Some(k) = &pending_key {
                    lock(&self.awaiting).marker.remove(k);
                }
                tracing::info!(
                    marker = written,
                    "already in place without its done marker; wrote the marker only"
                );
                self.touch();
                return Ok(Published {
                    remote_path: final_path,
                    bytes: 0,
                    size,
                    outcome: PublishOutcome::MarkerOnly,
                    elapsed: started.elapsed(),
                    marker: Some(written),
                    sha256: digest,
                    relative: path.as_str().to_owned(),
                    pending_key,
                });
            }
        }
        if policy != Overwrite::Overwrite {
            if let Some(existing) = self.size_of(on, &final_path).await? {
                match policy {
                    Overwrite::FailIfExists => {
                        return Err(Error::AlreadyExists { path: final_path })
                    }
                    Overwrite::SkipIfSameSize if Some(existing) == expected_len => {
                        tracing::info!(
                            size = existing,
                            "same size already on the partner; skipped"
                        );
                        self.touch();
                        return Ok(Published {
                            remote_path: final_path,
                            bytes: 0,
                            size: existing,
                            outcome: PublishOutcome::SkippedSameSize,
                            elapsed: started.elapsed(),
                            marker: None,
                            sha256: None,
                            relative: path.as_str().to_owned(),
                            pending_key,
                        });
                    }
                    _ => {}
                }
            }
        }

        self.create_dirs(on, path.parent()).await?;
        let direct = self.upload == Upload::Direct;
        // A marker's SHA-256 is taken as the file streams out, from its first byte.
        let digest_needed = self.digest_wanted;
        let mut resumable = payload
            .ranges()
            .and_then(|s| Some((s, s.identity()?)))
            .filter(|_| !direct && !digest_needed);
        // Known to the session until this function ends by itself; if the caller drops it at a
        // deadline instead, `Connector::abandon` closes what it had opened and removes it (or,
        // resumable, keeps it and reports its progress). With the `direct` convention that is
        // the final name itself: a partial file there is removed the same way.
        let temp_for = |tag: &str| {
            self.upload
                .temp_path(dir, path.file_name(), tag)
                .unwrap_or_else(|| final_path.clone())
        };
        let resume_path = resumable
            .as_ref()
            .map(|(_, identity)| temp_for(&resume_tag(&resume_key(&final_path, identity))));
        let temp_path = match resume_path {
            Some(p) if self.unsettled.begin(&p) => p,
            taken => {
                if taken.is_some() {
                    // The same bytes are being published to the same name on this connection
                    // now (a duplicate event in one batch): this one goes the plain way.
                    resumable = None;
                }
                let p = temp_for(&random_tag());
                if !self.unsettled.begin(&p) && direct {
                    // Two writers of one final name on this connection at once: never both.
                    return Err(Error::InFlight { path: final_path });
                }
                p
            }
        };
        // An older marker goes before the final name changes (a `direct` open truncates it):
        // a marker never stands beside a file it does not describe, complete or not.
        if let Some(marker) = &self.marker {
            if let Err(e) = self.remove_marker(on, marker, dir, path.file_name()).await {
                self.unsettled.settled(&temp_path);
                return Err(e);
            }
        }
        let mut plan = Plan {
            todo: missing(&[], expected_len.unwrap_or(0)),
            tracker: None,
        };
        let opened = match &resumable {
            Some((source, identity)) => {
                let key = resume_key(&final_path, identity);
                match self.resume_point(on, &temp_path, &key, *source).await {
                    Ok(mut done) => {
                        // Continued: the file must still be there and as long as the furthest
                        // completed byte, or the skipped ranges would be holes. Removed or cut
                        // short since it was checked (a cleanup still on its way): start over.
                        let mut opened = None;
                        if let Some(furthest) = done.iter().map(|r| r.end).max() {
                            match self.open_to_continue(on, &temp_path, furthest).await {
                                Err(Error::ResumeLost { .. }) => {
                                    tracing::info!(
                                        temp_path,
                                        "the file to continue is gone or short; starting over"
                                    );
                                    done = Vec::new();
                                }
                                other => opened = Some(other),
                            }
                        }
                        plan.todo = missing(&done, source.len());
                        let tracker = Tracker::new(key, identity.clone(), source.len(), done);
                        self.unsettled.resumable(&temp_path, tracker.clone());
                        plan.tracker = Some(tracker);
                        match opened {
                            Some(opened) => opened,
                            // From the start: a recorded progress goes first (it must never
                            // vouch for ranges of this new file that are not written yet).
                            None => match source.discard_progress().await {
                                Ok(()) => {
                                    self.open_in(on, path.parent(), &temp_path, Opening::Keep)
                                        .await
                                }
                                Err(e) => Err(Error::Source { sent: 0, source: e }),
                            },
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            // `direct` truncates (or, under fail-if-exists, refuses) what is there: the final
            // name holds this file from the first byte on.
            None if direct && policy != Overwrite::FailIfExists => {
                self.open_in(on, path.parent(), &temp_path, Opening::Truncate)
                    .await
            }
            None => {
                self.open_in(on, path.parent(), &temp_path, Opening::Exclusive)
                    .await
            }
        };
        let handle = match opened {
            Ok(handle) => handle,
            Err(e) => {
                self.unsettled.settled(&temp_path);
                return Err(e);
            }
        };
        self.unsettled.opened(&temp_path, on, &handle);
        // Its age measured by the partner's clock: our file's modification time is its "now".
        self.sweep_once(self.upload.temp_dir(dir), &temp_path).await;

        let closed = AtomicBool::new(false);
        let written = self
            .upload_and_rename(
                payload,
                plan,
                channels,
                &handle,
                &temp_path,
                &final_path,
                policy,
                &closed,
            )
            .await;
        match written {
            Ok((sent, digest)) => {
                self.unsettled.settled(&temp_path);
                self.touch();
                let bytes = expected_len.unwrap_or(sent);
                // After the rename, never before: a marker never exists without its file.
                let marker = match &self.marker {
                    Some(marker) => Some(
                        self.write_marker(
                            on,
                            marker,
                            dir,
                            path.file_name(),
                            bytes,
                            digest.as_deref(),
                        )
                        .await
                        .map_err(|e| {
                            // The next attempt for these bytes writes the marker only.
                            if let Some(k) = &pending_key {
                                lock(&self.awaiting).marker.insert(k.clone());
                            }
                            Error::marker(&final_path, e)
                        })?,
                    ),
                    None => None,
                };
                tracing::info!(
                    bytes,
                    sent,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "published"
                );
                Ok(Published {
                    remote_path: final_path,
                    bytes,
                    // The whole file's (a resumed one was written only in part by this attempt).
                    size: bytes,
                    outcome: PublishOutcome::Written,
                    elapsed: started.elapsed(),
                    marker,
                    sha256: digest,
                    relative: path.as_str().to_owned(),
                    pending_key,
                })
            }
            Err(e) => {
                let e = match e {
                    // Another delivery of the same version (another process) renamed it first.
                    Error::Sftp {
                        op: "posix-rename" | "rename",
                        cause: russh_sftp::client::error::Error::Status(s),
                        ..
                    } if resumable.is_some()
                        && s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile =>
                    {
                        Error::TempTaken {
                            path: temp_path.clone(),
                        }
                    }
                    e => e,
                };
                let handle = (!closed.load(Ordering::Relaxed)).then_some(handle.as_str());
                // Under `direct` an older version's complete bytes stay (a newer delivery may be
                // writing the same name now: removing could take its file away). A resumable file
                // stays for the retry when the connection or the source broke (continued if its
                // progress was recorded, else written again from the start; the sweep takes it if
                // no retry comes): removing it would lose what it holds, and could pull it from
                // under another delivery of the same bytes that is continuing it. One the server
                // refused to go on with (a full disk, a permission) is removed: it only takes
                // the partner's space.
                let keep = matches!(e, Error::Superseded { direct: true, .. })
                    || (resumable.is_some()
                        && (e.connection_lost() || matches!(e, Error::Source { .. })));
                if !keep {
                    self.remove_temp(on, handle, &temp_path, &e).await;
                } else if let Some(handle) = handle.filter(|_| !e.connection_lost()) {
                    self.close_kept(on, handle, &temp_path).await;
                }
                self.unsettled.settled(&temp_path);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_their_names() {
        assert_eq!(
            "fail-if-exists".parse::<Overwrite>(),
            Ok(Overwrite::FailIfExists)
        );
        assert!("clobber"
            .parse::<Overwrite>()
            .unwrap_err()
            .contains("overwrite, fail-if-exists"));
    }
}
