//! Load against a partner that protects itself: 20 function instances at once, 500 small objects,
//! and an sshd that drops connections beyond 3 unauthenticated ones (`MaxStartups 3:100:3`) and
//! allows 2 channels per connection (`MaxSessions 2`). What is refused is reported failed and
//! redelivered (as SQS does) until it arrives: every file delivered once, none lost.

mod util;

use std::time::{Duration, Instant};

use util::*;

const INSTANCES: usize = 20;
const PER_INSTANCE: usize = 25;

fn key(i: usize) -> String {
    format!("load/{i:03}.csv")
}

fn content(i: usize) -> Vec<u8> {
    format!("file {i}\n").repeat(100).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_instances_and_500_files_against_a_limited_sshd_lose_nothing() {
    let partner = testkit::sshd_limited(2, "3:100:3").unwrap_or_else(|e| panic!("{e}"));
    let aws = aws().await;
    let bucket = aws.bucket("limited").await;
    let (local, remote) = partner.scratch_dir("load");
    let secret = aws.secret(&partner.partner_json(&remote)).await;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..INSTANCES * PER_INSTANCE {
        let (s3, bucket) = (aws.s3.clone(), bucket.clone());
        puts.spawn(async move {
            s3.put_object()
                .bucket(bucket)
                .key(key(i))
                .body(content(i).into())
                .send()
                .await
                .unwrap();
        });
    }
    while let Some(done) = puts.join_next().await {
        done.unwrap();
    }

    let started = Instant::now();
    let mut instances = tokio::task::JoinSet::new();
    for n in 0..INSTANCES {
        let mut f = aws.forwarder(&secret, &[]);
        let batch: Vec<(String, String)> = (0..PER_INSTANCE)
            .map(|j| n * PER_INSTANCE + j)
            .map(|i| (format!("m-{i:03}"), s3_body(&bucket, &key(i))))
            .collect();
        instances.spawn(async move {
            // SQS's part: redeliver exactly what the function reported failed (bounded).
            let mut pending = batch;
            let mut redelivered = 0;
            for _round in 0..30 {
                let response = f.handle(&sqs_event(&pending), None).await.unwrap();
                let failed = failures(&response);
                pending.retain(|(id, _)| failed.contains(id));
                if pending.is_empty() {
                    break;
                }
                redelivered += pending.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (pending, redelivered)
        });
    }
    let mut left = Vec::new();
    let mut redelivered = 0;
    while let Some(done) = instances.join_next().await {
        let (pending, r) = done.unwrap();
        left.extend(pending);
        redelivered += r;
    }
    let elapsed = started.elapsed();
    assert!(
        left.is_empty(),
        "still failing after 30 deliveries: {left:?}"
    );

    for i in 0..INSTANCES * PER_INSTANCE {
        let got = std::fs::read(local.join(key(i)))
            .unwrap_or_else(|e| panic!("{} was never delivered: {e}", key(i)));
        assert!(got == content(i), "{} differs", key(i));
    }
    let leftovers: Vec<String> = std::fs::read_dir(local.join("load"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let drops = partner
        .log()
        .lines()
        .filter(|l| l.contains("past MaxStartups"))
        .count();
    eprintln!(
        "load: {} files by {INSTANCES} instances in {:.1} s = {:.0} files/s; sshd dropped {drops} \
         connections past MaxStartups; {redelivered} redeliveries",
        INSTANCES * PER_INSTANCE,
        elapsed.as_secs_f64(),
        (INSTANCES * PER_INSTANCE) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        drops > 0,
        "the partner's limit was never reached, so this test proved nothing"
    );
}
