//! `replay`: list a prefix, then forward every object without a receipt for its current bytes
//! (all of them with `--force`) over `--concurrency` connections, each through the Lambda's
//! forwarder. `--dry-run` reads receipts and maps paths but connects to nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use forward::{ErrorClass, RemotePath, RouteError};
use serde_json::json;
use sftp_forward_core::event::ObjectRef;
use sftp_forward_core::receipt::Receipt;
use sftp_forward_core::source::{ObjectStore, S3Store, StoreError};
use sftp_forward_core::{ForwardOptions, Outcome, Settings};
use tokio::task::JoinSet;

use crate::args::{RouteArgs, SecretArgs, StackArgs};
use crate::exit::{self, Exit};
use crate::progress::Feedback;
use crate::report::{self, Row};
use crate::s3url::{S3Url, Since};
use crate::setup;

/// What to replay and how.
pub struct Replay<'a> {
    pub prefix: &'a S3Url,
    pub since: Option<Since>,
    pub concurrency: u16,
    pub dry_run: bool,
    pub force: bool,
    pub secret: &'a SecretArgs,
    pub stack: &'a StackArgs,
    pub route: &'a RouteArgs,
}

pub async fn run(r: Replay<'_>, as_json: bool) -> anyhow::Result<Exit> {
    let config = setup::aws_config().await;
    let store = setup::s3(&config);
    let target = setup::target(r.secret, r.stack, Some(r.route), &config).await?;
    let Listed { objects, older } = list(&S3Store::client(&config), r.prefix, r.since).await?;
    // Objects modified before --since are left out: not in the table, only counted.
    let left_out = r
        .since
        .map(|t| format!("{older} modified before {t} not selected"));
    let feedback = Feedback::items(objects.len() as u64);
    feedback.log(format!(
        "{} objects under {}{}{}",
        objects.len(),
        r.prefix,
        left_out
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default(),
        if r.dry_run { " (dry run)" } else { "" }
    ));
    let mut rows = if r.dry_run {
        plan(&store, &target.settings, objects, r.force, &feedback).await
    } else {
        let mut workers = Vec::new();
        for _ in 0..usize::from(r.concurrency).min(objects.len()) {
            workers.push(target.forwarder(store.clone()));
        }
        forward_all(workers, objects, r.force, &feedback).await
    };
    feedback.finish();
    rows.sort_by(|a, b| a.item.cmp(&b.item));

    if as_json {
        let fields = json!({
            "prefix": r.prefix.to_string(),
            "since": r.since.map(|t| t.to_string()),
            "not_selected": older,
            "dry_run": r.dry_run,
        });
        report::print_json(&rows, fields);
    } else {
        report::print_table(&rows, r.dry_run);
        if let Some(line) = left_out {
            println!("{line}");
        }
    }
    Ok(report::totals(&rows).exit)
}

/// The objects to replay, and how many were left out as modified before `--since`.
struct Listed {
    objects: Vec<ObjectRef>,
    older: usize,
}

/// Every object under the prefix modified at or after `since`, in key order.
async fn list(
    client: &aws_sdk_s3::Client,
    prefix: &S3Url,
    since: Option<Since>,
) -> anyhow::Result<Listed> {
    let mut pages = client
        .list_objects_v2()
        .bucket(&prefix.bucket)
        .prefix(&prefix.key)
        .into_paginator()
        .send();
    let (mut out, mut older) = (Vec::new(), 0);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| exit::aws(e, format!("listing {prefix}")))?;
        for o in page.contents() {
            let (Some(key), Some(modified)) = (o.key(), o.last_modified()) else {
                continue;
            };
            if since.is_some_and(|t| modified.as_nanos() < t.unix_nanos()) {
                older += 1;
                continue;
            }
            out.push(ObjectRef {
                bucket: prefix.bucket.clone(),
                key: key.to_owned(),
                version_id: None,
                etag: o.e_tag().map(|e| e.trim_matches('"').to_owned()),
                size: o.size().and_then(|s| u64::try_from(s).ok()),
            });
        }
    }
    Ok(Listed {
        objects: out,
        older,
    })
}

fn url(obj: &ObjectRef) -> String {
    format!("s3://{}/{}", obj.bucket, obj.key)
}

