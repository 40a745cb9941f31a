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

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, Status, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::error::Error;
use crate::route::RemotePath;
use crate::session::{bounded, lock, Connector, Session};

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
}

/// A successful publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The final path on the server, as given to SFTP (under `RemoteDirectory`).
    pub remote_path: String,
    /// Bytes written (0 when skipped).
    pub bytes: u64,
    /// Written or skipped.
    pub outcome: PublishOutcome,
    /// Wall time of the whole publish.
    pub elapsed: Duration,
}

/// A source that can be read by byte range, so that several channels can write one file.
pub trait RangeSource: Sync {
    /// What [`RangeSource::open`] returns.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Whether there are no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A reader of exactly the bytes `range` (end exclusive).
    fn open(&self, range: Range<u64>)
        -> impl Future<Output = std::io::Result<Self::Reader>> + Send;
}

/// A local file as a [`RangeSource`] (the CLI's `send ./file`, the benchmarks).
#[derive(Clone, Debug)]
pub struct FileRanges {
    path: PathBuf,
    len: u64,
}

impl FileRanges {
    /// The file at `path`, with its current length.
    pub async fn new(path: impl Into<PathBuf>) -> std::io::Result<FileRanges> {
        let path = path.into();
        let meta = tokio::fs::metadata(&path).await?;
        if !meta.is_file() {
            // A directory or a pipe cannot be read by range (nor be one file on the partner).
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(FileRanges {
            path,
            len: meta.len(),
        })
    }
}

impl RangeSource for FileRanges {
    type Reader = tokio::io::Take<tokio::fs::File>;

    fn len(&self) -> u64 {
        self.len
    }

    async fn open(&self, range: Range<u64>) -> std::io::Result<Self::Reader> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(std::io::SeekFrom::Start(range.start)).await?;
        Ok(file.take(range.end - range.start))
    }
}

/// What [`Session::publish_at`] writes: one stream, or a range source.
enum Payload<'a, R, S> {
    Stream {
        source: R,
        expected_len: Option<u64>,
    },
    Ranges(&'a S),
}

/// The `Payload` type parameter of a plain stream publish.
struct NoRanges;

impl RangeSource for NoRanges {
    type Reader = tokio::io::Empty;
    fn len(&self) -> u64 {
        0
    }
    async fn open(&self, _: Range<u64>) -> std::io::Result<Self::Reader> {
        Ok(tokio::io::empty())
    }
}

