//! Delivery events: one EventBridge event per record that ends delivered, failed for good, or
//! given up on (its SQS message goes to the dead-letter queue), on the bus `SFTP_FORWARD_EVENTS`
//! names (the account's default bus unless set). Source [`SOURCE`]; detail types [`COMPLETED`],
//! [`FAILED`], [`GAVE_UP`].
//!
//! The detail uses the field names of Transfer Family's "SFTP Connector File Send Completed" and
//! "... Failed" events where they mean the same (`operation`, `connector-id`, `file-transfer-id`,
//! `url`, `file-path`, `status-code`, `failure-code`, `failure-message`, `start-timestamp`,
//! `end-timestamp`, `remote-directory-path`, `bytes`, `local-file-location`), so a rule written
//! for those needs only its `source` and `detail-type` changed; ours follow (`remote-path`,
//! `object-bytes`, `sha256`, `partner`, ...). See docs/OPERATIONS.md, "Delivery events".
//!
//! Never anything secret: the partner is named by its secret's *name* and `sftp://host:port`.
//!
//! Events are queued as records end and sent by [`EventSink::flush`] before the response, in
//! PutEvents calls of at most [`MAX_ENTRIES`] entries and [`MAX_REQUEST_BYTES`], all at once,
//! bounded by the time it is given and by [`MAX_FLUSH`]. A failed PutEvents (or failed entries)
//! is logged as a warning and never fails a record or the invocation.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use forward::ErrorClass;
use serde_json::{json, Map, Value};

use crate::after::{AfterRecord, Ended, Flushing, Retry};
use crate::handler::Outcome;

/// The `source` of every event.
pub const SOURCE: &str = "sftp-forward";
/// A file delivered and verified on the partner (Transfer Family: "SFTP Connector File Send
/// Completed").
pub const COMPLETED: &str = "SFTP Forward File Send Completed";
/// A permanent failure: retrying will not help until someone acts (Transfer Family: "SFTP
/// Connector File Send Failed").
pub const FAILED: &str = "SFTP Forward File Send Failed";
/// The last try failed: the SQS message reached the queue's `maxReceiveCount` and goes to the
/// dead-letter queue.
pub const GAVE_UP: &str = "SFTP Forward File Send Gave Up";
/// PutEvents takes at most this many entries per call.
pub const MAX_ENTRIES: usize = 10;
/// PutEvents takes at most this many bytes per call (all entries).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// A failure message is cut to this many characters (an event stays far below the limits).
const MAX_MESSAGE: usize = 2048;
/// A flush gives up after this long even when the deadline is further away: an unreachable
/// endpoint (EventBridge is reached through the NAT gateway) must not hold a finished batch's
/// response, and its messages, for the rest of the invocation.
pub const MAX_FLUSH: Duration = Duration::from_secs(5);

/// The detail type of a record's event, or `None` when it gets none: a skipped record, or a
/// transient failure that comes back (or may: a direct invocation, see [`Retry::Unknown`]).
pub fn detail_type(outcome: &Outcome, retry: Retry) -> Option<&'static str> {
    match outcome {
        Outcome::Delivered { .. } => Some(COMPLETED),
        Outcome::Skipped { .. } => None,
        Outcome::Failed { .. } if retry == Retry::Never => Some(GAVE_UP),
        Outcome::Failed {
            class: ErrorClass::Permanent,
            ..
        } => Some(FAILED),
        Outcome::Failed { .. } => None,
    }
}

/// The event's `detail` for a record (see the module doc for the fields).
pub fn detail(record: &Ended<'_>, connector_id: &str) -> Value {
    let d = record.detail;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    put("operation", json!("SEND"));
    put("connector-id", json!(connector_id));
    put("partner", json!(record.partner.name));
    put("secret-id", json!(record.partner.secret_id));
    put("url", json!(record.partner.url));
    put("file-transfer-id", json!(record.message_id));
    if let Some(obj) = record.obj {
        put("file-path", json!(format!("/{}/{}", obj.bucket, obj.key)));
        put(
            "local-file-location",
            json!({ "domain": "S3", "bucket": obj.bucket, "key": obj.key }),
        );
        put("version-id", json!(obj.version_id));
        put("etag", json!(obj.etag));
    }
    put(
        "remote-directory-path",
        json!(record.partner.remote_directory),
    );
    put("start-timestamp", json!(d.started.map(rfc3339)));
    put("end-timestamp", json!(d.ended.map(rfc3339)));
    match record.outcome {
        Outcome::Delivered { remote_path, bytes } => {
            put("status-code", json!("COMPLETED"));
            put("remote-path", json!(remote_path));
            // What landed on the partner (Transfer Family's `bytes`), and the object's own size.
            put("bytes", json!(d.sent_bytes.unwrap_or(*bytes)));
            put("object-bytes", json!(d.object_bytes.unwrap_or(*bytes)));
            put("sha256", json!(d.sha256));
            if d.sha256.is_none() {
                put("sha256-note", json!(d.no_sha256));
            }
        }
        Outcome::Failed { class, reason } => {
            put("status-code", json!("FAILED"));
            let code = d.failure_code.unwrap_or(match class {
                ErrorClass::Transient => "TRANSIENT",
                ErrorClass::Permanent => "PERMANENT",
            });
            put("failure-code", json!(code));
            put("failure-message", json!(cut(reason, MAX_MESSAGE)));
            put("failure-class", json!(class.to_string()));
            put("object-bytes", json!(d.object_bytes));
        }
        Outcome::Skipped { reason } => {
            put("status-code", json!("SKIPPED"));
            put("reason", json!(cut(reason, MAX_MESSAGE)));
        }
    }
    put("receive-count", json!(record.receive_count));
    put(
        "retried",
        json!(match record.retry {
            Retry::Again => "yes",
            Retry::Never => "no",
            Retry::Unknown => "unknown",
        }),
    );
    Value::Object(m)
}

