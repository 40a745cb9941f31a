//! Delivery events and the SHA-256 taken as files stream out, against moto and the real sshd,
//! through the compiled `bootstrap` (so `SFTP_FORWARD_EVENTS` and the client are wired as in
//! Lambda): an EventBridge rule on moto's default bus (source `sftp-forward`) sends every event to
//! an SQS queue, which the test reads as an operator's target would receive them.

mod util;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use serde_json::{json, Value};
use sftp_forward_core::events::{COMPLETED, FAILED, GAVE_UP, SOURCE};
use sftp_forward_core::receipt;
use util::*;

const DEADLINE: Duration = Duration::from_secs(60);
/// Put in the partner JSON beside the key (never needed: the key logs in first), so the test can
/// show that no secret text reaches an event.
const PASSWORD: &str = "pw-never-in-an-event-7d1f";

/// Up to `n` events that reached the queue (bounded wait): (raw text, parsed).
async fn events_of(aws: &Aws, queue: &str, n: usize) -> Vec<(String, Value)> {
    let got = aws.receive(queue, n).await;
    got.into_iter()
        .map(|(_, body)| {
            let event = serde_json::from_str(&body).unwrap();
            (body, event)
        })
        .collect()
}

/// The one event of `detail_type` among `events`.
fn one_of<'a>(events: &'a [(String, Value)], detail_type: &str) -> &'a Value {
    let found: Vec<_> = events
        .iter()
        .filter(|(_, e)| e["detail-type"] == detail_type)
        .collect();
    assert_eq!(found.len(), 1, "one {detail_type:?} in {events:?}");
    &found[0].1
}

