//! Done markers (`DoneMarker` in the partner JSON) against the real sshd: written after the file,
//! empty or holding the file's name, size and SHA-256, and a failed marker retried alone.

mod util;

use std::os::unix::fs::MetadataExt;

use forward::{Error, FileRanges, Overwrite, PublishOutcome};
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
    // Written after the file's rename: never older than the file.
    let (file, marker) = (
        std::fs::metadata(local.join("a.csv")).unwrap(),
        std::fs::metadata(local.join("a.csv.done")).unwrap(),
    );
    assert!(
        marker.ctime_nsec() as i128 + marker.ctime() as i128 * 1_000_000_000
            >= file.ctime_nsec() as i128 + file.ctime() as i128 * 1_000_000_000
    );
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

#[tokio::test]
async fn a_failed_marker_fails_the_file_and_the_retry_writes_only_the_marker() {
    let (local, remote) = testkit::scratch_dir("mk-retry");
    let json = with_marker(&remote, json!({"Content": "summary"}));
    // Something the marker cannot replace: a non-empty directory under its name.
    let blocker = local.join("r.csv.done");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"x").unwrap();

    let mut c = connector(&json);
    let err = publish_bytes(&mut c, "r.csv", b"the file\n")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MarkerFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("done marker"), "{err}");
    let first = std::fs::metadata(local.join("r.csv")).unwrap();
    assert_eq!(std::fs::read(local.join("r.csv")).unwrap(), b"the file\n");

    // The operator clears the way; the retry finds the file in place and writes the marker only.
    std::fs::remove_dir_all(&blocker).unwrap();
    let done = publish_bytes(&mut c, "r.csv", b"the file\n").await.unwrap();
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
}

#[test]
fn marker_settings_are_checked_with_the_field_named() {
    let e =
        forward::Partner::from_json(&with_marker("upload", json!({"Content": "md5"})).to_string())
            .unwrap_err()
            .to_string();
    assert!(e.contains("DoneMarker.Content"), "{e}");
}
