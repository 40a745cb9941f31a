//! A batch's records go out together: over the one SSH connection's SFTP channels at once (up to
//! the partner's `Parallelism`), one record's failure never touching the others, and a refused
//! login re-reading the secret once for the batch, not once per record. Against moto and a real
//! sshd (a dedicated one where its log is asserted), behind a delay proxy where time proves overlap.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sftp_forward_core::secret::{SecretError, SecretSource, SecretsManager};
use sftp_forward_core::source::S3Store;
use sftp_forward_core::{Forwarder, Settings};
use testkit::delay::DelayProxy;
use testkit::{scratch_dir, sshd};
use util::*;

/// 4 KiB that differ per file.
fn content(i: usize) -> Vec<u8> {
    let mut bytes = noise(4096);
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    bytes
}

/// `n` objects `batch/NN.bin` in a new bucket, and their SQS event (one message each).
async fn objects(aws: &Aws, hint: &str, n: usize) -> (String, Value) {
    let bucket = aws.bucket(hint).await;
    let mut messages = Vec::new();
    for i in 0..n {
        let key = format!("batch/{i:02}.bin");
        aws.put(&bucket, &key, &content(i)).await;
        messages.push((format!("m-{i:02}"), s3_body(&bucket, &key)));
    }
    (bucket, sqs_event(&messages))
}

#[tokio::test]
async fn a_batch_of_small_records_goes_out_at_once_over_the_connections_channels() {
    const FILES: usize = 20;
    const PARALLELISM: usize = 8;
    let one_way = Duration::from_millis(20);
    let partner = testkit::sshd_limited(16, "10:30:60").unwrap_or_else(|e| panic!("{e}"));
    let wan = DelayProxy::start((partner.host, partner.port).into(), one_way);
    let aws = aws().await;
    let (local, remote) = partner.scratch_dir("batch");
    let mut json = partner.partner_json(&remote);
    json["Port"] = json!(wan.addr().port());
    json["Parallelism"] = json!(PARALLELISM);
    let secret = aws.secret(&json).await;
    let mut f = aws.forwarder(&secret, &[]);
    // A first record opens the connection, so that the batch below is only publishing.
    let (_, warm) = objects(&aws, "warm", 1).await;
    assert!(failures(&f.handle(&warm, None).await.unwrap()).is_empty());

    let (_, event) = objects(&aws, "batch", FILES).await;
    let started = Instant::now();
    let response = f.handle(&event, None).await.unwrap();
    let took = started.elapsed();
    assert!(failures(&response).is_empty(), "{response}");
    for i in 0..FILES {
        let got = std::fs::read(local.join(format!("batch/{i:02}.bin"))).unwrap();
        assert!(got == content(i), "batch/{i:02}.bin differs");
    }
    // One after another, each file costs at least open, write + close, rename: 3 round trips.
    let one_at_a_time = 3 * FILES as u32 * 2 * one_way;
    eprintln!(
        "batch: {FILES} files in {took:?}; one at a time would take at least {one_at_a_time:?}"
    );
    assert!(
        took < one_at_a_time / 2,
        "{FILES} files took {took:?}: no better than one at a time ({one_at_a_time:?})"
    );
    let log = partner.log();
    let logins = partner.logins(&log);
    assert_eq!(
        logins.len(),
        1,
        "one connection for both invocations: {logins:?}"
    );
    let channels = partner.sessions_from_port(&log, logins[0].1);
    assert_eq!(
        channels, PARALLELISM,
        "the batch used Parallelism SFTP channels of the one connection"
    );
}

#[tokio::test]
async fn one_bad_record_in_a_batch_does_not_affect_the_others() {
    let bed = Bed::start("badone").await;
    let (aws, local) = (&bed.aws, &bed.local);
    let mut f = bed.forwarder(&[]);
    let (bucket, event) = objects(aws, "badone", 6).await;
    let mut records = event["Records"].as_array().unwrap().clone();
    let extra = [
        ("m-missing", s3_body(&bucket, "batch/never-written.bin")),
        ("m-route", s3_body(&bucket, "../escape.bin")),
        ("m-clash", s3_body(&bucket, "clash.bin")),
    ];
    aws.put(&bucket, "clash.bin", b"cannot replace a directory")
        .await;
    // On the partner, a directory where the file would go: this record fails when it is published.
    // (Made by root, beside `batch/`, which the SFTP user must create itself.)
    std::fs::create_dir_all(local.join("clash.bin/inside")).unwrap();
    for (id, body) in &extra {
        let one = sqs_event(&[(id.to_string(), body.clone())]);
        records.insert(3, one["Records"][0].clone());
    }
    let response = f
        .handle(&json!({ "Records": records }), None)
        .await
        .unwrap();
    let mut failed = failures(&response);
    failed.sort();
    assert_eq!(failed, ["m-clash", "m-route"], "{response}");
    for i in 0..6 {
        let got = std::fs::read(local.join(format!("batch/{i:02}.bin"))).unwrap();
        assert!(got == content(i), "batch/{i:02}.bin differs");
    }
    assert!(!local.join("batch/never-written.bin").exists());
    assert!(local.join("clash.bin/inside").is_dir());
    let parts: Vec<_> = ["", "batch"]
        .iter()
        .flat_map(|d| std::fs::read_dir(local.join(d)).unwrap())
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "temporary files left: {parts:?}");
}

/// Secrets Manager, counting the reads.
struct Counted {
    inner: SecretsManager,
    reads: Arc<AtomicUsize>,
}

impl SecretSource for Counted {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch(id).await
    }
}

#[tokio::test]
async fn a_refused_login_reads_the_secret_again_once_for_the_whole_batch() {
    let s = sshd();
    let aws = aws().await;
    let (local, remote) = scratch_dir("rotated-batch");
    let mut partner = partner_json(&remote);
    partner.as_object_mut().unwrap().remove("PrivateKey");
    partner["Password"] = json!("old-password-before-rotation");
    let secret = aws.secret(&partner).await;
    let settings = Settings::from_env(|k| match k {
        "SFTP_FORWARD_SECRET_ID" => Some(secret.clone()),
        "SFTP_FORWARD_SECRET_TTL_SECS" => Some("3600".into()),
        _ => None,
    })
    .unwrap();
    let read_count = Arc::new(AtomicUsize::new(0));
    let counted = Counted {
        inner: SecretsManager::new(aws.secrets.clone()),
        reads: read_count.clone(),
    };
    let mut f = Forwarder::new(S3Store::new(aws.s3.clone()), counted, settings);
    let (_, event) = objects(&aws, "rotated-batch", 5).await;
    let reads = || read_count.load(Ordering::Relaxed);

    // The secret is read, the login refused, the secret read once more: unchanged, so every
    // record fails (permanently: the message names the fix) after one retry, not five.
    let response = f.handle(&event, None).await.unwrap();
    assert_eq!(failures(&response).len(), 5, "{response}");
    assert_eq!(reads(), 2, "one read, one re-read after the refusal");

    // The operator rotates the password; the cached copy is stale (TTL 1 h): one refusal, one
    // re-read, and the whole batch goes with the new password.
    partner["Password"] = json!(s.password);
    aws.set_secret(&secret, &partner).await;
    let response = f.handle(&event, None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(reads(), 3, "one re-read for the batch of five");
    for i in 0..5 {
        let got = std::fs::read(local.join(format!("batch/{i:02}.bin"))).unwrap();
        assert!(got == content(i), "batch/{i:02}.bin differs");
    }
}