impl<R, S: RangeSource> Payload<'_, R, S> {
    /// How many channels it is written over: a range source one per `min_bytes` (see
    /// [`stripes_for`]), a stream one.
    fn stripes(&self, min_bytes: u64, max: usize) -> usize {
        match self {
            Payload::Ranges(s) => stripes_for(s.len(), min_bytes, max),
            Payload::Stream { .. } => 1,
        }
    }

    fn expected_len(&self) -> Option<u64> {
        match self {
            Payload::Stream { expected_len, .. } => *expected_len,
            Payload::Ranges(s) => Some(s.len()),
        }
    }
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
        let (small, large) = by_size(files, self.tuning().stripe_min());
        let lanes = small.len().clamp(1, self.parallelism());
        let results = self
            .session_for(lanes)
            .await?
            .publish_all(files, &small, &large, lanes, policy)
            .await;
        if let Some(lost) = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|e| e.connection_lost())
        {
            self.discard_if_broken(lost);
        }
        Ok(results)
    }

    async fn publish_payload<R: AsyncRead + Unpin, S: RangeSource>(
        &mut self,
        payload: Payload<'_, R, S>,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let stripes = payload.stripes(self.tuning().stripe_min(), self.parallelism());
        let result = match self.session_for(stripes).await {
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

    /// See [`Connector::publish_all`]: the `small` files (indices into `files`, see [`by_size`])
    /// shared out among `lanes` channels (each takes the next file when it is done with one),
    /// then the `large` ones, each striped.
    async fn publish_all<S: RangeSource>(
        &mut self,
        files: &[(S, RemotePath)],
        small: &[usize],
        large: &[usize],
        lanes: usize,
        policy: Overwrite,
    ) -> Vec<Result<Published, Error>> {
        let mut results: Vec<Option<Result<Published, Error>>> =
            files.iter().map(|_| None).collect();
        if !small.is_empty() {
            let channels = self.sftp_channels(lanes).await;
            let (this, next) = (&*self, AtomicUsize::new(0));
            let workers = channels.iter().map(|channel| {
                let next = &next;
                async move {
                    let mut done = Vec::new();
                    while let Some(&i) = small.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (source, path) = &files[i];
                        let payload: Payload<'_, tokio::io::Empty, S> = Payload::Ranges(source);
                        let one = std::slice::from_ref(channel);
                        done.push((i, this.publish_on(one, payload, path, policy).await));
                    }
                    done
                }
            });
            for (i, result) in futures_util::future::join_all(workers)
                .await
                .into_iter()
                .flatten()
            {
                results[i] = Some(result);
            }
        }
        for &i in large {
            let (source, path) = &files[i];
            let payload: Payload<'_, tokio::io::Empty, S> = Payload::Ranges(source);
            let stripes = payload.stripes(self.stripe_min_bytes, self.stripes);
            results[i] = Some(self.publish_payload(payload, stripes, path, policy).await);
        }
        results
            .into_iter()
            .map(|r| r.expect("every file was published or failed"))
            .collect()
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
                            outcome: PublishOutcome::SkippedSameSize,
                            elapsed: started.elapsed(),
                        });
                    }
                    _ => {}
                }
            }
        }

        self.create_dirs(on, path.parent()).await?;
        let temp_path = join2(dir, &temp_name(path.file_name()));
        // Known to the session until this function ends by itself; if the caller drops it at a
        // deadline instead, `Connector::abandon` closes and removes what it had opened.
        self.unsettled.begin(&temp_path);
        let opened = match self.open_exclusive(on, &temp_path).await {
            // The directory may have been removed since we cached it: check once more.
            Err(Error::Sftp {
                source: SftpError::Status(s),
                ..
            }) if s.status_code == StatusCode::NoSuchFile => {
                lock(&self.known_dirs).clear();
                match self.create_dirs(on, path.parent()).await {
                    Ok(()) => self.open_exclusive(on, &temp_path).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        let handle = match opened {
            Ok(handle) => handle,
            Err(e) => {
                self.unsettled.settled(&temp_path);
                return Err(e);
            }
        };
        self.unsettled.opened(&temp_path, on, &handle);

        let closed = AtomicBool::new(false);
        let written = self
            .upload_and_rename(
                payload,
                channels,
                &handle,
                &temp_path,
                &final_path,
                policy,
                &closed,
            )
            .await;
        match written {
            Ok(bytes) => {
                self.unsettled.settled(&temp_path);
                self.touch();
                tracing::info!(
                    bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "published"
                );
                Ok(Published {
                    remote_path: final_path,
                    bytes,
                    outcome: PublishOutcome::Written,
                    elapsed: started.elapsed(),
                })
            }
            Err(e) => {
                let handle = (!closed.load(Ordering::Relaxed)).then_some(handle.as_str());
                self.remove_temp(on, handle, &temp_path, &e).await;
                self.unsettled.settled(&temp_path);
                Err(e)
            }
        }
    }

    /// Writes the payload through `channels[0]`'s `handle` (and the other channels' own
    /// handles when striped), checks the size, closes and renames. Sets `closed` once the
    /// CLOSE of `handle` is sent.
    #[allow(clippy::too_many_arguments)]
    async fn upload_and_rename<R: AsyncRead + Unpin, S: RangeSource>(
        &self,
        payload: Payload<'_, R, S>,
        channels: &[Arc<RawSftpSession>],
        handle: &str,
        temp_path: &str,
        final_path: &str,
        policy: Overwrite,
        closed: &AtomicBool,
    ) -> Result<u64, Error> {
        let main = &channels[0];
        let lane = Lane {
            sftp: main.clone(),
            handle: handle.to_owned(),
            chunk_size: self.chunk_size,
            writes_in_flight: self.writes_in_flight,
            temp_path: temp_path.to_owned(),
        };
        let (sent, writes) = match payload {
            Payload::Stream {
                source,
                expected_len,
            } => lane.send(source, 0, expected_len).await?,
            Payload::Ranges(source) if channels.len() == 1 => {
                let reader = source
                    .open(0..source.len())
                    .await
                    .map_err(|source| Error::Source { sent: 0, source })?;
                lane.send(reader, 0, Some(source.len())).await?
            }
            Payload::Ranges(source) => (
                self.striped_writes(source, channels, lane.clone()).await?,
                Replies::default(),
            ),
        };
        // FSTAT and CLOSE go out right behind the last WRITE: a server processes the requests
        // on one file in the order received (draft-ietf-secsh-filexfer-13, 4.2), so a single
        // round trip settles the writes, the size and the close. (A server that reorders them
        // fails the file with a size mismatch or a write error: never a wrong rename.)
        let fstat = Started::now(Box::pin(main.fstat(handle))).await;
        let close = Started::now(Box::pin(main.close(handle))).await;
        closed.store(true, Ordering::Relaxed);
        let written = writes.drain(temp_path).await;
        let (remote, close) = (fstat.finish().await, close.finish().await);
        written?;
        let remote = remote
            .map_err(|e| Error::sftp("fstat", temp_path, e))?
            .attrs
            .size;
        if remote != Some(sent) {
            return Err(Error::SizeMismatch {
                path: temp_path.to_owned(),
                remote: remote.unwrap_or(0),
                sent,
            });
        }
        close.map_err(|e| Error::sftp("close", temp_path, e))?;
        self.rename_into_place(main, temp_path, final_path, policy)
            .await?;
        Ok(sent)
    }

    /// Writes `source` over `channels` (the first is `main`'s): every extra channel opens the
    /// temporary file too, each lane writes its own chunk-aligned byte range, read from its own
    /// reader. A channel that cannot open the file only means fewer stripes.
    async fn striped_writes<S: RangeSource>(
        &self,
        source: &S,
        channels: &[Arc<RawSftpSession>],
        main: Lane,
    ) -> Result<u64, Error> {
        let len = source.len();
        // Every extra channel opens the temporary file, all at once (round trips add up on a WAN).
        let mut opening = JoinSet::new();
        for sftp in channels.iter().skip(1) {
            let (sftp, temp_path) = (sftp.clone(), main.temp_path.clone());
            opening.spawn(async move {
                let opened = sftp
                    .open(&temp_path, OpenFlags::WRITE, FileAttributes::empty())
                    .await;
                (sftp, opened)
            });
        }
        let mut lanes = vec![main];
        while let Some(done) = opening.join_next().await {
            match done {
                Ok((sftp, Ok(h))) => {
                    self.unsettled.opened(&lanes[0].temp_path, &sftp, &h.handle);
                    lanes.push(Lane {
                        sftp,
                        handle: h.handle,
                        ..lanes[0].clone()
                    })
                }
                Ok((_, Err(e))) => {
                    tracing::warn!(error = %e, "a channel could not open the temporary file; fewer stripes")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "opening the temporary file failed; fewer stripes")
                }
            }
        }
        let ranges = stripe_ranges(len, lanes.len(), self.chunk_size as u64);
        if lanes.len() > 1 {
            tracing::debug!(stripes = ranges.len(), len, "striped upload");
        }
        let mut tasks: JoinSet<Result<u64, Error>> = JoinSet::new();
        let mut result = Ok(());
        for (lane, range) in lanes.iter().zip(ranges) {
            match source.open(range.clone()).await {
                Ok(reader) => {
                    let lane = lane.clone();
                    tasks.spawn(async move {
                        lane.write(reader, range.start, Some(range.end - range.start))
                            .await
                    });
                }
                Err(e) => {
                    result = Err(Error::Source {
                        sent: range.start,
                        source: e,
                    });
                    break;
                }
            }
        }
        let mut sent = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) if result.is_ok() => {
                    result = Err(e);
                    tasks.abort_all();
                }
                Err(join) if result.is_ok() && !join.is_cancelled() => {
                    result = Err(Error::sftp(
                        "write",
                        &lanes[0].temp_path,
                        SftpError::UnexpectedBehavior(format!("stripe task failed: {join}")),
                    ));
                    tasks.abort_all();
                }
                _ => {}
            }
        }
        // The extra lanes' handles, all at once; the main one is closed (or removed) by the
        // caller. Not on a lost connection: each CLOSE would only wait out the request timeout.
        if result.as_ref().err().is_some_and(Error::connection_lost) {
            return result.map(|()| sent);
        }
        let closes = lanes
            .iter()
            .skip(1)
            .map(|lane| lane.sftp.close(lane.handle.as_str()));
        for (lane, closed) in lanes
            .iter()
            .skip(1)
            .zip(futures_util::future::join_all(closes).await)
        {
            if let (Err(e), Ok(())) = (closed, &result) {
                result = Err(Error::sftp("close", &lane.temp_path, e));
            }
        }
        result.map(|()| sent)
    }

    async fn rename_into_place(
        &self,
        on: &RawSftpSession,
        temp_path: &str,
        final_path: &str,
        policy: Overwrite,
    ) -> Result<(), Error> {
        let replace = policy != Overwrite::FailIfExists;
        if replace && self.posix_rename {
            // Atomic replace: readers see the old file or the new one, never a gap.
            let mut data = Vec::with_capacity(8 + temp_path.len() + final_path.len());
            for s in [temp_path, final_path] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match on.extended("posix-rename@openssh.com", data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(Error::sftp(
                    "posix-rename",
                    final_path,
                    SftpError::Status(s),
                )),
                Ok(_) => Err(Error::sftp(
                    "posix-rename",
                    final_path,
                    SftpError::UnexpectedPacket,
                )),
                Err(e) => Err(Error::sftp("posix-rename", final_path, e)),
            };
        }
        // Plain SFTP rename never replaces an existing file (OpenSSH links, then unlinks).
        match on.rename(temp_path, final_path).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let exists = self.size_of(on, final_path).await?.is_some();
                match (exists, replace) {
                    (true, false) => Err(Error::AlreadyExists {
                        path: final_path.to_owned(),
                    }),
                    (true, true) => {
                        // No atomic replace on this server: remove, then rename. The final
                        // name is briefly absent, but never holds a partial file.
                        on.remove(final_path)
                            .await
                            .map_err(|e| Error::sftp("remove", final_path, e))?;
                        on.rename(temp_path, final_path)
                            .await
                            .map(|_| ())
                            .map_err(|e| Error::sftp("rename", final_path, e))
                    }
                    (false, _) => Err(Error::sftp("rename", final_path, e)),
                }
            }
        }
    }

    /// Whether the login may create files in `RemoteDirectory`: creates an empty hidden probe
    /// file there (exclusively, so nothing is overwritten), then removes it. `Ok` means writable;
    /// the error says why not (a missing directory or a permission refusal is permanent).
    pub async fn check_writable(&mut self) -> Result<(), Error> {
        let probe = join2(&self.remote_directory, &temp_name("sftp-forward-probe"));
        let handle = self.open_exclusive(&self.sftp, &probe).await?;
        let closed = self.sftp.close(handle).await;
        self.sftp
            .remove(&probe)
            .await
            .map_err(|e| Error::sftp("remove", &probe, e))?;
        closed.map_err(|e| Error::sftp("close", &probe, e))?;
        self.touch();
        Ok(())
    }

    async fn open_exclusive(&self, on: &RawSftpSession, temp_path: &str) -> Result<String, Error> {
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
        on.open(temp_path, flags, FileAttributes::empty())
            .await
            .map(|h| h.handle)
            .map_err(|e| Error::sftp("open", temp_path, e))
    }

    /// Size of `path` if it exists, `None` if it does not.
    async fn size_of(&self, on: &RawSftpSession, path: &str) -> Result<Option<u64>, Error> {
        match on.stat(path).await {
            Ok(attrs) => Ok(Some(attrs.attrs.size.unwrap_or(0))),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(Error::sftp("stat", path, e)),
        }
    }

    /// `mkdir -p` for the parent segments under `RemoteDirectory` (which must exist).
    async fn create_dirs(&self, on: &RawSftpSession, parent: &[String]) -> Result<(), Error> {
        for depth in 1..=parent.len() {
            let dir = self.join(&parent[..depth]);
            if lock(&self.known_dirs).contains(&dir) {
                continue;
            }
            match on.stat(&dir).await {
                Ok(a) if a.attrs.is_dir() => {}
                Ok(_) => {
                    return Err(Error::sftp(
                        "mkdir",
                        &dir,
                        SftpError::UnexpectedBehavior("a file with this name is in the way".into()),
                    ))
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                    if let Err(e) = on.mkdir(&dir, FileAttributes::empty()).await {
                        // Another publisher may have created it meanwhile.
                        if !on.stat(&dir).await.is_ok_and(|a| a.attrs.is_dir()) {
                            return Err(Error::sftp("mkdir", &dir, e));
                        }
                    }
                }
                Err(e) => return Err(Error::sftp("stat", &dir, e)),
            }
            lock(&self.known_dirs).insert(dir);
        }
        Ok(())
    }

    /// Best effort: close the handle (unless its CLOSE was sent already) and delete the
    /// temporary file, bounded in time.
    async fn remove_temp(
        &self,
        on: &RawSftpSession,
        handle: Option<&str>,
        temp_path: &str,
        cause: &Error,
    ) {
        if cause.connection_lost() {
            tracing::warn!(
                temp_path,
                "connection lost; the temporary file stays until the next connection removes it \
                 (never under the final name)"
            );
            lock(&self.orphans).push(temp_path.to_owned());
            return;
        }
        let cleanup = async {
            if let Some(handle) = handle {
                let _ = on.close(handle).await;
            }
            on.remove(temp_path)
                .await
                .map(|_| ())
                .map_err(|e| Error::sftp("remove", temp_path, e))
        };
        if let Err(e) = bounded(
            Duration::from_secs(5),
            "removing the temporary file",
            &self.addr,
            cleanup,
        )
        .await
        {
            tracing::warn!(temp_path, error = %e, "could not remove the temporary file");
        }
    }

    /// `RemoteDirectory` joined with `segments`.
    fn join(&self, segments: &[String]) -> String {
        segments
            .iter()
            .fold(self.remote_directory.clone(), |acc, seg| join2(&acc, seg))
    }
}

