//! The cases that run the Lambda's own path on the S3 bed ([`crate::s3side`]): 2 (one object, vs
//! rclone's s3 source), 7 (Lambda's CPU share per memory size, and what a GB costs) and 8 (small
//! objects arriving as SQS batches, vs rclone).

use std::cell::Cell;
use std::time::Duration;

use forward::Tuning;
use testkit::delay::DelayProxy;

use crate::bed::{random_file, Bed, RCLONE_FLAGS};
use crate::cases::{
    alternate, files_per_second, overlap_note, size_label, throughput, Baseline, Contender, Plan,
    THROUGHPUT_HEADER,
};
use crate::cgroup::CpuQuota;
use crate::measure::{median, Sample};
use crate::report::{num, Table};
use crate::s3side::{small_key, S3Side, BUCKET};

const GIB: u64 = 1 << 30;

/// The bed, said once under each table that uses it.
pub const BED_NOTE: &str = "S3 is testkit's S3 bed: GetObject and its ranges are served from a \
     local copy of the object (as cheap as S3's ranged GETs), every other call by moto behind it.";

/// The key of `file`'s object on the bed (put once per harness run).
pub fn object_key(s3: &S3Side, file: &std::path::Path, bytes: u64) -> anyhow::Result<String> {
    let key = format!("in/object-{bytes}.bin");
    s3.object(file, &key)?;
    Ok(key)
}

/// Case 2: one object on the S3 bed to the loopback sshd: the Lambda path vs rclone.
pub fn s3_object(bed: &Bed, plan: &Plan, s3: &S3Side) -> anyhow::Result<Table> {
    let file = bed.work.join(format!("random-{}.bin", plan.medium));
    random_file(&file, plan.medium)?;
    let key = object_key(s3, &file, plan.medium)?;
    let port = bed.sshd.port;
    let default_k = Tuning::default().stripes;
    let contenders = [
        s3.lambda_path(
            bed,
            port,
            &key,
            None,
            format!("sftp-forward Lambda path (Forwarder, K={default_k} default)"),
            |_| {},
        )?,
        s3.lambda_path(
            bed,
            port,
            &key,
            Some(4),
            "sftp-forward Lambda path, K=4 (SFTP_FORWARD_PARALLELISM=4)",
            |_| {},
        )?,
        s3.rclone(bed, port, || key.clone(), "rclone copy s3: → sftp:"),
    ];
    let samples = alternate(bed, &contenders, plan.runs, plan.medium)?;
    let mut table = Table::new(
        format!(
            "2. S3 (bed) → loopback sshd, {} object ({} runs each, alternating)",
            size_label(plan.medium),
            plan.runs
        ),
        THROUGHPUT_HEADER,
    );
    throughput(&mut table, &contenders, &samples, plan.medium, 0);
    table.note(format!(
        "Ours: `Forwarder::forward_with` on `S3Store` as `bootstrap` runs it (tags, GetObject, \
         ranged GETs per stripe, publish, receipt tag), K = {default_k} (SFTP_FORWARD_PARALLELISM \
         unset) and K = 4. {BED_NOTE} rclone: s3 backend on the bed (path style, AWS_CA_BUNDLE \
         unset), {}. The bed's and moto's CPU is in the machine column only.",
        RCLONE_FLAGS.join(" ")
    ));
    Ok(table)
}

/// Lambda memory sizes measured by case 7, MB.
const MEMORY_MB: [u64; 4] = [512, 1024, 1769, 3008];
/// Lambda gives one vCPU at this many MB, in proportion below and above.
const MB_PER_VCPU: f64 = 1769.0;
/// Lambda's price per GB-second (us-east-1): x86_64 and arm64; per request.
const X86_GB_S: f64 = 0.000_016_666_7;
const ARM_GB_S: f64 = 0.000_013_333_4;
const PER_REQUEST: f64 = 0.20 / 1e6;
/// The longest invocation Lambda allows, s.
const MAX_INVOCATION_S: f64 = 900.0;

/// Dollars per GB (10⁹ bytes) delivered by one invocation of `mb` MB that moved `bytes` in `wall`.
fn cost_per_gb(mb: u64, wall: f64, bytes: u64, per_gb_s: f64) -> f64 {
    (mb as f64 / 1024.0 * wall * per_gb_s + PER_REQUEST) / (bytes as f64 / 1e9)
}

/// What one link (loopback or a delay proxy's port) gave per memory size.
struct ShareRuns {
    samples: Vec<Vec<Sample>>,
}

