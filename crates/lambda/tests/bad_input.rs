//! Hostile and broken input through the handler and the compiled `bootstrap`: every bad record
//! fails with an error that names its problem, the records around it still go through, and
//! nothing is dropped without a trace. (The decoder's and the partner config's own unit tests are
//! in crates/event/src/lib.rs and crates/forward/tests/sftp.rs; these add the whole path.)

mod util;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::{scratch_dir, sshd};
use util::*;

/// One S3 notification record for `key` (already form-encoded) in `bucket`.
fn record(bucket: &str, encoded_key: &str) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": {"key": encoded_key, "size": 1}}
    })
}

#[tokio::test]
async fn bad_records_of_a_direct_event_each_fail_with_their_problem_and_the_rest_are_delivered() {
    let aws = aws().await;
    let bucket = aws.bucket("badrecords").await;
    let (local, remote) = scratch_dir("badrecords");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut f = aws.forwarder(&secret, &[]);
    // S3's longest key, 1024 bytes, in segments a file system accepts: delivered.
    let long_ok = format!(
        "{}/{}/{}/{}/e",
        "a".repeat(255),
        "b".repeat(255),
        "c".repeat(255),
        "d".repeat(254)
    );
    assert_eq!(long_ok.len(), 1024);
    aws.put(&bucket, &long_ok, b"long").await;
    aws.put(&bucket, "good.csv", b"good").await;
    let one_segment = "k".repeat(1024);
    aws.put(&bucket, &one_segment, b"too long a name").await;

    let mut removed = record(&bucket, "gone.csv");
    removed["eventName"] = json!("ObjectRemoved:Delete");
    let event = json!({"Records": [
        record(&bucket, "good.csv"),
        record("", "no-bucket.csv"),
        record(&bucket, &one_segment),
        record(&bucket, "bad%FF%FEkey"),
        record(&bucket, "%2E%2E/%2E%2E/etc/passwd"),
        record(&bucket, "nul%00byte.csv"),
        removed,
        record(&bucket, &long_ok),
        {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}}},
    ]});
    let err = f.handle(&event, None).await.unwrap_err().to_string();
    for expected in [
        "6 of 9 records failed",
        "s3.bucket.name is missing or empty",
        "1024 bytes",
        "\"bad%FF%FEkey\" is not valid URL-encoded UTF-8",
        "contains a '..' segment",
        "contains control character '\\0'",
        "malformed S3 event record",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in: {err}");
    }
    assert_eq!(std::fs::read(local.join("good.csv")).unwrap(), b"good");
    assert_eq!(std::fs::read(local.join(&long_ok)).unwrap(), b"long");
    assert!(!sshd().chroot.join("etc").exists());
    assert_eq!(
        testkit::watch::files(&local).len(),
        2,
        "nothing else written"
    );
}

#[tokio::test]
async fn bad_sqs_messages_are_reported_by_id_and_the_batch_continues() {
    let aws = aws().await;
    let bucket = aws.bucket("badmessages").await;
    let (local, remote) = scratch_dir("badmessages");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut f = aws.forwarder(&secret, &[]);
    aws.put(&bucket, "first.csv", b"first").await;
    aws.put(&bucket, "last.csv", b"last").await;
    let ddb = json!({"Records": [{"eventSource": "aws:dynamodb", "eventName": "INSERT"}]});
    let other_eb = json!({"detail-type": "Object Deleted", "source": "aws.s3", "detail": {}});
    let batch = vec![
        ("m-first".to_owned(), s3_body(&bucket, "first.csv")),
        ("m-not-json".to_owned(), "{\"Records\": [".to_owned()),
        ("m-empty".to_owned(), String::new()),
        ("m-dynamodb".to_owned(), ddb.to_string()),
        ("m-eb-delete".to_owned(), other_eb.to_string()),
        (
            "m-no-records".to_owned(),
            json!({"Records": []}).to_string(),
        ),
        (
            "m-empty-bucket".to_owned(),
            json!({"Records": [record("", "x.csv")]}).to_string(),
        ),
        ("m-last".to_owned(), s3_body(&bucket, "last.csv")),
    ];
    let response = f.handle(&sqs_event(&batch), None).await.unwrap();
    assert_eq!(
        failures(&response),
        [
            "m-not-json",
            "m-empty",
            "m-dynamodb",
            "m-eb-delete",
            "m-no-records",
            "m-empty-bucket"
        ]
    );
    assert_eq!(std::fs::read(local.join("first.csv")).unwrap(), b"first");
    assert_eq!(std::fs::read(local.join("last.csv")).unwrap(), b"last");
}