/// One channel's handle on the temporary file, and how it writes.
#[derive(Clone)]
struct Lane {
    sftp: Arc<RawSftpSession>,
    handle: String,
    chunk_size: usize,
    writes_in_flight: usize,
    temp_path: String,
}

impl Lane {
    /// Reads `source` in `chunk_size` pieces and keeps up to `writes_in_flight` WRITEs
    /// outstanding, starting at offset `start`, until every WRITE is acknowledged. Memory: at
    /// most (in flight + 1) chunks. Returns the bytes written; more or fewer than
    /// `expected_len` is an error.
    async fn write<R: AsyncRead + Unpin>(
        &self,
        source: R,
        start: u64,
        expected_len: Option<u64>,
    ) -> Result<u64, Error> {
        let (written, replies) = self.send(source, start, expected_len).await?;
        replies.drain(&self.temp_path).await?;
        Ok(written)
    }

    /// As [`Lane::write`], but returns once the last WRITE is sent, with the replies still
    /// to come: the caller may send more requests on the handle first.
    async fn send<R: AsyncRead + Unpin>(
        &self,
        mut source: R,
        start: u64,
        expected_len: Option<u64>,
    ) -> Result<(u64, Replies), Error> {
        let mut replies = Replies::default();
        let mut written = 0u64;
        loop {
            let mut chunk = vec![0u8; self.chunk_size];
            let n = read_full(&mut source, &mut chunk)
                .await
                .map_err(|source| Error::Source {
                    sent: start + written,
                    source,
                })?;
            if n == 0 {
                break;
            }
            chunk.truncate(n);
            if let Some(expected) = expected_len {
                if written + n as u64 > expected {
                    return Err(Error::LengthMismatch {
                        expected,
                        got: written + n as u64,
                    });
                }
            }
            while replies.0.len() >= self.writes_in_flight {
                replies.next(&self.temp_path).await?;
            }
            let (sftp, handle, at) = (self.sftp.clone(), self.handle.clone(), start + written);
            let reply: Reply = Box::pin(async move { sftp.write(handle, at, chunk).await });
            match Started::now(reply).await {
                Started::Done(result) => settle(result, &self.temp_path)?,
                Started::Waiting(reply) => replies.0.push(reply),
            }
            written += n as u64;
        }
        match expected_len {
            Some(expected) if expected != written => Err(Error::LengthMismatch {
                expected,
                got: written,
            }),
            _ => Ok((written, replies)),
        }
    }
}

