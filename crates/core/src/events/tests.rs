//! The shape of delivery events (no AWS needed): which records get one, the Transfer Family
//! fields, and the PutEvents batching.

use std::time::{Duration, UNIX_EPOCH};

use forward::ErrorClass;
use serde_json::json;

use super::*;
use crate::after::{Detail, Partner};
use crate::event::ObjectRef;

fn obj() -> ObjectRef {
    ObjectRef {
        bucket: "inbox".into(),
        key: "acme/2026/report 1.csv".into(),
        version_id: Some("v7".into()),
        etag: Some("e1".into()),
        size: Some(5),
    }
}

fn ended<'a>(
    obj: &'a ObjectRef,
    outcome: &'a Outcome,
    detail: &'a Detail,
    retry: Retry,
) -> Ended<'a> {
    Ended {
        obj: Some(obj),
        message_id: Some("m-1"),
        receive_count: Some(2),
        outcome,
        detail,
        retry,
        partner: Partner {
            name: Some("acme"),
            secret_id: Some("sftp-forward/acme"),
            url: Some("sftp://sftp.acme.example:2222"),
            remote_directory: Some("upload"),
        },
    }
}

#[test]
fn only_delivered_permanent_and_last_try_failures_get_an_event() {
    let delivered = Outcome::Delivered {
        remote_path: "upload/a.csv".into(),
        bytes: 5,
    };
    let permanent = Outcome::Failed {
        class: ErrorClass::Permanent,
        reason: "x".into(),
    };
    let transient = Outcome::Failed {
        class: ErrorClass::Transient,
        reason: "x".into(),
    };
    let skipped = Outcome::Skipped { reason: "x".into() };
    assert_eq!(detail_type(&delivered, Retry::Again), Some(COMPLETED));
    assert_eq!(detail_type(&delivered, Retry::Never), Some(COMPLETED));
    assert_eq!(detail_type(&permanent, Retry::Again), Some(FAILED));
    assert_eq!(detail_type(&permanent, Retry::Unknown), Some(FAILED));
    assert_eq!(detail_type(&permanent, Retry::Never), Some(GAVE_UP));
    assert_eq!(detail_type(&transient, Retry::Never), Some(GAVE_UP));
    assert_eq!(detail_type(&transient, Retry::Again), None, "it comes back");
    assert_eq!(
        detail_type(&transient, Retry::Unknown),
        None,
        "Lambda may retry"
    );
    assert_eq!(detail_type(&skipped, Retry::Never), None);
    assert_eq!(Retry::of(Some(5), Some(5)), Retry::Never);
    assert_eq!(Retry::of(Some(4), Some(5)), Retry::Again);
    assert_eq!(Retry::of(Some(4), None), Retry::Unknown);
    assert_eq!(Retry::of(None, Some(5)), Retry::Unknown);
}

#[test]
fn a_delivered_event_has_transfer_family_fields_and_ours() {
    let o = obj();
    let outcome = Outcome::Delivered {
        remote_path: "upload/acme/2026/report 1.csv.pgp".into(),
        bytes: 5,
    };
    let detail = Detail {
        started: Some(UNIX_EPOCH + Duration::from_millis(1_790_000_000_123)),
        ended: Some(UNIX_EPOCH + Duration::from_millis(1_790_000_001_456)),
        object_bytes: Some(5),
        sent_bytes: Some(412),
        sha256: Some("ab".repeat(32)),
        ..Detail::default()
    };
    let d = super::detail(
        &ended(&o, &outcome, &detail, Retry::Again),
        "sftp-forward-fn",
    );
    assert_eq!(
        d,
        json!({
            "operation": "SEND",
            "connector-id": "sftp-forward-fn",
            "partner": "acme",
            "secret-id": "sftp-forward/acme",
            "url": "sftp://sftp.acme.example:2222",
            "file-transfer-id": "m-1",
            "file-path": "/inbox/acme/2026/report 1.csv",
            "local-file-location": {"domain": "S3", "bucket": "inbox", "key": "acme/2026/report 1.csv"},
            "version-id": "v7",
            "etag": "e1",
            "remote-directory-path": "upload",
            "start-timestamp": "2026-09-21T14:13:20.123Z",
            "end-timestamp": "2026-09-21T14:13:21.456Z",
            "status-code": "COMPLETED",
            "remote-path": "upload/acme/2026/report 1.csv.pgp",
            "bytes": 412,
            "object-bytes": 5,
            "sha256": "ab".repeat(32),
            "receive-count": 2,
            "retried": "yes",
        })
    );
}

#[test]
fn a_failed_event_carries_code_message_and_class_and_no_digest_note() {
    let o = obj();
    let outcome = Outcome::Failed {
        class: ErrorClass::Permanent,
        reason: "é".repeat(5000),
    };
    let detail = Detail {
        failure_code: Some("HOST_KEY_NOT_TRUSTED"),
        ..Detail::default()
    };
    let d = super::detail(&ended(&o, &outcome, &detail, Retry::Never), "f");
    assert_eq!(d["status-code"], "FAILED");
    assert_eq!(d["failure-code"], "HOST_KEY_NOT_TRUSTED");
    assert_eq!(d["failure-class"], "permanent");
    assert_eq!(d["retried"], "no");
    assert_eq!(d["failure-message"].as_str().unwrap().chars().count(), 2048);
    assert!(d.get("sha256").is_none() && d.get("bytes").is_none());
    // Without a code of its own, the class.
    let bare = Detail::default();
    let transient = Outcome::Failed {
        class: ErrorClass::Transient,
        reason: "timed out".into(),
    };
    let d = super::detail(&ended(&o, &transient, &bare, Retry::Never), "f");
    assert_eq!(d["failure-code"], "TRANSIENT");
    // A delivered file without a digest says why.
    let delivered = Outcome::Delivered {
        remote_path: "p".into(),
        bytes: 1,
    };
    let striped = Detail {
        no_sha256: Some("striped"),
        ..Detail::default()
    };
    let d = super::detail(&ended(&o, &delivered, &striped, Retry::Again), "f");
    assert_eq!(d["sha256-note"], "striped");
    assert!(d.get("sha256").is_none());
}

#[test]
fn put_events_batches_hold_at_most_ten_entries_and_256_kib() {
    let entry = |bytes: usize| Entry {
        detail_type: COMPLETED,
        detail: "x".repeat(bytes),
        time: None,
    };
    let sizes: Vec<usize> = batches((0..25).map(|_| entry(10)).collect(), "default")
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [10, 10, 5]);
    let big = batches((0..5).map(|_| entry(100 * 1024)).collect(), "default");
    assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    for b in &big {
        let total: usize = b.iter().map(|e| e.size("default")).sum();
        assert!(total <= MAX_REQUEST_BYTES);
    }
    assert!(batches(Vec::new(), "default").is_empty());
}
