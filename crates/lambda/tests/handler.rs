//! The handler on real parts: S3, SQS and Secrets Manager on the moto server, the partner a real
//! sshd. Asserts the bytes on the partner's disk, the receipt tags on the object, and the batch
//! response Lambda acts on.

mod util;

use std::os::unix::fs::MetadataExt;

use serde_json::json;
use testkit::{scratch_dir, sshd};
use util::*;

#[tokio::test]
async fn a_real_s3_to_sqs_notification_is_delivered_once_however_often_it_arrives() {
    let aws = aws().await;
    let bucket = aws.bucket("notified").await;
    let queue = aws.notifying_queue(&bucket).await;
    let (local, remote) = scratch_dir("sqs");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut f = aws.forwarder(&secret, &[("SFTP_FORWARD_STRIP_PREFIX", "incoming/")]);

    // The first message moto sends is the s3:TestEvent: acknowledged, nothing forwarded.
    let test_event = aws.receive(&queue, 1).await;
    let response = f.handle(&sqs_event(&test_event), None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");

    let key = "incoming/daily/a b+c données.csv";
    aws.put(&bucket, key, b"id,amount\n1,9.99\n").await;
    let messages = aws.receive(&queue, 1).await;
    assert_eq!(
        messages.len(),
        1,
        "one notification for one put: {messages:?}"
    );
    let event = sqs_event(&messages);

    let response = f.handle(&event, None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    let delivered = local.join("daily/a b+c données.csv");
    assert_eq!(std::fs::read(&delivered).unwrap(), b"id,amount\n1,9.99\n");
    let tags = aws.tags(&bucket, key).await;
    let tag = |k: &str| tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert!(
        tag("sftp-forward-delivered").is_some_and(|t| t.ends_with('Z')),
        "{tags:?}"
    );
    assert_eq!(
        tag("sftp-forward-path").unwrap(),
        format!("{remote}/daily/a b+c données.csv")
    );
    let inode = std::fs::metadata(&delivered).unwrap().ino();

    // At-least-once: the same message twice more gives no second upload (the file is untouched).
    for _ in 0..2 {
        let response = f.handle(&event, None).await.unwrap();
        assert!(failures(&response).is_empty(), "{response}");
    }
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().ino(),
        inode,
        "the file was not re-uploaded"
    );
    assert_eq!(std::fs::read_dir(local.join("daily")).unwrap().count(), 1);
}

#[tokio::test]
async fn a_mixed_batch_fails_only_the_bad_message() {
    let aws = aws().await;
    let bucket = aws.bucket("mixed").await;
    let (local, remote) = scratch_dir("mixed");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut f = aws.forwarder(&secret, &[]);
    aws.put(&bucket, "good.txt", b"good").await;
    let batch = vec![
        ("m-good".to_owned(), s3_body(&bucket, "good.txt")),
        (
            "m-missing".to_owned(),
            s3_body(&bucket, "deleted-before-we-came.txt"),
        ),
        (
            "m-traversal".to_owned(),
            s3_body(&bucket, "../../etc/evil.txt"),
        ),
        ("m-garbage".to_owned(), "{\"not\": \"an event\"}".to_owned()),
    ];
    let response = f.handle(&sqs_event(&batch), None).await.unwrap();
    assert_eq!(failures(&response), ["m-traversal", "m-garbage"]);
    assert_eq!(std::fs::read(local.join("good.txt")).unwrap(), b"good");
    assert_eq!(
        std::fs::read_dir(&local).unwrap().count(),
        1,
        "nothing else written"
    );
    assert!(!sshd().chroot.join("etc").exists());
}

#[tokio::test]
async fn direct_s3_and_eventbridge_invocations() {
    let aws = aws().await;
    let bucket = aws.bucket("direct").await;
    let (local, remote) = scratch_dir("direct");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut f = aws.forwarder(
        &secret,
        &[("SFTP_FORWARD_REMOTE_PATH_TEMPLATE", "in/{basename}")],
    );
    aws.put(&bucket, "x/y/direct.csv", b"direct").await;
    aws.put(&bucket, "x/eb 1+1.csv", b"eventbridge").await;

    let direct: serde_json::Value =
        serde_json::from_str(&s3_body(&bucket, "x/y/direct.csv")).unwrap();
    let out = f.handle(&direct, None).await.unwrap();
    assert_eq!(out["delivered"], 1, "{out}");
    let eb = json!({
        "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-25T00:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": "x/eb 1+1.csv", "size": 11}, "reason": "PutObject"}
    });
    let out = f.handle(&eb, None).await.unwrap();
    assert_eq!(out["delivered"], 1, "{out}");
    assert_eq!(
        std::fs::read(local.join("in/direct.csv")).unwrap(),
        b"direct"
    );
    assert_eq!(
        std::fs::read(local.join("in/eb 1+1.csv")).unwrap(),
        b"eventbridge"
    );

    // A direct invocation with a failing record fails as a whole (Lambda retries it), naming the record.
    aws.put(&bucket, "bad\\name.csv", b"x").await;
    let bad: serde_json::Value = serde_json::from_str(&s3_body(&bucket, "bad\\name.csv")).unwrap();
    let err = f.handle(&bad, None).await.unwrap_err().to_string();
    assert!(
        err.contains("1 of 1 records failed")
            && err.contains("permanent")
            && err.contains("backslash"),
        "{err}"
    );
    // And an unknown payload is a clear error.
    let err = f
        .handle(&json!({"hello": 1}), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unrecognised event"), "{err}");
}

