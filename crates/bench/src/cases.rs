//! Cases 1, 3, 4, 5 and 6 (the cases that read S3 are in `lambda_cases`; case 6 also runs the
//! Lambda path and rclone's s3 source on the S3 bed), and what every case shares: each builds its
//! contenders, runs them alternating (`runs` rounds of one run each, the scratch directory emptied
//! before every run) and returns its table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use forward::Tuning;
use testkit::delay::DelayProxy;

use crate::bed::{random_file, Bed, OUR_CIPHER, RCLONE_FLAGS};
use crate::lambda_cases::{object_key, BED_NOTE};
use crate::measure::{self, median, Job, Sample};
use crate::report::{num, Table};
use crate::s3side::S3Side;

/// Sizes and counts of one harness run.
pub struct Plan {
    pub runs: usize,
    /// Case 1's file.
    pub big: u64,
    /// Cases 2 and 6.
    pub medium: u64,
    /// Case 3.
    pub small_files: usize,
    /// Case 4's generated streams.
    pub rss_sizes: Vec<u64>,
    /// Case 6: also the `big` file over each RTT (one run each).
    pub wan_big: bool,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One side of a comparison: a label and how to make its command for one run.
pub struct Contender<'a> {
    pub label: String,
    job: Box<dyn Fn() -> anyhow::Result<Job> + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(label: impl Into<String>, job: impl Fn() -> anyhow::Result<Job> + 'a) -> Self {
        Contender {
            label: label.into(),
            job: Box::new(job),
        }
    }
}

/// `runs` rounds, each running every contender once in turn; samples per contender. A run that
/// leaves other than `bytes` in the scratch directory is an error.
pub fn alternate(
    bed: &Bed,
    contenders: &[Contender],
    runs: usize,
    bytes: u64,
) -> anyhow::Result<Vec<Vec<Sample>>> {
    let mut samples = vec![Vec::new(); contenders.len()];
    for round in 1..=runs {
        for (c, out) in contenders.iter().zip(&mut samples) {
            bed.clean()?;
            let busy = measure::others_busy();
            let machine_before = measure::machine_busy();
            let mut sample = measure::run((c.job)()?).with_context(|| c.label.clone())?;
            sample.machine_cpu = measure::machine_busy() - machine_before;
            sample.overlapped = busy || measure::others_busy();
            let landed = bed.landed_bytes()?;
            if landed != bytes {
                bail!(
                    "{}: {landed} bytes landed at the partner, not {bytes}",
                    c.label
                );
            }
            eprintln!(
                "  run {round}/{runs} {}: {:.2} s{}",
                c.label,
                sample.wall.as_secs_f64(),
                phases(&sample.stdout)
            );
            out.push(sample);
        }
    }
    bed.clean()?;
    Ok(samples)
}

/// Where our child's time went (its `publish_s`), for the progress line.
fn phases(stdout: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_default();
    match v["publish_s"].as_f64() {
        Some(s) => format!(" (connect + login + publish {s:.2} s)"),
        None => String::new(),
    }
}

/// Rows of MB/s, CPU s/GiB and the ratio of `ours` (an index into `contenders`) to each.
pub fn throughput(
    table: &mut Table,
    contenders: &[Contender],
    samples: &[Vec<Sample>],
    bytes: u64,
    ours: usize,
) {
    let mbps = |s: &[Sample]| -> Vec<f64> {
        s.iter()
            .map(|s| bytes as f64 / s.wall.as_secs_f64() / 1e6)
            .collect()
    };
    let reference = median(&mbps(&samples[ours]));
    for (c, s) in contenders.iter().zip(samples) {
        let rates = mbps(s);
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let per_gib = |d: Duration| d.as_secs_f64() / (bytes as f64 / GIB as f64);
        let cpu: Vec<f64> = s.iter().map(|s| per_gib(s.cpu)).collect();
        let machine: Vec<f64> = s.iter().map(|s| per_gib(s.machine_cpu)).collect();
        table.row(vec![
            c.label.clone(),
            num(median(&rates), 0),
            format!("{}–{}", num(lo, 0), num(hi, 0)),
            num(median(&cpu), 2),
            num(median(&machine), 2),
            num(reference / median(&rates), 2),
        ]);
    }
    overlap_note(table, samples);
}

