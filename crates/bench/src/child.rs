//! Our side of each case, run as a child process of the harness (`bench child MODE ...`) so that
//! its wall time, CPU and peak RSS are measured like `sftp`'s and `rclone`'s. Each mode prints
//! one JSON line: `{"bytes": N, "files": F, "vmhwm_kib": K}`, and `publish` also the seconds
//! its connect, login and publish took (`publish_s`).
//!
//! - `publish PARTNER_JSON STRIPES SOURCE NAME`: one `Connector::publish_ranges`; SOURCE is a
//!   file path or `gen:BYTES` (generated, nothing on disk: the 8 GiB RSS case);
//! - `publish-pgp PARTNER_JSON FILE NAME`: FILE encrypted to the partner's `Pgp` keys as it is
//!   read, published as one stream (`Connector::publish`) under NAME plus the `Pgp` suffix;
//! - `publish-dir PARTNER_JSON DIR`: every file of DIR over one `Connector` (connection reuse),
//!   with `Connector::publish_all` (several files at once, one SFTP channel each);
//! - `forward-s3 BUCKET KEY NAME`: the Lambda path (`Forwarder::forward_with` on `S3Store`),
//!   configured by the environment like `bootstrap` (`SFTP_FORWARD_SECRET_ID`, `AWS_*`);
//! - `sqs-batches BUCKET PREFIX COUNT BATCH ENVS`: COUNT small objects under PREFIX as SQS event
//!   payloads of BATCH records through `Forwarder::handle`, the batches dealt in turn to ENVS
//!   forwarders running at once (function environments); prints `files` (and `bytes` 0: the
//!   harness counts what landed).

use std::io;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{bail, Context};
use forward::{Connector, FileRanges, Overwrite, Partner, RangeSource, RemotePath, Tuning};
use sftp_forward_core::event::ObjectRef;
use sftp_forward_core::secret::SecretsManager;
use sftp_forward_core::source::S3Store;
use sftp_forward_core::{ForwardOptions, Forwarder, Outcome, Settings};
use tokio::io::{AsyncRead, ReadBuf};

/// Runs one child mode with its arguments.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut phases = serde_json::Map::new();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (bytes, files) = match strs.as_slice() {
        ["publish", partner, stripes, source, name] => {
            let mut connector = connector(partner, stripes.parse().context("STRIPES")?)?;
            let path = RemotePath::parse(name)?;
            let published = match source.strip_prefix("gen:") {
                Some(len) => {
                    let source = Generated::new(len.parse().context("gen:BYTES")?);
                    connector
                        .publish_ranges(&source, &path, Overwrite::Overwrite)
                        .await?
                }
                None => {
                    let source = FileRanges::new(source).await?;
                    connector
                        .publish_ranges(&source, &path, Overwrite::Overwrite)
                        .await?
                }
            };
            // Connect, login and publish (not split: connecting first would not open at once
            // the channels K wants); the rest of the wall time is process start and exit.
            phases.insert("publish_s".into(), started.elapsed().as_secs_f64().into());
            (published.bytes, 1)
        }
        ["publish-pgp", partner, source, name] => {
            let mut connector = connector(partner, 1)?;
            let pgp = connector
                .partner()
                .pgp
                .clone()
                .context("the partner JSON has no Pgp")?;
            let file = tokio::fs::File::open(source).await?;
            let len = file.metadata().await?.len();
            let path = pgp.remote_path(&RemotePath::parse(name)?)?;
            let stream = pgp.encrypt(file, Some(len), name);
            connector
                .publish(stream, None, &path, Overwrite::Overwrite)
                .await?;
            phases.insert("publish_s".into(), started.elapsed().as_secs_f64().into());
            (len, 1)
        }
        ["publish-dir", partner, dir] => {
            let mut connector = connector(partner, Tuning::default().stripes)?;
            let mut names: Vec<_> = std::fs::read_dir(dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            let mut files = Vec::new();
            for name in &names {
                let source = FileRanges::new(Path::new(dir).join(name)).await?;
                files.push((source, RemotePath::parse(name)?));
            }
            let mut bytes = 0;
            for (done, name) in connector
                .publish_all(&files, Overwrite::Overwrite)
                .await?
                .into_iter()
                .zip(&names)
            {
                bytes += done.with_context(|| format!("publishing {name}"))?.bytes;
            }
            (bytes, names.len())
        }
        ["forward-s3", bucket, key, name] => (forward_s3(bucket, key, name).await?, 1),
        ["sqs-batches", bucket, prefix, count, batch, envs] => {
            let count = count.parse().context("COUNT")?;
            let events = crate::lambda_cases::sqs_events(bucket, prefix, count, batch.parse()?);
            sqs_batches(events, envs.parse().context("ENVS")?).await?;
            (0, count)
        }
        _ => bail!("unknown child mode {args:?}"),
    };
    let mut line = serde_json::json!({"bytes": bytes, "files": files, "vmhwm_kib": vm_hwm_kib()});
    line.as_object_mut().expect("an object").extend(phases);
    println!("{line}");
    Ok(())
}

