//! Resuming a file an earlier attempt did not finish.
//!
//! A [`RangeSource`](super::RangeSource) that names the identity of its bytes (an S3 version id
//! or ETag) is written under a temporary name derived from the final path and that identity
//! ([`resume_tag`], placed by the partner's upload convention): the next attempt for the same bytes finds the same file, and another
//! version never continues it. While it is written, a [`Tracker`] holds, for every piece (a
//! contiguous byte range one channel writes in order), the end of the acknowledged WRITEs from
//! its start; it lives in the session's `Unsettled`, so it survives a publish stopped from
//! outside. [`Connector::abandon`](crate::Connector::abandon) then reports it as [`Progress`],
//! which the caller keeps (the Lambda: an object tag) and hands back through
//! [`RangeSource::progress`](super::RangeSource::progress) on the next attempt: only the
//! [`missing`] ranges are written, [`cut`] into pieces for the channels.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use super::file_ops::Opening;
use super::RangeSource;
use crate::error::Error;
use crate::session::{lock, Session};

/// What an interrupted attempt left on the partner: byte ranges of a resumable temporary file
/// that are known to hold the source's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Which temporary file: [`resume_key`] of the final path and the source's identity.
    pub key: String,
    /// The source's whole length.
    pub len: u64,
    /// Completed ranges (end exclusive), sorted and disjoint.
    pub done: Vec<Range<u64>>,
}

impl Progress {
    /// Bytes known to be on the partner.
    pub fn bytes_done(&self) -> u64 {
        self.done.iter().map(|r| r.end - r.start).sum()
    }
}