impl ShareRuns {
    fn wall(&self, i: usize) -> f64 {
        median(
            &self.samples[i]
                .iter()
                .map(|s| s.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    }

    fn cpu_per_gib(&self, i: usize, bytes: u64) -> f64 {
        median(
            &self.samples[i]
                .iter()
                .map(|s| s.cpu.as_secs_f64() / (bytes as f64 / GIB as f64))
                .collect::<Vec<_>>(),
        )
    }
}

/// Case 7: the Lambda path for the big object on the bed, our child under a CPU quota equal to
/// Lambda's share for each memory size, on loopback and at 25 ms RTT; MB/s and $/GB.
pub fn lambda_share(bed: &Bed, plan: &Plan, s3: &S3Side) -> anyhow::Result<Table> {
    let file = bed.work.join(format!("random-{}.bin", plan.big));
    random_file(&file, plan.big)?;
    let key = object_key(s3, &file, plan.big)?;
    let quotas = MEMORY_MB
        .iter()
        .map(|&mb| {
            let name = format!("sftp-forward-bench-{}-{mb}", std::process::id());
            CpuQuota::new(&name, mb as f64 / MB_PER_VCPU)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let proxy = DelayProxy::start(
        (bed.sshd.host, bed.sshd.port).into(),
        Duration::from_micros(12_500),
    );
    bed.trust_port(proxy.addr().port())?;
    let mut links = Vec::new();
    for (link, port) in [
        ("loopback", bed.sshd.port),
        ("25 ms RTT", proxy.addr().port()),
    ] {
        let mut contenders = Vec::new();
        for (&mb, quota) in MEMORY_MB.iter().zip(&quotas) {
            let label = format!("{mb} MB, {link}");
            let confine = move |cmd: &mut std::process::Command| quota.confine(cmd);
            contenders.push(s3.lambda_path(bed, port, &key, None, label, confine)?);
        }
        let samples = alternate(bed, &contenders, plan.runs, plan.big)?;
        links.push(ShareRuns { samples });
    }
    let (lo, wan) = (&links[0], &links[1]);
    let mut table = Table::new(
        format!(
            "7. Lambda's CPU share: the Lambda path, {} object on the S3 bed → sshd, our process under \
             a CPU quota of MB/1769 vCPU ({} runs each, alternating)",
            size_label(plan.big),
            plan.runs
        ),
        &[
            "memory MB",
            "vCPU",
            "loopback MB/s",
            "25 ms MB/s",
            "client CPU s/GiB (25 ms)",
            "throttled s (all runs)",
            "x86 $/GB loopback",
            "x86 $/GB 25 ms",
            "arm64 $/GB 25 ms",
            "GiB per 15-min invocation (25 ms)",
        ],
    );
    let rate = |runs: &ShareRuns, i: usize| plan.big as f64 / runs.wall(i) / 1e6;
    for (i, (&mb, quota)) in MEMORY_MB.iter().zip(&quotas).enumerate() {
        table.row(vec![
            mb.to_string(),
            num(mb as f64 / MB_PER_VCPU, 2),
            num(rate(lo, i), 0),
            num(rate(wan, i), 0),
            num(wan.cpu_per_gib(i, plan.big), 2),
            num(quota.throttled().as_secs_f64(), 1),
            format!("{:.5}", cost_per_gb(mb, lo.wall(i), plan.big, X86_GB_S)),
            format!("{:.5}", cost_per_gb(mb, wan.wall(i), plan.big, X86_GB_S)),
            format!("{:.5}", cost_per_gb(mb, wan.wall(i), plan.big, ARM_GB_S)),
            num(rate(wan, i) * 1e6 * MAX_INVOCATION_S / GIB as f64, 0),
        ]);
    }
    let samples: Vec<Vec<Sample>> = links.into_iter().flat_map(|l| l.samples).collect();
    overlap_note(&mut table, &samples);
    table.note(format!(
        "Only our child process is in the cgroup (v1 `cpu.cfs_quota_us` = MB/1769 × \
         `cpu.cfs_period_us` 100000); sshd, the bed, moto and the delay proxy are not, and share \
         the machine's 2 cores with it. Cost = MB/1024 × wall s × $/GB-s + $0.20 per 1M requests, \
         per 10⁹ bytes delivered: x86_64 ${X86_GB_S}/GB-s, arm64 ${ARM_GB_S}/GB-s (arm64 assumed as \
         fast as this x86 per vCPU: not measured). Wall is the child's spawn to exit (connect, \
         login, GETs, publish, receipt), K = {} (default). GiB per 15 min = the 25 ms rate × 900 s. {BED_NOTE}",
        Tuning::default().stripes
    ));
    Ok(table)
}

/// Case 8's objects per run and their size.
const BATCH_OBJECTS: usize = 300;
const BATCH_OBJECT_BYTES: usize = 4096;
/// Records per SQS batch (the event source mapping's batch size).
const BATCH_SIZE: usize = 10;

/// Case 8: 300 objects of 4 KiB as SQS batches of 10 through `Forwarder::handle`, in one and in
/// two function environments, vs `rclone copy` of the same objects from the bed.
pub fn batches(bed: &Bed, plan: &Plan, s3: &S3Side) -> anyhow::Result<Table> {
    let sample = bed.work.join("batch-object.bin");
    random_file(&sample, BATCH_OBJECT_BYTES as u64)?;
    let data = std::fs::read(&sample)?;
    // Fresh keys for each of our contenders (1 or 2 environments) and run: a delivered object
    // carries a receipt and would be skipped. rclone reads the first set of each run.
    let prefix =
        |envs: usize, round: usize| format!("batch-{}/e{envs}r{round}/", std::process::id());
    for round in 1..=plan.runs {
        for envs in [1, 2] {
            s3.small_objects(&prefix(envs, round), BATCH_OBJECTS, &data)?;
        }
    }
    let port = bed.sshd.port;
    let secret = s3.secret(bed, port)?;
    let ours = |envs: usize| {
        let (round, secret, prefix) = (Cell::new(0), secret.clone(), &prefix);
        Contender::new(
            format!(
                "sftp-forward `Forwarder::handle`, SQS batches of {BATCH_SIZE}, {envs} function environment{}",
                if envs == 1 { "" } else { "s" }
            ),
            move || {
                round.set(round.get() + 1);
                let mut cmd = bed.ours("sqs-batches");
                cmd.args([BUCKET, &prefix(envs, round.get())])
                    .arg(BATCH_OBJECTS.to_string())
                    .arg(BATCH_SIZE.to_string())
                    .arg(envs.to_string())
                    .envs(s3.bed.env())
                    .env(sftp_forward_core::env::SECRET_ID, &secret);
                Ok(cmd.into())
            },
        )
    };
    let rclone_round = Cell::new(0);
    let contenders = [
        ours(1),
        ours(2),
        s3.rclone(
            bed,
            port,
            || {
                rclone_round.set(rclone_round.get() + 1);
                prefix(1, rclone_round.get())
            },
            "rclone copy s3:PREFIX → sftp:",
        ),
    ];
    let bytes = (BATCH_OBJECTS * BATCH_OBJECT_BYTES) as u64;
    let samples = alternate(bed, &contenders, plan.runs, bytes)?;
    let mut table = files_per_second(
        format!(
            "8. {BATCH_OBJECTS} objects of 4 KiB on the S3 bed as SQS batches of {BATCH_SIZE} → \
             loopback sshd ({} runs each, alternating)",
            plan.runs
        ),
        BATCH_OBJECTS,
        &contenders,
        &samples,
        Baseline::Over(2, "contender / rclone"),
    );
    table.note(format!(
        "Ours: one child process running `Forwarder::handle` with SQS event payloads (S3 \
         notifications, 10 records each) as `bootstrap` does, the batches dealt in turn to 1 or 2 \
         `Forwarder`s running at once (function environments, each with its own warm connection); a \
         batch response with any item failure fails the run. Each run reads fresh keys (a delivered \
         object carries a receipt). Wall time from process start to exit for everyone. {BED_NOTE} \
         rclone: s3 backend on the bed, {}.",
        RCLONE_FLAGS.join(" ")
    ));
    Ok(table)
}

/// The keys of case 8's run under `prefix`, as SQS event payloads of `batch` records each.
pub fn sqs_events(
    bucket: &str,
    prefix: &str,
    count: usize,
    batch: usize,
) -> Vec<serde_json::Value> {
    let keys: Vec<String> = (0..count).map(|i| small_key(prefix, i)).collect();
    keys.chunks(batch)
        .enumerate()
        .map(|(b, chunk)| {
            let records: Vec<serde_json::Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let body = serde_json::json!({"Records": [{
                        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 4096}},
                    }]});
                    serde_json::json!({
                        "messageId": format!("m-{b}-{i}"), "receiptHandle": "bench",
                        "body": body.to_string(), "eventSource": "aws:sqs",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox",
                        "awsRegion": "us-east-1", "attributes": {}, "messageAttributes": {},
                    })
                })
                .collect();
            serde_json::json!({ "Records": records })
        })
        .collect()
}