/// The server's answer to one WRITE.
type Reply = Pin<Box<dyn Future<Output = Result<Status, SftpError>> + Send>>;

/// WRITEs sent and not yet acknowledged.
#[derive(Default)]
struct Replies(FuturesUnordered<Reply>);

impl Replies {
    /// Waits for one acknowledgement (nothing to do when none is outstanding).
    async fn next(&mut self, temp_path: &str) -> Result<(), Error> {
        match self.0.next().await {
            Some(result) => settle(result, temp_path),
            None => Ok(()),
        }
    }

    /// Waits for every acknowledgement; the first refusal is the error.
    async fn drain(mut self, temp_path: &str) -> Result<(), Error> {
        while !self.0.is_empty() {
            self.next(temp_path).await?;
        }
        Ok(())
    }
}

/// A request already on the wire. russh-sftp sends a request when its future is first
/// polled; polling once here fixes the order in which requests leave.
enum Started<F: Future + ?Sized> {
    /// It finished on that first poll (a refusal before sending, such as a closed session).
    Done(F::Output),
    /// Sent; the reply is still to come.
    Waiting(Pin<Box<F>>),
}

impl<F: Future + ?Sized> Started<F> {
    async fn now(mut request: Pin<Box<F>>) -> Self {
        let first = std::future::poll_fn(|cx| {
            Poll::Ready(match request.as_mut().poll(cx) {
                Poll::Ready(out) => Some(out),
                Poll::Pending => None,
            })
        })
        .await;
        match first {
            Some(out) => Started::Done(out),
            None => Started::Waiting(request),
        }
    }

