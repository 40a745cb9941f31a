//! The SHA-256 of what lands on the partner: taken as a file goes out as one stream (a range
//! source on one channel, a plain stream, an empty file), never for a striped one; a source's
//! own SHA-256 that differs fails the file before the rename, and nothing stays under the final
//! name, under the default convention and under `direct` (written under the final name itself).

mod util;

use std::ops::Range;

use forward::{Connector, Error, FileRanges, Overwrite, RangeSource, Tuning};
use testkit::scratch_dir;
use util::*;

/// A local file that claims a SHA-256 of its own, as an S3 object with a full-object checksum.
struct Claimed {
    file: FileRanges,
    sha256: String,
}

impl RangeSource for Claimed {
    type Reader = <FileRanges as RangeSource>::Reader;

    fn len(&self) -> u64 {
        self.file.len()
    }

    async fn open(&self, range: Range<u64>) -> std::io::Result<Self::Reader> {
        self.file.open(range).await
    }

    fn sha256(&self) -> Option<String> {
        Some(self.sha256.clone())
    }
}

/// Four stripes of 64 KiB at most: a 300 kB file is striped, a 40 kB one goes as one stream.
fn striping() -> Tuning {
    Tuning {
        stripes: 4,
        stripe_min_bytes: 64 * 1024,
        ..Tuning::default()
    }
}

#[tokio::test]
async fn one_stream_files_carry_their_sha256_and_striped_ones_none() {
    let (local, remote) = scratch_dir("digests");
    let mut c = Connector::new(partner(&partner_json(&remote)), striping());

    let (_small_dir, small, small_digest) = noise_file(1, 40_000);
    let source = FileRanges::new(&small).await.unwrap();
    let done = c
        .publish_ranges(&source, &path("one.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.sha256.as_deref(), Some(small_digest.as_str()));
    let landed = std::fs::read(local.join("one.bin")).unwrap();
    assert_eq!(sha256_of_reader(&landed[..]), small_digest);

    let bytes = std::fs::read(&small).unwrap();
    let done = publish_bytes(&mut c, "stream.bin", &bytes).await.unwrap();
    assert_eq!(done.sha256.as_deref(), Some(small_digest.as_str()));

    let empty = publish_bytes(&mut c, "empty.bin", b"").await.unwrap();
    assert_eq!(
        empty.sha256.as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );

    let (_big_dir, big, big_digest) = noise_file(2, 300_000);
    let source = FileRanges::new(&big).await.unwrap();
    let done = c
        .publish_ranges(&source, &path("striped.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        done.sha256, None,
        "stripes written in parallel are not hashed"
    );
    let landed = std::fs::read(local.join("striped.bin")).unwrap();
    assert_eq!(
        sha256_of_reader(&landed[..]),
        big_digest,
        "and still intact"
    );
}

#[tokio::test]
async fn a_source_sha256_that_differs_fails_before_the_rename_and_leaves_nothing() {
    for upload in [None, Some("direct")] {
        let (local, remote) = scratch_dir("mismatch");
        let mut json = partner_json(&remote);
        if let Some(u) = upload {
            json["Upload"] = serde_json::json!(u);
        }
        let mut c = Connector::new(partner(&json), striping());
        let (_dir, file, digest) = noise_file(3, 40_000);
        let wrong = Claimed {
            file: FileRanges::new(&file).await.unwrap(),
            sha256: "0".repeat(64),
        };
        let err = c
            .publish_ranges(&wrong, &path("a.bin"), Overwrite::Overwrite)
            .await
            .unwrap_err();
        match &err {
            Error::ChecksumMismatch {
                expected, computed, ..
            } => {
                assert_eq!(*expected, "0".repeat(64));
                assert_eq!(*computed, digest);
            }
            other => panic!("{upload:?}: {other}"),
        }
        assert_eq!(err.class(), forward::ErrorClass::Permanent);
        assert_eq!(files_under(&local), Vec::<String>::new(), "{upload:?}");

        // The same file with its right digest lands.
        let right = Claimed {
            file: FileRanges::new(&file).await.unwrap(),
            sha256: digest.clone(),
        };
        let done = c
            .publish_ranges(&right, &path("a.bin"), Overwrite::Overwrite)
            .await
            .unwrap();
        assert_eq!(done.sha256.as_deref(), Some(digest.as_str()));
        assert_eq!(files_under(&local), ["a.bin"], "{upload:?}");
    }
}
