//! `send`: one file to the partner. An S3 object goes through the Lambda's own forwarder
//! (receipt written afterwards); a local file goes straight to the publisher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use forward::{Connector, Partner, RangeSource, RemotePath};
use serde_json::json;
use sftp_forward_core::event::ObjectRef;
use sftp_forward_core::events::EventSink;
use sftp_forward_core::{ForwardOptions, Outcome};

use crate::args::{RouteArgs, SecretArgs, StackArgs};
use crate::exit::Exit;
use crate::progress::{Feedback, Metered, MeteredRanges, MeteredStore};
use crate::s3url::{S3Url, Source};
use crate::setup;

/// Where a sent file goes besides the partner: its remote path, and the bus of its delivery event.
pub struct To {
    /// `--remote-path`.
    pub remote_path: Option<RemotePath>,
    /// `--events BUS`: an S3 object's delivery event goes there (none without it).
    pub events: Option<String>,
}

pub async fn run(
    source: &Source,
    to: To,
    secret: &SecretArgs,
    stack: &StackArgs,
    route: &RouteArgs,
    as_json: bool,
) -> anyhow::Result<Exit> {
    let config = setup::aws_config().await;
    let target = setup::target(secret, stack, Some(route), &config).await?;
    let feedback = Feedback::bytes();
    let started = Instant::now();
    let (label, outcome) = match source {
        Source::S3(url) => (
            url.to_string(),
            send_object(url, to, &target, &config, &feedback).await?,
        ),
        Source::Local(path) => {
            let label = path.display().to_string();
            let outcome = send_local(path, to.remote_path, &target, &feedback).await;
            (label, outcome?)
        }
    };
    feedback.finish();
    let secs = started.elapsed().as_secs_f64();
    let exit = match &outcome {
        Outcome::Failed { class, .. } => Exit::of_class(*class),
        _ => Exit::Ok,
    };
    if as_json {
        println!(
            "{:#}",
            json!({ "source": label, "outcome": outcome_json(&outcome), "seconds": secs, "exit_code": exit.code() })
        );
        return Ok(exit);
    }
    match &outcome {
        Outcome::Delivered { remote_path, bytes } => println!(
            "sent {label} → {remote_path}: {bytes} bytes in {secs:.1} s ({:.1} MB/s)",
            *bytes as f64 / secs.max(0.001) / 1e6
        ),
        Outcome::Skipped { reason } => println!("skipped {label}: {reason}"),
        Outcome::Failed { class, reason } => {
            eprintln!("error: {label} not sent ({class}): {reason}")
        }
    }
    Ok(exit)
}

/// The outcome as a JSON object (shared with `replay` and `redrive`).
pub fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Delivered { remote_path, bytes } => {
            json!({ "outcome": "sent", "remote_path": remote_path, "bytes": bytes })
        }
        Outcome::Skipped { reason } => json!({ "outcome": "skipped", "reason": reason }),
        Outcome::Failed { class, reason } => {
            json!({ "outcome": "failed", "class": class.to_string(), "reason": reason })
        }
    }
}

async fn send_object(
    url: &S3Url,
    to: To,
    target: &setup::Target,
    config: &aws_config::SdkConfig,
    feedback: &Feedback,
) -> anyhow::Result<Outcome> {
    let missing = Arc::new(AtomicBool::new(false));
    let store = MeteredStore {
        inner: setup::s3(config),
        bar: feedback.bar().clone(),
        missing: missing.clone(),
    };
    let mut forwarder = target.forwarder(store);
    if let Some(bus) = to.events {
        let client = aws_sdk_eventbridge::Client::new(config);
        let sink = EventSink::new(client, bus, "sftp-forward-cli".into());
        forwarder = forwarder.after(Box::new(sink));
    }
    let obj = ObjectRef {
        bucket: url.bucket.clone(),
        key: url.key.clone(),
        version_id: None,
        etag: None,
        size: None,
    };
    feedback.log(format!("sending {url}"));
    // An explicit send always sends: the operator asked for this object.
    let options = ForwardOptions {
        force: true,
        remote_path: to.remote_path,
    };
    let outcome = forwarder.forward_with(&obj, None, &options).await;
    if missing.load(Ordering::Relaxed) {
        return Ok(Outcome::Failed {
            class: forward::ErrorClass::Permanent,
            reason: format!("{url} does not exist"),
        });
    }
    Ok(outcome)
}