    async fn finish(self) -> F::Output {
        match self {
            Started::Done(out) => out,
            Started::Waiting(request) => request.await,
        }
    }
}

/// Indices of `files` smaller than `min_bytes` (published side by side, one channel each) and
/// of the others (published one after another, striped).
fn by_size<S: RangeSource>(files: &[(S, RemotePath)], min_bytes: u64) -> (Vec<usize>, Vec<usize>) {
    (0..files.len()).partition(|&i| files[i].0.len() < min_bytes)
}

/// How many stripes a file of `len` bytes gets: one per `min_bytes`, at least 1, at most `max`.
fn stripes_for(len: u64, min_bytes: u64, max: usize) -> usize {
    (len / min_bytes.max(1)).clamp(1, max.max(1) as u64) as usize
}

/// `len` bytes cut into at most `k` consecutive ranges whose boundaries are multiples of
/// `align` (so every WRITE but the last is a full chunk); never an empty range, except the
/// single one of an empty file.
fn stripe_ranges(len: u64, k: usize, align: u64) -> Vec<Range<u64>> {
    let align = align.max(1);
    let per = len.div_ceil(k.max(1) as u64).div_ceil(align) * align;
    if per == 0 {
        return std::iter::once(0..0).collect();
    }
    (0..len)
        .step_by(per as usize)
        .map(|start| start..(start + per).min(len))
        .collect()
}