/// "<ours> MB/s = N× <other>, …": the median rate of `contenders[ours]` against each of `others`.
fn ratio_note(
    contenders: &[Contender],
    samples: &[Vec<Sample>],
    bytes: u64,
    ours: usize,
    others: &[usize],
) -> String {
    let rate = |i: usize| {
        median(
            &samples[i]
                .iter()
                .map(|s| bytes as f64 / s.wall.as_secs_f64() / 1e6)
                .collect::<Vec<_>>(),
        )
    };
    let ratios: Vec<String> = others
        .iter()
        .map(|&o| {
            format!(
                "**{}×** {}",
                num(rate(ours) / rate(o), 2),
                contenders[o].label
            )
        })
        .collect();
    format!(
        "{}: {} MB/s = {}.",
        contenders[ours].label,
        num(rate(ours), 0),
        ratios.join(", ")
    )
}

/// Says how many runs overlapped someone else's build or test.
/// What the last column of [`files_per_second`] divides.
pub enum Baseline {
    /// This contender's rate over each one's ("ours / contender").
    OursOver(usize),
    /// Each one's rate over this contender's, under this header ("contender / rclone").
    Over(usize, &'static str),
}

/// A table of `files` files per run: each contender's median files/s, median wall time and its
/// ratio to `baseline`, with the overlap note.
pub fn files_per_second(
    title: String,
    files: usize,
    contenders: &[Contender],
    samples: &[Vec<Sample>],
    baseline: Baseline,
) -> Table {
    let rate = |s: &[Sample]| {
        median(
            &s.iter()
                .map(|s| files as f64 / s.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    };
    let (header, base) = match &baseline {
        Baseline::OursOver(i) => ("ours / contender", rate(&samples[*i])),
        Baseline::Over(i, header) => (*header, rate(&samples[*i])),
    };
    let mut table = Table::new(
        title,
        &["contender", "median files/s", "median wall s", header],
    );
    for (c, s) in contenders.iter().zip(samples) {
        let wall = median(&s.iter().map(|s| s.wall.as_secs_f64()).collect::<Vec<_>>());
        let ratio = match baseline {
            Baseline::OursOver(_) => base / rate(s),
            Baseline::Over(..) => rate(s) / base,
        };
        table.row(vec![
            c.label.clone(),
            num(rate(s), 0),
            num(wall, 2),
            num(ratio, 2),
        ]);
    }
    overlap_note(&mut table, samples);
    table
}

pub fn overlap_note(table: &mut Table, samples: &[Vec<Sample>]) {
    let all: Vec<&Sample> = samples.iter().flatten().collect();
    let busy = all.iter().filter(|s| s.overlapped).count();
    table.note(format!(
        "Runs with another build or test running at their start or end: {busy} of {}.",
        all.len()
    ));
}

pub const THROUGHPUT_HEADER: &[&str] = &[
    "contender",
    "median MB/s",
    "range MB/s",
    "client CPU s/GiB",
    "machine CPU s/GiB",
    "ours (default K) / contender",
];

pub fn size_label(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// Ours (K = 1, 2, …), `sftp` (default cipher and/or ours) and rclone putting `file` to `port`.
fn upload_contenders<'a>(
    bed: &'a Bed,
    port: u16,
    file: &'a Path,
    stripes: &[usize],
    sftp_ciphers: &[Option<&'static str>],
) -> anyhow::Result<Vec<Contender<'a>>> {
    let partner = bed.partner_file(port)?;
    let default_k = Tuning::default().stripes;
    let mut out = Vec::new();
    for &k in stripes {
        let partner = partner.clone();
        let label = if k == default_k {
            format!("sftp-forward K={k} (default)")
        } else {
            format!("sftp-forward K={k}")
        };
        out.push(Contender::new(label, move || {
            let mut cmd = bed.ours("publish");
            cmd.arg(&partner)
                .arg(k.to_string())
                .arg(file)
                .arg("ours.bin");
            Ok(cmd.into())
        }));
    }
    for &cipher in sftp_ciphers {
        let label = format!("OpenSSH sftp put, {}", cipher.unwrap_or("default cipher"));
        out.push(Contender::new(label, move || {
            let batch = format!("put {} {}/sftp.bin\n", file.display(), bed.remote_dir);
            Ok(bed.sftp(port, cipher, batch))
        }));
    }
    out.push(Contender::new("rclone copy", move || {
        Ok(bed
            .rclone_copy(port, &file.display().to_string(), "rclone")
            .into())
    }));
    Ok(out)
}

/// Index of ours with the default K among contenders made with `stripes`.
fn default_index(stripes: &[usize]) -> usize {
    let k = Tuning::default().stripes;
    stripes
        .iter()
        .position(|&s| s == k)
        .expect("the default K is measured")
}

/// Case 1: a large random file to the loopback sshd.
pub fn loopback(bed: &Bed, plan: &Plan) -> anyhow::Result<Table> {
    let file = bed.work.join(format!("random-{}.bin", plan.big));
    random_file(&file, plan.big)?;
    let stripes = [1, Tuning::default().stripes];
    let ciphers = [None, Some(OUR_CIPHER)];
    let contenders = upload_contenders(bed, bed.sshd.port, &file, &stripes, &ciphers)?;
    let samples = alternate(bed, &contenders, plan.runs, plan.big)?;
    let mut table = Table::new(
        format!(
            "1. {} random file → loopback sshd ({} runs each, alternating)",
            size_label(plan.big),
            plan.runs
        ),
        THROUGHPUT_HEADER,
    );
    throughput(
        &mut table,
        &contenders,
        &samples,
        plan.big,
        default_index(&stripes),
    );
    table.note(format!(
        "Ours negotiates {OUR_CIPHER}; CPU is the client process tree's user+system time \
         (`wait4` rusage); machine CPU is every CPU's busy time during the run (/proc/stat: client, sshd, kernel, and anything else running). rclone: {}.",
        RCLONE_FLAGS.join(" ")
    ));
    Ok(table)
}

/// Case 3: many 4 KiB files.
pub fn small_files(bed: &Bed, plan: &Plan) -> anyhow::Result<Table> {
    let dir = bed.work.join(format!("small-{}", plan.small_files));
    std::fs::create_dir_all(&dir)?;
    let files: Vec<PathBuf> = (0..plan.small_files)
        .map(|i| dir.join(format!("f{i:05}.bin")))
        .collect();
    for f in &files {
        random_file(f, 4096)?;
    }
    let port = bed.sshd.port;
    let partner = bed.partner_file(port)?;
    let batch = bed.sftp_puts(files.iter().map(PathBuf::as_path));
    let contenders = [
        Contender::new("sftp-forward, one Connector", || {
            let mut cmd = bed.ours("publish-dir");
            cmd.arg(&partner).arg(&dir);
            Ok(cmd.into())
        }),
        Contender::new("rclone copy DIR", || {
            Ok(bed
                .rclone_copy(port, &dir.display().to_string(), "rclone")
                .into())
        }),
        Contender::new(
            format!("OpenSSH sftp -b, {} puts, default cipher", files.len()),
            || Ok(bed.sftp(port, None, batch.clone())),
        ),
    ];
    let samples = alternate(bed, &contenders, plan.runs, 4096 * files.len() as u64)?;
    let mut table = files_per_second(
        format!(
            "3. {} files of 4 KiB → loopback sshd ({} runs each, alternating)",
            files.len(),
            plan.runs
        ),
        files.len(),
        &contenders,
        &samples,
        Baseline::OursOver(0),
    );
    table.note(format!(
        "Wall time from process start to exit (connect and login included for everyone). Ours \
         publishes each file atomically (temp name, size check, rename); `sftp` and rclone write \
         the final names directly. rclone: {}.",
        RCLONE_FLAGS.join(" ")
    ));
    Ok(table)
}

/// Case 4: peak RSS of our publisher for generated streams, per K.
pub fn memory(bed: &Bed, plan: &Plan) -> anyhow::Result<Table> {
    let partner = bed.partner_file(bed.sshd.port)?;
    let mut table = Table::new(
        "4. Peak RSS of our publisher, generated stream → loopback sshd (1 run each)",
        &[
            "stream",
            "K",
            "MB/s",
            "VmHWM MiB",
            "ru_maxrss MiB",
            "target ≤ 64 MiB",
        ],
    );
    for &size in &plan.rss_sizes {
        for k in [1, 4, 8] {
            bed.clean()?;
            let mut cmd = bed.ours("publish");
            cmd.arg(&partner)
                .arg(k.to_string())
                .arg(format!("gen:{size}"))
                .arg("gen.bin");
            let sample = measure::run(cmd.into())?;
            let sent = reported(&sample, "bytes")?;
            if sent != size || bed.landed_bytes()? != size {
                bail!("K={k}: published {sent} bytes of a {size}-byte stream");
            }
            let hwm = reported(&sample, "vmhwm_kib")? as f64 / 1024.0;
            eprintln!("  {} K={k}: {hwm:.1} MiB", size_label(size));
            table.row(vec![
                size_label(size),
                k.to_string(),
                num(size as f64 / sample.wall.as_secs_f64() / 1e6, 0),
                num(hwm, 1),
                num(sample.max_rss_kib as f64 / 1024.0, 1),
                if hwm <= 64.0 { "met" } else { "MISSED" }.to_owned(),
            ]);
        }
    }
    bed.clean()?;
    table.note(format!(
        "VmHWM from the child's /proc/self/status after the publish; chunk {} KiB × {} writes in \
         flight per channel (forward's defaults). The stream is a 1 MiB block repeated: nothing on disk.",
        Tuning::default().chunk_size / 1024,
        Tuning::default().writes_in_flight
    ));
    Ok(table)
}

/// A number from the JSON line our child printed.
fn reported(sample: &Sample, field: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_str(sample.stdout.trim())
        .with_context(|| format!("our child printed {:?}", sample.stdout))?;
    v[field]
        .as_u64()
        .with_context(|| format!("no {field} in {v}"))
}

/// Case 6: the partner behind a delay proxy; the Lambda path and rclone also read the same
/// bytes from the S3 bed.
pub fn wan(bed: &Bed, plan: &Plan, s3: &S3Side) -> anyhow::Result<Vec<Table>> {
    let medium = bed.work.join(format!("random-{}.bin", plan.medium));
    random_file(&medium, plan.medium)?;
    let big = bed.work.join(format!("random-{}.bin", plan.big));
    let mut sizes = vec![(medium, plan.medium, plan.runs)];
    if plan.wan_big {
        random_file(&big, plan.big)?;
        sizes.push((big, plan.big, 1));
    }
    let stripes = [1, 2, 4, 8];
    let mut tables = Vec::new();
    for rtt_ms in [25u64, 50] {
        let proxy = DelayProxy::start(
            (bed.sshd.host, bed.sshd.port).into(),
            Duration::from_micros(rtt_ms * 500),
        );
        let port = proxy.addr().port();
        bed.trust_port(port)?;
        for (file, bytes, runs) in &sizes {
            let key = object_key(s3, file, *bytes)?;
            let mut contenders = upload_contenders(bed, port, file, &stripes, &[Some(OUR_CIPHER)])?;
            // [ours K…, sftp, rclone local] + [Lambda path, rclone s3:]
            let n = contenders.len();
            let (lambda, others) = (n, [n - 2, n - 1, n + 1]);
            contenders.push(s3.lambda_path(
                bed,
                port,
                &key,
                None,
                "sftp-forward Lambda path on the S3 bed (Forwarder, default K)",
                |_| {},
            )?);
            contenders.push(s3.rclone(bed, port, || key.clone(), "rclone copy s3: → sftp:"));
            let samples = alternate(bed, &contenders, *runs, *bytes)?;
            let mut table = Table::new(
                format!(
                    "6. WAN: {rtt_ms} ms RTT (delay proxy), {} random file ({runs} runs each, alternating)",
                    size_label(*bytes)
                ),
                THROUGHPUT_HEADER,
            );
            throughput(
                &mut table,
                &contenders,
                &samples,
                *bytes,
                default_index(&stripes),
            );
            table.note(ratio_note(&contenders, &samples, *bytes, lambda, &others));
            table.note(format!(
                "Each direction delayed {} ms by testkit::delay (userspace, in the harness process; \
                 its copying CPU is in the machine column only). sftp with {OUR_CIPHER} (our cipher); \
                 rclone: {}; its s3: source and the Lambda path read from the S3 bed. {BED_NOTE}",
                rtt_ms as f64 / 2.0,
                RCLONE_FLAGS.join(" ")
            ));
            tables.push(table);
        }
    }
    Ok(tables)
}

/// Case 5: spawn of the release `bootstrap` to its first `GET .../runtime/invocation/next`.
pub fn cold_start(bootstrap: &Path, runs: usize) -> anyhow::Result<Table> {
    let size = std::fs::metadata(bootstrap)
        .with_context(|| {
            format!(
                "{} (build it: cargo build --release -p lambda --bin bootstrap)",
                bootstrap.display()
            )
        })?
        .len();
    let mut times = Vec::new();
    // One unmeasured start first: the binary in the page cache, as on a warm Lambda host.
    for i in 0..=runs {
        let t = crate::coldstart::time_to_next(bootstrap)?;
        if i > 0 {
            times.push(t.as_secs_f64() * 1e3);
        }
    }
    let mut table = Table::new(
        format!("5. Lambda cold start: spawn of `bootstrap` → first `next` request ({runs} runs)"),
        &[
            "median ms",
            "min ms",
            "max ms",
            "binary size",
            "target ≤ 20 ms",
        ],
    );
    let med = median(&times);
    table.row(vec![
        num(med, 1),
        num(times.iter().copied().fold(f64::INFINITY, f64::min), 1),
        num(times.iter().copied().fold(0.0, f64::max), 1),
        format!("{:.1} MiB ({size} bytes)", size as f64 / MIB as f64),
        if med <= 20.0 { "met" } else { "MISSED" }.to_owned(),
    ]);
    table.note(format!(
        "`{}` (release), env as Lambda sets it plus static AWS credentials; timed by a listener in \
         the harness that stamps the first request line; the binary is in the page cache.",
        bootstrap.display()
    ));
    Ok(table)
}