/// One queued event.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// [`COMPLETED`], [`FAILED`] or [`GAVE_UP`].
    pub detail_type: &'static str,
    /// The detail, serialised.
    pub detail: String,
    /// When the record ended (the event's `time`).
    pub time: Option<SystemTime>,
}

impl Entry {
    /// What PutEvents counts for this entry against [`MAX_REQUEST_BYTES`] (source, detail type,
    /// detail, bus name, and 14 bytes for the time).
    fn size(&self, bus: &str) -> usize {
        SOURCE.len() + self.detail_type.len() + self.detail.len() + bus.len() + 14
    }
}

/// `entries` cut into PutEvents calls: at most [`MAX_ENTRIES`] and [`MAX_REQUEST_BYTES`] each.
pub fn batches(entries: Vec<Entry>, bus: &str) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry.size(bus);
        match out.last_mut() {
            Some(last) if last.len() < MAX_ENTRIES && bytes + size <= MAX_REQUEST_BYTES => {
                bytes += size;
                last.push(entry);
            }
            _ => {
                bytes = size;
                out.push(vec![entry]);
            }
        }
    }
    out
}

/// Sends delivery events to one bus; the [`AfterRecord`] the Lambda uses.
pub struct EventSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    connector_id: String,
    queued: Mutex<Vec<Entry>>,
}

impl EventSink {
    /// Events on `bus` (a name, `default`, or an ARN), naming `connector_id` (the function's
    /// name) as Transfer Family names its connector.
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String, connector_id: String) -> Self {
        EventSink {
            client,
            bus,
            connector_id,
            queued: Mutex::default(),
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn put(&self, batch: Vec<Entry>) {
        let n = batch.len();
        let entries = batch
            .into_iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(e.detail_type)
                    .detail(e.detail)
                    .event_bus_name(&self.bus)
                    .set_time(e.time.map(aws_sdk_eventbridge::primitives::DateTime::from))
                    .build()
            })
            .collect();
        let sent = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(out) if out.failed_entry_count() > 0 => {
                let codes: Vec<&str> = out
                    .entries()
                    .iter()
                    .filter_map(|e| e.error_code())
                    .collect();
                tracing::warn!(
                    bus = %self.bus,
                    failed = out.failed_entry_count(),
                    of = n,
                    ?codes,
                    "some delivery events were not accepted; the deliveries themselves stand"
                );
            }
            Ok(_) => tracing::debug!(bus = %self.bus, events = n, "delivery events sent"),
            Err(e) => tracing::warn!(
                bus = %self.bus,
                events = n,
                error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e),
                "PutEvents failed; the deliveries themselves stand"
            ),
        }
    }
}

impl AfterRecord for EventSink {
    fn ended(&self, record: &Ended<'_>) {
        let Some(detail_type) = detail_type(record.outcome, record.retry) else {
            return;
        };
        let detail = detail(record, &self.connector_id).to_string();
        self.queued().push(Entry {
            detail_type,
            detail,
            time: record.detail.ended,
        });
    }

    fn flush(&self, until: Option<Instant>) -> Flushing<'_> {
        Box::pin(async move {
            let entries = std::mem::take(&mut *self.queued());
            if entries.is_empty() {
                return;
            }
            let n = entries.len();
            let bound = Instant::now() + MAX_FLUSH;
            let until = until.map_or(bound, |u| u.min(bound));
            let all = futures_util::future::join_all(
                batches(entries, &self.bus).into_iter().map(|b| self.put(b)),
            );
            if tokio::time::timeout_at(until.into(), all).await.is_err() {
                tracing::warn!(
                    bus = %self.bus,
                    events = n,
                    "PutEvents did not finish before the invocation's deadline; some delivery \
                     events may be missing (the deliveries themselves stand)"
                );
            }
        })
    }
}

/// RFC 3339 UTC with milliseconds.
fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
#[path = "events/tests.rs"]
mod tests;
