//! Files larger than one invocation: a delivery stopped at the deadline keeps its temporary file
//! and records its progress on the object, the next one resumes it, until the file arrives
//! whole; another version never continues it; stale temporary files are swept; an object
//! overwritten while it is being sent never lands under its final name. Real sshd behind a
//! rate-limited link, moto S3. One test at a time: each measures time.

mod util;

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use sftp_forward_core::event::ObjectRef;
use sftp_forward_core::progress::{self, PROGRESS};
use sftp_forward_core::receipt::ETAG;
use sftp_forward_core::Outcome;
use testkit::delay::DelayProxy;
use testkit::{scratch_dir, sshd, Watch};
use util::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 48 MiB through 8 MB/s needs 6.3 s: more than any invocation here has for its transfer.
const BIG: usize = 48 << 20;
const LINK_RATE: u64 = 8_000_000;
/// Each invocation's deadline; with a 2 s margin its records run for at most 3 s.
const DEADLINE: Duration = Duration::from_secs(5);
const MARGIN: &str = "2";

fn slow_link() -> DelayProxy {
    let sshd = sshd();
    DelayProxy::start_limited(
        (sshd.host, sshd.port).into(),
        Duration::from_millis(5),
        LINK_RATE,
    )
}

/// Our resumable temporary names under `dir`: `.name.sfr-<16 hex>.part`.
fn resumable_temps(dir: &Path) -> Vec<String> {
    left_in(dir)
        .into_iter()
        .filter(|n| n.contains(".sfr-") && n.ends_with(".part"))
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The metadata of `path` once its size has not changed for half a second (at most 20 s).
fn settled(path: &Path) -> std::fs::Metadata {
    let started = Instant::now();
    let mut last = std::fs::metadata(path).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = std::fs::metadata(path).unwrap();
        if now.len() == last.len() && now.modified().unwrap() == last.modified().unwrap() {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path:?} keeps changing"
        );
        last = now;
    }
}

async fn versioned_bucket(aws: &Aws, hint: &str) -> String {
    let bucket = aws.bucket(hint).await;
    aws.s3
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    bucket
}

