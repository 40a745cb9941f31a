//! Resume against the real sshd: a recorded progress is trusted only while its temporary file is
//! there and long enough; otherwise the file is written from the start and the record is
//! discarded first, so it can never vouch for ranges of a new file that were not written.

mod util;

use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use forward::publish::resume::resume_key;
use forward::{FileRanges, Overwrite, Progress, PublishOutcome, RangeSource};
use testkit::scratch_dir;
use util::*;

/// A local file that names its bytes and carries a recorded progress, counting discards.
struct Recorded {
    file: FileRanges,
    progress: Progress,
    discarded: AtomicUsize,
}

impl RangeSource for Recorded {
    type Reader = <FileRanges as RangeSource>::Reader;

    fn len(&self) -> u64 {
        self.file.len()
    }

    async fn open(&self, range: Range<u64>) -> std::io::Result<Self::Reader> {
        self.file.open(range).await
    }

    fn identity(&self) -> Option<String> {
        Some("v1".into())
    }

    fn progress(&self) -> Option<Progress> {
        Some(self.progress.clone())
    }

    async fn discard_progress(&self) -> std::io::Result<()> {
        self.discarded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
#[allow(clippy::single_range_in_vec_init)] // one byte range done, not a range turned into a Vec
async fn a_progress_whose_file_is_gone_or_short_is_discarded_and_the_file_written_whole() {
    let len = 3 << 20;
    let (_dir, file, sha) = noise_file(7, len);
    for (case, temp_len) in [("gone", None), ("short", Some(1000u64))] {
        let (local, remote) = scratch_dir(&format!("resume-{case}"));
        let final_path = format!("{remote}/out.bin");
        let key = resume_key(&final_path, "v1");
        let source = Recorded {
            file: FileRanges::new(&file).await.unwrap(),
            // Claims the first two thirds are on the partner already.
            progress: Progress {
                key: key.clone(),
                len,
                done: vec![0..2 << 20],
            },
            discarded: AtomicUsize::new(0),
        };
        if let Some(n) = temp_len {
            // The temporary file of these bytes, but shorter than the record says.
            // Owned like the partner's own files, so that its login may write it.
            let temp = local.join(format!(".out.bin.sfr-{key}.part"));
            std::fs::write(&temp, vec![0u8; n as usize]).unwrap();
            let owner = std::fs::metadata(&local).unwrap();
            std::os::unix::fs::chown(&temp, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        let mut c = connector(&partner_json(&remote));
        let done = c
            .publish_ranges(&source, &path("out.bin"), Overwrite::Overwrite)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(done.outcome, PublishOutcome::Written, "{case}");
        assert_eq!(
            sha256_of_reader(std::fs::File::open(local.join("out.bin")).unwrap()),
            sha,
            "{case}: written whole, no holes where the record claimed bytes"
        );
        assert_eq!(
            source.discarded.load(Ordering::SeqCst),
            1,
            "{case}: the stale record is discarded before writing"
        );
        assert_eq!(files_under(&local), ["out.bin"], "{case}: no temp left");
    }
}

/// A local file that names its bytes (no recorded progress) whose reads can be made to break
/// after 1 MiB, as an S3 body whose connection resets.
struct Breaking {
    file: FileRanges,
    broken: std::sync::atomic::AtomicBool,
}

/// Yields `inner` until `left` bytes have passed, then fails.
struct BreaksAfter<R> {
    inner: R,
    left: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for BreaksAfter<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
            return std::task::Poll::Ready(Err(reset));
        }
        let mut scratch = vec![0u8; buf.remaining().min(self.left)];
        let mut limited = tokio::io::ReadBuf::new(&mut scratch);
        std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.put_slice(limited.filled());
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl RangeSource for Breaking {
    type Reader = BreaksAfter<<FileRanges as RangeSource>::Reader>;

    fn len(&self) -> u64 {
        self.file.len()
    }

    async fn open(&self, range: Range<u64>) -> std::io::Result<Self::Reader> {
        let left = match self.broken.load(Ordering::SeqCst) {
            true => 1 << 20,
            false => usize::MAX,
        };
        Ok(BreaksAfter {
            inner: self.file.open(range).await?,
            left,
        })
    }

    fn identity(&self) -> Option<String> {
        Some("v1".into())
    }
}

#[tokio::test]
async fn a_resumable_file_that_fails_transiently_stays_for_the_retry() {
    let len = 3 << 20;
    let (_dir, file, sha) = noise_file(11, len);
    let (local, remote) = scratch_dir("resume-kept");
    let key = resume_key(&format!("{remote}/out.bin"), "v1");
    let source = Breaking {
        file: FileRanges::new(&file).await.unwrap(),
        broken: true.into(),
    };
    let mut c = connector(&partner_json(&remote));
    let e = c
        .publish_ranges(&source, &path("out.bin"), Overwrite::Overwrite)
        .await
        .expect_err("the source breaks after 1 MiB");
    assert!(e.is_transient(), "{e}");
    assert_eq!(
        files_under(&local),
        [format!(".out.bin.sfr-{key}.part")],
        "the resumable file stays (never under the final name): {e}"
    );

    source.broken.store(false, Ordering::SeqCst);
    let done = c
        .publish_ranges(&source, &path("out.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::Written);
    assert_eq!(
        sha256_of_reader(std::fs::File::open(local.join("out.bin")).unwrap()),
        sha
    );
    assert_eq!(files_under(&local), ["out.bin"], "no temp left");
}

#[tokio::test]
#[allow(clippy::single_range_in_vec_init)] // one byte range done, not a range turned into a Vec
async fn a_resumed_file_is_listed_in_the_control_file_with_its_whole_size() {
    let len = 3 << 20;
    let (_dir, file, sha) = noise_file(13, len);
    let (local, remote) = scratch_dir("resume-ctl");
    let key = resume_key(&format!("{remote}/out.bin"), "v1");
    // An earlier attempt wrote the first 2 MiB (the right bytes) and recorded them.
    let temp = local.join(format!(".out.bin.sfr-{key}.part"));
    std::fs::write(&temp, &std::fs::read(&file).unwrap()[..2 << 20]).unwrap();
    let owner = std::fs::metadata(&local).unwrap();
    std::os::unix::fs::chown(&temp, Some(owner.uid()), Some(owner.gid())).unwrap();
    let source = Recorded {
        file: FileRanges::new(&file).await.unwrap(),
        progress: Progress {
            key,
            len,
            done: vec![0..2 << 20],
        },
        discarded: AtomicUsize::new(0),
    };
    let mut json = partner_json(&remote);
    json["ControlFile"] = serde_json::json!("{now:%Y%m%d%H%M%S%6f}.ctl");
    let mut c = connector(&json);
    let done = c
        .publish_ranges(&source, &path("out.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.bytes, len);
    assert_eq!(
        source.discarded.load(Ordering::SeqCst),
        0,
        "resumed, not restarted"
    );
    let control = c
        .write_control(&[&done], std::time::SystemTime::now())
        .await
        .unwrap()
        .expect("a control file");
    let name = control.rsplit('/').next().unwrap();
    assert_eq!(
        std::fs::read_to_string(local.join(name)).unwrap(),
        format!("out.bin {len}\n"),
        "the whole file's size, not the 1 MiB this attempt wrote"
    );
    assert_eq!(
        sha256_of_reader(std::fs::File::open(local.join("out.bin")).unwrap()),
        sha
    );
}