/// A folder marker (`dir/`, empty) is not a file: the Lambda skips these too.
fn folder_marker(obj: &ObjectRef) -> Option<Outcome> {
    (obj.key.ends_with('/') && obj.size.unwrap_or(0) == 0).then(|| Outcome::Skipped {
        reason: "folder marker".into(),
    })
}

/// The path `--dry-run` shows: the function's route (no secret is read, so not the partner's
/// naming rules) with the listing's ETag as `{version}`; `{modified}` is not known here.
fn dry_route(settings: &Settings, obj: &ObjectRef) -> Result<RemotePath, RouteError> {
    let inputs = forward::RouteInputs {
        now: Some(std::time::SystemTime::now()),
        version_id: obj.version_id.as_deref(),
        etag: obj.etag.as_deref(),
        modified: None,
    };
    settings.routing.partners()[0]
        .route
        .render(&obj.key, &inputs)
}

/// `--dry-run`: what would happen to each object, from its receipt and the route alone.
async fn plan(
    store: &S3Store,
    settings: &Settings,
    objects: Vec<ObjectRef>,
    force: bool,
    feedback: &Feedback,
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(objects.len());
    for obj in objects {
        let outcome = match folder_marker(&obj) {
            Some(skip) => skip,
            None => match (store.tags(&obj).await, dry_route(settings, &obj)) {
                (Err(StoreError::Missing { .. }), _) => Outcome::Skipped {
                    reason: "deleted since it was listed".into(),
                },
                (Err(e), _) => Outcome::Failed {
                    class: if e.is_transient() {
                        ErrorClass::Transient
                    } else {
                        ErrorClass::Permanent
                    },
                    reason: e.to_string(),
                },
                (Ok(tags), path) => match (Receipt::from_tags(&tags), path) {
                    (Some(r), Ok(p))
                        if !force
                            && obj.etag.as_deref().is_some_and(|etag| {
                                r.vouches_for_route(&obj.bucket, &obj.key, etag, p.as_str())
                            }) =>
                    {
                        Outcome::Skipped {
                            reason: format!(
                                "already delivered to {} at {}",
                                r.remote_path, r.delivered_at
                            ),
                        }
                    }
                    (_, Err(e)) => Outcome::Failed {
                        class: ErrorClass::Permanent,
                        reason: e.to_string(),
                    },
                    (_, Ok(path)) => Outcome::Delivered {
                        remote_path: path.to_string(),
                        bytes: obj.size.unwrap_or(0),
                    },
                },
            },
        };
        feedback.bar().inc(1);
        rows.push(Row {
            item: url(&obj),
            outcome,
        });
    }
    rows
}

/// Forward the objects over one connection per worker; each worker takes the next object when
/// it is done with one, so at most `workers.len()` connections are open toward the partner.
async fn forward_all<S, K>(
    workers: Vec<sftp_forward_core::Forwarder<S, K>>,
    objects: Vec<ObjectRef>,
    force: bool,
    feedback: &Feedback,
) -> Vec<Row>
where
    S: ObjectStore + 'static,
    K: sftp_forward_core::secret::SecretSource + 'static,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(objects)));
    let options = ForwardOptions {
        force,
        remote_path: None,
    };
    let mut tasks = JoinSet::new();
    for mut forwarder in workers {
        let (queue, feedback, options) = (queue.clone(), feedback.clone(), options.clone());
        tasks.spawn(async move {
            let mut rows = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(obj) = next else { break };
                let outcome = match folder_marker(&obj) {
                    Some(skip) => skip,
                    None => forwarder.forward_with(&obj, None, &options).await,
                };
                feedback.log(line(&url(&obj), &outcome));
                feedback.bar().inc(1);
                rows.push(Row {
                    item: url(&obj),
                    outcome,
                });
            }
            rows
        });
    }
    let mut rows = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(r) => rows.extend(r),
            // Never lose a failure: the object the worker held is not accounted for.
            Err(e) => rows.push(Row {
                item: "(replay worker)".into(),
                outcome: Outcome::Failed {
                    class: ErrorClass::Transient,
                    reason: format!("stopped unexpectedly ({e}); run the replay again"),
                },
            }),
        }
    }
    rows
}

/// A log line for one finished object.
pub fn line(item: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered { remote_path, bytes } => {
            format!("sent {item} → {remote_path} ({bytes} bytes)")
        }
        Outcome::Skipped { reason } => format!("skipped {item}: {reason}"),
        Outcome::Failed { class, reason } => format!("failed {item} ({class}): {reason}"),
    }
}
