//! Done markers (`DoneMarker` in the partner JSON) against the real sshd: written after the file,
//! empty or holding the file's name, size and SHA-256, and a failed marker retried alone.

mod util;

use std::os::unix::fs::MetadataExt;

use forward::{Error, FileRanges, Overwrite, PublishOutcome, RangeSource};
use serde_json::json;
use util::*;

fn with_marker(remote: &str, marker: serde_json::Value) -> serde_json::Value {
    let mut json = partner_json(remote);
    json["DoneMarker"] = marker;
    json
}

#[tokio::test]
async fn an_empty_marker_follows_the_file() {
    let (local, remote) = testkit::scratch_dir("mk-empty");
    let mut c = connector(&with_marker(&remote, json!(".done")));
    let done = publish_bytes(&mut c, "a.csv", b"rows\n").await.unwrap();
    assert_eq!(
        done.marker.as_deref(),
        Some(&*format!("{remote}/a.csv.done"))
    );
    assert_eq!(files_under(&local), ["a.csv", "a.csv.done"]);
    assert_eq!(std::fs::read(local.join("a.csv")).unwrap(), b"rows\n");
    assert!(std::fs::read(local.join("a.csv.done")).unwrap().is_empty());
}

#[tokio::test]
async fn a_summary_marker_holds_name_size_and_the_sha256_of_a_large_file() {
    let (local, remote) = testkit::scratch_dir("mk-summary");
    let json = with_marker(&remote, json!({"Suffix": ".ok", "Content": "summary"}));
    let mut c = connector(&json);
    // Larger than a stripe: the marker's digest makes it go as one stream (a striped write
    // would trip the publisher's debug assertion).
    let len = 20 * 1024 * 1024 + 17;
    let (_dir, file, sha) = noise_file(7, len);
    let source = FileRanges::new(&file).await.unwrap();
    let done = c
        .publish_ranges(&source, &path("big.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::Written);
    assert_eq!(
        std::fs::read_to_string(local.join("big.bin.ok")).unwrap(),
        format!("big.bin {len} {sha}\n")
    );
    assert_eq!(
        sha256_of_reader(std::fs::File::open(local.join("big.bin")).unwrap()),
        sha
    );
}

/// Bytes in memory named by `version`, as an S3 object version is; once read to the end, it
/// makes `block_at` a non-empty directory (so that what comes after the file, its marker, fails).
struct Versioned {
    bytes: &'static [u8],
    version: &'static str,
    block_at: Option<std::path::PathBuf>,
}

/// [`Versioned`]'s reader.
struct Blocking {
    data: std::io::Cursor<Vec<u8>>,
    block_at: Option<std::path::PathBuf>,
}

impl tokio::io::AsyncRead for Blocking {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = std::io::Read::read(&mut self.data, buf.initialize_unfilled())?;
        buf.advance(n);
        if n == 0 {
            if let Some(dir) = self.block_at.take() {
                std::fs::create_dir(&dir)?;
                std::fs::write(dir.join("x"), b"x")?;
            }
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl RangeSource for Versioned {
    type Reader = Blocking;
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    async fn open(&self, range: std::ops::Range<u64>) -> std::io::Result<Self::Reader> {
        Ok(Blocking {
            data: std::io::Cursor::new(
                self.bytes[range.start as usize..range.end as usize].to_vec(),
            ),
            block_at: self.block_at.clone(),
        })
    }
    fn identity(&self) -> Option<String> {
        Some(self.version.to_owned())
    }
}

#[tokio::test]
async fn a_failed_marker_fails_the_file_and_the_retry_writes_only_the_marker() {
    let (local, remote) = testkit::scratch_dir("mk-retry");
    let json = with_marker(&remote, json!({"Content": "summary"}));
    // Something the marker cannot replace, there once the file's bytes are read: a non-empty
    // directory under its name.
    let blocker = local.join("r.csv.done");
    let v1 = Versioned {
        bytes: b"the file\n",
        version: "v1",
        block_at: Some(blocker.clone()),
    };
    let mut c = connector(&json);
    let err = c
        .publish_ranges(&v1, &path("r.csv"), Overwrite::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MarkerFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("done marker"), "{err}");
    let first = std::fs::metadata(local.join("r.csv")).unwrap();
    assert_eq!(std::fs::read(local.join("r.csv")).unwrap(), b"the file\n");

    // The operator clears the way; the retry of the same version finds the file in place and
    // writes the marker only.
    std::fs::remove_dir_all(&blocker).unwrap();
    let v1 = Versioned {
        block_at: None,
        ..v1
    };
    let done = c
        .publish_ranges(&v1, &path("r.csv"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::MarkerOnly);
    assert_eq!(done.bytes, 0);
    let again = std::fs::metadata(local.join("r.csv")).unwrap();
    assert_eq!(
        (first.ino(), first.mtime(), first.mtime_nsec()),
        (again.ino(), again.mtime(), again.mtime_nsec()),
        "the file was not sent again"
    );
    let sha = sha256_of_reader(&b"the file\n"[..]);
    assert_eq!(
        std::fs::read_to_string(local.join("r.csv.done")).unwrap(),
        format!("r.csv 9 {sha}\n")
    );
    assert_eq!(files_under(&local), ["r.csv", "r.csv.done"]);

    // A new version of the same size, its marker gone (a poller took it): sent, never taken for
    // the old one; the old marker is removed before the new file is put in place.
    std::fs::remove_file(local.join("r.csv.done")).unwrap();
    let v2 = Versioned {
        bytes: b"new file\n",
        version: "v2",
        block_at: None,
    };
    let done = c
        .publish_ranges(&v2, &path("r.csv"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::Written);
    assert_eq!(std::fs::read(local.join("r.csv")).unwrap(), b"new file\n");
    let sha = sha256_of_reader(&b"new file\n"[..]);
    assert_eq!(
        std::fs::read_to_string(local.join("r.csv.done")).unwrap(),
        format!("r.csv 9 {sha}\n")
    );
}

#[tokio::test]
async fn no_marker_appears_when_the_file_could_not_be_put_in_place_and_direct_writes_both() {
    let partner =
        testkit::sshd_styled(&testkit::Style::new().sftp_denied("rename,posix-rename")).unwrap();
    let (local, remote) = partner.scratch_dir("mk-refused");
    let mut json = partner.partner_json(&remote);
    json["DoneMarker"] = json!(".done");
    let err = publish_bytes(&mut connector(&json), "m.csv", b"m")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RenameRefused { .. }), "{err:?}");
    assert!(files_under(&local).is_empty(), "{:?}", files_under(&local));

    json["Upload"] = json!("direct");
    let done = publish_bytes(&mut connector(&json), "m.csv", b"m")
        .await
        .unwrap();
    assert!(done.marker.is_some());
    assert_eq!(files_under(&local), ["m.csv", "m.csv.done"]);

    // A direct rewrite that fails takes the old marker away with the file: never a marker beside
    // an incomplete file.
    let err = connector(&json)
        .publish(
            &b"short"[..],
            Some(100),
            &path("m.csv"),
            Overwrite::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(files_under(&local).is_empty(), "{:?}", files_under(&local));
}

#[test]
fn marker_settings_are_checked_with_the_field_named() {
    let e =
        forward::Partner::from_json(&with_marker("upload", json!({"Content": "md5"})).to_string())
            .unwrap_err()
            .to_string();
    assert!(e.contains("DoneMarker.Content"), "{e}");
}

#[tokio::test]
async fn a_control_file_larger_than_one_write_arrives_whole() {
    let (local, remote) = testkit::scratch_dir("ctl-big");
    let mut json = partner_json(&remote);
    json["ControlFile"] = json!({"Name": "ctl/{now:%Y%m%d%H%M%S%6f}.ctl", "Content": "summary"});
    let tuning = forward::Tuning {
        chunk_size: 64,
        ..forward::Tuning::default()
    };
    let mut c = forward::Connector::new(partner(&json), tuning);
    let mut published = Vec::new();
    for i in 0..5 {
        let name = format!("file-{i}.csv");
        published.push(publish_bytes(&mut c, &name, name.as_bytes()).await.unwrap());
    }
    let refs: Vec<&forward::Published> = published.iter().collect();
    let control = c
        .write_control(&refs, std::time::SystemTime::now())
        .await
        .unwrap()
        .expect("a control file");
    let text = std::fs::read_to_string(local.join("ctl").join(control.rsplit('/').next().unwrap()))
        .unwrap();
    assert!(text.len() > 64 * 4, "several WRITEs: {} bytes", text.len());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, line) in lines.iter().enumerate() {
        let name = format!("file-{i}.csv");
        let sha = sha256_of_reader(name.as_bytes());
        assert_eq!(*line, format!("{name} {} {sha}", name.len()));
    }
}

#[tokio::test]
async fn a_control_file_never_replaces_one_of_the_same_name() {
    let at = std::time::SystemTime::now();
    for upload in ["hidden-temp", "direct"] {
        let (local, remote) = testkit::scratch_dir(&format!("ctl-taken-{upload}"));
        let mut json = partner_json(&remote);
        json["Upload"] = json!(upload);
        json["ControlFile"] = json!("{now:%Y%m%d%H%M%S}.ctl");
        let mut c = connector(&json);
        let a = publish_bytes(&mut c, "a.csv", b"a").await.unwrap();
        let first = c.write_control(&[&a], at).await.unwrap().unwrap();
        let b = publish_bytes(&mut c, "b.csv", b"bb").await.unwrap();
        let e = c.write_control(&[&b], at).await.unwrap_err();
        assert!(
            matches!(&e, Error::ControlFailed { cause, .. } if matches!(**cause, Error::AlreadyExists { .. })),
            "{upload}: {e:?}"
        );
        assert!(e.is_transient(), "{upload}: {e}");
        let name = first.rsplit('/').next().unwrap();
        assert_eq!(
            std::fs::read_to_string(local.join(name)).unwrap(),
            "a.csv 1\n",
            "{upload}: the first batch's control file is untouched"
        );
        let mut expected = vec!["a.csv", "b.csv", name];
        expected.sort();
        assert_eq!(
            files_under(&local),
            expected,
            "{upload}: no temporary file left"
        );
    }
}