fn join2(dir: &str, name: &str) -> String {
    match dir {
        "." | "" => name.to_owned(),
        "/" => format!("/{name}"),
        _ => format!("{dir}/{name}"),
    }
}

/// `.name.<8 hex>.part`, shortened so it stays within 255 bytes.
fn temp_name(file_name: &str) -> String {
    let mut end = file_name.len().min(200);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    let tag: u32 = rand::rng().random();
    format!(".{}.{tag:08x}.part", &file_name[..end])
}

fn settle(reply: Result<Status, SftpError>, temp_path: &str) -> Result<(), Error> {
    reply
        .map(drop)
        .map_err(|e| Error::sftp("write", temp_path, e))
}

/// Fill `buf` from `source`; fewer bytes only at end of input.
async fn read_full<R: AsyncRead + Unpin>(source: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_unique_and_short() {
        let a = temp_name("report.csv");
        assert!(a.starts_with(".report.csv.") && a.ends_with(".part"), "{a}");
        assert_ne!(a, temp_name("report.csv"));
        let long = "é".repeat(127); // 254 bytes
        assert!(temp_name(&long).len() <= 255);
    }

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

    #[test]
    fn stripes_cover_the_file_once_on_chunk_boundaries() {
        for (len, k, align) in [
            (0u64, 4, 10u64),
            (1, 4, 10),
            (100, 4, 10),
            (101, 4, 10),
            (39, 4, 10),
            (1 << 30, 8, 255 * 1024),
        ] {
            let r = stripe_ranges(len, k, align);
            assert!(!r.is_empty() && r.len() <= k, "{len} {k}: {r:?}");
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().unwrap().end, len);
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(w[0].end % align, 0);
                assert!(w[0].start < w[0].end);
            }
        }
        assert_eq!(stripe_ranges(39, 4, 10), [0..10, 10..20, 20..30, 30..39]);
    }

    #[test]
    fn joins_under_the_remote_directory() {
        assert_eq!(join2(".", "a"), "a");
        assert_eq!(join2("/", "a"), "/a");
        assert_eq!(join2("upload/in", "a"), "upload/in/a");
    }
}
