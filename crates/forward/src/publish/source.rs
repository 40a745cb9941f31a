//! What a publish reads: a byte-range source (S3 object, local file) or one stream, and how
//! a range source is cut into stripes.

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use super::resume::Progress;
use crate::route::RemotePath;

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
    /// What names these exact bytes (an S3 version id or ETag), if anything does. A source with
    /// an identity is resumable: its temporary file is named after the final path and the
    /// identity (see [`resume`](super::resume)), and is kept when the publish is stopped from
    /// outside, so that another attempt for the same bytes continues it.
    fn identity(&self) -> Option<String> {
        None
    }
    /// What an earlier, interrupted attempt left on the partner (from
    /// [`Abandoned::kept`](crate::Abandoned::kept)); used only when it matches this file and
    /// identity and the temporary file is still there.
    fn progress(&self) -> Option<Progress> {
        None
    }
    /// Whether these bytes are still the source's current ones, asked just before the rename:
    /// [`Currency::Superseded`] removes the temporary file instead of renaming it.
    fn still_current(&self) -> impl Future<Output = std::io::Result<Currency>> + Send {
        std::future::ready(Ok(Currency::Current))
    }
    /// The SHA-256 (lowercase hex) of all of the source's bytes as the source itself records it
    /// (S3's full-object checksum), if it holds one. When the file goes as one stream from its
    /// first byte, the digest taken as it streams is compared with this before the rename, and
    /// a difference fails the file ([`Error::ChecksumMismatch`](crate::Error::ChecksumMismatch))
    /// with nothing under the final name. A striped or resumed file has no such digest and is not
    /// compared.
    fn sha256(&self) -> Option<String> {
        None
    }
    /// Forget the recorded [`RangeSource::progress`]: asked before the first WRITE whenever a
    /// resumable publish writes the file from the start, so that a record which outlived its file
    /// can never vouch for ranges of a new one that are not written yet. A source that carries
    /// no progress has nothing to do (and should do no I/O: this is every first delivery).
    fn discard_progress(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// The answer of [`RangeSource::still_current`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Currency {
    /// Still the current bytes (or the source cannot tell).
    Current,
    /// A newer version replaced them; what it is, for the operator.
    Superseded(String),
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
pub(super) enum Payload<'a, R, S> {
    Stream {
        source: R,
        expected_len: Option<u64>,
    },
    Ranges(&'a S),
}

impl<'a, R, S> Payload<'a, R, S> {
    /// The range source, if it is one.
    pub(super) fn ranges(&self) -> Option<&'a S> {
        match self {
            Payload::Ranges(s) => Some(*s),
            Payload::Stream { .. } => None,
        }
    }
}

/// The `Payload` type parameter of a plain stream publish.
pub(super) struct NoRanges;

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
    pub(super) fn stripes(&self, min_bytes: u64, max: usize) -> usize {
        match self {
            Payload::Ranges(s) => stripes_for(s.len(), min_bytes, max),
            Payload::Stream { .. } => 1,
        }
    }

    pub(super) fn expected_len(&self) -> Option<u64> {
        match self {
            Payload::Stream { expected_len, .. } => *expected_len,
            Payload::Ranges(s) => Some(s.len()),
        }
    }
}

/// Indices of `files` smaller than `min_bytes` (published side by side, one channel each) and
/// of the others (published one after another, striped).
pub(super) fn by_size<S: RangeSource>(
    files: &[(S, RemotePath)],
    min_bytes: u64,
) -> (Vec<usize>, Vec<usize>) {
    (0..files.len()).partition(|&i| files[i].0.len() < min_bytes)
}

/// How many stripes a file of `len` bytes gets: one per `min_bytes`, at least 1, at most `max`.
pub(super) fn stripes_for(len: u64, min_bytes: u64, max: usize) -> usize {
    (len / min_bytes.max(1)).clamp(1, max.max(1) as u64) as usize
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one byte range, not a range turned into a Vec
mod tests {
    use crate::publish::resume::cut;

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
            let r = cut(&[0..len], k, align);
            if len == 0 {
                assert!(r.is_empty());
                continue;
            }
            assert!(r.len() <= k, "{len} {k}: {r:?}");
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().unwrap().end, len);
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(w[0].end % align, 0);
                assert!(w[0].start < w[0].end);
            }
        }
        assert_eq!(cut(&[0..39], 4, 10), [0..10, 10..20, 20..30, 30..39]);
    }
}