/// An SQS event for one object whose message SQS has handed out `receive_count` times.
fn received(bucket: &str, key: &str, id: &str, receive_count: u32) -> Value {
    let mut event = sqs_event(&[(id.to_owned(), s3_body(bucket, key))]);
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = json!(receive_count.to_string());
    event
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The partner JSON with a password beside the key.
fn partner_with_password(remote: &str) -> Value {
    let mut partner = partner_json(remote);
    partner["Password"] = json!(PASSWORD);
    partner
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_failed_and_gave_up_records_each_publish_one_event_with_their_fields() {
    let bed = Bed::start("events").await;
    let (aws, bucket) = (&bed.aws, &bed.bucket);
    let partner = partner_with_password(&bed.remote);
    aws.set_secret(&bed.secret, &partner).await;
    let queue = aws.events_queue(bucket).await;
    // docs/OPERATIONS.md's sample rule (narrowed to this bucket): a Failed on its first receive,
    // every Gave Up.
    let paged = aws
        .rule_queue(&json!({
            "source": [SOURCE],
            "detail": { "local-file-location": { "bucket": [bucket] } },
            "$or": [
                { "detail-type": [GAVE_UP] },
                { "detail-type": [FAILED], "detail": { "receive-count": [1, { "exists": false }] } },
            ],
        }))
        .await;
    let f = Bootstrap::start(
        &bed.secret,
        &[
            ("SFTP_FORWARD_EVENTS", "default"),
            ("SFTP_FORWARD_MAX_RECEIVE_COUNT", "3"),
            ("SFTP_FORWARD_OVERWRITE", "fail-if-exists"),
        ],
    );

    // Delivered: one object stored with S3's SHA-256 (compared before the rename), one without.
    let (one, two) = (b"id,amount\n1,2\n".to_vec(), vec![7u8; 300_000]);
    aws.s3
        .put_object()
        .bucket(bucket)
        .key("in/one.csv")
        .body(ByteStream::from(one.clone()))
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    aws.put(bucket, "in/two.bin", &two).await;
    let batch = sqs_event(&[
        ("m-one".into(), s3_body(bucket, "in/one.csv")),
        ("m-two".into(), s3_body(bucket, "in/two.bin")),
    ]);
    f.invoke_all_ok(&batch, DEADLINE);
    let delivered = events_of(aws, &queue, 2).await;
    assert_eq!(delivered.len(), 2, "{delivered:?}\n{}", f.log_text());
    for (key, bytes) in [("in/one.csv", &one), ("in/two.bin", &two)] {
        let (_, event) = delivered
            .iter()
            .find(|(_, e)| e["detail"]["local-file-location"]["key"] == key)
            .unwrap_or_else(|| panic!("no event for {key}: {delivered:?}"));
        assert_eq!(event["source"], SOURCE);
        assert_eq!(event["detail-type"], COMPLETED);
        let d = &event["detail"];
        let on_disk = std::fs::read(bed.local.join(key)).unwrap();
        assert_eq!(&on_disk, bytes);
        assert_eq!(d["sha256"], sha256_hex(&on_disk), "{d}");
        assert_eq!(d["status-code"], "COMPLETED");
        assert_eq!(d["operation"], "SEND");
        assert_eq!(d["connector-id"], "sftp-forward");
        assert_eq!(d["partner"], "default");
        assert_eq!(d["secret-id"], bed.secret.as_str());
        assert_eq!(d["file-path"], format!("/{bucket}/{key}"));
        assert_eq!(d["local-file-location"]["domain"], "S3");
        assert_eq!(d["remote-path"], format!("{}/{key}", bed.remote));
        assert_eq!(d["remote-directory-path"], bed.remote.as_str());
        assert_eq!(d["bytes"], bytes.len());
        assert_eq!(d["object-bytes"], bytes.len());
        assert_eq!(d["receive-count"], 1);
        assert!(d["file-transfer-id"].as_str().unwrap().starts_with("m-"));
        for t in ["start-timestamp", "end-timestamp"] {
            assert!(d[t].as_str().is_some_and(|s| s.ends_with('Z')), "{t}: {d}");
        }
        let tags = aws.tags(bucket, key).await;
        assert!(
            tags.contains(&(receipt::SHA256.to_owned(), sha256_hex(&on_disk))),
            "the receipt holds the digest: {tags:?}"
        );
    }

    // Failed for good (the file is there and the policy is fail-if-exists), on the first and the
    // second receive: FAILED; on the queue's last receive: GAVE_UP.
    aws.put(bucket, "in/one.csv", b"changed\n").await;
    for (id, n) in [("m-perm", 1), ("m-again", 2), ("m-last", 3)] {
        let answer = f.invoke(&received(bucket, "in/one.csv", id, n), DEADLINE);
        assert_eq!(failures(&serde_json::from_str(&answer.body).unwrap()), [id]);
    }
    let failed = events_of(aws, &queue, 3).await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    let mut counts: Vec<(&str, i64)> = failed
        .iter()
        .map(|(_, e)| {
            let count = e["detail"]["receive-count"].as_i64().unwrap();
            (e["detail-type"].as_str().unwrap(), count)
        })
        .collect();
    counts.sort();
    assert_eq!(counts, [(FAILED, 1), (FAILED, 2), (GAVE_UP, 3)]);
    let gave_up = one_of(&failed, GAVE_UP);
    assert_eq!(gave_up["detail"]["receive-count"], 3);
    assert_eq!(gave_up["detail"]["retried"], "no");
    for (_, e) in &failed {
        let d = &e["detail"];
        assert_eq!(d["status-code"], "FAILED");
        assert_eq!(d["failure-code"], "FILE_ALREADY_EXISTS");
        assert_eq!(d["failure-class"], "permanent");
        assert!(d["failure-message"]
            .as_str()
            .unwrap()
            .contains("already exists"));
        assert!(d.get("sha256").is_none());
    }

    // The sample rule paged twice: the first Failed and the Gave Up (no delivery, no repeat).
    let paged = events_of(aws, &paged, 3).await;
    let mut types: Vec<&str> = paged
        .iter()
        .map(|(_, e)| e["detail-type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, [FAILED, GAVE_UP], "{paged:?}");

    // No secret text in any event.
    let key_lines: Vec<&str> = partner["PrivateKey"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        .collect();
    assert!(!key_lines.is_empty());
    for (text, _) in delivered.iter().chain(&failed) {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(key_lines.iter().all(|l| !text.contains(l)), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_on_the_last_receive_gives_up_and_before_it_publishes_nothing() {
    let bed = Bed::start("gaveup").await;
    let (aws, bucket) = (&bed.aws, &bed.bucket);
    // A partner port with nothing listening: connection refused, a transient failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut partner = partner_json(&bed.remote);
    partner["Port"] = json!(port);
    aws.set_secret(&bed.secret, &partner).await;
    let queue = aws.events_queue(bucket).await;
    let f = Bootstrap::start(&bed.secret, &[("SFTP_FORWARD_MAX_RECEIVE_COUNT", "2")]);
    aws.put(bucket, "in/a.csv", b"a\n").await;
    for (id, n) in [("m-first", 1), ("m-second", 2)] {
        let answer = f.invoke(&received(bucket, "in/a.csv", id, n), DEADLINE);
        assert_eq!(failures(&serde_json::from_str(&answer.body).unwrap()), [id]);
    }
    let events = events_of(aws, &queue, 2).await;
    assert_eq!(events.len(), 1, "only the last receive: {events:?}");
    let d = &events[0].1["detail"];
    assert_eq!(events[0].1["detail-type"], GAVE_UP);
    assert_eq!(d["failure-code"], "CONNECTION_FAILED");
    assert_eq!(d["failure-class"], "transient");
    assert_eq!(d["file-transfer-id"], "m-second");
    assert_eq!(
        d["url"],
        format!("sftp://{}:{port}", partner["Host"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sha256_that_differs_from_s3s_fails_the_record_and_nothing_lands() {
    let bed = Bed::start("mismatch").await;
    let (aws, bucket) = (&bed.aws, &bed.bucket);
    let queue = aws.events_queue(bucket).await;
    let body = b"the bytes S3 holds\n".to_vec();
    // moto stores the checksum a client sends without checking it (S3 would refuse the PUT): an
    // object whose stored SHA-256 is not its bytes' stands for bytes changed on the way.
    let wrong = "qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=";
    aws.s3
        .put_object()
        .bucket(bucket)
        .key("in/a.csv")
        .body(ByteStream::from(body.clone()))
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(wrong)
        .send()
        .await
        .unwrap();
    let head = aws
        .s3
        .head_object()
        .bucket(bucket)
        .key("in/a.csv")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(wrong), "the set-up");
    let f = Bootstrap::start(&bed.secret, &[]);
    let answer = f.invoke(&received(bucket, "in/a.csv", "m-1", 1), DEADLINE);
    assert_eq!(
        failures(&serde_json::from_str(&answer.body).unwrap()),
        ["m-1"]
    );
    assert_eq!(
        left_in(&bed.local),
        Vec::<String>::new(),
        "nothing lands, no temporary file"
    );
    let events = events_of(aws, &queue, 1).await;
    assert_eq!(events.len(), 1, "{events:?}\n{}", f.log_text());
    assert_eq!(events[0].1["detail-type"], FAILED);
    let d = &events[0].1["detail"];
    assert_eq!(d["failure-code"], "CHECKSUM_MISMATCH");
    assert!(
        d["failure-message"]
            .as_str()
            .unwrap()
            .contains(&sha256_hex(&body)),
        "{d}"
    );
    let tags = aws.tags(bucket, "in/a.csv").await;
    assert!(receipt::Receipt::from_tags(&tags).is_none(), "{tags:?}");
}

/// The trade-off of docs/OPERATIONS.md: a file written in parallel stripes cannot be hashed as it
/// goes, so its event and receipt carry no digest (and say why) rather than a made-up one.
#[tokio::test(flavor = "multi_thread")]
async fn a_striped_file_has_no_digest_and_its_event_says_why() {
    let bed = Bed::start("striped").await;
    let (aws, bucket) = (&bed.aws, &bed.bucket);
    let queue = aws.events_queue(bucket).await;
    // Two stripes' worth (one per 8 MiB): written over two SFTP channels at once.
    let body: Vec<u8> = (0..17u32 << 20).map(|i| (i % 251) as u8).collect();
    aws.put(bucket, "in/big.bin", &body).await;
    let f = Bootstrap::start(&bed.secret, &[]);
    f.invoke_all_ok(&received(bucket, "in/big.bin", "m-1", 1), DEADLINE);
    assert!(std::fs::read(bed.local.join("in/big.bin")).unwrap() == body);
    let events = events_of(aws, &queue, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let d = &events[0].1["detail"];
    assert_eq!(events[0].1["detail-type"], COMPLETED);
    assert!(d.get("sha256").is_none(), "{d}");
    assert!(
        d["sha256-note"].as_str().unwrap().contains("stripes"),
        "{d}"
    );
    assert_eq!(d["bytes"], body.len());
    let tags = aws.tags(bucket, "in/big.bin").await;
    assert!(receipt::Receipt::from_tags(&tags).is_some(), "{tags:?}");
    assert!(!tags.iter().any(|(k, _)| k == receipt::SHA256), "{tags:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn putevents_failing_never_fails_a_delivery() {
    let bed = Bed::start("noevents").await;
    let (aws, bucket) = (&bed.aws, &bed.bucket);
    // A bus that does not exist (PutEvents answers ResourceNotFound); an EventBridge endpoint
    // with nothing listening (refused); one that takes the connection and never answers (a
    // black hole: the flush's own bound ends it).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = format!("http://{}", silent.local_addr().unwrap());
    let cases = [
        (
            "in/a.csv",
            "SFTP_FORWARD_EVENTS",
            "no-such-bus".to_owned(),
            "PutEvents failed",
        ),
        (
            "in/b.csv",
            "AWS_ENDPOINT_URL_EVENTBRIDGE",
            refused,
            "PutEvents failed",
        ),
        (
            "in/c.csv",
            "AWS_ENDPOINT_URL_EVENTBRIDGE",
            hole,
            "did not finish",
        ),
    ];
    for (key, var, value, warning) in &cases {
        let body = format!("{key}\n");
        aws.put(bucket, key, body.as_bytes()).await;
        let f = Bootstrap::start(&bed.secret, &[(var, value.as_str())]);
        let started = std::time::Instant::now();
        f.invoke_all_ok(&received(bucket, key, "m-1", 1), DEADLINE);
        let took = started.elapsed();
        assert_eq!(std::fs::read(bed.local.join(key)).unwrap(), body.as_bytes());
        let log = f.log_text();
        assert!(log.contains(warning), "a warning says {warning:?}: {log}");
        let bound = sftp_forward_core::events::MAX_FLUSH + Duration::from_secs(5);
        assert!(took < bound, "{took:?}");
        eprintln!("{key}: delivered in {took:?} with PutEvents failing ({var}={value})");
    }
    drop(silent);
}