#[tokio::test]
async fn a_broken_partner_secret_fails_every_record_naming_the_field_never_its_value() {
    let s = sshd();
    let aws = aws().await;
    let bucket = aws.bucket("badsecret").await;
    aws.put(&bucket, "a.csv", b"a").await;
    aws.put(&bucket, "b.csv", b"b").await;
    let event = json!({"Records": [record(&bucket, "a.csv"), record(&bucket, "b.csv")]});
    let garbage_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nZ2FyYmFnZS1rZXktczNjcjN0\n-----END OPENSSH PRIVATE KEY-----\n";
    type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "Username",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("Username");
            }),
        ),
        (
            "PrivateKey",
            Box::new(|v| v["PrivateKey"] = json!(garbage_key)),
        ),
        (
            "PrivateKeyPassphrase",
            Box::new(|v| v["PrivateKey"] = json!(s.keys.ed25519_encrypted)),
        ),
        (
            "TrustedHostKeys",
            Box::new(|v| v["TrustedHostKeys"] = json!([])),
        ),
        (
            "TrustedHostKeys",
            Box::new(|v| v["TrustedHostKeys"] = json!(["ssh-ed25519 Z2FyYmFnZS1rZXktczNjcjN0"])),
        ),
        (
            "TrustedHostKeys",
            Box::new(|v| v["TrustedHostKeys"] = json!(42)),
        ),
        ("not valid JSON", Box::new(|v| *v = json!("{\"Host\": "))),
    ];
    for (field, edit) in cases {
        let (local, remote) = scratch_dir("badsecret");
        let mut partner = partner_json(&remote);
        edit(&mut partner);
        // The last case stores text that is not JSON at all.
        let secret = match partner.as_str() {
            Some(text) => {
                let name = unique("partner");
                aws.secrets
                    .create_secret()
                    .name(&name)
                    .secret_string(text)
                    .send()
                    .await
                    .unwrap();
                name
            }
            None => aws.secret(&partner).await,
        };
        let mut f = aws.forwarder(&secret, &[]);
        let err = f.handle(&event, None).await.unwrap_err().to_string();
        assert!(
            err.contains("2 of 2 records failed") && err.contains("permanent"),
            "{field}: {err}"
        );
        assert_eq!(err.matches(field).count(), 2, "{field} named twice: {err}");
        assert!(err.contains(&secret), "the secret's name: {err}");
        for value in ["Z2FyYmFnZS1rZXktczNjcjN0", s.keys.passphrase.as_str()] {
            assert!(!err.contains(value), "a secret value in: {err}");
        }
        assert!(testkit::watch::files(&local).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_a_payload_that_is_not_json_with_an_error_and_keeps_serving() {
    let aws = aws().await;
    let bucket = aws.bucket("notjson").await;
    let (local, remote) = scratch_dir("notjson");
    let secret = aws.secret(&partner_json(&remote)).await;
    aws.put(&bucket, "after.csv", b"after").await;
    let function = Bootstrap::start(&secret, &[]);
    let deadline = Duration::from_secs(60);
    let answer = tokio::task::block_in_place(|| {
        function.0.api.invoke("{\"Records\": [", deadline, deadline)
    })
    .unwrap();
    assert!(!answer.ok, "{answer:?}");
    assert!(
        answer.body.to_lowercase().contains("json") || answer.body.contains("EOF"),
        "the error says what is wrong with the payload: {answer:?}"
    );
    for payload in [json!([1, 2]), json!("text"), json!({"Records": "nope"})] {
        let answer = function.invoke(&payload, deadline);
        assert!(
            !answer.ok && answer.body.contains("unrecognised event"),
            "{payload}: {answer:?}"
        );
    }
    // The same process still serves the next event.
    let answer = function.invoke(
        &sqs_event(&[("m1".to_owned(), s3_body(&bucket, "after.csv"))]),
        deadline,
    );
    assert!(answer.ok, "{answer:?}\n{}", function.log_text());
    assert_eq!(std::fs::read(local.join("after.csv")).unwrap(), b"after");
}
