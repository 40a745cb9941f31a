//! Writing the temporary file: pipelined WRITEs on one channel ([`Lane`]), stripes over
//! several, then FSTAT + CLOSE right behind the last WRITE, the size check and the rename.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures_util::stream::{FuturesUnordered, StreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Status};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use crate::error::Error;
use crate::session::Session;

use super::marker::Hashing;
use super::resume::{cut, Acks, Plan};
use super::source::{Currency, Payload, RangeSource};
use super::Overwrite;

impl Session {
    /// Writes the payload (a range source: the `plan`'s ranges) through `channels[0]`'s
    /// `handle` (and the other channels' own handles when striped), checks the size, asks the
    /// source whether it is still current, closes and renames. Sets `closed` once the CLOSE of
    /// `handle` is sent. Returns the bytes written by this attempt and, when they went as one
    /// stream from byte 0 (not striped, not resumed), their SHA-256, taken as they streamed
    /// (compared before the rename with the source's own, [`RangeSource::sha256`]). A wanted
    /// digest (done marker, control file) makes every file go that way.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_and_rename<R: AsyncRead + Unpin, S: RangeSource>(
        &self,
        payload: Payload<'_, R, S>,
        plan: Plan,
        channels: &[Arc<RawSftpSession>],
        handle: &str,
        temp_path: &str,
        final_path: &str,
        policy: Overwrite,
        closed: &AtomicBool,
    ) -> Result<(u64, Option<String>), Error> {
        let main = &channels[0];
        // Every file that goes as one stream from its first byte is hashed on the way (one pass
        // over bytes already in memory, no extra read); stripes written in parallel cannot be.
        let one_stream = match &payload {
            Payload::Stream { .. } => true,
            Payload::Ranges(source) => {
                let whole = match &plan.todo[..] {
                    [only] => only.start == 0 && only.end == source.len(),
                    none => none.is_empty() && source.is_empty(),
                };
                channels.len() == 1 && whole
            }
        };
        let mut hasher = (one_stream || self.digest_wanted).then(Sha256::new);
        let lane = Lane {
            sftp: main.clone(),
            handle: handle.to_owned(),
            chunk_size: self.chunk_size,
            writes_in_flight: self.writes_in_flight,
            temp_path: temp_path.to_owned(),
        };
        let ranges = payload.ranges();
        let (sent, total, writes) = match payload {
            Payload::Stream {
                source,
                expected_len,
            } => {
                let (sent, writes) = lane
                    .send(
                        Hashing {
                            inner: source,
                            hasher: hasher.as_mut(),
                        },
                        0,
                        expected_len,
                        None,
                    )
                    .await?;
                (sent, sent, writes)
            }
            Payload::Ranges(source) if channels.len() == 1 && plan.todo.len() == 1 => {
                let piece = plan.todo[0].clone();
                let acks = plan.acks(std::slice::from_ref(&piece)).pop().flatten();
                let reader = source
                    .open(piece.clone())
                    .await
                    .map_err(|e| Error::Source {
                        sent: piece.start,
                        source: e,
                    })?;
                let len = Some(piece.end - piece.start);
                let (sent, writes) = lane
                    .send(
                        Hashing {
                            inner: reader,
                            hasher: hasher.as_mut(),
                        },
                        piece.start,
                        len,
                        acks,
                    )
                    .await?;
                (sent, source.len(), writes)
            }
            Payload::Ranges(source) => {
                // Never with a digest to take (one stream from byte 0) unless there is nothing
                // to write: an empty file, whose digest is the empty one.
                if self.digest_wanted && !plan.todo.is_empty() {
                    return Err(Error::Source {
                        sent: 0,
                        source: std::io::Error::other(
                            "a SHA-256 (for the done marker or control file) needs the file as one \
                             stream from its first byte, but it was to be striped or resumed",
                        ),
                    });
                }
                let sent = self.striped_writes(source, &plan, channels, lane).await?;
                (sent, source.len(), Replies::default())
            }
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
        if remote != Some(total) {
            return Err(Error::SizeMismatch {
                path: temp_path.to_owned(),
                remote: remote.unwrap_or(0),
                sent: total,
            });
        }
        close.map_err(|e| Error::sftp("close", temp_path, e))?;
        // Only a whole stream's digest (or an empty file's, whose plan wrote nothing).
        let digest = hasher
            .filter(|_| one_stream || total == 0)
            .map(super::marker::hex);
        if let (Some(computed), Some(expected)) = (&digest, ranges.and_then(|s| s.sha256())) {
            if *computed != expected {
                return Err(Error::ChecksumMismatch {
                    path: final_path.to_owned(),
                    expected,
                    computed: computed.clone(),
                });
            }
        }
        if let Some(source) = ranges {
            // The window left: a newer version that lands between this answer and the rename.
            let answer = source.still_current().await;
            if let Currency::Superseded(current) =
                answer.map_err(|e| Error::SourceCheck { source: e })?
            {
                return Err(Error::Superseded {
                    path: final_path.to_owned(),
                    current,
                    direct: temp_path == final_path,
                });
            }
        }
        // `direct`: written under the final name itself, nothing to rename.
        if temp_path != final_path {
            self.rename_into_place(main, temp_path, final_path, policy)
                .await?;
        }
        Ok((sent, digest))
    }

    /// Writes the `plan`'s ranges of `source` over `channels` (the first is `main`'s): the
    /// ranges are cut into pieces (one per channel, more when there are gaps) and each lane
    /// writes one piece at a time, read from its own reader, taking the next piece when done.
    /// The main lane starts at once; every extra channel opens the temporary file meanwhile (all
    /// at once) and joins as soon as it has its handle, so a WAN's round trips are not waited
    /// for in a row. A channel that cannot open the file only means fewer lanes. An extra lane
    /// closes its handle as soon as no piece is left for it: right behind the WRITEs of the last
    /// piece, so the size check follows the last acknowledgement without another round trip.
    async fn striped_writes<S: RangeSource>(
        &self,
        source: &S,
        plan: &Plan,
        channels: &[Arc<RawSftpSession>],
        main: Lane,
    ) -> Result<u64, Error> {
        let pieces = cut(&plan.todo, channels.len(), self.chunk_size as u64);
        let acks = plan.acks(&pieces);
        if pieces.len() > 1 {
            let len = source.len();
            tracing::debug!(
                channels = channels.len(),
                pieces = pieces.len(),
                len,
                "striped upload"
            );
        }
        let mut opening = JoinSet::new();
        for sftp in channels.iter().skip(1).take(pieces.len().saturating_sub(1)) {
            let (sftp, temp_path) = (sftp.clone(), main.temp_path.clone());
            opening.spawn(async move {
                let opened = sftp
                    .open(&temp_path, OpenFlags::WRITE, FileAttributes::empty())
                    .await;
                (sftp, opened)
            });
        }
        let temp_path = main.temp_path.clone();
        let template = main.clone();
        // A CLOSE on an extra lane's handle, sent on the first poll.
        let close = |lane: Lane| Box::pin(async move { lane.sftp.close(lane.handle).await });
        // The extra lanes that opened, and the channels whose handle's CLOSE is sent.
        let (mut extras, mut closed) = (Vec::new(), Vec::new());
        let mut closes = Vec::new();
        // Lanes ready for a piece, and whether each is an extra one (its handle ours to close).
        let mut idle = vec![(main, false)];
        let mut tasks: JoinSet<(Lane, bool, bool, Result<u64, Error>)> = JoinSet::new();
        let mut result = Ok(());
        let mut pieces = pieces.into_iter().zip(acks).peekable();
        let mut sent = 0;
        // Each turn hands out pieces, then waits for a lane to finish or to open: bounded by
        // the pieces and the channels, each step by the request timeout.
        loop {
            while result.is_ok() && pieces.peek().is_some() {
                let Some((lane, extra)) = idle.pop() else {
                    break;
                };
                let (range, acks) = pieces.next().expect("peeked");
                let close_behind = extra && pieces.peek().is_none();
                match source.open(range.clone()).await {
                    Ok(reader) => {
                        tasks.spawn(async move {
                            let len = Some(range.end - range.start);
                            if !close_behind {
                                let written = lane.write(reader, range.start, len, acks).await;
                                return (lane, extra, false, written);
                            }
                            let (n, replies) = match lane.send(reader, range.start, len, acks).await
                            {
                                Ok(sending) => sending,
                                Err(e) => return (lane, extra, false, Err(e)),
                            };
                            let closing = Started::now(close(lane.clone())).await;
                            let written = replies.drain(&lane.temp_path).await;
                            let closing = closing.finish().await;
                            let closing = closing
                                .map(drop)
                                .map_err(|e| Error::sftp("close", &lane.temp_path, e));
                            (lane, extra, true, written.and(closing).map(|()| n))
                        });
                    }
                    Err(e) => {
                        result = Err(Error::Source {
                            sent: range.start,
                            source: e,
                        });
                        tasks.abort_all();
                    }
                }
            }
            // Nothing left for the idle lanes: their handles are closed now, behind the others' WRITEs.
            if pieces.peek().is_none() || result.is_err() {
                for (lane, extra) in idle.drain(..) {
                    if extra {
                        closed.push(lane.sftp.clone());
                        closes.push(Started::now(close(lane)).await);
                    }
                }
            }
            tokio::select! {
                opened = opening.join_next(), if !opening.is_empty() => match opened {
                    Some(Ok((sftp, Ok(h)))) => {
                        self.unsettled.opened(&temp_path, &sftp, &h.handle);
                        let lane = Lane { sftp, handle: h.handle, ..template.clone() };
                        extras.push(lane.clone());
                        idle.push((lane, true));
                    }
                    Some(Ok((_, Err(e)))) => {
                        tracing::warn!(error = %e, "a channel could not open the temporary file; fewer stripes")
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "opening the temporary file failed; fewer stripes")
                    }
                    None => {}
                },
                done = tasks.join_next(), if !tasks.is_empty() => match done {
                    Some(Ok((lane, extra, was_closed, written))) => {
                        match was_closed {
                            true => closed.push(lane.sftp.clone()),
                            false => idle.push((lane, extra)),
                        }
                        match written {
                            Ok(n) => sent += n,
                            Err(e) if result.is_ok() => {
                                result = Err(e);
                                tasks.abort_all();
                            }
                            Err(_) => {}
                        }
                    }
                    Some(Err(join)) if result.is_ok() && !join.is_cancelled() => {
                        result = Err(Error::sftp(
                            "write",
                            &temp_path,
                            SftpError::UnexpectedBehavior(format!("stripe task failed: {join}")),
                        ));
                        tasks.abort_all();
                    }
                    _ => {}
                },
                else => break,
            }
        }
        // Not on a lost connection: each CLOSE would only wait out the request timeout.
        if result.as_ref().err().is_some_and(Error::connection_lost) {
            return result.map(|()| sent);
        }
        // Lanes of aborted pieces are closed here.
        for lane in extras {
            if !closed.iter().any(|c| Arc::ptr_eq(c, &lane.sftp)) {
                closes.push(Started::now(close(lane)).await);
            }
        }
        for closing in closes {
            if let (Err(e), Ok(())) = (closing.finish().await, &result) {
                result = Err(Error::sftp("close", &temp_path, e));
            }
        }
        result.map(|()| sent)
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
        acks: Option<Acks>,
    ) -> Result<u64, Error> {
        let (written, replies) = self.send(source, start, expected_len, acks).await?;
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
        acks: Option<Acks>,
    ) -> Result<(u64, Replies), Error> {
        let mut replies = Replies(FuturesUnordered::new(), acks);
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
            let reply: Reply =
                Box::pin(async move { (sftp.write(handle, at, chunk).await, at, n as u64) });
            match Started::now(reply).await {
                Started::Done(reply) => replies.settle(reply, &self.temp_path)?,
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

/// The server's answer to one WRITE, with the WRITE's offset and length.
type Reply = Pin<Box<dyn Future<Output = (Result<Status, SftpError>, u64, u64)> + Send>>;

/// WRITEs sent and not yet acknowledged, and where the acknowledgements are counted (a
/// resumable file's progress).
#[derive(Default)]
struct Replies(FuturesUnordered<Reply>, Option<Acks>);

impl Replies {
    /// Waits for one acknowledgement (nothing to do when none is outstanding).
    async fn next(&mut self, temp_path: &str) -> Result<(), Error> {
        match self.0.next().await {
            Some(reply) => self.settle(reply, temp_path),
            None => Ok(()),
        }
    }

    fn settle(
        &mut self,
        (reply, at, len): (Result<Status, SftpError>, u64, u64),
        temp_path: &str,
    ) -> Result<(), Error> {
        settle(reply, temp_path)?;
        if let Some(acks) = &mut self.1 {
            acks.acked(at, len);
        }
        Ok(())
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