/// Puts a new version; the event's view of it (version id and ETag).
async fn put_version(aws: &Aws, bucket: &str, key: &str, body: &[u8]) -> ObjectRef {
    let out = aws.put(bucket, key, body).await;
    ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: Some(out.version_id().expect("a versioned bucket").to_owned()),
        etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
        size: Some(body.len() as u64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_one_invocation_arrives_whole_after_several_resumed_deliveries() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let bucket = aws.bucket("resume").await;
    let key = "big/resumed.bin";
    let data = noise(BIG);
    aws.put(&bucket, key, &data).await;
    let (local, remote) = scratch_dir("resume");
    let link = slow_link();
    let secret = aws.secret(&behind(&link, &remote)).await;
    let mut forwarder = aws.forwarder(
        &secret,
        &[
            ("SFTP_FORWARD_MIN_TIME_LEFT_SECS", "1"),
            ("SFTP_FORWARD_DEADLINE_MARGIN_SECS", MARGIN),
        ],
    );
    let event = sqs_event(&[("m-resume".to_owned(), s3_body(&bucket, key))]);

    let mut done_before = 0u64;
    let mut invocations = 0;
    let last_took = loop {
        invocations += 1;
        assert!(invocations <= 12, "not delivered after 12 invocations");
        let started = Instant::now();
        let response = forwarder
            .handle(&event, Some(started + DEADLINE))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took < DEADLINE,
            "invocation {invocations} answered after {took:?}"
        );
        if failures(&response).is_empty() {
            break took;
        }
        assert_eq!(failures(&response), ["m-resume"], "{response}");
        // The progress is on the object, it grew, and it names the temporary file on the partner.
        let tags = aws.tags(&bucket, key).await;
        let recorded = progress::from_tags(&tags).expect("a progress tag after a stop");
        let done = recorded.bytes_done();
        eprintln!("invocation {invocations}: stopped after {took:?}, {done} of {BIG} bytes");
        assert_eq!(recorded.len, BIG as u64);
        assert!(
            done > done_before,
            "no progress: {done} after {done_before}"
        );
        done_before = done;
        let temps = resumable_temps(&local);
        assert_eq!(temps.len(), 1, "{:?}", left_in(&local));
        assert!(
            temps[0].ends_with(&format!(".sfr-{}.part", recorded.key)),
            "{temps:?}"
        );
        assert!(
            left_in(&local).iter().all(|n| n != key),
            "nothing under the final name yet"
        );
    };
    eprintln!("delivered after {invocations} invocations; the last took {last_took:?}");

    // No single invocation can move the whole file through this link in time (48 MiB at 8 MB/s
    // is 6.3 s > the 3 s each has): it arrived because each continued the one before.
    assert!(invocations >= 3, "{invocations} invocations");
    let whole = Duration::from_secs_f64(BIG as f64 / LINK_RATE as f64);
    assert!(
        last_took < whole,
        "the last invocation ({last_took:?}) was faster than the whole file can cross the link \
         ({whole:?}): it sent only what was missing"
    );
    assert!(
        std::fs::read(local.join(key)).unwrap() == data,
        "the bytes at the partner differ"
    );
    assert_eq!(left_in(&local), [key], "no temporary file is left");
    let tags = aws.tags(&bucket, key).await;
    assert!(tag(&tags, ETAG).is_some(), "a receipt: {tags:?}");
    assert!(
        tag(&tags, PROGRESS).is_none(),
        "the receipt replaced the progress: {tags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_never_continues_an_older_ones_temp_file_and_stale_ones_are_swept() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let bucket = versioned_bucket(&aws, "resume-versions").await;
    let key = "v.bin";
    let (local, remote) = scratch_dir("resume-versions");
    let link = slow_link();
    let secret = aws.secret(&behind(&link, &remote)).await;
    let env = [
        ("SFTP_FORWARD_MIN_TIME_LEFT_SECS", "1"),
        ("SFTP_FORWARD_DEADLINE_MARGIN_SECS", MARGIN),
    ];
    let mut forwarder = aws.forwarder(&secret, &env);

    // Version 1 is stopped at the deadline: its temporary file stays for a resume.
    let v1 = put_version(&aws, &bucket, key, &noise(BIG)).await;
    let outcome = forwarder
        .forward(&v1, Some(Instant::now() + DEADLINE))
        .await;
    assert!(
        matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("the next delivery resumes")),
        "{outcome:?}"
    );
    let old = resumable_temps(&local);
    assert_eq!(old.len(), 1, "{:?}", left_in(&local));
    let old_path = local.join(&old[0]);
    // Writes still queued in the link when the connection was dropped land after the stop (the
    // same bytes at the same offsets): wait until the file is still.
    let old_meta = settled(&old_path);

    // Version 2 (small, so it goes in one invocation) gets its own temporary file.
    let v2_data = b"version two".repeat(1000);
    let v2 = put_version(&aws, &bucket, key, &v2_data).await;
    let outcome = forwarder.forward(&v2, None).await;
    assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    assert_eq!(std::fs::read(local.join(key)).unwrap(), v2_data);
    let meta = std::fs::metadata(&old_path).expect("version 1's temporary file is untouched");
    assert_eq!(
        (meta.len(), meta.modified().unwrap()),
        (old_meta.len(), old_meta.modified().unwrap())
    );
    assert_eq!(left_in(&local), [old[0].clone(), key.to_owned()]);

    // Two days later: a new connection publishing into the directory sweeps our stale
    // temporary files, and only those.
    let young = ".young.bin.0badcafe.part";
    let foreign = [".v.bin.part", ".partner-notes", ".v.bin.1234.part"];
    std::fs::write(local.join(young), b"being written").unwrap();
    for f in foreign {
        std::fs::write(local.join(f), b"not ours").unwrap();
    }
    let two_days_ago = |name: &str| {
        let ok = std::process::Command::new("touch")
            .args(["-d", "2 days ago"])
            .arg(local.join(name))
            .status()
            .unwrap()
            .success();
        assert!(ok, "touch {name}");
    };
    two_days_ago(&old[0]);
    foreign.iter().for_each(|f| two_days_ago(f));
    aws.put(&bucket, "next.txt", b"next").await;
    let mut fresh = aws.forwarder(&secret, &env);
    let next = ObjectRef {
        bucket: bucket.clone(),
        key: "next.txt".into(),
        version_id: None,
        etag: None,
        size: None,
    };
    let outcome = fresh.forward(&next, None).await;
    assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    let mut expected: Vec<String> = [young, key, "next.txt"]
        .into_iter()
        .chain(foreign)
        .map(str::to_owned)
        .collect();
    expected.sort();
    // The sweep runs beside the publish: give it its bound (5 s) to finish.
    let started = Instant::now();
    while left_in(&local) != expected && started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        left_in(&local),
        expected,
        "only the stale temporary file of ours is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_overwritten_while_it_is_sent_never_lands_under_its_final_name() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let bucket = versioned_bucket(&aws, "resume-race").await;
    let key = "race.bin";
    let (local, remote) = scratch_dir("resume-race");
    let link = slow_link();
    let secret = aws.secret(&behind(&link, &remote)).await;
    let mut forwarder = aws.forwarder(&secret, &[]);

    // 12 MiB at 8 MB/s: about 1.6 s on the link, time for a new version to land meanwhile.
    let old_data = noise(12 << 20);
    let v1 = put_version(&aws, &bucket, key, &old_data).await;
    let new_data = b"the newer version".repeat(100);
    let watch = Watch::start(&local, key, new_data.len() as u64);
    let (outcome, v2) = {
        let overwrite = async {
            let started = Instant::now();
            while watch.temp_bytes() < 1 << 20 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the transfer never started"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            put_version(&aws, &bucket, key, &new_data).await
        };
        tokio::join!(forwarder.forward(&v1, None), overwrite)
    };
    let seen = watch.stop();
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("superseded by a newer version")
            && reason.contains(v2.version_id.as_deref().unwrap())),
        "{outcome:?}"
    );
    assert!(
        !seen.complete && seen.partial.is_empty() && !local.join(key).exists(),
        "the older version never appeared under the final name: {seen:?}"
    );
    assert_eq!(
        left_in(&local),
        Vec::<String>::new(),
        "its temporary file was removed"
    );

    // The newer version's own event delivers it.
    let outcome = forwarder.forward(&v2, None).await;
    assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    assert_eq!(std::fs::read(local.join(key)).unwrap(), new_data);
}

/// Guards the deterministic temporary name against duplicate events: SQS delivers at least once,
/// and two copies of one event in a batch must both succeed, not race for one temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_in_one_batch_delivers_the_file_once_and_fails_neither() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let bucket = aws.bucket("resume-dup").await;
    let key = "dup.bin";
    let data = noise(3 << 20);
    aws.put(&bucket, key, &data).await;
    let (local, remote) = scratch_dir("resume-dup");
    let secret = aws.secret(&partner_json(&remote)).await;
    let mut forwarder = aws.forwarder(&secret, &[]);
    let body = s3_body(&bucket, key);
    let event = sqs_event(&[("m-1".to_owned(), body.clone()), ("m-2".to_owned(), body)]);
    let response = forwarder.handle(&event, None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    assert!(
        std::fs::read(local.join(key)).unwrap() == data,
        "the bytes differ"
    );
    assert_eq!(left_in(&local), [key], "no temporary file is left");
}