fn connector(partner_file: &str, stripes: usize) -> anyhow::Result<Connector> {
    let text =
        std::fs::read_to_string(partner_file).with_context(|| format!("read {partner_file}"))?;
    let tuning = Tuning {
        stripes,
        ..Tuning::default()
    };
    Ok(Connector::new(Partner::from_json(&text)?, tuning))
}

/// A forwarder configured by the environment, as `bootstrap` builds it.
async fn forwarder() -> anyhow::Result<Forwarder<S3Store, SecretsManager>> {
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let config = aws_config::load_from_env().await;
    Ok(Forwarder::new(
        S3Store::new(S3Store::client(&config)),
        SecretsManager::new(aws_sdk_secretsmanager::Client::new(&config)),
        settings,
    ))
}

/// `events` through `Forwarder::handle`, dealt in turn to `envs` forwarders running at once;
/// an item failure in any batch response is an error.
async fn sqs_batches(events: Vec<serde_json::Value>, envs: usize) -> anyhow::Result<()> {
    let mut running = tokio::task::JoinSet::new();
    for env in 0..envs.max(1) {
        let mine: Vec<_> = events
            .iter()
            .skip(env)
            .step_by(envs.max(1))
            .cloned()
            .collect();
        let mut forwarder = forwarder().await?;
        running.spawn(async move {
            for event in &mine {
                let response = forwarder.handle(event, None).await?;
                let failed = &response["batchItemFailures"];
                if failed.as_array().is_none_or(|f| !f.is_empty()) {
                    bail!("environment {env}: batch response {response}");
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

/// The Lambda's own path for one object, forced (a receipt from an earlier run does not skip it).
async fn forward_s3(bucket: &str, key: &str, name: &str) -> anyhow::Result<u64> {
    let mut forwarder = forwarder().await?;
    let obj = ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        etag: None,
        size: None,
    };
    let options = ForwardOptions {
        force: true,
        remote_path: Some(RemotePath::parse(name)?),
    };
    match forwarder.forward_with(&obj, None, &options).await {
        Outcome::Delivered { bytes, .. } => Ok(bytes),
        other => bail!("s3://{bucket}/{key} not delivered: {other:?}"),
    }
}

/// This process's peak resident set (`VmHWM` in /proc/self/status), KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Size of the block that [`Generated`] repeats.
const BLOCK: usize = 1 << 20;

/// `len` bytes of generated data readable by range: a 1 MiB pseudo-random block repeated, so an
/// 8 GiB stream costs 1 MiB of memory and no disk.
struct Generated {
    len: u64,
    block: Arc<[u8]>,
}

impl Generated {
    fn new(len: u64) -> Generated {
        let block = testkit::noise(BLOCK, 0x9e37_79b9_7f4a_7c15).into();
        Generated { len, block }
    }
}

impl RangeSource for Generated {
    type Reader = GeneratedReader;

    fn len(&self) -> u64 {
        self.len
    }

    async fn open(&self, range: Range<u64>) -> io::Result<GeneratedReader> {
        Ok(GeneratedReader {
            block: self.block.clone(),
            pos: range.start,
            end: range.end,
        })
    }
}

/// The bytes `pos..end` of a [`Generated`] source.
struct GeneratedReader {
    block: Arc<[u8]>,
    pos: u64,
    end: u64,
}

impl AsyncRead for GeneratedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let offset = (self.pos % BLOCK as u64) as usize;
        let n = (BLOCK - offset)
            .min(buf.remaining())
            .min((self.end - self.pos) as usize);
        buf.put_slice(&self.block[offset..offset + n]);
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}