/// 16 hex digits naming the temporary file of `final_path` holding the bytes `identity`
/// (64-bit FNV-1a: stable across builds and platforms, unlike `std`'s hasher).
pub fn resume_key(final_path: &str, identity: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in final_path
        .bytes()
        .chain(std::iter::once(0))
        .chain(identity.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `sfr-<key>`: the tag of a resumable temporary name (`.name.sfr-<key>.part` by default).
pub(super) fn resume_tag(key: &str) -> String {
    format!("sfr-{key}")
}

/// `ranges` sorted, overlapping or touching ones merged, empty ones dropped.
pub(super) fn normalize(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The parts of `0..len` not in `done`.
pub(super) fn missing(done: &[Range<u64>], len: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut at = 0;
    for r in normalize(done.to_vec()) {
        let r = r.start.min(len)..r.end.min(len);
        if r.start > at {
            out.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < len {
        out.push(at..len);
    }
    out
}

/// `todo` cut into pieces of at most about `total / k` bytes, each inside one range of `todo`,
/// every cut on a multiple of `align` (so each WRITE but a range's last is a full chunk). More
/// than `k` pieces when `todo` has gaps; the channels take them in turn.
pub(super) fn cut(todo: &[Range<u64>], k: usize, align: u64) -> Vec<Range<u64>> {
    let align = align.max(1);
    let total: u64 = todo.iter().map(|r| r.end - r.start).sum();
    let per = total.div_ceil(k.max(1) as u64).div_ceil(align).max(1) * align;
    let mut out = Vec::new();
    for r in todo.iter().filter(|r| r.start < r.end) {
        let mut at = r.start;
        while at < r.end {
            let next = ((at + per) / align * align).clamp(at + 1, r.end);
            out.push(at..next);
            at = next;
        }
    }
    out
}

/// The acknowledged progress of a resumable temporary file being written (see the module doc).
#[derive(Debug)]
pub(crate) struct Tracker {
    key: String,
    /// The source's [`identity`](super::RangeSource::identity).
    pub(crate) identity: String,
    len: u64,
    /// Known complete before this attempt.
    before: Vec<Range<u64>>,
    /// Each piece of this attempt and the end of its acknowledged prefix.
    pieces: Mutex<Vec<(Range<u64>, u64)>>,
}

impl Tracker {
    pub(super) fn new(
        key: String,
        identity: String,
        len: u64,
        before: Vec<Range<u64>>,
    ) -> Arc<Tracker> {
        Arc::new(Tracker {
            key,
            identity,
            len,
            before,
            pieces: Mutex::default(),
        })
    }

    /// This attempt will write `pieces`; returns the index of the first.
    pub(super) fn plan(&self, pieces: &[Range<u64>]) -> usize {
        let mut all = lock(&self.pieces);
        let first = all.len();
        all.extend(pieces.iter().map(|r| (r.clone(), r.start)));
        first
    }

    fn advance(&self, piece: usize, acked_end: u64) {
        if let Some((_, end)) = lock(&self.pieces).get_mut(piece) {
            *end = (*end).max(acked_end);
        }
    }

    /// What is known to be on the partner now.
    pub(crate) fn progress(&self) -> Progress {
        let mut done = self.before.clone();
        done.extend(lock(&self.pieces).iter().map(|(r, end)| r.start..*end));
        Progress {
            key: self.key.clone(),
            len: self.len,
            done: normalize(done),
        }
    }
}

/// What one attempt writes: the `todo` ranges (all of a fresh file; a resumed file's
/// [`missing`] ones), and the tracker of a resumable file.
pub(super) struct Plan {
    pub(super) todo: Vec<Range<u64>>,
    pub(super) tracker: Option<Arc<Tracker>>,
}

impl Plan {
    /// Registers `pieces` with the tracker: the acknowledgement counter of each, in order.
    pub(super) fn acks(&self, pieces: &[Range<u64>]) -> Vec<Option<Acks>> {
        match &self.tracker {
            Some(t) => {
                let first = t.plan(pieces);
                (pieces.iter().enumerate())
                    .map(|(i, r)| Some(Acks::new(t.clone(), first + i, r.start)))
                    .collect()
            }
            None => pieces.iter().map(|_| None).collect(),
        }
    }
}

/// One piece's acknowledgements, which may arrive out of order: the contiguous end is passed to
/// the [`Tracker`] as it grows.
pub(super) struct Acks {
    tracker: Arc<Tracker>,
    piece: usize,
    end: u64,
    early: BTreeMap<u64, u64>,
}

impl Acks {
    pub(super) fn new(tracker: Arc<Tracker>, piece: usize, start: u64) -> Acks {
        Acks {
            tracker,
            piece,
            end: start,
            early: BTreeMap::new(),
        }
    }

    /// The WRITE of `len` bytes at `at` was acknowledged.
    pub(super) fn acked(&mut self, at: u64, len: u64) {
        if at != self.end {
            self.early.insert(at, at + len);
            return;
        }
        self.end = at + len;
        while let Some(end) = self.early.remove(&self.end) {
            self.end = end;
        }
        self.tracker.advance(self.piece, self.end);
    }
}

impl Session {
    /// Opens the temporary file in the directory of `parent` (exclusively, or keeping what is
    /// there); a directory removed since it was cached is created once more.
    pub(super) async fn open_in(
        &self,
        on: &RawSftpSession,
        parent: &[String],
        temp_path: &str,
        how: Opening,
    ) -> Result<String, Error> {
        match self.open_temp(on, temp_path, how).await {
            Err(Error::Sftp {
                cause: SftpError::Status(s),
                ..
            }) if s.status_code == StatusCode::NoSuchFile => {
                lock(&self.known_dirs).clear();
                self.create_dirs(on, parent).await?;
                self.open_temp(on, temp_path, how).await
            }
            other => other,
        }
    }

    /// Opens the resumable `temp_path` to continue it: never created (a file removed since its
    /// progress was checked would come back empty, its skipped ranges holes), and checked on the
    /// handle to be at least `furthest` bytes long. Either failure is [`Error::ResumeLost`].
    pub(super) async fn open_to_continue(
        &self,
        on: &RawSftpSession,
        temp_path: &str,
        furthest: u64,
    ) -> Result<String, Error> {
        let lost = || Error::ResumeLost {
            path: temp_path.to_owned(),
        };
        let handle = match on
            .open(temp_path, OpenFlags::WRITE, FileAttributes::empty())
            .await
        {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Err(lost())
            }
            Err(e) => return Err(Error::sftp("open", temp_path, e)),
        };
        match on.fstat(handle.as_str()).await {
            Ok(a) if a.attrs.size.unwrap_or(0) >= furthest => Ok(handle),
            Ok(_) => {
                let _ = on.close(handle.as_str()).await;
                Err(lost())
            }
            Err(e) => {
                let _ = on.close(handle.as_str()).await;
                Err(Error::sftp("fstat", temp_path, e))
            }
        }
    }

    /// What of the resumable `temp_path` (named by `key`) can be kept: the source's progress when
    /// it names this file and length and the file is there, at least as long as the furthest
    /// completed byte; otherwise nothing (start over, into the same file: the same bytes go to the
    /// same offsets). A file longer than the source is removed first.
    pub(super) async fn resume_point<S: RangeSource>(
        &self,
        on: &RawSftpSession,
        temp_path: &str,
        key: &str,
        source: &S,
    ) -> Result<Vec<std::ops::Range<u64>>, Error> {
        let len = source.len();
        let found = match on.stat(temp_path).await {
            Ok(a) => Some((a.attrs.size.unwrap_or(0), a.attrs.mtime)),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => None,
            Err(e) => return Err(Error::sftp("stat", temp_path, e)),
        };
        let size = match found {
            Some((size, _)) if size > len => {
                on.remove(temp_path)
                    .await
                    .map_err(|e| Error::sftp("remove", temp_path, e))?;
                None
            }
            other => other.map(|(size, _)| size),
        };
        // A file as old as the sweep's bound may be being removed right now (the sweep runs
        // beside this publish): it is not continued but written again from the start, so a
        // removal before the OPEN loses nothing.
        let stale = self.unsettled.stale_after();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let sweepable = !stale.is_zero()
            && found
                .and_then(|(_, mtime)| mtime)
                .is_some_and(|m| now.saturating_sub(u64::from(m)) > stale.as_secs());
        let progress = source.progress().filter(|p| p.key == key && p.len == len);
        let Some(progress) = progress else {
            if size.is_some() {
                tracing::info!(
                    temp_path,
                    "an earlier temporary file of these bytes is overwritten from the start"
                );
            }
            return Ok(Vec::new());
        };
        let furthest = progress.done.iter().map(|r| r.end).max().unwrap_or(0);
        match size {
            Some(size) if size >= furthest && !sweepable => {
                let resumed_from = progress.bytes_done();
                tracing::info!(
                    resumed_from,
                    len,
                    "resuming: {resumed_from} bytes are on the partner already"
                );
                Ok(normalize(progress.done))
            }
            _ => {
                tracing::info!(
                    temp_path,
                    ?size,
                    furthest,
                    sweepable,
                    "the progress recorded does not match the temporary file (or it is as old as \
                     the sweep's bound); starting over"
                );
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one byte range, not a range turned into a Vec
mod tests {
    use super::*;

    #[test]
    fn missing_is_the_complement_of_what_is_done() {
        assert_eq!(missing(&[], 10), [0..10]);
        assert_eq!(missing(&[0..10], 10), Vec::<Range<u64>>::new());
        assert_eq!(missing(&[6..8, 2..4, 3..5], 10), [0..2, 5..6, 8..10]);
        // Ranges past the end (a shorter new version) do not count.
        assert_eq!(missing(&[0..4, 9..20], 8), [4..8]);
        assert_eq!(normalize(vec![5..6, 0..2, 2..3, 7..7]), [0..3, 5..6]);
    }

    #[test]
    fn missing_bytes_are_cut_into_stripes_on_chunk_boundaries() {
        // A fresh file: the same stripes as before resume existed.
        assert_eq!(cut(&[0..39], 4, 10), [0..10, 10..20, 20..30, 30..39]);
        // Two stripes half done: the rest of each, cut again for 2 channels.
        let todo = missing(&[0..25, 50..75], 100);
        assert_eq!(todo, [25..50, 75..100]);
        let pieces = cut(&todo, 2, 10);
        assert_eq!(pieces, [25..50, 75..100]);
        assert_eq!(cut(&todo, 4, 10), [25..40, 40..50, 75..90, 90..100]);
        for (todo, k, align) in [
            (vec![3..1000], 3, 64u64),
            (vec![0..1, 5..6, 100..1 << 20], 8, 4096),
            (vec![7..8], 4, 10),
        ] {
            let pieces = cut(&todo, k, align);
            assert_eq!(
                normalize(pieces.clone()),
                normalize(todo.clone()),
                "{todo:?}"
            );
            for p in &pieces {
                assert!(p.start < p.end);
                let inner = todo.iter().any(|r| r.start <= p.start && p.end <= r.end);
                assert!(inner, "{p:?} crosses a gap of {todo:?}");
                assert!(p.end % align == 0 || todo.iter().any(|r| r.end == p.end));
            }
        }
    }

    #[test]
    fn progress_counts_only_the_contiguous_acknowledged_prefix_of_each_piece() {
        let t = Tracker::new("k".into(), "v1".into(), 100, vec![0..10]);
        let first = t.plan(&[10..50, 50..100]);
        let mut a = Acks::new(t.clone(), first, 10);
        let mut b = Acks::new(t.clone(), first + 1, 50);
        a.acked(20, 10); // out of order: not yet contiguous
        assert_eq!(t.progress().done, [0..10]);
        a.acked(10, 10);
        b.acked(50, 5);
        assert_eq!(t.progress().done, [0..30, 50..55]);
        assert_eq!(t.progress().bytes_done(), 35);
    }

    #[test]
    fn keys_depend_on_path_and_identity_and_names_stay_short() {
        let k = resume_key("in/a.csv", "v1");
        assert_eq!(k.len(), 16);
        assert_eq!(k, resume_key("in/a.csv", "v1"));
        assert_ne!(k, resume_key("in/a.csv", "v2"));
        assert_ne!(k, resume_key("in/b.csv", "v1"));
        assert_eq!(resume_tag(&k), format!("sfr-{k}"));
    }
}
