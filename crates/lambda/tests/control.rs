//! A partner's per-batch `ControlFile` (issue 18) through the handler, against moto and the real
//! sshd: one control file after every file of a batch has landed, listing what the partner finds
//! on its disk; a control file that cannot be written fails its files without receipts, and their
//! retry writes the control file without sending the files again.

mod util;

use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};
use sftp_forward_core::receipt::Receipt;
use sha2::{Digest, Sha256};
use util::*;

/// `n` objects `batch/NN.bin` of different sizes, and one SQS message per object.
async fn objects(bed: &Bed, n: usize) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    for i in 0..n {
        let key = format!("batch/{i:02}.bin");
        bed.aws.put(&bed.bucket, &key, &noise(1000 * i + 7)).await;
        messages.push((format!("m-{i:02}"), s3_body(&bed.bucket, &key)));
    }
    messages
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The control files in `dir`, with their text.
fn control_files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    found.sort();
    found
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_one_control_file_listing_what_landed() {
    let bed = Bed::start("ctl").await;
    let mut json = partner_json(&bed.remote);
    json["ControlFile"] = json!({
        "Name": "ctl/batch-{now:%Y%m%d%H%M%S%3f}.ctl",
        "Content": "summary",
    });
    bed.aws.set_secret(&bed.secret, &json).await;
    let mut messages = objects(&bed, 4).await;
    // A record whose object is gone is skipped, and not listed.
    messages.push(("m-gone".into(), s3_body(&bed.bucket, "batch/gone.bin")));
    let event = sqs_event(&messages);
    let mut f = bed.forwarder(&[]);

    let response = f.handle(&event, None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    let controls = control_files(&bed.local.join("ctl"));
    assert_eq!(
        controls.len(),
        1,
        "one control file per batch: {controls:?}"
    );
    let (name, text) = &controls[0];
    assert!(
        name.starts_with("batch-") && name.ends_with(".ctl"),
        "{name}"
    );
    let on_disk: Vec<String> = (0..4)
        .map(|i| {
            let rel = format!("batch/{i:02}.bin");
            let bytes = std::fs::read(bed.local.join(&rel)).unwrap();
            format!("{rel} {} {}", bytes.len(), hex(&bytes))
        })
        .collect();
    assert_eq!(
        sorted_lines(text),
        on_disk,
        "path, size and SHA-256 of each file as the partner has it"
    );
    for i in 0..4 {
        let tags = bed
            .aws
            .tags(&bed.bucket, &format!("batch/{i:02}.bin"))
            .await;
        assert!(Receipt::from_tags(&tags).is_some(), "receipt {i}: {tags:?}");
    }

    let again = f.handle(&event, None).await.unwrap();
    assert!(failures(&again).is_empty(), "{again}");
    assert_eq!(
        control_files(&bed.local.join("ctl")).len(),
        1,
        "a batch with nothing delivered (all skipped by receipts) writes no control file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_control_file_fails_its_files_and_the_retry_does_not_send_them_again() {
    let bed = Bed::start("ctlfail").await;
    let mut json = partner_json(&bed.remote);
    json["ControlFile"] = json!("ctl/{now:%Y%m%d%H%M%S%3f}.trg");
    bed.aws.set_secret(&bed.secret, &json).await;
    let messages = objects(&bed, 3).await;
    let event: Value = sqs_event(&messages);
    // The partner's account may not write into ctl/ (root's directory) for now.
    let ctl = bed.local.join("ctl");
    std::fs::create_dir(&ctl).unwrap();
    let mut f = bed.forwarder(&[]);

    let response = f.handle(&event, None).await.unwrap();
    let mut failed = failures(&response);
    failed.sort();
    assert_eq!(failed, ["m-00", "m-01", "m-02"], "{response}");
    assert!(control_files(&ctl).is_empty());
    let mut inodes = Vec::new();
    for i in 0..3 {
        let key = format!("batch/{i:02}.bin");
        let tags = bed.aws.tags(&bed.bucket, &key).await;
        assert!(
            Receipt::from_tags(&tags).is_none(),
            "no receipt before the control file: {tags:?}"
        );
        let landed = std::fs::metadata(bed.local.join(&key)).unwrap();
        assert_eq!(landed.len(), (1000 * i + 7) as u64, "the file is in place");
        inodes.push(landed.ino());
    }

    // The partner fixes the directory; SQS delivers the batch again.
    let owner = std::fs::metadata(&bed.local).unwrap();
    std::os::unix::fs::chown(&ctl, Some(owner.uid()), Some(owner.gid())).unwrap();
    let retried = f.handle(&event, None).await.unwrap();
    assert!(failures(&retried).is_empty(), "{retried}");
    let controls = control_files(&ctl);
    assert_eq!(controls.len(), 1, "{controls:?}");
    let expected: Vec<String> = (0..3)
        .map(|i| format!("batch/{i:02}.bin {}", 1000 * i + 7))
        .collect();
    assert_eq!(sorted_lines(&controls[0].1), expected);
    for (i, ino) in inodes.iter().enumerate() {
        let key = format!("batch/{i:02}.bin");
        let landed = std::fs::metadata(bed.local.join(&key)).unwrap();
        assert_eq!(landed.ino(), *ino, "{key} was not sent again (same inode)");
        let tags = bed.aws.tags(&bed.bucket, &key).await;
        assert!(
            Receipt::from_tags(&tags).is_some(),
            "receipt {key}: {tags:?}"
        );
    }
}