async fn send_local(
    path: &std::path::Path,
    remote_path: Option<RemotePath>,
    target: &setup::Target,
    feedback: &Feedback,
) -> anyhow::Result<Outcome> {
    let source = forward::FileRanges::new(path)
        .await
        .with_context(|| format!("opening {}", path.display()))
        .context(crate::exit::Failed(Exit::Permanent))?;
    let len = source.len();
    let settings = &target.settings;
    let chosen = target.partner();
    let partner =
        Partner::from_json(&target.partner_text().await?).context("the partner secret")?;
    let remote = match remote_path {
        Some(p) => p,
        None => {
            let name = path.file_name().and_then(|n| n.to_str()).with_context(|| {
                format!(
                    "{} has no usable file name: give --remote-path",
                    path.display()
                )
            })?;
            // The partner's naming rules, the file's mtime as `{modified}`; no `{version}`.
            let inputs = forward::RouteInputs {
                now: Some(SystemTime::now()),
                modified: std::fs::metadata(path).and_then(|m| m.modified()).ok(),
                ..forward::RouteInputs::default()
            };
            chosen
                .route
                .with_naming(&partner.naming)
                .render(name, &inputs)
                .context("mapping the file name to a remote path")?
        }
    };
    feedback.bar().set_length(len);
    feedback.log(format!(
        "sending {} ({len} bytes) to {} as {remote}",
        path.display(),
        partner.addr()
    ));
    let pgp = partner.pgp.clone();
    let mut connector = Connector::new(partner, settings.tuning.clone());
    let published = match pgp {
        // Encrypted as it is read, one stream, under the name plus the `Pgp` suffix (as the
        // Lambda does); the bar counts the file's bytes.
        Some(pgp) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let plain = Metered::new(file, feedback.bar().clone());
            let target = pgp
                .remote_path(&remote)
                .context("adding the partner's Pgp.Suffix")?;
            let stream = pgp.encrypt(plain, Some(len), remote.file_name());
            let published = connector
                .publish(stream, None, &target, chosen.overwrite)
                .await;
            published.inspect(|p| {
                feedback.log(format!("encrypted: {len} bytes of file, {} sent", p.bytes))
            })
        }
        // Striped over several SFTP channels when large, like an S3 object in the Lambda.
        None => {
            let source = MeteredRanges {
                inner: source,
                bar: feedback.bar().clone(),
            };
            connector
                .publish_ranges(&source, &remote, chosen.overwrite)
                .await
        }
    };
    // A partner's per-batch control file: this send is a batch of one.
    let published = match published {
        Ok(p) => match connector.write_control(&[&p], SystemTime::now()).await {
            Ok(control) => {
                if let Some(control) = control {
                    feedback.log(format!("control file {control}"));
                }
                Ok(p)
            }
            Err(e) => Err(e),
        },
        other => other,
    };
    connector.close().await;
    match published {
        Ok(p) if p.outcome == forward::PublishOutcome::SkippedSameSize => Ok(Outcome::Skipped {
            reason: format!("{} already has the same size on the partner", p.remote_path),
        }),
        Ok(p) => Ok(Outcome::Delivered {
            remote_path: p.remote_path,
            bytes: p.bytes,
        }),
        // Typed errors keep their precise exit code (untrusted key, login rejected, ...).
        Err(e) => Err(e).with_context(|| format!("sending {}", path.display())),
    }
}