#[tokio::test]
async fn a_rotated_password_is_picked_up_after_one_refused_login() {
    let s = sshd();
    let aws = aws().await;
    let bucket = aws.bucket("rotation").await;
    let (local, remote) = scratch_dir("rotation");
    let mut partner = partner_json(&remote);
    partner.as_object_mut().unwrap().remove("PrivateKey");
    partner["Password"] = json!("old-password-before-rotation");
    let secret = aws.secret(&partner).await;
    let mut f = aws.forwarder(&secret, &[("SFTP_FORWARD_SECRET_TTL_SECS", "3600")]);
    aws.put(&bucket, "r.txt", b"rotated").await;
    let event = sqs_event(&[("m1".to_owned(), s3_body(&bucket, "r.txt"))]);

    // Old password, secret unchanged: permanent failure that says what to fix, no secret in it.
    let response = f.handle(&event, None).await.unwrap();
    assert_eq!(failures(&response), ["m1"]);

    // The operator rotates the secret; the cached copy (TTL 1 h) is stale, the refused login re-reads it.
    partner["Password"] = json!(s.password);
    aws.set_secret(&secret, &partner).await;
    let response = f.handle(&event, None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(std::fs::read(local.join("r.txt")).unwrap(), b"rotated");
}

#[tokio::test]
async fn secret_problems_fail_the_record_with_a_reason_and_no_secret() {
    let aws = aws().await;
    let bucket = aws.bucket("badsecret").await;
    aws.put(&bucket, "f.txt", b"f").await;
    let event = sqs_event(&[("m1".to_owned(), s3_body(&bucket, "f.txt"))]);

    let mut partner = partner_json("upload");
    partner["PrivateKey"] = json!("garbage-key-material-s3cr3t");
    let secret = aws.secret(&partner).await;
    let mut f = aws.forwarder(&secret, &[]);
    assert_eq!(failures(&f.handle(&event, None).await.unwrap()), ["m1"]);

    let mut f = aws.forwarder("no-such-secret", &[]);
    assert_eq!(failures(&f.handle(&event, None).await.unwrap()), ["m1"]);
}

#[tokio::test]
async fn no_record_is_started_without_enough_time_left() {
    let aws = aws().await;
    let bucket = aws.bucket("deadline").await;
    let (local, remote) = scratch_dir("deadline");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut f = aws.forwarder(&secret, &[("SFTP_FORWARD_MIN_TIME_LEFT_SECS", "30")]);
    aws.put(&bucket, "late.txt", b"late").await;
    let event = sqs_event(&[("m1".to_owned(), s3_body(&bucket, "late.txt"))]);
    let soon = std::time::Instant::now() + std::time::Duration::from_secs(5);
    assert_eq!(
        failures(&f.handle(&event, Some(soon)).await.unwrap()),
        ["m1"]
    );
    assert_eq!(std::fs::read_dir(&local).unwrap().count(), 0);
}
